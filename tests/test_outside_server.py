"""The real server follows an edit of models.py that a migration reads (`User.__tablename__`):
an unsaved change in the editor, closing it (the disk again), a change on disk reported by
the file watcher, a save. Before the revision keys covered what other files answered, the
running server kept the first table name until the migration's own text changed (stale
D002 here; stale M001/M002, hovers and code actions in a trusted workspace)."""

from __future__ import annotations

from pathlib import Path

import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_helpers import SERVER_COMMAND, client_factory
from test_outside_keys import MODELS, make_project
from test_server_e2e import change_whole, codes, open_file, position_of, wait_for


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=client_factory))
async def client(lsp_client: LanguageClient, tmp_path: Path):
    project = make_project(tmp_path / "p").resolve()
    lsp_client.project = project
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=project.as_uri(),
        workspace_folders=[t.WorkspaceFolder(uri=project.as_uri(), name="p")],
        initialization_options={"trusted": False}))
    yield
    await lsp_client.shutdown_session()


async def test_findings_and_hovers_follow_an_edit_of_models_py(client: LanguageClient):
    project: Path = client.project  # type: ignore[attr-defined]
    versions = project / "migrations" / "versions"
    r1, r3, models = versions / "r1_.py", versions / "r3_.py", project / "models.py"

    def d002() -> bool:
        return "D002" in [c for c, _ in codes(client, r1)]

    open_file(client, r1)
    await wait_for(lambda: [c for c, _ in codes(client, r3)] == ["D001"], 30)  # the full pass has run
    assert not d002()

    async def hover_names(name: str) -> bool:
        found = await client.text_document_hover_async(t.HoverParams(
            text_document=t.TextDocumentIdentifier(uri=r1.as_uri()), position=position_of(r1, "create_table", 2)))
        return found is not None and name in str(found.contents)

    assert await hover_names("people")

    # an unsaved edit of models.py in the editor
    open_file(client, models)
    change_whole(client, models, MODELS.format(name="persons"), 2)
    await wait_for(d002, 30)
    assert await hover_names("persons")

    # closed unsaved: the disk's name again
    client.text_document_did_close(t.DidCloseTextDocumentParams(text_document=t.TextDocumentIdentifier(
        uri=models.as_uri())))
    await wait_for(lambda: not d002(), 30)

    # changed on disk by another program: the watcher's event
    models.write_text(MODELS.format(name="members"))
    client.workspace_did_change_watched_files(t.DidChangeWatchedFilesParams(changes=[
        t.FileEvent(uri=models.as_uri(), type=t.FileChangeType.Changed)]))
    await wait_for(d002, 30)
    assert await hover_names("members")

    # edited and saved in the editor
    open_file(client, models)
    change_whole(client, models, MODELS.format(name="people"), 2)
    models.write_text(MODELS.format(name="people"))
    client.text_document_did_save(t.DidSaveTextDocumentParams(text_document=t.TextDocumentIdentifier(
        uri=models.as_uri())))
    await wait_for(lambda: not d002(), 30)
    assert await hover_names("people")
    assert [c for c, _ in codes(client, r3)] == ["D001"]
