"""Stage `schema`, part 1: static evaluation of expressions and of one op call.

Nothing in a migration file is executed. Arguments are evaluated by a small interpreter
that knows literals and SQLAlchemy's own constructors (types, Column, constraints, text,
func...) reached through the file's `import sqlalchemy as sa`-style imports; the call is
then handed to Alembic's real `Operations` methods with a recorder in place of a database,
so the resulting ops objects are exactly what Alembic builds (and `.reverse()` and the
renderer work on them). Anything else — custom types, calls into other modules, raw SQL
held in variables — becomes an opaque value: it never crashes and never produces false drift.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any

import alembic
import sqlalchemy as sa
from alembic.operations import BatchOperations, Operations
from alembic.operations import ops as alembic_ops
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.schema import SchemaItem
from sqlalchemy.types import TypeEngine

from .core import Span
from .scripts import SAFE_PACKAGES, OpCall

DEFAULT_NAMES = {"sa": "sqlalchemy", "sqlalchemy": "sqlalchemy", "op": "alembic.op",
                 "postgresql": "sqlalchemy.dialects.postgresql", "mysql": "sqlalchemy.dialects.mysql",
                 "sqlite": "sqlalchemy.dialects.sqlite"}
SAFE_FUNCTIONS = {"text", "literal_column", "literal", "true", "false", "null", "column", "table",
                  "and_", "or_", "not_", "cast", "desc", "asc", "conv",
                  # methods of a SQLAlchemy type that build another type (Integer().with_variant(...))
                  "with_variant", "evaluates_none"}


class Opaque:
    """A value we cannot know statically (helper call, custom type, variable...). Its source
    text is made from the syntax node on demand (most opaque values are never shown)."""

    __slots__ = ("_source",)

    def __init__(self, source: str | ast.AST) -> None:
        self._source = source

    @property
    def source(self) -> str:
        if not isinstance(self._source, str):
            self._source = source_text(self._source)
        return self._source

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



def in_safe_package(name: str) -> bool:
    """Is `name` sqlalchemy, alembic or a module inside them? An exact package match:
    `sqlalchemy_utils` or `alembic_helpers` (the project's own code) is not."""
    return name.partition(".")[0] in SAFE_PACKAGES


# where the installed packages live: the ones this process imported (`sa`, `alembic`)
_PACKAGE_DIRS = {name: os.path.realpath(os.path.dirname(module.__file__ or ""))
                 for name, module in (("sqlalchemy", sa), ("alembic", alembic))}
# parts of the installed packages that are not a migration's business and do things on
# import (test-suite plugins, the `alembic init` templates' env.py, `python -m alembic`)
_UNSAFE_PARTS = frozenset({"testing", "templates", "provision"})


@lru_cache(maxsize=4096)
def _from_installed_package(name: str, origin: str | None) -> bool:
    """Is the file `origin` of module `name` inside the installed sqlalchemy / alembic
    package directory (not a look-alike `sqlalchemy/` folder of the workspace)?"""
    root = _PACKAGE_DIRS.get(name.partition(".")[0])
    if not root or not origin:
        return False
    return os.path.realpath(origin).startswith(root + os.sep)


def import_safe_module(name: str) -> ModuleType | None:
    """The module `name` when it is a public module of the installed sqlalchemy / alembic
    (imported now if needed), else None: nothing else is ever imported for a migration."""
    parts = name.split(".")
    if parts[0] not in SAFE_PACKAGES or any(
            not part.isidentifier() or part.startswith("_") or part in _UNSAFE_PARTS for part in parts):
        return None
    if len(parts) > 1 and import_safe_module(name.rpartition(".")[0]) is None:
        return None  # (parents first: finding a module's spec imports its parents)
    module = sys.modules.get(name)
    if module is None:
        try:
            spec = importlib.util.find_spec(name)
        except Exception:  # noqa: BLE001 - a parent that is not a package, ...
            return None
        if spec is None or not _from_installed_package(name, spec.origin):
            return None  # not found, a namespace package, a file elsewhere
        try:
            module = importlib.import_module(name)
        except (Exception, SystemExit):  # noqa: BLE001 - a module of sqlalchemy/alembic failing on import
            return None
    if not isinstance(module, ModuleType) or not _from_installed_package(name, getattr(module, "__file__", None)):
        return None
    return module


def resolve_dotted(path: str) -> Any:
    """A module of sqlalchemy/alembic (see import_safe_module) or an attribute of one."""
    if not in_safe_package(path):
        return Opaque(path)
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        value: Any = import_safe_module(".".join(parts[:cut]))
        if value is None:
            continue
        try:
            for attr in parts[cut:]:
                if attr.startswith("_"):
                    return Opaque(path)
                value = getattr(value, attr)
            return value
        except AttributeError:
            return Opaque(path)
    return Opaque(path)


def _from_sqlalchemy(obj: Any) -> bool:
    """Does `obj` (a class, a function, an instance) come from the installed SQLAlchemy: its
    `__module__` is in the package (exactly: not `sqlalchemy_utils.types`) and that module
    was loaded from there?"""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or not (module == "sqlalchemy" or module.startswith("sqlalchemy.")):
        return False
    loaded = sys.modules.get(module)
    return isinstance(loaded, ModuleType) and _from_installed_package(module, getattr(loaded, "__file__", None))


_CALLABLE_OK: dict[Any, bool] = {}  # classes and functions of sqlalchemy: fixed for the process


LOCAL_TYPE = "_migration_lsp_local_type"  # the mark of a type a migration declares (interpret.local_type)


def callable_ok(fn: Any) -> bool:
    """May the evaluators call `fn`: a SQLAlchemy type, schema item or clause class, or one of
    its SAFE_FUNCTIONS, loaded from the installed SQLAlchemy (never anything of the project)."""
    if isinstance(fn, type) and LOCAL_TYPE in fn.__dict__:
        return True  # a SQLAlchemy type subclassed by name and DDL only (not cached: one per evaluation)
    if isinstance(fn, (type, FunctionType, BuiltinFunctionType)):
        try:
            return _CALLABLE_OK[fn]
        except KeyError:
            ok = _CALLABLE_OK[fn] = _check_callable(fn)
            return ok
        except TypeError:  # unhashable
            pass
    return _check_callable(fn)


def _check_callable(fn: Any) -> bool:
    if not _from_sqlalchemy(fn):
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
            elif in_safe_package(path):
                self.names[name] = LazyImport(path)
        self.recorder = recorder

    def value(self, node: ast.AST) -> Any:
        try:
            return self._eval(node)
        except RecursionError:
            return Opaque("deep expression")
        except Exception:  # noqa: BLE001 - a constructor refusing its arguments: opaque, never fatal
            return Opaque(node)

    def _eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):  # the two most common kinds first
            return node.value
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = [self.value(e) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.Dict):
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values) if k is not None}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
                and isinstance(node.operand.value, (int, float, complex)):
            return -node.operand.value
        if isinstance(node, ast.JoinedStr):
            return Opaque(node)
        if isinstance(node, ast.Name):
            value = self.names.get(node.id)
            if isinstance(value, LazyImport):
                value = self.names[node.id] = value.load()
            return value if value is not None else Opaque(node.id)
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                return Opaque(node)
            return self._attribute(node, self._eval(node.value))
        return Opaque(node)

    def _attribute(self, node: ast.Attribute, base: Any) -> Any:
        """`base.attr`, for a module or an object of SQLAlchemy only."""
        if node.attr.startswith("_") or isinstance(base, Opaque) or base is self.recorder:
            return Opaque(node)
        is_module = isinstance(base, ModuleType)
        if is_module or _from_sqlalchemy(base):
            try:
                return getattr(base, node.attr)
            except AttributeError:
                if is_module:  # a submodule not imported yet
                    return resolve_dotted(f"{base.__name__}.{node.attr}")
                raise
        return Opaque(node)

    def _call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.attr == "f" \
                and (self.names.get(func.value.id) is self.recorder
                     or func.value.id not in self.names):  # op.f / batch_op.f
            name = self.value(node.args[0]) if node.args else None
            return sa.sql.elements.conv(name) if isinstance(name, str) else Opaque(node)
        fn = self._eval(func)
        if isinstance(fn, Opaque) or not callable_ok(fn):
            return Opaque(node)
        arguments = self._arguments(node)
        if arguments is None:
            return Opaque(node)
        return self._construct(node, fn, *arguments)

    def _construct(self, node: ast.Call, fn: Any, args: list, kwargs: dict) -> Any:
        """Call `fn`, a constructor or function of SQLAlchemy, on evaluated arguments."""
        if fn is sa.Column or (isinstance(fn, type) and issubclass(fn, sa.Column)):
            args = [_opaque_column_argument(node.args[i], a) if isinstance(a, Opaque) and i > 0 else a
                    for i, a in enumerate(args)]
            kwargs = {k: v for k, v in kwargs.items() if not isinstance(v, Opaque)}
            if args and isinstance(args[0], Opaque):
                return Opaque(node)
        elif any(isinstance(a, Opaque) for a in args) or any(isinstance(v, Opaque) for v in kwargs.values()):
            return Opaque(node)
        return fn(*args, **kwargs)

    def _arguments(self, node: ast.Call) -> tuple[list, dict] | None:
        """The call's positional and keyword argument values; None for `*args` / `**kw`."""
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return None
        return [self.value(a) for a in node.args], {k.arg: self.value(k.value) for k in node.keywords}


def _opaque_column_argument(node: ast.expr, value: Opaque) -> Any:
    """A Column argument we could not evaluate: `sa.Computed(<expression>)` is a generated
    column whose expression Alembic never compares (it only warns), kept as its source text;
    anything else stands for the column's type."""
    func = node.func if isinstance(node, ast.Call) else None
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name == "Computed" and isinstance(node, ast.Call) and node.args:
        persisted = next((k.value.value for k in node.keywords if k.arg == "persisted"
                          and isinstance(k.value, ast.Constant) and isinstance(k.value.value, bool)), None)
        return sa.Computed(sa.text(source_text(node.args[0])), persisted=persisted)
    return OpaqueType(value.source)


def type_from_repr(text: str, module: str) -> TypeEngine:
    """A SQLAlchemy type from its repr (e.g. `JSONB(astext_type=Text())`), evaluated
    statically with the names of sqlalchemy.types and of the type's own module."""
    if not (isinstance(module, str) and (module == "sqlalchemy" or module.startswith("sqlalchemy."))):
        return OpaqueType(text)  # (the module name comes from the models child's output)
    names: dict[str, str] = {n: f"sqlalchemy.types.{n}" for n in dir(sa.types) if not n.startswith("_")}
    owner = resolve_dotted(module)
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


class LazyImport:
    """A name the file imports from sqlalchemy/alembic, imported only when an evaluation uses it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> Any:
        return resolve_dotted(self.path)


def source_text(node: ast.AST) -> str:
    """The source of a node, for an Opaque value's text (a node ast cannot unparse: its kind)."""
    try:
        return ast.unparse(node)
    except Exception:  # noqa: BLE001 - a node ast cannot unparse: named by its kind
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
    impl: Any  # a _BatchImpl: all that BatchOperations reads of it is table_name and schema

    def __init__(self, recorder: Recorder, table_name: str, schema: str | None = None) -> None:
        self.impl = _BatchImpl(table_name, schema)
        self.recorded = recorder.recorded

    def invoke(self, operation: Any) -> Any:
        self.recorded.append(operation)
        return operation


@dataclass(frozen=True, eq=False)
class EvaluatedOp:
    """One op call of a migration and the Alembic op it builds (None when opaque).
    `conditional`: the op may not run, or run more than once (an `if` that cannot be decided
    statically, a loop over something unknown, an `except` branch); None takes the call's
    own (syntactic) flag. `table`: the table the call works on when it could be evaluated,
    also for an opaque op (what becomes uncertain)."""

    call: OpCall
    op: alembic_ops.MigrateOperation | None
    reason: str = ""
    conditional: bool | None = None
    table: str | None = None
    # when every test that makes it conditional asks whether a table exists ("create if
    # missing": `if "t" not in inspector.get_table_names():`): (table, exists) pairs that the
    # replay decides with the schema it has at this point
    guards: tuple[tuple[str, bool], ...] = ()
    # a create_table whose every unreadable argument is a column with a literal name: the
    # table is made (without them), only these columns (and what they may bring) are unknown
    unread_columns: tuple[str, ...] = ()
    # keyword arguments (other than types) that could not be evaluated: left out of the op
    unread_keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.conditional is None:
            object.__setattr__(self, "conditional", self.call.conditional)

    @property
    def span(self) -> Span:
        return self.call.span


_REQUIRED_NAMES = ("table_name", "source_table", "referent_table", "new_table_name", "column_name")
_OPTIONAL_NAMES = ("modify_name", "new_column_name", "constraint_name", "index_name", "schema")
TYPE_FIELDS = ("modify_type", "existing_type")  # an op's fields that must hold a TypeEngine
_FLAGS = ("modify_nullable", "existing_nullable", "unique", "if_exists", "if_not_exists")


def well_typed(op: alembic_ops.MigrateOperation) -> bool:
    """Alembic stores whatever it is given; the replay keys tables and columns by name and
    tests flags for truth, so a name that is not a string, or a flag or column nullability
    that is not a bool (a SQL expression refuses `bool()`), makes the op opaque."""
    fields = vars(op)
    for name in _REQUIRED_NAMES:
        if name in fields and not (isinstance(fields[name], str) and fields[name]):
            return False
    for name in _OPTIONAL_NAMES:
        if fields.get(name) is not None and not (isinstance(fields[name], str) and fields[name]):
            return False
    for name in _FLAGS:
        value = fields.get(name, getattr(op, "kw", {}).get(name))
        if value is not None and not isinstance(value, bool):
            return False
    for name in TYPE_FIELDS:
        if fields.get(name) is not None and not isinstance(fields[name], TypeEngine):
            return False
    columns = fields.get("columns", ())
    if not isinstance(columns, (list, tuple)):  # create_index('ix', 't', 'email') or a half-typed list
        return False
    items = [*columns, fields["column"]] if fields.get("column") is not None else columns
    return all(_well_typed_item(item) for item in items)


def _well_typed_item(item: Any) -> bool:
    if isinstance(item, sa.Column):
        return (isinstance(item.name, str) and bool(item.name) and isinstance(item.nullable, bool)
                and all(_target_spec(fk) for fk in item.foreign_keys))
    if isinstance(item, sa.ForeignKeyConstraint):
        return all(_target_spec(fk) for fk in item.elements)
    return True


def _target_spec(fk: sa.ForeignKey) -> bool:
    """A foreign key refers to "table.column" (or "schema.table.column")."""
    spec = getattr(fk, "_colspec", None)  # a string, or a Column object (not followed statically)
    if not isinstance(spec, str):
        return False
    return "." in spec.strip(".")
