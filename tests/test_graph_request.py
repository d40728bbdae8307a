"""The real server over stdio (pytest-lsp, VS Code's recorded capabilities) in a real git
clone: the `migration-lsp/graph` request returns the revision graph as JSON (what the VS
Code status bar reads), and `migration-lsp/graphChanged` is sent to a client that asks for
it only when heads, revisions or the base branch change — not on every keystroke."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_helpers import SERVER_COMMAND, client_factory, wait_for
from conftest import add_revision, alice_and_bob, commit, git, seeded_remote

GRAPH, GRAPH_CHANGED = "migration-lsp/graph", "migration-lsp/graphChanged"


def plain(value):
    """pygls hands a custom request's result back as namedtuples: make it JSON again."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def make_client(announce: bool):
    def factory() -> LanguageClient:
        client = client_factory()
        client.graph_changes = 0

        @client.feature(GRAPH_CHANGED)
        def graph_changed(params):
            client.graph_changes += 1

        client.announce = announce
        return client
    return factory


async def start(lsp_client: LanguageClient, tmp_path: Path) -> None:
    remote = seeded_remote(tmp_path, [("a1", None, "create users", "pass")])
    alice, bob, lsp_client.b1 = alice_and_bob(remote, "a1")
    lsp_client.alice, lsp_client.bob = alice, bob
    capabilities = client_capabilities("visual-studio-code")
    if lsp_client.announce:
        capabilities.experimental = {"migrationLsp": {"graphChanged": True}}
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=capabilities, root_uri=bob.as_uri(),
        workspace_folders=[t.WorkspaceFolder(uri=bob.as_uri(), name="bob")],
        initialization_options={"trusted": False},
    ))


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=make_client(True)))
async def client(lsp_client: LanguageClient, tmp_path: Path):
    await start(lsp_client, tmp_path)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=make_client(False)))
async def quiet_client(lsp_client: LanguageClient, tmp_path: Path):
    await start(lsp_client, tmp_path)
    yield
    await lsp_client.shutdown_session()


async def graph(client: LanguageClient) -> dict:
    return plain(await client.protocol.send_request_async(GRAPH, {}))


async def test_graph_request_returns_revisions_heads_and_the_base(client: LanguageClient):
    data = await graph(client)
    (env,) = data["environments"]
    assert data["version"] == 1
    assert env["name"] == "migrations" and env["heads"] == ["b1"] and env["bases"] == ["a1"]
    assert env["base"] == {"ref": "origin/main", "ahead": 1, "behind": 0}
    b1 = client.b1
    revision_line = next(n for n, line in enumerate(b1.read_text().splitlines()) if line.startswith("revision"))
    nodes = {n["id"]: n for n in env["nodes"]}
    assert nodes["b1"] == {"id": "b1", "message": "add orders", "path": b1.resolve().as_uri(),
                           "line": revision_line, "down_revisions": ["a1"], "depends_on": [],
                           "branch_labels": []}
    assert nodes["a1"]["down_revisions"] == [] and nodes["a1"]["message"] == "create users"
    # the status command keeps working, and agrees
    status = await client.workspace_execute_command_async(t.ExecuteCommandParams(command="migrationLsp.status"))
    assert status["environments"][0]["heads"] == env["heads"]
    assert status["environments"][0]["base"] == env["base"]


async def test_graph_changed_only_when_the_graph_or_the_base_changes(client: LanguageClient):
    await wait_for(lambda: client.graph_changes == 1, timeout=15)  # the first index
    b1 = client.b1
    text = b1.read_text()
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=b1.as_uri(), language_id="python", version=1, text=text)))
    await wait_for(lambda: b1.as_uri() in client.diagnostics, timeout=15)
    # typing in upgrade() changes diagnostics (a syntax error, then none) but not the graph
    for version, body in enumerate(["    op.(", "    op.drop_table('x')", "    pass"], start=2):
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=b1.as_uri(), version=version),
            content_changes=[t.TextDocumentContentChangeWholeDocument(text=text.replace("    pass", body, 1))]))
        await graph(client)  # a round trip: the edit has been handled
    await asyncio.sleep(1.5)  # past the full pass
    assert client.graph_changes == 1

    # a second head, typed into a new buffer: heads changed
    b2 = b1.with_name("b2_more.py")
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=b2.as_uri(), language_id="python", version=1,
        text=text.replace("'b1'", "'b2'").replace('"b1"', '"b2"'))))
    await wait_for(lambda: client.graph_changes == 2, timeout=15)
    env = (await graph(client))["environments"][0]
    assert env["heads"] == ["b1", "b2"]

    # the base branch moves (a fetch): announced, and the graph says so
    add_revision(client.alice, "c1", "a1", "add phone")
    commit(client.alice, "phone")
    git(client.alice, "push", "-q", "origin", "HEAD:main")
    git(client.bob, "fetch", "-q")
    ref = client.bob / ".git" / "refs" / "remotes" / "origin" / "main"
    client.workspace_did_change_watched_files(t.DidChangeWatchedFilesParams(
        changes=[t.FileEvent(uri=ref.as_uri(), type=t.FileChangeType.Changed)]))
    await wait_for(lambda: client.graph_changes == 3, timeout=15)
    env = (await graph(client))["environments"][0]
    assert env["base"] == {"ref": "origin/main", "ahead": 2, "behind": 1}


async def test_no_graph_notification_unless_asked(quiet_client: LanguageClient):
    data = await graph(quiet_client)
    assert data["environments"][0]["heads"] == ["b1"]
    await asyncio.sleep(0.5)
    assert quiet_client.graph_changes == 0
