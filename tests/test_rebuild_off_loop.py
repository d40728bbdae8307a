"""Issue 13: after a base branch moved or a rescan that changed environments, every affected
environment is built anew in another thread (engine.rebuilds.Rebuild) and only taken in on the
event loop; requests only read snapshots. Counted, never timed: each from-scratch graph build
records the thread it ran on."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import add_revision, git, migration_text
from lsprotocol import types as t

from migration_lsp import server as srv
from migration_lsp.engine import Engine
from migration_lsp.engine.graph_index import GraphIndex

Key = tuple[Path, str]


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """The thread of every environment's revision graph built anew (not patched)."""
    seen: list[int] = []
    graph = GraphIndex.graph

    def recording(scripts, previous, positions=None):
        built, pairs = graph(scripts, previous, positions)
        if pairs is None:  # (no previous state, or more files changed than a patch takes)
            seen.append(threading.get_ident())
        return built, pairs

    monkeypatch.setattr(GraphIndex, "graph", staticmethod(recording))
    return seen


def codes(engine: Engine, code: str = "G011") -> list[tuple[Path, str]]:
    return sorted((d.path, d.message) for d in engine.snapshot(quick=True).diagnostics if d.code == code)


def off_loop(root: Path) -> Engine:
    """An engine that builds environments anew in a thread, as the server's does."""
    engine = Engine([root], cache=False, trusted=False)
    engine.rebuild_off_loop = True
    return engine


@pytest.fixture
def engine(checkout: tuple[Path, Path], builds: list[int]) -> Engine:
    """bob's engine with its first (quick) snapshot built (recorded in `builds`)."""
    engine = off_loop(checkout[0])
    engine.snapshot(quick=True)
    return engine


def from_scratch(root: Path, buffers: dict[Path, str] | None = None) -> tuple:
    """The diagnostics a new engine gives for the same files (and open buffers)."""
    fresh = Engine([root], cache=False, trusted=False)
    for path, text in (buffers or {}).items():
        fresh.set_buffer(path, text)
    return fresh.snapshot(quick=True).diagnostics


def in_thread(fn):
    out = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join()
    return out[0]


def rebuilt(engine: Engine) -> set[Key] | None:
    """The rebuild planned now, run in another thread, taken in."""
    plan = engine.plan_rebuild()
    return engine.take_rebuild(plan, in_thread(plan.run))


def versions(root: Path) -> Path:
    """A project with no revision yet: its versions folder."""
    folder = root / "migrations" / "versions"
    folder.mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    return folder


def test_a_moved_base_is_built_in_another_thread_and_served_meanwhile(checkout, engine: Engine,
                                                                    builds: list[int]) -> None:
    bob, b1 = checkout
    git(bob, "fetch", "-q")
    assert engine.poll_git()
    loop = threading.get_ident()
    builds.clear()
    engine.base_moved()
    assert engine.rebuild_pending
    assert codes(engine) == []  # the previous picture is served, nothing is built here ...
    assert builds == []
    plan = engine.plan_rebuild()
    states = in_thread(plan.run)  # ... the environment is built in the rebuild's thread
    assert len(builds) == 1 and builds[0] != loop
    assert engine.take_rebuild(plan, states) == {(bob.resolve(), "migrations")}
    assert not engine.rebuild_pending
    assert [path for path, _ in codes(engine)] == [b1.resolve()]
    assert len(builds) == 1  # taking it in built nothing
    assert engine.snapshot(quick=True).diagnostics == from_scratch(bob)  # the same findings as a check from scratch


def test_edits_made_during_the_rebuild_are_patched_in_and_nothing_is_rebuilt_on_the_loop(
        checkout, engine: Engine, builds: list[int]) -> None:
    bob, b1 = checkout
    git(bob, "fetch", "-q")
    assert engine.poll_git()
    engine.base_moved()
    plan = engine.plan_rebuild()
    edited = b1.read_text().replace("add orders", "add the orders table")
    engine.set_buffer(b1, edited)  # typed while the rebuild runs: the kept state is patched
    assert engine.snapshot(quick=True).script(b1.resolve()).text == edited
    states = in_thread(plan.run)
    loop = threading.get_ident()
    assert engine.take_rebuild(plan, states) is not None
    snapshot = engine.snapshot(quick=True)
    assert snapshot.script(b1.resolve()).text == edited  # the edit is not lost by taking the rebuild in
    assert builds.count(loop) == 1  # (the engine's first build only)
    assert snapshot.diagnostics == from_scratch(bob, {b1: edited})


def test_a_rebuild_superseded_by_a_newer_one_is_dropped(engine: Engine) -> None:
    engine.base_moved()
    old = engine.plan_rebuild()
    states = old.run()
    engine.base_moved()  # moved again meanwhile
    assert engine.take_rebuild(old, states) is None and engine.rebuild_pending
    assert rebuilt(engine) is not None and not engine.rebuild_pending  # (the newer one)


def test_a_rescan_that_rebuilds_everything_does_it_off_the_loop(checkout, engine: Engine,
                                                                builds: list[int]) -> None:
    bob, _ = checkout
    added = add_revision(bob, "b2", "b1", "add items")  # a file created outside the editor
    loop = threading.get_ident()
    builds.clear()
    engine.want_rescan()  # (clear: every environment is built anew)
    plan = engine.plan_rescan()
    assert engine.adopt(plan, in_thread(plan.run)) == {(bob.resolve(), "migrations")}
    assert engine.snapshot(quick=True).script(added.resolve()) is None  # served as it was
    assert rebuilt(engine) is not None
    assert engine.snapshot(quick=True).script(added.resolve()) is not None
    assert len(builds) == 1 and loop not in builds


def test_a_file_created_in_the_editor_during_the_rebuild_makes_it_run_again(checkout, engine: Engine) -> None:
    bob, _ = checkout
    engine.base_moved()
    plan = engine.plan_rebuild()
    new = (bob / "migrations" / "versions" / "b2_items.py").resolve()
    engine.set_buffer(new, add_revision(bob, "b2", "b1", "items").read_text())
    new.unlink()  # (only in the editor)
    states = plan.run()
    assert engine.take_rebuild(plan, states) == set() and engine.rebuild_pending  # built without it: again
    assert rebuilt(engine) and engine.snapshot(quick=True).script(new) is not None


# ---------------------------------------------------------------- the server


def _server(root: Path) -> srv.MigrationServer:
    ls = srv.MigrationServer()
    ls.engine = off_loop(root)
    ls.pull = True  # (nothing is pushed to a client that is not there)
    ls.protocol.client_capabilities = t.ClientCapabilities()
    ls.ready.set()
    return ls


async def test_the_server_builds_a_moved_base_off_the_loop(checkout, builds: list[int]) -> None:
    bob, b1 = checkout
    ls = _server(bob)
    ls.refresh()
    assert not any(d.code == "G011" for d in ls.engine.latest.diagnostics)
    loop = threading.get_ident()
    builds.clear()
    git(bob, "fetch", "-q")
    await srv._refresh_git(ls)  # git polled in a thread, the environment built in another
    assert len(builds) == 1 and builds[0] != loop
    assert [d.path for d in ls.published[b1.resolve()] if d.code == "G011"] == [b1.resolve()]
    ls.engine.base_moved()  # a full pass wanted meanwhile waits for the rebuild, building nothing on the loop
    snapshot = await ls.complete_snapshot()
    assert snapshot is not None and not ls.engine.rebuild_pending
    assert snapshot is ls.engine.latest and builds.count(loop) == 0 and len(builds) == 2


async def test_requests_before_the_first_snapshot_answer_empty_and_build_nothing(checkout, builds: list[int]) -> None:
    bob, b1 = checkout
    ls = _server(bob)
    assert ls.engine.latest is None  # (discovered, nothing built yet)
    doc = t.TextDocumentIdentifier(uri=b1.as_uri())
    answers = [
        await srv.on_hover(ls, t.HoverParams(text_document=doc, position=t.Position(0, 0))),
        await srv.on_definition(ls, t.DefinitionParams(text_document=doc, position=t.Position(0, 0))),
        await srv.on_code_action(ls, t.CodeActionParams(text_document=doc, range=t.Range(
            t.Position(0, 0), t.Position(1, 0)), context=t.CodeActionContext(diagnostics=[]))),
        await srv.on_workspace_symbol(ls, t.WorkspaceSymbolParams(query="b1")),
        (await srv.pull_document(ls, t.DocumentDiagnosticParams(text_document=doc))).items,
        (await srv.pull_workspace(ls, t.WorkspaceDiagnosticParams(previous_result_ids=[]))).items,
        srv.show_graph_command(ls),
        (await srv.status_command(ls))["environments"],
    ]
    assert all(not answer for answer in answers)
    assert builds == [] and ls.engine.builds == 0 and ls.engine.latest is None



def test_a_rebuild_after_a_base_move_keeps_the_schema_findings_until_the_full_pass(tmp_path: Path) -> None:
    """The base branch says nothing about the schema: the rebuilt state keeps the last full
    pass's findings (no flicker of every D/S diagnostic after a fetch), except in a file whose
    text changed meanwhile."""
    folder = versions(tmp_path)
    first = folder / "a1_users.py"
    first.write_text(migration_text("a1", None, upgrades="op.create_table('users')", downgrades="pass"))
    (folder / "a2_orders.py").write_text(migration_text("a2", "a1", upgrades="op.create_table('orders')",
                                                          downgrades="pass"))
    engine = off_loop(tmp_path)
    before = engine.snapshot().diagnostics  # the full pass
    assert {d.path.name for d in before if d.code == "D001"} == {"a1_users.py", "a2_orders.py"}
    engine.base_moved()
    plan = engine.plan_rebuild()
    engine.set_buffer(first, first.read_text() + "\n")  # (a text the full pass has not seen)
    engine.take_rebuild(plan, in_thread(plan.run))
    after = engine.snapshot(quick=True)
    assert after.environments[0].partial  # (no full pass since)
    assert {d.path.name for d in after.diagnostics if d.code == "D001"} == {"a2_orders.py"}
    assert [d for d in after.diagnostics if d.path.name == "a2_orders.py"] == [
        d for d in before if d.path.name == "a2_orders.py"]


def test_many_files_changed_on_disk_are_taken_in_by_a_rebuild_off_the_loop(tmp_path: Path, builds: list[int]) -> None:
    """A checkout or a pull rewrites more files than an edit patches into the graph: the
    environment is built anew in a thread (the loop keeps serving the previous picture, and
    an open buffer's edits); a file or two changed on disk is still patched in at once."""
    folder = versions(tmp_path)
    files = []
    for n in range(12):
        files.append(folder / f"r{n}_t.py")
        files[-1].write_text(migration_text(f"r{n}", f"r{n - 1}" if n else None, message=f"table {n}"))
    engine = off_loop(tmp_path)
    engine.snapshot(quick=True)
    loop = threading.get_ident()
    builds.clear()
    files[0].write_text(files[0].read_text().replace("table 0", "first table"))
    engine.file_changed(files[0])  # one file: patched in on the loop, nothing built anew
    assert "first table" in engine.snapshot(quick=True).script(files[0].resolve()).text
    assert builds == [] and not engine.rebuild_pending
    for path in files[1:9]:  # eight files (more than PATCH_LIMIT): as a git checkout would
        path.write_text(path.read_text().replace("Revises:", "Revises: ").replace("table", "renamed table"))
        engine.file_changed(path)
    served = engine.snapshot(quick=True)
    assert builds == [] and engine.rebuild_pending  # nothing built on the loop ...
    assert "renamed" not in served.script(files[1].resolve()).text  # ... the previous picture is served
    assert rebuilt(engine) is not None
    assert len(builds) == 1 and loop not in builds
    snapshot = engine.snapshot(quick=True)
    assert all("renamed table" in snapshot.script(p.resolve()).text for p in files[1:9])
    assert snapshot.diagnostics == from_scratch(tmp_path)
