"""The interpreter that runs upgrade() statically (evaluate.Interpreter): what it follows,
what it refuses, and the bounds that keep it from running anything or running long."""

from __future__ import annotations

import textwrap
from pathlib import Path

import sqlalchemy as sa

from migration_lsp.evaluate import Opaque
from migration_lsp.interpret import MAX_CALL_DEPTH, MAX_STEPS, evaluate
from migration_lsp.scripts import parse_script

from conftest import migration_text


def run(tmp_path: Path, body: str, prelude: str = "", dialect: str | None = None):
    text = migration_text("a1", None, upgrades=textwrap.dedent(body).strip("\n").replace("\n", "\n    "))
    text = text.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\n" + textwrap.dedent(prelude), 1)
    path = tmp_path / "a1_x.py"
    path.write_text(text, encoding="utf-8")
    script = parse_script(path, text)
    assert script.upgrade is not None, script.syntax_error
    return evaluate(script, script.upgrade, dialect)


def summary(evaluation) -> list[tuple]:
    return [(e.call.name, e.table, e.conditional) for e in evaluation.ops]


def test_nothing_of_the_project_ever_runs(tmp_path):
    sentinel = tmp_path / "RAN"
    evaluation = run(tmp_path, f"""
        helper()
        name = __import__("os").system("touch {sentinel}-import")
        eval("open({str(sentinel)!r}, 'w')")
        getattr(op, "add_column")("t", sa.Column("x", sa.Integer()))
        op.add_column(open({str(sentinel)!r} + "-arg", "w").name, sa.Column("y", sa.Integer()))
        type("X", (), {{}})
        sa.util.langhelpers.os.system("touch {sentinel}-via-sa")
        "{{0.__class__}}".format(op)
    """, prelude=f"""
        import os


        def helper():
            os.system("touch {sentinel}-helper")
            open({str(sentinel)!r} + "-open", "w").write("x")
            return exec("x = 1")
    """)
    assert list(tmp_path.glob("RAN*")) == []
    assert [(name, table) for name, table, _ in summary(evaluation)] == [("add_column", None)]
    assert evaluation.ops[0].op is None  # the table name is opaque


def test_recursion_is_bounded(tmp_path):
    evaluation = run(tmp_path, "add(0)", prelude="""
        def add(n):
            op.add_column("t", sa.Column(f"c{n}", sa.Integer()))
            add(n + 1)
    """)
    assert len(evaluation.ops) == MAX_CALL_DEPTH
    assert [e.op.column.name for e in evaluation.ops] == [f"c{n}" for n in range(MAX_CALL_DEPTH)]


def test_loops_are_bounded_and_huge_values_are_never_built(tmp_path):
    evaluation = run(tmp_path, """
        for i in range(10 ** 12):
            op.add_column("big", sa.Column("x", sa.Integer()))
        while True:
            op.add_column("forever", sa.Column("x", sa.Integer()))
        bomb = "x" * 10 ** 12
        more = [0] * 10 ** 12
        op.add_column("t", sa.Column(bomb, sa.Integer()))
    """)
    assert summary(evaluation)[:2] == [("add_column", "big", True), ("add_column", "forever", True)]
    assert evaluation.ops[2].op is None  # the column name is opaque, never a terabyte


def test_the_step_budget_stops_a_long_run_and_says_so(tmp_path):
    evaluation = run(tmp_path, """
        for a in range(1000):
            for b in range(1000):
                x = a + b
        op.add_column("t", sa.Column("late", sa.Integer()))
    """)
    assert evaluation.ops == ()
    (call,) = evaluation.calls
    assert call.sql is None and call.conditional and not call.tables  # the rest is unknown
    assert MAX_STEPS < 1000 * 1000


def test_constants_containers_and_comprehensions(tmp_path):
    evaluation = run(tmp_path, """
        columns = [sa.Column("id", sa.Integer(), primary_key=True)]
        columns.append(sa.Column("name", sa.String(NAME_LENGTH)))
        columns += [sa.Column(f"{p}_at", sa.DateTime()) for p in PHASES if p != "skip"]
        op.create_table(TABLES["users"], *columns, **OPTIONS)
        [op.add_column("posts", sa.Column(c.lower(), sa.Integer())) for c in ("A", "B")]
        for i, name in enumerate(["x", "y"]):
            if i == 1:
                break
            op.add_column("posts", sa.Column(name, sa.Integer()))
    """, prelude="""
        NAME_LENGTH = 10 * 5
        PHASES = ("created", "skip", "updated")
        TABLES = {"users": "user" + "s"}
        OPTIONS = dict(comment="people")
    """)
    assert summary(evaluation) == [("create_table", "users", False), ("add_column", "posts", False),
                                   ("add_column", "posts", False), ("add_column", "posts", False)]
    table = evaluation.ops[0].op
    assert [c.name for c in table.columns] == ["id", "name", "created_at", "updated_at"]
    assert table.columns[1].type.length == 50 and table.comment == "people"
    assert [e.op.column.name for e in evaluation.ops[1:]] == ["a", "b", "x"]


def test_the_dialect_decides_its_ifs(tmp_path):
    body = """
        bind = op.get_bind()
        if bind.dialect.name == "postgresql":
            op.add_column("t", sa.Column("pg", sa.Integer()))
        elif context.get_context().dialect.name in ("mysql", "mariadb"):
            op.add_column("t", sa.Column("my", sa.Integer()))
        elif not context.is_offline_mode() and bind.engine.name.startswith("sqlite"):
            op.add_column("t", sa.Column("lite", sa.Integer()))
    """
    prelude = "from alembic import context\n"
    for dialect, column in (("postgresql", "pg"), ("mysql", "my"), ("sqlite", "lite"), ("postgres", "pg")):
        evaluation = run(tmp_path, body, prelude, dialect)
        assert [(e.op.column.name, e.conditional) for e in evaluation.ops] == [(column, False)]
    unknown = run(tmp_path, body, prelude, None)  # no dialect: every branch may run
    assert [(e.op.column.name, e.conditional) for e in unknown.ops] == [
        ("pg", True), ("my", True), ("lite", True)]


def test_a_name_bound_in_a_branch_that_may_not_run_is_unknown_after_it(tmp_path):
    evaluation = run(tmp_path, """
        table = "a"
        if sa.inspect(op.get_bind()).has_table("x"):
            table = "b"
        op.add_column(table, sa.Column("c", sa.Integer()))
        items = ["p"]
        items.frobnicate()
        op.add_column(items[0], sa.Column("c", sa.Integer()))
    """)
    assert [(e.op, e.table) for e in evaluation.ops] == [(None, None), (None, None)]


def test_try_body_runs_and_except_is_an_alternative(tmp_path):
    evaluation = run(tmp_path, """
        try:
            op.add_column("t", sa.Column("x", sa.Integer()))
        except Exception:
            op.add_column("u", sa.Column("x", sa.Integer()))
        try:
            op.add_column("v", sa.Column("x", sa.Integer()))
        except Exception:
            session.rollback()
            raise
        op.add_column("w", sa.Column("x", sa.Integer()))
    """)
    assert summary(evaluation) == [("add_column", "t", False), ("add_column", "u", True),
                                   ("add_column", "v", False), ("add_column", "w", False)]


def test_sql_through_a_connection_and_op_handed_to_a_stranger(tmp_path):
    evaluation = run(tmp_path, """
        conn = op.get_bind()
        conn.execute(sa.text("ALTER TABLE t ADD COLUMN x INTEGER"))
        conn.exec_driver_sql(QUERY)
        rebuild(op, "things")
        rebuild(op)
        log.info("done %s", 1)
    """, prelude="""
        from myproject.helpers import rebuild, log
        QUERY = "UPDATE t SET x = 1"
    """)
    assert [(c.sql, c.tables) for c in evaluation.calls] == [
        ("ALTER TABLE t ADD COLUMN x INTEGER", ()), ("UPDATE t SET x = 1", ()), (None, ("things",)), (None, ())]


def test_opaque_values_print_their_source(tmp_path):
    assert Opaque(sa.Column).source  # a plain object too (its repr is not needed)
    node = __import__("ast").parse("f(x)", mode="eval").body
    assert Opaque(node).source == "f(x)" and Opaque("s").source == "s"


def test_a_create_table_with_a_column_we_cannot_read_names_that_column(tmp_path):
    """A column argument we cannot read (`sa.ForeignKey(target_of(message))`): the column is
    opaque, so the table is created without it, and the op names it (the replay leaves that
    column out of the comparison, test_drift_partly.py); an unreadable argument that is not a
    literal-named column makes the op conditional (its table uncertain). phoenix's
    `sa.Computed(message["id"].as_string())` is no such argument: Alembic never compares a
    generated column's expression, so it is kept as its source text and the table compared."""
    evaluation = run(tmp_path, """
        message = sa.Column("message", sa.JSON(), nullable=False)
        op.create_table("m", sa.Column("id", sa.Integer(), primary_key=True), message,
                        sa.Column("message_id", sa.String, sa.ForeignKey(target_of(message))))
        op.create_table("n", sa.Column("id", sa.Integer(), primary_key=True), message)
        op.create_table("p", sa.Column("id", sa.Integer(), primary_key=True), message,
                        sa.Column("message_id", sa.String, sa.Computed(message["id"].as_string(), persisted=True)))
        op.create_table("o", sa.Column("id", sa.Integer(), primary_key=True), make_column())
    """)
    assert summary(evaluation) == [("create_table", "m", False), ("create_table", "n", False),
                                   ("create_table", "p", False), ("create_table", "o", True)]
    assert [ev.unread_columns for ev in evaluation.ops] == [("message_id",), (), (), ()]
    computed = evaluation.ops[2].op.columns[-1].computed
    assert computed.sqltext.text == "message['id'].as_string()" and computed.persisted is True


def test_a_break_leaves_only_its_loop(tmp_path):
    """prefect 1678f2fb8b33: `while True: ... if result.rowcount <= n: break` made every op
    after the loop conditional, as if the break could leave upgrade(). A break under an
    undecidable `if` makes the rest of its loop conditional, not what follows the loop; a
    `return` there still makes the rest of the function conditional."""
    evaluation = run(tmp_path, """
        bind = op.get_bind()
        for name in ["a", "b"]:
            while True:
                result = bind.execute(sa.text("UPDATE t SET x = 1"))
                if result.rowcount <= 0:
                    break
                op.add_column("in_loop", sa.Column("x", sa.Integer()))
            op.add_column("after_while", sa.Column(name, sa.Integer()))
            if bind.execute(sa.text("SELECT 1")).scalar():
                break
            op.add_column("after_break", sa.Column(name, sa.Integer()))
        op.add_column("after_for", sa.Column("y", sa.Integer()))
        if bind.execute(sa.text("SELECT 1")).scalar():
            return
        op.add_column("after_return", sa.Column("z", sa.Integer()))
    """)
    assert summary(evaluation) == [
        ("add_column", "in_loop", True), ("add_column", "after_while", False), ("add_column", "after_break", True),
        ("add_column", "in_loop", True), ("add_column", "after_while", True), ("add_column", "after_break", True),
        ("add_column", "after_for", False), ("add_column", "after_return", True)]
