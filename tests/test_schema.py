"""Stage `schema`: static evaluation of op calls into Alembic ops, and replay along the graph.

Migration files are written with Alembic's own template (`migration_text`); nothing in them
is ever executed (see the sentinel tests)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops
from sqlalchemy.dialects import postgresql

from migration_lsp.compare import CompareOptions, compare
from migration_lsp.graph import RevisionGraph
from migration_lsp.evaluate import OpaqueType, is_opaque_type
from migration_lsp.interpret import evaluate_function
from migration_lsp.replay import Replay, apply_op, apply_other_call, reversed_upgrade
from migration_lsp.schema import SchemaState, TableState, op_table
from migration_lsp.scripts import parse_script

from conftest import line_of, migration_text

EXTRA_IMPORTS = (
    "from sqlalchemy.dialects import postgresql\n"
    "from sqlalchemy.dialects.postgresql import JSONB\n"
)


def make_script(tmp: Path, upgrade: str, rev: str = "a1", down=None, *, downgrade: str | None = None,
                extra_imports: str = EXTRA_IMPORTS, prelude: str = "", name: str | None = None,
                depends_on=None):
    text = migration_text(rev, down, upgrades=textwrap.dedent(upgrade).strip("\n").replace("\n", "\n    "),
                          downgrades=textwrap.dedent(downgrade).strip("\n").replace("\n", "\n    ")
                          if downgrade else None, depends_on=depends_on)
    text = text.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\n" + extra_imports + prelude, 1)
    path = tmp / (name or f"{rev}_x.py")
    path.write_text(text, encoding="utf-8")
    return parse_script(path, text)


def replay_one(script, state: SchemaState | None = None) -> SchemaState:
    state = state or SchemaState()
    for ev in evaluate_function(script, script.upgrade):
        state = apply_op(state, ev, script.path)
    for call in script.upgrade.other_calls:
        state = apply_other_call(state, call, script.path)
    return state


def col(state: SchemaState, table: str, column: str) -> sa.Column:
    t = state.table(table)
    assert t is not None, f"no table {table}"
    c = t.column(column)
    assert c is not None, f"no column {table}.{column}"
    return c.column


def models_of(state: SchemaState) -> dict[str, TableState]:
    """The same schema rebuilt as a 'models' mapping (what a perfect model file would give)."""
    md = sa.MetaData()
    for table in state.tables.values():
        table.to_table(md)
    return {t.key: TableState.from_table(md.tables[t.key]) for t in state.tables.values()}


USERS = """
op.create_table('orgs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
)
op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=True),
    sa.Column('price', sa.Numeric(10, 2), nullable=True),
    sa.Column('data', postgresql.JSONB(), nullable=True),
    sa.Column('blob', JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('tags', postgresql.ARRAY(sa.String()), nullable=True),
    sa.Column('kind', sa.Enum('a', 'b', name='e'), nullable=True),
    sa.Column('created', sa.DateTime(), server_default=sa.text('now()'), nullable=False),
    sa.Column('status', sa.String(10), server_default='new', nullable=True),
    sa.Column('org_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.ForeignKeyConstraint(['org_id'], ['orgs.id'], name='fk_users_org', ondelete='CASCADE'),
    sa.UniqueConstraint('name', name='uq_users_name'),
    sa.CheckConstraint('price > 0', name='ck_users_price'),
)
op.create_index(op.f('ix_users_status'), 'users', ['status', 'created'], unique=False)
"""


# --------------------------------------------------------------------------- evaluation


def test_create_table_columns_types_and_constraints(tmp_path):
    script = make_script(tmp_path, USERS)
    evs = evaluate_function(script, script.upgrade)
    assert [type(e.op) for e in evs] == [alembic_ops.CreateTableOp, alembic_ops.CreateTableOp,
                                         alembic_ops.CreateIndexOp]
    assert all(e.reason == "" for e in evs)
    state = replay_one(script)
    assert set(state.tables) == {"orgs", "users"}
    assert not state.uncertain and not state.unknown

    name = col(state, "users", "name")
    assert isinstance(name.type, sa.String) and name.type.length == 50 and name.nullable
    price = col(state, "users", "price").type
    assert isinstance(price, sa.Numeric) and (price.precision, price.scale) == (10, 2)
    assert isinstance(col(state, "users", "data").type, postgresql.JSONB)
    blob = col(state, "users", "blob").type
    assert isinstance(blob, postgresql.JSONB) and isinstance(blob.astext_type, sa.Text)
    tags = col(state, "users", "tags").type
    assert isinstance(tags, postgresql.ARRAY) and isinstance(tags.item_type, sa.String)
    kind = col(state, "users", "kind").type
    assert isinstance(kind, sa.Enum) and kind.enums == ["a", "b"] and kind.name == "e"
    created = col(state, "users", "created")
    assert isinstance(created.type, sa.DateTime) and created.nullable is False
    assert str(created.server_default.arg.text) == "now()"
    status = col(state, "users", "status")
    assert status.server_default.arg == "new" and status.type.length == 10
    assert col(state, "users", "id").primary_key and not col(state, "users", "name").primary_key

    table = state.table("users").to_table(sa.MetaData())
    fks = [c for c in table.constraints if isinstance(c, sa.ForeignKeyConstraint)]
    assert len(fks) == 1
    assert fks[0].name == "fk_users_org" and fks[0].ondelete == "CASCADE"
    assert [e.target_fullname for e in fks[0].elements] == ["orgs.id"]
    assert [c.name for c in fks[0].columns] == ["org_id"]
    uniques = [c for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    assert [(u.name, [c.name for c in u.columns]) for u in uniques] == [("uq_users_name", ["name"])]
    checks = [c for c in table.constraints if isinstance(c, sa.CheckConstraint)]
    assert [(c.name, str(c.sqltext)) for c in checks] == [("ck_users_price", "price > 0")]
    assert [(i.name, [c.name for c in i.columns], i.unique) for i in table.indexes] == [
        ("ix_users_status", ["status", "created"], False)]
    assert table.primary_key.columns.keys() == ["id"]


def test_replayed_schema_matches_identical_models_with_no_drift(tmp_path):
    state = replay_one(make_script(tmp_path, USERS))
    assert compare(state, models_of(state), CompareOptions(dialect="postgresql", compare_server_default=True)) == []


def test_op_f_name_is_a_conv_name(tmp_path):
    script = make_script(tmp_path, """
        op.create_table('t', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('a', sa.String(5)))
        op.create_index(op.f('ix_t_a'), 't', ['a'], unique=True)
    """)
    evs = evaluate_function(script, script.upgrade)
    index_op = evs[1].op
    assert isinstance(index_op, alembic_ops.CreateIndexOp)
    assert index_op.index_name == "ix_t_a"
    assert isinstance(index_op.index_name, sa.sql.elements.conv)
    index = replay_one(script).table("t").indexes[0][0]
    assert index.unique and index.name == "ix_t_a"


def test_drop_table(tmp_path):
    first = replay_one(make_script(tmp_path, USERS))
    after = replay_one(make_script(tmp_path, "op.drop_table('users')", rev="b1"), first)
    assert set(after.tables) == {"orgs"}
    assert not after.uncertain
    # dropping a table the migrations never created: unknown shape, never an error
    ghost = replay_one(make_script(tmp_path, "op.drop_table('ghost')", rev="c1"), first)
    assert "ghost" in ghost.uncertain and set(ghost.tables) == {"orgs", "users"}


def test_add_and_drop_column(tmp_path):
    base = replay_one(make_script(tmp_path, USERS))
    state = replay_one(make_script(tmp_path, """
        op.add_column('users', sa.Column('email', sa.String(length=255), nullable=False, server_default=''))
        op.add_column('users', sa.Column('nick', sa.String(20), nullable=True, index=True))
        op.drop_column('users', 'status')
        op.drop_column('users', 'name')
    """, rev="b1"), base)
    users = state.table("users")
    names = [c.name for c in users.columns]
    assert "status" not in names and "name" not in names
    assert names[-2:] == ["email", "nick"]
    email = col(state, "users", "email")
    assert email.type.length == 255 and email.nullable is False and email.server_default.arg == ""
    # indexes and constraints on a dropped column go with it
    table = users.to_table(sa.MetaData())
    assert "ix_users_status" not in {i.name for i in table.indexes}
    assert not [c for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    assert "ix_users_nick" in {i.name for i in table.indexes}
    # the state before is untouched (states are values)
    assert base.table("users").column("status") is not None


def test_alter_column_type_nullable_default_rename_and_comment(tmp_path):
    base = replay_one(make_script(tmp_path, USERS))
    state = replay_one(make_script(tmp_path, """
        op.alter_column('users', 'name', existing_type=sa.String(length=50), type_=sa.String(length=100),
                        nullable=False)
        op.alter_column('users', 'status', server_default=sa.text("'old'"))
        op.alter_column('users', 'created', server_default=None)
        op.alter_column('users', 'price', new_column_name='amount', comment='in cents')
    """, rev="b1"), base)
    name = col(state, "users", "name")
    assert isinstance(name.type, sa.String) and name.type.length == 100 and name.nullable is False
    assert str(col(state, "users", "status").server_default.arg.text) == "'old'"
    assert col(state, "users", "created").server_default is None
    users = state.table("users")
    assert users.column("price") is None
    amount = col(state, "users", "amount")
    assert amount.comment == "in cents" and isinstance(amount.type, sa.Numeric)
    # the before state still has the old column
    assert base.table("users").column("price") is not None


def test_rename_column_keeps_its_index_and_constraints(tmp_path):
    """Renaming a column renames it in the database's indexes and constraints too: a model
    declaring the index on the new name is not drift."""
    base = replay_one(make_script(tmp_path, """
        op.create_table('t', sa.Column('id', sa.Integer(), nullable=False), sa.Column('a', sa.String(5)),
                        sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('a', name='uq_t_a'))
        op.create_index('ix_t_a', 't', ['a'])
    """))
    state = replay_one(make_script(tmp_path, "op.alter_column('t', 'a', new_column_name='b')", rev="b1"), base)
    table = state.table("t").to_table(sa.MetaData())
    assert [(i.name, [c.name for c in i.columns]) for i in table.indexes] == [("ix_t_a", ["b"])]
    uniques = [c for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    assert [(u.name, [c.name for c in u.columns]) for u in uniques] == [("uq_t_a", ["b"])]
    assert compare(state, models_of(state), CompareOptions()) == []


def test_create_and_drop_index(tmp_path):
    base = replay_one(make_script(tmp_path, USERS))
    state = replay_one(make_script(tmp_path, """
        op.create_index(op.f('ix_users_name'), 'users', ['name'], unique=True)
        op.drop_index(op.f('ix_users_status'), table_name='users')
    """, rev="b1"), base)
    assert [(i.name, i.unique) for i, _ in state.table("users").indexes] == [("ix_users_name", True)]
    state2 = replay_one(make_script(tmp_path, "op.drop_index('ix_users_name', 'users')", rev="c1"), state)
    assert state2.table("users").indexes == ()


def test_constraints_added_and_dropped(tmp_path):
    state = replay_one(make_script(tmp_path, """
        op.create_table('a', sa.Column('id', sa.Integer(), nullable=False))
        op.create_table('b', sa.Column('id', sa.Integer(), nullable=False), sa.Column('a_id', sa.Integer()),
                        sa.Column('code', sa.String(3)), sa.PrimaryKeyConstraint('id'))
        op.create_primary_key('pk_a', 'a', ['id'])
        op.create_unique_constraint('uq_b_code', 'b', ['code'])
        op.create_foreign_key(op.f('fk_b_a_id_a'), 'b', 'a', ['a_id'], ['id'], ondelete='SET NULL')
        op.create_check_constraint('ck_b_code', 'b', sa.text("length(code) = 3"))
    """))
    assert col(state, "a", "id").primary_key
    b = state.table("b").to_table(sa.MetaData())
    kinds = {(type(c).__name__, c.name) for c in b.constraints if not isinstance(c, sa.PrimaryKeyConstraint)}
    assert kinds == {("UniqueConstraint", "uq_b_code"), ("ForeignKeyConstraint", "fk_b_a_id_a"),
                     ("CheckConstraint", "ck_b_code")}
    fk = next(c for c in b.constraints if isinstance(c, sa.ForeignKeyConstraint))
    assert fk.ondelete == "SET NULL" and [e.target_fullname for e in fk.elements] == ["a.id"]
    after = replay_one(make_script(tmp_path, """
        op.drop_constraint('uq_b_code', 'b', type_='unique')
        op.drop_constraint(op.f('fk_b_a_id_a'), 'b', type_='foreignkey')
    """, rev="b1"), state)
    b2 = after.table("b").to_table(sa.MetaData())
    assert {c.name for c in b2.constraints if not isinstance(c, sa.PrimaryKeyConstraint)} == {"ck_b_code"}


def test_rename_table_and_comments(tmp_path):
    base = replay_one(make_script(tmp_path, USERS))
    state = replay_one(make_script(tmp_path, """
        op.rename_table('users', 'people')
        op.create_table_comment('people', 'everyone')
        op.alter_column('people', 'name', existing_type=sa.String(50), comment='full name')
    """, rev="b1"), base)
    assert state.table("users") is None
    people = state.table("people")
    assert people is not None and people.comment == "everyone"
    assert col(state, "people", "name").comment == "full name"
    assert [c.name for c in people.columns] == [c.name for c in base.table("users").columns]
    dropped = replay_one(make_script(tmp_path, "op.drop_table_comment('people')", rev="c1"), state)
    assert dropped.table("people").comment is None


def test_batch_alter_table_block(tmp_path):
    base = replay_one(make_script(tmp_path, USERS))
    script = make_script(tmp_path, """
        with op.batch_alter_table('users', schema=None) as batch_op:
            batch_op.add_column(sa.Column('nick', sa.String(length=30), nullable=True))
            batch_op.create_index(batch_op.f('ix_users_nick'), ['nick'], unique=True)
            batch_op.alter_column('name', existing_type=sa.String(length=50), type_=sa.String(length=80),
                                  nullable=False)
            batch_op.drop_column('status')
            batch_op.create_unique_constraint('uq_users_nick', ['nick'])
            batch_op.create_foreign_key('fk_users_self', 'users', ['org_id'], ['id'])
            batch_op.drop_constraint('uq_users_name', type_='unique')
    """, rev="b1")
    evs = evaluate_function(script, script.upgrade)
    assert [e.call.name for e in evs] == ["add_column", "create_index", "alter_column", "drop_column",
                                          "create_unique_constraint", "create_foreign_key", "drop_constraint"]
    assert all(e.op is not None for e in evs), [e.reason for e in evs]
    assert all(op_table(e.op) == ("users", None) for e in evs)
    state = replay_one(script, base)
    users = state.table("users")
    assert users.column("status") is None
    assert col(state, "users", "nick").type.length == 30
    assert col(state, "users", "name").type.length == 80 and not col(state, "users", "name").nullable
    assert [(i.name, i.unique) for i, _ in users.indexes] == [("ix_users_nick", True)]
    table = users.to_table(sa.MetaData())
    names = {c.name for c in table.constraints if not isinstance(c, sa.PrimaryKeyConstraint)}
    assert "uq_users_nick" in names and "fk_users_self" in names and "uq_users_name" not in names
    assert not state.uncertain and not state.unknown


def test_dialect_types_through_each_import_style(tmp_path):
    script = make_script(tmp_path, """
        op.create_table('t',
            sa.Column('a', postgresql.UUID(as_uuid=True), nullable=False),
            sa.Column('b', JSONB(), nullable=True),
            sa.Column('c', pg.INET()),
            sa.Column('d', mysql.VARCHAR(length=20, charset='utf8')),
            sa.Column('e', sa.types.Unicode(40)),
            sa.Column('f', sqlalchemy.BigInteger()),
        )
    """, extra_imports=EXTRA_IMPORTS + "from sqlalchemy.dialects import postgresql as pg, mysql\nimport sqlalchemy\n")
    state = replay_one(script)
    assert isinstance(col(state, "t", "a").type, postgresql.UUID)
    assert isinstance(col(state, "t", "b").type, postgresql.JSONB)
    assert isinstance(col(state, "t", "c").type, postgresql.INET)
    d = col(state, "t", "d").type
    assert type(d).__module__.startswith("sqlalchemy.dialects.mysql") and d.length == 20
    assert isinstance(col(state, "t", "e").type, sa.Unicode) and col(state, "t", "e").type.length == 40
    assert isinstance(col(state, "t", "f").type, sa.BigInteger)
    assert not any(is_opaque_type(c.column.type) for c in state.table("t").columns)


# --------------------------------------------------------------------------- opaque things


def test_op_execute_with_ddl_is_read_with_a_sql_parser(tmp_path):
    """Literal DDL is applied as the ops it amounts to; DML changes nothing; DDL the reader
    does not model (a type change) makes its table uncertain."""
    base = replay_one(make_script(tmp_path, USERS))
    script = make_script(tmp_path, """
        op.execute("ALTER TABLE users ADD COLUMN secret text")
        op.execute(sa.text("UPDATE orgs SET id = id"))
        op.execute("INSERT INTO orgs (id) VALUES (1)")
    """, rev="b1")
    evs = evaluate_function(script, script.upgrade)
    assert all(isinstance(e.op, alembic_ops.ExecuteSQLOp) for e in evs)
    state = replay_one(script, base)
    assert not state.uncertain and not state.unknown and not state.opaque
    assert isinstance(col(state, "users", "secret").type, sa.TEXT)
    # a model with the column the raw SQL added: no drift
    models = models_of(base)
    users = base.table("users").to_table(sa.MetaData())
    users.append_column(sa.Column("secret", sa.Text()))
    models["users"] = TableState.from_table(users)
    assert compare(state, models, CompareOptions()) == []
    assert compare(base, models, CompareOptions()) != []  # without the raw SQL it is drift
    typed = replay_one(make_script(tmp_path, """
        op.execute("ALTER TABLE users ALTER COLUMN name TYPE text")
    """, rev="c1"), state)
    assert "users" in typed.uncertain and "orgs" not in typed.uncertain


def test_connection_execute_reads_sql_given_by_keyword(tmp_path):
    """A connection's `execute(statement=...)` is read like `execute("...")`: the body scan's
    replay and the rules read literal SQL with one helper (scripts.sql_literal)."""
    base = replay_one(make_script(tmp_path, USERS))
    script = make_script(tmp_path, """
        conn = op.get_bind()
        conn.execute("ALTER TABLE users ALTER COLUMN name TYPE text")
        conn.execute(statement=sa.text("ALTER TABLE orgs ALTER COLUMN id TYPE bigint"))
    """, rev="b1")
    state = base
    for call in script.upgrade.other_calls:
        state = apply_other_call(state, call, script.path)
    assert [c.name for c in script.upgrade.other_calls] == ["conn.execute", "conn.execute"]
    assert {"users", "orgs"} <= state.uncertain


def test_raw_ddl_statements_become_alembic_ops(tmp_path):
    state = replay_one(make_script(tmp_path, """
        op.execute('''
            CREATE TABLE things (
                id INTEGER PRIMARY KEY,
                name VARCHAR(40) NOT NULL DEFAULT 'x',
                org_id INTEGER REFERENCES orgs (id),
                CONSTRAINT uq_things_name UNIQUE (name)
            );
            CREATE TABLE orgs (id INTEGER PRIMARY KEY);
            CREATE UNIQUE INDEX ix_things_org ON things (org_id);
            CREATE TABLE gone (id INTEGER);
            DROP TABLE gone;
            CREATE INDEX ix_orgs_id ON orgs (id);
            DROP INDEX ix_orgs_id;
            ALTER TABLE orgs RENAME TO companies;
            ALTER TABLE things RENAME COLUMN org_id TO company_id;
            CREATE TABLE IF NOT EXISTS maybe (id INTEGER);
            CREATE VIEW v AS SELECT 1;
        ''')
    """))
    assert set(state.tables) == {"things", "companies", "maybe"}
    things = state.table("things")
    assert [c.name for c in things.columns] == ["id", "name", "company_id"]
    assert col(state, "things", "id").primary_key and col(state, "things", "name").nullable is False
    assert isinstance(col(state, "things", "name").type, sa.VARCHAR) and col(state, "things", "name").type.length == 40
    assert [(i.name, _index_cols(i)) for i, _ in things.indexes] == [("ix_things_org", ("company_id",))]
    fks = [c for c, _ in things.constraints if isinstance(c, sa.ForeignKeyConstraint)]
    assert [e.target_fullname for e in fks[0].elements] == ["companies.id"]
    assert not state.table("companies").indexes
    # IF NOT EXISTS of a table the history has not made: made (what a fresh database does)
    assert not state.uncertain and [c.name for c in state.table("maybe").columns] == ["id"]


def _index_cols(index) -> tuple:
    from migration_lsp.schema import index_columns
    return index_columns(index)


def test_a_helper_handed_op_is_opaque_at_its_call_and_the_rest_is_compared(tmp_path):
    """A function of another module handed `op` may run ops we cannot see: said at the call
    (`opaque`), its string arguments' tables uncertain; every other table is still compared."""
    base = replay_one(make_script(tmp_path, USERS))
    script = make_script(tmp_path, """
        create_audit_tables(op)
        add_history(op, 'orgs')
        op.add_column('users', sa.Column('x', sa.Integer()))
    """, rev="b1", prelude="from myapp.migrations import add_history, create_audit_tables\n")
    state = replay_one(script, base)
    assert not state.unknown and len(state.opaque) == 1 and state.opaque[0][0] == script.path
    assert state.opaque[0][1].line == line_of(script.text, "create_audit_tables(op)")
    assert "orgs" in state.uncertain and "users" not in state.uncertain
    assert state.table("users").column("x") is not None  # the ops around it still count
    models = models_of(base)  # without users.x
    del models["orgs"]  # uncertain: not reported
    assert [(d.kind, d.what) for d in compare(state, models, CompareOptions())] == [("extra", "column users.x")]
    # logging / printing is harmless
    quiet = replay_one(make_script(tmp_path, "print('hi')\nlogger.info('x')", rev="c1"), base)
    assert not quiet.unknown


def test_custom_type_is_opaque_and_never_compared(tmp_path):
    script = make_script(tmp_path, """
        op.create_table('t',
            sa.Column('id', myapp.types.GUID(), nullable=False),
            sa.Column('v', sa.String(10)),
            sa.PrimaryKeyConstraint('id'),
        )
        op.add_column('t', sa.Column('w', MyType(length=3)))
    """, prelude="import myapp.types\nfrom myapp import MyType\n")
    evs = evaluate_function(script, script.upgrade)
    assert all(e.op is not None for e in evs)
    state = replay_one(script)
    guid = col(state, "t", "id").type
    assert isinstance(guid, OpaqueType) and guid.source == "myapp.types.GUID()"
    assert isinstance(col(state, "t", "w").type, OpaqueType)
    assert isinstance(col(state, "t", "v").type, sa.String)
    # whatever the models say the custom type is, it is not a difference
    md = sa.MetaData()
    model = sa.Table("t", md, sa.Column("id", sa.String(36), primary_key=True), sa.Column("v", sa.String(10)),
                     sa.Column("w", sa.Integer()))
    assert compare(state, {"t": TableState.from_table(model)}, CompareOptions(dialect="postgresql")) == []


def test_variable_names_fstrings_and_star_args_never_raise_nor_drift(tmp_path):
    """Names imported from another module are unknown: an op whose table is one is opaque
    (said at the call), one whose other arguments are makes its table uncertain."""
    base = replay_one(make_script(tmp_path, USERS))
    script = make_script(tmp_path, """
        op.create_table(TABLE, sa.Column('id', sa.Integer()))
        op.add_column(f"{PREFIX}_users", sa.Column('x', sa.Integer()))
        op.add_column('users', *COLUMNS)
        op.alter_column('orgs', 'id', **OPTIONS)
        op.create_index('ix_orgs_id', 'orgs', [f"{NAME}"])
        op.add_column('orgs', sa.Column(f"c_{N}", sa.Integer()))
    """, rev="b1", prelude="from myapp.names import TABLE, PREFIX, COLUMNS, OPTIONS, NAME, N\n")
    evs = evaluate_function(script, script.upgrade)
    assert len(evs) == 6
    assert evs[0].op is None and evs[1].op is None
    assert evs[2].op is None and evs[2].reason == "*args / **kwargs"
    assert evs[3].op is None
    state = replay_one(script, base)
    assert {"users", "orgs"} <= state.uncertain
    assert not state.unknown and [o[1].line for o in state.opaque] == [
        line_of(script.text, "op.create_table(TABLE"), line_of(script.text, 'op.add_column(f"{PREFIX}')]
    models = models_of(base)
    assert compare(state, models, CompareOptions()) == []  # nothing false about the known tables
    # a model table no op can have created is still reported (the opaque call is said at the call)
    models["things"] = TableState.from_table(sa.Table("things", sa.MetaData(), sa.Column("id", sa.Integer()),
                                                      sa.Column("label", sa.Text())))
    assert [(d.kind, d.what) for d in compare(state, models, CompareOptions())] == [("missing", "table things")]
    # a model table of exactly the columns the opaque create_table makes may be that table: not reported
    models["things"] = TableState.from_table(sa.Table("things", sa.MetaData(), sa.Column("id", sa.Integer())))
    assert compare(state, models, CompareOptions()) == []


def test_half_typed_and_wrong_calls_never_raise(tmp_path):
    script = make_script(tmp_path, """
        op.add_column('users')
        op.create_table()
        op.alter_column('users', 'name', type_=sa.String(length='x'), bogus=1)
        op.no_such_operation('users')
        op.drop_column('users', 'missing')
        op.create_index('ix', 'users', ['id'], postgresql_where=sa.text('id > 0'))
        op.create_table('z', sa.Column('id', sa.Integer(), sa.ForeignKey('nowhere.id')))
    """)
    evs = evaluate_function(script, script.upgrade)
    assert len(evs) == 7
    assert evs[0].op is None and evs[1].op is None and evs[3].op is None
    assert "unknown operation" in evs[3].reason
    state = replay_one(script)
    assert "z" in state.tables and "users" in state.uncertain


# --------------------------------------------------------------------------- nothing runs

def test_parse_and_replay_never_execute_anything(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    prelude = textwrap.dedent(f"""
        import os
        open({str(sentinel)!r} + '-module', 'w').write('ran')
        os.system('touch {sentinel}-system')


        def write_file(op):
            open({str(sentinel)!r} + '-helper', 'w').write('ran')
            return sa.Integer()

    """)
    script = make_script(tmp_path, f"""
        write_file(op)
        op.create_table('t', sa.Column('id', write_file(op)), sa.Column('b', sa.Integer(), default=write_file))
        op.add_column('t', sa.Column('c', __import__('os').system('touch {sentinel}-import')))
        op.execute(open({str(sentinel)!r} + '-arg', 'w').write('x'))
        op.add_column('t', sa.Column('d', sa.util.langhelpers.os.system('touch {sentinel}-via-sa')))
        op.add_column('t', sa.Column('e', sa.create_engine('sqlite:///{sentinel}-engine.db').connect()))
        op.bulk_insert(sa.table('t', sa.column('id')), [{{'id': write_file(op)}}])
        sa.event.listen(sa.MetaData(), 'before_create', write_file)
    """, prelude=prelude, downgrade="write_file(op)")
    graph = RevisionGraph([script])
    replay = Replay(graph)
    result = replay.revision("a1")
    evaluate_function(script, script.downgrade)
    reversed_upgrade(result.upgrade, result.before)
    assert "t" in result.after.tables
    # the file's own helper is followed (its return value is SQLAlchemy's), never run
    assert isinstance(col(result.after, "t", "id").type, sa.Integer)
    assert isinstance(col(result.after, "t", "c").type, OpaqueType)
    assert list(tmp_path.glob("SENTINEL*")) == []


# --------------------------------------------------------------------------- replay along the graph


def _graph(tmp_path, revisions):
    scripts = [make_script(tmp_path, up, rev, down, depends_on=deps) for rev, down, up, deps in revisions]
    return RevisionGraph(scripts), scripts


def test_replay_before_and_after_each_revision(tmp_path):
    graph, _ = _graph(tmp_path, [
        ("r1", None, "op.create_table('a', sa.Column('id', sa.Integer(), primary_key=True))", None),
        ("r2", "r1", "op.add_column('a', sa.Column('x', sa.String(5)))", None),
        ("r3", "r2", "op.drop_column('a', 'x')\nop.create_table('b', sa.Column('id', sa.Integer()))", None),
    ])
    replay = Replay(graph)
    r1, r2, r3 = (replay.revision(r) for r in ("r1", "r2", "r3"))
    assert r1.before.tables == {} and set(r1.after.tables) == {"a"}
    assert r2.before is r1.after
    assert [c.name for c in r2.after.table("a").columns] == ["id", "x"]
    assert r3.before is r2.after
    assert [c.name for c in r3.after.table("a").columns] == ["id"] and set(r3.after.tables) == {"a", "b"}
    assert set(replay.at_heads().tables) == {"a", "b"}


def test_replay_across_a_merge_point(tmp_path):
    graph, _ = _graph(tmp_path, [
        ("base", None, "op.create_table('a', sa.Column('id', sa.Integer(), primary_key=True))", None),
        ("left", "base", "op.add_column('a', sa.Column('l', sa.Integer()))\n"
                         "op.create_table('lt', sa.Column('id', sa.Integer()))", None),
        ("right", "base", "op.add_column('a', sa.Column('r', sa.Integer()))\n"
                          "op.create_index('ix_a_r', 'a', ['r'])", None),
        ("merge", ("left", "right"), "pass", None),
        ("after", "merge", "op.add_column('lt', sa.Column('y', sa.Integer()))", None),
    ])
    replay = Replay(graph)
    merged = replay.revision("merge")
    assert merged.upgrade == ()
    assert set(merged.before.tables) == {"a", "lt"}
    assert {c.name for c in merged.before.table("a").columns} == {"id", "l", "r"}
    assert [i.name for i, _ in merged.before.table("a").indexes] == ["ix_a_r"]
    assert merged.after is merged.before
    head = replay.at_heads()
    assert {c.name for c in head.table("lt").columns} == {"id", "y"}
    # each branch alone knows only its own change
    assert replay.revision("left").after.table("a").column("r") is None
    assert replay.revision("right").after.table("lt") is None


def test_replay_follows_depends_on(tmp_path):
    graph, _ = _graph(tmp_path, [
        ("core1", None, "op.create_table('accounts', sa.Column('id', sa.Integer(), primary_key=True))", None),
        ("feat1", None, "op.create_table('feature', sa.Column('id', sa.Integer(), primary_key=True))", None),
        ("feat2", "feat1", "op.add_column('accounts', sa.Column('flag', sa.Boolean()))", "core1"),
    ])
    replay = Replay(graph)
    feat2 = replay.revision("feat2")
    assert set(feat2.before.tables) == {"accounts", "feature"}
    assert col(feat2.after, "accounts", "flag") is not None
    assert "accounts" not in feat2.after.uncertain


def test_replay_reuses_unchanged_revisions_and_recomputes_descendants(tmp_path):
    graph, scripts = _graph(tmp_path, [
        ("r1", None, "op.create_table('a', sa.Column('id', sa.Integer(), primary_key=True))", None),
        ("r2", "r1", "op.add_column('a', sa.Column('x', sa.String(5)))", None),
        ("r3", "r2", "op.add_column('a', sa.Column('y', sa.Integer()))", None),
        ("s2", "r1", "op.create_table('side', sa.Column('id', sa.Integer()))", None),
    ])
    old = Replay(graph)
    before = {r: old.revision(r) for r in ("r1", "r2", "r3", "s2")}
    # edit r2 (a new script object for the same file, as the engine makes on a change)
    edited = make_script(tmp_path, "op.add_column('a', sa.Column('x', sa.String(50)))", "r2", "r1",
                         name=scripts[1].path.name)
    graph2 = RevisionGraph([scripts[0], edited, scripts[2], scripts[3]])
    new = Replay(graph2, previous=old)
    assert new.revision("r1") is before["r1"]
    assert new.revision("s2") is before["s2"]
    assert new.revision("r2") is not before["r2"]
    assert new.revision("r3") is not before["r3"]
    assert col(new.revision("r3").after, "a", "x").type.length == 50
    assert col(before["r3"].after, "a", "x").type.length == 5
    # the unchanged r3's evaluated ops are reused, its schema is not
    assert new.revision("r3").upgrade is before["r3"].upgrade
    # nothing changed: everything is reused
    again = Replay(graph2, previous=new)
    assert all(again.revision(r) is new.revision(r) for r in ("r1", "r2", "r3", "s2"))


# --------------------------------------------------------------------------- reversal


def test_reversed_upgrade_uses_the_schema_history(tmp_path):
    base = replay_one(make_script(tmp_path, USERS))
    script = make_script(tmp_path, """
        op.drop_index('ix_users_status', table_name='users')
        op.drop_column('users', 'status')
        op.alter_column('users', 'name', type_=sa.String(length=200))
        op.add_column('users', sa.Column('nick', sa.String(10)))
        op.execute("UPDATE users SET nick = name")
    """, rev="b1")
    evs = evaluate_function(script, script.upgrade)
    downgrade, irreversible = reversed_upgrade(evs, base)
    assert [e.call.name for e in irreversible] == ["execute"]
    assert [type(o).__name__ for o in downgrade] == ["DropColumnOp", "AlterColumnOp", "AddColumnOp",
                                                     "CreateIndexOp"]
    assert downgrade[0].column_name == "nick"
    assert isinstance(downgrade[1].modify_type, sa.String) and downgrade[1].modify_type.length == 50
    assert downgrade[3].index_name == "ix_users_status" and \
        [getattr(c, "name", c) for c in downgrade[3].columns] == ["status", "created"]
    restored = downgrade[2].column
    assert restored.name == "status" and restored.type.length == 10 and restored.server_default.arg == "new"


def test_create_foreign_key_is_replayed_and_matches_a_model_fk(tmp_path):
    """create_foreign_key's op names its table `source_table`: it must still land in the schema."""
    state = replay_one(make_script(tmp_path, """
        op.create_table('a', sa.Column('id', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'))
        op.create_table('b', sa.Column('id', sa.Integer(), nullable=False), sa.Column('a_id', sa.Integer()),
                        sa.PrimaryKeyConstraint('id'))
        op.create_foreign_key('fk_b_a', 'b', 'a', ['a_id'], ['id'])
    """))
    md = sa.MetaData()
    a = sa.Table("a", md, sa.Column("id", sa.Integer(), primary_key=True))
    b = sa.Table("b", md, sa.Column("id", sa.Integer(), primary_key=True),
                 sa.Column("a_id", sa.Integer(), sa.ForeignKey("a.id", name="fk_b_a")))
    models = {"a": TableState.from_table(a), "b": TableState.from_table(b)}
    assert compare(state, models, CompareOptions()) == []
    # and a model without it: the FK is reported as extra, located on the op
    b2 = sa.Table("b", sa.MetaData(), sa.Column("id", sa.Integer(), primary_key=True), sa.Column("a_id", sa.Integer()))
    diffs = compare(state, {"a": models["a"], "b": TableState.from_table(b2)}, CompareOptions())
    assert [(d.kind, type(d.op).__name__) for d in diffs] == [("extra", "DropConstraintOp")]
    assert diffs[0].schema_origin[1].line == line_of(
        (tmp_path / "a1_x.py").read_text(), "op.create_foreign_key")


def test_foreign_keys_follow_a_renamed_table_and_column(tmp_path):
    base = replay_one(make_script(tmp_path, """
        op.create_table('users', sa.Column('id', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'))
        op.create_table('posts', sa.Column('id', sa.Integer(), nullable=False),
                        sa.Column('user_id', sa.Integer(), nullable=True),
                        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_posts_user'),
                        sa.PrimaryKeyConstraint('id'))
    """))
    state = replay_one(make_script(tmp_path, """
        op.rename_table('users', 'people')
        op.alter_column('people', 'id', new_column_name='pid')
        op.alter_column('posts', 'user_id', new_column_name='person_id')
    """, rev="b1"), base)
    posts = state.table("posts").to_table(sa.MetaData())
    fk = next(c for c in posts.constraints if isinstance(c, sa.ForeignKeyConstraint))
    assert [c.name for c in fk.columns] == ["person_id"]
    assert [e.target_fullname for e in fk.elements] == ["people.pid"]
    assert fk.name == "fk_posts_user"
    assert compare(state, models_of(state), CompareOptions()) == []


def test_ops_inside_if_are_applied_but_marked_uncertain(tmp_path):
    state = replay_one(make_script(tmp_path, """
        op.create_table('t', sa.Column('id', sa.Integer()))
        if op.get_context().dialect.name == 'postgresql':
            op.add_column('t', sa.Column('pg_only', postgresql.JSONB()))
    """))
    assert state.table("t").column("pg_only") is not None
    assert "t" in state.uncertain


def test_batch_with_an_unknown_table_name_is_opaque(tmp_path):
    script = make_script(tmp_path, """
        with op.batch_alter_table(NAME) as batch_op:
            batch_op.add_column(sa.Column('x', sa.Integer()))
    """, prelude="from myapp import NAME\n")
    evs = evaluate_function(script, script.upgrade)
    assert [(e.op, e.reason) for e in evs] == [(None, "batch table name is not a literal")]
    state = replay_one(script)
    assert state.opaque and not state.unknown


def test_batch_with_a_constant_table_name(tmp_path):
    base = replay_one(make_script(tmp_path, USERS))
    script = make_script(tmp_path, """
        with op.batch_alter_table(NAME) as batch_op:
            batch_op.add_column(sa.Column('x', sa.Integer()))
    """, rev="b1", prelude="NAME = 'users'\n")
    state = replay_one(script, base)
    assert state.table("users").column("x") is not None and not state.opaque


def test_tables_in_a_schema(tmp_path):
    state = replay_one(make_script(tmp_path, """
        op.create_table('a', sa.Column('id', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'),
                        schema='app')
        op.create_table('b', sa.Column('id', sa.Integer(), nullable=False), sa.Column('a_id', sa.Integer()),
                        sa.PrimaryKeyConstraint('id'), schema='app')
        op.add_column('b', sa.Column('x', sa.String(3)), schema='app')
        op.create_foreign_key('fk_b_a', 'b', 'a', ['a_id'], ['id'], source_schema='app', referent_schema='app')
        op.create_index('ix_b_x', 'b', ['x'], schema='app')
    """))
    assert set(state.tables) == {"app.a", "app.b"} and state.table("b") is None
    b = state.table("b", "app")
    assert b.column("x") is not None and [i.name for i, _ in b.indexes] == ["ix_b_x"]
    fk = next(c for c in b.to_table(sa.MetaData()).constraints if isinstance(c, sa.ForeignKeyConstraint))
    assert [e.target_fullname for e in fk.elements] == ["app.a.id"]
    assert not state.uncertain
    md = sa.MetaData(schema="app")
    sa.Table("a", md, sa.Column("id", sa.Integer(), primary_key=True))
    mb = sa.Table("b", md, sa.Column("id", sa.Integer(), primary_key=True),
                  sa.Column("a_id", sa.Integer(), sa.ForeignKey("app.a.id", name="fk_b_a")),
                  sa.Column("x", sa.String(3)), sa.Index("ix_b_x", "x"))  # (index=True: ix_app_b_x, a name-only
    # difference Alembic reports as remove + add)
    models = {t.key: TableState.from_table(t) for t in md.tables.values()}
    assert "app.b" in models and mb.schema == "app"
    assert compare(state, models, CompareOptions()) == []


def test_sqlite_keeps_a_raw_primary_key_without_not_null_nullable(tmp_path):
    """What SQLite's reflection (and so Alembic's comparison) says of `id INTEGER PRIMARY KEY`
    written in raw SQL: nullable there, NOT NULL on every other dialect."""
    script = make_script(tmp_path, 'op.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")')
    graph = RevisionGraph([script])
    for dialect, nullable in (("sqlite", True), ("postgresql", False), (None, False)):
        state = Replay(graph, dialect=dialect).at_heads()
        assert col(state, "t", "id").nullable is nullable and col(state, "t", "n").nullable is False


def test_alter_index_rename_keeps_the_index_under_its_new_name(tmp_path):
    """prefect renames an index in raw SQL (`ALTER INDEX ix RENAME TO uq`, PostgreSQL): the
    database then holds the same index under the new name, so must the replay (the old
    name left behind was a false remove_index + add_index pair)."""
    base = replay_one(make_script(tmp_path, """
        op.create_table('limits', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('tag', sa.String(20)))
        op.create_index('ix_limits_tag', 'limits', ['tag'], unique=True)
        op.create_index('ix_limits_lower', 'limits', [sa.text('lower(tag)')])
    """))
    state = replay_one(make_script(tmp_path, """
        op.execute("ALTER INDEX ix_limits_tag RENAME TO uq_limits_tag")
        op.execute("ALTER INDEX nowhere RENAME TO still_nowhere")
    """, rev="b1", down="a1"), base)
    indexes = {i.name: (i.unique, _index_cols(i)) for i, _ in state.table("limits").indexes}
    assert indexes["uq_limits_tag"] == (True, ("tag",)) and set(indexes) == {"uq_limits_tag", "ix_limits_lower"}
    assert not state.uncertain
    # an index on an expression: its exact text is not kept, so its table becomes uncertain
    renamed = replay_one(make_script(tmp_path, 'op.execute("ALTER INDEX ix_limits_lower RENAME TO ix_lower")',
                                     rev="c1", down="a1"), base)
    assert "limits" in renamed.uncertain
