"""The full pass runs on the server's event loop in steps (server.sliced): no step may do work
proportional to the whole history, or a keystroke landing on it waits for all of it (found by
the watchdog at 20,000 revisions: the revision keys' setup, taking the memo's states into the
replay, letting go of the memo's schemas and merging each file's findings held the loop 30-160 ms
each; RESULTS.md, "the last slow keystrokes"). Counted here with small step sizes, not timed."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from migration_lsp import core
from migration_lsp import engine as engine_pkg
from conftest import numbered_revision
from migration_lsp.engine import Engine, memo, schema_pass

REVISIONS = 30
STEP = 3


def _revision(n: int) -> str:
    """A table, then one NOT NULL column added per revision (S001 each)."""
    return numbered_revision(n, f"step {n}", "    op.create_table('t', sa.Column('id', sa.Integer(), primary_key=True))\n"
                             if n == 0 else f"    op.add_column('t', sa.Column('c{n}', sa.Integer(), nullable=False))\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n"
                                          "sqlalchemy.url = postgresql://localhost/db\n")
    (tmp_path / "migrations" / "env.py").write_text(
        "from alembic import context\n\ndef run():\n    context.configure(connection=None, target_metadata=None)\n")
    for n in range(REVISIONS):
        (versions / f"{n:012d}_s{n}.py").write_text(_revision(n))
    return tmp_path


@pytest.fixture
def small_steps(monkeypatch):
    monkeypatch.setattr(schema_pass, "KEY_STEP", STEP)
    monkeypatch.setattr(engine_pkg, "KEY_STEP", STEP)
    monkeypatch.setattr(memo, "EVICT_STEP", STEP)


def test_the_revision_keys_setup_yields_before_any_key(project: Path, small_steps):
    engine = Engine([project], trusted=False, cache=False)
    graph = engine.snapshot(quick=True).environments[0].graph
    keys: dict[str, str] = {}
    written_at_each_yield = [len(keys) for _ in engine.schema.revision_keys(graph, "salt", keys)]
    assert len(keys) == REVISIONS
    assert written_at_each_yield[:REVISIONS // STEP] == [0] * (REVISIONS // STEP)  # the setup, in steps
    assert max(b - a for a, b in pairwise(written_at_each_yield)) <= STEP


def test_the_replay_takes_in_the_memo_in_steps(project: Path, small_steps, monkeypatch):
    engine = Engine([project], trusted=False, cache=False)
    engine.snapshot()  # every revision's state in the memo
    state = engine.snapshot(quick=True).environments[0]
    keys: dict[str, str] = {}
    for _ in engine.schema.revision_keys(state.graph, engine_pkg.environment_salt(state.env), keys):
        pass
    from migration_lsp.replay import Replay

    adopted: list[int] = [0]
    adopt = Replay.adopt

    def counted(self, *args):
        adopted[0] += 1
        return adopt(self, *args)

    monkeypatch.setattr(Replay, "adopt", counted)
    engine.schema.replays.clear()  # (a replay from scratch: it takes in every state the memo holds)
    maker = engine.schema.replay_factory(state.graph, (project.resolve(), state.env.name), keys, state.env.dialect)
    per_step = []
    for _ in maker.steps():
        per_step.append(adopted[0])
        adopted[0] = 0
    per_step.append(adopted[0])
    assert sum(per_step) == REVISIONS and max(per_step) <= STEP
    assert maker() is maker() and maker.made is not None


def test_letting_go_of_schemas_yields_while_it_looks(small_steps):
    revisions = memo.RevisionMemo()
    for n in range(40):
        revisions.entry(f"k{n}")  # (no schema to let go: the old code never yielded here)
    assert sum(1 for _ in revisions.retain((Path("/x"), "env"), {f"k{n}" for n in range(40)})) >= 40 // STEP - 1


def test_no_step_of_a_pass_merges_more_than_a_step_of_files(project: Path, small_steps, monkeypatch):
    """Each revision also reports S018 on env.py: their findings are merged per file at the end of
    the pass, KEY_STEP files per step (sort_key is called once per finding merged)."""
    engine = Engine([project], trusted=False, cache=False)
    engine.snapshot(quick=True)
    calls = [0]
    sort_key = core.Diagnostic.sort_key

    def counted(self):
        calls[0] += 1
        return sort_key(self)

    monkeypatch.setattr(core.Diagnostic, "sort_key", counted)
    per_step = []
    for _ in engine.snapshot_steps():
        per_step.append(calls[0])
        calls[0] = 0
    snapshot = engine.snapshot()
    env_py = (project / "migrations" / "env.py").resolve()
    s018 = [d for d in snapshot.diagnostics if d.code == "S018"]
    assert s018 and all(d.path == env_py for d in s018)
    grouped = sum(1 for path in snapshot.diagnostics_by_path() if path != env_py)
    assert grouped >= REVISIONS - 1  # (the case: nearly every file's findings are merged at the end)
    per_revision = max(len(v) for p, v in snapshot.diagnostics_by_path().items() if p != env_py) + len(s018)
    assert max(per_step) <= STEP * per_revision  # (the old code: every merged file's findings in one step)


def test_a_new_replay_takes_over_the_previous_one_in_steps(project: Path):
    """Replay(graph, previous) compares the graph with the previous one over the whole history;
    take_over() does the same in steps, with the same outcome."""
    from migration_lsp.replay import Replay

    engine = Engine([project], trusted=False, cache=False)
    old_graph = engine.snapshot(quick=True).environments[0].graph
    previous = Replay(old_graph)
    previous.at_heads()
    middle = sorted(old_graph.by_id)[REVISIONS // 2]
    path = old_graph.by_id[middle].path
    engine.set_buffer(path, path.read_text() + "\n# edited\n")
    graph = engine.snapshot(quick=True).environments[0].graph
    whole = Replay(graph, previous)
    stepped = Replay(graph)
    yields = sum(1 for _ in stepped.take_over(previous, STEP))
    assert yields >= REVISIONS // STEP
    kept = {rev for rev in graph.by_id if whole.result(rev) is not None}
    assert kept == {rev for rev in graph.by_id if stepped.result(rev) is not None}
    assert 0 < len(kept) < REVISIONS  # (what is below the edit is kept, the rest replayed again)
    assert all(whole.result(rev) == stepped.result(rev) for rev in kept)
