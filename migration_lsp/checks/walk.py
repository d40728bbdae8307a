"""What the S families share: one walk over an upgrade's ops and literal SQL, the tables it
has created or dropped so far, and the AST helpers that read an op call's arguments.

The rule families (safety, pg_ddl, pg_transactions, portable) import from here and never from
each other. `UpgradeWalk` keeps the state a family judges against, op by op in source order:

- a table is *existing* when an earlier revision created it (it is in the replayed schema
  before this revision, or earlier raw DDL named it) and this revision has not (re)created
  it before the op; a table created in the same revision is empty, so filling or indexing
  it is harmless;
- the schema is replayed op by op (`apply_op`), on demand, so "is this column already NOT
  NULL", "is it indexed" are answered for the exact point of the op.
"""

from __future__ import annotations

import ast
import re
import weakref
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
from ..rawsql import find_after_keywords
from ..replay import RevisionSchema, apply_op
from ..rules import severity
from ..schema import SchemaState, table_key
from ..scripts import Function, MigrationScript, OpCall, sql_literal

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

# `UPDATE [ONLY] [schema.]table`: patterns of bounded match length (see rawsql.SQL_WINDOW)
_UPDATE = re.compile(r"\bUPDATE", re.IGNORECASE)
_UPDATE_TABLE = re.compile(r"\s+(?:ONLY\s+)?(?:[\"`\[]?\w+[\"`\]]?\.)?[\"`\[]?(\w+)", re.IGNORECASE)


def updated_tables(sql: str) -> list[str]:
    """The tables of `UPDATE [ONLY] [schema.]table` statements."""
    return find_after_keywords(sql, _UPDATE, lambda m: _UPDATE_TABLE)


MISSING: Any = object()  # "no literal value" (a literal None is a value)


# --------------------------------------------------------------------------- AST helpers


def keyword(node: ast.Call, name: str) -> ast.keyword | None:
    """The call's keyword argument `name=`, if given."""
    for kw in node.keywords:
        if kw.arg == name:
            return kw
    return None


def literal(node: ast.AST | None, default: Any = MISSING) -> Any:
    """The value of a literal constant node; `default` when absent or not a literal."""
    if isinstance(node, ast.Constant):
        return node.value
    return default


def keyword_value(node: ast.Call, name: str, absent: Any = None, unknown: Any = MISSING) -> Any:
    """A keyword's literal value: `absent` when not given, `unknown` when not a literal."""
    kw = keyword(node, name)
    if kw is None:
        return absent
    return literal(kw.value, unknown)


def literal_string(node: ast.AST | None) -> str | None:
    """The value of a string literal node, else None."""
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


_TREES: weakref.WeakKeyDictionary[Function, FunctionTree] = weakref.WeakKeyDictionary()


def function_tree(script: MigrationScript, function: Function) -> FunctionTree:
    """One FunctionTree per parsed function, shared by the families that walk it (its parent
    links are the cost)."""
    tree = _TREES.get(function)
    if tree is None or tree.script is not script:
        tree = _TREES[function] = FunctionTree(script, function)
    return tree


def is_autocommit_item(item: ast.withitem) -> bool:
    call = item.context_expr
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "autocommit_block"


# --------------------------------------------------------------------------- the walk


class Existing:
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
class Tables:
    """Which tables exist at the current op, and which this revision created."""

    existing: Existing
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


@dataclass
class Target:
    """The table an op call works on, when its arguments are literals."""

    name: str | None
    schema: str | None

    @property
    def key(self) -> str | None:
        return table_key(self.name, self.schema) if self.name else None


def op_target(call: OpCall, tree: FunctionTree) -> Target:
    """The table of an op call (for batch ops: the batch's table, and the schema= of its `with`)."""
    if call.batch_table is not None:
        schema = None
        found = tree.batch_with(call.node) if tree.contains(call.node) else None
        if found is not None:
            schema = keyword_string(found[1], "schema")
        return Target(call.batch_table or None, schema)
    name = literal_string(table_argument(call))
    where = TABLE_ARGUMENT.get(call.name)
    schema = None
    if where is not None:
        schema = keyword_string(call.node, where[2])
    return Target(name, schema)


def upgrade_ops(script: MigrationScript, schema: RevisionSchema, dialect: str | None) -> list[EvaluatedOp]:
    """The replay's evaluated upgrade ops when they belong to this script's parse, else fresh."""
    ops = list(schema.upgrade)
    calls = [c for c in script.upgrade.ops if c.name != "batch_alter_table"] if script.upgrade else []
    if len(ops) == len(calls) and all(ev.call is c for ev, c in zip(ops, calls)):
        return ops
    return evaluate_function(script, script.upgrade, dialect)


def walk_upgrade(script: MigrationScript, schema: RevisionSchema, dialect: str | None, function: Function,
                 checker: Any) -> None:
    """Hand `checker` the upgrade's ops (`.op`) and its literal SQL calls (`.other`) in source
    order: what a rule family judges, one event at a time."""
    events: list[tuple[tuple[int, int], int, Any]] = []
    for n, ev in enumerate(upgrade_ops(script, schema, dialect)):
        events.append(((ev.span.line, ev.span.col), n, ev))
    for n, other in enumerate(function.other_calls):
        if other.name.rsplit(".", 1)[-1] in ("execute", "exec_driver_sql"):
            events.append(((other.span.line, other.span.col), 10**9 + n, other))
    for _, _, item in sorted(events, key=lambda e: (e[0], e[1])):
        if isinstance(item, EvaluatedOp):
            checker.op(item)
        else:
            checker.other(item)


class UpgradeWalk:
    """What a rule family knows at the current op of the walk: the tables (existing, created
    by this upgrade, backfilled...) and the replayed schema. A family subclasses it with its
    `op(ev)` / `other(call)` and calls `advance_safely` after judging each op."""

    def __init__(self, script: MigrationScript, schema: RevisionSchema, dialect: str | None,
                 env_name: str, tree: FunctionTree) -> None:
        self.script = script
        self.dialect = dialect
        self.env_name = env_name
        self.tree = tree
        self._state: SchemaState = schema.before
        self._pending: list[EvaluatedOp] = []  # ops not applied to _state yet
        self.tables = Tables(Existing(schema.before.tables), schema.before.uncertain)
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

    def _advance(self, ev: EvaluatedOp, target: Target) -> None:
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
                self.tables.renamed(key, table_key(new, target.schema))
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

    def advance_safely(self, ev: EvaluatedOp, target: Target) -> None:
        try:
            self._advance(ev, target)
        except Exception:  # noqa: BLE001, S110 - a replay quirk must not hide the other findings
            pass

    def _note_update(self, sql: str) -> None:
        for name in updated_tables(sql):
            self.tables.backfilled.add(name)

    def column_state(self, target: Target, column: str) -> sa.Column | None:
        """The column as the replayed schema has it at the current op."""
        if not target.name:
            return None
        table = self.state.table(target.name, target.schema)
        found = table.column(column) if table is not None else None
        return found.column if found is not None else None

