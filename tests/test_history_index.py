"""S022's foreign-key lookup (checks/history.py) on real schema states: the same answer as
scanning every table's keys, and, along a history of derived states, SQLAlchemy's key
targets are read once per changed piece of the table map, not once per table per drop
(issue 13: that scan was 12 % of a first check at 5,000 revisions)."""

from __future__ import annotations

import sqlalchemy as sa

from migration_lsp.checks import history
from migration_lsp.schema import SchemaState, TableState


def _table(name: str, refs: list[tuple[str, str]] = (), schema: str | None = None) -> TableState:
    cols = [sa.Column("id", sa.Integer(), primary_key=True), sa.Column("x", sa.Integer())]
    cols += [sa.Column(f"{t}_{c}", sa.Integer(), sa.ForeignKey(f"{t}.{c}", name=f"fk_{name}_{t}_{c}"))
             for t, c in refs]
    return TableState.from_table(sa.Table(name, sa.MetaData(), *cols, schema=schema))


def _naive(state: SchemaState, table: str, schema: str | None, column: str) -> list[tuple[str, str]]:
    """The scan it replaces: every table, every key, every time."""
    target = f"{schema}.{table}.{column}" if schema else f"{table}.{column}"
    found = []
    for t in state.tables.values():
        if t.name in state.uncertain or t.key in state.uncertain:
            continue
        for constraint, _ in t.constraints:
            if hasattr(constraint, "elements") and any(e.target_fullname == target for e in constraint.elements):
                found.append((t.key, constraint.name))
    return found


def _history() -> list[SchemaState]:
    """200 tables, every 7th referencing t0.x and the one before it; then states derived one
    change at a time (a new referencing table, a dropped one, an uncertain one)."""
    state = SchemaState({})
    for n in range(200):
        refs = [("t0", "x"), (f"t{n - 1}", "id")] if n and n % 7 == 0 else []
        state = state.with_table(_table(f"t{n}", refs))
    states = [state]
    for n in range(200, 260):
        if n % 3 == 0:
            state = state.with_table(_table(f"t{n}", [("t0", "x")]))
        elif n % 3 == 1:
            state = state.without_table(f"t{n - 193}")
        else:
            state = state.with_uncertain([f"t{n - 200}"])
        states.append(state)
    return states


def test_the_same_answer_as_scanning_every_key():
    for state in _history()[::7]:
        for table, column in (("t0", "x"), ("t13", "id"), ("t5", "x"), ("nope", "x")):
            assert history._referencing(state, table, None, column) == _naive(state, table, None, column)
    assert len(history._referencing(_history()[-1], "t0", None, "x")) > 20


def test_keys_are_read_once_per_changed_piece_not_per_table_and_drop(monkeypatch):
    states = _history()
    reads = {"n": 0}
    original = sa.ForeignKey.target_fullname

    def counted(self):
        reads["n"] += 1
        return original.fget(self)

    monkeypatch.setattr(sa.ForeignKey, "target_fullname", property(counted))
    history._CHUNKS.clear()
    history._CONSTRAINTS.clear()
    history._referencing(states[0], "t0", None, "x")
    first = reads["n"]
    assert first == 2 * (199 // 7)  # every key of every table, once
    for state in states[1:]:
        history._referencing(state, "t0", None, "x")
    later = reads["n"] - first
    # 60 derived states, each adding at most one table with one key: the naive scan would
    # read every key of every state again (about 60 x 60)
    assert later <= 20, later


def test_chunks_with_skips_subtrees_and_summarizes_only_new_nodes():
    """pmap.TableMap.chunks_with: the pieces holding a wanted value, in iteration order, the
    same as filtering every piece; a derived version summarizes only the nodes it made."""
    from migration_lsp.pmap import TableMap

    tables = TableMap({f"k{n}": n for n in range(2000)})
    calls = {"n": 0}

    def evens(chunk):
        calls["n"] += 1
        return frozenset(v for v in chunk.values() if v % 100 == 0)

    memo: dict = {}
    flat = [k for k in tables]  # iteration order
    for wanted in (0, 700, 1900):
        got = [k for chunk in tables.chunks_with(wanted, evens, memo) for k in chunk if chunk[k] == wanted]
        assert got == [k for k in flat if tables[k] == wanted]
    for absent in (1, 5000):  # in no piece's summary: nothing is yielded
        assert list(tables.chunks_with(absent, evens, memo)) == []
    leaves = calls["n"]
    assert leaves > 50  # (a real trie: many pieces)
    derived = tables.set("k7", 300).set("new", 12_300)
    found = [k for chunk in derived.chunks_with(300, evens, memo) for k in chunk if chunk[k] == 300]
    assert found == [k for k in derived if derived[k] == 300] and len(found) == 2
    assert calls["n"] - leaves <= 2  # the two changed leaves, not all of them again
    assert list(derived.chunks_with(12_300, evens, memo)) and calls["n"] - leaves <= 2


def _ev(source: str, op):
    import ast as ast_

    from migration_lsp.core import Span
    from migration_lsp.evaluate import EvaluatedOp
    from migration_lsp.scripts import OpCall

    call = ast_.parse(source).body[0].value
    return EvaluatedOp(OpCall(call.func.attr, Span(0, 0, 0, len(source)), call), op)


def test_s022_applies_the_ops_only_up_to_the_last_drop(monkeypatch):
    """The states S022 reads are those before each drop: a revision without a drop applies
    no op again, one with a drop applies none after it (both were the whole upgrade)."""
    from pathlib import Path

    from alembic.operations import ops

    from migration_lsp.replay import RevisionSchema
    from migration_lsp.scripts import MigrationScript

    before = SchemaState({}).with_table(_table("a")).with_table(_table("b", [("a", "x")]))
    add_y = _ev("op.add_column('b', sa.Column('y', sa.Integer()))", ops.AddColumnOp("b", sa.Column("y", sa.Integer())))
    add_z = _ev("op.add_column('b', sa.Column('z', sa.Integer()))", ops.AddColumnOp("b", sa.Column("z", sa.Integer())))
    drop_x = _ev("op.drop_column('a', 'x')", ops.DropColumnOp("a", "x"))
    applied = []
    real = history.apply_op
    monkeypatch.setattr(history, "apply_op", lambda state, ev, path: applied.append(ev) or real(state, ev, path))
    script = MigrationScript(path=Path("versions/r.py"), text="")

    assert history.check_history(script, RevisionSchema(before, before, (add_y, add_z)), "env") == []
    assert applied == []
    found = history.check_history(script, RevisionSchema(before, before, (add_y, drop_x, add_z)), "env")
    assert [(d.code, d.data["table"]) for d in found] == [("S022", "b")] and "fk_b_a_x" in found[0].message
    assert applied == [add_y, drop_x]


def test_the_memos_keep_few_throwaway_states_alive():
    """check_history replays a revision's ops one at a time and asks each intermediate state
    for the keys naming a dropped column: those states are garbage once it returns, but the
    memos, keyed by node identity, keep the nodes they summarized (and the tables in them)
    alive until they are cleared. At 8,192 entries a memo kept ~20 MiB of them in a server
    session at 5,000 revisions (issue 13); now at most _CHUNKS_LIMIT (1,024) entries each:
    of 3,000 throwaway states, ~1,000 tables stay pinned at most, not ~3,000."""
    import gc

    base = _history()[-1]
    for n in range(3000):  # (each a state made, asked, and dropped)
        history._referencing(base.with_table(_table(f"tmp{n}", [("t0", "x")])), "t0", None, "x")
    gc.collect()
    pinned = sum(1 for o in gc.get_objects() if type(o) is TableState and o.name.startswith("tmp"))
    assert pinned <= 1100
