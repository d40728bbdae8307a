"""Requests never wait for the schema pass (issue 13): the server's handlers run in-process
on a real engine, and the engine's own counter of computed revisions says whether a request
ran any part of the pass. Counts, not times."""

from __future__ import annotations

import asyncio
import time
import threading
from pathlib import Path

import pytest
from lsprotocol import types as t

from conftest import numbered_revision
from migration_lsp import server as srv
from migration_lsp.engine import Engine

REVISIONS = 40


def _revision(n: int, downgrade: str | None = None) -> str:
    """A table per revision, dropped by its downgrade unless `downgrade` says otherwise."""
    return numbered_revision(n, f"table {n}", f"    op.create_table('t{n}', sa.Column('id', sa.Integer(), primary_key=True))\n",
                             downgrade if downgrade is not None else f"    op.drop_table('t{n}')\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n"
                                          "sqlalchemy.url = sqlite:///db.sqlite\n")
    (tmp_path / "migrations" / "env.py").write_text("target_metadata = None\n")
    for n in range(REVISIONS):
        last = n == REVISIONS - 1
        (versions / f"{n:012d}_t{n}.py").write_text(_revision(n, "    pass\n" if last else None))
    return tmp_path


def _server(root: Path) -> srv.MigrationServer:
    ls = srv.MigrationServer()
    ls.engine = Engine([root], trusted=False, cache=False)
    ls.pull = True  # (nothing is pushed to a client that is not there)
    ls.protocol.client_capabilities = t.ClientCapabilities(
        text_document=t.TextDocumentClientCapabilities(code_action=t.CodeActionClientCapabilities(
            resolve_support=t.ClientCodeActionResolveOptions(properties=["edit"]))),
        workspace=t.WorkspaceClientCapabilities(workspace_edit=t.WorkspaceEditClientCapabilities(
            document_changes=True, resource_operations=[t.ResourceOperationKind.Create])))
    ls.ready.set()
    return ls


def _last(root: Path) -> Path:
    return (root / "migrations" / "versions" / f"{REVISIONS - 1:012d}_t{REVISIONS - 1}.py").resolve()


def _edit_first(ls: srv.MigrationServer, root: Path) -> None:
    """An edit at the bottom of the history: every revision above must be replayed again."""
    first = (root / "migrations" / "versions" / f"{0:012d}_t0.py").resolve()
    ls.engine.set_buffer(first, _revision(0).replace("primary_key=True)", "primary_key=True), sa.Column('x', sa.Text())"))


def _partial(ls: srv.MigrationServer) -> bool:
    return any(state.partial for state in ls.engine.snapshot(quick=True).environments)


async def _code_actions(ls: srv.MigrationServer, path: Path) -> list:
    snapshot = ls.engine.snapshot(quick=True)
    d001 = next(d for d in snapshot.diagnostics if d.code == "D001")
    r = t.Range(t.Position(d001.span.line, 0), t.Position(d001.span.line, 1))
    return await srv.on_code_action(ls, t.CodeActionParams(
        text_document=t.TextDocumentIdentifier(uri=path.as_uri()), range=r, context=t.CodeActionContext(diagnostics=[])))


async def test_code_action_after_an_edit_runs_no_part_of_the_pass(project: Path):
    ls = _server(project)
    ls.engine.snapshot()  # the first full pass: D001 on the last revision
    _edit_first(ls, project)
    before = ls.engine.computed_revisions
    actions = await _code_actions(ls, _last(project))
    fill = next(a for a in actions if a.title.startswith("Fill downgrade()"))
    assert fill.edit is None and fill.data is not None  # built when resolved
    assert ls.engine.computed_revisions == before  # no revision replayed or checked by the request
    assert _partial(ls)  # and the pass still to run

    # resolving runs the pass (in its slices) and builds the edit from the current schema
    resolved = await srv.on_code_action_resolve(ls, fill)
    assert ls.engine.computed_revisions >= before + REVISIONS  # every revision above the edit
    assert not _partial(ls)
    new_text = resolved.edit.document_changes[0].edits[0].new_text
    assert f"op.drop_table('t{REVISIONS - 1}')" in new_text


async def test_code_action_while_a_pass_runs_returns_before_it_ends(project: Path, monkeypatch):
    monkeypatch.setattr(srv, "SLICE_SECONDS", 0.0)  # the pass yields after every step
    ls = _server(project)
    ls.engine.snapshot()
    _edit_first(ls, project)
    workers: list = []  # the task that computed each revision
    real = ls.engine.schema._compute

    def compute(*args, **kwargs):
        workers.append(asyncio.current_task())
        return real(*args, **kwargs)

    monkeypatch.setattr(ls.engine.schema, "_compute", compute)
    ls._start_full_pass()
    while len(workers) < 3:  # the pass is under way
        await asyncio.sleep(0)
    me = asyncio.current_task()
    actions = await _code_actions(ls, _last(project))
    assert any(a.title.startswith("Fill downgrade()") for a in actions)
    assert not ls.full_task.done()  # the request did not wait for the pass
    hover = await srv.on_hover(ls, t.HoverParams(text_document=t.TextDocumentIdentifier(uri=_last(project).as_uri()),
                                                 position=t.Position(9, 20)))  # the id in down_revision
    assert hover is not None and not ls.full_task.done()
    await ls.full_task
    assert len(workers) >= REVISIONS and not _partial(ls)
    assert me not in workers and set(workers) == {ls.full_task}  # the requests computed nothing


async def test_git_is_polled_off_the_event_loop(project: Path, monkeypatch):
    ls = _server(project)
    threads: list[int] = []
    real = ls.engine.poll_git

    def poll() -> bool:
        threads.append(threading.get_ident())
        return real()

    monkeypatch.setattr(ls.engine, "poll_git", poll)
    await srv._refresh_git(ls)
    assert threads and threads[0] != threading.get_ident()


async def test_background_tasks_stay_referenced_until_they_end():
    ls = srv.MigrationServer()
    gate = asyncio.Event()
    task = ls.spawn(gate.wait())
    assert task in ls.tasks
    gate.set()
    await task
    await asyncio.sleep(0)
    assert task not in ls.tasks


class _LoopTurns:
    """Counts turns of the event loop (a task that only yields) and, per turn, the revisions
    replayed or checked in it: a request that ran the pass, or a replay, on the loop does
    all of it in one turn; one that runs it in slices does a revision or two per turn."""

    def __init__(self, monkeypatch) -> None:
        from migration_lsp.replay import Replay

        self.turn = 0
        self.work: dict[int, int] = {}
        real_replay = Replay._compute

        def replay(replay_self, rev):
            self.work[self.turn] = self.work.get(self.turn, 0) + 1
            return real_replay(replay_self, rev)

        monkeypatch.setattr(Replay, "_compute", replay)
        monkeypatch.setattr(srv, "SLICE_SECONDS", 0.0)  # every step of a sliced pass yields
        self._task = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            self.turn += 1
            await asyncio.sleep(0)

    def most(self) -> int:
        self._task.cancel()
        return max(self.work.values(), default=0)

    def total(self) -> int:
        return sum(self.work.values())


async def test_the_truth_pass_runs_the_schema_pass_in_slices(project: Path, monkeypatch):
    """_verify needs a complete snapshot and the schema at the heads: both are computed in
    slices between requests, not by a blocking engine.snapshot() on the loop."""
    ls = _server(project)
    ls.engine = Engine([project], trusted=True, cache=False)
    ls.trusted = True
    ls.engine.snapshot()
    _edit_first(ls, project)
    ls.refresh()  # (the quick snapshot of the edit, as didChange makes it)
    ran: list = []
    monkeypatch.setattr(ls.verifier, "jobs", lambda engine, snapshot: ran.append(snapshot) or [])
    turns = _LoopTurns(monkeypatch)
    before = ls.engine.computed_revisions
    await srv._verify(ls)
    assert ls.engine.computed_revisions >= before + REVISIONS  # the pass ran, for every revision
    assert ran and not any(state.partial for state in ran[0].environments)  # on a complete snapshot
    assert turns.total() >= REVISIONS and turns.most() <= 2  # a revision (or two) per turn of the loop


async def test_hover_after_a_start_from_the_cache_replays_in_slices(project: Path, monkeypatch):
    """A start whose full pass finds every result in the persistent cache replays nothing;
    hovering an op then needs the schema below it: replayed in slices, not on the loop by
    the feature's Replay.revision."""
    first = Engine([project], trusted=False)
    first.snapshot()
    first.save_cache()
    ls = _server(project)
    ls.engine = Engine([project], trusted=False)
    ls.engine.snapshot()
    assert ls.engine.computed_revisions == 0  # every revision's findings came from the cache
    builds = ls.engine.builds
    turns = _LoopTurns(monkeypatch)
    below = (project / "migrations" / "versions" / f"{REVISIONS - 2:012d}_t{REVISIONS - 2}.py").resolve()
    hover = await srv.on_hover(ls, t.HoverParams(text_document=t.TextDocumentIdentifier(uri=below.as_uri()),
                                                 position=t.Position(19, 8)))  # its downgrade's op.drop_table
    assert f"Table `t{REVISIONS - 2}` at this point of the history" in hover.contents.value  # the schema's answer
    assert turns.total() >= REVISIONS - 1  # the history below was replayed ...
    assert turns.most() <= 2  # ... a revision (or two) per turn of the loop
    assert ls.engine.builds == builds  # and no environment was built by the request


async def test_requests_read_the_latest_snapshot_and_build_nothing(project: Path):
    """Every request handler reads the snapshot the last change built: none of them builds
    an environment (Engine.builds) or checks a revision (computed_revisions), even when the
    engine's current snapshot is stale."""
    ls = _server(project)
    ls.engine.snapshot()
    last = _last(project)
    doc = t.TextDocumentIdentifier(uri=last.as_uri())
    _edit_first(ls, project)  # stale now, and no refresh: a request must not build the next one
    builds, computed = ls.engine.builds, ls.engine.computed_revisions
    everywhere = t.Range(t.Position(0, 0), t.Position(30, 0))
    answers = [
        await srv.on_hover(ls, t.HoverParams(text_document=doc, position=t.Position(9, 20))),
        await srv.on_definition(ls, t.DefinitionParams(text_document=doc, position=t.Position(9, 20))),
        await srv.on_references(ls, t.ReferenceParams(text_document=doc, position=t.Position(8, 14),
                                                      context=t.ReferenceContext(include_declaration=True))),
        await srv.on_completion(ls, t.CompletionParams(text_document=doc, position=t.Position(9, 17))),
        await srv.on_document_symbol(ls, t.DocumentSymbolParams(text_document=doc)),
        await srv.on_workspace_symbol(ls, t.WorkspaceSymbolParams(query="t1")),
        await srv.on_code_lens(ls, t.CodeLensParams(text_document=doc)),
        await srv.on_inlay_hint(ls, t.InlayHintParams(text_document=doc, range=everywhere)),
        await srv.on_code_action(ls, t.CodeActionParams(text_document=doc, range=everywhere,
                                                        context=t.CodeActionContext(diagnostics=[]))),
        await srv.pull_document(ls, t.DocumentDiagnosticParams(text_document=doc)),
        await srv.pull_workspace(ls, t.WorkspaceDiagnosticParams(previous_result_ids=[])),
        srv.show_graph_command(ls),
        await srv.status_command(ls),
        await srv.graph_request(ls),
    ]
    assert all(answer is not None for answer in answers)
    assert ls.engine.builds == builds and ls.engine.computed_revisions == computed


async def test_a_sweep_waits_for_an_idle_moment_after_a_complete_pass(project: Path, monkeypatch):
    """The collector sweep (engine.collector) is looked at after a complete pass that may
    have made it due, cancelled by an edit, and runs when the session stays idle."""
    from migration_lsp.engine.collector import FrozenGrowth

    monkeypatch.setattr(srv, "SWEEP_IDLE", 0.0)
    ls = _server(project)
    ls.collector = FrozenGrowth(growth=0.0, min_objects=-10**12)  # any count is due
    ls.cache_saved = time.monotonic()  # (no cache save due: it waits for the same idle moment)

    async def complete_pass() -> None:
        ls.refresh()  # a quick snapshot: the full pass is scheduled ...
        ls.full_pass.cancel()
        ls._start_full_pass()  # ... and run now
        await ls.full_task

    try:
        await complete_pass()
        assert ls.collector.baseline is None and ls.sweep is not None  # the first one: the baseline, when idle
        await asyncio.sleep(0.01)
        assert ls.collector.baseline is not None and ls.sweep is None
        _edit_first(ls, project)
        await complete_pass()
        assert ls.sweep is not None and ls.collector.sweeps == 0
        _edit_first(ls, project)
        ls.engine.set_buffer(_last(project), _last(project).read_text() + "\n")
        ls.refresh()  # an edit: not idle any more
        assert ls.sweep is None
        await complete_pass()
        assert ls.sweep is not None
        await asyncio.sleep(0.01)
        assert ls.sweep is None and ls.collector.sweeps == 1 and ls.collector.counts == 1
    finally:
        if ls.full_pass is not None:
            ls.full_pass.cancel()


async def test_the_cache_is_saved_at_an_idle_moment_not_at_the_end_of_a_pass(project: Path, monkeypatch):
    """The periodic save of the persistent cache (tens of milliseconds on the loop at 5,000
    revisions) waits, like the sweep, for SWEEP_IDLE with no change after a pass."""
    monkeypatch.setattr(srv, "SWEEP_IDLE", 0.0)
    ls = _server(project)
    saves: list[int] = []
    monkeypatch.setattr(ls.engine, "save_cache", lambda: saves.append(1))
    try:
        ls.refresh()
        ls.full_pass.cancel()
        ls._start_full_pass()
        await ls.full_task
        assert saves == [] and ls.sweep is not None  # due (never saved), not yet
        await asyncio.sleep(0.01)
        assert saves == [1] and ls.sweep is None
    finally:
        if ls.full_pass is not None:
            ls.full_pass.cancel()


async def test_a_keystroke_compares_only_the_files_it_can_change(project: Path):
    """After an edit the quick state says which files' diagnostics can differ from the
    state it was made from (EnvironmentState.delta): publishing compares those, not every
    file, and finds exactly what a comparison of every file finds."""
    ls = _server(project)
    ls.engine.snapshot()
    ls.refresh()  # published
    mid = (project / "migrations" / "versions" / f"{20:012d}_t20.py").resolve()
    for text in (_revision(20).replace(f"down_revision = '{19:012d}'", "down_revision = '00000000001x'"),
                 _revision(20)):  # broken (G002 here, G001 on the detached ones), then repaired
        old = dict(ls.published)
        ls.engine.set_buffer(mid, text)
        snapshot = ls.engine.snapshot(quick=True)
        by_path = snapshot.diagnostics_by_path()
        candidates = srv._delta(ls.published_states, snapshot.environments)
        assert candidates is not None and len(candidates) <= 4  # not one per file
        every = {p for p in set(old) | set(by_path) if old.get(p) != by_path.get(p)}
        assert mid in every
        assert set(ls._changed_paths(snapshot, by_path)) == every
        ls.refresh()
        assert ls.published == by_path


async def test_a_large_change_of_diagnostics_is_pushed_in_chunks_open_files_first(project: Path, monkeypatch):
    """A complete pass can change thousands of files' diagnostics at once: they are pushed
    PUBLISH_CHUNK files per turn of the event loop (a keystroke is answered in between), the
    open files first, and a file's newer diagnostics replace a version not sent yet."""
    monkeypatch.setattr(srv, "PUBLISH_CHUNK", 5)
    versions = project / "migrations" / "versions"
    for n in range(REVISIONS):  # every downgrade empty: every file has a finding
        (versions / f"{n:012d}_t{n}.py").write_text(_revision(n, "    pass\n"))
    ls = _server(project)
    ls.pull = False
    sent: list[tuple[Path, int]] = []
    monkeypatch.setattr(ls, "text_document_publish_diagnostics",
                        lambda params: sent.append((srv.uri_to_path(params.uri), len(params.diagnostics))))
    ls.engine.snapshot()
    ls.refresh()
    turns = 0
    while ls.unsent:
        await asyncio.sleep(0)
        turns += 1
    assert len({p for p, _ in sent}) == len(ls.published) > 5  # every file, in chunks
    assert turns >= len(ls.published) // 5 - 1
    sent.clear()
    monkeypatch.setattr(srv, "PUBLISH_CHUNK", 1)
    # a link broken in the middle, in an open buffer: it and the files it detaches change
    mid = (project / "migrations" / "versions" / f"{20:012d}_t20.py").resolve()
    ls.engine.set_buffer(mid, _revision(20).replace(f"down_revision = '{19:012d}'", "down_revision = '00000000001x'"))
    ls.refresh()
    assert sent == [(mid, sent[0][1])]  # the open file first, the rest on later turns
    assert ls.unsent  # (the revisions it detached: G001)
    ls.engine.set_buffer(mid, _revision(20))  # repaired before the rest went out
    ls.refresh()
    while ls.unsent:
        await asyncio.sleep(0)
    last = {}
    for path, count in sent:
        last[path] = count
    assert last == {p: len(ls.published.get(p, ())) for p in last}  # what the client holds now is current
    assert last[mid] == len(ls.published.get(mid, ()))
