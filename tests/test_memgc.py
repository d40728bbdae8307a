"""A long session's memory (issue 13): what dies must die without a full collection.

The server pauses the old generation of the collector during a full pass and freezes what
exists after it (engine.collector). What is frozen is never scanned again, so an object
that dies in a reference cycle after that is only freed by a full sweep, a pause of a
second at 5,000 revisions. These tests count, never time:

- cyclic garbage made during a pass is freed by the young collections, not frozen;
- edits that each make a text never seen before leave (next to) no cyclic garbage in the
  permanent generation: a create_table evaluated again from the same text shares the
  SQLAlchemy Table of its first evaluation (a Table is a knot of cycles);
- the memo keeps the replayed schemas of only REPLAY_SPARE entries no pass uses, and the
  persistent cache forgets what the memo evicts.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import sys
import warnings
import weakref
from pathlib import Path

import pytest
import sqlalchemy as sa

from migration_lsp.cache import Store
from migration_lsp.checks import history
from migration_lsp.engine import Engine
from migration_lsp.engine.collector import FrozenGrowth
from migration_lsp.engine.memo import REPLAY_SPARE, SPARE, RevisionMemo
from migration_lsp.graph import RevisionGraph
from migration_lsp.replay import Replay
from migration_lsp.scripts import parse_script

from conftest import REPO_ROOT, migration_text


@pytest.fixture
def collector_state():
    """The tests freeze and unfreeze: leave the interpreter's collector as it was found."""
    enabled = gc.isenabled()
    debug = gc.get_debug()
    yield
    gc.set_debug(debug)
    gc.garbage.clear()
    gc.unfreeze()
    if enabled:
        gc.enable()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_cyclic_garbage_made_during_a_pass_is_not_frozen(collector_state):
    """paused() collects the young generations: what a pass makes and soon drops in a cycle
    (SQL rendered for a rule, a throwaway Table) is freed there; the old policy (collector
    off, then freeze) froze it for good."""
    gc.collect()
    policy = FrozenGrowth()
    with policy.paused():
        kept = [_Node() for _ in range(50)]
        refs = [weakref.ref(_Node()) for _ in range(5_000)]  # each made and dropped at once
    # freed without a full collection (but the one in construction when a collection of the
    # middle generation runs: alive then, promoted to the old generation, frozen)
    assert sum(r() is not None for r in refs) <= 10
    assert gc.get_threshold()[2] < 1_000  # the old generation's threshold is back
    assert gc.isenabled() and all(n.me is n for n in kept)


def _generated(tmp_path: Path, revisions: int) -> tuple[Path, Path]:
    spec = importlib.util.spec_from_file_location("bench_generate", REPO_ROOT / "benchmarks" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_generate", module)
    spec.loader.exec_module(module)
    root = tmp_path / "gen"
    module.generate(root, revisions, 1)
    manifest = json.loads((root / ".bench.json").read_text())
    return root, (root / manifest["mid"]["path"]).resolve()


def test_unique_edits_leave_no_cyclic_garbage_in_the_frozen_generation(tmp_path, collector_state):
    """120 revisions, 8 edits of the mid-history file each making a text never seen before
    (the revisions above it are replayed and checked again, the memo evicts), each followed
    by a full pass under the server's policy. Then everything is unfrozen and collected once:
    what that finds died in a cycle after being frozen (before: 14,197 objects, 281 Tables)."""
    root, mid = _generated(tmp_path, 120)
    text = mid.read_text(encoding="utf-8")
    # S022's memos are process-wide and earlier tests in this process fill them: one reaching
    # its limit during these edits would release the pieces of an earlier test's states that
    # this test's first pass froze (garbage the collector's sweep frees), counted here as if
    # these edits had made it
    for memo in (history._CHUNKS, history._SUMMARIES, history._CONSTRAINTS):
        memo.clear()
    gc.collect()
    engine = Engine([root], cache=False, trusted=False)
    policy = FrozenGrowth()
    with policy.paused():
        engine.snapshot()
    for i in range(8):
        engine.set_buffer(mid, f"{text}\n# edit {i}\n")
        engine.snapshot(quick=True)
        with policy.paused():
            engine.snapshot()
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found = gc.collect()
    tables = sum(1 for o in gc.garbage if isinstance(o, (sa.Table, sa.MetaData)))
    gc.set_debug(0)
    gc.garbage.clear()
    assert tables <= 4  # (one in use when a young collection runs can be promoted, then die)
    assert found < 1_000


HISTORY = """
    op.create_table('users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('org_id', sa.Integer(), sa.ForeignKey('orgs.id'), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table('tags', sa.Column('id', sa.Integer()))
"""


def test_a_create_table_evaluated_again_shares_its_first_table(tmp_path):
    """Two replays that each evaluate the same text (the second after its ops were released)
    build their states on the same SQLAlchemy Tables; another text gets its own."""
    path = tmp_path / "a1_.py"
    text = migration_text("a1", None, upgrades=HISTORY)
    graphs = [RevisionGraph([parse_script(path, text)]) for _ in range(2)]
    edited = RevisionGraph([parse_script(path, text.replace("'tags'", "'labels'"))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second, other = (Replay(g).revision("a1").after for g in (*graphs, edited))
    for name in ("users", "tags"):
        a, b = first.table(name), second.table(name)
        assert a.columns[0].column.table is b.columns[0].column.table
        assert [c.name for c in a.columns] == [c.name for c in b.columns]
    assert other.table("users").columns[0].column.table is not first.table("users").columns[0].column.table
    fks = [c for c, _ in second.table("users").constraints if isinstance(c, sa.ForeignKeyConstraint)]
    assert [[e.target_fullname for e in c.elements] for c in fks] == [["orgs.id"]]


class _Schema:
    """Stands for a RevisionSchema (only its identity matters to the memo)."""


def test_the_memo_keeps_the_schemas_of_only_a_few_stale_entries():
    memo = RevisionMemo()
    env = (Path("/p"), "env")
    old = [f"old{n}" for n in range(REPLAY_SPARE + 40)]
    new = [f"new{n}" for n in range(40)]  # (2 x 40 live + SPARE: nothing is evicted)
    for key in old + new:
        entry = memo.entry(key)
        entry.found, entry.replay = [], (_Schema(), True)
    list(memo.retain(env, new))
    assert all(memo.get(k).replay is not None for k in new)  # live: kept
    stale = [memo.get(k) for k in old]
    assert all(e is not None and e.found == [] for e in stale)  # findings kept (an undo computes nothing)
    assert [e.replay is not None for e in stale] == [False] * 40 + [True] * REPLAY_SPARE  # the newest keep theirs


def test_what_the_memo_evicts_the_persistent_cache_forgets(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = Store.for_root(tmp_path)
    assert store.enabled
    memo = RevisionMemo()
    env = (tmp_path, "env")
    keys = [f"k{n}" for n in range(3 * SPARE)]
    for key in keys:
        memo.entry(key).found = []
        store.put("schema", key, [key])
    told: list[str] = []

    def forget(batch: list[str]) -> None:
        told.extend(batch)
        store.forget("schema", batch)

    list(memo.retain(env, keys[-SPARE // 2:], forget))
    assert told == keys[:len(keys) - SPARE - SPARE // 2]  # the oldest stale ones
    assert len(memo) == SPARE + SPARE // 2
    assert store.save()
    again = Store.for_root(tmp_path)
    assert again.get("schema", told[0]) is None and again.get("schema", keys[-1]) == [keys[-1]]
