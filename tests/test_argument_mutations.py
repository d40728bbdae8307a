"""Every argument of every op call, replaced by what a half-typed edit leaves there.

The random sessions of test_adversarial found a name argument that was not a string
(`op.create_table(#'posts', sa.Column(...)` makes the first column the table name) crashing
the replay. This test covers that whole class systematically: for each op call of a
revision that uses most of Alembic's operations, each argument in turn is replaced by
another kind of value or dropped, and the engine's full pass, the per-file code actions and
the code lens must still answer, with every diagnostic inside the file."""

from __future__ import annotations

import ast
import asyncio
import textwrap
from pathlib import Path

import pytest
from lsprotocol import types

from migration_lsp.core import Span
from migration_lsp.engine import Engine
from migration_lsp.features import Locator
from migration_lsp.features.actions import APPLY_EDIT, EditSupport, code_actions, resolve_edit
from migration_lsp.features.lens import code_lenses

BASE = '''\
"""base

Revision ID: aaaa00000001
Revises:
Create Date: 2026-01-01 00:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = 'aaaa00000001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=120), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('posts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade():
    op.drop_table('posts')
    op.drop_table('users')
'''

# One call of (nearly) every operation, against the tables above.
OPS = '''\
"""many ops

Revision ID: bbbb00000002
Revises: aaaa00000001
Create Date: 2026-01-02 00:00:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = 'bbbb00000002'
down_revision = 'aaaa00000001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('users', sa.Column('name', sa.String(50), nullable=False, server_default='x'))
    op.alter_column('users', 'email', existing_type=sa.String(length=120), nullable=False)
    op.create_index(op.f('ix_users_email'), 'users', ['email'], unique=True)
    op.create_unique_constraint('uq_users_name', 'users', ['name'])
    op.create_foreign_key('fk_posts_users', 'posts', 'users', ['user_id'], ['id'], ondelete='CASCADE')
    op.create_check_constraint('ck_users_name', 'users', sa.text('length(name) > 0'))
    op.rename_table('posts', 'articles')
    op.create_table_comment('users', 'people', existing_comment=None)
    op.drop_column('articles', 'user_id')
    op.create_table('tags', sa.Column('id', sa.Integer(), primary_key=True),
                    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    with op.batch_alter_table('tags', schema=None) as batch_op:
        batch_op.add_column(sa.Column('label', sa.String(20), nullable=True))
        batch_op.alter_column('label', new_column_name='title', existing_type=sa.String(20))
        batch_op.create_index('ix_tags_title', ['title'], unique=False)
    op.execute('UPDATE users SET name = email')
    op.bulk_insert(sa.table('tags', sa.column('id', sa.Integer())), [{'id': 1}])
    op.drop_index('ix_tags_title', table_name='tags')


def downgrade():
    op.drop_table('tags')
    op.add_column('articles', sa.Column('user_id', sa.INTEGER(), nullable=True))
    op.drop_table_comment('users', existing_comment='people')
    op.rename_table('articles', 'posts')
    op.drop_constraint('ck_users_name', 'users', type_='check')
    op.drop_constraint('fk_posts_users', 'posts', type_='foreignkey')
    op.drop_constraint('uq_users_name', 'users', type_='unique')
    op.drop_index(op.f('ix_users_email'), table_name='users')
    op.alter_column('users', 'email', existing_type=sa.String(length=120), nullable=True)
    op.drop_column('users', 'name')
'''

# What an argument may be mid-edit: another kind of value, a half-typed call, nothing.
REPLACEMENTS = [
    "None", "0", "3.5", "True", "''", "'x' 'y'", "b'raw'", "[]", "['id', 'nope']", "('id',)", "{}",
    "{'a': 1}", "sa.Column('id', sa.Integer())", "sa.Column(sa.Integer())", "sa.Integer()", "sa.Integer",
    "sa.text('x')", "op.f('ix')", "sa", "op", "undefined_name", "lambda: 1", "f'{x}'", "...",
    "sa.PrimaryKeyConstraint()", "sa.ForeignKey('nope.id')", "sa.Index('ix', 'id')", "-1", "1 + 'a'",
]


# Inside a nested call (`sa.Column(...)`, `sa.String(...)`) a few kinds are enough.
NESTED_REPLACEMENTS = ["None", "0", "''", "[]", "sa.Column('id', sa.Integer())", "sa.text('x')", "undefined_name"]


def _argument_ranges(text: str) -> list[tuple[int, int, bool, bool]]:
    """(start, end, is_keyword_value, is_nested) offsets of every argument of every op /
    batch_op call, and of every call nested in those arguments."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(line: int, col: int) -> int:  # ast columns count UTF-8 bytes
        return starts[line - 1] + len(lines[line - 1].encode()[:col].decode())

    def arguments(call: ast.Call, nested: bool):
        for value, keyword in [(a, False) for a in call.args] + [(k.value, True) for k in call.keywords]:
            yield (offset(value.lineno, value.col_offset), offset(value.end_lineno, value.end_col_offset),
                   keyword, nested)

    out = []
    for node in ast.walk(ast.parse(text)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("op", "batch_op")):
            out.extend(arguments(node, False))
            for inner in ast.walk(node):
                if inner is not node and isinstance(inner, ast.Call):
                    out.extend(arguments(inner, True))
    return out


def _variants(text: str) -> list[str]:
    out = []
    for start, end, keyword, nested in _argument_ranges(text):
        for replacement in NESTED_REPLACEMENTS if nested else REPLACEMENTS:
            out.append(text[:start] + replacement + text[end:])
        if not keyword:  # the argument deleted (as if still to be typed)
            out.append(text[:start] + text[end:].lstrip(",").lstrip(" "))
    return out


# The same upgrade with `downgrade(): pass`: D001 offers "Fill downgrade()", which reverses
# every (mutated) upgrade op against the history.
OPS_EMPTY_DOWNGRADE = OPS[:OPS.index("def downgrade():")] + "def downgrade():\n    pass\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mutations")
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "alembic.ini").write_text(textwrap.dedent("""\
        [alembic]
        script_location = %(here)s/migrations
        sqlalchemy.url = postgresql://localhost/app
        """))
    (root / "migrations" / "env.py").write_text("target_metadata = None\n")
    (versions / "aaaa00000001_base.py").write_text(BASE)
    (versions / "bbbb00000002_many_ops.py").write_text(OPS)
    return root


@pytest.mark.parametrize("name, text", [("aaaa00000001_base.py", BASE), ("bbbb00000002_many_ops.py", OPS),
                                        ("bbbb00000002_many_ops.py", OPS_EMPTY_DOWNGRADE)],
                         ids=["base", "many-ops", "many-ops-empty-downgrade"])
def test_every_argument_replaced_or_dropped(project: Path, name: str, text: str):
    path = (project / "migrations" / "versions" / name).resolve()
    engine = Engine([project], trusted=False, cache=False)
    engine.set_buffer(path, text)
    baseline = engine.snapshot()
    assert any(d.code == "S005" for d in baseline.diagnostics)  # the rules do run on this project
    if text is OPS:
        # the downgrade re-adds posts.user_id without its inline foreign key: reported, although
        # the key's referred table (users) is not among the tables D002 compares
        (d002,) = [d for d in baseline.diagnostics if d.code == "D002"]
        assert "foreign key on posts(user_id) is not restored" in d002.message
    if text is OPS_EMPTY_DOWNGRADE:
        (d001,) = [d for d in baseline.diagnostics if d.code == "D001"]
        locator = Locator(baseline)
        support = EditSupport(document_changes=True, create=True, rename=True)
        titles = [a.title for a in code_actions(baseline, path, d001.span, None, locator, support)]
        assert any("downgrade" in t.lower() for t in titles), titles
    variants = _variants(text)
    assert len(variants) > 400
    support = EditSupport(document_changes=True, create=True, rename=True)
    for variant in variants:
        engine.set_buffer(path, variant)
        snapshot = engine.snapshot()  # the full pass: parse, evaluate, replay, every rule
        lines = variant.count("\n") + 1
        for d in snapshot.diagnostics:
            if d.path == path:
                assert 0 <= d.span.line <= d.span.end_line < lines, (d, variant)
        locator = Locator(snapshot)
        for action in code_actions(snapshot, path, Span(0, 0, lines - 1, 0), None, locator, support):
            if isinstance(action, types.Command) and action.command == APPLY_EDIT:  # deferred: build it
                asyncio.run(resolve_edit(snapshot, action.arguments[0], locator, support))
        code_lenses(snapshot, path, locator)
    engine.set_buffer(path, text)  # and the original text gives the original answer back
    assert engine.snapshot().diagnostics == baseline.diagnostics


def test_an_internal_error_costs_one_revision_only(project: Path, monkeypatch, caplog):
    """Should the replay or a rule still raise on something nobody foresaw, that revision
    goes unchecked, the others are checked, and the failure is logged once for that text
    (the server forwards the log to the editor; the CLI prints it on stderr)."""
    import migration_lsp.checks.safety as safety
    import migration_lsp.replay as replay

    def engine_diagnostics() -> list:
        return Engine([project], trusted=False, cache=False).snapshot().diagnostics

    baseline = engine_diagnostics()
    real_apply, real_safety = replay.apply_op, safety.check_safety

    def failing_apply(state, ev, path):
        if path.name.startswith("aaaa"):
            raise RuntimeError("boom in the replay")
        return real_apply(state, ev, path)

    monkeypatch.setattr(replay, "apply_op", failing_apply)
    found = engine_diagnostics()
    (record,) = [r for r in caplog.records if "replaying" in r.getMessage()]
    assert "aaaa00000001_base.py" in record.getMessage() and "boom in the replay" in caplog.text
    # the base's effect is unknown: the revision above is still checked for what needs no history
    assert {d.code for d in found if d.path.name.startswith("bbbb")} >= {"S005"}
    monkeypatch.setattr(replay, "apply_op", real_apply)

    caplog.clear()

    def failing_safety(script, *args):
        if script.path.name.startswith("bbbb"):
            raise RuntimeError("boom in a rule")
        return real_safety(script, *args)

    monkeypatch.setattr(safety, "check_safety", failing_safety)
    engine = Engine([project], trusted=False, cache=False)
    found = engine.snapshot().diagnostics
    ops = (project / "migrations" / "versions" / "bbbb00000002_many_ops.py").resolve()
    engine.set_buffer(ops, ops.read_text())  # the editor reopens it: a new pass, the same text
    assert engine.snapshot().diagnostics == found
    (record,) = [r for r in caplog.records if "checking" in r.getMessage()]  # said once
    assert "bbbb00000002_many_ops.py" in record.getMessage()
    assert not [d for d in found if d.path.name.startswith("bbbb") and d.code[0] in "DS"]
    assert [d for d in found if d.code[0] == "G"] == [d for d in baseline if d.code[0] == "G"]
    monkeypatch.setattr(safety, "check_safety", real_safety)
    assert engine_diagnostics() == baseline
