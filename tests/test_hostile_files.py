"""Hostile files in a workspace (issue 12): FIFOs and devices named like what discovery
reads, unreadable and absurdly deep folders, versions behind a symlink, an alembic.ini
interpolation bomb, oversized files and unusable config values. Each answers promptly
with one clear line; "hangs" run in a subprocess with a timeout, so a regression fails
instead of hanging the suite."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types as t
from pytest_lsp import client_capabilities, make_test_lsp_client

from conftest import migration_text
from lsp_helpers import SERVER_COMMAND
from migration_lsp.engine import Engine
from migration_lsp.project import SkippedFile, discover, read_text

TIMEOUT = 60  # seconds; the runs below take about one


def project(root: Path, revisions: dict[str, str | None], ini: str = "") -> Path:
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n" + ini)
    for rev, down in revisions.items():
        (versions / f"{rev}_x.py").write_text(migration_text(rev, down))
    return root


def check(root: Path, *args: str, **kwargs) -> tuple[int, dict | str, str]:
    """`migration-lsp check --no-import` in a subprocess, stdin a pipe that never closes
    (as an editor's or a CI runner's may be): (exit code, JSON report or text, stderr)."""
    env = {**os.environ, "MIGRATION_LSP_NO_CACHE": "1"}
    prefix = kwargs.pop("prefix", [])
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "migration_lsp", "check", "--no-import", *args],
                            cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kwargs)
    try:
        out, err = _wait(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, json.loads(out) if "--format" in args else out, err


def _wait(proc: subprocess.Popen) -> tuple[str, str]:
    """Output of a process whose stdin stays open (communicate() would close it)."""
    import threading

    result: dict[str, str] = {}
    readers = [threading.Thread(target=lambda k=k, s=s: result.__setitem__(k, s.read()), daemon=True)
               for k, s in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"check still running after {TIMEOUT} s (blocked on a FIFO or device?)")
    for reader in readers:
        reader.join(10)
    return result.get("out", ""), result.get("err", "")


def codes(report: dict) -> list[tuple[str, str]]:
    """The findings, but M004 (models not loaded: --no-import)."""
    return sorted((d["code"], Path(d["path"]).name) for d in report["diagnostics"] if d["code"] != "M004")


def test_fifos_named_like_revisions_and_configs_are_skipped(tmp_path: Path):
    root = project(tmp_path / "p", {"aaaa": None, "bbbb": "aaaa"})
    os.mkfifo(root / "migrations" / "versions" / "cccc_x.py")  # in the versions folder
    (root / "tools").mkdir()
    os.mkfifo(root / "tools" / "helper.py")  # in an unrelated folder
    os.mkfifo(root / "tools" / "setup.ini")
    os.mkfifo(root / "tools" / "pyproject.toml")
    code, report, err = check(root, "--format", "json")
    assert codes(report) == [("G010", "cccc_x.py")]
    (g010,) = [d for d in report["diagnostics"] if d["code"] == "G010"]
    assert "not a regular file (a FIFO)" in g010["message"]
    assert "helper.py: not a regular file (a FIFO); skipped" in err  # said once, in the log


def test_a_fifo_alembic_ini_is_one_config_problem(tmp_path: Path):
    root = project(tmp_path / "p", {"aaaa": None})
    (root / "alembic.ini").unlink()
    os.mkfifo(root / "alembic.ini")
    code, out, err = check(root)
    assert code == 2
    assert "alembic.ini: not a regular file (a FIFO); not read" in err
    assert "Traceback" not in err


def test_a_link_to_dev_stdin_is_not_read(tmp_path: Path):
    """The CLI with stdin a pipe that never closes: reading the link would wait forever."""
    root = project(tmp_path / "p", {"aaaa": None, "bbbb": "aaaa"})
    (root / "migrations" / "versions" / "cccc_x.py").symlink_to("/dev/stdin")
    (root / "stdin.py").symlink_to("/dev/stdin")
    code, report, err = check(root, "--format", "json")
    assert codes(report) == [("G010", "cccc_x.py")]
    (g010,) = [d for d in report["diagnostics"] if d["code"] == "G010"]
    assert "not a regular file (a FIFO)" in g010["message"]


async def test_the_server_does_not_read_its_own_stdin_through_a_link(tmp_path: Path):
    """The server's stdin is the LSP pipe: reading a `x.py -> /dev/stdin` link would eat
    the client's messages and hang. It publishes G010 for the link and keeps answering."""
    root = project(tmp_path / "p", {"aaaa": None, "bbbb": "aaaa"})
    link = root / "migrations" / "versions" / "cccc_x.py"
    link.symlink_to("/dev/stdin")
    os.mkfifo(root / "migrations" / "versions" / "dddd_x.py")
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND, env={**os.environ, "MIGRATION_LSP_NO_CACHE": "1"})
    try:
        await asyncio.wait_for(client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"), root_uri=root.as_uri(),
            initialization_options={"trusted": False})), 30)
        for _ in range(400):
            if client.diagnostics.get(link.as_uri()):
                break
            await asyncio.sleep(0.05)
        messages = [d.message for d in client.diagnostics.get(link.as_uri(), [])]
        assert any("not a regular file (a FIFO)" in m for m in messages), messages
        head = root / "migrations" / "versions" / "bbbb_x.py"
        hover = await asyncio.wait_for(client.text_document_hover_async(t.HoverParams(
            text_document=t.TextDocumentIdentifier(uri=head.as_uri()), position=t.Position(0, 0))), 30)
        assert hover is None or hover.contents  # answered: the server still reads its pipe
    finally:
        await asyncio.wait_for(client.shutdown_session(), 30)
        await client.stop()


def test_the_safe_reader_refuses_fifos_and_devices(tmp_path: Path):
    """project.read_text: for env.py and friends (models.py)."""
    os.mkfifo(tmp_path / "env.py")
    with pytest.raises(SkippedFile, match="FIFO"):
        read_text(tmp_path / "env.py")
    with pytest.raises(SkippedFile, match="character device"):
        read_text("/dev/zero")
    (tmp_path / "ok.py").write_text("x = 1\n")
    assert read_text(tmp_path / "ok.py") == "x = 1\n"


def test_an_oversized_revision_file_says_so(tmp_path: Path):
    root = project(tmp_path / "p", {"aaaa": None})
    big = root / "migrations" / "versions" / "bbbb_x.py"
    big.write_text(migration_text("bbbb", "aaaa"))
    os.truncate(big, 21_000_000)
    (diag,) = Engine([root], cache=False).snapshot().diagnostics
    assert diag.code == "G010" and "file too large (21 MB, limit 20 MB)" in diag.message


def test_an_unreadable_folder_is_skipped_and_said(tmp_path: Path):
    """Attack: a `pgdata/` of another user (mode 700) crashed `check` with a PermissionError
    traceback. A real folder of mode 000; root may read anything, so as root the check runs
    without the capabilities that override file modes (setpriv)."""
    root = project(tmp_path / "p", {"aaaa": None, "bbbb": "aaaa"})
    (root / "pgdata" / "base").mkdir(parents=True)
    (root / "pgdata" / "base" / "x.py").write_text("")
    (root / "pgdata").chmod(0o000)
    try:
        if os.geteuid() == 0:
            prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
            assert subprocess.run([*prefix, "ls", root / "pgdata"], capture_output=True).returncode != 0
        else:
            prefix = []
        code, report, err = check(root, "--format", "json", prefix=prefix)
        assert code == 0, err
        assert [d["code"] for d in report["diagnostics"]] == ["M004"]
        assert "Traceback" not in err and "pgdata (Permission denied)" in err
    finally:
        (root / "pgdata").chmod(0o700)


def _nest(top: Path, depth: int, remove: bool = False) -> None:
    """`depth` folders `d/d/...` below `top`, made (or removed) through folder descriptors:
    by path, each step would resolve the whole path again (and shutil.rmtree, pytest's
    clean-up, recurses: it cannot remove them)."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):
            if not remove:
                os.mkdir("d", dir_fd=fd)
            below = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = below
        for _ in range(depth if remove else 0):
            above = os.open("..", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = above
            os.rmdir("d", dir_fd=fd)
    finally:
        os.close(fd)


def test_a_folder_nested_1100_deep(tmp_path: Path, caplog):
    """Attack: 1,100 nested folders made discovery a RecursionError. The walk is iterative
    and stops at a depth bound, saying so."""
    root = project(tmp_path / "p", {"aaaa": None, "bbbb": "aaaa"})
    _nest(root, 1100)
    try:
        with caplog.at_level("WARNING", logger="migration_lsp"):
            found = discover(root)
        assert [len(env.files) for env in found.environments] == [2]
        assert any("deeper than 100 folders" in r.getMessage() for r in caplog.records)
    finally:
        _nest(root, 1100, remove=True)
    assert not (root / "d").exists()


def test_versions_behind_a_symlink_outside_the_workspace(tmp_path: Path, monkeypatch):
    """Attack: `versions` a symlink to a folder outside the workspace: "All checks passed,
    0 revisions" while Alembic reads those files. Followed; same heads as Alembic."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    outside = tmp_path / "shared" / "versions"
    root = tmp_path / "p"
    project(root, {})
    (root / "migrations" / "versions").rmdir()
    outside.mkdir(parents=True)
    for rev, down in {"aaaa": None, "bbbb": "aaaa", "cccc": "aaaa"}.items():
        (outside / f"{rev}_x.py").write_text(migration_text(rev, down))
    (outside / "loop").symlink_to(outside, target_is_directory=True)  # not followed
    (root / "migrations" / "versions").symlink_to(outside, target_is_directory=True)
    (root / "migrations" / "env.py").write_text("")
    (root / "migrations" / "script.py.mako").write_text("")

    monkeypatch.chdir(root)  # Alembic reads locations relative to the current folder
    alembic = ScriptDirectory.from_config(Config(str(root / "alembic.ini")))
    assert sorted(s.revision for s in alembic.walk_revisions()) == ["aaaa", "bbbb", "cccc"]
    for cache in (False, True, True):  # and from the cache, twice
        state = Engine([root], cache=cache).snapshot().environments[0]
        assert sorted(state.graph.by_id) == ["aaaa", "bbbb", "cccc"]
        assert sorted(state.graph.heads) == sorted(alembic.get_heads())
        assert [d.code for d in Engine([root], cache=cache).snapshot().diagnostics] == ["G001", "G001"]
    # a file added out there is seen (the cached discovery checks the outside folders too)
    (outside / "dddd_x.py").write_text(migration_text("dddd", ["bbbb", "cccc"]))
    state = Engine([root], cache=True).snapshot().environments[0]
    assert list(state.graph.heads) == ["dddd"]


def test_an_interpolation_bomb_in_alembic_ini(tmp_path: Path):
    """3 KB of nested %(x)s references expand without end (44 s to forever in discovery).
    Refused with one config problem, at once."""
    root = project(tmp_path / "p", {"aaaa": None})
    lines = ["[alembic]", "script_location = migrations", "sqlalchemy.url = %(b0)s"]
    for level in range(9):
        lines.append(f"b{level} = " + f"%(b{level + 1})s" * 30)
    lines.append("b9 = postgresql://x")
    (root / "alembic.ini").write_text("\n".join(lines) + "\n")
    assert len((root / "alembic.ini").read_text()) < 4000
    code, out, err = check(root)
    assert code == 2
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert "sqlalchemy.url expands to more than" in line and "alembic.ini" in line


def test_normal_interpolation_still_agrees_with_alembic(tmp_path: Path):
    from alembic.config import Config

    root = project(tmp_path / "p", {"aaaa": None})
    (root / "alembic.ini").write_text(
        "[DEFAULT]\nbase = migrations\n[alembic]\nscript_location = %(here)s/%(base)s\n"
        "version_locations = %(script_location)s/versions\npath_separator = os\n")
    (env,) = discover(root).environments
    config = Config(str(root / "alembic.ini"))
    assert env.script_location == Path(config.get_main_option("script_location")).resolve()
    assert env.version_locations == (Path(config.get_version_locations_list()[0]).resolve(),)
    assert len(env.files) == 1


@pytest.mark.parametrize("ini, expected", [
    ("truncate_slug_length = 9" + "9" * 5000 + "\n", "truncate_slug_length must be a whole number"),
    ("truncate_slug_length = forty\n", "truncate_slug_length must be a whole number"),
    ("file_template = %%(rev)s_%%(nope)s\n", "file_template '%(rev)s_%(nope)s' cannot be used: unknown key 'nope'"),
    ("file_template = %%(rev)s_%%\n", "file_template"),
])
def test_unusable_config_values_are_one_line(tmp_path: Path, ini: str, expected: str):
    root = project(tmp_path / "p", {"aaaa": None}, ini)
    code, out, err = check(root)
    assert code == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert expected in line and len(line) < 400


def test_a_models_file_swapped_for_a_fifo_after_its_check_does_not_block(tmp_path: Path, monkeypatch):
    """`User.__tablename__` read from models.py (outside.tablename): the file was a regular file
    when checked (every Path.stat() says so) and is a FIFO when opened. Before, is_file() then
    open() blocked the thread on the FIFO forever; the safe reader checks what it opened."""
    import threading

    from migration_lsp.outside import tablename

    models = tmp_path / "models.py"
    models.write_text("class User:\n    __tablename__ = 'people'\n")
    regular = models.stat()
    models.unlink()
    os.mkfifo(models)
    real_stat = Path.stat
    monkeypatch.setattr(Path, "stat", lambda self, *a, **k: regular if self == models else real_stat(self, *a, **k))
    answers: list[str | None] = []
    reader = threading.Thread(target=lambda: answers.append(tablename(tmp_path / "versions" / "r1_.py",
                                                                      "models.User")), daemon=True)
    reader.start()
    reader.join(10)
    try:
        assert not reader.is_alive(), "blocked opening a FIFO"
        assert answers == [None]  # (no table name read: the file is not a regular file)
    finally:
        if reader.is_alive():  # (the old code: a writer end releases the blocked open)
            os.close(os.open(models, os.O_WRONLY | os.O_NONBLOCK))
