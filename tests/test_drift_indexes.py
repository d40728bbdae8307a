"""Index comparison in the static pass, checked against real Alembic on SQLite.

Indexes with a sort order (`text("start_time DESC")`, `column("id").desc()`), on an
expression (`func.lower(name)`, `(a->>'id')` in raw SQL), or partial (`sqlite_where`):
SQLite's reflection keeps column names only and skips expression indexes, so Alembic
reports some of them changed (remove + add) and skips others. The static pass carries the
elements on both sides (models: model_child; migrations: create_index / raw SQL) and
reflects them as SQLite would; it must report exactly what Alembic reports.
Cases: arize-phoenix, mlflow (benchmarks/realworld).
"""

from __future__ import annotations

import sqlalchemy as sa
from test_drift_fixtures import build, ours, truth

from migration_lsp.compare import CompareOptions, run_alembic_compare
from migration_lsp.schema import TableState

TABLES = """
# upgrade
op.create_table("traces", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("project_rowid", sa.Integer()),
                sa.Column("start_time", sa.Integer()), sa.Column("name", sa.String(50)), sa.Column("flag", sa.Boolean()))
"""

MODELS = """
import sqlalchemy as sa
metadata = sa.MetaData()
traces = sa.Table("traces", metadata, sa.Column("id", sa.Integer(), primary_key=True),
                  sa.Column("project_rowid", sa.Integer()), sa.Column("start_time", sa.Integer()),
                  sa.Column("name", sa.String(50)), sa.Column("flag", sa.Boolean()))
"""


def check(tmp_path, upgrade: str, indexes: str) -> set[tuple]:
    root = build(tmp_path, [TABLES, upgrade], MODELS + indexes)
    expected = truth(root)
    found, _, _ = ours(root)
    assert found == expected
    return found


def test_a_sort_order_in_text_is_remove_and_add_on_sqlite(tmp_path):
    """arize-phoenix: `Index(name, "project_rowid", text("start_time DESC"))` in the models,
    `CREATE INDEX ... (project_rowid, start_time DESC)` in op.execute: SQLite reflects
    (project_rowid, start_time), the model's index is on (project_rowid) and an expression."""
    found = check(tmp_path, """
        # upgrade
        op.execute("CREATE INDEX IF NOT EXISTS ix_traces_rowid_start ON traces (project_rowid, start_time DESC)")
        op.create_index("ix_traces_name_start", "traces", ["name", sa.text("start_time DESC")])
    """, """
sa.Index("ix_traces_rowid_start", "project_rowid", sa.text("start_time DESC"), _table=traces)
sa.Index("ix_traces_name_start", "name", sa.text("start_time DESC"), _table=traces)
""")
    assert ("remove_index", "traces", "ix_traces_rowid_start") in found
    assert ("add_index", "traces", "ix_traces_name_start") in found


def test_a_desc_column_and_a_partial_index_on_sqlite(tmp_path):
    """arize-phoenix: `op.create_index(name, table, ["a", sa.column("id").desc()],
    sqlite_where=sa.text(...))` and the models' `Index(name, "a", sa.desc("id"),
    sqlite_where=...)`: a changed index for Alembic (the model's desc("id") is an expression);
    `t.c.start_time.desc()` on both sides is the same index (reflected without its order)."""
    found = check(tmp_path, """
        # upgrade
        op.create_index("ix_traces_compaction", "traces", ["project_rowid", sa.column("id").desc()],
                        sqlite_where=sa.text("flag"), postgresql_where=sa.text("flag"))
        op.create_index("ix_traces_start_desc", "traces", [sa.column("start_time").desc()])
    """, """
sa.Index("ix_traces_compaction", "project_rowid", sa.desc("id"), sqlite_where=sa.text("flag"),
         postgresql_where=sa.text("flag"), _table=traces)
sa.Index("ix_traces_start_desc", traces.c.start_time.desc())
""")
    assert ("add_index", "traces", "ix_traces_compaction") in found
    assert not {i for i in found if i[2] == "ix_traces_start_desc"}


def test_expression_indexes_sqlite_cannot_reflect_are_skipped(tmp_path):
    """An index on an expression: SQLite's reflection skips it, Alembic skips the models'
    one of the same name (with a warning) and reports an expression index the models lack
    nowhere; a plain index of the same name in the models is one the database lacks."""
    found = check(tmp_path, """
        # upgrade
        op.execute("CREATE INDEX ix_traces_lower_name ON traces (lower(name))")
        op.execute("CREATE INDEX ix_traces_only_here ON traces (lower(name), id)")
        op.execute("CREATE INDEX ix_traces_plain_in_models ON traces (lower(name))")
    """, """
sa.Index("ix_traces_lower_name", sa.func.lower(traces.c.name))
sa.Index("ix_traces_only_in_models", sa.func.lower(traces.c.name), traces.c.id)
sa.Index("ix_traces_plain_in_models", traces.c.name)
""")
    assert found == {("add_index", "traces", "ix_traces_plain_in_models")}


def pg_items(schema_index, model_index) -> list:
    """Alembic's ops between two one-table metadatas, the static schema reflected as
    PostgreSQL would (via TableState, as compare() builds them)."""
    out = []
    for build_index in (schema_index, model_index):
        metadata = sa.MetaData()
        table = sa.Table("t", metadata, sa.Column("id", sa.Integer(), primary_key=True),
                         sa.Column("a", sa.String(20)), sa.Column("b", sa.Integer()))
        build_index(table)
        out.append(TableState.from_table(table).to_table(sa.MetaData()).metadata)
    ops = run_alembic_compare(out[0], out[1], CompareOptions(dialect="postgresql")).ops
    return [type(sub).__name__ for op in ops for sub in getattr(op, "ops", [op])]


def test_postgresql_compares_sort_orders_as_the_server_reflects_them():
    """PostgreSQL keeps the sort order: `text("b DESC")` and `b DESC` are one index there
    (mlflow's idx_mcp_server_versions_latest is no difference on PostgreSQL), ASC is no
    order, and a different order is a changed index."""
    def text_desc(t):
        sa.Index("ix", t.c.a, sa.text("b DESC"), _table=t)

    def column_desc(t):
        sa.Index("ix", t.c.a, t.c.b.desc())

    def column_asc(t):
        sa.Index("ix", t.c.a, t.c.b.asc())

    def plain(t):
        sa.Index("ix", t.c.a, t.c.b)

    assert pg_items(column_desc, text_desc) == []
    assert pg_items(plain, column_asc) == []
    assert pg_items(plain, text_desc) == ["DropIndexOp", "CreateIndexOp"]


def test_a_table_with_an_unreadable_generated_column_or_check_is_still_compared(tmp_path):
    """arize-phoenix's agent_session_messages: `sa.Computed(message["id"].as_string())` and
    a CHECK whose text a helper builds: Alembic compares neither, so neither makes the table
    uncertain (it used to: its indexes were never compared)."""
    root = build(tmp_path, ["""
        import os
        # upgrade
        payload = sa.Column("payload", sa.JSON(), nullable=False)
        op.create_table("messages", sa.Column("id", sa.Integer(), primary_key=True), payload,
                        sa.Column("message_id", sa.String(), sa.Computed(payload["id"].as_string(), persisted=True)),
                        sa.Column("flag", sa.Boolean()),
                        sa.CheckConstraint(os.environ.get("MESSAGE_CHECK", "id > 0"), name="valid_id"))
        op.create_index("ix_messages_compaction", "messages", ["message_id", sa.column("id").desc()],
                        sqlite_where=sa.text("flag"))
    """], """
import sqlalchemy as sa
metadata = sa.MetaData()
messages = sa.Table("messages", metadata, sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("payload", sa.JSON(), nullable=False),
                    sa.Column("message_id", sa.String(), sa.Computed("json_extract(payload, '$.id')")),
                    sa.Column("flag", sa.Boolean()), sa.Column("extra", sa.Integer()))
sa.Index("ix_messages_compaction", "message_id", sa.desc("id"), sqlite_where=sa.text("flag"), _table=messages)
""")
    expected = truth(root)
    found, _, _ = ours(root)
    assert found == expected
    assert {("add_column", "messages", "extra"), ("add_index", "messages", "ix_messages_compaction")} <= found


def test_mlflow_indexes_with_no_dialect_configured(tmp_path, monkeypatch):
    """mlflow (`sqlalchemy.url = ""`, a mysql.MEDIUMTEXT variant in the tables, so the types
    are compared as MySQL): indexes are still reflected as SQLite, which stands in for the
    database, so `text("version_major DESC")` on both sides is a changed index, as for
    Alembic on SQLite; and `Index("index_trace_tags_request_id")` in __table_args__ (no
    columns at all) is an index of the models, changed against the migrations' one."""
    root = build(tmp_path, [TABLES, """
        from sqlalchemy.dialects.mysql import MEDIUMTEXT
        # upgrade
        op.add_column("traces", sa.Column("doc", sa.Text().with_variant(MEDIUMTEXT, "mysql")))
        op.create_index("idx_traces_latest", "traces", ["name", sa.text("start_time DESC")])
        op.create_index("index_traces_project_rowid", "traces", ["project_rowid"])
    """], MODELS + """
from sqlalchemy.dialects.mysql import MEDIUMTEXT
traces.append_column(sa.Column("doc", sa.Text().with_variant(MEDIUMTEXT, "mysql")))
sa.Index("idx_traces_latest", "name", sa.text("start_time DESC"), _table=traces)
traces.append_constraint(sa.Index("index_traces_project_rowid"))
""")
    from test_drift_fixtures import ENV_PY, INI
    (root / "alembic.ini").write_text(INI.replace("sqlite:///%(here)s/app.db", ""), encoding="utf-8")
    env_py = root / "migrations" / "env.py"
    env_py.write_text(ENV_PY.replace("engine_from_config(context.config.get_section(context.config.config_ini_section),\n"
                                     "                                     prefix=\"sqlalchemy.\", poolclass=pool.NullPool)",
                                     "engine_from_config({'sqlalchemy.url': os.environ['FIXTURE_DB_URL']}, "
                                     "prefix='sqlalchemy.', poolclass=pool.NullPool)"), encoding="utf-8")
    assert "FIXTURE_DB_URL" in env_py.read_text(encoding="utf-8")
    with monkeypatch.context() as env:
        env.setenv("FIXTURE_DB_URL", f"sqlite:///{root}/app.db")
        expected = truth(root)
    found, _, _ = ours(root)
    assert found == expected
    assert {("add_index", "traces", "idx_traces_latest"), ("remove_index", "traces", "index_traces_project_rowid"),
            ("add_index", "traces", "index_traces_project_rowid")} <= found


def test_an_index_made_under_an_undecidable_test_leaves_its_table_compared(tmp_path):
    """prefect: `if invalid_index: op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix")`, and
    `CREATE INDEX IF NOT EXISTS` under a test of what the database holds: only that index
    may or may not be there; every other difference of its table is still reported (the
    table used to become uncertain, hiding flow_run's and deployment's drift)."""
    root = build(tmp_path, [TABLES, """
        import os
        # upgrade
        bind = op.get_bind()
        if bind.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'ix_nope'").scalar() is None:
            op.execute("CREATE INDEX IF NOT EXISTS ix_traces_name ON traces (name)")
        if os.environ.get("NEVER_SET_IN_THIS_TEST"):
            op.execute("DROP INDEX IF EXISTS ix_traces_name")
            op.create_index("ix_traces_start", "traces", ["start_time"])
    """], MODELS + """
traces.append_column(sa.Column("extra", sa.Integer()))
""")
    expected = truth(root)
    assert ("remove_index", "traces", "ix_traces_name") in expected
    found, _, _ = ours(root)
    assert found == expected - {("remove_index", "traces", "ix_traces_name")}
    assert ("add_column", "traces", "extra") in found


def test_a_type_decorator_is_its_dialect_impl(tmp_path):
    """prefect's JSON: a TypeDecorator with `impl = postgresql.JSONB` whose
    load_dialect_impl gives sqlite.JSON on SQLite; the migrations add `sqlite.JSON()`: the
    same type for Alembic (the models' side used to say JSONB: a false M003, seen once
    prefect's deployment table was no longer uncertain)."""
    found = check(tmp_path, """
        from sqlalchemy.dialects import sqlite
        # upgrade
        op.add_column("traces", sa.Column("pull_steps", sqlite.JSON(), nullable=True))
    """, """
from sqlalchemy.dialects import postgresql, sqlite


class JSON(sa.types.TypeDecorator):
    impl = postgresql.JSONB
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sqlite.JSON(none_as_null=True))
        return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))


traces.append_column(sa.Column("pull_steps", JSON(), nullable=True))
""")
    assert found == set()


def test_drop_constraint_in_raw_sql_is_a_drop_constraint_op():
    """prefect: `ALTER TABLE flow_run DROP CONSTRAINT IF EXISTS fk_...` is the drop of that
    constraint (it used to make flow_run uncertain)."""
    from alembic.operations import ops as alembic_ops

    from migration_lsp.rawsql import ddl_effects

    (effect,) = ddl_effects("ALTER TABLE flow_run DROP CONSTRAINT IF EXISTS fk_flow_run__deployment_id", "postgresql")
    assert isinstance(effect.op, alembic_ops.DropConstraintOp) and not effect.uncertain
    assert (effect.op.table_name, effect.op.constraint_name) == ("flow_run", "fk_flow_run__deployment_id")


def test_an_index_made_by_sql_we_cannot_read_is_not_reported(tmp_path):
    """arize-phoenix: `op.execute(f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF
    NOT EXISTS ix ON project_sessions (...)")` with `concurrently` unknown: every choice makes
    the same index, so it is made (and compared: SQLite has it on other columns than the
    models). SQL with a part we cannot read at all (`{suffix}`) may make its index or not:
    that index is not reported (a false M001 on PostgreSQL), its table is still compared."""
    root = build(tmp_path, [TABLES, """
        import os
        # upgrade
        concurrently = os.environ.get("NEVER_SET_IN_THIS_TEST") == "true"
        suffix = os.environ.get("NEVER_SET_IN_THIS_TEST", "")
        op.execute(f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS ix_traces_rowid_name "
                   "ON traces (project_rowid, name)")
        op.execute(f"CREATE INDEX IF NOT EXISTS ix_traces_start{suffix} ON traces (start_time)")
    """], MODELS + """
traces.append_column(sa.Column("extra", sa.Integer()))
sa.Index("ix_traces_rowid_name", traces.c.project_rowid)
sa.Index("ix_traces_start", traces.c.start_time)
""")
    expected = truth(root)
    found, _, _ = ours(root)
    assert found == expected == {("add_column", "traces", "extra"), ("add_index", "traces", "ix_traces_rowid_name"),
                                 ("remove_index", "traces", "ix_traces_rowid_name")}
