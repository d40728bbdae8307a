"""`migration-lsp sql`: each revision's upgrade SQL with PostgreSQL's locks, no database.
The SQL is checked against Alembic itself (`alembic upgrade --sql` on the same project)."""

from __future__ import annotations

import io

import pytest
from alembic import command
from alembic.config import Config

from conftest import migration_text, write_project
from migration_lsp import pglocks
from migration_lsp.cli import main

INI = """\
[alembic]
script_location = %(here)s/migrations
path_separator = os
sqlalchemy.url = postgresql://localhost/app
"""
ENV_PY = """\
from alembic import context

context.configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True,
                  transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
"""
BASE = """\
op.create_table("account", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("email", sa.String(50), nullable=False))
    op.create_table("invoice", sa.Column("id", sa.Integer, primary_key=True), sa.Column("account_id", sa.Integer))"""
CHANGE = """\
op.add_column("account", sa.Column("score", sa.Integer, nullable=False, server_default="0"))
    op.alter_column("account", "email", type_=sa.String(100))
    op.create_foreign_key("fk_invoice_account", "invoice", "account", ["account_id"], ["id"])
    op.alter_column("account", "score", type_=sa.BigInteger)
    with op.get_context().autocommit_block():
        op.create_index("ix_invoice_account", "invoice", ["account_id"], postgresql_concurrently=True)
    op.execute("UPDATE account SET score = 1; ALTER TABLE account ALTER COLUMN score SET NOT NULL")"""


@pytest.fixture
def root(tmp_path):
    return write_project(tmp_path, {
        "alembic.ini": INI, "migrations/env.py": ENV_PY,
        "migrations/script.py.mako": "",
        "migrations/versions/aaaa_base.py": migration_text("aaaa", None, message="base", upgrades=BASE),
        "migrations/versions/bbbb_change.py": migration_text("bbbb", "aaaa", message="change", upgrades=CHANGE),
    })


def run(capsys, *argv):
    code = main(["sql", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def statements(sql: str) -> list[str]:
    return [s.sql for s in pglocks.parse_sql(sql)]


def test_sql_is_what_alembic_upgrade_sql_prints(root, capsys):
    code, out, _ = run(capsys, root)
    assert code == 0
    buf = io.StringIO()
    command.upgrade(Config(str(root / "alembic.ini"), output_buffer=buf), "heads", sql=True)
    alembic_statements = [s for s in statements(buf.getvalue())
                          if "alembic_version" not in s and s not in ("BEGIN", "COMMIT")]
    assert statements(out) == alembic_statements
    assert len(alembic_statements) == 9


def test_each_statement_is_annotated_with_its_locks(root, capsys):
    code, out, _ = run(capsys, root, "bbbb")
    assert code == 0
    assert out.startswith("-- Running upgrade aaaa -> bbbb, change\n")
    assert "CREATE TABLE" not in out  # only bbbb
    blocks = out.split("\n\n")

    def block(needle):
        (found,) = [b for b in blocks if needle in b]
        return found

    assert "-- ACCESS EXCLUSIVE on account: blocks reads and writes\n-- no table scan, no rewrite" \
        in block("ADD COLUMN score")
    # the old type from the history: varchar(50) -> varchar(100) does not rewrite, int -> bigint does
    assert "no table scan, no rewrite" in block("TYPE VARCHAR(100)")
    assert "-- rewrites the table" in block("TYPE BIGINT")
    fk = block("fk_invoice_account")
    assert "-- SHARE ROW EXCLUSIVE on invoice: blocks writes" in fk
    assert "-- SHARE ROW EXCLUSIVE on account (referenced table): blocks writes" in fk
    assert "cannot run inside a transaction" not in block("CONCURRENTLY")  # in an autocommit block
    raw = block("op.execute")
    assert "UPDATE account SET score = 1;\n-- ROW EXCLUSIVE on account" in raw
    assert "SET NOT NULL;\n-- ACCESS EXCLUSIVE on account: blocks reads and writes\n-- scans every row" in raw


def test_version_and_range(root, capsys):
    _, out, _ = run(capsys, root, "aaaa:bbbb", "--postgres-version", "10")
    assert "-- Running upgrade aaaa" in out and "<base>" not in out
    assert "ADD COLUMN score INTEGER DEFAULT '0' NOT NULL;\n-- ACCESS EXCLUSIVE on account: blocks reads and " \
           "writes\n-- rewrites the table" in out  # a default rewrote the table before PostgreSQL 11
    _, out, _ = run(capsys, root, "base:aaaa")
    assert "-- Running upgrade <base> -> aaaa, base" in out and "bbbb" not in out


def test_usage_errors(root, capsys):
    code, out, err = run(capsys, root, "zzzz")
    assert code == 2 and out == "" and "zzzz: no such revision" in err
    code, _, err = run(capsys, root / "nowhere")
    assert code == 2 and "no such file or directory" in err
