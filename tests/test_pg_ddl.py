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
from migration_lsp.checks import apply_filters
from migration_lsp.checks.pg_ddl import CODES, check_pg_ddl
from migration_lsp.core import Diagnostic, Span
from migration_lsp.engine import Engine
from migration_lsp.rules import RULES

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


def engine_check(root: Path, rev: str = "bbbb") -> list[Diagnostic]:
    """Through the engine (filters applied): raw SQL is judged by checks/pg_transactions with
    these codes, one parser pass per string."""
    (state,) = Engine([root]).snapshot().environments
    path = state.graph.by_id[rev].path
    return [d for d in state.diagnostics if d.code in CODES and d.path == path]


def codes(diags) -> list[tuple[str, int]]:
    return sorted((d.code, d.span.line) for d in diags)


def line(root: Path, needle: str, nth: int = 0) -> int:
    return line_of(path_of(root).read_text(), needle, nth)


# --------------------------------------------------------------------------- registry


def test_codes_registered_with_their_severities():
    assert CODES == tuple(f"S{n:03d}" for n in range(6, 15))
    assert {c: RULES[c].severity.label for c in CODES} == {
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
    assert d.severity == RULES[code].severity
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


# --------------------------------------------------------------------------- a table created in the same revision

LOCK_RULES = ("S006", "S007", "S008", "S009", "S010", "S011")


@pytest.mark.parametrize("code", LOCK_RULES)
def test_lock_rules_silent_on_a_table_created_in_the_same_revision(tmp_path, code):
    """The same op, on a copy of `users` this revision creates: empty, nothing waits."""
    fresh = BASE.replace('"users"', '"people"').replace('"orgs"', '"teams"').replace("ix_users", "ix_people")
    upgrade = fresh + "\n" + SMALLEST[code].replace('"users"', '"people"').replace('"orgs"', '"teams"').replace(
        "ix_users", "ix_code_people")
    upgrade = upgrade.replace('"ix_code_people", table_name="people"', 'op.f("ix_people_code"), table_name="people"')
    root = make(tmp_path, upgrade)
    assert [d for d in check(root) if d.code in LOCK_RULES] == []
    assert codes(check(make(tmp_path / "existing", SMALLEST[code])))  # and the same op on `users` fires


def test_identifier_and_index_rules_also_speak_for_new_tables(tmp_path):
    """S012–S014 are not about locks: a new table is the cheapest place to fix a name or add
    the index (documented in checks/pg_ddl.py)."""
    long = "z" * 64
    root = make(tmp_path, f"""
        op.create_table(
            "{long}",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id")),
        )
    """)
    assert codes(check(root)) == [("S012", line(root, long)), ("S013", line(root, "op.create_table"))]


# --------------------------------------------------------------------------- each rule's details


def test_s006_foreign_key_and_check_and_not_valid(tmp_path):
    root = make(tmp_path, """
        op.create_foreign_key("fk_users_org", "users", "orgs", ["org_id"], ["id"])
        op.create_check_constraint("ck_users_age", "users", "age >= 0")
        op.create_foreign_key("fk_users_org2", "users", "orgs", ["org_id"], ["id"], postgresql_not_valid=True)
        op.create_check_constraint("ck_users_age2", "users", "age >= 0", postgresql_not_valid=True)
    """)
    found = check(root)
    assert codes(found) == [("S006", line(root, "fk_users_org")), ("S006", line(root, "ck_users_age"))]
    fk, ck = sorted(found, key=lambda d: d.span.line)
    assert "SHARE ROW EXCLUSIVE" in fk.message and "'orgs'" in fk.message  # both tables, from the model
    assert "ACCESS EXCLUSIVE" in ck.message and ck.data["kind"] == "CHECK constraint"


def test_s007_not_null_already_or_proven_by_a_valid_check(tmp_path):
    root = make(tmp_path, """
        op.alter_column("users", "email", existing_type=sa.String(255), nullable=False)
        op.create_check_constraint("ck_age_nn", "users", "age IS NOT NULL")
        op.alter_column("users", "age", nullable=False)
        op.alter_column("users", "name", nullable=True)
    """)
    assert codes(check(root)) == [("S006", line(root, "ck_age_nn"))]  # the CHECK scans; SET NOT NULL then not


def test_s007_postgres_11_has_no_way_around(tmp_path):
    root = make(tmp_path, """
        op.create_check_constraint("ck_age_nn", "users", "age IS NOT NULL")
        op.alter_column("users", "age", nullable=False)
    """)
    assert codes(check(root, version=11)) == [("S006", line(root, "ck_age_nn")), ("S007", line(root, "alter_column"))]


@pytest.mark.parametrize(("change", "rewrites"), [
    ('"name", type_=sa.Text()', False),  # varchar -> text
    ('"name", type_=sa.String(200)', False),  # longer varchar
    ('"score", type_=sa.Numeric(14, 2)', False),  # more precision
    ('"name", type_=sa.String(50)', True),  # shorter varchar
    ('"score", type_=sa.Numeric(14, 4)', True),  # another scale
    ('"age", type_=sa.BigInteger()', True),
    ('"age", type_=sa.BigInteger(), existing_type=sa.Integer()', True),
    ('"name", type_=sa.Text(), postgresql_using="upper(name)"', True),
    ('"code", type_=sa.Enum("a", "b", name="kind")', None),  # an enum: not known, not reported
])
def test_s008_only_the_changes_that_rewrite(tmp_path, change, rewrites):
    root = make(tmp_path, f'op.alter_column("users", {change})')
    assert [d.code for d in check(root)] == (["S008"] if rewrites else [])


def test_s008_is_version_aware(tmp_path):
    base = BASE.replace('sa.Column("age", sa.Integer(), nullable=True),',
                        'sa.Column("age", sa.Integer(), nullable=True),\n    sa.Column("seen", sa.DateTime()),')
    root = make(tmp_path, 'op.alter_column("users", "seen", type_=sa.DateTime(timezone=True))', base=base)
    assert [d.code for d in check(root, version=11)] == ["S008"]  # always rewritten before 12
    assert check(root, version=16) == []  # 12+: depends on the session time zone: unknown, not reported


def test_s009_kinds(tmp_path):
    base = BASE + '\nop.create_table("solo", sa.Column("id", sa.Integer(), nullable=False))\n'
    root = make(tmp_path, """
        op.create_unique_constraint("uq_users_email", "users", ["email"])
        op.create_primary_key("pk_solo", "solo", ["id"])
        op.add_column("users", sa.Column("handle", sa.String(20), unique=True))
    """, base=base)
    found = sorted(check(root), key=lambda d: d.span.line)
    assert [d.code for d in found] == ["S009", "S009", "S009"]
    assert [d.data["kind"] for d in found] == ["unique constraint", "primary key", "unique constraint"]
    assert found[1].data["not_null"] is True


def test_s010_kinds_and_negatives(tmp_path):
    root = make(tmp_path, """
        op.add_column("users", sa.Column("r", sa.Float(), server_default=sa.text("random()")))
        op.add_column("users", sa.Column("n", sa.Integer(), sa.Identity()))
        op.add_column("users", sa.Column("g", sa.Integer(), sa.Computed("age * 2", persisted=True)))
        op.add_column("users", sa.Column("at", sa.DateTime(), server_default=sa.func.now()))
        op.add_column("users", sa.Column("k", sa.Integer(), nullable=False, server_default="0"))
        op.add_column("users", sa.Column("u", sa.Integer(), server_default=sa.text("my_function()")))
    """)
    assert codes(check(root)) == [("S010", line(root, '"r"')), ("S010", line(root, '"n"')),
                                  ("S010", line(root, '"g"'))]


def test_s011_table_from_the_history_and_negatives(tmp_path):
    root = make(tmp_path, """
        op.drop_index("ix_users_code")
        op.drop_index("ix_users_org_id", table_name="users", postgresql_concurrently=True)
        op.drop_index("ix_nowhere")
    """)
    found = check(root)
    assert codes([d for d in found if d.code == "S011"]) == [("S011", line(root, "ix_users_code"))]


def test_s012_s014_names(tmp_path):
    multibyte = "é" * 40  # 40 characters, 80 bytes: SQLAlchemy lets it through, PostgreSQL truncates it
    root = make(tmp_path, f"""
        op.create_index("{multibyte}", "users", ["name"], postgresql_concurrently=True)
        op.alter_column("users", "name", new_column_name="{'n' * 64}")
        op.rename_table("orgs", "{'o' * 70}")
        op.create_index(op.f("{'f' * 70}"), "users", ["email"], postgresql_concurrently=True)
        op.create_check_constraint("{'c' * 64}", "users", "age > 0", postgresql_not_valid=True)
        op.create_index("{'i' * 63}", "users", ["age"], postgresql_concurrently=True)
    """)
    got = {(d.code, d.data["kind"], d.data["length"]) for d in check(root) if d.code in ("S012", "S014")}
    assert got == {("S012", "index", 80), ("S012", "column", 64), ("S012", "table", 70),
                   ("S014", "constraint", 64)}
    (s012,) = [d for d in check(root) if d.data.get("kind") == "index"]
    assert s012.data["truncated"] == "é" * 31  # 62 bytes: PostgreSQL never splits a character
    text = path_of(root).read_text()
    assert text.splitlines()[s012.span.line][s012.span.col:s012.span.end_col] == f'"{multibyte}"'


def test_s013_index_coverage(tmp_path):
    root = make(tmp_path, """
        op.create_table(
            "a",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), index=True),
        )
        op.create_table(
            "b",
            sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), primary_key=True),
            sa.Column("n", sa.Integer(), primary_key=True),
        )
        op.create_table(
            "c",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("org_id", sa.Integer()),
            sa.Column("user_id", sa.Integer()),
            sa.ForeignKeyConstraint(["org_id"], ["orgs.id"]),
            sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        )
        op.create_index("ix_c_user_n", "c", ["user_id", "id"])
        op.create_foreign_key("fk_users_org", "users", "orgs", ["org_id"], ["id"], postgresql_not_valid=True)
    """)
    found = [d for d in check(root) if d.code == "S013"]
    assert [(d.data["table"], d.data["columns"]) for d in found] == [("c", ["org_id"])]


def test_postgres_version_setting_reaches_the_rules_through_the_engine(tmp_path):
    base = BASE.replace('sa.Column("age", sa.Integer(), nullable=True),',
                        'sa.Column("age", sa.Integer(), nullable=True),\n    sa.Column("seen", sa.DateTime()),')
    root = make(tmp_path, 'op.alter_column("users", "seen", type_=sa.DateTime(timezone=True))', base=base)

    def engine_codes() -> list[str]:
        return sorted(d.code for d in Engine([root]).snapshot().diagnostics if d.code in CODES)

    assert engine_codes() == []
    (root / "pyproject.toml").write_text("[tool.migration-lsp]\npostgres-version = 11\n")
    assert engine_codes() == ["S008"]  # and not a result cached for the newest version
    (root / "pyproject.toml").write_text("[tool.migration-lsp]\npostgres-version = 16\n")
    assert engine_codes() == []


# --------------------------------------------------------------------------- quick fixes


def script_of(root: Path, rev: str = "bbbb"):
    (state,) = Engine([root]).snapshot().environments
    return state.graph.by_id[rev]


def apply_edits(text: str, edits: list[tuple[Span, str]]) -> str:
    lines = text.split("\n")
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)
    spans = sorted(edits, key=lambda e: (e[0].line, e[0].col))
    for (a, _), (b, _) in zip(spans, spans[1:]):
        assert (a.end_line, a.end_col) <= (b.line, b.col), "edits overlap"
    for span, new in reversed(spans):
        text = text[: starts[span.line] + span.col] + new + text[starts[span.end_line] + span.end_col:]
    return text


def fix(root: Path, code: str, title_part: str = "", version=None) -> str:
    """Apply the first fix of the `code` diagnostic whose title contains `title_part`; write
    the file back; return the new text (asserted to parse)."""
    from migration_lsp.features.pg_ddl_fixes import pg_ddl_fixes

    (d,) = [d for d in check(root, version=version) if d.code == code]
    script = script_of(root)
    fixes = [f for f in pg_ddl_fixes(d, script) if title_part in f[0]]
    assert fixes, f"no fix containing {title_part!r} for {d}"
    new = apply_edits(script.text, fixes[0][1])
    ast.parse(new)
    path_of(root).write_text(new)
    return new


def titles(root: Path, code: str) -> list[str]:
    from migration_lsp.features.pg_ddl_fixes import pg_ddl_fixes

    (d,) = [d for d in check(root) if d.code == code]
    return [title for title, _ in pg_ddl_fixes(d, script_of(root))]


def test_s006_fix_not_valid_then_validate_in_autocommit(tmp_path):
    root = make(tmp_path, SMALLEST["S006"])
    new = fix(root, "S006", "NOT VALID")
    assert ('    op.create_foreign_key("fk_users_org", "users", "orgs", ["org_id"], ["id"], postgresql_not_valid=True)\n'
            '    with op.get_context().autocommit_block():  # its own transaction: reads and writes go on\n'
            '        op.execute("ALTER TABLE users VALIDATE CONSTRAINT fk_users_org")') in new
    assert [d for d in check(root) if d.code.startswith("S")] == []


def test_s006_fix_check_constraint_multiline_and_in_autocommit(tmp_path):
    root = make(tmp_path, """
        op.create_check_constraint(
            "ck_users_age",
            "users",
            "age >= 0",
        )
        with op.get_context().autocommit_block():
            op.create_check_constraint("ck_users_score", "users", "score >= 0")
    """)
    from migration_lsp.features.pg_ddl_fixes import pg_ddl_fixes

    first, second = sorted((d for d in check(root) if d.code == "S006"), key=lambda d: d.span.line)
    script = script_of(root)
    (title, edits), _ignore = pg_ddl_fixes(second, script)
    inside = apply_edits(script.text, edits)
    assert ('        op.create_check_constraint("ck_users_score", "users", "score >= 0", postgresql_not_valid=True)\n'
            '        op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_users_score")\n') in inside  # no second block
    (title, edits), _ignore = pg_ddl_fixes(first, script)
    new = apply_edits(inside, edits)
    ast.parse(new)
    path_of(root).write_text(new)
    assert [d for d in check(root) if d.code == "S006"] == []


def test_s006_no_fix_without_a_name(tmp_path):
    root = make(tmp_path, 'op.create_foreign_key(None, "users", "orgs", ["org_id"], ["id"])')
    assert titles(root, "S006") == ["Ignore S006 on this line"]


def test_s007_fix_check_validate_set_not_null(tmp_path):
    root = make(tmp_path, SMALLEST["S007"])
    new = fix(root, "S007", "SET NOT NULL")
    assert (
        '    op.create_check_constraint("ck_users_age_not_null", "users", "age IS NOT NULL", postgresql_not_valid=True)\n'
        '    with op.get_context().autocommit_block():  # its own transaction: reads and writes go on\n'
        '        op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_users_age_not_null")\n'
        '    op.alter_column("users", "age", existing_type=sa.Integer(), nullable=False)\n'
        '    op.drop_constraint("ck_users_age_not_null", "users", type_="check")\n') in new
    assert [d for d in check(root) if d.code.startswith("S") and d.code != "S001"] == []


def test_s007_fix_only_from_postgres_12(tmp_path):
    from migration_lsp.features.pg_ddl_fixes import pg_ddl_fixes

    root = make(tmp_path, SMALLEST["S007"])
    (d,) = check(root, version=11)
    assert [t for t, _ in pg_ddl_fixes(d, script_of(root))] == ["Ignore S007 on this line"]


def test_s007_fix_long_names_stay_under_63_bytes(tmp_path):
    long = "a" * 40
    base = BASE.replace('"age"', f'"{long}"')
    root = make(tmp_path, f'op.alter_column("users", "{long}", nullable=False)', base=base)
    fix(root, "S007")
    assert [d for d in check(root) if d.code.startswith("S") and d.code != "S001"] == []


def test_s009_fix_unique_index_concurrently_then_using_index(tmp_path):
    root = make(tmp_path, SMALLEST["S009"])
    new = fix(root, "S009", "USING INDEX")
    assert ('    with op.get_context().autocommit_block():\n'
            '        op.create_index("uq_users_email", "users", ["email"], unique=True, postgresql_concurrently=True)\n'
            '    op.execute("ALTER TABLE users ADD CONSTRAINT uq_users_email UNIQUE USING INDEX uq_users_email")\n') in new
    assert [d for d in check(root) if d.code.startswith("S")] == []
    from migration_lsp.checks.safety import check_safety

    (state,) = Engine([root]).snapshot().environments
    assert check_safety(state.graph.by_id["bbbb"], state.replay.revision("bbbb"), "postgresql", "m") == []


def test_s009_primary_key_fix_only_on_not_null_columns(tmp_path):
    base = BASE + ('\nop.create_table("solo", sa.Column("id", sa.Integer(), nullable=False))\n'
                   'op.create_table("loose", sa.Column("id", sa.Integer(), nullable=True))\n')
    root = make(tmp_path, 'op.create_primary_key("pk_solo", "solo", ["id"])', base=base)
    new = fix(root, "S009", "USING INDEX")
    assert "ADD CONSTRAINT pk_solo PRIMARY KEY USING INDEX pk_solo" in new
    assert check(root) == []
    root2 = make(tmp_path / "loose", 'op.create_primary_key("pk_loose", "loose", ["id"])', base=base)
    assert titles(root2, "S009") == ["Ignore S009 on this line"]


def test_s009_no_fix_for_exclusion_or_extra_options(tmp_path):
    root = make(tmp_path, 'op.create_unique_constraint("uq_users_email", "users", ["email"], deferrable=True)')
    assert titles(root, "S009") == ["Ignore S009 on this line"]


def test_s011_fix_drop_concurrently(tmp_path):
    root = make(tmp_path, SMALLEST["S011"])
    new = fix(root, "S011", "CONCURRENTLY")
    assert ('    with op.get_context().autocommit_block():\n'
            '        op.drop_index("ix_users_code", table_name="users", postgresql_concurrently=True)') in new
    assert check(root) == []


@pytest.mark.parametrize("code", ["S008", "S010", "S012", "S014"])
def test_rules_without_a_safe_form_offer_only_ignore(tmp_path, code):
    root = make(tmp_path, SMALLEST[code])
    assert titles(root, code) == [f"Ignore {code} on this line"]
    fix(root, code, "Ignore")
    assert check(root, filtered=True) == []


def test_fixes_reach_the_editor_as_code_actions(tmp_path):
    """Through the engine's diagnostics and the LSP code-action feature (what the server runs)."""
    from migration_lsp.features import Locator
    from migration_lsp.features.actions import EditSupport, code_actions

    root = make(tmp_path, SMALLEST["S006"])
    snapshot = Engine([root]).snapshot()
    (d,) = [d for d in snapshot.diagnostics if d.code == "S006"]
    support = EditSupport(document_changes=True, create=True, rename=True)
    actions = code_actions(snapshot, path_of(root), d.span, ["quickfix"], Locator(snapshot), support)
    assert [a.title for a in actions] == ["Add it NOT VALID, then VALIDATE it in an autocommit_block (no long lock)",
                                         "Ignore S006 on this line"]
    assert actions[0].is_preferred


def test_s014_is_what_sqlalchemy_refuses_and_s012_what_it_lets_through():
    """The line between S014 and S012 is SQLAlchemy's own check, through Alembic's rendering."""
    import sqlalchemy as sa
    from alembic.operations import ops

    from migration_lsp import pglocks

    with pytest.raises(sa.exc.IdentifierError):
        pglocks.render_sql(ops.CreateIndexOp("i" * 64, "users", ["name"]))
    assert "é" * 40 in pglocks.render_sql(ops.CreateIndexOp("é" * 40, "users", ["name"]))  # 80 bytes: PostgreSQL cuts
    assert "x" * 64 in pglocks.render_sql(ops.AddColumnOp("users", sa.Column("x" * 64, sa.Integer())))
    conv = pglocks.render_sql(ops.CreateIndexOp(sa.sql.elements.conv("f" * 70), "users", ["name"]))
    assert "f" * 70 not in conv and "f" * 50 in conv  # op.f(): shortened the way the models' name is


# --------------------------------------------------------------------------- raw SQL


def test_raw_sql_goes_through_the_same_rules_located_on_the_statement(tmp_path):
    root = make(tmp_path, '''
        op.execute("ALTER TABLE users ADD CONSTRAINT fk_org FOREIGN KEY (org_id) REFERENCES orgs (id)")
        op.execute(sa.text("""
            ALTER TABLE users ALTER COLUMN age SET NOT NULL;
            ALTER TABLE users ALTER COLUMN age TYPE bigint;
            ALTER TABLE users ALTER COLUMN name TYPE text;
            ALTER TABLE users ADD CONSTRAINT uq_email UNIQUE (email);
            ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();
            DROP INDEX ix_users_code;
            ALTER TABLE users ADD CONSTRAINT ck_age CHECK (age > 0) NOT VALID;
            ALTER TABLE users VALIDATE CONSTRAINT ck_age;
        """))
        conn = op.get_bind()
        conn.execute(sa.text("DROP INDEX ix_users_org_id"))
    ''')
    text = path_of(root).read_text()
    found = sorted(engine_check(root), key=lambda d: (d.span.line, d.span.col))
    assert [(d.code, d.span.line) for d in found] == [
        ("S006", line(root, "fk_org")), ("S007", line(root, "SET NOT NULL")), ("S008", line(root, "TYPE bigint")),
        ("S009", line(root, "uq_email")), ("S010", line(root, "gen_random_uuid")),
        ("S011", line(root, "DROP INDEX ix_users_code")), ("S011", line(root, "ix_users_org_id"))]
    lines = text.splitlines()
    assert [lines[d.span.line][d.span.col:d.span.end_col] for d in found[:3]] == [
        "ALTER TABLE users ADD CONSTRAINT fk_org FOREIGN KEY (org_id) REFERENCES orgs (id)",
        "ALTER TABLE users ALTER COLUMN age SET NOT NULL", "ALTER TABLE users ALTER COLUMN age TYPE bigint"]


@pytest.mark.parametrize("comment", ["", "  # migration-lsp: ignore[S007]"])
def test_raw_sql_on_a_new_table_and_suppression_on_the_call_line(tmp_path, comment):
    root = make(tmp_path, f'''
        op.execute("CREATE TABLE fresh (id int, email text)")
        op.execute("ALTER TABLE fresh ADD CONSTRAINT uq_fresh UNIQUE (email)")
        op.execute("""
            ALTER TABLE users ALTER COLUMN age SET NOT NULL
        """){comment}
    ''')
    assert [d.code for d in engine_check(root)] == ([] if comment else ["S007"])


def test_s013_composite_key_once_and_its_columns_not_alone(tmp_path):
    """A composite key is one key (its columns are not keys of their own), also once the
    op's table has been built (rendering the op does, e.g. for a hover): its columns then
    know the table's constraints."""
    from migration_lsp import pglocks

    root = make(tmp_path, """
        op.create_table(
            "pair",
            sa.Column("a", sa.Integer(), primary_key=True),
            sa.Column("b", sa.Integer(), primary_key=True),
        )
        op.create_table(
            "link",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("a", sa.Integer()),
            sa.Column("b", sa.Integer()),
            sa.ForeignKeyConstraint(["a", "b"], ["pair.a", "pair.b"]),
        )
    """)
    (state,) = Engine([root]).snapshot().environments
    schema = state.replay.revision("bbbb")
    for ev in schema.upgrade:
        pglocks.render_sql(ev.op)
    found = check_pg_ddl(state.graph.by_id["bbbb"], schema, "postgresql", "m")
    assert [(d.data["table"], d.data["columns"]) for d in found] == [("link", ["a", "b"])]


@pytest.mark.parametrize("code", ["S006", "S007", "S009", "S011"])
def test_fixes_keep_crlf_line_endings(tmp_path, code):
    root = make(tmp_path, SMALLEST[code])
    path = path_of(root)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    fix(root, code)
    data = path.read_bytes()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert [d.code for d in check(root) if d.code != "S001"] == []


@pytest.mark.parametrize("upgrade", [
    'op.execute("ALTER TABLE users ADD CONSTRAINT")',  # does not parse
    'op.execute("ALTER TABLE users VALIDATE CONSTRAINT")',
    'op.execute(sa.text(""))',
    'op.create_foreign_key(',
    'op.alter_column("users", nullable=False)',
    'op.drop_index()',
    'op.create_unique_constraint("uq", "users")',
    'op.add_column("users", sa.Column())',
    'op.execute("DROP INDEX ix_users_code; ALTER TABLE nowhere ALTER COLUMN x SET NOT NULL")',
])
def test_half_typed_and_odd_ops_never_crash(tmp_path, upgrade):
    root = make(tmp_path, upgrade)
    found = check(root)
    assert all(d.code in CODES for d in found)
    from migration_lsp.features.pg_ddl_fixes import pg_ddl_fixes

    for d in found:
        pg_ddl_fixes(d, script_of(root))


def test_s013_fix_on_a_new_table_creates_the_index_plainly(tmp_path):
    root = make(tmp_path, SMALLEST["S013"])
    new = fix(root, "S013", "Create index")
    assert ('sa.ForeignKey("orgs.id")))\n'
            '    op.create_index("ix_members_org_id", "members", ["org_id"])\n') in new
    assert check(root) == []


def test_s013_fix_on_an_existing_table_creates_it_concurrently(tmp_path):
    root = make(tmp_path, 'op.create_foreign_key("fk_age", "users", "orgs", ["age"], ["id"], '
                          'postgresql_not_valid=True)')
    new = fix(root, "S013", "Create index")
    assert ('    with op.get_context().autocommit_block():\n'
            '        op.create_index("ix_users_age", "users", ["age"], postgresql_concurrently=True)\n') in new
    assert check(root) == []
    from migration_lsp.checks.safety import check_safety

    (state,) = Engine([root]).snapshot().environments
    assert check_safety(state.graph.by_id["bbbb"], state.replay.revision("bbbb"), "postgresql", "m") == []


def test_s013_no_fix_when_the_index_name_is_taken(tmp_path):
    base = BASE + '\nop.create_table("ix_users_age", sa.Column("id", sa.Integer(), primary_key=True))\n'
    root = make(tmp_path, 'op.create_foreign_key("fk_age", "users", "orgs", ["age"], ["id"], '
                          'postgresql_not_valid=True)', base=base)
    assert titles(root, "S013") == ["Ignore S013 on this line"]
