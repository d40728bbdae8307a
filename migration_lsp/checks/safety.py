"""Rule family S: operations that are dangerous to run against a live database (S001–S005).

All rules look at upgrade() only, op by op, in source order, along the walk of `walk.py`:
a table created earlier in the same revision is empty (filling or indexing it is harmless),
and the schema is replayed up to the exact point of the op ("is this column already NOT
NULL", "is it indexed").

S002/S003 only speak for PostgreSQL and S004 only for SQLite; with an unknown dialect they
stay silent. S001 and S005 do not depend on the dialect.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops

from ..core import Diagnostic, Span
from ..evaluate import EvaluatedOp
from ..rawsql import squeeze_sql
from ..replay import RevisionSchema
from ..schema import constraint_columns
from ..scripts import MigrationScript, OtherCall, sql_literal
from .walk import (
    FunctionTree,
    Target,
    UpgradeWalk,
    column_argument,
    keyword,
    keyword_string,
    keyword_value,
    literal_string,
    op_target,
    walk_upgrade,
)

# SQLite cannot ALTER constraints: Alembic raises NotImplementedError outside batch mode
SQLITE_CONSTRAINT_OPS = frozenset({
    "create_unique_constraint", "create_foreign_key", "create_check_constraint",
    "create_primary_key", "drop_constraint",
})
# alter_column keywords that make SQLite run `ALTER TABLE .. ALTER COLUMN` (a syntax error there),
# with the literal meaning "no change" for each; a pure rename (new_column_name) works natively
ALTERING_KEYWORDS = {"nullable": None, "type_": None, "server_default": False, "comment": False}

# statements PostgreSQL refuses to run inside a transaction block; read statement by
# statement with patterns of bounded match length, in linear time (see rawsql.SQL_WINDOW)
_CONCURRENT_INDEX = re.compile(r"\b(?:CREATE (?:UNIQUE )?INDEX|DROP INDEX) CONCURRENTLY\b", re.IGNORECASE)
_CONCURRENT_AFTER = (re.compile(r"\bREINDEX\b", re.IGNORECASE), re.compile(r"\bDETACH PARTITION\b", re.IGNORECASE))
_CONCURRENTLY = re.compile(r"\bCONCURRENTLY\b", re.IGNORECASE)


def runs_concurrently(sql: str) -> bool:
    """CREATE [UNIQUE] INDEX / DROP INDEX CONCURRENTLY, or REINDEX / DETACH PARTITION with
    CONCURRENTLY later in the same statement."""
    for statement in sql.split(";"):
        words = squeeze_sql(statement)
        if _CONCURRENT_INDEX.search(words):
            return True
        for word in _CONCURRENT_AFTER:
            m = word.search(words)
            if m is not None and _CONCURRENTLY.search(words, m.end()):
                return True
    return False


# --------------------------------------------------------------------------- types


def placeholder_default(type_: Any, dialect: str | None, constant_only: bool = False) -> str:
    """A SQL expression suitable as a placeholder server default for a column of `type_`.
    `constant_only`: SQLite's native ADD COLUMN refuses non-constant defaults."""
    if isinstance(type_, type):
        try:
            type_ = type_()
        except Exception:  # noqa: BLE001 - the project's own type class, constructed: it may raise anything
            type_ = None
    if not isinstance(type_, sa.types.TypeEngine):
        return "''"
    t = type_
    if isinstance(t, sa.types.Boolean):
        return "false"
    if isinstance(t, sa.types.Enum) and t.enums:
        return "'" + str(t.enums[0]).replace("'", "''") + "'"
    if isinstance(t, (sa.types.Integer, sa.types.Numeric)):
        return "0"
    if isinstance(t, sa.types.DateTime):
        return "'1970-01-01 00:00:00'" if constant_only else "CURRENT_TIMESTAMP"
    if isinstance(t, sa.types.Date):
        return "'1970-01-01'" if constant_only else "CURRENT_DATE"
    if isinstance(t, sa.types.Time):
        return "'00:00:00'" if constant_only else "CURRENT_TIME"
    if isinstance(t, sa.types.Interval):
        return "'0'"
    if isinstance(t, (sa.types.JSON, sa.types.ARRAY)):
        return "'[]'" if isinstance(t, sa.types.JSON) and dialect != "postgresql" else "'{}'"
    if isinstance(t, sa.types.Uuid):
        return "gen_random_uuid()" if dialect == "postgresql" else "''"
    return "''"


def describe_type(type_: Any) -> str:
    try:
        return repr(type_) if type_ is not None else ""
    except Exception:  # noqa: BLE001 - repr of the project's own type object: it may raise anything
        return type(type_).__name__


def check_safety(script: MigrationScript, schema: RevisionSchema, dialect: str | None,
                 env_name: str) -> list[Diagnostic]:
    """S001–S005 on the upgrade() of one revision (see the module docstring)."""
    function = script.upgrade
    if function is None:
        return []
    dialect = (dialect or "").lower() or None
    dialect = "postgresql" if dialect == "postgres" else dialect
    tree = FunctionTree(script, function)
    checker = _SafetyChecker(script, schema, dialect, env_name, tree)
    walk_upgrade(script, schema, dialect, function, checker)
    return checker.out


class _SafetyChecker(UpgradeWalk):
    """S001–S005, op by op."""

    # ------------------------------------------------------------------ ops

    def op(self, ev: EvaluatedOp) -> None:
        call = ev.call
        target = op_target(call, self.tree)
        rules = [lambda: self._s001(ev, target), lambda: self._s005(ev, target)]
        if self.dialect == "postgresql":
            rules += [lambda: self._s002(ev, target), lambda: self._s003(ev)]
        if self.dialect == "sqlite":
            rules.append(lambda: self._s004(ev, target))
        for rule in rules:
            try:
                rule()
            except Exception:  # noqa: BLE001, S110 - a half-typed call must never take the other findings down
                pass
        self.advance_safely(ev, target)

    def other(self, call: OtherCall) -> None:
        """`conn.execute(...)` / `op.get_bind().execute(...)` with literal SQL."""
        sql = sql_literal(call.node)
        if not sql:
            return
        self._note_update(sql)
        if self.dialect == "postgresql" and runs_concurrently(sql) \
                and not (self.tree.contains(call.node) and self.tree.in_autocommit(call.node)):
            self._report_s003(call.span, "this SQL", batch=False)

    # ------------------------------------------------------------------ S001

    def _s001(self, ev: EvaluatedOp, target: Target) -> None:
        call, op = ev.call, ev.op
        if not target.key or not self.tables.is_existing(target.key, target.name):
            return
        if call.name == "add_column" and isinstance(op, alembic_ops.AddColumnOp):
            col = op.column
            node = column_argument(call)
            if col.nullable is not False or col.primary_key or col.server_default is not None:
                return
            if isinstance(node, ast.Call) and keyword(node, "server_default") is not None \
                    and keyword_value(node, "server_default", unknown=True) is not None:
                return  # a server default we could not evaluate is still a server default
            constant_only = self.dialect == "sqlite" and call.batch_table is None
            placeholder = placeholder_default(col.type, self.dialect, constant_only)
            python_default = " (default= is applied by Python, not by the database)" if col.default is not None else ""
            self.report(
                "S001", call.span,
                f"NOT NULL column '{col.name}' added to existing table '{target.name}' without a "
                f"server_default{python_default}: the ALTER fails as soon as the table has rows; "
                f"give it a server_default (or add it nullable, backfill, then set NOT NULL)",
                table=target.name, schema=target.schema, column=col.name, kind="add_column",
                type=describe_type(col.type), placeholder=placeholder)
        elif call.name == "alter_column":
            node = call.node
            if keyword_value(node, "nullable", unknown=None) is not False:
                return
            default = keyword_value(node, "server_default", absent=None, unknown=True)
            if default is not None and default is not False:  # False / None: no (new) default
                return
            if keyword_value(node, "existing_nullable", unknown=None) is False:
                return  # the author says it is NOT NULL already
            column = literal_string(node.args[1 if call.batch_table is None else 0]) \
                if len(node.args) > (1 if call.batch_table is None else 0) \
                else keyword_string(node, "column_name")
            if column is None:
                return
            current = self.column_state(target, column)
            if current is not None and current.nullable is False:
                return  # already NOT NULL in the replayed history
            if (target.key, column) in self.tables.filled or target.name in self.tables.backfilled:
                return  # added with a server default / backfilled earlier in this upgrade()
            type_ = None
            if isinstance(op, alembic_ops.AlterColumnOp):
                type_ = op.modify_type or op.existing_type
            if type_ is None and current is not None:
                type_ = current.type
            placeholder = placeholder_default(type_, self.dialect)
            self.report(
                "S001", call.span,
                f"alter_column makes '{target.name}.{column}' NOT NULL on an existing table without a "
                f"server_default: it fails if any row holds NULL; backfill the column first "
                f"(UPDATE ... WHERE {column} IS NULL) or give it a server_default",
                table=target.name, schema=target.schema, column=column, kind="alter_column",
                type=describe_type(type_), placeholder=placeholder)

    # ------------------------------------------------------------------ S002 / S003

    def _s002(self, ev: EvaluatedOp, target: Target) -> None:
        call = ev.call
        if call.name != "create_index" or not target.key:
            return
        if not self.tables.is_existing(target.key, target.name):
            return
        value = keyword_value(call.node, "postgresql_concurrently", absent=False, unknown=None)
        if value is None or value:  # not a literal: cannot tell; True: fine (S003 checks the block)
            return
        index = literal_string(call.node.args[0]) if call.node.args else None
        what = f"index '{index}'" if index else "the index"
        self.report(
            "S002", call.span,
            f"create_index builds {what} on existing table '{target.name}' without CONCURRENTLY: "
            f"PostgreSQL blocks writes to the table for the whole build; pass "
            f"postgresql_concurrently=True inside op.get_context().autocommit_block()",
            table=target.name, index=index, in_autocommit=call.in_autocommit,
            batch=call.batch_table is not None)

    def _s003(self, ev: EvaluatedOp) -> None:
        call = ev.call
        if call.in_autocommit:
            return
        if keyword_value(call.node, "postgresql_concurrently", absent=False, unknown=False) is True:
            self._report_s003(call.span, f"{call.name}(postgresql_concurrently=True)",
                              batch=call.batch_table is not None)
        elif call.name == "execute":
            sql = sql_literal(call.node)
            if sql and runs_concurrently(sql):
                self._report_s003(call.span, "this SQL", batch=False)

    def _report_s003(self, span: Span, what: str, batch: bool) -> None:
        self.report(
            "S003", span,
            f"{what} runs CONCURRENTLY inside the migration's transaction: PostgreSQL refuses it "
            f"(\"cannot run inside a transaction block\"); run it inside "
            f"`with op.get_context().autocommit_block():`",
            batch=batch)

    # ------------------------------------------------------------------ S004

    def _s004(self, ev: EvaluatedOp, target: Target) -> None:
        call, op = ev.call, ev.op
        if call.batch_table is not None:
            return
        what = None
        if call.name == "alter_column":
            changed = [k for k, nothing in ALTERING_KEYWORDS.items()
                       if keyword(call.node, k) is not None and keyword_value(call.node, k) is not nothing]
            if changed:
                what = f"alter_column({', '.join(k + '=' for k in changed)}...)"
        elif call.name in SQLITE_CONSTRAINT_OPS:
            what = call.name
        elif call.name == "add_column" and isinstance(op, alembic_ops.AddColumnOp):
            col = op.column
            if col.foreign_keys and keyword_value(call.node, "inline_references", absent=None, unknown=None) is not True:
                what = "add_column with a ForeignKey (an ALTER of constraints)"
            elif col.unique:
                what = "add_column with unique=True (an ALTER of constraints)"
        elif call.name == "drop_column" and target.name:
            column = literal_string(call.node.args[1]) if len(call.node.args) > 1 else \
                keyword_string(call.node, "column_name")
            table = self.state.table(target.name, target.schema)
            if column and table is not None and _constrained(table, column):
                what = f"drop_column of '{column}', which is indexed or part of a constraint,"
        if what is None:
            return
        self.report(
            "S004", call.span,
            f"SQLite cannot run {what} outside batch mode (ALTER of a column or constraint is not "
            f"supported); move it into `with op.batch_alter_table(\"{target.name or '...'}\") as batch_op:`",
            table=target.name, schema=target.schema, op=call.name)

    # ------------------------------------------------------------------ S005

    def _s005(self, ev: EvaluatedOp, target: Target) -> None:
        call = ev.call
        if call.name not in ("drop_table", "drop_column"):
            return
        if target.name is None:  # `for t in (...): op.drop_table(t)`: each iteration's own table
            target = _evaluated_target(ev)
        if target.key and self.tables.is_fresh(target.key):
            return  # created earlier in this same upgrade(): nothing of value is lost
        if call.name == "drop_table":
            what = f"drop_table deletes table '{target.name}'" if target.name else "drop_table deletes a table"
        else:
            pos = 0 if call.batch_table is not None else 1
            column = literal_string(call.node.args[pos]) if len(call.node.args) > pos else \
                keyword_string(call.node, "column_name")
            if column is None and isinstance(ev.op, alembic_ops.DropColumnOp):
                column = str(ev.op.column_name)  # (a loop's or a constant's, as evaluated; plain str: cached)
            if target.key and (target.key, column) in self.tables.added:
                return  # added earlier in this same upgrade(): holds no data yet
            what = (f"drop_column deletes column '{target.name}.{column}'" if target.name and column
                    else "drop_column deletes a column")
        self.report("S005", call.span,
                    f"{what} and its data; the downgrade cannot bring the data back",
                    table=target.name)


def _evaluated_target(ev: EvaluatedOp) -> Target:
    """The table of an op whose table argument is no literal, as its evaluation knows it (a
    loop variable, a constant): the iterations of a loop name their own tables, distinct
    findings, where the literal reading said the same thing once per iteration."""
    name, schema = getattr(ev.op, "table_name", None), getattr(ev.op, "schema", None)
    # (plain str: a SQLAlchemy quoted_name in a finding's data keeps it out of the cache)
    return Target(str(name) if isinstance(name, str) else None, str(schema) if isinstance(schema, str) else None)


def _constrained(table, column: str) -> bool:
    """Is `column` indexed, a primary key, unique or in a foreign key (SQLite cannot DROP it)."""
    state = table.column(column)
    if state is not None and (state.column.primary_key or state.column.unique or state.column.index
                              or state.column.foreign_keys):
        return True
    for constraint, _ in table.constraints:
        if isinstance(constraint, (sa.UniqueConstraint, sa.PrimaryKeyConstraint, sa.ForeignKeyConstraint)) \
                and column in constraint_columns(constraint):
            return True
    for index, _ in table.indexes:
        for expr in index.expressions:
            name = expr if isinstance(expr, str) else getattr(expr, "name", None)
            if name == column:
                return True
    return False
