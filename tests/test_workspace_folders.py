"""The server's workspace handling (issue 13): rescans (new files, changed configs) walk the
disk in a thread, never on the event loop, and a newer one supersedes an older one without
losing the edits made meanwhile; workspace folders are added and removed without rebuilding
the others; a folder nested in another keeps its own settings. In-process tests count the
work (walks per thread, environments built); the pytest-lsp ones drive the real server."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from lsprotocol import types as t
from pytest_lsp import client_capabilities, make_test_lsp_client

from lsp_helpers import HEAD_A, SERVER_COMMAND, TYPO_REV, copy_example, file_of
from migration_lsp import server as srv
from migration_lsp.engine import Engine, stored
from migration_lsp.features import uri_to_path

NEW_REV = "5a1e0c0ffee1"


def _new_revision(project: Path, rev: str = NEW_REV, down: str = HEAD_A) -> Path:
    """A revision on top of HEAD_A, written as the editor saves a new file."""
    path = project / "migrations" / "versions" / f"{rev}_more.py"
    path.write_text(f'"""more\n\nRevision ID: {rev}\nRevises: {down}\n"""\nfrom alembic import op\n\n'
                    f"revision = '{rev}'\ndown_revision = '{down}'\nbranch_labels = None\ndepends_on = None\n\n\n"
                    "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n")
    return path.resolve()


def _server(*roots: Path) -> tuple[srv.MigrationServer, list[tuple[Path, list]]]:
    """A server on a real engine, publishing into a list (no client)."""
    ls = srv.MigrationServer()
    ls.roots = [r.resolve() for r in roots]
    ls.engine = Engine(ls.roots, trusted=False, cache=False)
    ls.engine.rebuild_off_loop = True  # (as on_initialized sets it)
    ls.engine.snapshot()
    ls.protocol.client_capabilities = t.ClientCapabilities()
    ls.ready.set()
    published: list[tuple[Path, list]] = []
    ls.text_document_publish_diagnostics = lambda params: published.append(  # type: ignore[method-assign]
        (uri_to_path(params.uri), params.diagnostics))
    ls.refresh()
    if ls.full_pass is not None:
        ls.full_pass.cancel()
    return ls, published


def _walks(monkeypatch) -> list[int]:
    """The thread of every walk of a workspace root (discovery's first step)."""
    threads: list[int] = []
    real = stored.walk

    def walk(root, *args, **kwargs):
        threads.append(threading.get_ident())
        return real(root, *args, **kwargs)

    monkeypatch.setattr(stored, "walk", walk)
    return threads


def _heads(ls: srv.MigrationServer) -> set[str]:
    return {h for state in ls.engine.latest.environments for h in state.graph.heads}


def _saved(path: Path) -> t.DidSaveTextDocumentParams:
    return t.DidSaveTextDocumentParams(text_document=t.TextDocumentIdentifier(uri=path.as_uri()))


async def test_a_save_that_needs_a_rescan_walks_off_the_event_loop(tmp_path: Path, monkeypatch):
    project = copy_example(tmp_path)
    ls, _ = _server(project)
    walks = _walks(monkeypatch)
    new = _new_revision(project)
    srv.did_save(ls, _saved(new))  # a file discovery has not seen: a rescan
    assert walks == []  # the handler returned without walking the workspace
    assert ls.rescan_task is not None
    await ls.rescan_task
    assert len(walks) == 1 and walks[0] != threading.get_ident()  # walked once, in another thread
    assert ls.engine.tracks(new) and NEW_REV in _heads(ls)  # and taken in: the new head is published


async def test_a_newer_rescan_supersedes_an_older_one_and_edits_are_kept(tmp_path: Path, monkeypatch):
    """The first walk finishes after a second file appears and a buffer is edited: its result
    (without the second file) is dropped, the newer rescan's is taken in, the edit stays."""
    project = copy_example(tmp_path)
    ls, _ = _server(project)
    walks = _walks(monkeypatch)
    first_done, go_on = threading.Event(), threading.Event()
    real = stored.walk

    def slow_walk(root, *args, **kwargs):
        scan = real(root, *args, **kwargs)
        if len(walks) == 1:  # the first walk: hold its (soon outdated) result
            first_done.set()
            go_on.wait(10)
        return scan

    monkeypatch.setattr(stored, "walk", slow_walk)
    adopted: list = []
    real_adopt = ls.engine.adopt
    monkeypatch.setattr(ls.engine, "adopt", lambda plan, found: adopted.append(real_adopt(plan, found)) or adopted[-1])
    new = _new_revision(project)
    srv.did_save(ls, _saved(new))
    while not first_done.is_set():
        await asyncio.sleep(0.01)
    # meanwhile: another file appears (seen by the file watcher) and an open file is edited
    newer = _new_revision(project, "6b2f1d0ffee2", NEW_REV)
    srv.did_change_watched(ls, t.DidChangeWatchedFilesParams(changes=[
        t.FileEvent(uri=newer.as_uri(), type=t.FileChangeType.Created)]))
    typo = file_of(project, TYPO_REV).resolve()
    fixed = typo.read_text().replace("bd474000086b", "bd474000068b")
    ls.engine.set_buffer(typo, fixed)
    ls.refresh()
    go_on.set()
    await ls.rescan_task
    assert adopted[0] is None and adopted[-1] is not None and len(adopted) == 2  # the first result dropped
    assert len(walks) == 2 and threading.get_ident() not in walks
    assert ls.engine.tracks(newer) and ls.engine.tracks(new)
    assert _heads(ls) == {"6b2f1d0ffee2", TYPO_REV}  # the typo fixed in the buffer: one history, two heads
    assert ls.engine.latest.script(typo).text == fixed
    assert "G002" not in {d.code for d in ls.engine.latest.diagnostics}


async def test_adding_and_removing_a_folder_leaves_the_others_alone(tmp_path: Path, monkeypatch):
    alpha, beta = copy_example(tmp_path / "alpha"), copy_example(tmp_path / "beta")
    ls, published = _server(alpha)
    built: list[Path] = []
    real_build = ls.engine._build

    def build(env, key, *args):
        built.append(key[0])
        return (yield from real_build(env, key, *args))

    monkeypatch.setattr(ls.engine, "_build", build)
    srv.did_change_folders(ls, t.DidChangeWorkspaceFoldersParams(event=t.WorkspaceFoldersChangeEvent(
        added=[t.WorkspaceFolder(uri=beta.as_uri(), name="beta")], removed=[])))
    while ls.rescan_task is None or not ls.rescan_task.done():
        await asyncio.sleep(0.01)
    ls.full_pass.cancel()
    await ls._start_full_pass()  # (as after the typing pause)
    assert built and set(built) == {beta.resolve()}  # beta built (quick, then full); alpha kept its state
    beta_typo = file_of(beta, TYPO_REV).resolve()
    assert any(path == beta_typo and {d.code for d in ds} >= {"G001", "G002"} for path, ds in published)
    assert {s.env.root for s in ls.engine.latest.environments} == {alpha.resolve(), beta.resolve()}

    published.clear()
    built.clear()
    srv.did_change_folders(ls, t.DidChangeWorkspaceFoldersParams(event=t.WorkspaceFoldersChangeEvent(
        added=[], removed=[t.WorkspaceFolder(uri=alpha.as_uri(), name="alpha")])))
    alpha_typo = file_of(alpha, TYPO_REV).resolve()
    assert (alpha_typo, []) in published  # cleared at once
    assert not any(path.is_relative_to(beta.resolve()) for path, _ in published)  # beta's stand
    assert {s.env.root for s in ls.engine.latest.environments} == {beta.resolve()}
    assert alpha.resolve() not in ls.engine.workspace.stores and not any(k[0] == alpha.resolve() for k in ls.engine._states)
    if ls.rescan_task is not None:
        await ls.rescan_task
    assert built == []  # nothing was built again for beta
    if ls.full_pass is not None:
        ls.full_pass.cancel()


def test_an_environment_takes_the_settings_of_its_innermost_folder(tmp_path: Path):
    outer = copy_example(tmp_path / "outer")
    inner = copy_example(outer / "vendored")
    engine = Engine([outer, inner], trusted=False, cache=False, folder_overrides={
        outer: {"ignore": ["G002"]}, inner: {"ignore": ["G001"]}})
    assert engine.roots == (outer.resolve(),)  # discovered once, from the outer folder
    codes = {state.env.config_path: {d.code for d in state.diagnostics} for state in engine.snapshot().environments}
    outer_codes, inner_codes = codes[outer.resolve() / "alembic.ini"], codes[inner.resolve() / "alembic.ini"]
    assert "G001" in outer_codes and "G002" not in outer_codes
    assert "G002" in inner_codes and "G001" not in inner_codes


# --------------------------------------------------------------------------- the real server


async def _wait(predicate, timeout: float) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def _codes(client, project: Path, but: Path | None = None) -> set[str]:
    """The codes published for files below `project` (and not below `but`)."""
    return {str(d.code) for uri, ds in client.diagnostics.items() if uri.startswith(project.as_uri() + "/")
            and not (but is not None and uri.startswith(but.as_uri() + "/")) for d in ds}


async def test_folders_added_and_removed_over_the_protocol(tmp_path: Path):
    alpha, beta = copy_example(tmp_path / "alpha"), copy_example(tmp_path / "beta")
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND)
    try:
        result = await client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            workspace_folders=[t.WorkspaceFolder(uri=alpha.as_uri(), name="alpha")],
            initialization_options={"trusted": False, "settings": {"verify": "off"}}))
        folders = result.capabilities.workspace.workspace_folders
        assert folders.supported and folders.change_notifications  # the client need not restart us
        await _wait(lambda: {"G001", "G002"} <= _codes(client, alpha), timeout=30)
        client.workspace_did_change_workspace_folders(t.DidChangeWorkspaceFoldersParams(
            event=t.WorkspaceFoldersChangeEvent(added=[t.WorkspaceFolder(uri=beta.as_uri(), name="beta")],
                                                removed=[])))
        await _wait(lambda: {"G001", "G002"} <= _codes(client, beta), timeout=30)
        rescans = [m.message for m in client.log_messages if m.message.startswith("rescan:")]
        assert rescans and str(beta.resolve()) in rescans[-1] and str(alpha.resolve()) not in rescans[-1]

        client.workspace_did_change_workspace_folders(t.DidChangeWorkspaceFoldersParams(
            event=t.WorkspaceFoldersChangeEvent(added=[], removed=[t.WorkspaceFolder(uri=alpha.as_uri(),
                                                                                     name="alpha")])))
        await _wait(lambda: not _codes(client, alpha), timeout=30)  # published empty
        assert {"G001", "G002"} <= _codes(client, beta)
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_a_nested_folder_keeps_its_own_settings_over_the_protocol(tmp_path: Path):
    outer = copy_example(tmp_path / "outer")
    inner = copy_example(outer / "vendored")
    client = make_test_lsp_client()
    workspace = {"verify": "off"}
    client.set_configuration(workspace, section="migrationLsp")
    client.set_configuration({**workspace, "ignore": ["G002"]}, section="migrationLsp", scope_uri=outer.as_uri())
    client.set_configuration({**workspace, "ignore": ["G001"]}, section="migrationLsp", scope_uri=inner.as_uri())
    await client.start_io(*SERVER_COMMAND)
    try:
        await client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            workspace_folders=[t.WorkspaceFolder(uri=u.as_uri(), name=u.parent.name) for u in (outer, inner)],
            initialization_options={"trusted": False, "settings": workspace}))

        def outer_only() -> set[str]:
            return _codes(client, outer, but=inner)

        await _wait(lambda: "G002" in _codes(client, inner) and "G001" in outer_only()
                    and "G002" not in outer_only() and "G001" not in _codes(client, inner), timeout=30)
    finally:
        await client.shutdown_session()
        await client.stop()
