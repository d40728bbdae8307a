"""Rule family S: operations that are dangerous to run against a live database (S001–S005).

All rules look at upgrade() only, op by op, in source order, while keeping track of what the
revision itself has done so far:

- a table is *existing* when an earlier revision created it (it is in the replayed schema
  before this revision, or earlier raw DDL named it) and this revision has not (re)created
  it before the op; a table created in the same revision is empty, so filling or indexing
  it is harmless;
- the schema is replayed op by op (`apply_op`), so "is this column already NOT NULL", "is it
  indexed" are answered for the exact point of the op.

S002/S003 only speak for PostgreSQL and S004 only for SQLite; with an unknown dialect they
stay silent. S001 and S005 do not depend on the dialect.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops

from ..core import Diagnostic, Span
from ..evaluate import EvaluatedOp
from ..interpret import evaluate_function
from ..rawsql import find_after_keywords, squeeze_sql
from ..replay import RevisionSchema, apply_op
from ..rules import severity
from ..schema import SchemaState, constraint_columns
from ..scripts import Function, MigrationScript, OpCall, OtherCall

# op name -> (position of the table argument, its keyword names, the schema keyword)
TABLE_ARGUMENT: dict[str, tuple[int, tuple[str, ...], str]] = {
    "add_column": (0, ("table_name",), "schema"),
    "drop_column": (0, ("table_name",), "schema"),
    "alter_column": (0, ("table_name",), "schema"),
    "create_table": (0, ("table_name",), "schema"),
    "drop_table": (0, ("table_name",), "schema"),
    "rename_table": (0, ("old_table_name",), "schema"),
    "create_table_comment": (0, ("table_name",), "schema"),
    "drop_table_comment": (0, ("table_name",), "schema"),
    "create_index": (1, ("table_name",), "schema"),
    "drop_index": (1, ("table_name",), "schema"),
    "create_unique_constraint": (1, ("table_name",), "schema"),
    "create_check_constraint": (1, ("table_name",), "schema"),
    "create_primary_key": (1, ("table_name",), "schema"),
    "create_exclude_constraint": (1, ("table_name",), "schema"),
    "drop_constraint": (1, ("table_name",), "schema"),
    "create_foreign_key": (1, ("source_table",), "source_schema"),
}

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
_UPDATE = re.compile(r"\bUPDATE", re.IGNORECASE)
_UPDATE_TABLE = re.compile(r"\s+(?:ONLY\s+)?(?:[\"`\[]?\w+[\"`\]]?\.)?[\"`\[]?(\w+)", re.IGNORECASE)


def runs_concurrently(sql: str) -> bool:
    """CREATE [UNIQUE] INDEX / DROP INDEX CONCURRENTLY, or REINDEX / DETACH PARTITION with
    CONCURRENTLY later in the same statement."""
    for statement in sql.split(";"):
        words = squeeze_sql(statement)
        if _CONCURRENT_INDEX.search(words):
            return True
        for keyword in _CONCURRENT_AFTER:
            m = keyword.search(words)
            if m is not None and _CONCURRENTLY.search(words, m.end()):
                return True
    return False


def updated_tables(sql: str) -> list[str]:
    """The tables of `UPDATE [ONLY] [schema.]table` statements."""
    return find_after_keywords(sql, _UPDATE, lambda m: _UPDATE_TABLE)


_MISSING = object()


# --------------------------------------------------------------------------- AST helpers


def keyword(node: ast.Call, name: str) -> ast.keyword | None:
    for kw in node.keywords:
        if kw.arg == name:
            return kw
    return None


def literal(node: ast.AST | None, default: Any = _MISSING) -> Any:
    """The value of a literal constant node; `default` when absent or not a literal."""
    if isinstance(node, ast.Constant):
        return node.value
    return default


def keyword_value(node: ast.Call, name: str, absent: Any = None, unknown: Any = _MISSING) -> Any:
    """A keyword's literal value: `absent` when not given, `unknown` when not a literal."""
    kw = keyword(node, name)
    if kw is None:
        return absent
    return literal(kw.value, unknown)


def literal_string(node: ast.AST | None) -> str | None:
    value = literal(node, None)
    return value if isinstance(value, str) else None


def keyword_string(node: ast.Call, name: str) -> str | None:
    """A keyword's value when it is given as a string literal."""
    kw = keyword(node, name)
    return literal_string(kw.value) if kw is not None else None


class Located(Protocol):
    """An AST node with a place in the source (expressions, statements, keywords, ...)."""

    lineno: int
    col_offset: int
    end_lineno: int | None
    end_col_offset: int | None


def table_argument(call: OpCall) -> ast.expr | None:
    """The node naming the table of a non-batch op call."""
    where = TABLE_ARGUMENT.get(call.name)
    if where is None:
        return None
    pos, names, _ = where
    node = call.node
    if len(node.args) > pos and not any(isinstance(a, ast.Starred) for a in node.args[: pos + 1]):
        return node.args[pos]
    for name in names:
        kw = keyword(node, name)
        if kw is not None:
            return kw.value
    return None


def column_argument(call: OpCall) -> ast.expr | None:
    """The `sa.Column(...)` node of add_column / batch_op.add_column."""
    pos = 0 if call.batch_table is not None else 1
    if len(call.node.args) > pos:
        return call.node.args[pos]
    kw = keyword(call.node, "column")
    return kw.value if kw is not None else None


def sql_literal(node: ast.Call) -> str | None:
    """The SQL of `execute("...")` / `execute(sa.text("..."))` when written as a literal."""
    if not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Call) and arg.args:
        arg = arg.args[0]
    return literal_string(arg)


class FunctionTree:
    """Parents and source positions inside one function's AST (the one OpCalls point into).
    The parent links are gathered on first use (most functions never need them)."""

    def __init__(self, script: MigrationScript, function: Function) -> None:
        self.script = script
        self.lines = script.lines
        self.node = function.node
        self.offset = 0
        if self.node is not None:
            self.offset = function.def_span.line + 1 - self.node.lineno

    @cached_property
    def parent(self) -> dict[ast.AST, ast.AST]:
        parent: dict[ast.AST, ast.AST] = {}
        if self.node is not None:
            for node in ast.walk(self.node):
                for child in ast.iter_child_nodes(node):
                    parent[child] = node
        return parent

    def contains(self, node: ast.AST) -> bool:
        return node in self.parent

    # positions ------------------------------------------------------------

    def col(self, line: int, byte_col: int) -> int:
        """0-based line, UTF-8 byte column -> code point column."""
        if not 0 <= line < len(self.lines):
            return byte_col
        text = self.lines[line]
        if text.isascii():
            return byte_col
        return len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace"))

    def start(self, node: Located) -> tuple[int, int]:
        line = node.lineno + self.offset - 1
        return line, self.col(line, node.col_offset)

    def end(self, node: Located) -> tuple[int, int]:
        line = (node.end_lineno or node.lineno) + self.offset - 1
        return line, self.col(line, node.end_col_offset if node.end_col_offset is not None else node.col_offset)

    def span(self, node: Located) -> Span:
        return Span(*self.start(node), *self.end(node))

    def text(self, node: Located) -> str:
        return self.slice(self.start(node), self.end(node))

    def slice(self, start: tuple[int, int], end: tuple[int, int]) -> str:
        (l1, c1), (l2, c2) = start, end
        if l1 == l2:
            return self.lines[l1][c1:c2]
        return "\n".join([self.lines[l1][c1:], *self.lines[l1 + 1 : l2], self.lines[l2][:c2]])

    # structure ------------------------------------------------------------

    def ancestors(self, node: ast.AST):
        while node in self.parent:
            node = self.parent[node]
            yield node

    def statement(self, node: ast.AST) -> ast.stmt | None:
        """The innermost statement containing `node`."""
        for anc in self.ancestors(node):
            if isinstance(anc, ast.stmt):
                return anc if not isinstance(anc, ast.FunctionDef) else None
        return None

    def enclosing_withs(self, node: ast.AST) -> list[ast.With | ast.AsyncWith]:
        """`with` statements whose body holds `node`, innermost first."""
        out = []
        child = node
        for anc in self.ancestors(node):
            if isinstance(anc, (ast.With, ast.AsyncWith)) and child in anc.body:
                out.append(anc)
            child = anc
        return out

    def in_autocommit(self, node: ast.AST) -> bool:
        return any(is_autocommit_item(item) for w in self.enclosing_withs(node) for item in w.items)

    def batch_with(self, node: ast.AST) -> tuple[ast.With | ast.AsyncWith, ast.Call] | None:
        """The innermost `with op.batch_alter_table(...)` around `node`, and that call."""
        for w in self.enclosing_withs(node):
            for item in w.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                        and call.func.attr == "batch_alter_table":
                    return w, call
        return None


def is_autocommit_item(item: ast.withitem) -> bool:
    call = item.context_expr
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "autocommit_block"


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


# --------------------------------------------------------------------------- the walk


class _Existing:
    """A set of table keys given as a mapping's keys plus / minus changes: starts as the
    replayed schema's tables without copying them."""

    def __init__(self, base: Mapping[str, Any]) -> None:
        self.base = base
        self.added: set[str] = set()
        self.removed: set[str] = set()

    def __contains__(self, key: object) -> bool:
        return key in self.added or (key not in self.removed and key in self.base)

    def add(self, key: str) -> None:
        self.removed.discard(key)
        self.added.add(key)

    def discard(self, key: str) -> None:
        self.added.discard(key)
        self.removed.add(key)


@dataclass
class _Tables:
    """Which tables exist at the current op, and which this revision created."""

    existing: _Existing
    uncertain: AbstractSet[str]
    fresh: set[str] = field(default_factory=set)
    backfilled: set[str] = field(default_factory=set)  # tables an UPDATE ran on, earlier in upgrade()
    filled: set[tuple[str, str]] = field(default_factory=set)  # columns added with a server default
    added: set[tuple[str, str]] = field(default_factory=set)  # columns added by this upgrade()

    def is_existing(self, key: str, name: str | None) -> bool:
        if key in self.fresh:
            return False
        return key in self.existing or name in self.uncertain

    def is_fresh(self, key: str) -> bool:
        return key in self.fresh

    def created(self, key: str) -> None:
        self.fresh.add(key)
        self.existing.discard(key)

    def dropped(self, key: str) -> None:
        self.fresh.discard(key)
        self.existing.discard(key)

    def renamed(self, old: str, new: str) -> None:
        if old in self.fresh:
            self.fresh.discard(old)
            self.fresh.add(new)
        elif old in self.existing:
            self.existing.discard(old)
            self.existing.add(new)


def _key(name: str, schema: str | None) -> str:
    return f"{schema}.{name}" if schema else name


@dataclass
class _Target:
    name: str | None
    schema: str | None

    @property
    def key(self) -> str | None:
        return _key(self.name, self.schema) if self.name else None


def _target(call: OpCall, tree: FunctionTree) -> _Target:
    if call.batch_table is not None:
        schema = None
        found = tree.batch_with(call.node) if tree.contains(call.node) else None
        if found is not None:
            schema = keyword_string(found[1], "schema")
        return _Target(call.batch_table or None, schema)
    name = literal_string(table_argument(call))
    where = TABLE_ARGUMENT.get(call.name)
    schema = None
    if where is not None:
        schema = keyword_string(call.node, where[2])
    return _Target(name, schema)


def _upgrade_ops(script: MigrationScript, schema: RevisionSchema, dialect: str | None) -> list[EvaluatedOp]:
    """The replay's evaluated upgrade ops when they belong to this script's parse, else fresh."""
    ops = list(schema.upgrade)
    calls = [c for c in script.upgrade.ops if c.name != "batch_alter_table"] if script.upgrade else []
    if len(ops) == len(calls) and all(ev.call is c for ev, c in zip(ops, calls)):
        return ops
    return evaluate_function(script, script.upgrade, dialect)


def check_safety(script: MigrationScript, schema: RevisionSchema, dialect: str | None,
                 env_name: str) -> list[Diagnostic]:
    """S001–S005 on the upgrade() of one revision (see the module docstring)."""
    function = script.upgrade
    if function is None:
        return []
    dialect = (dialect or "").lower() or None
    dialect = "postgresql" if dialect == "postgres" else dialect
    tree = FunctionTree(script, function)
    checker = _Checker(script, schema, dialect, env_name, tree)
    walk_upgrade(script, schema, dialect, function, checker)
    return checker.out


def walk_upgrade(script: MigrationScript, schema: RevisionSchema, dialect: str | None, function: Function,
                 checker: Any) -> None:
    """Hand `checker` the upgrade's ops (`.op`) and its literal SQL calls (`.other`) in source
    order: what a rule family judges, one event at a time."""
    events: list[tuple[tuple[int, int], int, Any]] = []
    for n, ev in enumerate(_upgrade_ops(script, schema, dialect)):
        events.append(((ev.span.line, ev.span.col), n, ev))
    for n, other in enumerate(function.other_calls):
        if other.name.rsplit(".", 1)[-1] in ("execute", "exec_driver_sql"):
            events.append(((other.span.line, other.span.col), 10**9 + n, other))
    for _, _, item in sorted(events, key=lambda e: (e[0], e[1])):
        if isinstance(item, EvaluatedOp):
            checker.op(item)
        else:
            checker.other(item)


class _Checker:
    def __init__(self, script: MigrationScript, schema: RevisionSchema, dialect: str | None,
                 env_name: str, tree: FunctionTree) -> None:
        self.script = script
        self.dialect = dialect
        self.env_name = env_name
        self.tree = tree
        self._state: SchemaState = schema.before
        self._pending: list[EvaluatedOp] = []  # ops not applied to _state yet
        self.tables = _Tables(_Existing(schema.before.tables), schema.before.uncertain)
        self.out: list[Diagnostic] = []

    @property
    def state(self) -> SchemaState:
        """The replayed schema at the current op. Replayed on demand: only a few rules ask."""
        if self._pending:
            for ev in self._pending:
                try:
                    self._state = apply_op(self._state, ev, self.script.path)
                except Exception:  # noqa: BLE001, S110 - never let a replay quirk hide the other findings
                    pass
            self._pending.clear()
        return self._state

    def report(self, code: str, span: Span, message: str, **data: Any) -> None:
        self.out.append(Diagnostic(code, severity(code), self.script.path, span, message, self.env_name,
                                   {"code": code, **data}))

    # ------------------------------------------------------------------ ops

    def op(self, ev: EvaluatedOp) -> None:
        call = ev.call
        target = _target(call, self.tree)
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

    def _advance(self, ev: EvaluatedOp, target: _Target) -> None:
        op, call = ev.op, ev.call
        key = target.key
        if call.name == "create_table" and key:
            self.tables.created(key)
        elif call.name == "drop_table" and key:
            self.tables.dropped(key)
        elif call.name == "rename_table" and key:
            new = literal_string(call.node.args[1]) if len(call.node.args) > 1 else \
                keyword_string(call.node, "new_table_name")
            if new:
                self.tables.renamed(key, _key(new, target.schema))
        elif isinstance(op, alembic_ops.AddColumnOp) and key:
            self.tables.added.add((key, op.column.name))
            if op.column.server_default is not None:
                self.tables.filled.add((key, op.column.name))
        elif call.name == "execute":
            if isinstance(op, alembic_ops.ExecuteSQLOp) and isinstance(op.sqltext, sa.sql.dml.Update):
                name = getattr(getattr(op.sqltext, "table", None), "name", None)
                if name:
                    self.tables.backfilled.add(name)
            sql = sql_literal(call.node)
            if sql:
                self._note_update(sql)
        self._pending.append(ev)

    def advance_safely(self, ev: EvaluatedOp, target: _Target) -> None:
        try:
            self._advance(ev, target)
        except Exception:  # noqa: BLE001, S110 - a replay quirk must not hide the other findings
            pass

    def _note_update(self, sql: str) -> None:
        for name in updated_tables(sql):
            self.tables.backfilled.add(name)

    def _column_state(self, target: _Target, column: str) -> sa.Column | None:
        if not target.name:
            return None
        table = self.state.table(target.name, target.schema)
        found = table.column(column) if table is not None else None
        return found.column if found is not None else None

    # ------------------------------------------------------------------ S001

    def _s001(self, ev: EvaluatedOp, target: _Target) -> None:
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
            current = self._column_state(target, column)
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

    def _s002(self, ev: EvaluatedOp, target: _Target) -> None:
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

    def _s004(self, ev: EvaluatedOp, target: _Target) -> None:
        call, op = ev.call, ev.op
        if call.batch_table is not None:
            return
        what = None
        if call.name == "alter_column":
            changed = [k for k, nothing in ALTERING_KEYWORDS.items()
                       if keyword(call.node, k) is not None and keyword_value(call.node, k, unknown=_MISSING) is not nothing]
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

    def _s005(self, ev: EvaluatedOp, target: _Target) -> None:
        call = ev.call
        if call.name not in ("drop_table", "drop_column"):
            return
        if target.key and self.tables.is_fresh(target.key):
            return  # created earlier in this same upgrade(): nothing of value is lost
        if call.name == "drop_table":
            what = f"drop_table deletes table '{target.name}'" if target.name else "drop_table deletes a table"
        else:
            pos = 0 if call.batch_table is not None else 1
            column = literal_string(call.node.args[pos]) if len(call.node.args) > pos else \
                keyword_string(call.node, "column_name")
            if target.key and (target.key, column) in self.tables.added:
                return  # added earlier in this same upgrade(): holds no data yet
            what = (f"drop_column deletes column '{target.name}.{column}'" if target.name and column
                    else "drop_column deletes a column")
        self.report("S005", call.span,
                    f"{what} and its data; the downgrade cannot bring the data back",
                    table=target.name)


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
