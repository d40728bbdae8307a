"""Symlinks in a project's migrations: a symlinked versions folder (inside the workspace or
outside it), one symlinked folder among several version locations, a symlinked revision file.
The server names every file it is told about by its resolved path, so discovery must name
the files the same way (one canonical path per file), or an edit made through the link never
reaches the environment; the editor still gets its diagnostics under the URI it used."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_helpers import HEAD_B, SERVER_COMMAND, TYPO_REV, client_factory, copy_example


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


async def wait_for(predicate, timeout: float = 10.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def codes(client: LanguageClient, path: Path) -> list[tuple[str, int]]:
    return sorted((d.code, d.range.start.line) for d in client.diagnostics.get(path.as_uri(), []))


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
    # the typo'd file (not open) is named by its real path, with its own G002 on its parent's typo
    real_typo = client.target / typo.name
    await wait_for(lambda: ("G002", 15) in codes(client, real_typo))
    assert codes(client, typo) == []  # (never published twice, under both names)
    # fixed on disk through the link, as another program would: the watcher's event takes it in
    typo.write_text(typo.read_text().replace("bd474000086b", HEAD_B))
    client.workspace_did_change_watched_files(t.DidChangeWatchedFilesParams(changes=[
        t.FileEvent(uri=typo.as_uri(), type=t.FileChangeType.Changed)]))
    await wait_for(lambda: ("G002", 15) not in codes(client, real_typo))
    assert {p: p.read_text() for p in versions.iterdir()} == {**before, typo: before[typo].replace(
        "bd474000086b", HEAD_B)}  # the server wrote nothing


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
