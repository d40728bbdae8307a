"""Stage `schema`: op calls -> alembic.operations.ops objects, replayed into a schema.

Nothing in a migration file is executed. Arguments are evaluated by a small interpreter
that knows literals and SQLAlchemy's own constructors (types, Column, constraints, text,
func...) reached through the file's `import sqlalchemy as sa`-style imports; the call is
then handed to Alembic's real `Operations` methods with a recorder in place of a database,
so the resulting ops objects are exactly what Alembic builds (and `.reverse()` and the
renderer work on them). Anything else — helper functions, custom types, raw SQL — becomes
an opaque value: it never crashes and never produces false drift.

Replay walks the graph from the bases: the schema before a revision is the union of its
parents' schemas after them; results are cached per revision.
"""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.operations import BatchOperations, Operations
from alembic.operations import ops as alembic_ops
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.schema import SchemaItem
from sqlalchemy.types import TypeEngine

from .core import Span
from .graph import RevisionGraph
from .scripts import Function, MigrationScript, OpCall, OtherCall

SAFE_MODULE_PREFIXES = ("sqlalchemy", "alembic")
DEFAULT_NAMES = {"sa": "sqlalchemy", "sqlalchemy": "sqlalchemy", "op": "alembic.op",
                 "postgresql": "sqlalchemy.dialects.postgresql", "mysql": "sqlalchemy.dialects.mysql",
                 "sqlite": "sqlalchemy.dialects.sqlite"}
SAFE_FUNCTIONS = {"text", "literal_column", "literal", "true", "false", "null", "column", "table",
                  "and_", "or_", "not_", "cast", "desc", "asc", "conv"}


class Opaque:
    """A value we cannot know statically (helper call, custom type, variable...)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __repr__(self) -> str:
        return f"Opaque({self.source!r})"


class OpaqueType(sa.types.NullType):
    """Stands for a column type we cannot evaluate; never compared."""

    cache_ok = True

    def __init__(self, source: str = "?") -> None:
        self.source = source

    def __repr__(self) -> str:
        return f"OpaqueType({self.source!r})"


def is_opaque_type(type_: Any) -> bool:
    return isinstance(type_, (OpaqueType, sa.types.NullType))


# --------------------------------------------------------------------------- evaluation


def _resolve_dotted(path: str) -> Any:
    """Import `path` when it lives in sqlalchemy/alembic: a module or an attribute of one."""
    if not path.startswith(SAFE_MODULE_PREFIXES):
        return Opaque(path)
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                value = getattr(value, attr)
            return value
        except AttributeError:
            return Opaque(path)
    return Opaque(path)


def _callable_ok(fn: Any) -> bool:
    module = getattr(fn, "__module__", "") or ""
    if not module.startswith("sqlalchemy"):
        return False
    if isinstance(fn, type):
        return issubclass(fn, (TypeEngine, SchemaItem, ClauseElement))
    if isinstance(fn, sa.sql.functions._FunctionGenerator):
        return True
    return getattr(fn, "__name__", "") in SAFE_FUNCTIONS


class Evaluator:
    """Evaluates expressions of one migration file without running it."""

    def __init__(self, imports: Iterable[tuple[str, str]], recorder: Recorder | None = None) -> None:
        self.names: dict[str, Any] = {}
        imported = dict(imports) or DEFAULT_NAMES
        for name, path in {**DEFAULT_NAMES, **imported}.items():
            if path in ("alembic.op", "alembic.op.op"):
                if recorder is not None:
                    self.names[name] = recorder
            elif path.startswith(SAFE_MODULE_PREFIXES):
                self.names[name] = _LazyImport(path)
        self.recorder = recorder

    def value(self, node: ast.AST) -> Any:
        try:
            return self._eval(node)
        except RecursionError:
            return Opaque("deep expression")
        except Exception:  # a constructor refusing its arguments: opaque, never fatal
            return Opaque(_source(node))

    def _eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = [self.value(e) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.Dict):
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values) if k is not None}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        if isinstance(node, ast.JoinedStr):
            return Opaque(_source(node))
        if isinstance(node, ast.Name):
            value = self.names.get(node.id)
            if isinstance(value, _LazyImport):
                value = self.names[node.id] = value.load()
            return value if value is not None else Opaque(node.id)
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                return Opaque(_source(node))
            base = self._eval(node.value)
            if isinstance(base, Opaque) or base is self.recorder:
                return Opaque(_source(node))
            module = getattr(base, "__name__", "") if isinstance(base, type(sa)) else getattr(base, "__module__", "")
            if isinstance(base, type(sa)) or (module or "").startswith("sqlalchemy"):
                try:
                    return getattr(base, node.attr)
                except AttributeError:
                    if isinstance(base, type(sa)):  # a submodule not imported yet
                        return _resolve_dotted(f"{base.__name__}.{node.attr}")
                    raise
            return Opaque(_source(node))
        if isinstance(node, ast.Call):
            return self._call(node)
        return Opaque(_source(node))

    def _call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                and node.func.attr == "f" and (self.names.get(node.func.value.id) is self.recorder
                                               or node.func.value.id not in self.names):  # op.f / batch_op.f
            name = self.value(node.args[0]) if node.args else None
            return sa.sql.elements.conv(name) if isinstance(name, str) else Opaque(_source(node))
        fn = self._eval(node.func)
        if isinstance(fn, Opaque) or not _callable_ok(fn):
            return Opaque(_source(node))
        args = [self.value(a) for a in node.args if not isinstance(a, ast.Starred)]
        kwargs = {k.arg: self.value(k.value) for k in node.keywords if k.arg}
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return Opaque(_source(node))
        if fn is sa.Column or (isinstance(fn, type) and issubclass(fn, sa.Column)):
            args = [OpaqueType(a.source) if isinstance(a, Opaque) and i > 0 else a for i, a in enumerate(args)]
            kwargs = {k: v for k, v in kwargs.items() if not isinstance(v, Opaque)}
            if args and isinstance(args[0], Opaque):
                return Opaque(_source(node))
        elif any(isinstance(a, Opaque) for a in args) or any(isinstance(v, Opaque) for v in kwargs.values()):
            return Opaque(_source(node))
        return fn(*args, **kwargs)


def type_from_repr(text: str, module: str) -> TypeEngine:
    """A SQLAlchemy type from its repr (e.g. `JSONB(astext_type=Text())`), evaluated
    statically with the names of sqlalchemy.types and of the type's own module."""
    if not module.startswith("sqlalchemy"):
        return OpaqueType(text)
    names: dict[str, str] = {n: f"sqlalchemy.types.{n}" for n in dir(sa.types) if not n.startswith("_")}
    owner = _resolve_dotted(module)
    if not isinstance(owner, Opaque):
        names.update({n: f"{module}.{n}" for n in dir(owner) if not n.startswith("_")})
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return OpaqueType(text)
    value = Evaluator(names.items()).value(node)
    if isinstance(value, type) and issubclass(value, TypeEngine):
        value = value()
    return value if isinstance(value, TypeEngine) else OpaqueType(text)


class _LazyImport:
    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> Any:
        return _resolve_dotted(self.path)


def _source(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:
        return type(node).__name__


class Recorder(Operations):
    """Alembic's Operations, with `invoke` recording the op instead of running it."""

    def __init__(self) -> None:  # no MigrationContext: nothing is executed
        self.recorded: list[Any] = []

    def invoke(self, operation: Any) -> Any:
        self.recorded.append(operation)
        return operation


class _BatchImpl:
    def __init__(self, table_name: str, schema: str | None) -> None:
        self.table_name = table_name
        self.schema = schema


class BatchRecorder(BatchOperations):
    def __init__(self, recorder: Recorder, table_name: str, schema: str | None = None) -> None:
        self.impl = _BatchImpl(table_name, schema)
        self.recorded = recorder.recorded

    def invoke(self, operation: Any) -> Any:
        self.recorded.append(operation)
        return operation


@dataclass(frozen=True, eq=False)
class EvaluatedOp:
    """One op call of a migration and the Alembic op it builds (None when opaque)."""

    call: OpCall
    op: alembic_ops.MigrateOperation | None
    reason: str = ""

    @property
    def span(self) -> Span:
        return self.call.span


def evaluate_function(script: MigrationScript, function: Function | None) -> list[EvaluatedOp]:
    """Every op call of one function, evaluated (SQLAlchemy's warnings about odd arguments
    in half-typed code are silenced: they are the editor's business, not a log's)."""
    if function is None:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _evaluate_function(script, function)


def _evaluate_function(script: MigrationScript, function: Function) -> list[EvaluatedOp]:
    recorder = Recorder()
    evaluator = Evaluator(script.imports, recorder)
    out = []
    for call in function.ops:
        if call.name == "batch_alter_table":
            continue
        out.append(_evaluate_call(evaluator, recorder, call))
    return out


def _evaluate_call(evaluator: Evaluator, recorder: Recorder, call: OpCall) -> EvaluatedOp:
    node = call.node
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        return EvaluatedOp(call, None, "*args / **kwargs")
    args = [evaluator.value(a) for a in node.args]
    kwargs = {k.arg: evaluator.value(k.value) for k in node.keywords}
    if call.batch_table is not None:
        if not call.batch_table:
            return EvaluatedOp(call, None, "batch table name is not a literal")
        target: Any = BatchRecorder(recorder, call.batch_table)
    else:
        target = recorder
    method = getattr(target, call.name, None)
    if method is None or call.name.startswith("_"):
        return EvaluatedOp(call, None, f"unknown operation {call.name}")
    if any(isinstance(a, Opaque) for a in args[:2]):
        return EvaluatedOp(call, None, "table or column name is not a literal")
    kwargs = {k: v for k, v in kwargs.items() if not isinstance(v, Opaque)}
    args = [OpaqueType(a.source) if isinstance(a, Opaque) else a for a in args]
    before = len(recorder.recorded)
    try:
        method(*args, **kwargs)
    except Exception as exc:  # wrong arguments for this Alembic version, half-typed call...
        return EvaluatedOp(call, None, f"{type(exc).__name__}: {exc}")
    if len(recorder.recorded) == before or not isinstance(recorder.recorded[-1], alembic_ops.MigrateOperation):
        return EvaluatedOp(call, None, "not an operation")
    return EvaluatedOp(call, recorder.recorded[-1])


# --------------------------------------------------------------------------- schema state


Origin = tuple[Path, Span]


@dataclass(frozen=True)
class ColumnState:
    column: sa.Column  # private copy, never attached to a table we hand out
    origin: Origin | None = None

    @property
    def name(self) -> str:
        return self.column.name


@dataclass(frozen=True)
class TableState:
    """One table at one point in history; replaced, never mutated."""

    name: str
    schema: str | None
    columns: tuple[ColumnState, ...]
    constraints: tuple[tuple[sa.Constraint, Origin | None], ...] = ()
    indexes: tuple[tuple[sa.Index, Origin | None], ...] = ()
    comment: str | None = None
    origin: Origin | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def column(self, name: str) -> ColumnState | None:
        for col in self.columns:
            if col.name == name:
                return col
        return None

    def to_table(self, metadata: sa.MetaData) -> sa.Table:
        cols = [c.column._copy() for c in self.columns]
        table = sa.Table(self.name, metadata, *cols, schema=self.schema, comment=self.comment)
        names = {c.name for c in cols}
        for constraint, _ in self.constraints:
            if isinstance(constraint, sa.PrimaryKeyConstraint):
                continue
            copy = _copy_constraint(constraint, names)
            if copy is not None:
                table.append_constraint(copy)
        for index, _ in self.indexes:
            cols_ = [table.c[n] for n in _index_columns(index) if n in table.c]
            if cols_ and len(cols_) == len(_index_columns(index)):
                sa.Index(index.name, *cols_, unique=index.unique, **index.kwargs)
        return table

    @classmethod
    def from_table(cls, table: sa.Table, origin: Origin | None = None,
                   column_origins: Mapping[str, Origin] | None = None) -> TableState:
        column_origins = column_origins or {}
        columns = tuple(ColumnState(c._copy(), column_origins.get(c.name, origin)) for c in table.columns)
        constraints = tuple((c, origin) for c in table.constraints)
        indexes = tuple((i, origin) for i in table.indexes)
        return cls(table.name, table.schema, columns, constraints, indexes, table.comment, origin)


def _index_columns(index: sa.Index) -> tuple[str, ...]:
    names = []
    for expr in index.expressions:
        if isinstance(expr, sa.Column):
            names.append(expr.name)
        elif isinstance(expr, str):
            names.append(expr)
        elif hasattr(expr, "name") and isinstance(getattr(expr, "name"), str):
            names.append(expr.name)
        else:
            names.append(str(expr))
    return tuple(names)


def constraint_columns(constraint: sa.Constraint) -> tuple[str, ...]:
    try:
        cols = list(constraint.columns.keys())
        if cols:
            return tuple(cols)
    except Exception:
        pass
    return tuple(getattr(constraint, "_pending_colargs", None) or ())


def _copy_constraint(constraint: sa.Constraint, names: set[str]) -> sa.Constraint | None:
    cols = constraint_columns(constraint)
    if any(c not in names for c in cols):
        return None
    if isinstance(constraint, sa.UniqueConstraint):
        return sa.UniqueConstraint(*cols, name=constraint.name)
    if isinstance(constraint, sa.ForeignKeyConstraint):
        return sa.ForeignKeyConstraint(
            list(cols), [e.target_fullname for e in constraint.elements], name=constraint.name,
            ondelete=constraint.ondelete, onupdate=constraint.onupdate)
    if isinstance(constraint, sa.CheckConstraint):
        return sa.CheckConstraint(constraint.sqltext, name=constraint.name)
    return None


@dataclass(frozen=True)
class SchemaState:
    """All tables at one revision: a mapping shared structurally between revisions."""

    tables: Mapping[str, TableState] = field(default_factory=dict)
    # tables whose shape we cannot know (raw DDL, helpers): never reported as drift
    uncertain: frozenset[str] = frozenset()
    # anything at all may have happened (a helper call we cannot follow)
    unknown: tuple[Origin, ...] = ()

    def table(self, name: str, schema: str | None = None) -> TableState | None:
        return self.tables.get(f"{schema}.{name}" if schema else name)

    def with_table(self, table: TableState) -> SchemaState:
        return replace(self, tables={**self.tables, table.key: table})

    def without_table(self, key: str) -> SchemaState:
        tables = dict(self.tables)
        tables.pop(key, None)
        return replace(self, tables=tables)

    def to_metadata(self) -> sa.MetaData:
        metadata = sa.MetaData()
        for table in self.tables.values():
            table.to_table(metadata)
        return metadata


def merge_states(states: Iterable[SchemaState]) -> SchemaState:
    """The schema where several branches meet: the union of their tables."""
    states = list(states)
    if not states:
        return SchemaState()
    if len(states) == 1:
        return states[0]
    tables: dict[str, TableState] = {}
    for state in states:
        for key, table in state.tables.items():
            if key not in tables:
                tables[key] = table
            elif tables[key] is not table:
                tables[key] = _union(tables[key], table)
    return SchemaState(tables, frozenset().union(*(s.uncertain for s in states)),
                       tuple(o for s in states for o in s.unknown))


def _union(a: TableState, b: TableState) -> TableState:
    """Two branches changed the same table: keep what either added."""
    have = {c.name for c in a.columns}
    index_names = {i.name for i, _ in a.indexes}
    constraint_keys = {_constraint_key(c) for c, _ in a.constraints}
    return replace(
        a,
        columns=a.columns + tuple(c for c in b.columns if c.name not in have),
        indexes=a.indexes + tuple((i, o) for i, o in b.indexes if i.name not in index_names),
        constraints=a.constraints + tuple((c, o) for c, o in b.constraints if _constraint_key(c) not in constraint_keys),
    )


def _constraint_key(constraint: sa.Constraint) -> tuple:
    return (type(constraint).__name__, constraint.name, constraint_columns(constraint))


_DDL_TABLE = re.compile(r"\b(?:TABLE|INDEX\s+\S+\s+ON|INTO|UPDATE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)", re.I)
_DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|RENAME|COMMENT)\b", re.I | re.M)


def op_table(op: Any) -> tuple[str | None, str | None]:
    """(table name, schema) an op works on; `create_foreign_key` calls them source_table and
    source_schema, every other op table_name and schema."""
    name = getattr(op, "table_name", None)
    if name is not None:
        return name, getattr(op, "schema", None)
    name = getattr(op, "source_table", None)
    return name, (getattr(op, "kw", None) or {}).get("source_schema")


def apply_op(state: SchemaState, ev: EvaluatedOp, path: Path) -> SchemaState:
    """The schema after one evaluated op. Opaque ops mark what they may touch as uncertain."""
    op = ev.op
    origin: Origin = (path, ev.span)
    if ev.call.conditional and op is not None:
        # it may not run (a dialect check, `if not exists`...): apply it, but never report on it
        table = op_table(op)[0] or _literal_table_name(ev.call)
        state = _apply_safely(state, op, origin)
        return replace(state, uncertain=state.uncertain | {table}) if table else state
    if op is None:
        table = _literal_table_name(ev.call)
        if table:
            return replace(state, uncertain=state.uncertain | {table})
        return replace(state, unknown=state.unknown + (origin,))
    return _apply_safely(state, op, origin)


def _apply_safely(state: SchemaState, op: alembic_ops.MigrateOperation, origin: Origin) -> SchemaState:
    try:
        return _apply(state, op, origin)
    except Exception:  # an op inconsistent with the history (column already dropped...)
        table = op_table(op)[0]
        return replace(state, uncertain=state.uncertain | {table}) if table else state


HARMLESS_ROOTS = {"print", "logger", "log", "LOG", "logging", "warnings", "LOGGER", "click", "typer"}
DATA_METHODS = {"execute", "commit", "flush", "add", "add_all", "query", "close", "begin", "merge", "delete",
                "bulk_insert_mappings", "bulk_update_mappings", "bulk_save_objects", "scalar", "scalars",
                "info", "debug", "warning", "error", "exec_driver_sql", "get_bind", "Session", "sessionmaker"}


def apply_other_call(state: SchemaState, call: OtherCall, path: Path) -> SchemaState:
    """A non-`op` call in upgrade(): raw SQL may touch tables it names; a helper we cannot
    follow may do anything (then model drift is not reported rather than guessed)."""
    root = call.name.split(".")[0]
    method = call.name.rsplit(".", 1)[-1]
    if root in HARMLESS_ROOTS:
        return state
    if method in ("execute", "exec_driver_sql"):
        sql = _literal_sql(call.node)
        if sql and _DDL.search(sql):
            return replace(state, uncertain=state.uncertain | set(_DDL_TABLE.findall(sql)))
        return state
    if method in DATA_METHODS:
        return state
    return replace(state, unknown=state.unknown + ((path, call.span),))


def _literal_sql(node: ast.Call) -> str | None:
    if not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Call) and arg.args:  # sa.text("...")
        arg = arg.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return None


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


def _apply(state: SchemaState, op: alembic_ops.MigrateOperation, origin: Origin) -> SchemaState:
    O = alembic_ops
    if isinstance(op, O.CreateTableOp):
        table = op.to_table()
        return state.with_table(TableState.from_table(table, origin))
    if isinstance(op, O.DropTableOp):
        if state.table(op.table_name, op.schema) is None:  # made outside the migrations
            return replace(state, uncertain=state.uncertain | {op.table_name})
        return state.without_table(_key(op.table_name, op.schema))
    if isinstance(op, O.RenameTableOp):
        old = state.table(op.table_name, op.schema)
        if old is None:
            return replace(state, uncertain=state.uncertain | {op.table_name, op.new_table_name})
        state = state.without_table(old.key).with_table(replace(old, name=op.new_table_name))
        # foreign keys pointing at the table follow it
        return _renamed_refs(state, None, old.name, {}, op.new_table_name)
    if isinstance(op, O.ExecuteSQLOp):
        sql = op.sqltext if isinstance(op.sqltext, str) else str(getattr(op.sqltext, "text", ""))
        if _DDL.search(sql):
            return replace(state, uncertain=state.uncertain | set(_DDL_TABLE.findall(sql)))
        return state
    if isinstance(op, (O.BulkInsertOp,)):
        return state
    table_name, schema_name = op_table(op)
    table = state.table(table_name, schema_name) if table_name else None
    if table is None:
        if table_name:
            return replace(state, uncertain=state.uncertain | {table_name})
        return state
    if isinstance(op, O.AddColumnOp):
        col = op.column._copy()
        new = replace(table, columns=tuple(c for c in table.columns if c.name != col.name) + (ColumnState(col, origin),))
        if col.index or col.unique:
            idx = sa.Index(sa.sql.elements.conv(f"ix_{table.name}_{col.name}") if col.index else None, col.name,
                           unique=bool(col.unique))
            if col.index:
                new = replace(new, indexes=new.indexes + ((idx, origin),))
            else:
                new = replace(new, constraints=new.constraints + ((sa.UniqueConstraint(col.name), origin),))
        return state.with_table(new)
    if isinstance(op, O.DropColumnOp):
        name = op.column_name
        if table.column(name) is None:
            return replace(state, uncertain=state.uncertain | {table.name})
        return state.with_table(replace(
            table,
            columns=tuple(c for c in table.columns if c.name != name),
            indexes=tuple((i, o) for i, o in table.indexes if name not in _index_columns(i)),
            constraints=tuple((c, o) for c, o in table.constraints if name not in constraint_columns(c)),
        ))
    if isinstance(op, O.AlterColumnOp):
        current = table.column(op.column_name)
        if current is None:
            return replace(state, uncertain=state.uncertain | {table.name})
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
        columns = tuple(ColumnState(col, current.origin) if c is current else c for c in table.columns)
        state = state.with_table(replace(table, columns=columns))
        if op.modify_name is not None and op.modify_name != op.column_name:
            # the database renames it in the table's indexes and constraints, and in the
            # foreign keys that point at it
            state = _renamed_refs(state, table.key, table.name, {op.column_name: op.modify_name}, None)
        return state
    if isinstance(op, O.CreateIndexOp):
        index = op.to_index()
        return state.with_table(replace(table, indexes=tuple(
            (i, o) for i, o in table.indexes if i.name != index.name) + ((index, origin),)))
    if isinstance(op, O.DropIndexOp):
        return state.with_table(replace(table, indexes=tuple(
            (i, o) for i, o in table.indexes if i.name != op.index_name)))
    if isinstance(op, O.AddConstraintOp):
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
            return state.with_table(replace(table, columns=tuple(columns)))
        return state.with_table(replace(table, constraints=table.constraints + ((constraint, origin),)))
    if isinstance(op, O.DropConstraintOp):
        return state.with_table(replace(table, constraints=tuple(
            (c, o) for c, o in table.constraints if c.name != op.constraint_name)))
    if isinstance(op, O.CreateTableCommentOp):
        return state.with_table(replace(table, comment=op.comment))
    if isinstance(op, O.DropTableCommentOp):
        return state.with_table(replace(table, comment=None))
    return state


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
                constraint, changed = sa.UniqueConstraint(*new_cols, name=constraint.name), True
            elif new_cols != list(cols) and isinstance(constraint, sa.PrimaryKeyConstraint):
                constraint, changed = sa.PrimaryKeyConstraint(*new_cols, name=constraint.name), True
            constraints.append((constraint, origin))
        indexes = []
        for index, origin in table.indexes:
            cols = _index_columns(index)
            if local and any(c in local for c in cols):
                index = sa.Index(index.name, *[local.get(c, c) for c in cols], unique=index.unique, **index.kwargs)
                changed = True
            indexes.append((index, origin))
        if changed:
            state = state.with_table(replace(table, constraints=tuple(constraints), indexes=tuple(indexes)))
    return state


def _key(name: str, schema: str | None) -> str:
    return f"{schema}.{name}" if schema else name


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class RevisionSchema:
    before: SchemaState
    after: SchemaState
    upgrade: tuple[EvaluatedOp, ...]


class Replay:
    """Schema before/after every revision of one graph, computed on demand and cached.

    The cache is keyed by the revision's script object, which the engine reuses while the
    file's text is unchanged, so a new Replay for a new graph recomputes only what an edit
    can have affected (the edited revision and its descendants)."""

    def __init__(self, graph: RevisionGraph, previous: Replay | None = None) -> None:
        self.graph = graph
        self._results: dict[str, RevisionSchema] = {}
        self._ops: dict[MigrationScript, tuple[EvaluatedOp, ...]] = {}
        if previous is not None:
            current = set(graph.by_id.values())
            self._ops = {s: ops for s, ops in previous._ops.items() if s in current}
            stale = self._changed_since(previous.graph)
            for rev, result in previous._results.items():
                if rev not in stale and rev in graph.by_id:
                    self._results[rev] = result

    def _changed_since(self, old: RevisionGraph) -> set[str]:
        """Revisions whose replay may differ from `old`'s: the ones whose file or links
        changed, and everything above them. Linear in the size of the graph."""
        new = self.graph
        changed = [r for r, script in new.by_id.items()
                   if old.by_id.get(r) is not script or old.parents.get(r) != new.parents.get(r)
                   or old.dependencies.get(r) != new.dependencies.get(r)]
        stale = set(changed)
        todo = list(changed)
        while todo:
            rev = todo.pop()
            for above in new.children.get(rev, []) + new.dependents.get(rev, []):
                if above not in stale:
                    stale.add(above)
                    todo.append(above)
        return stale

    def upgrade_ops(self, rev: str) -> tuple[EvaluatedOp, ...]:
        script = self.graph.by_id[rev]
        if script not in self._ops:
            self._ops[script] = tuple(evaluate_function(script, script.upgrade))
        return self._ops[script]

    def revision(self, rev: str) -> RevisionSchema:
        if rev in self._results:
            return self._results[rev]
        # iterative: ancestors first (histories are thousands of revisions deep)
        order: list[str] = []
        todo = [rev]
        seen: set[str] = set()
        while todo:
            r = todo[-1]
            pending = [p for p in self.graph.parents.get(r, ()) + self.graph.dependencies.get(r, ())
                       if p not in self._results and p not in seen]
            if pending:
                seen.update(pending)
                todo.extend(pending)
                continue
            todo.pop()
            if r not in self._results:
                order.append(r)
                self._results[r] = self._compute(r)
        return self._results[rev]

    def _compute(self, rev: str) -> RevisionSchema:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._replay_one(rev)

    def _replay_one(self, rev: str) -> RevisionSchema:
        below = self.graph.parents.get(rev, ()) + self.graph.dependencies.get(rev, ())
        before = merge_states(self._results[p].after for p in below if p in self._results)
        ops = self.upgrade_ops(rev)
        after = before
        path = self.graph.by_id[rev].path
        for ev in ops:
            after = apply_op(after, ev, path)
        upgrade = self.graph.by_id[rev].upgrade
        for call in upgrade.other_calls if upgrade else ():
            after = apply_other_call(after, call, path)
        return RevisionSchema(before, after, ops)

    def at_heads(self) -> SchemaState:
        return merge_states(self.revision(h).after for h in self.graph.heads)


# --------------------------------------------------------------------------- reversal


def with_history(op: alembic_ops.MigrateOperation, before: SchemaState) -> alembic_ops.MigrateOperation:
    """An upgrade op completed with what the schema history knows, so that Alembic's
    `.reverse()` can undo it (a dropped column's definition, an altered column's old type)."""
    O = alembic_ops
    table_name, schema_name = op_table(op)
    table = before.table(table_name, schema_name) if table_name else None
    if table is None:
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
                return O.DropConstraintOp.from_constraint(constraint)
    if isinstance(op, O.AlterColumnOp) and op.column_name in sa_table.c:
        old = sa_table.c[op.column_name]
        if op.existing_type is None:
            op.existing_type = old.type
        if op.existing_nullable is None:
            op.existing_nullable = old.nullable
        if op.existing_server_default is False and old.server_default is not None:
            op.existing_server_default = old.server_default.arg
        if op.existing_comment is None and old.comment is not None:
            op.existing_comment = old.comment
    return op


def reversed_upgrade(upgrade: Iterable[EvaluatedOp], before: SchemaState) -> tuple[list, list[EvaluatedOp]]:
    """(ops of a downgrade undoing `upgrade`, in order; the upgrade ops that cannot be undone)."""
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
        except Exception:
            irreversible.append(ev)
            continue
        completed.append(op)
        state = apply_op(state, ev, path)
    downgrade = alembic_ops.UpgradeOps(ops=completed).reverse()
    return list(downgrade.ops), irreversible
