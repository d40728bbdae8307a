"""Static drift on a table an op may not have changed, or changed in a way we cannot read.

Real migrations guard ops with what the database answers (`inspector.get_unique_constraints`,
`get_columns`) or loop over such answers: the replay cannot decide them. Such an op makes its
table uncertain only in what it can change (its index, constraint or column), so the rest of
the table is still compared. Alembic is the referee (`upgrade head` on SQLite, then
`compare_metadata`), as in test_drift_fixtures.py, whose helpers these cases reuse.
"""

from __future__ import annotations

from test_drift_fixtures import DRIFT, MODELS, USERS_POSTS, build, codes, ours, truth


def test_a_constraint_dropped_by_a_name_the_database_gives_hides_only_constraints(tmp_path):
    """optuna v2.4.0.a: `for c in inspector.get_unique_constraints("t"): ...
    batch_op.drop_constraint(c["name"], type_="unique")`, then v3.0.0.d's `if "x" not in
    column_names: add_column(x)`. The table's nullability drift was missed (the whole
    table was uncertain); the unique constraint the loop drops, and the column the guard
    would have replaced, must still never be reported."""
    root = build(tmp_path, [USERS_POSTS + """
op.create_table("scores", sa.Column("id", sa.Integer(), primary_key=True),
                sa.Column("user_id", sa.Integer(), nullable=True), sa.Column("value", sa.Float()),
                sa.UniqueConstraint("user_id", name="uq_scores_user_id"))
""", """
        # upgrade
        inspector = sa.inspect(op.get_bind())
        for c in inspector.get_unique_constraints("scores"):
            if c["column_names"] == ["user_id"]:
                with op.batch_alter_table("scores") as batch_op:
                    batch_op.drop_constraint(c["name"], type_="unique")
        column_names = [c["name"] for c in inspector.get_columns("scores")]
        if "value" not in column_names:
            with op.batch_alter_table("scores") as batch_op:
                batch_op.add_column(sa.Column("value", sa.Integer()))
    """], MODELS + """
sa.Table("scores", metadata, sa.Column("id", sa.Integer(), primary_key=True),
         sa.Column("user_id", sa.Integer(), nullable=False), sa.Column("value", sa.Float()))
""")
    expected = truth(root)
    assert expected == DRIFT | {("modify_nullable", "scores", "user_id")}
    found, diagnostics, _ = ours(root)
    assert found == expected
    assert "M004" not in codes(diagnostics)


def test_a_table_an_undecidable_if_changes_inside_is_still_known_to_exist(tmp_path):
    """mlflow auth 2ed73881770d: `if has_unique_name_user: batch_op.drop_constraint(
    "unique_name_user", type_="unique")` (an answer of the inspector). The models no longer
    have the table: Alembic says remove_table, which the static pass missed (the table was
    uncertain as a whole, its existence too)."""
    root = build(tmp_path, [USERS_POSTS + """
op.create_table("perms", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("name", sa.String(50)),
                sa.Column("user_id", sa.Integer()), sa.UniqueConstraint("name", "user_id", name="unique_name_user"))
""", """
        # upgrade
        inspector = sa.inspect(op.get_bind())
        has_unique_name_user = any(c.get("name") == "unique_name_user"
                                   for c in inspector.get_unique_constraints("perms"))
        with op.batch_alter_table("perms") as batch_op:
            if has_unique_name_user:
                batch_op.drop_constraint("unique_name_user", type_="unique")
            batch_op.create_unique_constraint("uq_perms_name", ["name"])
    """], MODELS)
    expected = truth(root)
    assert expected == DRIFT | {("remove_table", "perms", "")}
    found, _, _ = ours(root)
    assert found == expected


def test_an_undecidable_op_on_a_table_the_history_lacks_keeps_it_wholly_uncertain(tmp_path):
    """The partial uncertainty needs the table to exist in the replayed schema: an op under
    an undecidable `if` on a table no migration made (created outside the migrations) still
    leaves that table out of the comparison as a whole."""
    root = build(tmp_path, [USERS_POSTS, """
        import os
        # upgrade
        if os.environ.get("WITH_LEGACY"):
            op.drop_constraint("uq_legacy_name", "legacy", type_="unique")
    """], MODELS + """
sa.Table("legacy", metadata, sa.Column("id", sa.Integer(), primary_key=True))
""")
    expected = truth(root)
    assert expected == DRIFT | {("add_table", "legacy", "")}
    found, _, _ = ours(root)
    assert found == DRIFT  # legacy may exist (made outside the migrations): never reported


def test_a_break_leaves_its_loop_not_the_rest_of_upgrade(tmp_path):
    """prefect 1678f2fb8b33: a batched data migration `while True: ... if result.rowcount <=
    n: break` made every op after the loop conditional (as if the break could leave
    upgrade()), so the table they change was never compared."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        bind = op.get_bind()
        for name in ["a", "b"]:
            while True:
                result = bind.execute(sa.text("UPDATE posts SET title = 'x' WHERE id < 0"))
                if result.rowcount <= 0:
                    break
        op.add_column("posts", sa.Column("body", sa.Text()))
    """], MODELS)
    expected = truth(root)
    assert expected == DRIFT | {("remove_column", "posts", "body")}
    found, _, _ = ours(root)
    assert found == expected


def test_an_expression_index_in_raw_sql_leaves_the_rest_of_its_table_compared(tmp_path):
    """prefect f65b6ad0b869: `CREATE INDEX ... ON deployment (name COLLATE NOCASE)` is not
    followed (an expression); it made the whole table uncertain, so a column a later
    revision dropped (and Alembic reports) was missed."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        op.execute("CREATE INDEX ix_posts_title_nocase ON posts (title COLLATE NOCASE)")
        op.add_column("posts", sa.Column("body", sa.Text()))
    """], MODELS + """
sa.Index("ix_posts_title_nocase", metadata.tables["posts"].c.title)
""")
    expected = truth(root)
    assert {("remove_column", "posts", "body")} | DRIFT <= expected
    found, _, _ = ours(root)
    # the index is followed too (SQLite does not reflect an expression index: Alembic reports
    # the models' as added, test_drift_indexes.py); the rest of the table is compared
    assert found == expected


def test_a_type_decorator_is_compared_as_its_dialect_impl(tmp_path):
    """prefect's JSON TypeDecorator: `impl = JSONB`, but `load_dialect_impl` picks JSON on
    SQLite, which is what the database gets and Alembic compiles. Comparing the static impl
    gave a false M003 (JSON in the migrations, JSONB in the models)."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        op.add_column("posts", sa.Column("data", sa.JSON()))
    """], MODELS + """
from sqlalchemy.dialects import postgresql


class JSONish(sa.types.TypeDecorator):
    impl = postgresql.JSONB
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.JSON(none_as_null=True))


metadata.tables["posts"].append_column(sa.Column("data", JSONish()))
""")
    expected = truth(root)
    assert expected == DRIFT
    found, diagnostics, _ = ours(root)
    assert found == expected
    assert "M003" not in codes(diagnostics)


def test_altering_a_column_an_unreadable_op_added_hides_only_that_column(tmp_path):
    """mlflow 75868b020152: columns added in a loop over another module's function (opaque),
    then `alter_column("assessments", "is_numeric_value", nullable=False)`: the replayed
    table lacks that column, which made the whole table uncertain, so its other drift
    (assessments.assessment_type) was missed."""
    (tmp_path / "analytics.py").write_text(
        "import sqlalchemy as sa\n\n\ndef columns_by_table():\n"
        "    return {'posts': [sa.Column('flag', sa.Boolean(), nullable=True)]}\n")
    root = build(tmp_path, [USERS_POSTS, """
        import os, sys
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        from analytics import columns_by_table
        # upgrade
        for table_name, columns in columns_by_table().items():
            for column in columns:
                op.add_column(table_name, column)
        with op.batch_alter_table("posts") as batch_op:
            batch_op.alter_column("flag", existing_type=sa.Boolean(), nullable=False)
            batch_op.alter_column("title", existing_type=sa.String(50), type_=sa.String(20))
    """], MODELS + """
metadata.tables["posts"].append_column(sa.Column("flag", sa.Boolean(), nullable=True))
""")
    expected = truth(root)
    assert expected == DRIFT | {("modify_type", "posts", "title"), ("modify_nullable", "posts", "flag")}
    found, _, _ = ours(root)
    # the unreadable add_column may explain any column that looks missing (users.email); the
    # flag column is unknown to the replay; posts.title is known and reported
    assert found == {("modify_type", "posts", "title")}


def test_a_create_table_with_a_column_we_cannot_read_is_compared_without_it(tmp_path):
    """arize-phoenix e767d3c57f32: `sa.Column("message_id", sa.String, sa.Computed(
    message["id"].as_string()), unique=True)` cannot be evaluated; the whole new table was
    uncertain, so its BIGINT-vs-Integer drift on PostgreSQL was missed. The table is made
    without that column: only the column (and an index or constraint it may bring) is
    unknown."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        message = sa.Column("message", sa.JSON(), nullable=False)
        op.create_table(
            "messages",
            sa.Column("id", sa.Integer(), primary_key=True),
            message,
            sa.Column("message_id", sa.String(), sa.Computed(message["id"].as_string(), persisted=True),
                      nullable=False, unique=True),
            sa.Column("title", sa.String(20)),
        )
    """], MODELS + """
sa.Table("messages", metadata, sa.Column("id", sa.Integer(), primary_key=True),
         sa.Column("message", sa.JSON(), nullable=False),
         sa.Column("message_id", sa.String(), sa.Computed("json_extract(message, '$.id')"), unique=True),
         sa.Column("title", sa.String(80)))
""")
    expected = truth(root)
    assert ("modify_type", "messages", "title") in expected
    found, _, _ = ours(root)
    # (a generated column's expression is kept as its source text: the column is compared too)
    assert found == expected
    assert ("modify_type", "messages", "title") in found


def test_an_index_the_models_declare_without_columns_is_compared(tmp_path):
    """mlflow: `__table_args__ = (..., Index(f"index_{__tablename__}_request_id"))`, an index
    of no column. Alembic reports the database's index of that name as removed and the
    models' as added; model loading used to drop it (only the removal was found)."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        op.create_index("ix_posts_title", "posts", ["title"])
    """], """
import sqlalchemy as sa
metadata = sa.MetaData()
sa.Table("users", metadata, sa.Column("id", sa.Integer(), primary_key=True), sa.Column("name", sa.String(50)))
sa.Table("posts", metadata, sa.Column("id", sa.Integer(), primary_key=True), sa.Column("title", sa.String(50)),
         sa.Index("ix_posts_title"))
""")
    expected = truth(root)
    assert expected == {("remove_index", "posts", "ix_posts_title"), ("add_index", "posts", "ix_posts_title")}
    found, _, _ = ours(root)
    assert found == expected


def test_a_column_type_the_migration_declares_for_itself_is_compared(tmp_path):
    """arize-phoenix aba52fffe1a1: `class JSONB(JSON): __visit_name__ = "JSONB"` with
    `@compiles(JSONB, "sqlite") def _(...): return "JSONB"`, used through `JSON().with_variant(
    JSONB(), "sqlite")`. The class was opaque, so every column of that type was left out of
    the comparison (experiment_prompt_tasks.tools: JSONB in the database, JSON in the models).
    The class is made again (a SQLAlchemy type renamed, its DDL literal); one with a method
    stays opaque."""
    root = build(tmp_path, [USERS_POSTS, """
        from typing import Any
        from sqlalchemy import JSON
        from sqlalchemy.ext.compiler import compiles


        class JSONB(JSON):
            # what phoenix's migrations declare
            __visit_name__ = "JSONB"


        @compiles(JSONB, "sqlite")
        def _(*args: Any, **kwargs: Any) -> str:
            return "JSONB"


        class Clever(sa.types.TypeDecorator):
            impl = sa.Text
            cache_ok = True

            def load_dialect_impl(self, dialect):
                return dialect.type_descriptor(sa.Text())


        JSON_ = JSON().with_variant(JSONB(), "sqlite")
        # upgrade
        op.add_column("posts", sa.Column("data", JSON_))
        op.add_column("posts", sa.Column("note", Clever()))
    """], MODELS + """
metadata.tables["posts"].append_column(sa.Column("data", sa.JSON()))
metadata.tables["posts"].append_column(sa.Column("note", sa.Integer()))
""")
    expected = truth(root)
    assert ("modify_type", "posts", "data") in expected and ("modify_type", "posts", "note") in expected
    found, _, _ = ours(root)
    assert found == expected - {("modify_type", "posts", "note")}  # Clever is opaque: never compared


def test_an_alter_column_keyword_we_cannot_read_is_never_dropped_silently(tmp_path):
    """airflow 0071: `alter_column("deadline", type_=TIMESTAMP(timezone=True),
    new_column_name="deadline_time")` with TIMESTAMP imported from the project: the unreadable
    `type_` was dropped, so the replay kept the old type (a false M003 once the table was
    compared). An unreadable type is an opaque type; an unreadable other keyword (here
    `nullable=`) leaves the table's insides unknown."""
    (tmp_path / "db_types.py").write_text("import sqlalchemy as sa\nTIMESTAMP = sa.TIMESTAMP\nNULLABLE = False\n")
    root = build(tmp_path, [USERS_POSTS + """
op.add_column("posts", sa.Column("stamp", sa.DateTime()))
op.add_column("users", sa.Column("nick", sa.String(20)))
""", """
        import os, sys
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        from db_types import NULLABLE, TIMESTAMP
        # upgrade
        with op.batch_alter_table("posts") as batch_op:
            batch_op.alter_column("stamp", existing_type=sa.DateTime(), type_=TIMESTAMP(timezone=True),
                                  new_column_name="stamp_at")
        with op.batch_alter_table("users") as batch_op:
            batch_op.alter_column("nick", existing_type=sa.String(20), nullable=NULLABLE)
    """], MODELS + """
metadata.tables["posts"].append_column(sa.Column("stamp_at", sa.TIMESTAMP(timezone=True)))
metadata.tables["users"].append_column(sa.Column("nick", sa.String(20), nullable=False))
""")
    expected = truth(root)
    assert expected == DRIFT
    found, _, _ = ours(root)
    assert found == set()  # (users.email is in the table whose insides are unknown)
