"""Schema states share structure between revisions (`TableMap`, `IndexRecord`).

The replay keeps a state before and after every revision; they share every table an op did
not touch, so the states of a whole history take memory linear in its length. These tests
pin down that sharing changes nothing a state says (the collections themselves are tested
in test_pmap.py):

- on a generated 400-revision project (benchmarks/generate.py) and on a hand-made history
  using every kind of op, branches, merges, helpers and raw DDL: each revision's state is
  what replaying its ops on an unshared copy of the state before gives; computing later
  revisions never changes an earlier one; merges are the union the plain-dict algorithm
  gives; a revision's state allocates only the path to what it touched;
- the index record kept for a plain `create_index` says what Alembic's `to_index()` says.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.operations import ops as alembic_ops

from migration_lsp.graph import RevisionGraph
from migration_lsp.interpret import evaluate_function
from migration_lsp.replay import Replay, apply_op, apply_other_call
from migration_lsp.schema import (IndexRecord, SchemaState, TableState, index_columns, _union, constraint_columns,
                                  merge_states)
from migration_lsp.scripts import parse_script

from conftest import REPO_ROOT, migration_text
from test_pmap import naive_diff


# --------------------------------------------------------------------------- projects


def generated_scripts(tmp_path: Path, revisions: int = 300, seed: int = 8):
    spec = importlib.util.spec_from_file_location("bench_generate", REPO_ROOT / "benchmarks" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_generate", module)
    spec.loader.exec_module(module)
    module.generate(tmp_path / "gen", revisions, seed)
    versions = tmp_path / "gen" / "migrations" / "versions"
    return [parse_script(p, p.read_text(encoding="utf-8")) for p in sorted(versions.glob("*.py"))]


HISTORY = {
    # rev: (down revision(s), upgrade body)
    "a1": (None, """
        op.create_table('orgs', sa.Column('id', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'))
        op.create_table('users',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('name', sa.String(50), nullable=True, unique=True),
            sa.Column('org_id', sa.Integer(), sa.ForeignKey('orgs.id'), nullable=True),
            sa.Column('kind', sa.Enum('a', 'b', name='kind'), nullable=True),
            sa.Column('score', sa.Integer(), nullable=True, index=True),
            sa.PrimaryKeyConstraint('id'),
            sa.CheckConstraint('id > 0', name='ck_users_id'),
        )
        op.create_index(op.f('ix_users_name'), 'users', ['name'], unique=False)
        op.create_table('tags', sa.Column('id', sa.Integer()), sa.Column('label', sa.String(20)))
        seed_reference_data(op)
        op.execute("CREATE TABLE legacy (id integer)")
    """),
    "b1": ("a1", """
        op.add_column('users', sa.Column('email', sa.String(100), nullable=True, index=True))
        op.add_column('tags', sa.Column('code', sa.String(5), unique=True))
        op.create_foreign_key('fk_tags_users', 'tags', 'users', ['id'], ['id'], ondelete='CASCADE')
        op.rename_table('orgs', 'organizations')
        op.create_index('ix_tags_label_lower', 'tags', [sa.text('lower(label)')])
        op.create_table('posts', sa.Column('id', sa.Integer(), primary_key=True),
                        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE')))
    """),
    "c1": ("a1", """
        op.alter_column('users', 'name', new_column_name='full_name', existing_type=sa.String(50))
        op.create_unique_constraint('uq_users_kind', 'users', ['kind'])
        op.create_primary_key('pk_tags', 'tags', ['id'])
        op.drop_index(op.f('ix_users_name'), table_name='users')
        op.create_table_comment('users', 'people')
        op.alter_column('users', 'score', type_=sa.BigInteger(), nullable=False, server_default='0',
                        comment='points')
    """),
    "m1": (("b1", "c1"), ""),
    "d1": ("m1", """
        with op.batch_alter_table('users', schema=None) as batch_op:
            batch_op.add_column(sa.Column('nick', sa.String(30), nullable=True))
            batch_op.create_index(batch_op.f('ix_users_nick'), ['nick'], unique=True)
            batch_op.alter_column('kind', existing_type=sa.Enum('a', 'b', name='kind'), nullable=False)
            batch_op.drop_constraint('ck_users_id', type_='check')
        op.drop_table_comment('users')
        op.execute("UPDATE users SET nick = full_name")
    """),
    "e1": ("d1", """
        op.drop_table('tags')
        helpers.rebuild(op)
        op.create_index('ix_users_email_where', 'users', ['email'], postgresql_where=sa.text('email IS NOT NULL'))
    """),
    "f1": ("d1", """
        op.create_index('ix_users_dup', 'users', ['nick', 'nick'])
        op.drop_column('users', 'email')
        op.add_column('organizations', sa.Column('name', sa.String(40)))
        op.alter_column('organizations', 'id', new_column_name='org_key')
        op.drop_table('ghost')
    """),
    "m2": (("e1", "f1"), ""),
    "g1": ("m2", """
        op.drop_column('users', 'org_id')
        op.create_index('ix_users_nick_full', 'users', ['nick', 'full_name'], unique=True)
        op.drop_constraint('uq_users_kind', 'users', type_='unique')
        op.rename_table('users', 'members')
    """),
}


def handmade_scripts(tmp_path: Path):
    scripts = []
    for rev, (down, body) in HISTORY.items():
        upgrades = textwrap.dedent(body).strip("\n").replace("\n", "\n    ") or None
        text = migration_text(rev, down, upgrades=upgrades)
        path = tmp_path / f"{rev}_x.py"
        path.write_text(text, encoding="utf-8")
        scripts.append(parse_script(path, text))
    return scripts


@pytest.fixture(params=["generated", "handmade"])
def project(request, tmp_path):
    if request.param == "generated":
        scripts = generated_scripts(tmp_path)
    else:
        scripts = handmade_scripts(tmp_path)
    graph = RevisionGraph(scripts)
    return graph, Replay(graph)


def describe(table: TableState) -> tuple:
    """Everything a table state says, as plain comparable values."""
    def column(c):
        d = c.server_default
        return (c.name, c.key, repr(c.type), c.nullable, c.primary_key, c.unique, c.index, c.comment,
                None if d is None else str(getattr(d.arg, "text", d.arg)), bool(c.foreign_keys))

    constraints = sorted(repr((type(c).__name__, str(c.name), constraint_columns(c), o))
                         for c, o in table.constraints)
    indexes = sorted(repr((str(i.name), index_columns(i), bool(i.unique), sorted(dict(i.kwargs)), o))
                     for i, o in table.indexes)
    md = sa.MetaData()
    built = table.to_table(md)
    rebuilt = ([column(c) for c in built.columns],
               sorted(repr((type(c).__name__, str(c.name), constraint_columns(c))) for c in built.constraints),
               sorted(repr((str(i.name), [c.name for c in i.columns], i.unique)) for i in built.indexes))
    return (table.name, table.schema, table.comment, table.origin,
            [(column(c.column), c.origin) for c in table.columns], constraints, indexes, rebuilt)


_described: dict[int, tuple] = {}  # id -> (table, description): tables are shared, describe each once


def described(table: TableState) -> tuple:
    found = _described.get(id(table))
    if found is None or found[0] is not table:
        found = _described[id(table)] = (table, describe(table))
    return found[1]


def describe_state(state: SchemaState) -> tuple:
    return ({k: described(t) for k, t in state.tables.items()}, sorted(state.uncertain), tuple(state.unknown))


def revisions_in_order(graph: RevisionGraph, replay: Replay):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(rev, replay.revision(rev)) for rev in graph.by_id]


def test_replay_states_are_values(project):
    """Each revision's states, described right after they are computed, are unchanged once
    every later revision has been replayed (nothing shared is ever mutated)."""
    graph, replay = project
    seen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rev in graph.by_id:
            result = replay.revision(rev)
            for r in graph.by_id:  # whatever revision() computed on the way
                if r not in seen and r in replay._results:
                    res = replay._results[r]
                    seen[r] = (describe_state(res.before), describe_state(res.after))
    assert set(seen) == set(graph.by_id)
    _described.clear()  # describe every table afresh
    for rev, (before, after) in seen.items():
        result = replay.revision(rev)
        assert describe_state(result.before) == before, rev
        assert describe_state(result.after) == after, rev


def test_replay_on_unshared_copies_gives_the_same_states(project):
    """Replaying a revision's ops on a from-scratch copy of the state before it (a plain
    dict, no shared structure) gives the state the replay keeps, with the replay's own ops
    (applied a second time) as with ops evaluated afresh."""
    graph, replay = project
    for rev, result in revisions_in_order(graph, replay):
        script = graph.by_id[rev]
        before = result.before
        for ops in (result.upgrade, evaluate_function(script, script.upgrade)):
            state = SchemaState(dict(before.tables.items()), frozenset(before.uncertain), tuple(before.unknown))
            assert describe_state(state) == describe_state(before)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for ev in ops:
                    state = apply_op(state, ev, script.path)
                for call in script.upgrade.other_calls if script.upgrade else ():
                    state = apply_other_call(state, call, script.path)
            assert describe_state(state) == describe_state(result.after), rev


def test_a_replay_after_an_edit_equals_a_fresh_one(tmp_path):
    """The server's replay after an edit reuses the evaluated ops of the files that did not
    change and replays again what is above the edit: it must give what a fresh replay of
    the edited project gives (a create_table replayed twice used to lose the foreign keys
    declared inline in its columns: Alembic's `to_table()` only keeps them the first time)."""
    scripts = handmade_scripts(tmp_path)
    graph = RevisionGraph(scripts)
    first = Replay(graph)
    first.at_heads()
    edited = []
    for script in scripts:  # a new text for a1: everything above it is replayed again
        if script.revision_id == "a1":
            text = script.text.replace("def upgrade() -> None:\n", "def upgrade() -> None:\n    # edited\n", 1)
            script = parse_script(script.path, text)
        edited.append(script)
    graph2 = RevisionGraph(edited)
    again, fresh = Replay(graph2, first), Replay(graph2)  # fresh: every file evaluated anew
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rev in graph2.by_id:
            a, b = again.revision(rev), fresh.revision(rev)
            assert not a.upgrade or a.upgrade is not b.upgrade
            assert describe_state(a.before) == describe_state(b.before), rev
            assert describe_state(a.after) == describe_state(b.after), rev
    posts = again.revision("b1").after.table("posts").to_table(sa.MetaData())
    assert [[e.target_fullname for e in c.elements] for c in posts.constraints
            if isinstance(c, sa.ForeignKeyConstraint)] == [["users.id"]]


def plain_merge(states):
    """merge_states as it was with plain dicts: the reference for the union at a merge."""
    tables = {}
    for state in states:
        for key, table in state.tables.items():
            if key not in tables:
                tables[key] = table
            elif tables[key] is not table:
                tables[key] = _union(tables[key], table)
    return tables, frozenset().union(*(s.uncertain for s in states)), \
        tuple(dict.fromkeys(o for s in states for o in s.unknown))


def test_merges_are_the_union_of_their_branches(project):
    graph, replay = project
    merges = 0
    for rev, result in revisions_in_order(graph, replay):
        below = graph.parents.get(rev, ()) + graph.dependencies.get(rev, ())
        if len(below) < 2:
            continue
        merges += 1
        parents = [replay.revision(p).after for p in below]
        tables, uncertain, unknown = plain_merge(parents)
        merged = merge_states(parents)
        assert {k: describe(t) for k, t in merged.tables.items()} == {k: describe(t) for k, t in tables.items()}
        assert merged.uncertain == uncertain and tuple(merged.unknown) == unknown
        # the replay merges three-way, from the state where the branches forked: what a
        # branch dropped since stays dropped, the rest is the union
        base = replay._fork(below)
        assert base is not None
        three_way = merge_states(parents, base)
        assert describe_state(result.before) == describe_state(three_way)
        for key, table in three_way.tables.items():  # nothing invented: at most the union, less drops
            assert key in tables and {c.name for c in table.columns} <= {c.name for c in tables[key].columns}
    assert merges >= 2


def test_diff_finds_exactly_what_a_revision_touched(project):
    graph, replay = project
    for rev, result in revisions_in_order(graph, replay):
        a, b = result.before.tables, result.after.tables
        assert a.diff(b) == naive_diff(a, b) == b.diff(a), rev


def nodes(root, out: set) -> None:
    out.add(id(root))
    if type(root) is tuple:
        for child in root:
            if child is not None:
                nodes(child, out)


def test_a_revision_allocates_only_the_paths_it_touched(project):
    """Structure sharing: the trie nodes of a revision's state that its parent's state does
    not have are at most (depth + 1) per table it touched — not one per table."""
    graph, replay = project
    total_new = total_touched = 0
    for rev, result in revisions_in_order(graph, replay):
        below = graph.parents.get(rev, ()) + graph.dependencies.get(rev, ())
        if len(below) != 1:
            continue
        old, new = set(), set()
        nodes(result.before.tables._root, old)
        nodes(result.after.tables._root, new)
        touched = len(result.before.tables.diff(result.after.tables))
        # a path is at most 3 nodes here; a leaf that overflows splits into a branch of 32
        assert len(new - old) <= 4 * touched + 33, rev
        total_new += len(new - old)
        total_touched += touched
    assert total_new <= 4 * total_touched + 2 * 33
    # and the last state holds every table once
    head = replay.at_heads()
    assert len(head.tables) == len(list(head.tables))


def test_index_record_says_what_to_index_says(project):
    graph, replay = project
    seen = 0
    for rev, result in revisions_in_order(graph, replay):
        for ev in result.upgrade:
            op = ev.op
            if not isinstance(op, alembic_ops.CreateIndexOp):
                continue
            table = result.after.table(op.table_name, op.schema)
            found = [i for i, _ in table.indexes if i.name == op.index_name] if table is not None else []
            try:
                index = op.to_index()
            except Exception:
                assert not found or not isinstance(found[0], IndexRecord)
                continue
            if not found or not isinstance(found[0], IndexRecord):
                continue
            record = found[0]
            seen += 1
            assert (record.name, type(record.name), record.unique, index_columns(record), dict(record.kwargs)) == \
                (index.name, type(index.name), index.unique, index_columns(index), dict(index.kwargs))
    assert seen >= 2


def test_dialect_options_and_expressions_keep_alembics_index(tmp_path):
    graph = RevisionGraph(handmade_scripts(tmp_path))
    replay = Replay(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e1 = replay.revision("e1").after
        b1 = replay.revision("b1").after
        f1 = replay.revision("f1").after
    where = next(i for i, _ in e1.table("users").indexes if i.name == "ix_users_email_where")
    assert isinstance(where, sa.Index) and "postgresql_where" in where.kwargs
    lower = next(i for i, _ in b1.table("tags").indexes if i.name == "ix_tags_label_lower")
    assert isinstance(lower, sa.Index)
    # a column listed twice: Alembic refuses it, so the table is uncertain (as before)
    assert "users" in f1.uncertain


def test_opaque_origins_are_not_doubled_at_every_merge(tmp_path):
    """A helper handed `op` below a fork is one opaque origin on both branches: the merged
    state lists it once (concatenating doubled it at every merge: 2^merges entries)."""
    texts = {"r0": (None, "seed_reference_data(op)")}
    down = "r0"
    for i in range(30):  # 30 fork/merge diamonds
        a, b, m = f"a{i}", f"b{i}", f"m{i}"
        texts[a] = (down, f"op.create_table('t{i}a', sa.Column('id', sa.Integer()))")
        texts[b] = (down, f"op.create_table('t{i}b', sa.Column('id', sa.Integer()))")
        texts[m] = ((a, b), "")
        down = m
    scripts = []
    for rev, (parent, body) in texts.items():
        text = migration_text(rev, parent, upgrades=body or None)
        path = tmp_path / f"{rev}.py"
        path.write_text(text, encoding="utf-8")
        scripts.append(parse_script(path, text))
    graph = RevisionGraph(scripts)
    head = Replay(graph).at_heads()
    assert len(head.opaque) == 1 and head.opaque[0][0] == tmp_path / "r0.py" and not head.unknown
    assert len(head.tables) == 60
