"""Static drift on what real migrations do, checked against real Alembic on SQLite.

Each case is a small project (alembic.ini, env.py, models.py, revisions) built like the
real projects of benchmarks/realworld/ where a failure class was seen. Alembic is the
referee: `alembic upgrade head` on a fresh SQLite file, then `compare_metadata` with the
models (in a child process: each case has its own `models` module). `migration-lsp check`
must find what Alembic finds (or, where the history is not knowable statically, say
nothing), report nothing Alembic does not, and never crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO_ROOT, VENV_BIN, migration_text, write_project

sys.path.insert(0, str(REPO_ROOT / "benchmarks" / "realworld"))
from normalize import from_diagnostic  # noqa: E402

ENV_PY = """\
import os, sys
from alembic import context
from sqlalchemy import engine_from_config, pool

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from models import metadata

target_metadata = metadata


def run_migrations_online():
    connectable = engine_from_config(context.config.get_section(context.config.config_ini_section),
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""

INI = """\
[alembic]
script_location = %(here)s/migrations
path_separator = os
sqlalchemy.url = sqlite:///%(here)s/app.db
"""

TRUTH = """
import json, sys
sys.path.insert(0, sys.argv[2])
from normalize import from_alembic
from alembic import command
from alembic.config import Config
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
import sqlalchemy as sa
root = sys.argv[1]
command.upgrade(Config(root + "/alembic.ini"), "head")
sys.path.insert(0, root)
from models import metadata
engine = sa.create_engine("sqlite:///" + root + "/app.db")
with engine.connect() as conn:
    diffs = compare_metadata(MigrationContext.configure(conn), metadata)
print(json.dumps(sorted({i for d in diffs for i in from_alembic(d)})))
"""


def build(root: Path, revisions: list, models: str) -> Path:
    """A project whose revisions form a line a1 <- a2 <- ... (each item upgrade()'s body),
    or any graph (each item `(rev, down_revision, body)`)."""
    files = {"alembic.ini": INI, "migrations/env.py": ENV_PY, "models.py": textwrap.dedent(models)}
    down = None
    for n, item in enumerate(revisions, 1):
        rev, down, body = item if isinstance(item, tuple) else (f"a{n}", down, item)
        prelude, _, upgrade = textwrap.dedent(body).strip("\n").rpartition("# upgrade\n")
        text = migration_text(rev, down, upgrades=upgrade.strip("\n").replace("\n", "\n    "))
        text = text.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\n" + prelude, 1)
        files[f"migrations/versions/{rev}_x.py"] = text
        down = rev
    return write_project(root, files)


def truth(root: Path) -> set[tuple]:
    proc = subprocess.run([sys.executable, "-c", TRUTH, str(root), str(REPO_ROOT / "benchmarks" / "realworld")],
                          capture_output=True, text=True, timeout=120, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return {tuple(i) for i in json.loads(proc.stdout)}


def ours(root: Path) -> tuple[set[tuple], list[dict], int]:
    """(drift items, all diagnostics, exit code) of `migration-lsp check --static --format json`
    (the static pass: what these fixtures are about; test_truth.py holds the truth pass)."""
    proc = subprocess.run([str(VENV_BIN / "migration-lsp"), "check", "--static", "--format", "json", "--no-cache",
                           str(root)],
                          capture_output=True, text=True, timeout=120, cwd=root)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr
    diagnostics = json.loads(proc.stdout)["diagnostics"]
    return {i for d in diagnostics for i in from_diagnostic(d)}, diagnostics, proc.returncode


def codes(diagnostics: list[dict]) -> list[str]:
    return sorted(d["code"] for d in diagnostics)


MODELS = """
import sqlalchemy as sa
metadata = sa.MetaData()
sa.Table("users", metadata, sa.Column("id", sa.Integer(), primary_key=True), sa.Column("name", sa.String(50)),
         sa.Column("email", sa.String(100)))
sa.Table("posts", metadata, sa.Column("id", sa.Integer(), primary_key=True), sa.Column("title", sa.String(50)))
"""

USERS_POSTS = """
# upgrade
op.create_table("users", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("name", sa.String(50)))
op.create_table("posts", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("title", sa.String(50)))
"""

DRIFT = {("add_column", "users", "email")}  # what MODELS has that USERS_POSTS lacks


def test_data_migrations_and_inspection_are_ignored(tmp_path):
    """optuna, mlflow, buildbot: sessions, queries, inspection, json, datetime, bulk inserts
    and SQL in variables have no schema effect; they used to switch drift off (M004)."""
    root = build(tmp_path, [USERS_POSTS, """
        import datetime
        import json
        from sqlalchemy.orm import Session
        # upgrade
        bind = op.get_bind()
        session = Session(bind=bind)
        rows = session.query(sa.text("1")).all()
        names = sa.inspect(bind).get_table_names()
        stamp = datetime.datetime.now()
        data = json.loads('{"a": 1}')
        nan = float("nan")
        statement = "UPDATE posts SET title = 'x'"
        op.execute(sa.text(statement))
        op.bulk_insert(sa.table("posts", sa.column("id"), sa.column("title")), [{"id": 1, "title": "t"}])
        bind.execute(sa.text("UPDATE users SET name = 'n'"))
        session.commit()
        op.add_column("posts", sa.Column("body", sa.Text()))
    """], MODELS)
    expected = truth(root)
    assert expected == DRIFT | {("remove_column", "posts", "body")}
    found, diagnostics, _ = ours(root)
    assert found == expected
    assert "M004" not in codes(diagnostics)


def test_constants_fstrings_helpers_and_loops_are_evaluated(tmp_path):
    """Module constants, f-strings, a helper of the file called in a loop over a literal list
    (jupyterhub's `add_column_if_table_exists`), comprehensions, `*columns`."""
    root = build(tmp_path, ["""
        TABLE = "users"
        COLUMNS = ("name", "nick")
        PREFIX = "ix"


        def add_text_column(table, column, length=50):
            op.add_column(table, sa.Column(column, sa.String(length)))


        def id_columns():
            return [sa.Column("id", sa.Integer(), primary_key=True)]
        # upgrade
        op.create_table(TABLE, *id_columns())
        op.create_table("po" + "sts", *id_columns(), *[sa.Column(c, sa.String(50)) for c in ["title"]])
        for column in COLUMNS:
            add_text_column(TABLE, column)
        op.create_index(f"{PREFIX}_{TABLE}_nick", TABLE, ["nick"])
        options = {"nullable": True}
        op.add_column("posts", sa.Column("score", sa.Integer(), **options))
    """], MODELS)
    expected = truth(root)
    assert expected == DRIFT | {("remove_column", "users", "nick"), ("remove_index", "users", "ix_users_nick"),
                                ("remove_column", "posts", "score")}
    found, diagnostics, _ = ours(root)
    assert found == expected
    assert "M004" not in codes(diagnostics)


def test_ops_for_another_dialect_are_not_run(tmp_path):
    """jupyterhub: ops under a test for another dialect (`op.get_bind().dialect.name`,
    `context.get_context().dialect.name`, `bind.engine.name`, `elif ... == "mysql"`) are
    not run on SQLite: no S004 error, no drift from them."""
    root = build(tmp_path, [USERS_POSTS, """
        from alembic import context
        # upgrade
        if op.get_bind().dialect.name == "postgresql":
            op.alter_column("users", "name", type_=sa.Text())
            op.add_column("users", sa.Column("pg_only", sa.Integer()))
        elif context.get_context().dialect.name == "mysql":
            op.drop_constraint("fk_x", "posts", type_="foreignkey")
        else:
            op.add_column("posts", sa.Column("lite", sa.Integer()))
        if op.get_bind().engine.name != "sqlite":
            op.create_foreign_key(None, "posts", "users", ["id"], ["id"])
        if op.get_context().dialect.name == "sqlite":
            pass
        else:
            op.create_foreign_key(None, "posts", "users", ["id"], ["id"])
        if context.is_offline_mode():
            op.drop_table("users")
    """], MODELS)
    expected = truth(root)
    assert expected == DRIFT | {("remove_column", "posts", "lite")}
    found, diagnostics, code = ours(root)
    assert found == expected
    assert "S004" not in codes(diagnostics) and code == 0


def test_an_undecidable_if_or_except_makes_only_what_its_ops_change_uncertain(tmp_path):
    """An `if` on something we cannot know, and an `except` branch, make what their ops
    change uncertain (the column they add: never reported, though the replay applied them);
    the rest of their table, and every other table, is still compared."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        names = sa.inspect(op.get_bind()).get_table_names()
        if "legacy" in names:
            op.add_column("posts", sa.Column("legacy", sa.Integer()))
        try:
            op.add_column("posts", sa.Column("maybe", sa.Integer()))
        except Exception:
            op.add_column("posts", sa.Column("other", sa.Integer()))
    """], MODELS)
    expected = truth(root)
    assert expected == DRIFT | {("remove_column", "posts", "maybe")}
    found, diagnostics, _ = ours(root)
    assert found == expected  # neither `legacy` nor `other`, which the replay applied, is reported
    assert "M004" not in codes(diagnostics)


def test_an_op_on_a_table_nobody_can_name_is_said_once_at_the_call(tmp_path):
    """A table name from another module: that op is opaque, an info at the call says so,
    and every table with a known history is still compared."""
    (tmp_path / "names.py").write_text('TABLE = "posts"\n')
    root = build(tmp_path, [USERS_POSTS, """
        import os, sys
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        from names import TABLE
        # upgrade
        op.add_column(TABLE, sa.Column("body", sa.Text()))
    """], MODELS)
    expected = truth(root)
    assert expected == DRIFT | {("remove_column", "posts", "body")}
    found, diagnostics, _ = ours(root)
    assert found == DRIFT
    (info,) = [d for d in diagnostics if d["code"] == "M004"]
    assert info["severity"] == "info" and info["path"].endswith("a2_x.py")


def test_a_foreign_key_to_a_dropped_column_never_crashes(tmp_path):
    """A named foreign key pointing at a column a later revision drops: `check` used to die
    with NoReferencedColumnError (and the server lost every S/D/M finding)."""
    root = build(tmp_path, ["""
        # upgrade
        op.create_table("a", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("x", sa.Integer(), unique=True))
        op.create_table("b", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("a_x", sa.Integer(), sa.ForeignKey("a.x", name="fk_b_a")))
    """, """
        # upgrade
        op.drop_column("a", "x")
        op.create_table("c", sa.Column("id", sa.Integer(), primary_key=True))
    """], """
        import sqlalchemy as sa
        metadata = sa.MetaData()
        sa.Table("a", metadata, sa.Column("id", sa.Integer(), primary_key=True))
        sa.Table("b", metadata, sa.Column("id", sa.Integer(), primary_key=True), sa.Column("a_x", sa.Integer()))
        sa.Table("c", metadata, sa.Column("id", sa.Integer(), primary_key=True), sa.Column("extra", sa.Integer()))
    """)
    found, diagnostics, _ = ours(root)  # (no traceback, exit 0 or 1: checked in ours())
    assert ("add_column", "c", "extra") in found  # the other findings are all there
    assert {"S004", "S005", "D001"} <= set(codes(diagnostics))
    assert not any(d["code"] == "M004" for d in diagnostics)  # compared, not given up
    # the broken history is said once, at the op that drops the referenced column
    (broken,) = [d for d in diagnostics if d["code"] == "S022"]
    assert broken["path"].endswith("a2_x.py") and broken["severity"] == "error"
    assert "a.x" in broken["message"] and "fk_b_a" in broken["message"] and "table b" in broken["message"]


def test_a_dropped_column_no_key_references_any_more_is_not_s022(tmp_path):
    """The key dropped first (or its table), or the column dropped under an `if` we cannot
    decide: no S022."""
    root = build(tmp_path, ["""
        # upgrade
        op.create_table("a", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("x", sa.Integer(), unique=True))
        op.create_table("b", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("a_x", sa.Integer(), sa.ForeignKey("a.x", name="fk_b_a")))
    """, """
        # upgrade
        with op.batch_alter_table("b") as batch_op:
            batch_op.drop_constraint("fk_b_a", type_="foreignkey")
        with op.batch_alter_table("a") as batch_op:
            batch_op.drop_column("x")
    """], """
        import sqlalchemy as sa
        metadata = sa.MetaData()
        sa.Table("a", metadata, sa.Column("id", sa.Integer(), primary_key=True))
        sa.Table("b", metadata, sa.Column("id", sa.Integer(), primary_key=True), sa.Column("a_x", sa.Integer()))
    """)
    assert truth(root) == set()
    found, diagnostics, code = ours(root)
    assert found == set()
    assert "S022" not in codes(diagnostics) and code == 0


def test_a_model_class_tablename_is_read_from_its_source(tmp_path):
    """mlflow: `op.create_table(SqlTag.__tablename__, ...)` with the class imported from the
    project's models: the literal `__tablename__` is read from the module's source (never
    imported), so the op is not opaque."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "tags.py").write_text(
        "raise RuntimeError('never imported')\n\n\nclass SqlTag:\n    __tablename__ = 'tags'\n")
    root = build(tmp_path, [USERS_POSTS, """
        from pkg.tags import SqlTag
        # upgrade
        op.create_table(SqlTag.__tablename__, sa.Column("id", sa.Integer(), primary_key=True))
        op.create_table("tag_links", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("tag_id", sa.Integer(), sa.ForeignKey(SqlTag.id, name="fk_tag")))
    """], MODELS + """
sa.Table("tag_links", metadata, sa.Column("id", sa.Integer(), primary_key=True),
         sa.Column("tag_id", sa.Integer(), sa.ForeignKey("tags.id", name="fk_tag")))
""")
    # (Alembic itself cannot import pkg.tags: the truth is what it would be)
    found, diagnostics, _ = ours(root)
    # tag_links matches (its foreign key read from SqlTag.id); `tags` stays out of the
    # comparison: the models only point at it (compare.py's stand-in for a key's target)
    assert found == DRIFT
    assert "M004" not in codes(diagnostics)


def test_literal_ddl_in_op_execute_is_applied(tmp_path):
    """`op.execute("CREATE TABLE ...")` and friends: read with a SQL parser and replayed as
    the ops they are, so the drift around them is found; DML is ignored."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        op.execute("CREATE TABLE tags (id INTEGER NOT NULL PRIMARY KEY, label VARCHAR(20) NOT NULL)")
        op.execute("ALTER TABLE posts ADD COLUMN body TEXT")
        op.execute("INSERT INTO tags (id, label) VALUES (1, 'a')")
        op.execute("CREATE INDEX ix_tags_label ON tags (label)")
        op.execute("CREATE TABLE scratch (id INTEGER)")
        op.execute("DROP TABLE scratch")
    """], MODELS + """
sa.Table("tags", metadata, sa.Column("id", sa.Integer(), primary_key=True),
         sa.Column("label", sa.String(20), nullable=False))
""")
    expected = truth(root)
    assert expected == DRIFT | {("remove_column", "posts", "body"), ("remove_index", "tags", "ix_tags_label")}
    found, diagnostics, _ = ours(root)
    assert found == expected
    assert "M004" not in codes(diagnostics)


def test_an_index_dropped_on_one_branch_stays_dropped_after_the_merge(tmp_path):
    """phoenix: an index made by a column's `index=True`, dropped later, came back (the
    column's flag re-made it), and one branch's drop was undone by the other branch at the
    merge (the merge kept the union)."""
    root = build(tmp_path, [("a1", None, """
        # upgrade
        op.create_table("users", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("name", sa.String(50), index=True), sa.Column("email", sa.String(100)))
        op.create_table("posts", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("title", sa.String(50)))
        op.create_index("ix_users_email", "users", ["email"])
    """), ("b1", "a1", """
        # upgrade
        op.drop_index("ix_users_name", table_name="users")
    """), ("c1", "a1", """
        # upgrade
        op.drop_index("ix_users_email", table_name="users")
        op.add_column("users", sa.Column("nick", sa.String(20)))
    """), ("m1", ("b1", "c1"), """
        # upgrade
        pass
    """)], MODELS)
    expected = truth(root)
    assert expected == {("remove_column", "users", "nick")}
    found, diagnostics, _ = ours(root)
    assert found == expected


def test_an_op_whose_table_and_column_cannot_be_read_hides_the_differences_it_may_have_made(tmp_path):
    """mlflow 75868b020152: `op.add_column(table_name, column)` in a loop over what a project
    module returns. The columns it adds are unknown, so no column difference is reported in
    any table (they were 17 false M001 on PostgreSQL); other kinds (a missing table) still are."""
    (tmp_path / "analytics.py").write_text(
        "import sqlalchemy as sa\n\n\ndef columns_by_table():\n"
        "    return {'posts': [sa.Column('body', sa.Text())]}\n")
    root = build(tmp_path, [USERS_POSTS, """
        import os, sys
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        from analytics import columns_by_table
        # upgrade
        for table_name, columns in columns_by_table().items():
            for column in columns:
                op.add_column(table_name, column)
    """], MODELS + """
sa.Table("posts_x", metadata, sa.Column("id", sa.Integer(), primary_key=True))
metadata.tables["posts"].append_column(sa.Column("body", sa.Text()))
""")
    expected = truth(root)
    assert expected == DRIFT | {("add_table", "posts_x", "")}
    found, diagnostics, _ = ours(root)
    assert found == {("add_table", "posts_x", "")}  # users.email is missed, posts.body never invented
    assert sorted(d["code"] for d in diagnostics if d["code"].startswith("M")) == ["M001", "M004"]


def test_a_type_with_variants_is_the_dialects_type(tmp_path):
    """arize-phoenix: `_Integer = sa.Integer().with_variant(sa.BigInteger(), "postgresql")` was
    opaque (its type never compared: 81 differences missed on PostgreSQL); the database has
    the dialect's variant."""
    root = build(tmp_path, [USERS_POSTS, """
        NOTE = sa.String(20).with_variant(sa.Text(), "sqlite")
        # upgrade
        op.add_column("posts", sa.Column("note", NOTE))
        op.add_column("posts", sa.Column("rank", sa.Integer().with_variant(sa.BigInteger(), "postgresql")))
    """], MODELS + """
metadata.tables["posts"].append_column(sa.Column("note", sa.String(20)))
metadata.tables["posts"].append_column(sa.Column("rank", sa.Integer()))
""")
    expected = truth(root)
    assert expected == DRIFT | {("modify_type", "posts", "note")}
    found, diagnostics, _ = ours(root)
    assert found == expected


CONVENTION_MODELS = """
import sqlalchemy as sa
metadata = sa.MetaData(naming_convention={"ix": "idx_%(column_0_label)s",
                                          "uq": "uq_%(table_name)s_%(column_0_N_name)s"})
sa.Table("t", metadata, sa.Column("id", sa.Integer(), primary_key=True),
         sa.Column("name", sa.String(20), index=True), sa.Column("a", sa.Integer()), sa.Column("b", sa.Integer()),
         sa.Column("c", sa.Integer()), sa.UniqueConstraint("b", "c"))
"""


def test_names_given_by_the_naming_convention(tmp_path):
    """airflow, arize-phoenix: Alembic's op.create_table names unnamed indexes and constraints
    with env.py's target_metadata convention. The replay (which knows none) must neither
    report the index's name as a difference (airflow's `idx_revoked_token_exp`) nor keep a
    constraint a later revision drops by its conventional name (phoenix's
    `uq_span_annotations_name_span_rowid`, 7 false M002 on PostgreSQL)."""
    root = build(tmp_path, ["""
        # upgrade
        op.create_table("t", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("name", sa.String(20), index=True), sa.Column("a", sa.Integer()),
                        sa.Column("b", sa.Integer()), sa.Column("c", sa.Integer()),
                        sa.UniqueConstraint("a", "b"), sa.UniqueConstraint("b", "c"))
    """, """
        # upgrade
        with op.batch_alter_table("t") as batch_op:
            batch_op.drop_constraint("uq_t_a_b", type_="unique")
    """], CONVENTION_MODELS)
    (root / "migrations" / "env.py").write_text(ENV_PY.replace(
        "target_metadata=target_metadata)", "target_metadata=target_metadata, render_as_batch=True)"))
    expected = truth(root)
    assert expected == set()
    found, diagnostics, _ = ours(root)
    assert found == expected
    assert not [d for d in diagnostics if d["code"].startswith("M")]


def test_create_if_not_exists_in_literal_sql_applies_when_missing(tmp_path):
    """phoenix 735d3d93c33e: `CREATE INDEX IF NOT EXISTS` (and TABLE) made its table uncertain;
    the replay knows whether the object exists: made when missing, the old one kept when not."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        op.execute("CREATE INDEX IF NOT EXISTS ix_posts_title ON posts (title)")
        op.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, other TEXT)")
        op.execute("CREATE TABLE IF NOT EXISTS tags (id INTEGER NOT NULL PRIMARY KEY, label TEXT)")
        op.execute("DROP TABLE IF EXISTS never_made")
    """], MODELS)
    expected = truth(root)
    assert expected == DRIFT | {("remove_index", "posts", "ix_posts_title"), ("remove_table", "tags", "")}
    found, diagnostics, _ = ours(root)
    assert found == expected
    assert "M004" not in codes(diagnostics)


def test_an_index_the_models_declare_but_cannot_be_rebuilt_is_not_reported_missing(tmp_path):
    """airflow, arize-phoenix: `Index("idx_task_reschedule_ti_id_id_desc", ti_id, id.desc())`,
    `Index("ix_traces_project_rowid_start_time", "project_rowid", text("start_time DESC"))`:
    model loading cannot rebuild an index with a sort order or an expression, so the index
    the migrations made looked absent from the models (false M002 on PostgreSQL)."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        with op.batch_alter_table("posts") as batch_op:
            batch_op.create_index("idx_posts_title_id_desc", ["title", "id"], postgresql_ops={"id": "DESC"})
        op.execute("CREATE INDEX IF NOT EXISTS ix_users_name_desc ON users (name DESC)")
    """], """
        import sqlalchemy as sa
        from sqlalchemy.orm import declarative_base
        Base = declarative_base()
        metadata = Base.metadata
        users = sa.Table("users", metadata, sa.Column("id", sa.Integer(), primary_key=True),
                         sa.Column("name", sa.String(50)), sa.Column("email", sa.String(100)))
        sa.Index("ix_users_name_desc", users.c.name.desc())


        class Post(Base):
            __tablename__ = "posts"
            id = sa.Column(sa.Integer(), primary_key=True)
            title = sa.Column(sa.String(50))
            __table_args__ = (sa.Index("idx_posts_title_id_desc", title, id.desc()),)
    """)
    expected = truth(root)
    found, diagnostics, _ = ours(root)
    assert found <= expected
    assert ("remove_index", "posts", "idx_posts_title_id_desc") not in found
    # (an index with a sort order is never compared: the models' side cannot carry the order)
    assert not {i for i in found if i[2] == "ix_users_name_desc"}
    assert ("add_column", "users", "email") in found


def test_create_if_missing_guards_are_decided_by_the_replayed_schema(tmp_path):
    """optuna v2.4.0.a, mlflow 3500859a5d39: `if "t" not in inspector.get_table_names():
    op.create_table("t", ...)` (also `has_table`, through a helper of the file). The guard asks
    whether the table exists, which the replay knows: the op runs when it does not."""
    root = build(tmp_path, [USERS_POSTS, """
        def existing_tables():
            return sa.inspect(op.get_bind()).get_table_names()
        # upgrade
        inspector = sa.inspect(op.get_bind())
        tables = inspector.get_table_names()
        if "tags" not in tables:
            op.create_table("tags", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("label", sa.Text()))
        if not inspector.has_table("users"):
            op.create_table("users", sa.Column("id", sa.Integer(), primary_key=True))
        else:
            op.add_column("users", sa.Column("nick", sa.String(20)))
        if "posts" in existing_tables():
            op.add_column("posts", sa.Column("body", sa.Text()))
    """], MODELS + """
sa.Table("tags", metadata, sa.Column("id", sa.Integer(), primary_key=True))
""")
    expected = truth(root)
    assert expected == DRIFT | {("remove_column", "tags", "label"), ("remove_column", "users", "nick"),
                                ("remove_column", "posts", "body")}
    found, diagnostics, _ = ours(root)
    assert found == expected
    assert "M004" not in codes(diagnostics)


def test_an_index_on_a_column_an_unreadable_op_added_makes_its_table_uncertain(tmp_path):
    """mlflow 75868b020152: `index_trace_info_experiment_id_session_id` is made on a column
    the unreadable add_column loop added: the replayed table lacks it, so the index looked
    missing (a false M001). The table is one whose history we do not fully know."""
    (tmp_path / "analytics.py").write_text(
        "import sqlalchemy as sa\n\n\ndef columns_by_table():\n"
        "    return {'posts': [sa.Column('session', sa.Text())]}\n")
    root = build(tmp_path, [USERS_POSTS, """
        import os, sys
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        from analytics import columns_by_table
        # upgrade
        for table_name, columns in columns_by_table().items():
            for column in columns:
                op.add_column(table_name, column)
        op.create_index("ix_posts_session", "posts", ["session"])
    """], MODELS + """
metadata.tables["posts"].append_column(sa.Column("session", sa.Text(), index=True))
""")
    expected = truth(root)
    assert expected == DRIFT
    found, diagnostics, _ = ours(root)
    assert found <= expected and ("add_index", "posts", "ix_posts_session") not in found


def test_the_models_variant_for_the_dialect_is_the_models_type(tmp_path):
    """arize-phoenix on PostgreSQL: the models' `Integer().with_variant(BigInteger(), "postgresql")`
    was read from its repr (`Integer()`, variants left out), a false M003 against the
    migration's BIGINT. Alembic compares the dialect's variant, also as a TypeDecorator's impl."""
    root = build(tmp_path, [USERS_POSTS, """
        # upgrade
        op.add_column("posts", sa.Column("note", sa.Text()))
        op.add_column("posts", sa.Column("body", sa.Text()))
        op.add_column("posts", sa.Column("rank", sa.String(20)))
    """], MODELS + """
class Doc(sa.types.TypeDecorator):
    impl = sa.String(30).with_variant(sa.Text(), "sqlite")
    cache_ok = True


metadata.tables["posts"].append_column(sa.Column("note", sa.String(20).with_variant(sa.Text(), "sqlite")))
metadata.tables["posts"].append_column(sa.Column("body", Doc()))
metadata.tables["posts"].append_column(sa.Column("rank", sa.String(20).with_variant(sa.Integer(), "sqlite")))
""")
    expected = truth(root)
    assert expected == DRIFT | {("modify_type", "posts", "rank")}
    found, _, _ = ours(root)
    assert found == expected


def test_with_no_dialect_configured_no_variant_is_picked(tmp_path, monkeypatch):
    """mlflow (`sqlalchemy.url = ""`): with no dialect configured, the comparison's dialect is
    guessed from a dialect's type in the tables (mysql.INTEGER) while the models were
    loaded without one, so `Text().with_variant(MEDIUMTEXT, "mysql")` was MEDIUMTEXT in the
    migrations and Text in the models: a false M003 (Alembic on SQLite has TEXT on both)."""
    root = build(tmp_path, [USERS_POSTS, """
        from sqlalchemy.dialects.mysql import INTEGER, MEDIUMTEXT
        # upgrade
        op.add_column("posts", sa.Column("doc", INTEGER()))
        op.add_column("posts", sa.Column("note", sa.String(50)))
        with op.batch_alter_table("posts") as batch_op:
            batch_op.alter_column("note", existing_type=sa.String(50),
                                  type_=sa.Text().with_variant(MEDIUMTEXT, "mysql"), existing_nullable=True)
    """], MODELS + """
from sqlalchemy.dialects.mysql import INTEGER, MEDIUMTEXT
metadata.tables["posts"].append_column(sa.Column("doc", INTEGER()))
metadata.tables["posts"].append_column(sa.Column("note", sa.Text().with_variant(MEDIUMTEXT, "mysql")))
""")
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
    assert expected == DRIFT
    found, _, _ = ours(root)
    assert found == expected
