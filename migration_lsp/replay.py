"""Stage `schema`, part 3: evaluated ops applied to schema states, along the graph.

Replay walks the graph from the bases: the schema before a revision is the union of its
parents' schemas after them; results are cached per revision. An op is applied by the
function registered for its class (`applies`, as Alembic's `Operations.implementation_for`
dispatches on the op class), never by a chain of isinstance tests.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import threading
import warnings
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops

from .core import Span
from .evaluate import EvaluatedOp
from .graph import RevisionGraph
from .interpret import Evaluation, Outside, RawCall, evaluate
from .pmap import keyed
from .rawsql import ddl_effects
from .schema import (
    ANY_INSIDE,
    OPAQUE_ANY,
    ColumnState,
    IndexRecord,
    Origin,
    SchemaState,
    TableState,
    constraint_columns,
    drop_constraint_op,
    index_columns,
    merge_states,
    op_table,
    table_hidden,
    table_key,
)
from .scripts import MigrationScript, OpCall, OtherCall, sql_literal

log = logging.getLogger("migration_lsp")


# op calls that only move data (whatever their arguments): never a schema change
DATA_OPS = frozenset({"execute", "bulk_insert", "inline_literal"})


def apply_op(state: SchemaState, ev: EvaluatedOp, path: Path) -> SchemaState:
    """The schema after one evaluated op. An op that may not run makes its table uncertain;
    an opaque one its table, or, when even the table is unknown, is recorded as `opaque`
    (said at the call; every other table is still compared)."""
    op = ev.op
    origin: Origin = (path, ev.span)
    if ev.conditional and isinstance(op, alembic_ops.ExecuteSQLOp) and isinstance(sql := _sql_of(op), str):
        return apply_sql(state, sql, origin, conditional=True)
    if ev.conditional and op is not None and ev.guards:
        runs = _guards_hold(state, ev.guards)
        if runs is False:
            return state  # `if "t" not in inspector.get_table_names():` while the history has t
        if runs:
            return _apply_safely(state, op, origin)
    method = ev.call.name.rsplit(".", 1)[-1]
    if ev.conditional and op is not None:
        # it may not run (an `if` we cannot decide, `if not exists`...): apply it, but never
        # report on what it may have changed
        table, schema_name = op_table(op)
        table = table or ev.table or _literal_table_name(ev.call)
        after = _apply_safely(state, op, origin)
        if not table:
            return after
        name = getattr(op, "index_name", None) or getattr(op, "constraint_name", None)
        existing = state.table(table, schema_name)
        hides = _hidden_by(existing, method, name if isinstance(name, str) else None,
                           getattr(op, "constraint_type", None) or _CONSTRAINT_OF_METHOD.get(method), op)
        if hides is not None and existing is not None and ev.unread_keywords:
            hides = (table_hidden(ANY_INSIDE, existing.key),)  # (a rename we could not read...)
        return after.with_uncertain((table,), hides)
    if ev.unread_keywords and op is not None and not ev.conditional:
        # applied without what those keywords change: the table's insides are unknown
        table, schema_name = op_table(op)
        before = state.table(table, schema_name) if table else None
        after = _apply_safely(state, op, origin)
        if not table:
            return after
        created = isinstance(op, alembic_ops.CreateTableOp) and before is None
        made = after.table(table, schema_name) if created else before
        if made is None or "schema" in ev.unread_keywords:
            return after.with_uncertain((table,))
        if isinstance(op, (alembic_ops.CreateIndexOp, alembic_ops.DropIndexOp)) and isinstance(op.index_name, str):
            return after.with_uncertain((table,), _hidden_by(made, method, op.index_name, None))  # (a WHERE...)
        return after.with_uncertain((table,), (table_hidden(ANY_INSIDE, made.key),))
    if ev.unread_columns and isinstance(op, alembic_ops.CreateTableOp):
        # made without the columns we could not read: those, and any index or constraint
        # they may bring, are unknown; the rest of the table is compared
        after = _apply_safely(state, op, origin)
        made = after.table(op.table_name, op.schema)
        if made is None:
            return after.with_uncertain((op.table_name,))
        return after.with_uncertain((op.table_name,), _column_hidden(made, *ev.unread_columns) + tuple(
            table_hidden(kind, made.key) for kind in ("add_index", "add_constraint")))
    if op is None:
        if ev.call.name == "execute":
            return _unreadable_sql(state, ev.call.node, origin, bool(ev.conditional))
        if ev.call.name in DATA_OPS:
            return state  # op.bulk_insert(...): data
        table = ev.table or _literal_table_name(ev.call)
        if table:
            named = [k.split(":", 1)[1] for k in _opaque_kinds(ev.call) if ":" in k]
            hides = _hidden_by(state.table(table), method, named[0] if named else None,
                               _literal_keyword(ev.call, "type_") or _CONSTRAINT_OF_METHOD.get(method))
            return state.with_uncertain((table,), hides)
        return state.with_opaque(origin, _opaque_kinds(ev.call))
    return _apply_safely(state, op, origin)


_CONSTRAINT_OF_METHOD = {"create_unique_constraint": "unique", "create_foreign_key": "foreignkey",
                         "create_check_constraint": "check", "create_primary_key": "primary"}


def _hidden_by(table: TableState | None, method: str, name: str | None, constraint_type: str | None,
               op: alembic_ops.MigrateOperation | None = None) -> tuple[str, ...] | None:
    """What an op on `table` that may not have run, or whose object cannot be read, may make
    look different there (table-scoped kinds, see `schema.table_hidden`), when the table is
    sure to exist and the op cannot create, drop or rename it: an index or constraint op only
    that object (or, unnamed, that family: a drop only what the table has), a column op that
    touches nothing but its column only that column, anything else the table's insides.
    None: the whole table is uncertain (it may not even exist)."""
    if table is None or method not in OPAQUE_KINDS:
        return None
    family = OPAQUE_KINDS[method][0]
    if family == "table":
        return None
    key = table.key
    drop = method.startswith("drop")
    column = _only_column(table, op)
    if column is not None:
        return tuple(table_hidden(f"{k}:{column}", key) for k in ("add_column", "drop_column", "alter_column"))
    if family == "index":
        if name is not None:
            return tuple(table_hidden(f"{k}:{name}", key) for k in ("add_index", "drop_index"))
        if drop:
            return tuple(table_hidden(f"drop_index:{i.name}", key) for i, _ in table.indexes)
        return (table_hidden("add_index", key),)
    if family == "constraint" and constraint_type in ("unique", "foreignkey", "check"):
        if name is not None:
            return tuple(table_hidden(f"{k}:{name}", key)
                         for k in ("add_constraint", "drop_constraint", "add_index", "drop_index"))
        if not drop:
            return (table_hidden("add_constraint", key),) + \
                ((table_hidden("add_index", key),) if constraint_type == "unique" else ())
        unique_indexes = tuple(table_hidden(f"drop_index:{i.name}", key) for i, _ in table.indexes
                               if constraint_type == "unique" and getattr(i, "unique", False))
        return (table_hidden("drop_constraint", key),) + unique_indexes
    return (table_hidden(ANY_INSIDE, key),)  # columns, a primary key, comments: anything inside


def _only_column(table: TableState, op: alembic_ops.MigrateOperation | None) -> str | None:
    """The column an add/drop/alter_column op changes when it changes nothing else: no index,
    key or constraint comes or goes with it, no rename."""
    if isinstance(op, alembic_ops.AddColumnOp):
        col = op.column
        plain = not (col.index or col.unique or col.foreign_keys or col.primary_key or col.constraints)
        return col.name if plain and isinstance(col.name, str) else None
    if isinstance(op, alembic_ops.DropColumnOp):
        name = op.column_name
        used = any(name in index_columns(i) for i, _ in table.indexes) or \
            any(name in constraint_columns(c) for c, _ in table.constraints)
        return None if used else name
    if isinstance(op, alembic_ops.AlterColumnOp) and op.modify_name is None:
        return op.column_name
    return None


def _column_hidden(table: TableState, *names: str | None) -> tuple[str, ...]:
    """Every difference about these columns of `table` (one the replay does not have)."""
    return tuple(table_hidden(f"{k}:{n}", table.key) for n in names if n
                 for k in ("add_column", "drop_column", "alter_column"))


def _literal_keyword(call: OpCall, keyword: str) -> str | None:
    node = next((k.value for k in call.node.keywords if k.arg == keyword), None)
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


# what an op whose table cannot be read may have done, in whichever table, as the kinds of
# difference it can explain (an unknown add_column makes a column look missing, an unknown
# drop_column one look extra or changed...), and which object family it names
OPAQUE_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "add_column": ("column", ("add_column",)),
    "drop_column": ("column", ("drop_column", "alter_column")),
    "alter_column": ("column", ("add_column", "drop_column", "alter_column")),  # (renames too)
    "create_index": ("index", ("add_index",)),
    "drop_index": ("index", ("drop_index",)),
    **dict.fromkeys(("create_unique_constraint", "create_foreign_key", "create_primary_key",
                     "create_check_constraint", "create_exclude_constraint"), ("constraint", ("add_constraint",))),
    "drop_constraint": ("constraint", ("drop_constraint",)),
    **dict.fromkeys(("create_table_comment", "drop_table_comment"), ("comment", ("comment",))),
    "create_table": ("table", ("add_table",)),
    "drop_table": ("table", ("drop_table",)),
    "rename_table": ("table", ("add_table", "drop_table")),
}
# where such an op names the object it changes: (keyword, position in `op.x(...)`)
_OBJECT_ARGUMENT = {"column": (("column", "column_name"), 1), "index": (("index_name",), 0),
                    "constraint": (("constraint_name",), 0)}


def _callee(func: ast.expr) -> str:
    """The called name: `Column` of `sa.Column(...)` and of `Column(...)`."""
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _opaque_kinds(call: OpCall) -> tuple[str, ...]:
    """What an op whose table cannot be read may have made look different: "add_column:body"
    when the column (index, constraint) it names is literal, "add_column" when any one
    ("add_table:id,name": a table created with these columns), OPAQUE_ANY for an op we do
    not know."""
    method = call.name.rsplit(".", 1)[-1]
    if method not in OPAQUE_KINDS:
        return (OPAQUE_ANY,)
    family, kinds = OPAQUE_KINDS[method]
    if method == "create_table":  # a table of these columns (when every one is literal)
        columns = [a.args[0].value for a in call.node.args[1:] if isinstance(a, ast.Call) and a.args
                   and isinstance(a.args[0], ast.Constant) and isinstance(a.args[0].value, str)
                   and _callee(a.func).endswith("Column")]
        everything_read = all(isinstance(a, ast.Call) for a in call.node.args[1:]) and not call.node.keywords
        return (f"add_table:{','.join(sorted(columns))}",) if columns and everything_read else kinds
    keywords, position = _OBJECT_ARGUMENT.get(family, ((), None))
    node = next((k.value for k in call.node.keywords if k.arg in keywords), None)
    if node is None and position is not None:
        position -= 1 if call.batch_table and family == "column" else 0
        node = call.node.args[position] if len(call.node.args) > position else None
    if isinstance(node, ast.Call) and node.args:  # sa.Column("body", ...)
        node = node.args[0]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return tuple(f"{kind}:{node.value}" for kind in kinds)
    return kinds


def _guards_hold(state: SchemaState, guards: Sequence[tuple[str, bool]]) -> bool | None:
    """Do the existence tests around an op hold in this schema (None: a table we are not
    sure of)? The database the migration runs on is the one the history made."""
    for table, exists in guards:
        if table in state.uncertain:
            return None
        if (state.table(table) is not None) != exists:
            return False
    return True


def apply_raw_call(state: SchemaState, call: RawCall, path: Path, dialect: str | None = None) -> SchemaState:
    """A call that is not an op: literal SQL through a connection, or a function we cannot
    follow that was handed `op` (its likely tables uncertain, else said at the call)."""
    if call.sql is not None:
        return apply_sql(state, call.sql, (path, call.span), call.conditional, dialect)
    if call.tables:
        return state.with_uncertain(call.tables)
    return state.with_opaque((path, call.span))


def apply_sql(state: SchemaState, sql: str, origin: Origin, conditional: bool = False,
              dialect: str | None = None) -> SchemaState:
    """Raw SQL, read by `rawsql.ddl_effects`: its DDL applied as the Alembic ops it amounts
    to (each table it touches uncertain when it may not run), other DDL making the tables it
    names uncertain; DML changes no schema."""
    for effect in ddl_effects(sql, dialect):
        index = effect.dropped_index or (effect.op.index_name if isinstance(effect.op, alembic_ops.CreateIndexOp)
                                         and isinstance(effect.op.index_name, str) else None)
        if conditional and index is not None:  # only that index may or may not be there
            if effect.op is not None:
                state = _apply_safely(state, effect.op, origin)
            else:
                state, _ = _drop_index_by_name(state, index)
            state = state.with_unsure(_index_kinds(index))
            continue
        touched: tuple[str, ...] = effect.uncertain
        if effect.op is not None:
            state = _apply_safely(state, effect.op, origin)
            name, _ = op_table(effect.op)
            touched += (name,) if name else ()
            if isinstance(effect.op, alembic_ops.RenameTableOp):
                touched += (effect.op.new_table_name,)
        elif effect.dropped_index is not None:
            state, table = _drop_index_by_name(state, effect.dropped_index)
            touched += (table,) if table else ()
        elif effect.renamed_index is not None:
            state, table = _rename_index(state, *effect.renamed_index, origin)
            touched += (table,) if table else ()
        if effect.unfollowed_index is not None:  # only that index of its (existing) table is unknown
            indexed = state.table(effect.uncertain[0]) if len(effect.uncertain) == 1 else None
            state = state.with_uncertain(touched, _hidden_by(indexed, "create_index", effect.unfollowed_index, None))
        elif conditional or (effect.op is None and effect.dropped_index is None and effect.renamed_index is None):
            state = state.with_uncertain(t for t in touched if t)
    return state


def _unreadable_sql(state: SchemaState, node: ast.Call, origin: Origin, conditional: bool) -> SchemaState:
    """op.execute(<SQL we cannot read>): data, unless its literal text is DDL. An f-string
    whose unknown parts each choose between literals (phoenix: f"CREATE INDEX {'CONCURRENTLY '
    if concurrently else ''}IF NOT EXISTS ix ON t (...)") is applied when every choice has
    the same effect; otherwise, read with its unknown parts left empty, an index it may make
    or drop is unsure, a table it may change uncertain, and nothing of it is applied."""
    arg = node.args[0] if node.args else None
    if isinstance(arg, ast.Call) and arg.args:  # sa.text(f"...")
        arg = arg.args[0]
    if not isinstance(arg, ast.JoinedStr):
        return state
    choices = _fstring_choices(arg)
    if choices is not None and not conditional:  # (index DDL only: CONCURRENTLY, IF NOT EXISTS)
        effects = [ddl_effects(sql) for sql in choices]
        if effects[0] and all(isinstance(e.op, alembic_ops.CreateIndexOp) or e.dropped_index for e in effects[0]) \
                and all(_effect_key(e) == _effect_key(effects[0]) for e in effects[1:]):
            return apply_sql(state, choices[0], origin)
    text = "".join(v.value for v in arg.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    for effect in ddl_effects(text):
        index = effect.dropped_index or (effect.op.index_name if isinstance(effect.op, alembic_ops.CreateIndexOp)
                                         and isinstance(effect.op.index_name, str) else None)
        if index is not None:
            state = state.with_unsure(_index_kinds(index))
            continue
        name = op_table(effect.op)[0] if effect.op is not None else None
        state = state.with_uncertain(t for t in (*effect.uncertain, name) if t)
    return state


MAX_CHOICES = 8


def _fstring_choices(node: ast.JoinedStr) -> list[str] | None:
    """Every text an f-string can be when each of its parts is a literal or `a if test else
    b` between literals (None: another part, or too many)."""
    texts = [""]
    for part in node.values:
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            options = [part.value]
        elif isinstance(part, ast.FormattedValue) and part.conversion == -1 and part.format_spec is None \
                and isinstance(part.value, ast.IfExp) \
                and all(isinstance(b, ast.Constant) and isinstance(b.value, str)
                        for b in (part.value.body, part.value.orelse)):
            options = [part.value.body.value, part.value.orelse.value]  # type: ignore[attr-defined]
        else:
            return None
        texts = [t + o for t in texts for o in options]
        if len(texts) > MAX_CHOICES:
            return None
    return texts


def _effect_key(effects: list) -> list:
    """What index DDL does, to tell whether two texts do the same (CONCURRENTLY or not)."""
    return [("index", e.op.index_name, e.op.table_name, e.op.schema, bool(e.op.unique),
             tuple(str(c) for c in e.op.columns), tuple(sorted((k, str(v)) for k, v in e.op.kw.items())))
            if isinstance(e.op, alembic_ops.CreateIndexOp) else ("drop", e.dropped_index, e.uncertain)
            for e in effects]


def _index_kinds(name: str) -> tuple[str, ...]:
    """The differences an index that may or may not exist can make (compare._may_be_opaque)."""
    return (f"add_index:{name}", f"drop_index:{name}")


def _drop_index_by_name(state: SchemaState, name: str) -> tuple[SchemaState, str | None]:
    """`DROP INDEX name`: the table that has it (found in the schema), without it."""
    for table in state.tables.values():
        if any(index.name == name for index, _ in table.indexes):
            return state.with_table(table.evolve(indexes=tuple(
                (i, o) for i, o in table.indexes if i.name != name))), table.name
    return state, None


def _rename_index(state: SchemaState, old: str, new: str, origin: Origin) -> tuple[SchemaState, str | None]:
    """`ALTER INDEX old RENAME TO new`: the same index under its new name (an index on
    expressions, whose text the schema does not keep exactly, makes its table uncertain)."""
    for table in state.tables.values():
        index = next((i for i, _ in table.indexes if i.name == old), None)
        if index is None:
            continue
        columns = index_columns(index)
        if not all(table.column(name) is not None for name in columns):
            return state.with_uncertain((table.name,)), table.name
        kwargs = index.kwargs if isinstance(index, IndexRecord) else dict(index.dialect_kwargs)
        state, _ = _drop_index_by_name(state, old)
        renamed = alembic_ops.CreateIndexOp(new, table.name, list(columns), schema=table.schema,
                                            unique=bool(index.unique), **kwargs)
        return _apply_safely(state, renamed, origin), table.name
    return state, None


def _apply_safely(state: SchemaState, op: alembic_ops.MigrateOperation, origin: Origin) -> SchemaState:
    try:
        return _apply(state, op, origin)
    except Exception:  # noqa: BLE001 - an op inconsistent with the history (column already dropped...)
        table = op_table(op)[0]
        return state.with_uncertain((table,)) if table else state


HARMLESS_ROOTS = {"print", "logger", "log", "LOG", "logging", "warnings", "LOGGER", "click", "typer"}


def apply_other_call(state: SchemaState, call: OtherCall, path: Path) -> SchemaState:
    """A statement-level non-`op` call (what the body scan lists; the replay itself uses the
    interpreter's `RawCall`s): literal DDL through a connection makes the tables it names
    uncertain; a call handed `op` may run ops (its string arguments' tables uncertain, else
    said at the call); anything else moves data or nothing and is ignored."""
    root = call.name.split(".")[0]
    method = call.name.rsplit(".", 1)[-1]
    if root in HARMLESS_ROOTS:
        return state
    if method in ("execute", "exec_driver_sql"):
        sql = sql_literal(call.node)
        return apply_sql(state, sql, (path, call.span)) if sql else state
    arguments = [*call.node.args, *(k.value for k in call.node.keywords)]
    if any(isinstance(a, ast.Name) and a.id == "op" for a in arguments):
        tables = tuple(a.value for a in arguments if isinstance(a, ast.Constant) and isinstance(a.value, str))
        return state.with_uncertain(tables) if tables else state.with_opaque((path, call.span))
    return state


def _literal_table_name(call: OpCall) -> str | None:
    args = call.node.args
    if call.batch_table:
        return call.batch_table
    if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str) and call.name != "execute":
        return args[0].value
    for kw in call.node.keywords:
        if kw.arg in ("table_name", "source_table") and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    return None


# op class -> how it changes the schema. `_APPLY` handlers take (state, op, origin); those of
# `_APPLY_TO_TABLE` work on a table that must exist, found by `op_table` (a missing one makes
# the op's table uncertain: created outside the migrations, or by SQL we could not read).
_APPLY: dict[type, Callable[[SchemaState, Any, Origin], SchemaState]] = {}
_APPLY_TO_TABLE: dict[type, Callable[[SchemaState, TableState, Any, Origin], SchemaState]] = {}


def applies(*classes: type, to_table: bool = False) -> Callable:
    """Register the decorated function as what ops of `classes` do to the schema."""
    registry: dict = _APPLY_TO_TABLE if to_table else _APPLY

    def register(fn: Callable) -> Callable:
        for cls in classes:
            registry[cls] = fn
        return fn
    return register


def _apply(state: SchemaState, op: alembic_ops.MigrateOperation, origin: Origin) -> SchemaState:
    """Dispatch on the op's class (the most specific registered one, as isinstance would)."""
    for cls in type(op).__mro__:
        handler = _APPLY.get(cls)
        if handler is not None:
            return handler(state, op, origin)
        if cls in _APPLY_TO_TABLE:
            break
    table_name, schema_name = op_table(op)
    table = state.table(table_name, schema_name) if table_name else None
    if table is None:
        return state.with_uncertain((table_name,)) if table_name else state
    for cls in type(op).__mro__:
        on_table = _APPLY_TO_TABLE.get(cls)
        if on_table is not None:
            return on_table(state, table, op, origin)
    return state  # an op with no effect on the schema we keep (or one we do not model)


@applies(alembic_ops.CreateTableOp)
def _create_table(state: SchemaState, op: alembic_ops.CreateTableOp, origin: Origin) -> SchemaState:
    if op.if_not_exists and state.table(op.table_name, op.schema) is not None:
        return state  # CREATE TABLE IF NOT EXISTS of a table the history made: the old one stays
    # the table is the op's own throwaway one: its columns are shared, not copied
    return state.with_table(TableState.from_table(created_table(op), origin, copy=False))


@applies(alembic_ops.DropTableOp)
def _drop_table(state: SchemaState, op: alembic_ops.DropTableOp, origin: Origin) -> SchemaState:
    if state.table(op.table_name, op.schema) is None and op.if_exists:
        return state  # DROP TABLE IF EXISTS of a table the history does not have: nothing
    if state.table(op.table_name, op.schema) is None:  # made outside the migrations
        return state.with_uncertain((op.table_name,))
    return state.without_table(table_key(op.table_name, op.schema))


@applies(alembic_ops.RenameTableOp)
def _rename_table(state: SchemaState, op: alembic_ops.RenameTableOp, origin: Origin) -> SchemaState:
    old = state.table(op.table_name, op.schema)
    if old is None:
        return state.with_uncertain((op.table_name, op.new_table_name))
    state = state.without_table(old.key).with_table(old.evolve(name=op.new_table_name))
    # foreign keys pointing at the table follow it
    return _renamed_refs(state, None, old.name, {}, op.new_table_name)


@applies(alembic_ops.ExecuteSQLOp)
def _execute(state: SchemaState, op: alembic_ops.ExecuteSQLOp, origin: Origin) -> SchemaState:
    sql = _sql_of(op)
    return apply_sql(state, sql, origin) if isinstance(sql, str) else state


def _sql_of(op: alembic_ops.ExecuteSQLOp) -> Any:
    return op.sqltext if isinstance(op.sqltext, str) else getattr(op.sqltext, "text", None)


@applies(alembic_ops.BulkInsertOp)
def _data_only(state: SchemaState, op: Any, origin: Origin) -> SchemaState:
    return state


@applies(alembic_ops.AddColumnOp, to_table=True)
def _add_column(state: SchemaState, table: TableState, op: alembic_ops.AddColumnOp, origin: Origin) -> SchemaState:
    col = added_column(op)  # never mutated: shared with the op (or an equal one's)
    columns = keyed(table.columns, "column")
    if columns is not None:
        new = table.evolve(columns=columns.without(col.name).appended(ColumnState(col, origin)))
    else:
        new = table.evolve(columns=tuple(c for c in table.columns if c.name != col.name) + (ColumnState(col, origin),))
    if col.index or col.unique:
        name = sa.sql.elements.conv(f"ix_{table.name}_{col.name}") if col.index else None
        idx = IndexRecord(name, (col.name,), bool(col.unique)) if isinstance(col.name, str) \
            else sa.Index(name, col.name, unique=bool(col.unique))
        if col.index:
            indexes = keyed(new.indexes, "index")
            new = new.evolve(indexes=(indexes if indexes is not None else new.indexes) + ((idx, origin),))
        else:
            new = new.evolve(constraints=new.constraints + ((sa.UniqueConstraint(col.name), origin),))
    return state.with_table(new)


@applies(alembic_ops.DropColumnOp, to_table=True)
def _drop_column(state: SchemaState, table: TableState, op: alembic_ops.DropColumnOp, origin: Origin) -> SchemaState:
    name = op.column_name
    if table.column(name) is None:
        return state.with_uncertain((table.name,), _column_hidden(table, name))
    columns = keyed(table.columns, "column")
    return state.with_table(table.evolve(
        columns=columns.without(name) if columns is not None else tuple(c for c in table.columns if c.name != name),
        indexes=tuple((i, o) for i, o in table.indexes if name not in index_columns(i)),
        constraints=tuple((c, o) for c, o in table.constraints if name not in constraint_columns(c)),
    ))


@applies(alembic_ops.AlterColumnOp, to_table=True)
def _alter_column(state: SchemaState, table: TableState, op: alembic_ops.AlterColumnOp, origin: Origin) -> SchemaState:
    current = table.column(op.column_name)
    if current is None:  # a column an op we could not read added: only that column is unknown
        return state.with_uncertain((table.name,), _column_hidden(table, op.column_name, op.modify_name))
    col = current.column._copy()
    if op.modify_type is not None:
        col.type = op.modify_type
    if op.modify_nullable is not None:
        col.nullable = op.modify_nullable
    if op.modify_server_default is not False:
        default = op.modify_server_default
        col.server_default = None if default is None else (
            default if isinstance(default, sa.schema.DefaultClause) else sa.schema.DefaultClause(default))
    if op.modify_comment is not False:
        col.comment = op.modify_comment
    if op.modify_name is not None:
        col.name = col.key = op.modify_name
    keyed_columns = keyed(table.columns, "column")
    if keyed_columns is not None:
        columns: Sequence[ColumnState] = keyed_columns.replaced(current, ColumnState(col, current.origin))
    else:
        columns = tuple(ColumnState(col, current.origin) if c is current else c for c in table.columns)
    state = state.with_table(table.evolve(columns=columns))
    if op.modify_name is not None and op.modify_name != op.column_name:
        # the database renames it in the table's indexes and constraints, and in the
        # foreign keys that point at it
        state = _renamed_refs(state, table.key, table.name, {op.column_name: op.modify_name}, None)
    return state


@applies(alembic_ops.CreateIndexOp, to_table=True)
def _create_index(state: SchemaState, table: TableState, op: alembic_ops.CreateIndexOp, origin: Origin) -> SchemaState:
    if op.if_not_exists and any(i.name == op.index_name for i, _ in table.indexes):
        return state  # CREATE INDEX IF NOT EXISTS of an index the table has: the old one stays
    index = _index_of(op)
    named = index.expressions if type(index) is IndexRecord else [
        e.name if isinstance(e, sa.Column) else e for e in index.expressions if isinstance(e, (sa.Column, str))]
    if any(table.column(c) is None for c in named):
        # on a column the replayed table lacks (added by an op we could not read): the
        # history knows more of this table than we do, about this index
        return state.with_uncertain((table.name,), _hidden_by(table, "create_index", index.name, None)
                                    if isinstance(index.name, str) else None)
    indexes = keyed(table.indexes, "index")
    if indexes is not None and _hashable(index.name):
        return state.with_table(table.evolve(indexes=indexes.without(index.name).appended((index, origin))))
    return state.with_table(table.evolve(indexes=tuple(
        (i, o) for i, o in table.indexes if i.name != index.name) + ((index, origin),)))


@applies(alembic_ops.DropIndexOp, to_table=True)
def _drop_index(state: SchemaState, table: TableState, op: alembic_ops.DropIndexOp, origin: Origin) -> SchemaState:
    indexes = keyed(table.indexes, "index")
    if indexes is not None and _hashable(op.index_name):
        return state.with_table(table.evolve(indexes=indexes.without(op.index_name)))
    return state.with_table(table.evolve(indexes=tuple(
        (i, o) for i, o in table.indexes if i.name != op.index_name)))


@applies(alembic_ops.AddConstraintOp, to_table=True)
def _add_constraint(state: SchemaState, table: TableState, op: alembic_ops.AddConstraintOp,
                    origin: Origin) -> SchemaState:
    constraint = op.to_constraint()
    if isinstance(constraint, sa.PrimaryKeyConstraint):
        cols = set(constraint_columns(constraint))
        columns = []
        for c in table.columns:
            if c.name in cols:
                copy = c.column._copy()
                copy.primary_key, copy.nullable = True, False
                columns.append(ColumnState(copy, c.origin))
            else:
                columns.append(c)
        return state.with_table(table.evolve(columns=tuple(columns)))
    return state.with_table(table.evolve(constraints=table.constraints + ((constraint, origin),)))


@applies(alembic_ops.DropConstraintOp, to_table=True)
def _drop_constraint(state: SchemaState, table: TableState, op: alembic_ops.DropConstraintOp,
                     origin: Origin) -> SchemaState:
    kept = tuple((c, o) for c, o in table.constraints if c.name != op.constraint_name)
    if len(kept) == len(table.constraints) and isinstance(op.constraint_name, str):
        unnamed = _unnamed_constraint(table, op.constraint_name, op.constraint_type)
        if unnamed is not None:
            kept = tuple((c, o) for c, o in table.constraints if c is not unnamed)
    return state.with_table(table.evolve(constraints=kept))


def _name(constraint: sa.Constraint) -> str | None:
    return constraint.name if isinstance(constraint.name, str) else None


_CONSTRAINT_TYPES = {"unique": sa.UniqueConstraint, "foreignkey": sa.ForeignKeyConstraint,
                     "check": sa.CheckConstraint, "primary": sa.PrimaryKeyConstraint}


def _unnamed_constraint(table: TableState, name: str, type_: str | None) -> sa.Constraint | None:
    """The constraint a drop by `name` means when the history created none with that name:
    one created without a name, which the database knows by a name the naming convention of
    env.py's target_metadata or the database itself gave it (`uq_t_a_b`, `t_a_b_key`). The
    one whose columns the name spells, or the only unnamed one of its type; None when that is
    not clear."""
    kind = _CONSTRAINT_TYPES.get(type_ or "", sa.Constraint)
    candidates = [c for c, _ in table.constraints if not isinstance(c.name, str) and isinstance(c, kind)
                  and (type_ == "primary" or not isinstance(c, sa.PrimaryKeyConstraint))]
    spelled = [c for c in candidates if constraint_columns(c) and all(col in name for col in constraint_columns(c))]
    if len(spelled) > 1:  # the longest column list the name spells (uq_t_a_b, not uq_t_a)
        most = max(len(constraint_columns(c)) for c in spelled)
        spelled = [c for c in spelled if len(constraint_columns(c)) == most]
    if len(spelled) == 1:
        return spelled[0]
    return candidates[0] if len(candidates) == 1 and not spelled else None


@applies(alembic_ops.CreateTableCommentOp, to_table=True)
def _comment_table(state: SchemaState, table: TableState, op: alembic_ops.CreateTableCommentOp,
                   origin: Origin) -> SchemaState:
    return state.with_table(table.evolve(comment=op.comment))


@applies(alembic_ops.DropTableCommentOp, to_table=True)
def _uncomment_table(state: SchemaState, table: TableState, op: alembic_ops.DropTableCommentOp,
                     origin: Origin) -> SchemaState:
    return state.with_table(table.evolve(comment=None))


_CREATED_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CREATED_TABLES_LOCK = threading.Lock()
# the same create_table of the same text, evaluated again (its revision replayed again after
# an edit below it, its ops released and evaluated anew): the table made the first time
_CONTENT_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # op -> (text, dialect, outside, n)
_TABLES_BY_CONTENT: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_COLUMNS_BY_CONTENT: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # (see added_column)


def created_table(op: alembic_ops.CreateTableOp) -> sa.Table:
    """`op.to_table()`, built once per op. Alembic attaches the op's own columns to the table
    it builds the first time, and copies them every other time, which leaves out their
    inline `ForeignKey`s: a second replay of the same op (a revision replayed again after an
    edit below it, the safety rules' op-by-op replay) would lose those foreign keys.

    An op evaluated again from the same text (`share_created_tables`) gets the table its
    first evaluation made, as long as that one is alive: a schema state shares the table's
    columns, and a SQLAlchemy Table is a knot of reference cycles (table <-> metadata,
    columns, constraints) that only a full collection frees. Made anew after every edit
    below it, each replaced replay would leave its tables for that collection (measured:
    most of what a long session's frozen objects gained, benchmarks/RESULTS.md); shared,
    an edit makes no new table for a revision whose text it did not change (nor a throwaway
    one: the op's own columns then stay unattached, which the rules reading `op.columns`
    do not tell apart: a column's inline foreign key names the column either way)."""
    with _CREATED_TABLES_LOCK:
        table = _CREATED_TABLES.get(op)
        if table is None:
            key = _CONTENT_KEYS.get(op)
            table = _TABLES_BY_CONTENT.get(key) if key is not None else None
            if table is None:
                table = op.to_table()
                if key is not None:
                    _TABLES_BY_CONTENT[key] = table
            _CREATED_TABLES[op] = table
        return table


def added_column(op: alembic_ops.AddColumnOp) -> sa.Column:
    """The column an add_column op adds, as the schema state keeps it: the one the first
    evaluation of the same text made, while it is alive (see `created_table`: a column
    with a server default or a foreign key is in a cycle with it)."""
    key = _CONTENT_KEYS.get(op)
    if key is None:
        return op.column
    with _CREATED_TABLES_LOCK:
        column = _COLUMNS_BY_CONTENT.get(key)
        if column is None:
            column = _COLUMNS_BY_CONTENT[key] = op.column
        return column


def share_created_tables(script: MigrationScript, evaluation: Evaluation, dialect: str | None) -> None:
    """Key the create_table and add_column ops of `script`'s upgrade by its text, the dialect,
    what other files answered (`Evaluation.outside`: the same text next to other models
    names other tables) and their place among them: the evaluation is a function of those
    (see `created_table`)."""
    made = [ev.op for ev in evaluation.ops if isinstance(ev.op, (alembic_ops.CreateTableOp, alembic_ops.AddColumnOp))]
    if not made:
        return
    text = hashlib.blake2b(script.text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    with _CREATED_TABLES_LOCK:
        for n, op in enumerate(made):
            _CONTENT_KEYS[op] = (text, dialect, evaluation.outside, n)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _index_of(op: alembic_ops.CreateIndexOp) -> sa.Index | IndexRecord:
    """The index a create_index op makes. On plain, distinct column names without dialect
    options (what autogenerate writes) a record of its fields is all the state needs;
    anything else goes through Alembic's `to_index()` (which may refuse it)."""
    columns = op.columns
    names = [c for c in columns if type(c) is str] if type(columns) in (list, tuple) else []
    if not op.kw and names and len(names) == len(columns) and len(set(names)) == len(names):
        return IndexRecord(op.index_name, names, op.unique)
    return op.to_index()


def _renamed_refs(state: SchemaState, key: str | None, table_name: str, columns: Mapping[str, str],
                  new_table_name: str | None) -> SchemaState:
    """Indexes and constraints after a rename: in table `key`, columns renamed per `columns`;
    in every table, foreign keys to `table_name` follow the renamed columns / table."""
    def rename_target(target: str) -> str:
        parts = target.split(".")
        if len(parts) >= 2 and parts[-2] == table_name:
            parts[-1] = columns.get(parts[-1], parts[-1])
            if new_table_name:
                parts[-2] = new_table_name
        return ".".join(parts)

    for table in list(state.tables.values()):
        local = columns if table.key == key else {}
        constraints, changed = [], False
        for constraint, origin in table.constraints:
            cols = constraint_columns(constraint)
            new_cols = [local.get(c, c) for c in cols]
            if isinstance(constraint, sa.ForeignKeyConstraint):
                targets = [e.target_fullname for e in constraint.elements]
                new_targets = [rename_target(t) for t in targets]
                if new_cols != list(cols) or new_targets != targets:
                    constraint = sa.ForeignKeyConstraint(
                        new_cols, new_targets, name=constraint.name, ondelete=constraint.ondelete,
                        onupdate=constraint.onupdate, deferrable=constraint.deferrable,
                        initially=constraint.initially)
                    changed = True
            elif new_cols != list(cols) and isinstance(constraint, sa.UniqueConstraint):
                constraint, changed = sa.UniqueConstraint(*new_cols, name=_name(constraint)), True
            elif new_cols != list(cols) and isinstance(constraint, sa.PrimaryKeyConstraint):
                constraint, changed = sa.PrimaryKeyConstraint(*new_cols, name=_name(constraint)), True
            constraints.append((constraint, origin))
        indexes: list[tuple[sa.Index | IndexRecord, Origin | None]] = []
        for index, origin in table.indexes:
            cols = index_columns(index)
            if local and any(c in local for c in cols):
                indexes.append((IndexRecord(index.name, [local.get(c, c) for c in cols], index.unique, index.kwargs),
                                origin))
                changed = True
            else:
                indexes.append((index, origin))
        if changed:
            state = state.with_table(table.evolve(constraints=tuple(constraints), indexes=tuple(indexes)))
    return state


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class RevisionSchema:
    before: SchemaState
    after: SchemaState
    upgrade: tuple[EvaluatedOp, ...]


class Replay:
    """Schema before/after every revision of one graph, computed on demand and cached.

    The cache is keyed by the revision's script object, which the engine reuses while the
    file's text is unchanged, so a new Replay for a new graph recomputes only what an edit
    can have affected (the edited revision and its descendants)."""

    def __init__(self, graph: RevisionGraph, previous: Replay | None = None, dialect: str | None = None,
                 moved: Iterable[str] = (), outside: Outside | None = None) -> None:
        """`moved`: revisions whose evaluation other files now answer otherwise (a models.py
        edit renamed the table `User.__tablename__` names; the engine's keys tell): stale as
        an edit of their own file would make them. `outside`: what the evaluations may read
        of other files (the engine's open buffers; None: the disk)."""
        self.graph = graph
        self.dialect = dialect  # decides `if op.get_bind().dialect.name == ...` (None: undecided)
        self.outside = outside
        self._results: dict[str, RevisionSchema] = {}
        self._ops: dict[MigrationScript, Evaluation] = {}
        self._released: set[str] = set()  # results kept without their ops (see release)
        if previous is not None:
            for _ in self.take_over(previous, moved=moved):
                pass

    def take_over(self, previous: Replay, step: int = 1 << 62, moved: Iterable[str] = ()) -> Iterator[None]:
        """Keep what `previous` (an earlier graph's replay) computed where nothing below it
        changed (`moved`: as in __init__), yielding every `step` revisions: at 20,000
        revisions this comparison held the server's loop 20-50 ms in one piece (the engine
        makes a new replay in steps)."""
        if previous.dialect != self.dialect:
            return
        moved = set(moved)
        current = {s for r, s in self.graph.by_id.items() if r not in moved}
        self._ops = {s: ops for s, ops in previous._ops.items() if s in current}
        stale = yield from self._changed_since(previous.graph, moved, step)
        graph = self.graph
        for n, (rev, result) in enumerate(previous._results.items(), 1):
            if rev not in stale and rev in graph.by_id:
                self._results[rev] = result
            if n % step == 0:
                yield
        self._released = {r for r in previous._released if r in self._results}

    def _changed_since(self, old: RevisionGraph, moved: set[str], step: int) -> Generator[None, None, set[str]]:
        """Revisions whose replay may differ from `old`'s: the ones whose file or links
        changed, or `moved`, and everything above them. Linear in the size of the graph."""
        new = self.graph
        changed = []
        for n, (r, script) in enumerate(new.by_id.items(), 1):
            if old.by_id.get(r) is not script or r in moved or old.parents.get(r) != new.parents.get(r) \
                    or old.dependencies.get(r) != new.dependencies.get(r):
                changed.append(r)
            if n % step == 0:
                yield
        stale = set(changed)
        todo = list(changed)
        while todo:
            rev = todo.pop()
            for above in new.children.get(rev, []) + new.dependents.get(rev, []):
                if above not in stale:
                    stale.add(above)
                    todo.append(above)
                    if len(stale) % step == 0:
                        yield
        return stale

    def release(self, rev: str) -> None:
        """Keep the schema around a computed revision but forget its evaluated ops (with the
        syntax trees they point into, most of an index's memory). They are evaluated again
        only if an edit below makes the revision stale. The engine releases only files that
        are not open, and features ask for the ops of open files only."""
        result = self._results.get(rev)
        if result is not None:
            self._results[rev] = RevisionSchema(result.before, result.after, ())
            self._released.add(rev)
        script = self.graph.by_id.get(rev)
        if script is not None:
            self._ops.pop(script, None)

    def result(self, rev: str) -> tuple[RevisionSchema, bool] | None:
        """(the schema around `rev`, released?) when computed: what adopt() takes."""
        found = self._results.get(rev)
        return None if found is None else (found, rev in self._released)

    def adopt(self, rev: str, result: RevisionSchema, released: bool) -> None:
        """Take a result computed in another graph where `rev` had the same text and the same
        history below it (the engine keys them by content and ancestry): after an edit and
        its undo, nothing above the edited file is replayed again."""
        if rev not in self._results:
            self._results[rev] = result
            if released:
                self._released.add(rev)

    def computed(self, rev: str) -> bool:
        """Is the schema around `rev` known already (revision() would be a lookup)?"""
        return rev in self._results

    def upgrade_ops(self, rev: str) -> tuple[EvaluatedOp, ...]:
        return self._evaluation(rev).ops

    def _evaluation(self, rev: str) -> Evaluation:
        script = self.graph.by_id[rev]
        if script not in self._ops:
            evaluation = self._ops[script] = evaluate(script, script.upgrade, self.dialect, self.outside)
            share_created_tables(script, evaluation, self.dialect)
        return self._ops[script]

    def revision(self, rev: str) -> RevisionSchema:
        """The schema before and after `rev`, with its evaluated upgrade ops (evaluated
        again when they were released)."""
        result = self.prepare(rev)
        if rev in self._released:
            self._released.discard(rev)
            result = self._results[rev] = RevisionSchema(result.before, result.after, self.upgrade_ops(rev))
        return result

    def prepare(self, rev: str) -> RevisionSchema:
        """The schema before and after `rev`, computed (with everything below it) if not known
        yet; its `upgrade` is empty when released."""
        if rev in self._results:
            return self._results[rev]
        # iterative: ancestors first (histories are thousands of revisions deep)
        todo = [rev]
        seen: set[str] = set()
        while todo:
            r = todo[-1]
            pending = [p for p in self._below(r) if p not in self._results and p not in seen]
            if pending:
                seen.update(pending)
                todo.extend(pending)
                continue
            todo.pop()
            if r not in self._results:
                self._results[r] = self._compute(r)
        return self._results[rev]

    def _compute(self, rev: str) -> RevisionSchema:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return self._replay_one(rev)
            except Exception:  # a bug of ours must not stop the replay of everything above
                path = self.graph.by_id[rev].path
                log.exception("migration-lsp: replaying %s failed (please report this); its effect on "
                              "the schema is treated as unknown", path)
                before = merge_states(self._results[p].after for p in self._below(rev) if p in self._results)
                return RevisionSchema(before, before.with_unknown((path, Span.point(0))), ())

    def _below(self, rev: str) -> tuple[str, ...]:
        return self.graph.parents.get(rev, ()) + self.graph.dependencies.get(rev, ())

    def _fork(self, revs: tuple[str, ...]) -> SchemaState | None:
        """The state where two branches forked (their nearest common ancestor, found by
        walking down from both at once: the cost is the branches' length, not the history's)."""
        if len(revs) != 2:
            return None
        below = lambda r: self.graph.parents.get(r, ()) + self.graph.dependencies.get(r, ())
        seen: list[set[str]] = [{revs[0]}, {revs[1]}]
        fronts = [[revs[0]], [revs[1]]]
        while fronts[0] or fronts[1]:
            for side in (0, 1):
                step = []
                for rev in fronts[side]:
                    if rev in seen[1 - side]:
                        found = self._results.get(rev)
                        return found.after if found is not None else None
                    for parent in below(rev):
                        if parent not in seen[side]:
                            seen[side].add(parent)
                            step.append(parent)
                fronts[side] = step
        return None

    def _replay_one(self, rev: str) -> RevisionSchema:
        parents = tuple(p for p in self._below(rev) if p in self._results)
        before = merge_states((self._results[p].after for p in parents), self._fork(parents))
        evaluation = self._evaluation(rev)
        after = before
        path = self.graph.by_id[rev].path
        for item in evaluation.in_order():
            if isinstance(item, RawCall):
                after = apply_raw_call(after, item, path, self.dialect)
            elif isinstance(item.op, alembic_ops.ExecuteSQLOp) and isinstance(sql := _sql_of(item.op), str):
                after = apply_sql(after, sql, (path, item.span), bool(item.conditional), self.dialect)
            else:
                after = apply_op(after, item, path)
        return RevisionSchema(before, after, evaluation.ops)

    def at_heads(self) -> SchemaState:
        return merge_states(self.prepare(h).after for h in self.graph.heads)


# --------------------------------------------------------------------------- reversal


def with_history(op: alembic_ops.MigrateOperation, before: SchemaState) -> alembic_ops.MigrateOperation:
    """An upgrade op completed with what the schema history knows, so that Alembic's
    `.reverse()` can undo it (a dropped column's definition, an altered column's old type)."""
    O = alembic_ops
    table_name, schema_name = op_table(op)
    table = before.table(table_name, schema_name) if table_name else None
    if table is None or table_name is None:
        return op
    metadata = sa.MetaData()
    sa_table = table.to_table(metadata)
    if isinstance(op, O.DropTableOp):
        return O.DropTableOp.from_table(sa_table)
    if isinstance(op, O.DropColumnOp) and op.column_name in sa_table.c:
        return O.DropColumnOp.from_column_and_tablename(schema_name, table_name, sa_table.c[op.column_name]._copy())
    if isinstance(op, O.DropIndexOp):
        for index in sa_table.indexes:
            if index.name == op.index_name:
                return O.DropIndexOp.from_index(index)
    if isinstance(op, O.DropConstraintOp):
        for constraint in sa_table.constraints:
            if constraint.name == op.constraint_name:
                return drop_constraint_op(constraint)
    if isinstance(op, O.AlterColumnOp) and op.column_name in sa_table.c:
        old = sa_table.c[op.column_name]
        if op.existing_type is None:
            op.existing_type = old.type
        if op.existing_nullable is None:
            op.existing_nullable = old.nullable
        if op.existing_server_default is False and isinstance(old.server_default, sa.DefaultClause) \
                and isinstance(arg := old.server_default.arg, (str, sa.TextClause, sa.ColumnElement)):
            op.existing_server_default = arg
        if op.existing_comment is None and old.comment is not None:
            op.existing_comment = old.comment
    return op


def reversed_upgrade(upgrade: Iterable[EvaluatedOp], before: SchemaState) -> tuple[list, list[EvaluatedOp]]:
    """(ops of a downgrade undoing `upgrade`, in order; the upgrade ops that cannot be undone)."""
    with warnings.catch_warnings():  # SQLAlchemy's remarks on half-typed arguments (as in evaluation)
        warnings.simplefilter("ignore")
        return _reversed_upgrade(upgrade, before)


def _reversed_upgrade(upgrade: Iterable[EvaluatedOp], before: SchemaState) -> tuple[list, list[EvaluatedOp]]:
    state = before
    completed = []
    irreversible: list[EvaluatedOp] = []
    path = Path(".")
    for ev in upgrade:
        if ev.op is None or isinstance(ev.op, (alembic_ops.ExecuteSQLOp, alembic_ops.BulkInsertOp)):
            irreversible.append(ev)
            continue
        op = with_history(ev.op, state)
        try:
            op.reverse()
        except Exception:  # noqa: BLE001 - Alembic cannot reverse it: irreversible
            irreversible.append(ev)
            continue
        completed.append(op)
        state = apply_op(state, ev, path)
    downgrade = alembic_ops.UpgradeOps(ops=completed).reverse()
    return list(downgrade.ops), irreversible
