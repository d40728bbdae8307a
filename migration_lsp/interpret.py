"""Stage `schema`, part 1b: upgrade() run statement by statement, statically.

`evaluate` knows expressions; this module runs a function's statements with them, so that
the ops come out in the order, and as often, as they would run: module-level and local
constants, f-strings, arithmetic, containers and comprehensions over known values, helper
functions of the same file, loops over known sequences, `try` bodies, and `if`s on the
dialect (resolved with the environment's). What cannot be known becomes conditional (an op
that may not run: its table uncertain) or opaque (an op whose table cannot be read), never
a guess and never a reason to stop comparing the rest of the schema.
"""

from __future__ import annotations

import ast
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.operations import ops as alembic_ops
from sqlalchemy.sql.type_api import to_instance
from sqlalchemy.types import TypeEngine

from .core import Span
from .evaluate import (
    LOCAL_TYPE,
    TYPE_FIELDS,
    BatchRecorder,
    EvaluatedOp,
    Evaluator,
    LazyImport,
    Opaque,
    OpaqueType,
    Recorder,
    callable_ok,
    in_safe_package,
    resolve_dotted,
    source_text,
    well_typed,
)
from .outside import DISK, Outside, tablename
from .scripts import (
    NOT_OPERATIONS,
    Function,
    MigrationScript,
    OpCall,
    module_body,
    op_call,
    project_import,
    reads_outside,
    span_of,
)


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
    # what files other than the migration answered, in the order asked: ((dotted name,
    # answer), ...) (`User.__tablename__` read from models.py): with the text and the
    # dialect, all an evaluation depends on
    outside: tuple[tuple[str, str | None], ...] = ()

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
                      dialect: str | None = None, outside: Outside | None = None) -> list[EvaluatedOp]:
    """Every op call of one function, evaluated (see `evaluate`)."""
    return list(evaluate(script, function, dialect, outside).ops)


def evaluate(script: MigrationScript, function: Function | None, dialect: str | None = None,
             outside: Outside | None = None) -> Evaluation:
    """Run one function of a migration in the `Interpreter`: its op calls in the order they
    would run with `dialect` (None: unknown, so a test of the dialect cannot be decided), and
    the raw SQL / unfollowable calls that may change the schema. `outside`: what it may read
    of other files (None: the disk). SQLAlchemy's warnings about odd arguments in half-typed
    code are silenced: they are the editor's business."""
    if function is None:
        return Evaluation()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Interpreter(script, function, dialect, outside).run()


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


class _TableNames:
    """`inspector.get_table_names()`: the tables the database has when the call runs. Only
    `"t" in` / `not in` it is known: a `_Guard` the replay decides."""


class _Guard:
    """Does table `table` exist (`exists`) when this runs: `"t" in inspector.get_table_names()`,
    `inspector.has_table("t")`, and their negations. An `if` on it runs both branches, each
    op guarded (EvaluatedOp.guards); the replay, which knows the schema there, decides."""

    def __init__(self, table: str, exists: bool) -> None:
        self.table, self.exists = table, exists

    def negated(self) -> _Guard:
        return _Guard(self.table, not self.exists)


class _Batch:
    """`with op.batch_alter_table(table) as batch_op`: the alias's value."""

    def __init__(self, table: str, schema: str | None) -> None:
        self.table, self.schema = table, schema


class _Function:
    """A function defined in the migration file (module level or nested)."""

    def __init__(self, node: ast.FunctionDef | ast.AsyncFunctionDef, scope: dict[str, Any]) -> None:
        self.node, self.scope = node, scope


_PLAIN = (str, int, float, bool, type(None), bytes)
_PURE_BUILTINS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (len, str, int, float, bool, list, tuple, dict, set, frozenset, sorted, reversed,
                            zip, enumerate, min, max, any, all, abs, range, repr, round)}
_PURE_IDS = frozenset(id(f) for f in _PURE_BUILTINS.values())
_STR_METHODS = frozenset({"upper", "lower", "strip", "lstrip", "rstrip", "replace", "split", "rsplit", "join",
                          "format", "startswith", "endswith", "title", "capitalize", "casefold", "partition",
                          "rpartition", "removeprefix", "removesuffix", "zfill", "splitlines", "count", "find",
                          "isidentifier", "isdigit"})
_READ_METHODS: dict[type, frozenset[str]] = {dict: frozenset({"items", "keys", "values", "get", "copy"}),
                 list: frozenset({"index", "count", "copy"}), tuple: frozenset({"index", "count"}),
                 set: frozenset({"union", "intersection", "difference", "copy"}),
                 frozenset: frozenset({"union", "intersection", "difference"})}
_WRITE_METHODS: dict[type, frozenset[str]] = {list: frozenset({"append", "extend", "insert", "pop", "remove", "sort", "reverse", "clear"}),
                  dict: frozenset({"update", "setdefault", "pop", "clear"}),
                  set: frozenset({"add", "update", "discard", "remove", "clear"})}
_NONE: frozenset[str] = frozenset()
_CONVERSIONS: dict[int, Callable[[Any], str]] = {115: str, 114: repr, 97: ascii}  # f"{x!s}", !r, !a
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


def _is_check_constraint(node: ast.expr) -> bool:
    """`sa.CheckConstraint(...)` / `CheckConstraint(...)`."""
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(func, ast.Attribute) and func.attr == "CheckConstraint") or \
        (isinstance(func, ast.Name) and func.id == "CheckConstraint")


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

    def __init__(self, script: MigrationScript, function: Function, dialect: str | None,
                 outside: Outside | None = None) -> None:
        self.op_recorder = Recorder()  # (the Evaluator's `recorder`, never None here)
        super().__init__(script.imports, self.op_recorder)
        self.script, self.function = script, function
        self.reader = outside if outside is not None else DISK  # (what `tablename` may read)
        dialect = (dialect or "").lower() or None
        self.dialect = "postgresql" if dialect == "postgres" else dialect
        self.calls_by_node = {id(c.node): c for c in function.ops}
        self.frame: dict[str, Any] = {}
        self._module_nodes: dict[str, ast.AST | None] | None = None
        self._module_values: dict[str, Any] = {}
        self._resolving: set[str] = set()
        self.conditional = 0  # depth of undecidable branches around the running statement
        self.guards: list[_Guard] = []  # tests of a table's existence around it (see _Guard)
        self._forced = False
        self.maybe_left = False  # an undecidable branch may have returned
        self.maybe_broke = False  # ... or left the loop around it (the rest of that loop is uncertain)
        self.autocommit = False
        self.depth = 0
        self.steps = 0
        self.ops: list[EvaluatedOp] = []
        self.raw: list[RawCall] = []
        self.outside: list[tuple[str, str | None]] = []  # (see Evaluation.outside)
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
        return Evaluation(tuple(self.ops), tuple(self.raw), tuple(self.outside))

    # ------------------------------------------------------------ statements

    @property
    def uncertain(self) -> bool:
        return self.conditional > 0 or self.maybe_left or self.maybe_broke

    def block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise _OutOfSteps
            self.statement(stmt)

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Expr):
            self.value(stmt.value)
        elif isinstance(stmt, ast.Assign):
            value = self.value(stmt.value)
            for target in stmt.targets:
                self.assign(target, value)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self.assign(stmt.target, self.value(stmt.value))
        elif isinstance(stmt, ast.AugAssign):
            self.aug_assign(stmt)
        elif isinstance(stmt, ast.If):
            self.if_(stmt)
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            self.for_(stmt)
        elif isinstance(stmt, ast.While):
            self.value(stmt.test)
            broke = self.maybe_broke
            self.alternatives([stmt.body, stmt.orelse], loop=True)
            self.maybe_broke = broke  # (a `break` leaves the loop, not the function)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            self.with_(stmt)
        elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
            self.try_(stmt)  # type: ignore[arg-type]  # (ast.TryStar: Python 3.11+, the fields of a Try)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.frame[stmt.name] = _Function(stmt, self.frame)
        elif isinstance(stmt, ast.ClassDef):
            self.frame[stmt.name] = Opaque(stmt.name)
        elif isinstance(stmt, ast.Return):
            raise _Return(self.value(stmt.value) if stmt.value is not None else None)
        elif isinstance(stmt, ast.Raise):
            raise _Raise(Opaque("raise"))  # upgrade() stops here (nothing after it runs)
        elif isinstance(stmt, ast.Break):
            raise _Break
        elif isinstance(stmt, ast.Continue):
            raise _Continue
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self.import_(stmt)
        elif type(stmt).__name__ == "Match":
            self.value(stmt.subject)  # type: ignore[attr-defined]
            self.alternatives([case.body for case in stmt.cases])  # type: ignore[attr-defined]
        elif isinstance(stmt, ast.Delete):
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
                self.frame[name] = resolve_dotted(path)
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
                                Opaque(source_text(element)))
        elif isinstance(target, ast.Subscript):
            container, key = self.value(target.value), self.value(target.slice)
            if isinstance(container, (list, dict)) and is_plain(key):
                try:
                    container[key] = value
                    return
                except Exception:  # noqa: BLE001, S110 - an item the container refuses: the statement is opaque
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
                except Exception:  # noqa: BLE001, S110 - an operation the values refuse: the result is opaque
                    pass
            elif isinstance(current, list) and isinstance(stmt.op, ast.Add) and isinstance(value, (list, tuple)):
                result = _sized(current + list(value))  # `columns += [sa.Column(...)]`
            self.frame[stmt.target.id] = result
        else:
            self.value(stmt.value)
            self._mutated(stmt.target)

    def if_(self, stmt: ast.If) -> None:
        value = self.value(stmt.test)
        if isinstance(value, _Guard):
            self.alternatives([stmt.body, stmt.orelse], [value, value.negated()])
            return
        test = self.truth_of(value)
        if test is None:
            self.alternatives([stmt.body, stmt.orelse])
        else:
            self.block(stmt.body if test else stmt.orelse)

    def truth(self, node: ast.expr) -> bool | None:
        """The test's truth when it can be known statically (literals, the dialect), else None."""
        return self.truth_of(self.value(node))

    @staticmethod
    def truth_of(value: Any) -> bool | None:
        if is_plain(value):
            try:
                return bool(value)
            except Exception:  # noqa: BLE001 - a value that refuses bool(): undecided
                return None
        return None

    def alternatives(self, bodies: list[list[ast.stmt]], guards: list[_Guard] | None = None,
                     loop: bool = False) -> None:
        """Bodies that may or may not run (an undecidable `if`, a `while`, `except` branches):
        each runs from the same names with its ops conditional; leaving one early makes the
        rest uncertain too (of the function after a `return`, of the loop around it after a
        `break`; a loop's own body (`loop`) is left by its `break` into what follows the loop);
        a name a branch binds is not known after them."""
        start = dict(self.frame)
        changed: set[str] = set()
        self.conditional += 1
        try:
            for n, body in enumerate(bodies):
                self.frame.clear()
                self.frame.update(start)
                guard = guards[n] if guards else None
                if guard is not None:
                    self.guards.append(guard)
                try:
                    self.block(body)
                except _Raise:
                    pass  # (`except ...: rollback; raise`): a successful run did not come here
                except (_Break, _Continue):
                    if not loop:
                        self.maybe_broke = True
                except _Return:
                    self.maybe_left = True
                finally:
                    if guard is not None:
                        self.guards.pop()
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
        maybe_broke = self.maybe_broke
        if items is None:
            self.assign(stmt.target, Opaque(source_text(stmt.target)))
            self.alternatives([stmt.body, stmt.orelse], loop=True)
            self.maybe_broke = maybe_broke
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
            self.block(stmt.orelse)  # (after a `break` that may have happened: uncertain, as it should)
        self.maybe_broke = maybe_broke

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
            return self.lookup(node.id)  # type: ignore[attr-defined]
        if kind is ast.Attribute:
            base = self._eval(node.value)  # type: ignore[attr-defined]
            if isinstance(base, _Imported):
                if node.attr == "__tablename__":  # type: ignore[attr-defined]
                    found = self.tablename(base.path)
                    return found if found is not None else Opaque(node)
                return _Imported(f"{base.path}.{node.attr}")  # type: ignore[attr-defined]
            if isinstance(base, _Dynamic):
                return self.dynamic(base, node.attr)  # type: ignore[attr-defined]
            if isinstance(base, _Batch) or (is_plain(base) and not node.attr.startswith("_")):  # type: ignore[attr-defined]
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
            if isinstance(node.op, ast.Add):  # type: ignore[attr-defined]  # lists of columns
                if isinstance(left, list) and isinstance(right, list):
                    return _sized(left + right)
                if isinstance(left, tuple) and isinstance(right, tuple):
                    return _sized(left + right)
            return Opaque(node)
        if kind is ast.UnaryOp:
            operand = self.value(node.operand)  # type: ignore[attr-defined]
            if isinstance(operand, _Guard) and isinstance(node.op, ast.Not):  # type: ignore[attr-defined]
                return operand.negated()
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
            if isinstance(value, LazyImport):
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
        elif isinstance(node, ast.ClassDef):
            value = self.local_type(node)
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

    def local_type(self, node: ast.ClassDef) -> Any:
        """A column type the migration declares for itself (phoenix: `class JSONB(JSON):
        __visit_name__ = "JSONB"` with `@compiles(JSONB, "sqlite") def _(...): return "JSONB"`):
        made again here when its body only names it and its DDL is literal; anything else
        (methods, another base than a SQLAlchemy type, a compile rule that computes) is opaque."""
        opaque = Opaque(node.name)
        if node.decorator_list or node.keywords or len(node.bases) != 1:
            return opaque
        base = self.value(node.bases[0])
        if not (isinstance(base, type) and issubclass(base, TypeEngine) and in_safe_package(base.__module__)):
            return opaque
        attrs: dict[str, Any] = {"cache_ok": True, "__module__": __name__, LOCAL_TYPE: True}
        for stmt in node.body:
            if isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
                continue
            if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
                return opaque
            target, value = stmt.targets[0], stmt.value
            if not (isinstance(target, ast.Name) and target.id in ("__visit_name__", "cache_ok")
                    and isinstance(value, ast.Constant) and isinstance(value.value, (str, bool))):
                return opaque
            if target.id == "__visit_name__" and not (isinstance(value.value, str) and value.value.isidentifier()):
                return opaque  # (SQLAlchemy looks up `visit_<name>` on its compilers: one plain name only)
            attrs[target.id] = value.value
        rules = self._compile_rules(node.name)
        if rules is None:
            return opaque
        made = type(node.name, (base,), attrs)
        from sqlalchemy.ext.compiler import compiles
        for dialect, ddl in rules:  # (the rule is the new class's own: nothing else is touched)
            compiles(made, *dialect)(lambda element, compiler, _ddl=ddl, **kw: _ddl)
        return made

    def _compile_rules(self, class_name: str) -> list[tuple[tuple[str, ...], str]] | None:
        """The `@compiles(<class_name>[, "dialect"])` functions of the module that return a
        literal string: ((dialect,) or (), DDL) each; None when one of them computes it."""
        from sqlalchemy.ext.compiler import compiles
        rules = []
        for stmt in module_body(self.script):
            if not isinstance(stmt, ast.FunctionDef):
                continue
            for decorator in stmt.decorator_list:
                if not (isinstance(decorator, ast.Call) and decorator.args
                        and isinstance(decorator.args[0], ast.Name) and decorator.args[0].id == class_name):
                    continue
                if self.value(decorator.func) is not compiles:
                    return None
                dialects = [a.value for a in decorator.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                body = [b for b in stmt.body if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
                if len(dialects) != len(decorator.args) - 1 or len(body) != 1 or not isinstance(body[0], ast.Return) \
                        or not isinstance(body[0].value, ast.Constant) or not isinstance(body[0].value.value, str):
                    return None
                rules.append((tuple(dialects), body[0].value.value))
        return rules

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
            conversion = _CONVERSIONS.get(part.conversion)
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
        if len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)) and isinstance(left, str):
            right = self.value(node.comparators[0])
            if isinstance(right, _TableNames):  # "t" in inspector.get_table_names()
                return _Guard(left, isinstance(node.ops[0], ast.In))
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
            if isinstance(receiver, Opaque) and func.attr == "get_table_names" and not node.args \
                    and not node.keywords:  # an inspector of the bind (the default schema)
                return _TableNames()
            if isinstance(receiver, Opaque) and func.attr == "has_table" and len(node.args) == 1 \
                    and not node.keywords and isinstance(name := self.value(node.args[0]), str):
                return _Guard(name, True)
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
        if isinstance(fn, Opaque) or not callable_ok(fn):
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
            table = self.tablename(owner) if owner else None
            if table is not None:
                return f"{table}.{attribute}"
        return value

    def tablename(self, dotted: str) -> str | None:
        """`tablename` near the migration, recorded in `outside` (a name from the standard
        library names no table: nothing asked)."""
        if not project_import(dotted):
            return None
        found = tablename(self.script.path, dotted, self.reader)
        self.outside.append((dotted, found))
        return found

    def value_of(self, compute: Callable[[], Any], node: ast.AST) -> Any:
        try:
            return compute()
        except Exception:  # noqa: BLE001 - an attribute SQLAlchemy refuses: opaque, never fatal
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
            if plain_args and ((kind is str and name in _STR_METHODS) or name in _READ_METHODS.get(kind, _NONE)):
                if kind is not str or is_plain(receiver):
                    result = getattr(receiver, name)(*args, **kwargs)
                    return _sized(list(result) if name in ("items", "keys", "values") else result)
            elif name in _WRITE_METHODS.get(kind, _NONE) and (plain_args or name in ("append", "extend", "insert",
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
        saved, left, broke = self.frame, self.maybe_left, self.maybe_broke
        self.frame, self.maybe_left, self.maybe_broke = frame, False, False
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
            self.frame, self.maybe_left, self.maybe_broke = saved, left, broke
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

    def call_span(self, node: ast.expr | ast.stmt) -> Span:
        return span_of(self.script, node)

    # ------------------------------------------------------------ op calls

    def op(self, node: ast.Call, name: str, batch: _Batch | None) -> Any:
        recorder = self.op_recorder
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
        ev = self._evaluate_op(call, name, node, batch, recorder)
        if ev.op is not None and ev.conditional and self.guards and len(self.guards) == self.conditional \
                and not self.maybe_left and not self.maybe_broke and not self._forced:
            return replace(ev, guards=tuple((g.table, g.exists) for g in self.guards))
        return ev

    def _evaluate_op(self, call: OpCall, name: str, node: ast.Call, batch: _Batch | None,
                     recorder: Recorder) -> EvaluatedOp:
        conditional = self.uncertain
        self._forced = False  # conditional for a reason of its own (not the tests around it)
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
        written = list(node.args)
        if name == "create_table" and len(args) == len(written):
            # a CHECK constraint Alembic never compares: one we cannot read is left out
            kept = [(a, arg) for a, arg in zip(args, written) if _known(a) or not _is_check_constraint(arg)]
            args, written = [a for a, _ in kept], [arg for _, arg in kept]
        unread: tuple[str, ...] = ()
        if name == "create_table" and not all(_known(a) for a in args[1:]):
            unread = _unread_columns(written, args)
            if not unread or conditional:  # a constraint, an unnamed column...: the table is uncertain
                unread = ()
                conditional = self._forced = True
        # a type we cannot read is an opaque type (never compared); any other keyword we cannot
        # read (nullable=, new_column_name=, server_default=...) leaves the op's table uncertain
        # inside (`unread_keywords`): dropping it silently would replay a change that did not happen
        unread_keywords = tuple(k for k, v in kwargs.items() if not _known(v) and k in _SHAPE_KEYWORDS)
        kwargs = {k: v if _known(v) else OpaqueType(_describe(v)) for k, v in kwargs.items()
                  if _known(v) or k in _TYPE_KEYWORDS}
        args = [OpaqueType(_describe(a)) if not _known(a) else a for a in args]
        before = len(recorder.recorded)
        try:
            method(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - wrong arguments for this Alembic version, half-typed call...
            return EvaluatedOp(call, None, f"{type(exc).__name__}: {exc}", conditional, table)
        if len(recorder.recorded) == before or not isinstance(recorder.recorded[-1], alembic_ops.MigrateOperation):
            return EvaluatedOp(call, None, "not an operation", conditional, table)
        op = recorder.recorded[-1]
        for field_name in TYPE_FIELDS:  # `type_=sa.Boolean`, a class: what SQLAlchemy itself makes of it
            value = vars(op).get(field_name)
            if isinstance(value, type) and issubclass(value, TypeEngine):
                setattr(op, field_name, to_instance(value))
        if not well_typed(op):  # `op.create_table(sa.Column(...))` while the name is being typed
            return EvaluatedOp(call, None, "a name that is not a string, or a flag that is not a bool",
                               conditional, table)
        return EvaluatedOp(call, op, "", conditional, table, unread_columns=unread, unread_keywords=unread_keywords)


_TYPE_KEYWORDS = ("type_", "existing_type")
# the keywords of op calls that change what the comparison sees (`postgresql_concurrently=`,
# `existing_nullable=`, `postgresql_using=`... do not)
_SHAPE_KEYWORDS = frozenset({"nullable", "server_default", "new_column_name", "comment", "autoincrement", "unique",
                             "ondelete", "onupdate", "schema", "postgresql_where", "sqlite_where", "mssql_where"})


def _unread_columns(written_args: list[ast.expr], args: list) -> tuple[str, ...]:
    """The names of create_table's unreadable arguments when every one of them is written
    `sa.Column("<literal>", ...)` (a Computed expression we cannot evaluate...), else ()."""
    if len(written_args) != len(args) or any(isinstance(a, ast.Starred) for a in written_args):
        return ()
    names = []
    for written, value in zip(written_args[1:], args[1:]):
        if _known(value):
            continue
        func = written.func if isinstance(written, ast.Call) else None
        callee = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        first = written.args[0] if isinstance(written, ast.Call) and written.args else None
        if callee != "Column" or not isinstance(first, ast.Constant) or not isinstance(first.value, str):
            return ()
        names.append(first.value)
    return tuple(names)


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


def outside_questions(script: MigrationScript, dialect: str | None, outside: Outside | None = None) -> tuple[str, ...]:
    """What evaluating the script's upgrade() (with `dialect`, as the replay does) and
    downgrade() (as check_downgrade does) asks other files: the dotted names whose
    `__tablename__` it reads. An evaluation is a function of the text, the dialect and the
    answers: the same answers, the same questions asked next."""
    if not reads_outside(script):
        return ()
    asked = [*evaluate(script, script.upgrade, dialect, outside).outside,
             *evaluate(script, script.downgrade, None, outside).outside]
    return tuple(dict.fromkeys(dotted for dotted, _ in asked))


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
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(stmt.name, stmt)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Expr)):
            continue
        else:  # if / try / for / with at module level: what they bind is not known
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    bind(node.id, None)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    bind(node.name, None)
    return out
