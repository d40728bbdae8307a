"""Symlinks in a project's migrations: a symlinked versions folder (inside the workspace or
outside it), one symlinked folder among several version locations, a symlinked revision file.
The server names every file it is told about by its resolved path, so discovery must name
the files the same way (one canonical path per file), or an edit made through the link never
reaches the environment; the editor still gets its diagnostics under the URI it used."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from conftest import migration_text
from lsp_helpers import (
    HEAD_A,
    HEAD_B,
    SERVER_COMMAND,
    TYPO_REV,
    client_factory,
    codes,
    copy_example,
    wait_for,
)
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from migration_lsp.engine import Engine
from migration_lsp.project import discover


def link_versions(project: Path, target: Path) -> Path:
    """Move the project's versions folder to `target` and leave a symlink in its place."""
    versions = project / "migrations" / "versions"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(versions), str(target))
    versions.symlink_to(target, target_is_directory=True)
    return versions


def through_link(versions: Path, rev: str) -> Path:
    """A revision file as the editor names it: through the symlinked folder."""
    (path,) = versions.glob(f"{rev}_*.py")
    return path




@pytest_lsp.fixture(
    params=["inside", "outside"],
    config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=client_factory),
)
async def linked(request, lsp_client: LanguageClient, tmp_path: Path):
    """The demo project with `migrations/versions` a symlink (migrations itself is a real
    folder: script_location points at it) to a folder inside the workspace or outside it."""
    project = copy_example(tmp_path)
    target = project / "shared" / "versions" if request.param == "inside" else tmp_path / "elsewhere" / "versions"
    lsp_client.versions = link_versions(project, target)
    lsp_client.target = target
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=project.as_uri(),
        workspace_folders=[t.WorkspaceFolder(uri=project.as_uri(), name="blog")],
        initialization_options={"trusted": False}))
    yield
    await lsp_client.shutdown_session()


async def test_edits_through_a_symlinked_versions_folder_reach_the_environment(linked: LanguageClient):
    client = linked
    versions = client.versions
    typo, head_b = through_link(versions, TYPO_REV), through_link(versions, HEAD_B)
    before = {p: p.read_text() for p in versions.iterdir()}
    text = head_b.read_text()
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=head_b.as_uri(), language_id="python", version=1, text=text)))
    # an unsaved edit breaks its down_revision: G002 on the file, under the URI the editor used
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=head_b.as_uri(), version=2),
        content_changes=[t.TextDocumentContentChangeWholeDocument(text=text.replace(
            "down_revision: Union[str, Sequence[str], None] = '17b2b3743e17'",
            "down_revision: Union[str, Sequence[str], None] = 'nope'"))]))
    await wait_for(lambda: ("G002", 15) in codes(client, head_b))
    # its quick fixes edit the open buffer, by the name the editor gave it
    g002 = next(d for d in client.diagnostics[head_b.as_uri()] if d.code == "G002")
    actions = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=t.TextDocumentIdentifier(uri=head_b.as_uri()), range=g002.range,
        context=t.CodeActionContext(diagnostics=[g002])))
    edited = {c.text_document.uri for a in actions if isinstance(a, t.CodeAction) and a.edit
              for c in a.edit.document_changes or [] if isinstance(c, t.TextDocumentEdit)}
    edited |= {uri for a in actions if isinstance(a, t.CodeAction) and a.edit for uri in a.edit.changes or {}}
    assert edited == {head_b.as_uri()}, [a.title for a in actions]
    # the typo'd file (not open) is named by its real path, with its own G002 on its parent's typo
    real_typo = client.target / typo.name
    await wait_for(lambda: ("G002", 15) in codes(client, real_typo))
    assert codes(client, typo) == []  # (never published twice, under both names)
    # fixed on disk through the link, as another program would: the watcher's event takes it in
    typo.write_text(typo.read_text().replace("bd474000086b", HEAD_B))
    client.workspace_did_change_watched_files(t.DidChangeWatchedFilesParams(changes=[
        t.FileEvent(uri=typo.as_uri(), type=t.FileChangeType.Changed)]))
    await wait_for(lambda: ("G002", 15) not in codes(client, real_typo))
    # a file whose diagnostics went to its real name, opened through the link: they move there
    head_a = through_link(versions, HEAD_A)
    real_head_a = client.target / head_a.name
    await wait_for(lambda: codes(client, real_head_a) == [("G001", 14)])
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=head_a.as_uri(), language_id="python", version=1, text=head_a.read_text())))
    await wait_for(lambda: codes(client, head_a) == [("G001", 14)] and codes(client, real_head_a) == [])
    assert {p: p.read_text() for p in versions.iterdir()} == {**before, typo: before[typo].replace(
        "bd474000086b", HEAD_B)}  # the server wrote nothing


# --------------------------------------------------------------------------- discovery and the engine


def write(folder: Path, revisions: dict[str, str | None]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for rev, down in revisions.items():
        out[rev] = folder / f"{rev}_x.py"
        out[rev].write_text(migration_text(rev, down))
    return out


def alembic_files(root: Path) -> dict[str, Path]:
    """{revision: its file, resolved} as Alembic's ScriptDirectory loads them (run from `root`)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    here = os.getcwd()
    os.chdir(root)
    try:
        scripts = ScriptDirectory.from_config(Config(str(root / "alembic.ini")))
        return {s.revision: Path(s.path).resolve() for s in scripts.walk_revisions()}
    finally:
        os.chdir(here)


def contents(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.lstat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


def broken(path: Path) -> str:
    return path.read_text().replace("down_revision: Union[str, Sequence[str], None] = ", "down_revision = 'nope' #")


def test_several_version_locations_one_of_them_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "migrations").mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\npath_separator = space\n"
                                      "version_locations = %(here)s/migrations/versions %(here)s/more\n")
    mine = write(root / "migrations" / "versions", {"aaaa": None, "bbbb": "aaaa"})
    theirs = write(tmp_path / "shared" / "more", {"cccc": "bbbb", "dddd": "cccc"})
    (root / "more").symlink_to(tmp_path / "shared" / "more", target_is_directory=True)
    (env,) = discover(root).environments
    assert sorted(env.files) == sorted([*mine.values(), *theirs.values()])  # (real paths)
    assert dict(zip("abcd", map(str, sorted(alembic_files(root).values())))) == dict(
        zip("abcd", map(str, sorted(env.files))))  # the files Alembic loads, by the same names
    # settings for the environment named by the link's path still find it
    (root / "pyproject.toml").write_text('[[tool.migration-lsp.environments]]\npath = "more"\nignore = ["M004"]\n')
    engine = Engine([root], trusted=False, cache=False)
    assert engine.snapshot().diagnostics == []
    engine.set_buffer(root / "more" / "dddd_x.py", broken(theirs["dddd"]))  # named through the link
    found = [(d.code, d.path) for d in engine.snapshot().diagnostics]
    assert ("G002", theirs["dddd"]) in found and {p for _, p in found} <= set(env.files)
    # a file created through the link belongs to the environment (its folder is a version location)
    new = root / "more" / "eeee_x.py"
    engine.set_buffer(new, migration_text("eeee", "zzzz"))
    assert ("G002", theirs["dddd"].parent / "eeee_x.py") in [(d.code, d.path) for d in engine.snapshot().diagnostics]
    assert not new.exists()


@pytest.mark.filterwarnings("ignore:File .* loaded twice")  # (Alembic's, on the second link: expected)
def test_a_symlinked_revision_file(tmp_path: Path) -> None:
    """`versions/cccc_x.py` a link to a revision file elsewhere: one of the revisions, named by
    its target, as Alembic loads it; a second link to a revision file is that same file, not a
    second revision; a link to a file named as no revision file is (`impl.txt`) is none, as
    Alembic chooses files by their resolved name."""
    root = tmp_path / "p"
    (root / "alembic.ini").parent.mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    (root / "migrations").mkdir()
    files = write(root / "migrations" / "versions", {"aaaa": None, "bbbb": "aaaa"})
    shared = tmp_path / "shared" / "cccc_impl.py"
    shared.parent.mkdir()
    shared.write_text(migration_text("cccc", "bbbb"))
    link = root / "migrations" / "versions" / "cccc_x.py"
    link.symlink_to(shared)
    (tmp_path / "shared" / "impl.txt").write_text(migration_text("dddd", "cccc"))
    (root / "migrations" / "versions" / "dddd_x.py").symlink_to(tmp_path / "shared" / "impl.txt")
    (root / "migrations" / "versions" / "latest.py").symlink_to("bbbb_x.py")
    (env,) = discover(root).environments
    assert env.files == tuple(sorted([files["aaaa"], files["bbbb"], shared]))
    assert set(alembic_files(root).values()) == set(env.files)
    assert [e.files for e in Engine([root], trusted=False, cache=True).workspace.discoveries[0].environments] == [
        env.files]  # (and from the cache: the same names)
    engine = Engine([root], trusted=False, cache=False)
    state = engine.snapshot().environments[0]
    assert sorted(state.graph.by_id) == ["aaaa", "bbbb", "cccc"] and list(state.graph.heads) == ["cccc"]
    assert [d.code for d in engine.snapshot().diagnostics] == ["M004"]
    engine.set_buffer(link, broken(shared))  # the editor opened it by the link's name
    found = [(d.code, d.path) for d in engine.snapshot().diagnostics]
    assert ("G002", shared) in found and {p for _, p in found} <= {*env.files, root / "alembic.ini"}
    shared.write_text(broken(shared))  # ... and another program saved it (the watcher names the link)
    engine.close_buffer(link)
    engine.file_changed(link)
    assert ("G002", shared) in [(d.code, d.path) for d in engine.snapshot().diagnostics]


def check_json(root: Path) -> dict:
    """`migration-lsp check --format json` run from `root`, as CI runs it."""
    proc = subprocess.run([sys.executable, "-m", "migration_lsp", "check", "--no-import", "--format", "json"],
                          cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MIGRATION_LSP_NO_CACHE": "1"})
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_cli_names_the_real_files_and_writes_nothing(tmp_path: Path, where: str) -> None:
    """The CLI names a file by its real path: relative to the current folder when the link
    points inside it (the path git tracks, where a CI annotation lands), else absolute. A
    link out of the workspace is followed (Alembic reads those files) and nothing is written
    there, by the check nor by the server's engine."""
    root = copy_example(tmp_path)
    target = root / "db" / "history" if where == "inside" else tmp_path / "elsewhere" / "versions"
    versions = link_versions(root, target)
    before = contents(target)
    report = check_json(root)
    # each file once (a link inside the workspace made every revision a G005 "declared twice")
    assert sorted(d["code"] for d in report["diagnostics"]) == ["G001", "G001", "G002", "M004"]
    (typo,) = [d for d in report["diagnostics"] if d["code"] == "G002"]
    name = through_link(versions, TYPO_REV).name
    assert typo["path"] == (f"db/history/{name}" if where == "inside" else str(target / name))
    assert Engine([root], trusted=False, cache=True).snapshot().diagnostics  # (its cache: not in the workspace)
    assert contents(target) == before
    assert not (tmp_path / "elsewhere").exists() or sorted(os.listdir(tmp_path / "elsewhere")) == ["versions"]


# --------------------------------------------------------------------------- git


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"})
    return subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout


def graph_findings(root: Path) -> list[tuple[str, Path]]:
    """(code, file) of every G finding a fresh engine gives (each file once)."""
    snapshot = Engine([root], trusted=False, cache=False).snapshot()
    return [(d.code, d.path) for d in snapshot.diagnostics if d.code.startswith("G")]


def test_base_branch_checks_through_a_symlinked_folder_in_the_repository(tmp_path: Path) -> None:
    """`migrations/versions` a symlink (tracked by git) to `db/history`: the base branch's files
    are read from git under the paths the work tree's files have, so an edited merged revision
    is G013, a new one on top is no finding, and nothing is reported gone (G012)."""
    root = tmp_path / "repo"
    (root / "migrations").mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    files = write(root / "db" / "history", {"a1": None, "a2": "a1"})
    (root / "migrations" / "versions").symlink_to("../db/history", target_is_directory=True)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    git(root, "switch", "-q", "-c", "feature")

    assert graph_findings(root) == []
    new = write(root / "migrations" / "versions", {"b1": "a2"})["b1"]  # written through the link
    assert graph_findings(root) == []
    files["a2"].write_text(files["a2"].read_text().replace("def upgrade() -> None:\n",
                                                           "def upgrade() -> None:\n    op.drop_table('t')\n"))
    assert graph_findings(root) == [("G013", files["a2"])]
    assert new.resolve() == root / "db" / "history" / "b1_x.py"



def test_base_branch_checks_with_a_symlinked_revision_file_in_the_repository(tmp_path: Path) -> None:
    """`versions/a2_x.py` a symlink (tracked by git: a blob holding the link's target) to
    `shared/a2_impl.py`: on the base branch, as in the work tree, revision a2 is that file."""
    root = tmp_path / "repo"
    (root / "migrations").mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    files = write(root / "migrations" / "versions", {"a1": None})
    shared = write(root / "shared", {"a2": "a1"})["a2"]
    (root / "migrations" / "versions" / "a2_x.py").symlink_to("../../shared/a2_x.py")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    git(root, "switch", "-q", "-c", "feature")

    assert graph_findings(root) == []
    engine = Engine([root], trusted=False, cache=False)
    (state,) = engine.snapshot().environments
    base = engine.base(root, state.env)  # the base's files, read from git, named as the work tree's
    assert base is not None and sorted(s.path for s in base.tip.scripts) == sorted(state.env.files) == [
        files["a1"], shared]
    write(root / "migrations" / "versions", {"b1": "a2"})
    assert graph_findings(root) == []
    shared.write_text(shared.read_text().replace("def upgrade() -> None:\n",
                                                 "def upgrade() -> None:\n    op.drop_table('t')\n"))
    assert graph_findings(root) == [("G013", shared)]
    assert files["a1"].exists()



def test_a_symlink_loop_in_the_repository_is_followed_a_bounded_number_of_times(tmp_path: Path) -> None:
    from migration_lsp.gitbase import MAX_LINKS, Stats, find_repository, list_files

    root = tmp_path / "repo"
    (root / "migrations").mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    files = write(root / "migrations" / "versions", {"a1": None})
    (root / "migrations" / "versions" / "b_x.py").symlink_to("c_x.py")
    (root / "migrations" / "versions" / "c_x.py").symlink_to("b_x.py")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    (env,) = discover(root).environments
    repo = find_repository(root)
    assert repo is not None
    stats = Stats()
    assert list_files(repo, "HEAD", env, stats) == {"migrations/versions/a1_x.py": git(
        root, "rev-parse", "HEAD:migrations/versions/a1_x.py").strip()}
    assert stats.processes == 1 + 2 * MAX_LINKS  # (ls-tree, then a cat-file and an ls-tree a link)
    assert [(d.code, d.path.name) for d in Engine([root], trusted=False, cache=False).snapshot().diagnostics
            if d.code.startswith("G")] == [("G010", "b_x.py"), ("G010", "c_x.py")]
    assert files["a1"].exists()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
