"""Hover on op calls: Alembic's SQL for the environment's dialect, PostgreSQL locks, and the
table as the history has it just before the call."""

from __future__ import annotations

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from conftest import alembic_project, line_of, migration_text
from lsp_helpers import SERVER_COMMAND, client_factory
from migration_lsp.engine import Engine
from migration_lsp.features import Locator
from migration_lsp.features.hover import hover

PG_INI = """\
[alembic]
script_location = %(here)s/migrations
path_separator = os
sqlalchemy.url = postgresql://localhost/app
"""
SQLITE_INI = PG_INI.replace("postgresql://localhost/app", "sqlite:///app.db")

BASE = """\
op.create_table(
        "account",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(50), nullable=False),
        sa.Column("score", sa.Numeric(10, 2), server_default="0"),
        sa.Column("code", sa.Text, server_default=sa.text("'a' || 'b'")),
    )
    op.create_index("ix_account_email", "account", ["email"])"""

CHANGE = """\
op.add_column("account", sa.Column("token", sa.Uuid, server_default=sa.text("gen_random_uuid()")))
    op.alter_column("account", "email", type_=sa.Text)
    with op.batch_alter_table("account") as batch_op:
        batch_op.alter_column("score", nullable=False)
    op.create_index("ix_account_score", "account", ["score"], postgresql_concurrently=True)
    with op.get_context().autocommit_block():
        op.drop_index("ix_account_email", table_name="account", postgresql_concurrently=True)
    op.execute("ALTER TABLE account ADD CONSTRAINT ck CHECK (score >= 0) NOT VALID; "
               "ALTER TABLE account VALIDATE CONSTRAINT ck")"""

DOWN = """\
op.drop_column("account", "token")
    op.alter_column("account", "email", type_=sa.String(50))"""


def make(root, ini=PG_INI):
    alembic_project(root, {
        "aaaa_base.py": migration_text("aaaa", None, message="base", upgrades=BASE),
        "bbbb_change.py": migration_text("bbbb", "aaaa", message="change", upgrades=CHANGE, downgrades=DOWN),
    }, ini=ini)
    path = (root / "migrations" / "versions" / "bbbb_change.py").resolve()
    return Engine([root]).snapshot(), path


def hover_on(snapshot, path, needle, nth=0):
    text = path.read_text()
    line = line_of(text, needle, nth)
    col = text.splitlines()[line].index(needle) + 1
    result = hover(snapshot, path, types.Position(line=line, character=col), Locator(snapshot))
    return result.contents.value if result else None


def test_volatile_default_rewrites_under_access_exclusive(tmp_path):
    snapshot, path = make(tmp_path)
    text = hover_on(snapshot, path, "add_column")
    assert "**op.add_column**" in text
    assert "ALTER TABLE account ADD COLUMN token UUID DEFAULT gen_random_uuid();" in text
    assert "On PostgreSQL 18:" in text
    assert "`ACCESS EXCLUSIVE` on `account`: blocks reads and writes" in text
    assert "**rewrites the table**" in text
    # the table as the history has it before the call (the new column is not there yet)
    assert "| `email` | `VARCHAR(50)` | no |  |" in text
    assert "| `score` | `NUMERIC(10, 2)` | yes | `0` |" in text
    assert "| `code` | `TEXT` | yes | `'a' \\|\\| 'b'` |" in text  # a | inside a cell is escaped
    assert "`token`" not in text.split("Table")[1]


def test_state_before_the_call_includes_earlier_calls_of_the_revision(tmp_path):
    snapshot, path = make(tmp_path)
    text = hover_on(snapshot, path, 'op.alter_column("account", "email"')
    assert "ALTER TABLE account ALTER COLUMN email TYPE TEXT;" in text
    assert "no table scan, no rewrite" in text  # varchar(50) -> text, known from the history
    assert "| `token` | `UUID` | yes | `gen_random_uuid()` |" in text


def test_batch_op_and_set_not_null(tmp_path):
    snapshot, path = make(tmp_path)
    text = hover_on(snapshot, path, "batch_op.alter_column")
    assert "**batch_op.alter_column**" in text
    assert "ALTER TABLE account ALTER COLUMN score SET NOT NULL;" in text
    assert "scans every row under the lock" in text


def test_concurrently_outside_and_inside_an_autocommit_block(tmp_path):
    snapshot, path = make(tmp_path)
    text = hover_on(snapshot, path, "create_index")
    assert "`SHARE UPDATE EXCLUSIVE` on `account`: blocks neither reads nor writes" in text
    assert "cannot run inside a transaction" in text
    text = hover_on(snapshot, path, "drop_index")
    assert "DROP INDEX CONCURRENTLY ix_account_email;" in text
    assert "`SHARE UPDATE EXCLUSIVE` on `account`" in text
    assert "cannot run inside a transaction" not in text


def test_raw_sql_statement_by_statement(tmp_path):
    snapshot, path = make(tmp_path)
    text = hover_on(snapshot, path, "op.execute")
    assert "- `ALTER TABLE account ADD CONSTRAINT ck CHECK (score >= 0) NOT VALID`" in text
    assert "  - `ACCESS EXCLUSIVE` on `account`: blocks reads and writes" in text
    assert "- `ALTER TABLE account VALIDATE CONSTRAINT ck`" in text
    assert "  - `SHARE UPDATE EXCLUSIVE` on `account`: blocks neither reads nor writes" in text
    assert "not known" not in text  # ck is a CHECK: added by the first statement


def test_other_dialect_shows_its_sql_and_no_postgresql_locks(tmp_path):
    snapshot, path = make(tmp_path, SQLITE_INI)
    text = hover_on(snapshot, path, "add_column")
    assert "SQL (sqlite):" in text and "ALTER TABLE account ADD COLUMN token" in text
    assert "PostgreSQL" not in text and "EXCLUSIVE" not in text


def test_revision_ids_still_hover_as_revisions(tmp_path):
    snapshot, path = make(tmp_path)
    text = hover_on(snapshot, path, "down_revision")
    assert text is None or "op." not in text
    text = path.read_text()
    line = line_of(text, "down_revision")
    col = text.splitlines()[line].index("'aaaa'") + 2
    result = hover(snapshot, path, types.Position(line=line, character=col), Locator(snapshot))
    assert "Revision `aaaa`" in result.contents.value


def test_no_hover_outside_op_calls(tmp_path):
    snapshot, path = make(tmp_path)
    assert hover_on(snapshot, path, "def upgrade") is None


def test_downgrade_ops_see_the_schema_after_the_upgrade(tmp_path):
    snapshot, path = make(tmp_path)
    text = hover_on(snapshot, path, 'op.alter_column("account", "email", type_=sa.String(50))')
    assert "ALTER TABLE account ALTER COLUMN email TYPE VARCHAR(50);" in text
    assert "**rewrites the table**" in text  # text -> varchar(50), text known from the upgrade
    assert "| `email` | `TEXT` | no |  |" in text
    assert "`token`" not in text  # dropped by the downgrade's first call


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=client_factory))
async def client(lsp_client: LanguageClient, tmp_path):
    make(tmp_path)
    lsp_client.project = tmp_path
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=tmp_path.as_uri(),
        initialization_options={"trusted": False}))
    yield
    await lsp_client.shutdown_session()


async def test_hover_through_the_real_server(client: LanguageClient):
    """The hook in hover.py, over stdio: an untrusted workspace (the hover runs no project
    code), the range is the whole call."""
    path = client.project / "migrations" / "versions" / "bbbb_change.py"
    text = path.read_text()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=path.as_uri(), language_id="python", version=1, text=text)))
    line = line_of(text, "create_index")
    result = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
        position=types.Position(line=line, character=text.splitlines()[line].index("create_index"))))
    assert result is not None and result.contents.kind == types.MarkupKind.Markdown
    assert "CREATE INDEX CONCURRENTLY ix_account_score ON account (score);" in result.contents.value
    assert "`SHARE UPDATE EXCLUSIVE` on `account`" in result.contents.value
    start = text.splitlines()[line].index("op.create_index")
    assert (result.range.start.line, result.range.start.character) == (line, start)
    assert (result.range.end.line, result.range.end.character) == (line, len(text.splitlines()[line]))


def test_postgres_version_setting_changes_the_answer(tmp_path):
    """`[tool.migration-lsp] postgres-version = 10`: before PostgreSQL 11 every added column
    with a default rewrote the table, constant or not."""
    root = tmp_path
    make(root)
    (root / "migrations" / "versions" / "bbbb_change.py").write_text(migration_text(
        "bbbb", "aaaa", message="change",
        upgrades='op.add_column("account", sa.Column("flag", sa.Boolean, server_default=sa.true()))'))
    path = (root / "migrations" / "versions" / "bbbb_change.py").resolve()
    newest = hover_on(Engine([root]).snapshot(), path, "add_column")
    assert "On PostgreSQL 18:" in newest and "**rewrites the table**" not in newest
    (root / "pyproject.toml").write_text("[tool.migration-lsp]\npostgres-version = 10\n")
    old = hover_on(Engine([root]).snapshot(), path, "add_column")
    assert "On PostgreSQL 10:" in old and "**rewrites the table**" in old


def test_table_with_a_computed_column_is_described(tmp_path):
    """A Computed / Identity column's server_default has no `arg` (mypy found it): the card
    is still made, those cells empty."""
    alembic_project(tmp_path, {
        "aaaa_base.py": migration_text("aaaa", None, message="base", upgrades="""\
op.create_table(
        "t",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("a", sa.Integer),
        sa.Column("b", sa.Integer, sa.Computed("a + 1")),
    )"""),
        "bbbb_change.py": migration_text("bbbb", "aaaa", message="change",
                                         upgrades='op.add_column("t", sa.Column("c", sa.Integer))'),
    }, ini=PG_INI)
    path = (tmp_path / "migrations" / "versions" / "bbbb_change.py").resolve()
    text = hover_on(Engine([tmp_path]).snapshot(), path, "add_column")
    assert "| `b` | `INTEGER` | yes |  |" in text
    assert "| `id` | `INTEGER` | no |  |" in text
