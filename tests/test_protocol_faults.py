"""LSP protocol faults and containment, against the real server over stdio: unknown
methods, malformed params, foreign URIs, cancellation, a client that never answers,
shutdown/exit in odd orders; an untrusted workspace runs no project code; the server
writes nothing into the workspace and opens no network connection."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types as t
from pytest_lsp import LanguageClient, client_capabilities, make_test_lsp_client

from lsp_helpers import HEAD_A, SERVER_COMMAND, TYPO_REV, copy_example, file_of

ROOT = Path(__file__).resolve().parents[1]


def silent_client_factory() -> LanguageClient:
    """A client that never answers the server's own requests (configuration,
    registerCapability, progress creation): nothing may wait on them forever."""
    client = make_test_lsp_client()

    async def never(params):
        await asyncio.sleep(3600)

    for method in (t.WORKSPACE_CONFIGURATION, t.CLIENT_REGISTER_CAPABILITY, t.WINDOW_WORK_DONE_PROGRESS_CREATE,
                   t.WORKSPACE_APPLY_EDIT):
        client.protocol.fm._features[method] = never  # replaces pytest-lsp's answering handlers
    return client


@pytest.fixture
async def client(tmp_path: Path):
    """Driven by hand rather than by pytest-lsp's fixture: the never-answering handlers
    are still pending at the end, which that fixture reports as an error."""
    lsp_client = silent_client_factory()
    await lsp_client.start_io(*SERVER_COMMAND)
    project = copy_example(tmp_path)
    lsp_client.project = project
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=project.as_uri(),
        initialization_options={"trusted": False}))
    yield lsp_client
    await asyncio.wait_for(lsp_client.shutdown_session(), 30)
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task() and "never" in repr(task.get_coro()):
            task.cancel()


def open_file(client: LanguageClient, path: Path, text: str | None = None) -> None:
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=path.as_uri(), language_id="python", version=1, text=text if text is not None else path.read_text())))


async def hover_works(client: LanguageClient) -> bool:
    head = file_of(client.project, HEAD_A)
    open_file(client, head)
    line = next(n for n, text in enumerate(head.read_text().splitlines()) if text.startswith("down_revision"))
    col = head.read_text().splitlines()[line].index("'6a49") + 2
    result = await asyncio.wait_for(client.text_document_hover_async(t.HoverParams(
        text_document=t.TextDocumentIdentifier(uri=head.as_uri()), position=t.Position(line, col))), 10)
    return result is not None and "add comments table" in result.contents.value


async def test_server_survives_faults_and_never_waits_on_a_silent_client(client: LanguageClient):
    # the server asked us for configuration / registration / progress and we never answer
    assert await hover_works(client)
    for uri in ("untitled:1", "file:///nowhere/x.py", "http://example.com/a.py", "file:///%ZZ", ""):
        result = await client.text_document_hover_async(t.HoverParams(
            text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(0, 0)))
        assert result is None
        actions = await client.text_document_code_action_async(t.CodeActionParams(
            text_document=t.TextDocumentIdentifier(uri=uri), range=t.Range(t.Position(0, 0), t.Position(0, 0)),
            context=t.CodeActionContext(diagnostics=[])))
        assert not actions
    # didChange for a document that was never opened, positions far outside the file
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=(client.project / "nope.py").as_uri(), version=3),
        content_changes=[t.TextDocumentContentChangeWholeDocument(text="x")]))
    head = file_of(client.project, HEAD_A)
    await client.text_document_hover_async(t.HoverParams(
        text_document=t.TextDocumentIdentifier(uri=head.as_uri()), position=t.Position(10_000, 10_000)))
    # a cancelled request does not disturb the server
    future = client.protocol.send_request(t.WORKSPACE_SYMBOL, t.WorkspaceSymbolParams(query=""))
    client.protocol.notify(t.CANCEL_REQUEST, t.CancelParams(id=987654))
    await asyncio.sleep(0.1)
    future.cancel()
    assert await hover_works(client)


def test_exit_without_shutdown_and_double_shutdown(tmp_path: Path):
    """Raw JSON-RPC over stdio: exit before shutdown ends the process (code 1), shutdown
    twice and requests after shutdown get answers, never a hang."""
    def frame(payload: dict) -> bytes:
        body = json.dumps(payload).encode()
        return f"Content-Length: {len(body)}\r\n\r\n".encode() + body

    def answered(stdout: bytes) -> set:
        ids, rest = set(), stdout
        while b"\r\n\r\n" in rest:
            header, rest = rest.split(b"\r\n\r\n", 1)
            length = int(header.split(b"Content-Length:")[1].split(b"\r\n")[0])
            message, rest = json.loads(rest[:length]), rest[length:]
            if "id" in message and "method" not in message:
                ids.add(message["id"])
        return ids

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}}}
    proc = subprocess.run(SERVER_COMMAND, input=frame(init) + frame({"jsonrpc": "2.0", "method": "exit"}),
                          capture_output=True, timeout=60)
    assert proc.returncode == 1 and answered(proc.stdout) == {1}
    messages = [init, {"jsonrpc": "2.0", "method": "initialized", "params": {}},
                {"jsonrpc": "2.0", "id": 10, "method": "migrationLsp/noSuchMethod", "params": {"x": 1}},
                {"jsonrpc": "2.0", "id": 11, "method": "textDocument/hover", "params": {"bogus": True}},
                {"jsonrpc": "2.0", "id": 12, "method": "textDocument/definition", "params": [1, 2, 3]},
                {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": 5}},
                {"jsonrpc": "2.0", "id": 13, "method": "workspace/symbol", "params": {"query": ""}},
                {"jsonrpc": "2.0", "id": 2, "method": "shutdown"}, {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
                {"jsonrpc": "2.0", "id": 4, "method": "textDocument/hover",
                 "params": {"textDocument": {"uri": "file:///x.py"}, "position": {"line": 0, "character": 0}}},
                {"jsonrpc": "2.0", "method": "exit"}]
    proc = subprocess.run(SERVER_COMMAND, input=b"".join(frame(m) for m in messages), capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert answered(proc.stdout) == {1, 2, 3, 4, 10, 11, 12, 13}  # every request, errors included
    # garbage on stdin: the server ends instead of spinning
    proc = subprocess.run(SERVER_COMMAND, input=b"Content-Length: 5\r\n\r\n{{{{{" + b"\x00" * 100,
                          capture_output=True, timeout=60)
    assert proc.returncode in (0, 1)


# --------------------------------------------------------------------------- trust & containment


SENTINEL_MODELS = """
import pathlib
pathlib.Path(__file__).parent.parent.joinpath("SENTINEL_models").write_text("ran")
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
"""


def _sentinel_project(tmp_path: Path) -> Path:
    project = copy_example(tmp_path)
    (project / "app" / "models.py").write_text(SENTINEL_MODELS)
    env_py = project / "migrations" / "env.py"
    env_py.write_text('import pathlib\npathlib.Path(__file__).parent.parent.joinpath("SENTINEL_env").write_text("ran")\n'
                      + env_py.read_text())
    migration = file_of(project, HEAD_A)
    migration.write_text(migration.read_text().replace(
        "from alembic import op",
        'from alembic import op\nimport pathlib\npathlib.Path(__file__).parents[2].joinpath("SENTINEL_migration")'
        '.write_text("ran")'))
    return project


def sentinels(project: Path) -> list[str]:
    return sorted(p.name for p in project.glob("SENTINEL_*"))


def _network_guard(tmp_path: Path) -> dict[str, str]:
    """sitecustomize that records (and refuses) any socket connection of the server."""
    guard = tmp_path / "guard"
    guard.mkdir()
    marker = tmp_path / "NETWORK_USED"
    (guard / "sitecustomize.py").write_text(
        "import socket\n"
        "_orig = socket.socket.connect\n"
        "def _connect(self, address):\n"
        f"    open({str(marker)!r}, 'a').write(repr(address) + '\\n')\n"
        "    raise OSError('network disabled by test')\n"
        "socket.socket.connect = _connect\n"
        "socket.socket.connect_ex = _connect\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(guard) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_untrusted_cli_and_trusted_cli(tmp_path: Path):
    project = _sentinel_project(tmp_path)
    out = subprocess.run([sys.executable, "-m", "migration_lsp", "check", "--no-import", "--format", "json"],
                         cwd=project, capture_output=True, text=True, timeout=120)
    codes = [d["code"] for d in json.loads(out.stdout)["diagnostics"]]
    assert "G001" in codes and "M004" in codes
    assert sentinels(project) == []
    # trusted: as Alembic's autogenerate, env.py runs and the models and revision modules are imported,
    # in a child process (no upgrade() runs)
    subprocess.run([sys.executable, "-m", "migration_lsp", "check"], cwd=project, capture_output=True, timeout=120)
    assert sentinels(project) == ["SENTINEL_env", "SENTINEL_migration", "SENTINEL_models"]


async def test_untrusted_server_runs_nothing_writes_nothing_and_stays_offline(tmp_path: Path):
    project = _sentinel_project(tmp_path)
    before = tree_state(project)
    env = _network_guard(tmp_path)
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND, env=env)
    try:
        await client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("neovim@v0.11.0"), root_uri=project.as_uri(),
            initialization_options={"trusted": False}))
        typo = file_of(project, TYPO_REV)
        client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
            uri=typo.as_uri(), language_id="python", version=1, text=typo.read_text())))
        for _ in range(200):
            if any(d.code == "G002" for d in client.diagnostics.get(typo.as_uri(), [])):
                break
            await asyncio.sleep(0.05)
        assert any(d.code == "G002" for d in client.diagnostics[typo.as_uri()])
        env_py = (project / "migrations" / "env.py").as_uri()
        for _ in range(200):  # the schema pass follows the graph pass
            if client.diagnostics.get(env_py):
                break
            await asyncio.sleep(0.05)
        assert any(d.code == "M004" and "not trusted" in d.message for d in client.diagnostics.get(env_py, []))
        # every kind of request, including ones that build new files as edits
        doc = t.TextDocumentIdentifier(uri=typo.as_uri())
        for line in range(0, 30):
            await client.text_document_code_action_async(t.CodeActionParams(
                text_document=doc, range=t.Range(t.Position(line, 0), t.Position(line, 0)),
                context=t.CodeActionContext(diagnostics=[])))
            await client.text_document_hover_async(t.HoverParams(text_document=doc, position=t.Position(line, 20)))
        await client.workspace_execute_command_async(t.ExecuteCommandParams(command="migrationLsp.showGraph"))
        await asyncio.sleep(1.0)
    finally:
        await client.shutdown_session()
        await client.stop()
    assert sentinels(project) == []
    assert tree_state(project) == before  # nothing written, nothing touched
    assert not (tmp_path / "NETWORK_USED").exists()


async def test_300_random_edits_through_a_raw_client_end_equal_to_check(tmp_path: Path):
    """A long adversarial session over stdio (incremental didChange events, junk, NULs,
    unbalanced brackets, non-ASCII): once the edits pause, the pushed diagnostics equal
    `migration-lsp check` of the final text."""
    import random

    project = copy_example(tmp_path)
    rng = random.Random(7)
    files = sorted((project / "migrations" / "versions").glob("*.py"))
    pieces = ["'", '"', "(", ")", "\n", "\x00", "é", "🎉", " = ", "None", "'2d91aa861ea7'", "bd47", "#", "\\",
              "op.drop_table('posts')\n", "def downgrade():\n    pass\n", "revision = 'x'\n", ""]
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND)
    try:
        await client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("neovim@v0.11.0"), root_uri=project.as_uri(),
            initialization_options={"trusted": False}))
        texts = {f: f.read_text() for f in files}
        versions = {f: 1 for f in files}
        for f in files:
            client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
                uri=f.as_uri(), language_id="python", version=1, text=texts[f])))
        for _ in range(300):
            f = rng.choice(files)
            lines = texts[f].split("\n")
            line = rng.randrange(len(lines))
            col = rng.randrange(len(lines[line]) + 1)
            end_col = min(len(lines[line]), col + rng.choice([0, 0, 1, 3, 10]))
            new = rng.choice(pieces)
            start = sum(len(x) + 1 for x in lines[:line])
            texts[f] = texts[f][: start + col] + new + texts[f][start + end_col:]
            versions[f] += 1

            def units(s: str) -> int:  # the client negotiated utf-8 positions
                return len(s.encode("utf-8"))

            client.text_document_did_change(t.DidChangeTextDocumentParams(
                text_document=t.VersionedTextDocumentIdentifier(uri=f.as_uri(), version=versions[f]),
                content_changes=[t.TextDocumentContentChangePartial(
                    range=t.Range(t.Position(line, units(lines[line][:col])), t.Position(line, units(lines[line][:end_col]))),
                    text=new)]))
        for f in files:  # what the editor would save
            f.write_text(texts[f], encoding="utf-8", errors="surrogatepass")
        out = subprocess.run([sys.executable, "-m", "migration_lsp", "check", "--no-import", "--format", "json"],
                             cwd=project, capture_output=True, text=True, timeout=120)
        expected = {(Path(d["path"]).name, d["code"], d["line"] - 1, d["message"])
                    for d in json.loads(out.stdout)["diagnostics"] if d["code"] != "M004"}

        def pushed():
            return {(Path(uri).name, d.code, d.range.start.line, d.message)
                    for uri, ds in client.diagnostics.items() for d in ds if d.code != "M004"}

        for _ in range(200):  # the full pass follows 1 s after the last edit
            if pushed() == expected:
                break
            await asyncio.sleep(0.05)
        assert expected and pushed() == expected  # the session did break things, and we agree
        assert await asyncio.wait_for(client.workspace_symbol_async(t.WorkspaceSymbolParams(query="")), 10) is not None
    finally:
        await client.shutdown_session()
        await client.stop()
