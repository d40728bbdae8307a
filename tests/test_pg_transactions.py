"""S015, S016, S018 and the lock rules on raw SQL (pg_transactions), on small projects on disk.

Every project goes through the real engine (discovery -> parse -> graph -> replay -> rules),
so what is asserted is what `migration-lsp check` and the editor report. Fixes are applied
to the file's text, the file is written back and the project is checked again.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from conftest import alembic_project, line_of, migration_text, write_project
from migration_lsp import pglocks
from migration_lsp.checks.env_py import env_py_facts
from migration_lsp.core import Diagnostic, Severity, Span
from migration_lsp.engine import Engine
from migration_lsp.features.txn_fixes import txn_fixes
from migration_lsp.rules import RULES
from pglocks_examples import example_ops, example_state

PG = "postgresql+psycopg2://user:pass@localhost/app"
SQLITE = "sqlite:///app.db"

BASE = """
op.create_table(
    "users",
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("email", sa.String(255), nullable=False),
    sa.Column("name", sa.String(100), nullable=True),
    sa.Column("n", sa.Integer(), nullable=True),
)
op.create_index("ix_users_name", "users", ["name"])
op.create_table("orgs", sa.Column("id", sa.Integer(), primary_key=True))
"""

ENV_PY = '''\
from alembic import context
from sqlalchemy import engine_from_config, pool

target_metadata = None


def run_migrations_online():
    connectable = engine_from_config(context.config.get_section(context.config.config_ini_section),
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata{extra}
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
'''

OURS = ("S002", "S005", "S006", "S007", "S008", "S009", "S010", "S011", "S015", "S016", "S017", "S018")


def ini(url: str) -> str:
    return f"[alembic]\nscript_location = %(here)s/migrations\npath_separator = os\nsqlalchemy.url = {url}\n"


def body(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ").lstrip()


def make(root: Path, upgrade: str, url: str = PG, env_extra: str = "", more: dict[str, str] | None = None) -> Path:
    revisions = {
        "aaaa_base.py": migration_text("aaaa", upgrades=body(BASE)),
        "bbbb_change.py": migration_text("bbbb", "aaaa", upgrades=body(upgrade)),
    }
    alembic_project(root, revisions, ini=ini(url))
    write_project(root, {"migrations/env.py": ENV_PY.format(extra=env_extra), **(more or {})})
    return root


def path_of(root: Path) -> Path:
    return root / "migrations" / "versions" / "bbbb_change.py"


def found(root: Path, codes=OURS, path: Path | None = None) -> list[Diagnostic]:
    """The engine's filtered findings (suppression comments applied) of our codes."""
    (state,) = Engine([root], cache=False).snapshot().environments
    return [d for d in state.diagnostics if d.code in codes and (path is None or d.path == path)]


def at(diags) -> list[tuple[str, int]]:
    return sorted((d.code, d.span.line) for d in diags)


def line(root: Path, needle: str, nth: int = 0) -> int:
    return line_of(path_of(root).read_text(), needle, nth)


def apply(text: str, edits: list[tuple[Span, str]]) -> str:
    lines = text.split("\n")
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)
    for span, new in sorted(edits, key=lambda e: (e[0].line, e[0].col), reverse=True):
        text = text[: starts[span.line] + span.col] + new + text[starts[span.end_line] + span.end_col:]
    return text


def apply_fix(root: Path, d: Diagnostic, title_part: str) -> str:
    (state,) = Engine([root], cache=False).snapshot().environments
    script = state.script_by_path[d.path]
    fixes = [f for f in txn_fixes(d, script) if title_part in f[0]]
    assert fixes, f"no fix with {title_part!r} for {d}"
    new = apply(script.text, fixes[0][1])
    ast.parse(new)
    d.path.write_text(new)
    return new


def test_codes_registered():
    assert {c: RULES[c].severity.label for c in ("S015", "S016", "S018")} == {
        "S015": "warning", "S016": "warning", "S018": "info"}


# --------------------------------------------------------------------------- S015


def test_s015_access_exclusive_without_lock_timeout(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))')
    (d,) = found(root, ("S015",))
    assert d.severity is Severity.WARNING
    assert d.span.line == line(root, '"age"') and d.span.col == 4
    assert "ACCESS EXCLUSIVE" in d.message and "'users'" in d.message


def test_the_pg_families_render_each_op_once(tmp_path, monkeypatch):
    """pg_ddl (S007, S008) and pg_transactions (S015) both ask the lock model about the same
    alter_column ops: Alembic renders each of them once (a cold check of a long history
    rendered every such op twice)."""
    rendered = []
    real = pglocks._render

    def counting(op_, dialect, version):
        rendered.append(op_)
        return real(op_, dialect, version)

    monkeypatch.setattr(pglocks, "_render", counting)
    root = make(tmp_path, """
        op.alter_column("users", "n", nullable=False)
        op.alter_column("users", "name", type_=sa.Integer(), existing_type=sa.String(100))
    """)
    assert at(found(root, ("S007", "S008", "S015"))) == [
        ("S007", line(root, '"n"')), ("S008", line(root, '"name"')), ("S015", line(root, '"n"'))]
    assert len(rendered) == len({id(o) for o in rendered}) == 2


def test_s015_one_finding_per_revision_on_the_first_exclusive_op(tmp_path):
    root = make(tmp_path, """
        op.create_index("ix_users_n", "users", ["n"])
        op.add_column("users", sa.Column("age", sa.Integer()))
        op.drop_column("users", "name")
    """)
    assert at(found(root, ("S015",))) == [("S015", line(root, '"age"'))]  # CREATE INDEX takes SHARE


def test_s015_fix_sets_lock_timeout_at_the_top_and_recheck_is_clean(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))')
    (d,) = found(root, ("S015",))
    new = apply_fix(root, d, "lock_timeout")
    upgrade = new[new.index("def upgrade"):new.index("def downgrade")]
    body_lines = [ln for ln in upgrade.splitlines()[1:] if ln.strip() and not ln.strip().startswith("#")]
    # after the docstring, before the first op
    assert body_lines[:3] == ['    """Upgrade schema."""', "    op.execute(\"SET lock_timeout = '5s'\")",
                              '    op.add_column("users", sa.Column("age", sa.Integer()))']
    assert found(root, ("S015",)) == []


@pytest.mark.parametrize("setting", [
    "op.execute(\"SET lock_timeout = '2s'\")",
    "op.execute(sa.text(\"SET LOCAL lock_timeout TO 3000\"))",
    "op.get_bind().execute(sa.text(\"SELECT set_config('lock_timeout', '4s', true)\"))",
])
def test_s015_silent_when_the_revision_sets_lock_timeout_first(tmp_path, setting):
    root = make(tmp_path, f'{setting}\nop.add_column("users", sa.Column("age", sa.Integer()))')
    assert found(root, ("S015",)) == []


@pytest.mark.parametrize("setting", ["op.execute(\"SET lock_timeout = 0\")", "op.execute(\"RESET lock_timeout\")"])
def test_s015_a_zero_or_reset_timeout_does_not_count(tmp_path, setting):
    root = make(tmp_path, f'{setting}\nop.add_column("users", sa.Column("age", sa.Integer()))')
    assert len(found(root, ("S015",))) == 1


def test_s015_a_timeout_set_after_the_lock_is_too_late(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))\n'
                          'op.execute("SET lock_timeout = \'2s\'")')
    assert len(found(root, ("S015",))) == 1


def test_s015_silent_when_env_py_sets_lock_timeout(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))')
    env = root / "migrations" / "env.py"
    env.write_text(env.read_text().replace(
        "with context.begin_transaction():",
        "connection.exec_driver_sql(\"SET lock_timeout = '5s'\")\n        with context.begin_transaction():"))
    assert found(root, ("S015",)) == []


def test_s015_a_comment_in_env_py_is_not_a_setting(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))')
    env = root / "migrations" / "env.py"
    env.write_text("# TODO: set lock_timeout one day\n" + env.read_text())
    assert len(found(root, ("S015",))) == 1


def test_s015_not_on_a_table_created_in_the_same_revision(tmp_path):
    root = make(tmp_path, """
        op.create_table("audit", sa.Column("id", sa.Integer(), primary_key=True))
        op.add_column("audit", sa.Column("at", sa.DateTime()))
        op.create_index("ix_audit_at", "audit", ["at"])
        op.execute("ALTER TABLE audit ADD COLUMN who text")
    """)
    assert found(root) == []  # not even S018: nobody waits for a new table


def test_s015_suppression_comment(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))  # migration-lsp: ignore[S015]')
    assert found(root, ("S015",)) == []


def test_s015_raw_sql_alter(tmp_path):
    root = make(tmp_path, 'op.execute("ALTER TABLE users ADD COLUMN age integer")')
    (d,) = found(root, ("S015",))
    text = path_of(root).read_text()
    assert d.span.line == line(root, "ALTER TABLE") and d.span.col == text.splitlines()[d.span.line].index("ALTER")


def test_s015_not_for_other_dialects(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))', url=SQLITE)
    assert found(root) == []


# --------------------------------------------------------------------------- S016


def test_s016_backfill_after_ddl_on_the_same_table(tmp_path):
    root = make(tmp_path, """
        op.add_column("users", sa.Column("age", sa.Integer()))
        op.execute("UPDATE users SET age = 0")
    """)
    (d,) = found(root, ("S016",))
    assert d.severity is Severity.WARNING
    assert d.span.line == line(root, "UPDATE users")
    assert d.span.col == path_of(root).read_text().splitlines()[d.span.line].index("UPDATE")
    assert "add_column" in d.message and f"line {line(root, 'op.add_column') + 1}" in d.message


def test_s016_bulk_insert_after_an_index_build(tmp_path):
    root = make(tmp_path, """
        op.create_index("ix_users_n", "users", ["n"])
        op.bulk_insert(sa.table("users", sa.column("id", sa.Integer())), [{"id": 1}])
    """)
    assert at(found(root, ("S016",))) == [("S016", line(root, "op.bulk_insert"))]


def test_s016_only_a_backfill_that_runs_under_the_lock(tmp_path):
    root = make(tmp_path, """
        op.execute("UPDATE users SET n = 0 WHERE n IS NULL")
        op.alter_column("users", "n", existing_type=sa.Integer(), nullable=False)
        op.add_column("orgs", sa.Column("label", sa.Text()))
        op.execute("UPDATE users SET name = 'x' WHERE name IS NULL")
    """)
    # the first UPDATE runs before any DDL; the second while alter_column's ACCESS EXCLUSIVE is held
    assert at(found(root, ("S016",))) == [("S016", line(root, "SET name"))]


def test_s016_not_on_a_new_table_nor_across_autocommit(tmp_path):
    root = make(tmp_path, """
        op.create_table("kinds", sa.Column("id", sa.Integer(), primary_key=True))
        op.bulk_insert(sa.table("kinds", sa.column("id", sa.Integer())), [{"id": 1}])
        op.add_column("users", sa.Column("age", sa.Integer()))
        with op.get_context().autocommit_block():
            op.execute("UPDATE users SET age = 0")
    """)
    assert found(root, ("S016",)) == []


def test_s016_suppression_comment(tmp_path):
    root = make(tmp_path, """
        op.add_column("users", sa.Column("age", sa.Integer()))
        op.execute("UPDATE users SET age = 0")  # migration-lsp: ignore[S016]
    """)
    assert found(root, ("S016",)) == []


# --------------------------------------------------------------------------- S018


def test_s018_once_on_env_py_when_transaction_per_migration_is_off(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))')
    write_project(root, {"migrations/versions/cccc_more.py": migration_text(
        "cccc", "bbbb", upgrades='op.drop_column("users", "name")')})
    env = root / "migrations" / "env.py"
    (d,) = found(root, ("S018",))
    assert d.path == env and d.severity is Severity.INFO
    assert d.span.line == line_of(env.read_text(), "context.configure(")
    assert "transaction_per_migration" in d.message


def test_s018_silent_with_transaction_per_migration(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))',
                env_extra=", transaction_per_migration=True")
    assert found(root, ("S018",)) == []
    assert len(found(root, ("S015",))) == 1  # the lock_timeout rule is not about that


def test_env_py_facts_reads_code_not_comments():
    facts = env_py_facts(Path("env.py"), "# transaction_per_migration=True\n# lock_timeout\nimport app\n"
                         "from app.db import Base, engine\ntarget_metadata = Base.metadata\n")
    assert (facts.per_migration, facts.lock_timeout, facts.models) == (False, False, ("app.db.Base",))
    facts = env_py_facts(Path("env.py"), "import app.models as m\ntarget_metadata = [m.Base.metadata]\n")
    assert facts.models == ("app.models",)
    facts = env_py_facts(Path("env.py"), "context.configure(transaction_per_migration=flag)\n")
    assert facts.per_migration is None  # not a literal: not judged


# --------------------------------------------------------------------------- raw SQL


RAW = [
    ("S002", "CREATE INDEX ix_users_n ON users (n)", "CREATE INDEX CONCURRENTLY ix_users_n ON users (n)"),
    ("S005", "DROP TABLE orgs", None),
    ("S006", "ALTER TABLE users ADD CONSTRAINT fk_org FOREIGN KEY (n) REFERENCES orgs (id)",
     "ALTER TABLE users ADD CONSTRAINT fk_org FOREIGN KEY (n) REFERENCES orgs (id) NOT VALID"),
    ("S006", "ALTER TABLE users ADD CONSTRAINT ck_n CHECK (n > 0)",
     "ALTER TABLE users ADD CONSTRAINT ck_n CHECK (n > 0) NOT VALID"),
    ("S007", "ALTER TABLE users ALTER COLUMN n SET NOT NULL", "ALTER TABLE users ALTER COLUMN n DROP NOT NULL"),
    ("S008", "ALTER TABLE users ALTER COLUMN n TYPE bigint", "ALTER TABLE users ALTER COLUMN name TYPE text"),
    ("S009", "ALTER TABLE users ADD CONSTRAINT uq_email UNIQUE (email)",
     "ALTER TABLE users ADD CONSTRAINT uq_name UNIQUE USING INDEX ix_users_name"),
    ("S010", "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid()",
     "ALTER TABLE users ADD COLUMN token uuid DEFAULT '00000000-0000-0000-0000-000000000000'"),
    ("S010", "ALTER TABLE users ADD COLUMN seq integer GENERATED ALWAYS AS IDENTITY", None),
    ("S011", "DROP INDEX ix_users_name", None),
    ("S017", "ALTER TABLE users RENAME COLUMN name TO full_name", None),
    ("S017", "ALTER TABLE orgs RENAME TO organisations", None),
]


@pytest.mark.parametrize("code,sql,safe", RAW, ids=[f"{c}-{n}" for n, (c, _, _) in enumerate(RAW)])
def test_raw_sql_goes_through_the_op_rules(tmp_path, code, sql, safe):
    root = make(tmp_path, f'op.execute("SET lock_timeout = \'5s\'")\nop.execute("{sql}")')
    got = [d for d in found(root, (code,))]
    assert len(got) == 1, got
    d = got[0]
    assert d.span.line == line(root, sql[:20])
    text = path_of(root).read_text().splitlines()[d.span.line]
    assert (d.span.col, d.span.end_col) == (text.index(sql), text.index(sql) + len(sql))
    assert d.data["raw_sql"] is True
    if safe is not None:
        (tmp_path / "safe").mkdir()
        root = make(tmp_path / "safe", f'op.execute("SET lock_timeout = \'5s\'")\nop.execute("{safe}")')
        assert found(root, (code,)) == []


@pytest.mark.parametrize("code,sql,_safe", [r for r in RAW if r[0] not in ("S011",)],
                         ids=[f"{c}-{n}" for n, (c, _, _) in enumerate(r for r in RAW if r[0] != "S011")])
def test_raw_sql_not_on_a_table_created_in_the_same_revision(tmp_path, code, sql, _safe):
    renamed = sql.replace(" users", " fresh").replace(" orgs", " fresh2")
    root = make(tmp_path, f"""
        op.create_table("fresh", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("n", sa.Integer()),
                        sa.Column("name", sa.String(10)), sa.Column("email", sa.String(10)))
        op.execute("CREATE TABLE fresh2 (id integer PRIMARY KEY)")
        op.execute("{renamed}")
    """)
    assert found(root, (code, "S015")) == []


def test_raw_sql_location_inside_a_multiline_string(tmp_path):
    root = make(tmp_path, '''
        op.execute("SET lock_timeout = '5s'")
        op.execute(sa.text("""
            UPDATE users SET n = 0 WHERE n IS NULL;
            CREATE INDEX ix_users_n
                ON users (n);
        """))
    ''')
    (d,) = found(root, ("S002",))
    text = path_of(root).read_text()
    lines = text.splitlines()
    first = line(root, "CREATE INDEX ix_users_n")
    assert (d.span.line, d.span.col) == (first, lines[first].index("CREATE"))
    last = line(root, "ON users (n);")
    assert (d.span.end_line, d.span.end_col) == (last, lines[last].index(";"))


def test_raw_sql_location_across_implicit_concatenation(tmp_path):
    root = make(tmp_path, '''
        op.execute("SET lock_timeout = '5s'")
        op.execute(
            "UPDATE users SET n = 0; "
            "CREATE INDEX ix_users_n ON users (n)"
        )
    ''')
    (d,) = found(root, ("S002",))
    lines = path_of(root).read_text().splitlines()
    first = line(root, "CREATE INDEX")
    assert (d.span.line, d.span.col) == (first, lines[first].index("CREATE"))
    assert (d.span.end_line, d.span.end_col) == (first, lines[first].index("(n)") + 3)


def test_raw_sql_in_conn_execute(tmp_path):
    root = make(tmp_path, '''
        op.execute("SET lock_timeout = '5s'")
        conn = op.get_bind()
        conn.execute(sa.text("DROP INDEX ix_users_name"))
    ''')
    assert at(found(root, ("S011",))) == [("S011", line(root, "DROP INDEX"))]


def test_raw_sql_suppression_on_the_last_line_of_the_call_and_its_fix(tmp_path):
    root = make(tmp_path, '''
        op.execute("SET lock_timeout = '5s'")
        op.execute("""
            CREATE INDEX ix_users_n ON users (n)
        """)
    ''')
    (d,) = found(root, ("S002",))
    new = apply_fix(root, d, "Ignore S002")
    assert '""")  # migration-lsp: ignore[S002]' in new
    assert "CREATE INDEX ix_users_n ON users (n)\n" in new  # the SQL is untouched
    assert found(root, ("S002",)) == []


def test_raw_sql_unparsable_or_dynamic_sql_is_not_judged(tmp_path):
    root = make(tmp_path, '''
        op.execute("SET lock_timeout = '5s'")
        op.execute("CREATE INDEX oops ON")
        op.execute(f"CREATE INDEX ix_users_n ON {'users'} (n)")
    ''')
    assert found(root, ("S002",)) == []


def test_raw_sql_is_postgresql_only(tmp_path):
    root = make(tmp_path, 'op.execute("CREATE INDEX ix_users_n ON users (n)")', url=SQLITE)
    assert found(root) == []


# --------------------------------------------------------------------------- lock inlay hints


def hints(root: Path, settings: str = ""):
    from lsprotocol import types

    from migration_lsp.features import Locator
    from migration_lsp.features.hints import inlay_hints

    if settings:
        write_project(root, {"pyproject.toml": f"[tool.migration-lsp]\n{settings}\n"})
    snapshot = Engine([root], cache=False).snapshot()
    visible = types.Range(types.Position(0, 0), types.Position(10_000, 0))
    return inlay_hints(snapshot, path_of(root), visible, Locator(snapshot))


def test_lock_hints_at_the_end_of_each_op(tmp_path):
    root = make(tmp_path, """
        op.add_column("users", sa.Column("age", sa.Integer()))
        op.create_index(
            "ix_users_n", "users", ["n"],
        )
        op.alter_column("users", "n", type_=sa.BigInteger())
        op.execute("UPDATE users SET n = 0")
    """)
    text = path_of(root).read_text().splitlines()
    got = {(h.position.line, h.position.character): h.label for h in hints(root)
           if "on " in str(h.label)}
    add, index_end, alter, update = (line(root, '"age"'), line(root, '["n"],') + 1,
                                     line(root, "BigInteger"), line(root, "UPDATE"))
    assert text[index_end] == "    )"
    assert got == {
        (add, len(text[add])): "ACCESS EXCLUSIVE on users",
        (index_end, len(text[index_end])): "SHARE on users, scans",
        (alter, len(text[alter])): "ACCESS EXCLUSIVE on users, rewrites",
        (update, len(text[update])): "ROW EXCLUSIVE on users",
    }


def test_lock_hints_setting_and_dialect(tmp_path):
    root = make(tmp_path, 'op.add_column("users", sa.Column("age", sa.Integer()))')
    assert [h for h in hints(root) if "ACCESS EXCLUSIVE" in str(h.label)]
    assert not [h for h in hints(root, "lock-hints = false") if "ACCESS EXCLUSIVE" in str(h.label)]
    assert [h for h in hints(root, "lock-hints = true") if "ACCESS EXCLUSIVE" in str(h.label)]
    lite = make(tmp_path / "lite", 'op.add_column("users", sa.Column("age", sa.Integer()))', url=SQLITE)
    labels = [str(h.label) for h in hints(lite)]
    assert labels and not [label for label in labels if "EXCLUSIVE" in label]  # the revision-id hint only


def test_the_lock_shortcut_agrees_with_rendering():
    """S015 knows some ops' lock without rendering them (every form of the op takes the same
    one): for every example op of the lock model of those kinds, what rendering + parsing
    says is among the locks the shortcut assumes."""
    from migration_lsp.checks.pg_transactions import _LOCK_BY_OP, _form_locks

    checked = 0
    for form in pglocks.FORMS.values():
        for op in example_ops(form):
            prefix = _LOCK_BY_OP.get(type(op))
            if prefix is None:
                continue
            effects = pglocks.op_effects(op, example_state())
            table = next(r for e in effects for r in e.locks if r.role == "table")
            assert table.lock in _form_locks(prefix, pglocks.DEFAULT_VERSION), (form.name, op)
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("kind", ["reindex", "create", "newlines", "spaces", "update"])
def test_raw_sql_rules_do_bounded_work_per_position(kind, monkeypatch, tmp_path):
    """200 KB of adversarial SQL in op.execute / conn.execute, through both families: every
    pattern of theirs does bounded work at each position of what it is given (as
    test_linear_inputs shows for the other stages)."""
    import re as re_module

    from test_linear_inputs import ADVERSARIAL_SQL, BOUNDED_WIDTH, SIZE, Recorded, max_width

    from migration_lsp.checks import pg_transactions, portable
    from migration_lsp.checks.pg_transactions import check_pg_transactions
    from migration_lsp.checks.portable import check_portable
    from migration_lsp.graph import RevisionGraph
    from migration_lsp.replay import Replay
    from migration_lsp.scripts import parse_script

    calls: list = []
    for module in (pg_transactions, portable):
        for name, value in list(vars(module).items()):
            if isinstance(value, re_module.Pattern):
                monkeypatch.setattr(module, name, Recorded(value, calls, module.__name__))
    sql = ADVERSARIAL_SQL[kind](SIZE)
    text = migration_text("a1", upgrades=f"op.execute({sql!r})\n    x = op.get_bind().execute(sa.text({sql!r}))"
                                         "\n    x.fetchall()")
    path = tmp_path / "a1_x.py"
    path.write_text(text, encoding="utf-8")
    script = parse_script(path, text)
    result = Replay(RevisionGraph([script])).revision("a1")
    check_pg_transactions(script, result, "postgresql", "env")
    found = check_portable(script, result, "postgresql", "env")
    assert [d.code for d in found] == ["S019"]
    assert calls, "no pattern ran: the test proves nothing"
    for pattern, size, _, _ in calls:
        assert size <= 4096 or max_width(pattern) <= BOUNDED_WIDTH, f"{pattern.pattern!r} ran on {size} characters"


# --------------------------------------------------------------------------- front ends


def test_code_actions_route_raw_sql_findings_to_the_string_safe_fixes(tmp_path):
    """A raw-SQL S002 must not get safety_fixes' ignore comment on its own line (inside the
    string it would become SQL): the LSP actions offer the one after the call instead, and
    S015's fix is offered as the preferred action."""
    from migration_lsp.features import Locator
    from migration_lsp.features.actions import EditSupport, code_actions

    root = make(tmp_path, '''
        op.add_column("users", sa.Column("age", sa.Integer()))
        op.execute("""
            CREATE INDEX ix_users_n ON users (n)
        """)
    ''')
    snapshot = Engine([root], cache=False).snapshot()
    support = EditSupport(document_changes=True, create=True, rename=True)
    index_line = line(root, "CREATE INDEX")
    actions = code_actions(snapshot, path_of(root), Span.point(index_line, 10), None, Locator(snapshot), support)
    ignore = next(a for a in actions if a.title == "Ignore S002 on this line")
    (edit,) = [e for change in ignore.edit.document_changes for e in change.edits]
    assert edit.range.start.line == line(root, '""")') and edit.new_text == "  # migration-lsp: ignore[S002]"
    add_line = line(root, '"age"')
    actions = code_actions(snapshot, path_of(root), Span.point(add_line, 6), None, Locator(snapshot), support)
    fix = next(a for a in actions if a.title == "Set lock_timeout at the top of upgrade()")
    assert fix.is_preferred


def test_lsp_setting_names():
    from migration_lsp.server import _settings

    assert _settings({"lockHints": False, "postgresVersion": 14}) == {"lock_hints": False, "postgres_version": 14}


def test_findings_on_env_py_and_in_strings_survive_the_persistent_cache(tmp_path):
    """A revision's S018 sits on env.py and a raw-SQL finding carries where its suppression
    goes: a second engine reads both from the on-disk cache, computing nothing."""
    root = make(tmp_path, '''
        op.add_column("users", sa.Column("age", sa.Integer()))
        op.execute("""
            CREATE INDEX ix_users_n ON users (n)
        """)
    ''')
    first = Engine([root])
    (state,) = first.snapshot().environments
    expected = sorted((d.code, str(d.path), d.span) for d in state.diagnostics if d.code in OURS)
    assert {"S018", "S015", "S002"} <= {code for code, _, _ in expected}
    first.save_cache()
    second = Engine([root])
    (again,) = second.snapshot().environments
    assert second.computed_revisions == 0
    assert sorted((d.code, str(d.path), d.span) for d in again.diagnostics if d.code in OURS) == expected
    (raw,) = [d for d in again.diagnostics if d.code == "S002"]
    assert raw.data["raw_sql"] is True and raw.data["call_lines"] == [line(root, "op.execute("), line(root, '""")')]
