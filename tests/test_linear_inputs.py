"""Adversarial sizes are read in linear time (issue 12), shown by counting, never by a clock.

- Regexes: a pattern runs on text of unbounded length only when its matches have a bounded
  length (sre's own width computation), so it does a bounded amount of work at each
  position; every other pattern gets only bounded slices. Recorders in place of the
  modules' patterns measure what each call is given. (Before: `REINDEX ... CONCURRENTLY`
  on a 129 KB op.execute took 22 s, `^\\s*CREATE` on 40,000 newlines minutes, a `Revises:`
  line with 50k spaces 13-50 s per parse.)
- The new readers give exactly what the old patterns gave (property tests against them).
- One revision with thousands of ops: the number of Python calls (cProfile's count, which
  also counts every step of a generator) of the whole Engine pass grows linearly.

Timings for the same inputs: benchmarks/adversarial.py."""

from __future__ import annotations

import cProfile
import pstats
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migration_lsp import pmap, rawsql, schema, scripts
from migration_lsp.checks import safety, walk
from migration_lsp.checks.safety import check_safety, runs_concurrently
from migration_lsp.checks.walk import updated_tables
from migration_lsp.engine import Engine
from migration_lsp.graph import RevisionGraph
from migration_lsp.rawsql import ddl_tables, is_ddl
from migration_lsp.replay import Replay, apply_other_call
from migration_lsp.scripts import _doc_field, _rev_tokens, parse_script

from conftest import alembic_project, migration_text

try:
    from re import _parser as sre_parse  # Python 3.11+
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore[no-redef]

BOUNDED_WIDTH = 64
SIZE = 200_000  # characters of adversarial text


def max_width(pattern: re.Pattern) -> int:
    return sre_parse.parse(pattern.pattern, pattern.flags).getwidth()[1]


class Recorded:
    """A compiled pattern that notes (pattern, length of the text it may look at) per call."""

    def __init__(self, pattern: re.Pattern, calls: list, module: str) -> None:
        self.pattern, self.calls, self.module = pattern, calls, module

    def _note(self, string: str, pos: int = 0, endpos: int = sys.maxsize) -> None:
        self.calls.append((self.pattern, min(len(string), endpos) - pos, string[pos:endpos], self.module))

    def __getattr__(self, name):
        method = getattr(self.pattern, name)
        if name not in ("search", "match", "fullmatch", "finditer", "findall", "sub", "split"):
            return method

        def call(string, *args, **kwargs):
            if name in ("sub",):
                self._note(args[0] if args else kwargs["string"])
            elif name == "split":
                self._note(string)
            else:
                self._note(string, *args, **kwargs)
            return method(string, *args, **kwargs)
        return call


@pytest.fixture
def recorded(monkeypatch):
    """Every module-level pattern (or tuple of patterns) of scripts, schema, safety and the
    walk the S families share, recorded."""
    calls: list = []
    for module in (scripts, rawsql, safety, walk):
        for name, value in list(vars(module).items()):
            if isinstance(value, re.Pattern):
                monkeypatch.setattr(module, name, Recorded(value, calls, module.__name__))
            elif isinstance(value, tuple) and value and all(isinstance(v, re.Pattern) for v in value):
                monkeypatch.setattr(module, name, tuple(Recorded(v, calls, module.__name__) for v in value))
    return calls


def assert_bounded_work(calls: list) -> None:
    """The SQL readers' patterns (schema's and safety's) ran, each doing bounded work per
    position of what it was given."""
    calls = [c for c in calls if c[3] in (rawsql.__name__, safety.__name__, walk.__name__)]
    assert calls, "no SQL pattern ran: the test proves nothing"
    for pattern, size, _, _ in calls:
        assert size <= rawsql.SQL_WINDOW or max_width(pattern) <= BOUNDED_WIDTH, \
            f"{pattern.pattern!r} (unbounded matches) ran on {size} characters"


ADVERSARIAL_SQL = {
    "reindex": lambda n: "REINDEX " * (n // 8) + "x CONCURRENTLY",
    "create": lambda n: "CREATE UNIQUE " * (n // 14) + "INDEX CONCURRENTLY ix ON t (a)",
    "newlines": lambda n: "\n" * n + "CREATE TABLE t (a int)",
    "spaces": lambda n: "CREATE TABLE" + " " * n + "t (a int); UPDATE" + " " * n + "t SET a = 1",
    "index": lambda n: "CREATE INDEX " * (n // 13),
    "update": lambda n: "UPDATE \"" + "a" * n,
    "if": lambda n: "DROP TABLE IF NOT " * (n // 18),
}


@pytest.mark.parametrize("kind", sorted(ADVERSARIAL_SQL))
def test_raw_sql_patterns_do_bounded_work_per_position(kind: str, recorded: list, tmp_path: Path):
    """op.execute / conn.execute with 200 KB of adversarial SQL, through the replay and the
    safety rules (PostgreSQL, where S003 reads the SQL)."""
    sql = ADVERSARIAL_SQL[kind](SIZE)
    text = migration_text("a1", upgrades=f"op.execute({sql!r})\n    op.get_bind().execute(sa.text({sql!r}))")
    path = tmp_path / "a1_x.py"
    path.write_text(text, encoding="utf-8")
    script = parse_script(path, text)
    result = Replay(RevisionGraph([script])).revision("a1")
    found = check_safety(script, result, "postgresql", "env")
    assert_bounded_work(recorded)
    if kind in ("reindex", "create"):
        assert [d.code for d in found] == ["S003", "S003"]
    if kind in ("newlines", "spaces"):
        assert "t" in result.after.uncertain


def test_conn_execute_ddl_marks_tables_with_bounded_work(recorded: list, tmp_path: Path):
    text = migration_text("a1", upgrades="pass")
    script = parse_script(tmp_path / "a1_x.py", text.replace("pass", "conn.execute(" + repr(
        " \n" * (SIZE // 4) + "ALTER TABLE" + " " * (SIZE // 2) + "users ADD x int") + ")"))
    state = apply_other_call(schema.SchemaState(), script.upgrade.other_calls[0], script.path)
    assert state.uncertain == {"users"}
    assert_bounded_work(recorded)


@pytest.mark.parametrize("line", [
    "Revises: a" + " " * SIZE + "b",
    "Revises:" + " " * SIZE,
    " " * SIZE + "Revises  :  a, b",
    "Revision ID: " + "x" * SIZE + " " * SIZE + "y",
    "Create Date" + " " * SIZE + ": 2024",
    "Revises: " + "(a, " * (SIZE // 4),
])
def test_docstring_fields_never_reach_a_regex(line: str, recorded: list, tmp_path: Path):
    """The docstring's long line is read by string methods: no pattern is given it, on the
    fast header path (every keystroke) nor on the ast path."""
    text = migration_text("a1", "b0").replace("Revises: b0", line.replace("\\", ""), 1)
    for header_only in (True, False):
        recorded.clear()
        script = parse_script(tmp_path / "a1_x.py", text, header_only=header_only)
        assert script.revision_id == "a1"
        assert not [p.pattern for p, _, subject, _ in recorded if " " * (SIZE // 2) in subject or "(a, " * (SIZE // 200) in subject]
    if line.startswith("Revises: a"):
        assert [i.value for i in script.doc.revises] == ["a", "b"]
        assert script.doc.revises[1].span.col == len("Revises: a") + SIZE


# ---------------------------------------------------------------------- same answers as before

OLD_DOC_FIELD = re.compile(r"^(?P<indent>\s*)(?P<key>Revision ID|Revises|Create Date)\s*:[ \t]*(?P<value>.*?)\s*$")
OLD_REV_TOKEN = re.compile(r"[^\s,()'\"]+")
OLD_DDL_TABLE = re.compile(r"\b(?:TABLE|INDEX\s+\S+\s+ON|INTO|UPDATE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)",
                           re.I)
OLD_DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|RENAME|COMMENT)\b", re.I | re.M)
OLD_CONCURRENT_SQL = re.compile(
    r"\b(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX)\s+CONCURRENTLY\b"
    r"|\bREINDEX\b[^;]*?\bCONCURRENTLY\b|\bDETACH\s+PARTITION\b[^;]*?\bCONCURRENTLY\b", re.I)
OLD_UPDATE_SQL = re.compile(r"\bUPDATE\s+(?:ONLY\s+)?(?:[\"`\[]?\w+[\"`\]]?\.)?[\"`\[]?(\w+)", re.I)

DOC_PIECES = st.sampled_from([" ", "\t", "\x0c", "\x85", "\u2028", ":", ",", "(", ")", "'", '"', "a", "<base>",
                              "Revises", "Revision ID", "Create Date", "Revis", "x1"])
SQL_PIECES = st.sampled_from([
    "CREATE", "create", "UNIQUE", "INDEX", "index", "DROP", "CONCURRENTLY", "concurrently", "REINDEX", "DETACH",
    "PARTITION", "TABLE", "INTO", "UPDATE", "ONLY", "IF", "NOT", "EXISTS", "ON", "t", "s.t", '"t"', "`t`", "[t]",
    "ALTER", "COMMENT", "RENAME", ";", " ", "  ", "\n", "\t", "\n ", ".", "(", ")", "a;b", "INDEXX", "xINDEX",
    "TABLEs", "\x0c", "ſ", "é"])


@given(st.lists(DOC_PIECES, max_size=10).map("".join))
def test_doc_field_reads_what_the_old_pattern_read(line: str):
    m = OLD_DOC_FIELD.match(line)
    assert _doc_field(line) == ((m.group("key"), m.start("value"), m.end("value")) if m else None)
    assert list(_rev_tokens(line)) == [(t.start(), t.end()) for t in OLD_REV_TOKEN.finditer(line)]


@given(st.lists(SQL_PIECES, max_size=12), st.sampled_from(["", " ", "  "]))
def test_sql_readers_answer_what_the_old_patterns_answered(pieces: list[str], sep: str):
    sql = sep.join(pieces)
    assert is_ddl(sql) == bool(OLD_DDL.search(sql))
    assert ddl_tables(sql) == OLD_DDL_TABLE.findall(sql)
    assert runs_concurrently(sql) == bool(OLD_CONCURRENT_SQL.search(sql))
    assert updated_tables(sql) == OLD_UPDATE_SQL.findall(sql)


# ---------------------------------------------------------------------- one revision, many ops


def many_ops(n: int) -> str:
    """n ops on one table: add_column, create_index, execute, alter_column, in turn."""
    lines = ["op.create_table('t', sa.Column('id', sa.Integer(), primary_key=True))"]
    for i in range(n - 1):
        kind = i % 4
        if kind == 0:
            lines.append(f"op.add_column('t', sa.Column('c{i}', sa.Integer(), nullable=True))")
        elif kind == 1:
            lines.append(f"op.create_index('ix_{i}', 't', ['c{i - 1}'])")
        elif kind == 2:
            lines.append(f"op.execute('UPDATE t SET c{i - 2} = 1')")
        else:
            lines.append(f"op.alter_column('t', 'c{i - 3}', nullable=False, existing_type=sa.Integer())")
    return "\n    ".join(lines)


def engine_calls(root: Path, n: int) -> tuple[int, Engine]:
    base = migration_text("a0", upgrades="op.create_table('base', sa.Column('id', sa.Integer(), primary_key=True))",
                          downgrades="op.drop_table('base')")
    alembic_project(root, {"a0_x.py": base, "a1_x.py": migration_text("a1", "a0", upgrades=many_ops(n),
                                                                      downgrades="op.drop_table('t')")})
    engine = Engine([root], trusted=False, cache=False)
    profile = cProfile.Profile()
    profile.enable()
    snapshot = engine.snapshot()
    profile.disable()
    assert not [d for d in snapshot.diagnostics if d.code.startswith("E")], snapshot.diagnostics
    return pstats.Stats(profile).total_calls, engine


def test_one_revision_with_many_ops_is_checked_in_linear_steps(tmp_path: Path):
    """The whole Engine pass (parse, evaluation, replay, S and D rules) on a revision of n
    and 4n ops on one table. Before: every add_column / create_index / alter_column copied
    the table's columns or indexes (Python steps quadratic in n: a ratio over 5 here)."""
    engine_calls(tmp_path / "warm", 50)  # module caches filled
    small, _ = engine_calls(tmp_path / "small", 1000)
    large, engine = engine_calls(tmp_path / "large", 4000)
    assert large / small < 4.5, (small, large)
    replay = engine.schema.replays[next(iter(engine.schema.replays))]
    table = replay.prepare("a1").after.table("t")
    assert len(table.columns) == 1 + 1000 and len(table.indexes) == 1000
    assert table.column("c3996").column.nullable is True and table.column("c0").column.nullable is False


def kept_states_memory(tmp_path: Path, n: int) -> int:
    """Bytes allocated (tracemalloc) by the states after each of n raw-DDL ops, all kept
    (the safety rules and the features keep states op by op)."""
    import tracemalloc

    from migration_lsp.interpret import evaluate_function
    from migration_lsp.replay import apply_op

    up = "\n    ".join(f"op.execute('ALTER TABLE x{i} ALTER COLUMN a TYPE text')" for i in range(n))
    text = migration_text("a1", upgrades=up)
    script = parse_script(tmp_path / f"a{n}_x.py", text)
    ops = evaluate_function(script, script.upgrade)
    state = schema.SchemaState()
    kept = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for ev in ops:
            state = apply_op(state, ev, script.path)
            kept.append(state)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(state.uncertain) == n and "x0" in state.uncertain
    return used


def test_tables_made_uncertain_one_by_one_share_structure(tmp_path: Path):
    """Each raw DDL statement adds its table to the state's uncertain names: the states
    share them (before, every state copied the whole set: memory and time quadratic)."""
    kept_states_memory(tmp_path, 50)
    small, large = kept_states_memory(tmp_path, 300), kept_states_memory(tmp_path, 1200)
    assert large / small < 8, (small, large)  # 4 times a logarithmic factor (HAMT paths); quadratic: 16


def random_table_ops(rng, n: int) -> str:
    """Ops on one table's columns and indexes, names drawn from a small pool (so that adds
    replace, drops miss, renames collide)."""
    names = [f"c{i}" for i in range(6)]
    lines = ["op.create_table('t', sa.Column('id', sa.Integer(), primary_key=True), "
             "sa.Column('c0', sa.Integer()), sa.Column('c1', sa.String(), nullable=False))"]
    for _ in range(n):
        a, b = rng.choice(names), rng.choice(names)
        lines.append(rng.choice([
            f"op.add_column('t', sa.Column('{a}', sa.Integer(), nullable={rng.choice([True, False])}))",
            f"op.add_column('t', sa.Column('{a}', sa.Integer(), index=True))",
            f"op.drop_column('t', '{a}')",
            f"op.alter_column('t', '{a}', nullable={rng.choice([True, False])})",
            f"op.alter_column('t', '{a}', new_column_name='{b}')",
            f"op.create_index('ix_{b}', 't', ['{a}'])",
            f"op.create_index('ix_{b}', 't', ['{a}', 'id'], unique=True)",
            f"op.drop_index('ix_{b}', table_name='t')",
        ]))
    return "\n    ".join(lines)


def table_shape(state) -> tuple:
    from migration_lsp.schema import index_columns

    table = state.table("t")
    return (tuple((c.name, c.column.nullable, c.column.primary_key, c.origin) for c in table.columns),
            tuple((str(i.name), index_columns(i), bool(i.unique), o) for i, o in table.indexes),
            tuple(str(c.name) for c, _ in table.constraints), state.uncertain == frozenset())


def test_keyed_sequences_replay_exactly_like_tuples(tmp_path: Path, monkeypatch):
    """Columns and indexes kept in Keyed sequences (long tables) give the same schema, op
    by op, as the tuples short tables keep."""
    import random

    from migration_lsp.interpret import evaluate_function
    from migration_lsp.pmap import Keyed
    from migration_lsp.replay import apply_op

    rng = random.Random(12)
    for n in range(60):
        text = migration_text("a1", upgrades=random_table_ops(rng, 40))
        script = parse_script(tmp_path / f"s{n}_x.py", text)
        ops = evaluate_function(script, script.upgrade)
        shapes = {}
        for keyed_from in (0, 10**9):
            monkeypatch.setattr(pmap, "KEYED_FROM", keyed_from)
            state, steps = schema.SchemaState(), []
            for ev in ops:
                state = apply_op(state, ev, script.path)
                steps.append(table_shape(state))
            if keyed_from == 0 and len(state.table("t").columns) > 0:
                assert type(state.table("t").columns) is Keyed
            shapes[keyed_from] = steps
        assert shapes[0] == shapes[10**9], text


def test_ignore_comments_are_read_in_linear_time():
    """`# migration-lsp: ignore[` repeated: the suppression patterns stop at a `#`, so each
    position is tried over a bounded stretch (the old `[^\\]]*` rescanned to the line's end)."""
    from migration_lsp.checks import IGNORE_COMMENT  # (the suppression's and the quick fix's)

    line = "x = 1  " + "# migration-lsp: ignore[" * 2000 + "S001"
    assert IGNORE_COMMENT.search(line) is None
    assert IGNORE_COMMENT.search("op.drop_table('t')  # migration-lsp: ignore[S005, G001]").group("codes") == "S005, G001"
    assert IGNORE_COMMENT.search("op.drop_table('t')  # migration-lsp: ignore") is not None
