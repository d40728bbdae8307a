"""S017, S019, S020, S021 (portable: every dialect), on small projects on disk through the
real engine; what the rules claim Alembic does is checked against Alembic itself (offline
`--sql` upgrades, batch mode on a real SQLite database)."""

from __future__ import annotations

import io
import sqlite3
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations

from conftest import alembic_project, line_of, migration_text, write_project
from migration_lsp.core import Diagnostic, Severity, Span
from migration_lsp.engine import Engine
from migration_lsp.features.txn_fixes import txn_fixes
from migration_lsp.rules import RULES

PG = "postgresql+psycopg2://user:pass@localhost/app"
SQLITE = "sqlite:///app.db"

BASE = """
op.create_table(
    "users",
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("name", sa.String(100), nullable=True),
    sa.Column("org_id", sa.Integer(), nullable=True),
)
op.create_table("orgs", sa.Column("id", sa.Integer(), primary_key=True))
"""

# an env.py that can run offline (`alembic upgrade --sql`) and online, as `alembic init` writes it
ENV_PY = '''\
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
target_metadata = None


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                     poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

OURS = ("S017", "S019", "S020", "S021")


def ini(url: str) -> str:
    return f"[alembic]\nscript_location = %(here)s/migrations\npath_separator = os\nsqlalchemy.url = {url}\n"


def body(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ").lstrip()


def make(root: Path, upgrade: str, url: str = PG, downgrade: str | None = None, imports: str = "",
         more: dict[str, str] | None = None) -> Path:
    text = migration_text("bbbb", "aaaa", upgrades=body(upgrade), downgrades=body(downgrade) if downgrade else None)
    if imports:
        text = text.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\n" + imports + "\n", 1)
    revisions = {"aaaa_base.py": migration_text("aaaa", upgrades=body(BASE)), "bbbb_change.py": text}
    alembic_project(root, revisions, ini=ini(url))
    write_project(root, {"migrations/env.py": ENV_PY, **(more or {})})
    return root


def path_of(root: Path) -> Path:
    return root / "migrations" / "versions" / "bbbb_change.py"


def found(root: Path, codes=OURS) -> list[Diagnostic]:
    (state,) = Engine([root], cache=False).snapshot().environments
    return [d for d in state.diagnostics if d.code in codes]


def at(diags) -> list[tuple[str, int]]:
    return sorted((d.code, d.span.line) for d in diags)


def line(root: Path, needle: str, nth: int = 0) -> int:
    return line_of(path_of(root).read_text(), needle, nth)


def apply_ignore(root: Path, d: Diagnostic) -> str:
    (state,) = Engine([root], cache=False).snapshot().environments
    script = state.script_by_path[d.path]
    ((title, edits),) = [f for f in txn_fixes(d, script) if f[0].startswith("Ignore")]
    text = script.text
    lines = text.split("\n")
    for span, new in edits:
        assert span.line == span.end_line
        lines[span.line] = lines[span.line][:span.col] + new + lines[span.line][span.end_col:]
    new_text = "\n".join(lines)
    d.path.write_text(new_text)
    return new_text


def offline_upgrade(root: Path) -> str:
    """`alembic upgrade head --sql`, for real: the SQL it prints (raises what Alembic raises)."""
    cfg = Config(str(root / "alembic.ini"))
    buf = io.StringIO()
    cfg.output_buffer = buf
    command.upgrade(cfg, "head", sql=True)
    return buf.getvalue()


def test_codes_registered():
    assert {c: RULES[c].severity.label for c in OURS} == {"S017": "info", "S019": "warning", "S020": "warning",
                                              "S021": "error"}


# --------------------------------------------------------------------------- S017


@pytest.mark.parametrize("url", [PG, SQLITE])
def test_s017_rename_table_and_column(tmp_path, url):
    root = make(tmp_path, """
        op.rename_table("orgs", "organisations")
        with op.batch_alter_table("users") as batch_op:
            batch_op.alter_column("name", new_column_name="full_name")
    """, url=url)
    got = found(root, ("S017",))
    assert at(got) == [("S017", line(root, "rename_table")), ("S017", line(root, "new_column_name"))]
    assert {d.severity for d in got} == {Severity.INFO}
    assert "'orgs'" in got[0].message and "'users.name'" in got[1].message


def test_s017_not_for_what_this_revision_created(tmp_path):
    root = make(tmp_path, """
        op.create_table("tmp", sa.Column("id", sa.Integer(), primary_key=True))
        op.rename_table("tmp", "kept")
        op.add_column("users", sa.Column("nick", sa.Text()))
        op.alter_column("users", "nick", new_column_name="nickname")
    """)
    assert found(root, ("S017",)) == []


def test_s017_suppression_and_its_fix(tmp_path):
    root = make(tmp_path, 'op.rename_table("orgs", "organisations")')
    (d,) = found(root, ("S017",))
    new = apply_ignore(root, d)
    assert 'op.rename_table("orgs", "organisations")  # migration-lsp: ignore[S017]' in new
    assert found(root, ("S017",)) == []


# --------------------------------------------------------------------------- S019


UNGUARDED = [
    ("sa.inspect(op.get_bind()).get_columns(\"users\")", "sa.inspect"),
    ("op.get_bind().execute(sa.text(\"SELECT id FROM users\")).fetchall()", ".fetchall"),
    ("conn = op.get_bind()\nfor row in conn.execute(sa.text(\"SELECT id FROM users\")):\n    print(row)", "conn.execute"),
    ("conn = op.get_bind()\nresult = conn.execute(sa.text(\"SELECT id FROM users\"))\nrows = list(result)",
     "list(result)"),
    ("op.get_bind().scalar(sa.text(\"SELECT count(*) FROM users\"))", ".scalar"),
]


@pytest.mark.parametrize("code,needle", UNGUARDED, ids=[n for _, n in UNGUARDED])
def test_s019_fails_offline_for_real_and_is_reported(tmp_path, code, needle):
    root = make(tmp_path, code, url="sqlite:///" + str(tmp_path / "x.db"))
    (d,) = found(root, ("S019",))
    assert d.severity is Severity.WARNING
    assert d.span.line == line(root, needle)
    # Alembic as the oracle: offline mode really fails there (the mock bind returns no result)
    with pytest.raises((sa.exc.NoInspectionAvailable, AttributeError, TypeError)):
        offline_upgrade(root)


@pytest.mark.parametrize("guarded", [
    "if not context.is_offline_mode():\n    {code}",
    "if context.is_offline_mode():\n    pass\nelse:\n    {code}",
    "if context.is_offline_mode():\n    return\n{code}",
])
def test_s019_guarded_is_silent_and_works_offline(tmp_path, guarded):
    code = 'rows = op.get_bind().execute(sa.text("SELECT id FROM users")).fetchall()'
    root = make(tmp_path, guarded.format(code=code), imports="from alembic import context",
                url="sqlite:///" + str(tmp_path / "x.db"))
    assert found(root, ("S019",)) == []
    assert "CREATE TABLE users" in offline_upgrade(root)


def test_s019_get_bind_for_the_dialect_or_to_execute_works_offline_and_is_silent(tmp_path):
    root = make(tmp_path, """
        bind = op.get_bind()
        if bind.dialect.name == "sqlite":
            bind.execute(sa.text("UPDATE users SET name = 'x'"))
    """, url="sqlite:///" + str(tmp_path / "x.db"))
    assert found(root, ("S019",)) == []
    assert "UPDATE users SET name = 'x'" in offline_upgrade(root)


def test_s019_inside_the_offline_branch_is_reported(tmp_path):
    root = make(tmp_path, """
        if context.is_offline_mode():
            sa.inspect(op.get_bind())
    """, imports="from alembic import context")
    assert len(found(root, ("S019",))) == 1


def test_s019_in_downgrade_too_and_suppression(tmp_path):
    root = make(tmp_path, "pass", downgrade='sa.inspect(op.get_bind())  # migration-lsp: ignore[S019]')
    assert found(root, ("S019",)) == []
    root2 = make(tmp_path / "b", "pass", downgrade="sa.inspect(op.get_bind())")
    (d,) = found(root2, ("S019",))
    assert "downgrade --sql" in d.message


# --------------------------------------------------------------------------- S020


APP = {
    "myapp/__init__.py": "",
    "myapp/models.py": "import sqlalchemy as sa\n",
    "myapp/types.py": "import sqlalchemy as sa\n",
    "pyproject.toml": "[project]\nname = 'myapp'\n",
}


def test_s020_import_of_the_application_models(tmp_path):
    root = make(tmp_path, "pass", imports="from myapp.models import User", more=APP)
    (d,) = found(root, ("S020",))
    assert d.severity is Severity.WARNING
    assert d.span == Span(line(root, "from myapp"), 5, line(root, "from myapp"), 5 + len("myapp.models"))
    assert "myapp.models" in d.message


def test_s020_import_inside_upgrade(tmp_path):
    root = make(tmp_path, "from myapp import models\nmodels.User", more=APP)
    assert at(found(root, ("S020",))) == [("S020", line(root, "from myapp import models"))]
    root2 = make(tmp_path / "b", "import myapp.models\nmyapp.models.User", more=APP)
    assert at(found(root2, ("S020",))) == [("S020", line(root2, "import myapp.models"))]


@pytest.mark.parametrize("imports", [
    "from myapp.types import GUID",  # application code, not its models
    "import json",  # the standard library
    "from sqlalchemy.orm import Session",  # SQLAlchemy's own orm
    "from otherlib.models import Thing",  # not in the project tree (installed or missing)
])
def test_s020_silent_for_what_is_not_the_application_models(tmp_path, imports):
    root = make(tmp_path, "pass", imports=imports, more=APP)
    assert found(root, ("S020",)) == []


def test_s020_the_module_env_py_takes_the_metadata_from(tmp_path):
    more = {**APP, "myapp/schema.py": "import sqlalchemy as sa\nmetadata = sa.MetaData()\n"}
    root = make(tmp_path, "pass", imports="from myapp.schema import metadata", more=more)
    env = root / "migrations" / "env.py"
    assert found(root, ("S020",)) == []
    env.write_text(env.read_text().replace("target_metadata = None",
                                           "from myapp.schema import metadata\ntarget_metadata = metadata"))
    assert at(found(root, ("S020",))) == [("S020", line(root, "from myapp.schema"))]


def test_s020_suppression(tmp_path):
    root = make(tmp_path, "pass", imports="from myapp.models import User  # migration-lsp: ignore[S020]", more=APP)
    assert found(root, ("S020",)) == []


# --------------------------------------------------------------------------- S021


def test_s021_drop_constraint_named_none(tmp_path):
    root = make(tmp_path, 'op.drop_constraint(None, "users", type_="foreignkey")',
                downgrade='op.drop_constraint(None, "users", type_="unique")')
    got = sorted(found(root, ("S021",)), key=lambda d: d.span.line)
    assert [(d.span.line, d.severity) for d in got] == [
        (line(root, 'type_="foreignkey"'), Severity.ERROR),  # upgrade(): fails for sure
        (line(root, 'type_="unique"'), Severity.WARNING)]  # downgrade()


@pytest.mark.parametrize("url,severity", [(SQLITE, Severity.ERROR), (PG, Severity.WARNING)])
def test_s021_batch_create_named_none(tmp_path, url, severity):
    root = make(tmp_path, """
        with op.batch_alter_table("users") as batch_op:
            batch_op.create_foreign_key(None, "orgs", ["org_id"], ["id"])
            batch_op.create_unique_constraint("uq_users_name", ["name"])
    """, url=url)
    (d,) = found(root, ("S021",))
    assert (d.span.line, d.severity) == (line(root, "create_foreign_key(None"), severity)


def test_s021_not_for_named_or_non_batch_creates(tmp_path):
    root = make(tmp_path, """
        op.create_foreign_key(None, "users", "orgs", ["org_id"], ["id"])
        op.drop_constraint("fk_users_org", "users", type_="foreignkey")
    """)
    assert found(root, ("S021",)) == []


def test_s021_suppression(tmp_path):
    root = make(tmp_path, 'op.drop_constraint(None, "users", type_="foreignkey")  # migration-lsp: ignore[S021]')
    assert found(root, ("S021",)) == []


def _sqlite_ops(path: Path) -> Operations:
    conn = sa.create_engine(f"sqlite:///{path}").connect()
    conn.exec_driver_sql("CREATE TABLE orgs (id INTEGER PRIMARY KEY)")
    conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, org_id INTEGER, "
                         "CONSTRAINT fk FOREIGN KEY (org_id) REFERENCES orgs (id))")
    return Operations(MigrationContext.configure(conn))


def test_s021_what_it_claims_is_what_alembic_does(tmp_path):
    """Alembic as the oracle: each form S021 reports as failing fails, on a real SQLite."""
    op = _sqlite_ops(tmp_path / "a.db")
    with pytest.raises(ValueError, match="Constraint must have a name"):
        with op.batch_alter_table("users") as batch_op:
            batch_op.create_foreign_key(None, "orgs", ["org_id"], ["id"])
    with pytest.raises(ValueError, match="Constraint must have a name"):
        with op.batch_alter_table("users") as batch_op:
            batch_op.drop_constraint(None, type_="foreignkey")
    buf = io.StringIO()
    offline = Operations(MigrationContext.configure(dialect_name="postgresql",
                                                    opts={"as_sql": True, "output_buffer": buf}))
    with pytest.raises(sa.exc.CompileError, match="no name"):
        offline.drop_constraint(None, "users", type_="foreignkey")
    offline.create_foreign_key(None, "users", "orgs", ["org_id"], ["id"])  # outside batch: fine
    assert "ADD FOREIGN KEY" in buf.getvalue()
    assert sqlite3.sqlite_version  # (the real SQLite of this Python)
