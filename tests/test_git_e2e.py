"""The real server over stdio (pytest-lsp, VS Code's recorded capabilities) in a real git
clone: a `git fetch` that brings the base branch's new head makes G011 appear in the open
file without reopening it, and `migrationLsp.status` reports heads and the base."""

from __future__ import annotations

from pathlib import Path

import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_helpers import SERVER_COMMAND, client_factory, wait_for
from conftest import add_revision, alice_and_bob, commit, git, seeded_remote



@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=client_factory))
async def client(lsp_client: LanguageClient, tmp_path: Path):
    remote = seeded_remote(tmp_path, [("a1", None, "create users", "pass")])
    alice, bob, lsp_client.b1 = alice_and_bob(remote, "a1")
    lsp_client.alice, lsp_client.bob = alice, bob
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        root_uri=bob.as_uri(),
        workspace_folders=[t.WorkspaceFolder(uri=bob.as_uri(), name="bob")],
        initialization_options={"trusted": False},
    ))
    yield
    await lsp_client.shutdown_session()


def g_codes(client: LanguageClient, path: Path) -> list[str]:
    return [d.code for d in client.diagnostics.get(path.as_uri(), []) if str(d.code).startswith("G")]


async def test_a_fetch_brings_g011_into_the_open_file(client: LanguageClient):
    b1 = client.b1
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=b1.as_uri(), language_id="python", version=1, text=b1.read_text())))
    await wait_for(lambda: b1.as_uri() in client.diagnostics, timeout=15)
    assert g_codes(client, b1) == []
    # the server asked to watch HEAD and the refs
    await wait_for(lambda: client.registrations, timeout=15)
    globs = [w["globPattern"] for r in client.registrations for w in r.register_options["watchers"]]
    assert "**/.git/refs/**" in globs and "**/.git/HEAD" in globs
    status = await client.workspace_execute_command_async(t.ExecuteCommandParams(command="migrationLsp.status"))
    assert status == {"environments": [{"name": "migrations", "heads": ["b1"],
                                        "base": {"ref": "origin/main", "ahead": 1, "behind": 0}}]}

    add_revision(client.alice, "c1", "a1", "add phone")
    commit(client.alice, "phone")
    git(client.alice, "push", "-q", "origin", "HEAD:main")
    git(client.bob, "fetch", "-q")
    ref = client.bob / ".git" / "refs" / "remotes" / "origin" / "main"
    client.workspace_did_change_watched_files(t.DidChangeWatchedFilesParams(
        changes=[t.FileEvent(uri=ref.as_uri(), type=t.FileChangeType.Changed)]))
    await wait_for(lambda: g_codes(client, b1) == ["G011"], timeout=15)
    [d] = [d for d in client.diagnostics[b1.as_uri()] if d.code == "G011"]
    assert d.message.startswith("origin/main's head is now c1 (add phone)")
    assert d.range.start.line == next(n for n, line in enumerate(b1.read_text().splitlines())
                                      if line.startswith("down_revision"))

    actions = await client.text_document_code_action_async(t.CodeActionParams(
        text_document=t.TextDocumentIdentifier(uri=b1.as_uri()), range=d.range,
        context=t.CodeActionContext(diagnostics=[d])))
    titles = [a.title for a in actions]
    assert "Rebase onto c1 (add phone)" in titles
    status = await client.workspace_execute_command_async(t.ExecuteCommandParams(command="migrationLsp.status"))
    assert status["environments"][0]["base"] == {"ref": "origin/main", "ahead": 1, "behind": 1}

    # merging the base in (git pull) puts both heads in the work tree: G011 gives way to G001
    git(client.bob, "merge", "-q", "--no-edit", "origin/main")
    client.workspace_did_change_watched_files(t.DidChangeWatchedFilesParams(changes=[
        t.FileEvent(uri=(client.bob / ".git" / "HEAD").as_uri(), type=t.FileChangeType.Changed),
        t.FileEvent(uri=next((client.bob / "migrations" / "versions").glob("c1_*.py")).as_uri(),
                    type=t.FileChangeType.Created)]))
    await wait_for(lambda: g_codes(client, b1) == ["G001"], timeout=15)
