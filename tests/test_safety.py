"""Rule family S (S001–S005) and its quick fixes, on small projects on disk.

Every project goes through the real pipeline (discovery -> parse -> graph -> replay); the
rules are called directly with the replayed RevisionSchema of one revision. Each quick fix
is applied to the file's text, the file is written back, and the project is checked again.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from conftest import alembic_project, line_of, migration_text, write_project
from migration_lsp.checks import apply_filters
from migration_lsp.checks.safety import check_safety, placeholder_default
from migration_lsp.core import Diagnostic, Severity, Span
from migration_lsp.engine import Engine
from migration_lsp.features.safety_fixes import safety_fixes
from migration_lsp.project import Settings
from migration_lsp.rules import RULES

PG = "postgresql+psycopg2://user:pass@localhost/app"
SQLITE = "sqlite:///app.db"
MYSQL = "mysql+pymysql://user:pass@localhost/app"
UNKNOWN = "driver://user:pass@localhost/dbname"  # the `alembic init` placeholder

BASE = """
op.create_table(
    "users",
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("email", sa.String(255), nullable=False),
    sa.Column("name", sa.String(100), nullable=True),
    sa.Column("city", sa.String(100), nullable=True),
    sa.Column("code", sa.String(10), nullable=True, index=True),
)
op.create_table(
    "orgs",
    sa.Column("id", sa.Integer(), primary_key=True),
)
"""


def ini(url: str) -> str:
    return f"[alembic]\nscript_location = %(here)s/migrations\npath_separator = os\nsqlalchemy.url = {url}\n"


def body(code: str) -> str:
    """A function body for the template (which puts the first line after 4 spaces)."""
    return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ").lstrip()


def make(root: Path, url: str, upgrade: str, downgrade: str | None = None, base: str = BASE,
         extra: dict[str, str] | None = None) -> Path:
    """base revision `aaaa` (creates users, orgs) and revision `bbbb` with `upgrade`."""
    revisions = {
        "aaaa_base.py": migration_text("aaaa", upgrades=body(base)),
        "bbbb_change.py": migration_text("bbbb", "aaaa", upgrades=body(upgrade),
                                         downgrades=body(downgrade) if downgrade else None),
    }
    alembic_project(root, revisions, ini=ini(url))
    if extra:
        write_project(root, extra)
    return root


def check(root: Path, rev: str = "bbbb", filtered: bool = False) -> list[Diagnostic]:
    snapshot = Engine([root]).snapshot()
    (state,) = snapshot.environments
    script = state.graph.by_id[rev]
    found = check_safety(script, state.replay.revision(rev), state.env.dialect, state.env.name)
    if filtered:
        found = apply_filters(found, state.env.settings, {script.path: script})
    return found


def script_of(root: Path, rev: str = "bbbb"):
    (state,) = Engine([root]).snapshot().environments
    return state.graph.by_id[rev]


def path_of(root: Path) -> Path:
    return root / "migrations" / "versions" / "bbbb_change.py"


def at(diags, code: str | None = None) -> list[tuple[str, int]]:
    return sorted((d.code, d.span.line) for d in diags if code is None or d.code == code)


def line(root: Path, needle: str, nth: int = 0) -> int:
    return line_of(path_of(root).read_text(), needle, nth)


def apply_edits(text: str, edits: list[tuple[Span, str]]) -> str:
    lines = text.split("\n")
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)

    def offset(ln: int, col: int) -> int:
        return starts[ln] + col

    spans = sorted(edits, key=lambda e: (e[0].line, e[0].col))
    for (a, _), (b, _) in zip(spans, spans[1:]):
        assert (a.end_line, a.end_col) <= (b.line, b.col), "edits overlap"
    for span, new in reversed(spans):
        text = text[: offset(span.line, span.col)] + new + text[offset(span.end_line, span.end_col):]
    return text


def fix(root: Path, code: str, title_part: str = "", nth: int = 0) -> str:
    """Apply the first fix of the nth `code` diagnostic whose title contains `title_part`;
    write the file back; return the new text (asserted to parse)."""
    diags = [d for d in check(root) if d.code == code]
    d = diags[nth]
    script = script_of(root)
    fixes = [f for f in safety_fixes(d, script) if title_part in f[0]]
    assert fixes, f"no fix containing {title_part!r} for {d}"
    title, edits = fixes[0]
    new = apply_edits(script.text, edits)
    ast.parse(new)
    path_of(root).write_text(new)
    return new


# --------------------------------------------------------------------------- registry


def test_rules_registered_with_design_severities():
    assert {c: RULES[c].severity.label for c in ("S001", "S002", "S003", "S004", "S005")} == {
        "S001": "warning", "S002": "warning", "S003": "error", "S004": "error", "S005": "info"}


def test_severities(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))
        op.create_index("ix_users_name", "users", ["name"])
        op.create_index("ix_users_city", "users", ["city"], postgresql_concurrently=True)
        op.drop_column("users", "city")
    """)
    got = {d.code: d.severity for d in check(root)}
    assert got == {"S001": Severity.WARNING, "S002": Severity.WARNING, "S003": Severity.ERROR,
                   "S005": Severity.INFO}
    root2 = make(tmp_path / "lite", SQLITE, 'op.alter_column("users", "name", type_=sa.Text())')
    assert [(d.code, d.severity) for d in check(root2)] == [("S004", Severity.ERROR)]


def test_clean_revision_has_no_findings(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=True))
        op.create_table("audit", sa.Column("id", sa.Integer(), primary_key=True))
        op.create_index("ix_audit_id", "audit", ["id"])
    """)
    assert check(root) == []
    assert check(root, "aaaa") == []  # the base revision only creates tables


# --------------------------------------------------------------------------- S001


@pytest.mark.parametrize("url", [PG, SQLITE, MYSQL, UNKNOWN])
def test_s001_add_not_null_column_to_existing_table(tmp_path, url):
    root = make(tmp_path, url, 'op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))')
    (d,) = [d for d in check(root) if d.code == "S001"]
    assert d.span.line == line(root, '"age"')
    assert d.span.col == 4
    assert d.data["table"] == "users" and d.data["column"] == "age" and d.data["kind"] == "add_column"
    assert "'age'" in d.message and "'users'" in d.message


def test_s001_span_is_the_whole_call_and_line_is_its_first(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column(
            "users",
            sa.Column("age", sa.Integer(), nullable=False),
        )
    """)
    (d,) = check(root)
    first = line(root, "op.add_column(")
    assert (d.span.line, d.span.end_line) == (first, first + 3)


def test_s001_batch_add_column_and_batch_alter_column(tmp_path):
    root = make(tmp_path, PG, """
        with op.batch_alter_table("users", schema=None) as batch_op:
            batch_op.add_column(sa.Column("age", sa.Integer(), nullable=False))
            batch_op.alter_column("name", existing_type=sa.String(100), nullable=False)
    """)
    assert at(check(root)) == [("S001", line(root, '"age"')), ("S001", line(root, 'alter_column("name"'))]


def test_s001_alter_column_not_null(tmp_path):
    root = make(tmp_path, PG, """
        op.alter_column("users", "name", existing_type=sa.String(100), nullable=False)
        op.alter_column("users", "city", nullable=False, server_default=None)
    """)
    assert at(check(root)) == [("S001", line(root, '"name"')), ("S001", line(root, '"city"'))]


@pytest.mark.parametrize("column", [
    'sa.Column("age", sa.Integer(), nullable=False, server_default="0")',
    'sa.Column("age", sa.Integer(), nullable=False, server_default=sa.text("0"))',
    'sa.Column("age", sa.Boolean(), nullable=False, server_default=sa.false())',
    'sa.Column("age", sa.Integer(), nullable=False, server_default=DEFAULT_AGE)',  # not evaluable
    'sa.Column("age", sa.Integer(), nullable=True)',
    'sa.Column("age", sa.Integer())',
    'sa.Column("age", sa.Integer(), nullable=NULLABLE)',  # unknown: say nothing
    'sa.Column("age", sa.Integer(), sa.Identity(), nullable=False)',
    'sa.Column("age", sa.Integer(), sa.Computed("id + 1"), nullable=False)',
    'sa.Column("uid", sa.Integer(), primary_key=True)',
    'make_column()',
])
def test_s001_negatives_columns(tmp_path, column):
    root = make(tmp_path, PG, f'op.add_column("users", {column})')
    assert at(check(root), "S001") == []


def test_s001_python_side_default_is_not_enough(tmp_path):
    root = make(tmp_path, PG, 'op.add_column("users", sa.Column("age", sa.Integer(), nullable=False, default=0))')
    (d,) = check(root)
    assert d.code == "S001" and "default= is applied by Python" in d.message


def test_s001_negative_table_created_in_same_revision(tmp_path):
    root = make(tmp_path, PG, """
        op.create_table("audit", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("note", sa.Text()))
        op.add_column("audit", sa.Column("age", sa.Integer(), nullable=False))
        op.alter_column("audit", "note", nullable=False)
        with op.batch_alter_table("audit") as batch_op:
            batch_op.add_column(sa.Column("zip", sa.String(), nullable=False))
    """)
    assert check(root) == []


def test_s001_table_dropped_and_recreated_in_same_revision_is_new(tmp_path):
    root = make(tmp_path, PG, """
        op.drop_table("orgs")
        op.create_table("orgs", sa.Column("id", sa.Integer(), primary_key=True))
        op.add_column("orgs", sa.Column("slug", sa.String(), nullable=False))
    """)
    assert at(check(root)) == [("S005", line(root, 'drop_table("orgs")'))]


def test_s001_renamed_existing_table_is_still_existing(tmp_path):
    root = make(tmp_path, PG, """
        op.rename_table("orgs", "organisations")
        op.add_column("organisations", sa.Column("slug", sa.String(), nullable=False))
    """)
    assert at(check(root)) == [("S001", line(root, '"slug"'))]


def test_s001_negative_table_unknown_to_history(tmp_path):
    # "existing" means created by an earlier revision; a table never seen is not judged
    root = make(tmp_path, PG, 'op.add_column("legacy", sa.Column("age", sa.Integer(), nullable=False))')
    assert check(root) == []


def test_s001_table_created_by_earlier_raw_sql_counts_as_existing(tmp_path):
    root = make(tmp_path, PG, 'op.add_column("legacy", sa.Column("age", sa.Integer(), nullable=False))',
                base='op.execute("CREATE TABLE legacy (id integer primary key)")')
    assert at(check(root)) == [("S001", line(root, '"age"'))]


def test_s001_alter_column_negatives(tmp_path):
    root = make(tmp_path, PG, """
        op.alter_column("users", "email", nullable=False)
        op.alter_column("users", "name", nullable=True)
        op.alter_column("users", "city", nullable=False, server_default="x")
        op.alter_column("users", "code", nullable=False, existing_nullable=False)
        op.alter_column("users", "name", type_=sa.Text())
    """)
    assert at(check(root), "S001") == []  # email is NOT NULL already in the history


def test_s001_alter_column_after_backfill_in_same_revision(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=True))
        op.execute("UPDATE users SET age = 0 WHERE age IS NULL")
        op.alter_column("users", "age", nullable=False)
        op.add_column("orgs", sa.Column("slug", sa.String(), nullable=True, server_default="x"))
        op.alter_column("orgs", "slug", nullable=False)
    """)
    assert check(root) == []


def test_s001_alter_column_without_backfill_of_a_column_added_nullable(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=True))
        op.alter_column("users", "age", nullable=False)
    """)
    assert at(check(root)) == [("S001", line(root, 'alter_column("users", "age"'))]


def test_s001_only_upgrade_is_checked(tmp_path):
    root = make(tmp_path, PG, "pass", downgrade="""
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))
        op.create_index("ix_users_name", "users", ["name"])
        op.drop_column("users", "email")
    """)
    assert check(root) == []


@pytest.mark.parametrize("type_, dialect, expected", [
    ("sa.Integer()", "postgresql", "0"),
    ("sa.BigInteger()", "sqlite", "0"),
    ("sa.Numeric(10, 2)", "postgresql", "0"),
    ("sa.Boolean()", "postgresql", "false"),
    ("sa.String(20)", "postgresql", "''"),
    ("sa.Text()", None, "''"),
    ("sa.DateTime()", "postgresql", "CURRENT_TIMESTAMP"),
    ("sa.Date()", "mysql", "CURRENT_DATE"),
    ("sa.Enum('draft', 'done', name='state')", "postgresql", "'draft'"),
    ("sa.JSON()", "postgresql", "'{}'"),
])
def test_placeholder_by_type(type_, dialect, expected):
    import sqlalchemy as sa  # noqa: F401  (used by eval)

    assert placeholder_default(eval(type_), dialect) == expected


def test_placeholder_sqlite_native_add_column_is_constant():
    import sqlalchemy as sa

    assert placeholder_default(sa.DateTime(), "sqlite", constant_only=True) == "'1970-01-01 00:00:00'"


# --------------------------------------------------------------------------- S002


def test_s002_create_index_on_existing_table(tmp_path):
    root = make(tmp_path, PG, """
        op.create_index(op.f("ix_users_name"), "users", ["name"], unique=False)
        op.create_index(
            "ix_users_city",
            "users",
            ["city"],
            postgresql_concurrently=False,
        )
    """)
    assert at(check(root)) == [("S002", line(root, "ix_users_name")), ("S002", line(root, "op.create_index(", 1))]


def test_s002_inside_autocommit_without_concurrently(tmp_path):
    root = make(tmp_path, PG, """
        with op.get_context().autocommit_block():
            op.create_index("ix_users_name", "users", ["name"])
    """)
    (d,) = check(root)
    assert d.code == "S002" and d.data["in_autocommit"] is True


def test_s002_batch_create_index(tmp_path):
    root = make(tmp_path, PG, """
        with op.batch_alter_table("users", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_users_name"), ["name"], unique=False)
    """)
    assert at(check(root)) == [("S002", line(root, "batch_op.create_index"))]


def test_s002_negatives(tmp_path):
    root = make(tmp_path, PG, """
        op.create_table("audit", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("at", sa.DateTime()))
        op.create_index("ix_audit_at", "audit", ["at"])
        with op.get_context().autocommit_block():
            op.create_index("ix_users_name", "users", ["name"], postgresql_concurrently=True)
        op.create_index("ix_users_city", "users", ["city"], postgresql_concurrently=CONCURRENTLY)
        op.create_index("ix_legacy", "legacy", ["x"])
    """)
    assert check(root) == []


@pytest.mark.parametrize("url", [SQLITE, MYSQL, UNKNOWN])
def test_s002_s003_only_on_postgresql(tmp_path, url):
    root = make(tmp_path, url, """
        op.create_index("ix_users_name", "users", ["name"])
        op.create_index("ix_users_city", "users", ["city"], postgresql_concurrently=True)
        op.execute("CREATE INDEX CONCURRENTLY ix_users_email ON users (email)")
    """)
    assert at(check(root)) == []


def test_dialect_from_tool_migration_lsp(tmp_path):
    root = make(tmp_path, UNKNOWN, 'op.create_index("ix_users_name", "users", ["name"])',
                extra={"pyproject.toml": '[tool.migration-lsp]\ndialect = "postgresql"\n'})
    assert at(check(root)) == [("S002", line(root, "ix_users_name"))]


# --------------------------------------------------------------------------- S003


def test_s003_concurrently_outside_autocommit(tmp_path):
    root = make(tmp_path, PG, """
        op.create_index("ix_users_name", "users", ["name"], postgresql_concurrently=True)
        op.drop_index("ix_users_code", table_name="users", postgresql_concurrently=True)
        op.execute("CREATE UNIQUE INDEX CONCURRENTLY ix_users_email ON users (email)")
        op.get_bind().execute(sa.text("DROP INDEX CONCURRENTLY ix_old"))
    """)
    assert at(check(root)) == [("S003", line(root, "ix_users_name")), ("S003", line(root, "ix_users_code")),
                               ("S003", line(root, "ix_users_email")), ("S003", line(root, "ix_old"))]


def test_s003_reads_sql_given_by_keyword(tmp_path):
    """`op.execute(sqltext=...)` and `conn.execute(statement=...)` are the same call (the S
    families read literal SQL with one helper, scripts.sql_literal)."""
    root = make(tmp_path, PG, """
        op.execute(sqltext="CREATE INDEX CONCURRENTLY ix_users_kw ON users (name)")
        op.get_bind().execute(statement=sa.text("DROP INDEX CONCURRENTLY ix_old_kw"))
    """)
    assert at(check(root)) == [("S003", line(root, "ix_users_kw")), ("S003", line(root, "ix_old_kw"))]


def test_s003_on_new_table_too(tmp_path):
    root = make(tmp_path, PG, """
        op.create_table("audit", sa.Column("id", sa.Integer(), primary_key=True))
        op.create_index("ix_audit_id", "audit", ["id"], postgresql_concurrently=True)
    """)
    assert at(check(root)) == [("S003", line(root, "ix_audit_id"))]


def test_s003_negatives_inside_autocommit_block(tmp_path):
    root = make(tmp_path, PG, """
        with op.get_context().autocommit_block():
            op.create_index("ix_users_name", "users", ["name"], postgresql_concurrently=True)
            op.drop_index("ix_users_code", table_name="users", postgresql_concurrently=True)
            op.execute("CREATE INDEX CONCURRENTLY ix_users_email ON users (email)")
            op.get_bind().execute(sa.text("REINDEX INDEX CONCURRENTLY ix_users_email"))
            with op.batch_alter_table("users") as batch_op:
                batch_op.create_index("ix_users_city", ["city"], postgresql_concurrently=True)
        op.execute("CREATE INDEX ix_plain ON users (city)")
    """)
    assert check(root) == []


# --------------------------------------------------------------------------- S004


S004_OPS = {
    "alter_type": 'op.alter_column("users", "name", type_=sa.Text(), existing_type=sa.String(100))',
    "alter_null": 'op.alter_column("users", "email", nullable=True)',
    "alter_default": 'op.alter_column("users", "city", server_default="x")',
    "unique": 'op.create_unique_constraint("uq_users_email", "users", ["email"])',
    "fk": 'op.create_foreign_key("fk_users_org", "users", "orgs", ["city"], ["id"], ondelete="CASCADE")',
    "check": 'op.create_check_constraint("ck_users_email", "users", "length(email) > 3")',
    "pk": 'op.create_primary_key("pk_orgs", "orgs", ["id"])',
    "drop_constraint": 'op.drop_constraint("uq_users_code", "users", type_="unique")',
    "add_fk_column": 'op.add_column("users", sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id")))',
    "add_unique_column": 'op.add_column("users", sa.Column("slug", sa.String(), unique=True))',
    "drop_indexed_column": 'op.drop_column("users", "code")',
}


@pytest.mark.parametrize("name", sorted(S004_OPS))
def test_s004_outside_batch_on_sqlite(tmp_path, name):
    root = make(tmp_path, SQLITE, S004_OPS[name])
    (d,) = [d for d in check(root) if d.code == "S004"]
    assert d.span.line == line(root, S004_OPS[name])
    assert d.data["table"] in ("users", "orgs")


def test_s004_even_on_a_table_created_in_the_same_revision(tmp_path):
    root = make(tmp_path, SQLITE, """
        op.create_table("audit", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("n", sa.Integer()))
        op.create_unique_constraint("uq_audit_n", "audit", ["n"])
    """)
    assert at(check(root)) == [("S004", line(root, "uq_audit_n"))]


def test_s004_negatives(tmp_path):
    root = make(tmp_path, SQLITE, """
        with op.batch_alter_table("users", schema=None) as batch_op:
            batch_op.alter_column("name", type_=sa.Text(), existing_type=sa.String(100))
            batch_op.create_unique_constraint("uq_users_email", ["email"])
            batch_op.create_foreign_key("fk_users_org", "orgs", ["city"], ["id"])
            batch_op.drop_constraint("uq_users_code", type_="unique")
            batch_op.drop_column("code")
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=True))
        op.add_column("users", sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id")), inline_references=True)
        op.alter_column("users", "city", new_column_name="town", existing_type=sa.String(100))
        op.create_index("ix_users_name", "users", ["name"])
        op.drop_index("ix_users_name", table_name="users")
        op.rename_table("orgs", "organisations")
    """)
    assert at(check(root), "S004") == []


@pytest.mark.parametrize("url", [PG, MYSQL, UNKNOWN])
def test_s004_only_on_sqlite(tmp_path, url):
    root = make(tmp_path, url, "\n".join(S004_OPS.values()))
    assert at(check(root), "S004") == []


# --------------------------------------------------------------------------- S005


@pytest.mark.parametrize("url", [PG, SQLITE, UNKNOWN])
def test_s005_destructive_ops(tmp_path, url):
    root = make(tmp_path, url, """
        op.drop_column("users", "city")
        with op.batch_alter_table("users") as batch_op:
            batch_op.drop_column("name")
        op.drop_table("orgs")
    """)
    assert at(check(root), "S005") == [("S005", line(root, '"city"')), ("S005", line(root, '"name"')),
                                       ("S005", line(root, "drop_table"))]
    assert all(d.severity is Severity.INFO for d in check(root) if d.code == "S005")


def test_s005_negatives(tmp_path):
    root = make(tmp_path, PG, """
        op.create_table("tmp_copy", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("x", sa.Integer()))
        op.drop_column("tmp_copy", "x")
        op.drop_table("tmp_copy")
        op.add_column("users", sa.Column("scratch", sa.Integer()))
        op.drop_column("users", "scratch")
        op.drop_index("ix_users_code", table_name="users")
        op.drop_constraint("users_pkey", "users")
    """, downgrade="""
        op.drop_table("orgs")
        op.drop_column("users", "city")
    """)
    assert at(check(root)) == []


# --------------------------------------------------------------------------- suppression


def test_trailing_comment_suppresses_that_code_only(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column("users", sa.Column("a", sa.Integer(), nullable=False))  # migration-lsp: ignore[S001]
        op.add_column("users", sa.Column("b", sa.Integer(), nullable=False))  # migration-lsp: ignore[S002]
        op.add_column("users", sa.Column("c", sa.Integer(), nullable=False))  # migration-lsp: ignore
        op.drop_column("users", "city")  # migration-lsp: ignore[S001, S005]
        op.create_index("ix_users_name", "users", ["name"])  # migration-lsp: ignore[S]
    """)
    assert len(check(root)) == 5
    assert at(check(root, filtered=True)) == [("S001", line(root, '"b"'))]


def test_settings_ignore_and_select(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column("users", sa.Column("a", sa.Integer(), nullable=False))
        op.drop_column("users", "city")
    """)
    found = check(root)
    script = script_of(root)
    scripts = {script.path: script}
    assert at(apply_filters(found, Settings(ignore=("S005",)), scripts)) == [("S001", line(root, '"a"'))]
    assert apply_filters(found, Settings(ignore=("S",)), scripts) == []
    assert apply_filters(found, Settings(select=("G",)), scripts) == []
    assert at(apply_filters(found, Settings(select=("S005",)), scripts)) == [("S005", line(root, "city"))]


def test_pyproject_ignore(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column("users", sa.Column("a", sa.Integer(), nullable=False))
        op.drop_column("users", "city")
    """, extra={"pyproject.toml": '[tool.migration-lsp]\nignore = ["S005"]\n'})
    assert at(check(root, filtered=True)) == [("S001", line(root, '"a"'))]


# --------------------------------------------------------------------------- fixes


def test_s001_fix_adds_server_default_and_rechecks_clean(tmp_path):
    root = make(tmp_path, PG, 'op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))')
    new = fix(root, "S001", "server_default")
    assert 'sa.Column("age", sa.Integer(), nullable=False, server_default=sa.text("0"))' in new
    assert check(root) == []


def test_s001_fix_multiline_trailing_comma_and_explicit_none(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column(
            "users",
            sa.Column(
                "active",
                sa.Boolean(),
                nullable=False,
            ),
        )
        op.alter_column("users", "city", nullable=False, server_default=None)
    """)
    new = fix(root, "S001", "server_default")
    assert 'nullable=False, server_default=sa.text("false"),\n' in new
    new = fix(root, "S001", "server_default")
    assert 'op.alter_column("users", "city", nullable=False, server_default=sa.text("\'\'"))' in new
    assert check(root) == []


def test_s001_fix_batch_and_non_ascii(tmp_path):
    root = make(tmp_path, PG, """
        with op.batch_alter_table("users") as batch_op:
            batch_op.add_column(sa.Column("prénom", sa.String(), nullable=False, comment="é"))  # ünïcode
    """)
    new = fix(root, "S001", "server_default")
    assert 'comment="é", server_default=sa.text("\'\'")))  # ünïcode' in new
    assert check(root) == []


def test_s001_fix_without_sqlalchemy_import_adds_one(tmp_path):
    root = make(tmp_path, PG, 'op.alter_column("users", "city", nullable=False)')
    path = path_of(root)
    path.write_text(path.read_text().replace("import sqlalchemy as sa\n", ""))
    new = fix(root, "S001", "server_default")
    assert "import sqlalchemy as sa\n" in new
    assert check(root) == []


def test_s001_fix_uses_the_files_own_alias(tmp_path):
    root = make(tmp_path, PG, 'op.add_column("users", sa.Column("n", sa.Integer(), nullable=False))')
    path = path_of(root)
    path.write_text(path.read_text().replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\nfrom sqlalchemy import text\n"))
    new = fix(root, "S001", "server_default")
    assert 'server_default=sa.text("0")' in new


def test_s002_fix_wraps_in_autocommit_and_adds_concurrently(tmp_path):
    root = make(tmp_path, PG, """
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=True))
        op.create_index(op.f("ix_users_name"), "users", ["name"], unique=False)  # keep me
        op.drop_column("users", "city")
    """)
    new = fix(root, "S002")
    assert (
        "    with op.get_context().autocommit_block():\n"
        '        op.create_index(op.f("ix_users_name"), "users", ["name"], unique=False, '
        "postgresql_concurrently=True)  # keep me\n"
        '    op.drop_column("users", "city")\n'
    ) in new
    assert at(check(root)) == [("S005", line(root, "drop_column"))]


def test_s002_fix_multiline_existing_false_keyword(tmp_path):
    root = make(tmp_path, PG, """
        op.create_index(
            "ix_users_city",
            "users",
            ["city"],
            postgresql_concurrently=False,
            postgresql_where=sa.text(\"\"\"city IS NOT NULL
        AND city <> ''\"\"\"),
        )
    """)
    before = path_of(root).read_text()
    new = fix(root, "S002")
    assert "        op.create_index(\n            \"ix_users_city\",\n" in new
    assert "            postgresql_concurrently=True,\n" in new
    continuation = [ln for ln in before.split("\n") if "AND city" in ln]
    assert continuation == [ln for ln in new.split("\n") if "AND city" in ln]  # string content unchanged
    assert check(root) == []


def test_s002_fix_inside_autocommit_only_adds_keyword(tmp_path):
    root = make(tmp_path, PG, """
        with op.get_context().autocommit_block():
            op.create_index("ix_users_name", "users", ["name"])
    """)
    new = fix(root, "S002")
    assert new.count("autocommit_block") == 1
    assert 'op.create_index("ix_users_name", "users", ["name"], postgresql_concurrently=True)' in new
    assert check(root) == []


def test_s002_fix_in_batch_block_wraps_the_block(tmp_path):
    root = make(tmp_path, PG, """
        with op.batch_alter_table("users", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_users_name"), ["name"], unique=False)
    """)
    new = fix(root, "S002")
    assert (
        "    with op.get_context().autocommit_block():\n"
        '        with op.batch_alter_table("users", schema=None) as batch_op:\n'
        '            batch_op.create_index(batch_op.f("ix_users_name"), ["name"], unique=False, '
        "postgresql_concurrently=True)\n"
    ) in new
    assert check(root) == []


def test_s003_fix_wraps(tmp_path):
    root = make(tmp_path, PG, """
        if True:
            op.create_index("ix_users_name", "users", ["name"], postgresql_concurrently=True)
        op.execute(
            "CREATE INDEX CONCURRENTLY ix_users_city ON users (city)"
        )
    """)
    fix(root, "S003")
    new = fix(root, "S003")
    assert (
        "    if True:\n"
        "        with op.get_context().autocommit_block():\n"
        '            op.create_index("ix_users_name", "users", ["name"], postgresql_concurrently=True)\n'
        "    with op.get_context().autocommit_block():\n"
        "        op.execute(\n"
        '            "CREATE INDEX CONCURRENTLY ix_users_city ON users (city)"\n'
        "        )\n"
    ) in new
    assert check(root) == []


def test_s003_fix_for_connection_execute(tmp_path):
    root = make(tmp_path, PG, """
        conn = op.get_bind()
        conn.execute(sa.text("DROP INDEX CONCURRENTLY ix_users_code"))
    """)
    fix(root, "S003")
    assert check(root) == []


@pytest.mark.parametrize("name", sorted(S004_OPS))
def test_s004_fix_rewrites_into_batch_and_rechecks_clean(tmp_path, name):
    root = make(tmp_path, SQLITE, S004_OPS[name])
    fix(root, "S004", "batch_alter_table")
    assert at(check(root), "S004") == []
    script = script_of(root)
    (call,) = [c for c in script.upgrade.ops if c.name != "batch_alter_table"]
    assert call.batch_table in ("users", "orgs")


@pytest.mark.parametrize("source, expected", [
    ('op.alter_column("users", "name", type_=sa.Text(), existing_type=sa.String(100))',
     'with op.batch_alter_table("users") as batch_op:\n'
     '        batch_op.alter_column("name", type_=sa.Text(), existing_type=sa.String(100))'),
    ('op.create_unique_constraint("uq_users_email", "users", ["email"])',
     'with op.batch_alter_table("users") as batch_op:\n'
     '        batch_op.create_unique_constraint("uq_users_email", ["email"])'),
    ('op.create_foreign_key("fk_users_org", "users", "orgs", ["city"], ["id"], source_schema=None, ondelete="CASCADE")',
     'with op.batch_alter_table("users", schema=None) as batch_op:\n'
     '        batch_op.create_foreign_key("fk_users_org", "orgs", ["city"], ["id"], ondelete="CASCADE")'),
    ('op.drop_constraint("uq_users_code", "users", "unique")',
     'with op.batch_alter_table("users") as batch_op:\n'
     '        batch_op.drop_constraint("uq_users_code", "unique")'),
    ('op.drop_constraint("uq_users_code", table_name="users", type_="unique")',
     'with op.batch_alter_table("users") as batch_op:\n'
     '        batch_op.drop_constraint("uq_users_code", type_="unique")'),
    ('op.create_check_constraint("ck_users_email", "users", "length(email) > 3", schema=None)',
     'with op.batch_alter_table("users", schema=None) as batch_op:\n'
     '        batch_op.create_check_constraint("ck_users_email", "length(email) > 3")'),
])
def test_s004_fix_text(tmp_path, source, expected):
    root = make(tmp_path, SQLITE, source)
    new = fix(root, "S004")
    assert "    " + expected + "\n" in new
    assert at(check(root), "S004") == []


def test_s004_fix_multiline_call(tmp_path):
    root = make(tmp_path, SQLITE, """
        op.alter_column(
            "users",
            "name",
            existing_type=sa.String(100),
            nullable=True,  # why
        )
    """)
    new = fix(root, "S004")
    assert (
        '    with op.batch_alter_table("users") as batch_op:\n'
        "        batch_op.alter_column(\n"
        '            "name",\n'
        "            existing_type=sa.String(100),\n"
        "            nullable=True,  # why\n"
        "        )\n"
    ) in new
    assert check(root) == []


def test_s004_no_rewrite_when_batch_signature_lacks_a_keyword(tmp_path):
    root = make(tmp_path, SQLITE, 'op.drop_constraint("uq_users_code", "users", type_="unique", if_exists=True)')
    (d,) = [d for d in check(root) if d.code == "S004"]
    titles = [t for t, _ in safety_fixes(d, script_of(root))]
    assert titles == ["Ignore S004 on this line"]


def test_no_wrap_when_the_line_holds_two_statements(tmp_path):
    root = make(tmp_path, PG, 'op.create_index("ix_users_name", "users", ["name"]); op.drop_column("users", "city")')
    (d,) = [d for d in check(root) if d.code == "S002"]
    titles = [t for t, _ in safety_fixes(d, script_of(root))]
    assert titles == ["Ignore S002 on this line"]


@pytest.mark.parametrize("url, upgrade, code", [
    (PG, 'op.add_column("users", sa.Column("a", sa.Integer(), nullable=False))', "S001"),
    (PG, 'op.create_index("ix_users_name", "users", ["name"])', "S002"),
    (PG, 'op.create_index("ix_users_name", "users", ["name"], postgresql_concurrently=True)', "S003"),
    (SQLITE, 'op.create_unique_constraint("uq_users_email", "users", ["email"])', "S004"),
    (PG, 'op.drop_table("orgs")', "S005"),
    (PG, 'op.drop_column("users", "city")  # noqa: E501', "S005"),
    (PG, 'op.drop_column("users", "city")  # migration-lsp: ignore[S001]', "S005"),
])
def test_ignore_fix_for_every_code(tmp_path, url, upgrade, code):
    root = make(tmp_path, url, upgrade)
    assert at(check(root, filtered=True), code)
    new = fix(root, code, f"Ignore {code} on this line")
    assert at(check(root, filtered=True), code) == []
    assert new.count("migration-lsp: ignore") == 1


def test_s005_names_each_table_of_a_loop(tmp_path):
    """The table argument is a loop variable or a constant: each finding names the table the
    evaluation knows (before: "deletes a table" once per iteration, identical findings kept
    once); a table created earlier in the same upgrade() is still left alone."""
    root = make(tmp_path, SQLITE, """
        TABLE = "tmp_a"
        op.create_table("tmp_a", sa.Column("id", sa.Integer(), primary_key=True))
        for t in ("orgs", "users"):
            op.drop_table(t)
        for c in ("city", "name"):
            op.drop_column("users", c)
        op.drop_table(TABLE)
    """)
    found = sorted(d.message.split(" and its data")[0] for d in check(root) if d.code == "S005")
    assert found == ["drop_column deletes column 'users.city'", "drop_column deletes column 'users.name'",
                     "drop_table deletes table 'orgs'", "drop_table deletes table 'users'"]
    assert sorted(d.data["table"] for d in check(root) if d.code == "S005") == ["orgs", "users", "users", "users"]


def test_s005_offers_only_the_ignore_fix(tmp_path):
    root = make(tmp_path, PG, 'op.drop_table("orgs")')
    (d,) = check(root)
    assert [t for t, _ in safety_fixes(d, script_of(root))] == ["Ignore S005 on this line"]


def test_no_ignore_fix_when_line_ends_inside_a_string(tmp_path):
    root = make(tmp_path, PG, '''
        op.execute("""CREATE INDEX CONCURRENTLY ix_users_city
            ON users (city)""")
    ''')
    (d,) = check(root)
    titles = [t for t, _ in safety_fixes(d, script_of(root))]
    assert titles == ["Run it inside op.get_context().autocommit_block()"]
    before = path_of(root).read_text()
    new = fix(root, "S003")
    continuation = [ln for ln in before.split("\n") if "ON users (city)" in ln]
    assert continuation == [ln for ln in new.split("\n") if "ON users (city)" in ln]  # string unchanged
    assert "    with op.get_context().autocommit_block():\n        op.execute(" in new
    assert check(root) == []


def test_fixes_keep_crlf_line_endings(tmp_path):
    root = make(tmp_path, PG, 'op.create_index("ix_users_name", "users", ["name"])')
    path = path_of(root)
    path.write_bytes(path.read_text().replace("\n", "\r\n").encode())
    (d,) = check(root)
    script = script_of(root)
    (title, edits), _ = safety_fixes(d, script)
    new = apply_edits(script.text.replace("\r\n", "\n"), edits).replace("\r\n", "\n")
    assert all("\n" not in t or "\r\n" in t for _, t in edits)
    ast.parse(new)


def test_fix_for_a_stale_span_offers_only_ignore(tmp_path):
    root = make(tmp_path, PG, 'op.create_index("ix_users_name", "users", ["name"])')
    (d,) = check(root)
    moved = Diagnostic(d.code, d.severity, d.path, Span(d.span.line, 0, d.span.line, 1), d.message)
    assert [t for t, _ in safety_fixes(moved, script_of(root))] == ["Ignore S002 on this line"]
    assert safety_fixes(Diagnostic("G001", Severity.ERROR, d.path, d.span, ""), script_of(root)) == []


# --------------------------------------------------------------------------- whole projects


def test_postgresql_project_each_rule_on_its_line(tmp_path):
    root = make(tmp_path, PG, """
        op.create_table("events", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("kind", sa.String()))
        op.create_index("ix_events_kind", "events", ["kind"])
        op.add_column("events", sa.Column("at", sa.DateTime(), nullable=False))
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))
        op.add_column("users", sa.Column("score", sa.Integer(), nullable=False, server_default="0"))
        op.create_index("ix_users_age", "users", ["age"])
        with op.get_context().autocommit_block():
            op.create_index("ix_users_score", "users", ["score"], postgresql_concurrently=True)
        op.create_index("ix_users_name", "users", ["name"], postgresql_concurrently=True)
        op.alter_column("users", "name", nullable=False)
        op.create_unique_constraint("uq_users_email", "users", ["email"])
        op.drop_column("users", "city")
    """)
    assert at(check(root)) == [
        ("S001", line(root, '"age", sa.Integer')),
        ("S001", line(root, 'alter_column("users", "name"')),
        ("S002", line(root, "ix_users_age")),
        ("S003", line(root, "ix_users_name")),
        ("S005", line(root, 'drop_column("users", "city")')),
    ]


def test_sqlite_project_each_rule_on_its_line(tmp_path):
    root = make(tmp_path, SQLITE, """
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))
        op.create_index("ix_users_age", "users", ["age"])
        with op.batch_alter_table("users") as batch_op:
            batch_op.alter_column("name", type_=sa.Text())
            batch_op.create_unique_constraint("uq_users_email", ["email"])
        op.create_foreign_key("fk_users_org", "users", "orgs", ["city"], ["id"])
        op.drop_table("orgs")
    """)
    assert at(check(root)) == [
        ("S001", line(root, '"age", sa.Integer')),
        ("S004", line(root, "fk_users_org")),
        ("S005", line(root, "drop_table")),
    ]
    for code in ("S001", "S004"):
        fix(root, code)
    assert at(check(root)) == [("S005", line(root, "drop_table"))]


def test_s003_fix_in_batch_block_wraps_the_block(tmp_path):
    root = make(tmp_path, PG, """
        with op.batch_alter_table("users") as batch_op:
            batch_op.create_index("ix_users_name", ["name"], postgresql_concurrently=True)
    """)
    assert at(check(root)) == [("S003", line(root, "batch_op.create_index"))]
    new = fix(root, "S003")
    assert (
        "    with op.get_context().autocommit_block():\n"
        '        with op.batch_alter_table("users") as batch_op:\n'
        '            batch_op.create_index("ix_users_name", ["name"], postgresql_concurrently=True)\n'
    ) in new
    assert check(root) == []


def test_rules_and_fixes_work_while_another_function_does_not_parse(tmp_path):
    root = make(tmp_path, PG, 'op.create_index("ix_users_name", "users", ["name"])', downgrade="op.drop_index(")
    script = script_of(root)
    assert script.syntax_error
    (d,) = check(root)
    assert d.code == "S002" and d.span.line == line(root, "ix_users_name")
    (title, edits), _ = safety_fixes(d, script)
    new = apply_edits(script.text, edits)
    assert (
        "    with op.get_context().autocommit_block():\n"
        '        op.create_index("ix_users_name", "users", ["name"], postgresql_concurrently=True)\n'
    ) in new


def test_tab_indented_file(tmp_path):
    root = make(tmp_path, SQLITE, 'op.create_check_constraint("ck", "users", "id > 0")')
    path = path_of(root)
    path.write_text(path.read_text().replace("\n    ", "\n\t"))
    new = fix(root, "S004")
    assert '\n\twith op.batch_alter_table("users") as batch_op:\n\t\tbatch_op.create_check_constraint("ck", "id > 0")\n' in new
    assert check(root) == []


def test_half_typed_files_never_crash_the_rules_or_the_fixes(tmp_path):
    from migration_lsp.interpret import evaluate_function
    from migration_lsp.replay import RevisionSchema
    from migration_lsp.scripts import parse_script

    root = make(tmp_path, PG, """
        op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))
        with op.batch_alter_table("users") as batch_op:
            batch_op.create_index("ix_users_name", ["name"])
            batch_op.alter_column("city", nullable=False)
        op.create_index("ix_users_city", "users", ["city"], postgresql_concurrently=True)
        op.execute(\"\"\"CREATE INDEX CONCURRENTLY ix_x
            ON users (email)\"\"\")
        op.create_unique_constraint("uq", "users", ["email"])
        op.drop_column("users", "code")
    """)
    (state,) = Engine([root]).snapshot().environments
    before = state.replay.revision("bbbb").before
    text = path_of(root).read_text()
    start = text.index("def upgrade")
    end = text.index("def downgrade")
    for cut in range(start, end, 3):
        typed = text[:cut] + text[end:]
        script = parse_script(path_of(root), typed)
        schema = RevisionSchema(before, before, tuple(evaluate_function(script, script.upgrade)))
        for dialect in ("postgresql", "sqlite"):
            for d in check_safety(script, schema, dialect, "env"):
                for _, edits in safety_fixes(d, script):
                    apply_edits(typed, edits)
