"""Stage `schema`, part 1: static evaluation of a migration's op calls.

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
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import BuiltinFunctionType, FunctionType, ModuleType
from typing import Any

import alembic
import sqlalchemy as sa
from alembic.operations import BatchOperations, Operations
from alembic.operations import ops as alembic_ops
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.schema import SchemaItem
from sqlalchemy.sql.type_api import to_instance
from sqlalchemy.types import TypeEngine

from .core import Span
from .scripts import NOT_OPERATIONS, Function, MigrationScript, OpCall, module_body, op_call, span_of

SAFE_PACKAGES = ("sqlalchemy", "alembic")
DEFAULT_NAMES = {"sa": "sqlalchemy", "sqlalchemy": "sqlalchemy", "op": "alembic.op",
                 "postgresql": "sqlalchemy.dialects.postgresql", "mysql": "sqlalchemy.dialects.mysql",
                 "sqlite": "sqlalchemy.dialects.sqlite"}
SAFE_FUNCTIONS = {"text", "literal_column", "literal", "true", "false", "null", "column", "table",
                  "and_", "or_", "not_", "cast", "desc", "asc", "conv"}


class Opaque:
    """A value we cannot know statically (helper call, custom type, variable...). Its source
    text is made from the syntax node on demand (most opaque values are never shown)."""

    __slots__ = ("_source",)

    def __init__(self, source: str | ast.AST) -> None:
        self._source = source

    @property
    def source(self) -> str:
        if not isinstance(self._source, str):
            self._source = _source(self._source)
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
        except Exception:  # a parent that is not a package, ...
            return None
        if spec is None or not _from_installed_package(name, spec.origin):
            return None  # not found, a namespace package, a file elsewhere
        try:
            module = importlib.import_module(name)
        except (Exception, SystemExit):
            return None
    if not isinstance(module, ModuleType) or not _from_installed_package(name, getattr(module, "__file__", None)):
        return None
    return module


def _resolve_dotted(path: str) -> Any:
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


def _callable_ok(fn: Any) -> bool:
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
                self.names[name] = _LazyImport(path)
        self.recorder = recorder

    def value(self, node: ast.AST) -> Any:
        try:
            return self._eval(node)
        except RecursionError:
            return Opaque("deep expression")
        except Exception:  # a constructor refusing its arguments: opaque, never fatal
            return Opaque(node)

    def _eval(self, node: ast.AST) -> Any:
        kind = type(node)  # the two most common kinds first
        if kind is ast.Constant:
            return node.value
        if kind is ast.Call:
            return self._call(node)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = [self.value(e) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.Dict):
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values) if k is not None}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        if isinstance(node, ast.JoinedStr):
            return Opaque(node)
        if isinstance(node, ast.Name):
            value = self.names.get(node.id)
            if isinstance(value, _LazyImport):
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
                    return _resolve_dotted(f"{base.__name__}.{node.attr}")
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
        if isinstance(fn, Opaque) or not _callable_ok(fn):
            return Opaque(node)
        arguments = self._arguments(node)
        if arguments is None:
            return Opaque(node)
        return self._construct(node, fn, *arguments)

    def _construct(self, node: ast.Call, fn: Any, args: list, kwargs: dict) -> Any:
        """Call `fn`, a constructor or function of SQLAlchemy, on evaluated arguments."""
        if fn is sa.Column or (isinstance(fn, type) and issubclass(fn, sa.Column)):
            args = [OpaqueType(a.source) if isinstance(a, Opaque) and i > 0 else a for i, a in enumerate(args)]
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


def type_from_repr(text: str, module: str) -> TypeEngine:
    """A SQLAlchemy type from its repr (e.g. `JSONB(astext_type=Text())`), evaluated
    statically with the names of sqlalchemy.types and of the type's own module."""
    if not (isinstance(module, str) and (module == "sqlalchemy" or module.startswith("sqlalchemy."))):
        return OpaqueType(text)  # (the module name comes from the models child's output)
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

    def __post_init__(self) -> None:
        if self.conditional is None:
            object.__setattr__(self, "conditional", self.call.conditional)

    @property
    def span(self) -> Span:
        return self.call.span


@dataclass(frozen=True, eq=False)
class RawCall:
    """A call that is not an op but may change the schema: SQL run through a connection
    (`bind.execute("ALTER TABLE ...")`, `sql` set), or a function we cannot follow that is
    handed `op` or a batch (`sql` None; `tables`: its string arguments, the tables it most
    likely touches)."""

    span: Span
    sql: str | None
    conditional: bool
    tables: tuple[str, ...] = ()
    after: int = 0  # how many of the function's ops ran before it


@dataclass(frozen=True)
class Evaluation:
    """What evaluating one function found: its op calls, in the order they run, and the
    other calls that may change the schema."""

    ops: tuple[EvaluatedOp, ...] = ()
    calls: tuple[RawCall, ...] = ()

    def in_order(self) -> list[EvaluatedOp | RawCall]:
        """The ops and the other calls, in the order they ran."""
        out: list[EvaluatedOp | RawCall] = []
        calls = list(self.calls)
        for n, ev in enumerate(self.ops):
            while calls and calls[0].after <= n:
                out.append(calls.pop(0))
            out.append(ev)
        return out + calls


def evaluate_function(script: MigrationScript, function: Function | None,
                      dialect: str | None = None) -> list[EvaluatedOp]:
    """Every op call of one function, evaluated (see `evaluate`)."""
    return list(evaluate(script, function, dialect).ops)


def evaluate(script: MigrationScript, function: Function | None, dialect: str | None = None) -> Evaluation:
    """Run one function of a migration in the `Interpreter`: its op calls in the order they
    would run with `dialect` (None: unknown, so a test of the dialect cannot be decided), and
    the raw SQL / unfollowable calls that may change the schema. SQLAlchemy's warnings about
    odd arguments in half-typed code are silenced: they are the editor's business."""
    if function is None:
        return Evaluation()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Interpreter(script, function, dialect).run()


# ------------------------------------------------------------------ the interpreter
#
# upgrade() is run statement by statement on values we can know: literals, module-level and
# local constants, f-strings, arithmetic on them, containers and comprehensions over them,
# helper functions of the same file, SQLAlchemy constructors, and the dialect of the
# environment (`op.get_bind().dialect.name`, `context.get_context().dialect.name`,
# `bind.engine.name`, `context.is_offline_mode()`). Everything else is an `Opaque` value;
# a call of anything that is not SQLAlchemy, a helper of the file or a pure builtin is never
# made. An `if` whose test is known runs one branch; any other `if`, a loop over something
# unknown and an `except` branch run with their ops *conditional*: the replay applies them
# but makes the tables they touch uncertain, never the whole environment.

MAX_CALL_DEPTH = 8  # helper functions calling helper functions (and recursion)
MAX_STEPS = 20_000  # statements run per evaluation (loops times their bodies)
MAX_ITEMS = 2_000  # elements of a container built or iterated
MAX_TEXT = 200_000  # characters of a string built


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class _Raise(_Return):
    """`raise`: a run that gets here fails, so a successful upgrade never took this path."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _OutOfSteps(Exception):
    pass


class _Dynamic:
    """What a migration asks its runtime about: the bind / context / dialect / engine.
    Only the dialect's name (and offline mode) is known; anything else is opaque."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind}>"


class _Imported(Opaque):
    """A name imported from a module that is not SQLAlchemy's or Alembic's: never imported,
    opaque, except for a model class's `__tablename__` read from its source (`tablename`)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class _Batch:
    """`with op.batch_alter_table(table) as batch_op`: the alias's value."""

    def __init__(self, table: str, schema: str | None) -> None:
        self.table, self.schema = table, schema


class _Function:
    """A function defined in the migration file (module level or nested)."""

    def __init__(self, node: ast.FunctionDef | ast.AsyncFunctionDef, scope: dict[str, Any]) -> None:
        self.node, self.scope = node, scope


_PLAIN = (str, int, float, bool, type(None), bytes)
_CONTAINERS = (list, tuple, dict, set, frozenset, range)
_PURE_BUILTINS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (len, str, int, float, bool, list, tuple, dict, set, frozenset, sorted, reversed,
                            zip, enumerate, min, max, any, all, abs, range, repr, round)}
_PURE_IDS = frozenset(id(f) for f in _PURE_BUILTINS.values())
_STR_METHODS = frozenset({"upper", "lower", "strip", "lstrip", "rstrip", "replace", "split", "rsplit", "join",
                          "format", "startswith", "endswith", "title", "capitalize", "casefold", "partition",
                          "rpartition", "removeprefix", "removesuffix", "zfill", "splitlines", "count", "find",
                          "isidentifier", "isdigit"})
_READ_METHODS = {dict: frozenset({"items", "keys", "values", "get", "copy"}),
                 list: frozenset({"index", "count", "copy"}), tuple: frozenset({"index", "count"}),
                 set: frozenset({"union", "intersection", "difference", "copy"}),
                 frozenset: frozenset({"union", "intersection", "difference"})}
_WRITE_METHODS = {list: frozenset({"append", "extend", "insert", "pop", "remove", "sort", "reverse", "clear"}),
                  dict: frozenset({"update", "setdefault", "pop", "clear"}),
                  set: frozenset({"add", "update", "discard", "remove", "clear"})}
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Mod: lambda a, b: a % b, ast.FloorDiv: lambda a, b: a // b, ast.Div: lambda a, b: a / b,
    ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b}


def is_plain(value: Any, depth: int = 0) -> bool:
    """A value made only of literals (no object whose methods could run project code)."""
    if isinstance(value, _PLAIN):
        return True
    if depth > 20:
        return False
    if isinstance(value, range):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return len(value) <= MAX_ITEMS and all(is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= MAX_ITEMS and all(is_plain(k, depth + 1) and is_plain(v, depth + 1)
                                               for k, v in value.items())
    return False


def _sized(value: Any) -> Any:
    """`value`, or Opaque when it is too big to have been built statically."""
    if isinstance(value, (str, bytes)) and len(value) > MAX_TEXT:
        return Opaque("a long string")
    if isinstance(value, (list, tuple, set, frozenset, dict, range)) and len(value) > MAX_ITEMS:
        return Opaque("a long sequence")
    return value


def _known(value: Any) -> bool:
    return not isinstance(value, (Opaque, _Dynamic))


_TABLE_PARAMETERS = ("table_name", "source_table")


@lru_cache(maxsize=256)
def _table_parameter(name: str) -> tuple[str, int | None] | None:
    """(name, position among the positional arguments or None) of the table parameter of
    `Operations.<name>`, from its signature; None when it has none."""
    method = getattr(Operations, name, None)
    try:
        parameters = list(inspect.signature(method).parameters.values())[1:] if method is not None else []
    except (TypeError, ValueError):
        return None
    for position, parameter in enumerate(parameters):
        if parameter.name in _TABLE_PARAMETERS:
            positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD) and all(
                p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters[:position])
            return parameter.name, position if positional else None
    return None


def _table_argument(name: str, args: list, kwargs: dict) -> Any:
    """The value given for the op's table parameter (`table_name`, `source_table`), or None."""
    found = _table_parameter(name)
    if found is None:
        return None
    parameter, position = found
    if parameter in kwargs:
        return kwargs[parameter]
    return args[position] if position is not None and position < len(args) else None


class Interpreter(Evaluator):
    """Runs one function of a migration statically (see the comment above)."""

    def __init__(self, script: MigrationScript, function: Function, dialect: str | None) -> None:
        super().__init__(script.imports, Recorder())
        self.script, self.function = script, function
        dialect = (dialect or "").lower() or None
        self.dialect = "postgresql" if dialect == "postgres" else dialect
        self.calls_by_node = {id(c.node): c for c in function.ops}
        self.frame: dict[str, Any] = {}
        self._module_nodes: dict[str, ast.AST | None] | None = None
        self._module_values: dict[str, Any] = {}
        self._resolving: set[str] = set()
        self.conditional = 0  # depth of undecidable branches around the running statement
        self.maybe_left = False  # an undecidable branch may have returned / broken out
        self.autocommit = False
        self.depth = 0
        self.steps = 0
        self.ops: list[EvaluatedOp] = []
        self.raw: list[RawCall] = []
        self.imported = {name: path for name, path in script.imports if not in_safe_package(path)}
        for name, path in script.imports:
            if path == "alembic.context" or path.startswith("alembic.context."):
                self.names[name] = _Dynamic("context") if path == "alembic.context" else _Dynamic(path)
            elif path in ("alembic.op.get_bind", "alembic.op.get_context"):
                self.names[name] = _Dynamic(path)

    def run(self) -> Evaluation:
        node = self.function.node
        if node is None:
            return Evaluation()
        try:
            self.block(node.body)
        except (_Return, _Break, _Continue):
            pass
        except (_OutOfSteps, RecursionError):
            # too much to follow: what was found stands, the rest of the function is unknown
            self.raw.append(RawCall(self.function.def_span, None, True, (), len(self.ops)))
        return Evaluation(tuple(self.ops), tuple(self.raw))

    # ------------------------------------------------------------ statements

    @property
    def uncertain(self) -> bool:
        return self.conditional > 0 or self.maybe_left

    def block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise _OutOfSteps
            self.statement(stmt)

    def statement(self, stmt: ast.stmt) -> None:
        kind = type(stmt)
        if kind is ast.Expr:
            self.value(stmt.value)
        elif kind is ast.Assign:
            value = self.value(stmt.value)
            for target in stmt.targets:
                self.assign(target, value)
        elif kind is ast.AnnAssign:
            if stmt.value is not None:
                self.assign(stmt.target, self.value(stmt.value))
        elif kind is ast.AugAssign:
            self.aug_assign(stmt)
        elif kind is ast.If:
            self.if_(stmt)
        elif kind in (ast.For, ast.AsyncFor):
            self.for_(stmt)
        elif kind is ast.While:
            self.value(stmt.test)
            self.alternatives([stmt.body, stmt.orelse])
        elif kind in (ast.With, ast.AsyncWith):
            self.with_(stmt)
        elif kind is ast.Try or kind.__name__ == "TryStar":
            self.try_(stmt)
        elif kind in (ast.FunctionDef, ast.AsyncFunctionDef):
            self.frame[stmt.name] = _Function(stmt, self.frame)
        elif kind is ast.ClassDef:
            self.frame[stmt.name] = Opaque(stmt.name)
        elif kind is ast.Return:
            raise _Return(self.value(stmt.value) if stmt.value is not None else None)
        elif kind is ast.Raise:
            raise _Raise(Opaque("raise"))  # upgrade() stops here (nothing after it runs)
        elif kind is ast.Break:
            raise _Break
        elif kind is ast.Continue:
            raise _Continue
        elif kind in (ast.Import, ast.ImportFrom):
            self.import_(stmt)
        elif kind.__name__ == "Match":
            self.value(stmt.subject)  # type: ignore[attr-defined]
            self.alternatives([case.body for case in stmt.cases])  # type: ignore[attr-defined]
        elif kind is ast.Delete:
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    self.frame[target.id] = Opaque(target.id)
                else:
                    self._mutated(target)
        # pass, global, nonlocal, assert: nothing to do

    def import_(self, stmt: ast.Import | ast.ImportFrom) -> None:
        """A local import binds names as a module-level one would (sqlalchemy / alembic
        only; anything else is opaque)."""
        if isinstance(stmt, ast.Import):
            pairs = [(a.asname or a.name.split(".")[0], a.name if a.asname else a.name.split(".")[0])
                     for a in stmt.names]
        elif stmt.module and not stmt.level:
            pairs = [(a.asname or a.name, f"{stmt.module}.{a.name}") for a in stmt.names if a.name != "*"]
        else:
            pairs = [(a.asname or a.name, "") for a in stmt.names if a.name != "*"]
        for name, path in pairs:
            if path in ("alembic.op", "alembic.op.op"):
                self.frame[name] = self.recorder
            elif path == "alembic.context":
                self.frame[name] = _Dynamic("context")
            elif in_safe_package(path):
                self.frame[name] = _resolve_dotted(path)
            else:
                self.frame[name] = Opaque(name)

    def assign(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.frame[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = list(value) if isinstance(value, (list, tuple)) else None
            if items is not None and len(items) == len(target.elts) \
                    and not any(isinstance(e, ast.Starred) for e in target.elts):
                for element, item in zip(target.elts, items):
                    self.assign(element, item)
            else:
                for element in target.elts:
                    self.assign(element.value if isinstance(element, ast.Starred) else element,
                                Opaque(_source(element)))
        elif isinstance(target, ast.Subscript):
            container, key = self.value(target.value), self.value(target.slice)
            if isinstance(container, (list, dict)) and is_plain(key):
                try:
                    container[key] = value
                    return
                except Exception:
                    pass
            self._mutated(target.value)
        else:  # an attribute: the object may have changed in ways we do not follow
            self._mutated(target)

    def _mutated(self, node: ast.expr) -> None:
        """Something was changed in place that we do not follow: the name holding it becomes
        opaque (never a stale value)."""
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.frame:
            self.frame[node.id] = Opaque(node.id)

    def aug_assign(self, stmt: ast.AugAssign) -> None:
        operation = _BINOPS.get(type(stmt.op))
        if isinstance(stmt.target, ast.Name):
            current, value = self.value(stmt.target), self.value(stmt.value)
            result: Any = Opaque(stmt.target.id)
            if operation is not None and is_plain(current) and is_plain(value):
                try:
                    result = _sized(operation(current, value))
                except Exception:
                    pass
            elif isinstance(current, list) and isinstance(stmt.op, ast.Add) and isinstance(value, (list, tuple)):
                result = _sized(current + list(value))  # `columns += [sa.Column(...)]`
            self.frame[stmt.target.id] = result
        else:
            self.value(stmt.value)
            self._mutated(stmt.target)

    def if_(self, stmt: ast.If) -> None:
        test = self.truth(stmt.test)
        if test is None:
            self.alternatives([stmt.body, stmt.orelse])
        else:
            self.block(stmt.body if test else stmt.orelse)

    def truth(self, node: ast.expr) -> bool | None:
        """The test's truth when it can be known statically (literals, the dialect), else None."""
        value = self.value(node)
        if is_plain(value):
            try:
                return bool(value)
            except Exception:
                return None
        return None

    def alternatives(self, bodies: list[list[ast.stmt]]) -> None:
        """Bodies that may or may not run (an undecidable `if`, a `while`, `except` branches):
        each runs from the same names with its ops conditional; leaving one early makes the
        rest uncertain too; a name a branch binds is not known after them."""
        start = dict(self.frame)
        changed: set[str] = set()
        self.conditional += 1
        try:
            for body in bodies:
                self.frame.clear()
                self.frame.update(start)
                try:
                    self.block(body)
                except _Raise:
                    pass  # (`except ...: rollback; raise`): a successful run did not come here
                except (_Return, _Break, _Continue):
                    self.maybe_left = True
                changed.update(n for n, v in self.frame.items() if start.get(n, _UNBOUND) is not v)
        finally:
            self.conditional -= 1
            self.frame.clear()
            self.frame.update(start)
            for name in changed:
                self.frame[name] = Opaque(name)

    def for_(self, stmt: ast.For | ast.AsyncFor) -> None:
        iterable = self.value(stmt.iter)
        items: list | None = None
        if isinstance(iterable, (list, tuple, set, frozenset, dict, range, str)) and len(iterable) <= MAX_ITEMS:
            items = list(iterable)
        if items is None:
            self.assign(stmt.target, Opaque(_source(stmt.target)))
            self.alternatives([stmt.body, stmt.orelse])
            return
        broke = False
        for item in items:
            self.assign(stmt.target, item)
            try:
                self.block(stmt.body)
            except _Continue:
                continue
            except _Break:
                broke = True
                break
        if not broke:
            self.block(stmt.orelse)

    def with_(self, stmt: ast.With | ast.AsyncWith) -> None:
        autocommit = self.autocommit
        for item in stmt.items:
            expr = item.context_expr
            value: Any
            if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) \
                    and expr.func.attr == "batch_alter_table" and self.value(expr.func.value) is self.recorder:
                value = self.batch(expr)
            elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) \
                    and expr.func.attr == "autocommit_block":
                self.autocommit = True
                value = Opaque("autocommit_block")
            else:
                value = self.value(expr)
            if item.optional_vars is not None:
                self.assign(item.optional_vars, value)
        try:
            self.block(stmt.body)
        finally:
            self.autocommit = autocommit

    def batch(self, node: ast.Call) -> Any:
        arguments = self._arguments(node)
        if arguments is None:
            return Opaque("batch_alter_table")
        args, kwargs = arguments
        table = args[0] if args else kwargs.get("table_name")
        schema = args[1] if len(args) > 1 else kwargs.get("schema")
        if not (isinstance(table, str) and table) or not (schema is None or isinstance(schema, str)):
            return _Batch("", None)
        return _Batch(table, schema)

    def try_(self, stmt: ast.Try) -> None:
        # the body is what runs; an except branch is an alternative (its tables uncertain)
        try:
            self.block(stmt.body)
        except (_Return, _Break, _Continue):
            self.block(stmt.finalbody)
            raise
        handlers = [h.body for h in stmt.handlers]
        if handlers:
            self.alternatives(handlers)
        self.block(stmt.orelse)
        self.block(stmt.finalbody)

    # ------------------------------------------------------------ expressions

    def _eval(self, node: ast.AST) -> Any:
        kind = type(node)  # the most common kinds first
        if kind is ast.Constant:
            return node.value  # type: ignore[attr-defined]
        if kind is ast.Call:
            return self._call(node)  # type: ignore[arg-type]
        if kind is ast.Name:
            return self.lookup(node.id)
        if kind is ast.Attribute:
            base = self._eval(node.value)  # type: ignore[attr-defined]
            if isinstance(base, _Imported):
                if node.attr == "__tablename__":  # type: ignore[attr-defined]
                    found = tablename(self.script.path, base.path)
                    return found if found is not None else Opaque(node)
                return _Imported(f"{base.path}.{node.attr}")  # type: ignore[attr-defined]
            if isinstance(base, _Dynamic):
                return self.dynamic(base, node.attr)  # type: ignore[attr-defined]
            if isinstance(base, _Batch) or (is_plain(base) and not node.attr.startswith("_")):  # type: ignore
                return Opaque(node)  # a method, called in _call
            return super()._eval(node)
        if kind in (ast.Tuple, ast.List, ast.Set):
            items = self.elements(node.elts)  # type: ignore[attr-defined]
            if items is None:
                return Opaque(node)
            return tuple(items) if kind is ast.Tuple else set(items) if kind is ast.Set else items
        if kind is ast.Dict:
            out: dict = {}
            for key, value in zip(node.keys, node.values):  # type: ignore[attr-defined]
                if key is None:
                    merged = self.value(value)
                    if not isinstance(merged, dict):
                        return Opaque(node)
                    out.update(merged)
                else:
                    k = self.value(key)
                    try:
                        out[k] = self.value(value)
                    except TypeError:  # unhashable key
                        return Opaque(node)
            return _sized(out)
        if kind is ast.JoinedStr:
            return self.fstring(node)  # type: ignore[arg-type]
        if kind is ast.BinOp:
            left, right = self.value(node.left), self.value(node.right)  # type: ignore[attr-defined]
            operation = _BINOPS.get(type(node.op))  # type: ignore[attr-defined]
            if operation is None:
                return Opaque(node)
            if is_plain(left) and is_plain(right):
                if isinstance(node.op, ast.Mult) and (  # type: ignore[attr-defined]
                        (isinstance(left, (str, list, tuple)) and isinstance(right, int) and right * len(left) > MAX_TEXT)
                        or (isinstance(right, (str, list, tuple)) and isinstance(left, int)
                            and left * len(right) > MAX_TEXT)):
                    return Opaque(node)
                return _sized(operation(left, right))
            if isinstance(node.op, ast.Add) and isinstance(left, (list, tuple)) \
                    and type(left) is type(right):  # type: ignore[attr-defined]
                return _sized(left + right)  # lists of columns
            return Opaque(node)
        if kind is ast.UnaryOp:
            operand = self.value(node.operand)  # type: ignore[attr-defined]
            if not is_plain(operand):
                return Opaque(node)
            op = node.op  # type: ignore[attr-defined]
            if isinstance(op, ast.Not):
                return not operand
            if isinstance(op, ast.USub):
                return -operand
            if isinstance(op, ast.UAdd):
                return +operand
            return Opaque(node)
        if kind is ast.BoolOp:
            return self.bool_op(node)  # type: ignore[arg-type]
        if kind is ast.Compare:
            return self.compare(node)  # type: ignore[arg-type]
        if kind is ast.IfExp:
            test = self.truth(node.test)  # type: ignore[attr-defined]
            if test is None:
                return Opaque(node)
            return self.value(node.body if test else node.orelse)  # type: ignore[attr-defined]
        if kind is ast.Subscript:
            container, key = self.value(node.value), self.value(node.slice)  # type: ignore[attr-defined]
            if isinstance(container, (str, list, tuple, dict, range)) and (is_plain(key) or isinstance(key, slice)):
                return container[key]  # (a missing key: value() makes it opaque)
            return Opaque(node)
        if kind is ast.Slice:
            parts = [self.value(p) if p is not None else None
                     for p in (node.lower, node.upper, node.step)]  # type: ignore[attr-defined]
            if all(p is None or isinstance(p, int) for p in parts):
                return slice(*parts)
            return Opaque(node)
        if kind in (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp):
            return self.comprehension(node)
        if kind is ast.Lambda or kind is ast.NamedExpr or kind is ast.Await:
            return Opaque(node)
        return super()._eval(node)

    def lookup(self, name: str) -> Any:
        if name in self.frame:
            return self.frame[name]
        value = self.names.get(name)
        if value is not None:
            if isinstance(value, _LazyImport):
                value = self.names[name] = value.load()
            return value
        found = self.module_value(name)
        if found is not _UNBOUND:
            return found
        path = self.imported.get(name)
        if path is not None:
            return _Imported(path)
        if name in _PURE_BUILTINS:
            return _PURE_BUILTINS[name]
        return Opaque(name)

    def module_value(self, name: str) -> Any:
        """A module-level name of the file: a constant (evaluated on first use, once per
        evaluation: values are never shared between two evaluations) or a helper function.
        Names bound more than once, or inside module-level if / try / for, are opaque."""
        if name in self._module_values:
            return self._module_values[name]
        if self._module_nodes is None:
            self._module_nodes = _module_bindings(self.script)
        if name not in self._module_nodes:
            return _UNBOUND
        node = self._module_nodes[name]
        if node is None or name in self._resolving:
            value: Any = Opaque(name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            value = _Function(node, {})
        else:
            self._resolving.add(name)
            frame, self.frame = self.frame, {}  # evaluated in the module's scope
            try:
                value = self.value(node)
            finally:
                self.frame = frame
                self._resolving.discard(name)
        self._module_values[name] = value
        return value

    def dynamic(self, base: _Dynamic, attr: str) -> Any:
        kind = base.kind
        if attr == "dialect" and kind in ("bind", "context", "engine", "impl"):
            return _Dynamic("dialect")
        if attr == "engine" and kind == "bind":
            return _Dynamic("engine")
        if attr == "bind" and kind == "context":
            return _Dynamic("bind")
        if attr == "impl" and kind == "context":
            return _Dynamic("impl")
        if attr == "name" and kind in ("dialect", "engine"):
            return self.dialect if self.dialect else Opaque("the dialect's name")
        if attr == "as_sql" and kind == "context":
            return False  # online: what `alembic upgrade` does
        return _Dynamic(f"{kind}.{attr}")

    def elements(self, nodes: list[ast.expr]) -> list | None:
        items: list = []
        for element in nodes:
            if isinstance(element, ast.Starred):
                spread = self.value(element.value)
                if not isinstance(spread, (list, tuple, set, frozenset, dict, range, str)):
                    return None
                items.extend(spread)
            else:
                items.append(self.value(element))
            if len(items) > MAX_ITEMS:
                return None
        return items

    def fstring(self, node: ast.JoinedStr) -> Any:
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
                continue
            if not isinstance(part, ast.FormattedValue):
                return Opaque(node)
            value = self.value(part.value)
            if not is_plain(value):
                return Opaque(node)
            spec = self.value(part.format_spec) if part.format_spec is not None else ""
            if not isinstance(spec, str):
                return Opaque(node)
            conversion = {115: str, 114: repr, 97: ascii}.get(part.conversion)
            parts.append(format(conversion(value) if conversion else value, spec))
        return _sized("".join(parts))

    def bool_op(self, node: ast.BoolOp) -> Any:
        result: Any = None
        for operand in node.values:
            result = self.value(operand)
            if not is_plain(result):
                return Opaque(node)
            if isinstance(node.op, ast.And) and not result:
                return result
            if isinstance(node.op, ast.Or) and result:
                return result
        return result

    def compare(self, node: ast.Compare) -> Any:
        left = self.value(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.value(right_node)
            if not (is_plain(left) and is_plain(right)):
                return Opaque(node)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def comprehension(self, node: ast.AST) -> Any:
        frame = self.frame
        self.frame = dict(frame)  # the comprehension's own scope
        out: list = []
        try:
            if not self._generate(node, node.generators, out):  # type: ignore[attr-defined]
                return Opaque(node)
        finally:
            self.frame = frame
        if isinstance(node, ast.DictComp):
            try:
                return _sized(dict(out))
            except TypeError:
                return Opaque(node)
        if isinstance(node, ast.SetComp):
            try:
                return set(out)
            except TypeError:
                return Opaque(node)
        return out  # a list (also for a generator expression: iterated once, as given)

    def _generate(self, node: ast.AST, generators: list[ast.comprehension], out: list) -> bool:
        if not generators:
            if isinstance(node, ast.DictComp):
                out.append((self.value(node.key), self.value(node.value)))
            else:
                out.append(self.value(node.elt))  # type: ignore[attr-defined]
            return len(out) <= MAX_ITEMS
        first, rest = generators[0], generators[1:]
        iterable = self.value(first.iter)
        if not isinstance(iterable, (list, tuple, set, frozenset, dict, range, str)) or len(iterable) > MAX_ITEMS:
            return False
        for item in list(iterable):
            self.assign(first.target, item)
            keep = True
            for condition in first.ifs:
                test = self.truth(condition)
                if test is None:
                    return False
                keep = keep and test
            if keep and not self._generate(node, rest, out):
                return False
        return True

    # ------------------------------------------------------------ calls

    def _call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute):
            receiver = self.value(func.value)
            if receiver is self.recorder:
                return self.op(node, func.attr, None)
            if isinstance(receiver, _Batch):
                return self.op(node, func.attr, receiver)
            if isinstance(receiver, _Dynamic):
                return self.dynamic_call(node, receiver, func.attr)
            if isinstance(receiver, (str, list, tuple, dict, set, frozenset)) and not func.attr.startswith("_"):
                return self.method(node, receiver, func.attr)
            if func.attr in ("execute", "exec_driver_sql") and isinstance(receiver, Opaque):
                return self.raw_sql(node, self._arguments(node))  # a connection / session
            fn = self.value_of(lambda: self._attribute(func, receiver), func)
        else:
            fn = self.value(func)
        if isinstance(fn, _Function):
            return self.call_function(node, fn)
        if isinstance(fn, _Dynamic):
            return self.dynamic_call(node, fn, "")
        arguments = self._arguments(node)
        if arguments is None:
            return Opaque(node)
        args, kwargs = arguments
        if id(fn) in _PURE_IDS and fn in _PURE_BUILTINS.values():
            if not (all(is_plain(a) for a in args) and all(is_plain(v) for v in kwargs.values())):
                return Opaque(node)
            if fn is range and not (len(range(*args)) <= MAX_ITEMS):
                return Opaque(node)
            result = fn(*args, **kwargs)
            return _sized(list(result) if isinstance(result, (zip, enumerate, reversed)) else result)
        if isinstance(fn, Opaque) or not _callable_ok(fn):
            self.handed_op(node, [*args, *kwargs.values()])
            return Opaque(node)
        return self._construct(node, fn, args, kwargs)

    def _construct(self, node: ast.Call, fn: Any, args: list, kwargs: dict) -> Any:
        if fn is sa.ForeignKey:  # ForeignKey(SqlUser.id): the model column's "table.column"
            args = [self.column_spec(a) for a in args]
            kwargs = {k: self.column_spec(v) for k, v in kwargs.items()}
        return super()._construct(node, fn, args, kwargs)

    def column_spec(self, value: Any) -> Any:
        """`pkg.models.User.id` (an imported model class's attribute) -> "users.id" when the
        class's `__tablename__` can be read from its source; anything else unchanged."""
        if isinstance(value, _Imported):
            owner, _, attribute = value.path.rpartition(".")
            table = tablename(self.script.path, owner) if owner else None
            if table is not None:
                return f"{table}.{attribute}"
        return value

    def value_of(self, compute: Callable[[], Any], node: ast.AST) -> Any:
        try:
            return compute()
        except Exception:
            return Opaque(node)

    def _arguments(self, node: ast.Call) -> tuple[list, dict] | None:
        args = self.elements(node.args)
        if args is None:
            return None
        kwargs: dict = {}
        for keyword in node.keywords:
            value = self.value(keyword.value)
            if keyword.arg is None:
                if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                    return None
                kwargs.update(value)
            else:
                kwargs[keyword.arg] = value
        return args, kwargs

    def method(self, node: ast.Call, receiver: Any, name: str) -> Any:
        """A method of a string or container: the pure ones are run on literal arguments; one
        that changes a list / dict / set in place is applied to it (a local list of columns
        being appended to); any other makes the name holding the container opaque."""
        arguments = self._arguments(node)
        kind = type(receiver)
        if arguments is not None:
            args, kwargs = arguments
            plain_args = all(is_plain(a) for a in args) and all(is_plain(v) for v in kwargs.values())
            if plain_args and ((kind is str and name in _STR_METHODS) or name in _READ_METHODS.get(kind, ())):
                if kind is not str or is_plain(receiver):
                    result = getattr(receiver, name)(*args, **kwargs)
                    return _sized(list(result) if name in ("items", "keys", "values") else result)
            elif name in _WRITE_METHODS.get(kind, ()) and (plain_args or name in ("append", "extend", "insert",
                                                                                  "update", "add")):
                result = getattr(receiver, name)(*args, **kwargs)
                if len(receiver) > MAX_ITEMS:
                    self._mutated(node.func)
                return result
        self._mutated(node.func)
        return Opaque(node)

    def call_function(self, node: ast.Call, function: _Function) -> Any:
        """A helper of the file: run with its arguments bound, as a call would."""
        arguments = self._arguments(node)
        if arguments is None:
            return Opaque(node)
        frame = self.bind(function, *arguments) if self.depth < MAX_CALL_DEPTH else None
        if frame is None:  # arguments it does not take, or recursion too deep
            self.handed_op(node, [*arguments[0], *arguments[1].values()])
            return Opaque(node)
        saved, left = self.frame, self.maybe_left
        self.frame, self.maybe_left = frame, False
        self.depth += 1
        result: Any = None
        try:
            self.block(function.node.body)
        except _Return as returned:
            result = returned.value
        except (_Break, _Continue):
            pass
        finally:
            self.depth -= 1
            maybe_returned = self.maybe_left
            self.frame, self.maybe_left = saved, left
        return Opaque(node) if maybe_returned else result

    def bind(self, function: _Function, args: list, kwargs: dict) -> dict[str, Any] | None:
        spec = function.node.args
        positional = [*spec.posonlyargs, *spec.args]
        frame: dict[str, Any] = dict(function.scope)
        if len(args) > len(positional) and spec.vararg is None:
            return None
        for parameter, value in zip(positional, args):
            frame[parameter.arg] = value
        if spec.vararg is not None:
            frame[spec.vararg.arg] = tuple(args[len(positional):])
        defaults = dict(zip([p.arg for p in positional][len(positional) - len(spec.defaults):], spec.defaults))
        defaults.update({p.arg: d for p, d in zip(spec.kwonlyargs, spec.kw_defaults) if d is not None})
        extra = {}
        for name, value in kwargs.items():
            if any(p.arg == name for p in [*spec.args, *spec.kwonlyargs]):
                frame[name] = value
            elif spec.kwarg is not None:
                extra[name] = value
            else:
                return None
        if spec.kwarg is not None:
            frame[spec.kwarg.arg] = extra
        for parameter in [*positional, *spec.kwonlyargs]:
            if parameter.arg not in frame:
                default = defaults.get(parameter.arg)
                if default is None:
                    return None
                saved, self.frame = self.frame, {}
                try:
                    frame[parameter.arg] = self.value(default)
                finally:
                    self.frame = saved
        return frame

    def dynamic_call(self, node: ast.Call, base: _Dynamic, name: str) -> Any:
        kind = f"{base.kind}.{name}" if name else base.kind
        if kind in ("context.get_context", "alembic.op.get_context", "context.get_context"):
            return _Dynamic("context")
        if kind in ("context.get_bind", "alembic.op.get_bind", "context.connection"):
            return _Dynamic("bind")
        if kind in ("context.is_offline_mode", "alembic.context.is_offline_mode"):
            return False  # online: what `alembic upgrade` does
        arguments = self._arguments(node)  # (evaluated: they may hold op calls)
        if name in ("execute", "exec_driver_sql") and base.kind in ("bind", "context", "engine"):
            return self.raw_sql(node, arguments)
        if name == "connect" and base.kind == "engine":
            return _Dynamic("bind")
        return Opaque(node)

    def raw_sql(self, node: ast.Call, arguments: tuple[list, dict] | None) -> Any:
        """`bind.execute(...)` / `conn.exec_driver_sql(...)`: literal SQL is kept (DDL in it
        changes the schema); anything else is data."""
        if arguments is not None and arguments[0]:
            sql = sql_text(arguments[0][0])
            if sql is not None:
                self.raw.append(RawCall(self.call_span(node), sql, self.uncertain, (), len(self.ops)))
        return Opaque(node)

    def handed_op(self, node: ast.Call, values: list) -> None:
        """A call we do not follow that is handed `op` or a batch may run ops: its string
        arguments are the tables it likely touches."""
        if any(v is self.recorder or isinstance(v, _Batch) for v in values):
            tables = tuple(v for v in values if isinstance(v, str) and v)
            tables += tuple(v.table for v in values if isinstance(v, _Batch) and v.table)
            self.raw.append(RawCall(self.call_span(node), None, self.uncertain, tables, len(self.ops)))

    def call_span(self, node: ast.AST) -> Span:
        return span_of(self.script, node)

    # ------------------------------------------------------------ op calls

    def op(self, node: ast.Call, name: str, batch: _Batch | None) -> Any:
        recorder = self.recorder
        if name == "f":
            arguments = self._arguments(node)
            value = arguments[0][0] if arguments and arguments[0] else None
            return sa.sql.elements.conv(value) if isinstance(value, str) else Opaque(node)
        if name == "get_bind":
            return _Dynamic("bind")
        if name == "get_context":
            return _Dynamic("context")
        if name == "batch_alter_table" and batch is None:
            return self.batch(node)
        if name in NOT_OPERATIONS or name.startswith("_"):
            return Opaque(node)
        call = self.calls_by_node.get(id(node))
        if call is None:
            call = op_call(self.script, node, name, batch.table if batch else None, self.autocommit)
        self.ops.append(self.evaluate_op(call, name, node, batch, recorder))
        return Opaque(node)

    def evaluate_op(self, call: OpCall, name: str, node: ast.Call, batch: _Batch | None,
                    recorder: Recorder) -> EvaluatedOp:
        conditional = self.uncertain
        arguments = self._arguments(node)
        if arguments is None:
            return EvaluatedOp(call, None, "*args / **kwargs", conditional)
        args, kwargs = arguments
        if batch is not None:
            if not batch.table:
                return EvaluatedOp(call, None, "batch table name is not a literal", conditional)
            target: Any = BatchRecorder(recorder, batch.table, batch.schema)
            table: Any = batch.table
        else:
            target = recorder
            table = _table_argument(name, args, kwargs)
        table = table if isinstance(table, str) and table else None
        method = getattr(target, name, None)
        if method is None:
            return EvaluatedOp(call, None, f"unknown operation {name}", conditional, table)
        if any(isinstance(a, (Opaque, _Dynamic)) for a in args[:2]):
            return EvaluatedOp(call, None, "table or column name is not a literal", conditional, table)
        kwargs = {k: v for k, v in kwargs.items() if _known(v)}
        args = [OpaqueType(_describe(a)) if not _known(a) else a for a in args]
        before = len(recorder.recorded)
        try:
            method(*args, **kwargs)
        except Exception as exc:  # wrong arguments for this Alembic version, half-typed call...
            return EvaluatedOp(call, None, f"{type(exc).__name__}: {exc}", conditional, table)
        if len(recorder.recorded) == before or not isinstance(recorder.recorded[-1], alembic_ops.MigrateOperation):
            return EvaluatedOp(call, None, "not an operation", conditional, table)
        op = recorder.recorded[-1]
        for field_name in _TYPES:  # `type_=sa.Boolean`, a class: what SQLAlchemy itself makes of it
            value = vars(op).get(field_name)
            if isinstance(value, type) and issubclass(value, TypeEngine):
                setattr(op, field_name, to_instance(value))
        if not _well_typed(op):  # `op.create_table(sa.Column(...))` while the name is being typed
            return EvaluatedOp(call, None, "a name that is not a string, or a flag that is not a bool",
                               conditional, table)
        return EvaluatedOp(call, op, "", conditional, table)


_UNBOUND: Any = object()


def _describe(value: Any) -> str:
    return value.source if isinstance(value, Opaque) else repr(value)


def sql_text(value: Any) -> str | None:
    """The SQL of a literal string or of `sa.text("...")`, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, sa.sql.elements.TextClause) and isinstance(value.text, str):
        return value.text
    return None


MAX_MODULE_BYTES = 2_000_000


def tablename(near: Path, dotted: str) -> str | None:
    """`pkg.models.User` -> `User.__tablename__` when the class body assigns it a string
    literal, read (never imported) from `pkg/models.py` found in a folder above the
    migration file (the checkout the migrations live in); None otherwise."""
    module, _, name = dotted.rpartition(".")
    if not module:
        return None
    relative = Path(*module.split("."))
    for folder in list(near.parents)[:12]:
        for candidate in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
            try:
                stat = candidate.stat()
            except (OSError, ValueError):
                continue
            if candidate.is_file():
                return _tablenames(str(candidate), stat.st_mtime_ns, stat.st_size).get(name)
    return None


@lru_cache(maxsize=256)
def _tablenames(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """class name -> literal `__tablename__` of the module-level classes of one file."""
    if size > MAX_MODULE_BYTES:
        return {}
    try:
        with open(path, "rb") as handle:
            tree = ast.parse(handle.read(MAX_MODULE_BYTES))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    out = {}
    for stmt in tree.body:
        if not isinstance(stmt, ast.ClassDef):
            continue
        for item in stmt.body:
            target = item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else \
                item.target if isinstance(item, ast.AnnAssign) else None
            value = getattr(item, "value", None)
            if isinstance(target, ast.Name) and target.id == "__tablename__" \
                    and isinstance(value, ast.Constant) and isinstance(value.value, str):
                out[stmt.name] = value.value
    return out


def _module_bindings(script: MigrationScript) -> dict[str, ast.AST | None]:
    """Top-level name -> the expression (or def) bound to it; None when it is bound more
    than once or conditionally (then its value depends on how the module ran)."""
    out: dict[str, ast.AST | None] = {}

    def bind(name: str, node: ast.AST | None) -> None:
        out[name] = None if name in out else node

    for stmt in module_body(script):
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    bind(target.id, stmt.value if len(stmt.targets) == 1 else None)
                else:
                    for node in ast.walk(target):
                        if isinstance(node, ast.Name):
                            bind(node.id, None)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            bind(stmt.target.id, stmt.value)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            bind(stmt.name, stmt)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Expr)):
            continue
        else:  # if / try / for / with / class at module level: what they bind is not known
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    bind(node.id, None)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    bind(node.name, None)
    return out


_REQUIRED_NAMES = ("table_name", "source_table", "referent_table", "new_table_name", "column_name")
_OPTIONAL_NAMES = ("modify_name", "new_column_name", "constraint_name", "index_name", "schema")
_TYPES = ("modify_type", "existing_type")
_FLAGS = ("modify_nullable", "existing_nullable", "unique", "if_exists", "if_not_exists")


def _well_typed(op: alembic_ops.MigrateOperation) -> bool:
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
    for name in _TYPES:
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
