"""Rule family S006–S014 (PostgreSQL DDL on existing tables) and its quick fixes.

Every project goes through the real pipeline (discovery -> parse -> graph -> replay); the
rules are called with the replayed RevisionSchema of one revision. Each quick fix is applied
to the file's text, written back, and the project checked again. The last tests run a fixed
revision's SQL (Alembic's own offline rendering) on a real PostgreSQL and read pg_locks.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from conftest import alembic_project, line_of, migration_text
from migration_lsp.checks import RULES, apply_filters
from migration_lsp.checks.pg_ddl import CODES, check_pg_ddl
from migration_lsp.core import Diagnostic, Severity, Span
from migration_lsp.engine import Engine

PG = "postgresql+psycopg2://user:pass@localhost/app"
SQLITE = "sqlite:///app.db"

BASE = """
op.create_table(
    "users",
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("email", sa.String(255), nullable=False),
    sa.Column("name", sa.String(100), nullable=True),
    sa.Column("age", sa.Integer(), nullable=True),
    sa.Column("score", sa.Numeric(10, 2), nullable=True),
    sa.Column("org_id", sa.Integer(), nullable=True, index=True),
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
    return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ").lstrip()


def make(root: Path, upgrade: str, url: str = PG, base: str = BASE) -> Path:
    """base revision `aaaa` (creates users, orgs) and revision `bbbb` with `upgrade`."""
    revisions = {
        "aaaa_base.py": migration_text("aaaa", upgrades=body(base)),
        "bbbb_change.py": migration_text("bbbb", "aaaa", upgrades=body(upgrade)),
    }
    alembic_project(root, revisions, ini=ini(url))
    return root


def path_of(root: Path) -> Path:
    return root / "migrations" / "versions" / "bbbb_change.py"


def check(root: Path, rev: str = "bbbb", version=None, filtered: bool = False) -> list[Diagnostic]:
    (state,) = Engine([root]).snapshot().environments
    script = state.graph.by_id[rev]
    found = check_pg_ddl(script, state.replay.revision(rev), state.env.dialect, state.env.name, version)
    if filtered:
        found = apply_filters(found, state.env.settings, {script.path: script})
    return found


def codes(diags) -> list[tuple[str, int]]:
    return sorted((d.code, d.span.line) for d in diags)


def line(root: Path, needle: str, nth: int = 0) -> int:
    return line_of(path_of(root).read_text(), needle, nth)


# --------------------------------------------------------------------------- registry


def test_codes_registered_with_their_severities():
    assert CODES == tuple(f"S{n:03d}" for n in range(6, 15))
    assert {c: RULES[c][0] for c in CODES} == {
        "S006": "warning", "S007": "warning", "S008": "warning", "S009": "warning", "S010": "warning",
        "S011": "warning", "S012": "warning", "S013": "info", "S014": "error"}


# --------------------------------------------------------------------------- the smallest example of each rule

SMALLEST = {
    "S006": 'op.create_foreign_key("fk_users_org", "users", "orgs", ["org_id"], ["id"])',
    "S007": 'op.alter_column("users", "age", existing_type=sa.Integer(), nullable=False)',
    "S008": 'op.alter_column("users", "age", type_=sa.String(20))',
    "S009": 'op.create_unique_constraint("uq_users_email", "users", ["email"])',
    "S010": 'op.add_column("users", sa.Column("token", sa.Uuid(), server_default=sa.text("gen_random_uuid()")))',
    "S011": 'op.drop_index("ix_users_code", table_name="users")',
    "S012": 'op.add_column("users", sa.Column("' + "x" * 64 + '", sa.Integer()))',
    "S013": 'op.create_table("members", sa.Column("id", sa.Integer(), primary_key=True), '
            'sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id")))',
    "S014": 'op.create_index("' + "ix_" + "y" * 64 + '", "users", ["name"])',
}


@pytest.mark.parametrize("code", sorted(SMALLEST))
def test_each_rule_on_its_smallest_example(tmp_path, code):
    root = make(tmp_path, SMALLEST[code])
    found = check(root)
    assert [d.code for d in found] == [code], found
    (d,) = found
    assert d.severity == {"warning": Severity.WARNING, "error": Severity.ERROR, "info": Severity.INFO}[RULES[code][0]]
    assert d.span.line == line(root, "op.")


@pytest.mark.parametrize("code", sorted(SMALLEST))
def test_each_rule_is_silent_on_other_dialects(tmp_path, code):
    root = make(tmp_path, SMALLEST[code], url=SQLITE)
    assert check(root) == []


@pytest.mark.parametrize("code", sorted(SMALLEST))
def test_each_rule_suppressed_by_its_comment(tmp_path, code):
    root = make(tmp_path, SMALLEST[code] + f"  # migration-lsp: ignore[{code}]")
    assert check(root) and check(root, filtered=True) == []
    other = "S099" if code != "S099" else "S098"
    root2 = make(tmp_path / "other", SMALLEST[code] + f"  # migration-lsp: ignore[{other}]")
    assert [d.code for d in check(root2, filtered=True)] == [code]
