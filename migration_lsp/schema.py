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

States are values that share structure: a revision's state shares every table it does not
touch with the state it started from (`TableMap`, a persistent hash trie), so the cached
states of a whole history take memory linear in its length, and the tables two states
differ in are found without looking at the others (`TableMap.diff`).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import os
import re
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, ItemsView, Iterable, Mapping, Sequence, ValuesView
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from pathlib import Path
from functools import lru_cache
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
from .graph import RevisionGraph
from .scripts import Function, MigrationScript, OpCall, OtherCall

log = logging.getLogger("migration_lsp")

SAFE_PACKAGES = ("sqlalchemy", "alembic")
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
            return Opaque(_source(node))

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
            is_module = isinstance(base, ModuleType)
            if is_module or _from_sqlalchemy(base):
                try:
                    return getattr(base, node.attr)
                except AttributeError:
                    if is_module:  # a submodule not imported yet
                        return _resolve_dotted(f"{base.__name__}.{node.attr}")
                    raise
            return Opaque(_source(node))
        return Opaque(_source(node))

    def _call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.attr == "f" \
                and (self.names.get(func.value.id) is self.recorder
                     or func.value.id not in self.names):  # op.f / batch_op.f
            name = self.value(node.args[0]) if node.args else None
            return sa.sql.elements.conv(name) if isinstance(name, str) else Opaque(_source(node))
        fn = self._eval(func)
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
    op = recorder.recorded[-1]
    for name in _TYPES:  # `type_=sa.Boolean`, a class: what SQLAlchemy itself makes of it
        value = vars(op).get(name)
        if isinstance(value, type) and issubclass(value, TypeEngine):
            setattr(op, name, to_instance(value))
    if not _well_typed(op):  # `op.create_table(sa.Column(...))` while the name is being typed
        return EvaluatedOp(call, None, "a name that is not a string, or a flag that is not a bool")
    return EvaluatedOp(call, op)


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


# --------------------------------------------------------------------------- schema state


Origin = tuple[Path, Span]

_HASH_MASK = (1 << 64) - 1
_BITS = 5
_WIDTH = 1 << _BITS  # children of a branch node
_SLOT = _WIDTH - 1
_LEAF_MAX = 16  # entries a leaf holds before it is split (unless the hash bits are used up)
_MAX_DEPTH = 64 // _BITS
_MISSING: Any = object()


class TableMap(Mapping):
    """An immutable mapping (table key -> TableState) whose versions share structure.

    A hash trie: a node is a leaf (a small dict, never mutated once published) or a branch
    (a tuple of `_WIDTH` children, None for empty ones) indexed by successive 5-bit slices
    of the key's hash. `set` and `delete` return a new map that copies only the path to
    the changed leaf, so a state derived from another one by an op costs O(log n) memory,
    and `diff` finds the keys two related maps differ in without visiting the subtrees
    they share. Iteration order follows the hashes (not insertion)."""

    __slots__ = ("_root", "_len")

    def __init__(self, items: Mapping | Iterable[tuple[Any, Any]] = ()) -> None:
        root: Any = {}
        length = 0
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            root, grew = _assoc(root, hash(key) & _HASH_MASK, key, value, 0)
            length += grew
        self._root = root
        self._len = length

    @classmethod
    def _make(cls, root: Any, length: int) -> TableMap:
        new = object.__new__(cls)
        new._root = root
        new._len = length
        return new

    # Mapping -------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        node = self._root
        if type(node) is tuple:
            h = hash(key) & _HASH_MASK
            while type(node) is tuple:
                node = node[h & _SLOT]
                if node is None:
                    return default
                h >>= _BITS
        return node.get(key, default)

    def __contains__(self, key: Any) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        for leaf in _leaves(self._root):
            yield from leaf

    def items(self) -> ItemsView:
        return _Items(self)

    def values(self) -> ValuesView:
        return _Values(self)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, TableMap):
            if self._len != other._len:
                return False
            return all(self.get(k, _MISSING) == other.get(k, _MISSING) for k in self.diff(other))
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TableMap({dict(self.items())!r})"

    def __reduce__(self):
        return (TableMap, (dict(self.items()),))

    # versions ------------------------------------------------------------

    def set(self, key: Any, value: Any) -> TableMap:
        """A map with `key` bound to `value` (this one is unchanged)."""
        root, grew = _assoc(self._root, hash(key) & _HASH_MASK, key, value, 0)
        return TableMap._make(root, self._len + grew)

    def delete(self, key: Any) -> TableMap:
        """A map without `key` (this one when it has no such key)."""
        root = _dissoc(self._root, hash(key) & _HASH_MASK, key)
        if root is self._root:
            return self
        return TableMap._make({} if root is None else root, self._len - 1)

    def diff(self, other: TableMap) -> set:
        """Keys present in only one of the maps or bound to different objects (identity):
        linear in what differs when the maps derive from a common version."""
        out: set = set()
        _diff(self._root, other._root, out)
        return out


class _Items(ItemsView):
    def __iter__(self):
        for leaf in _leaves(self._mapping._root):
            yield from leaf.items()


class _Values(ValuesView):
    def __iter__(self):
        for leaf in _leaves(self._mapping._root):
            yield from leaf.values()


def _leaves(node: Any):
    if type(node) is dict:
        yield node
        return
    stack = [node]
    while stack:
        for child in reversed(stack.pop()):
            if child is None:
                continue
            if type(child) is dict:
                yield child
            else:
                stack.append(child)


def _assoc(node: Any, h: int, key: Any, value: Any, depth: int) -> tuple[Any, bool]:
    """(node with key -> value, whether the key is new); `h` is the hash shifted to `depth`."""
    if type(node) is tuple:
        slot = h & _SLOT
        child = node[slot]
        if child is None:
            new_child, grew = {key: value}, True
        else:
            new_child, grew = _assoc(child, h >> _BITS, key, value, depth + 1)
        return node[:slot] + (new_child,) + node[slot + 1:], grew
    grew = key not in node
    if grew and len(node) >= _LEAF_MAX and depth < _MAX_DEPTH:
        return _assoc(_split(node, depth), h, key, value, depth)
    new = node.copy()
    new[key] = value
    return new, grew


def _split(leaf: dict, depth: int) -> tuple:
    children: list[Any] = [None] * _WIDTH
    shift = depth * _BITS
    for key, value in leaf.items():
        slot = ((hash(key) & _HASH_MASK) >> shift) & _SLOT
        child = children[slot]
        if child is None:
            children[slot] = {key: value}
        else:
            child[key] = value
    return tuple(children)


def _dissoc(node: Any, h: int, key: Any) -> Any:
    """The node without `key` (the same node when absent; None when it becomes empty)."""
    if type(node) is tuple:
        slot = h & _SLOT
        child = node[slot]
        if child is None:
            return node
        new_child = _dissoc(child, h >> _BITS, key)
        if new_child is child:
            return node
        new = node[:slot] + (new_child,) + node[slot + 1:]
        return None if all(c is None for c in new) else new
    if key not in node:
        return node
    new = node.copy()
    del new[key]
    return new or None


def _flat(node: Any) -> dict:
    if node is None:
        return {}
    if type(node) is dict:
        return node
    out: dict = {}
    for leaf in _leaves(node):
        out.update(leaf)
    return out


def _diff(a: Any, b: Any, out: set) -> None:
    if a is b:
        return
    if type(a) is tuple and type(b) is tuple:
        for x, y in zip(a, b):
            if x is not y:
                _diff(x, y, out)
        return
    fa, fb = _flat(a), _flat(b)
    for key, value in fa.items():
        if fb.get(key, _MISSING) is not value:
            out.add(key)
    for key in fb:
        if key not in fa:
            out.add(key)


EMPTY_TABLES = TableMap()


class Names(AbstractSet):
    """An immutable set of (table) names whose versions share structure, a TableMap of
    name -> True: adding names to a set of thousands costs O(log n) each, not a copy of
    the set (one revision with 16,000 raw DDL statements replayed in quadratic time).
    Compares equal to a frozenset of the same names."""

    __slots__ = ("_map",)

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._map = TableMap((name, True) for name in names)

    @classmethod
    def _from_iterable(cls, names: Iterable[str]) -> Names:
        return cls(names)

    def __contains__(self, name: object) -> bool:
        return name in self._map

    def __iter__(self):
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def union(self, *others: Iterable[str]) -> Names:
        """This set with the names of `others` (this very object when none is new)."""
        names = self._map
        for other in others:
            for name in other:
                if name not in names:
                    names = names.set(name, True)
        if names is self._map:
            return self
        new = object.__new__(Names)
        new._map = names
        return new

    __hash__ = AbstractSet._hash

    def __repr__(self) -> str:
        return f"Names({set(self)!r})"

    def __reduce__(self):
        return (Names, (tuple(self),))


NO_NAMES = Names()


class Origins(Sequence):
    """An immutable sequence of origins that grows at the end without copying: a chain of
    nodes sharing their prefix, so the `unknown` origins of thousands of states take
    memory linear in the calls, not in the states. Compares equal to a tuple of the same
    items."""

    __slots__ = ("_parent", "_item", "_len", "_first")

    def __init__(self, items: Iterable[Origin] = ()) -> None:
        self._parent: Origins | None = None
        self._item: Any = None
        self._len = 0
        self._first: Any = None
        node = self
        for item in items:
            node = node._append(item)
        if node is not self:
            self._parent, self._item, self._len, self._first = node._parent, node._item, node._len, node._first

    def _append(self, item: Origin) -> Origins:
        node = object.__new__(Origins)
        node._parent = self if self._len else None
        node._item = item
        node._len = self._len + 1
        node._first = self._first if self._len else item
        return node

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self):
        items = []
        node: Origins | None = self
        while node is not None and node._len:
            items.append(node._item)
            node = node._parent
        return reversed(items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self)[index]
        n = self._len
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("Origins index out of range")
        if index == 0:
            return self._first
        node = self
        for _ in range(n - 1 - index):
            node = node._parent  # type: ignore[assignment]
        return node._item

    def __add__(self, items: Iterable[Origin]) -> Origins:
        node = self
        for item in items:
            node = node._append(item)
        return node

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, Origins):
            if self._len != other._len:
                return False
            a: Origins | None = self
            b: Origins | None = other
            while a is not b and a is not None and b is not None and a._len:
                if a._item != b._item:
                    return False
                a, b = a._parent, b._parent
            return True
        if isinstance(other, tuple):
            return self._len == len(other) and tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))

    def __reduce__(self):
        return (Origins, (tuple(self),))


NO_ORIGINS = Origins()


def _column_key(column: ColumnState) -> Any:
    return column.name


def _index_key(pair: tuple) -> Any:
    return pair[0].name


_KEYS = {"column": _column_key, "index": _index_key}


class Keyed(Sequence):
    """An immutable sequence (a table's columns, its (index, origin) pairs) whose versions
    share structure: appending, removing the items of a key (a name), replacing one item
    and finding the first item of a key cost O(log n), not a copy of the sequence. A table
    that one revision gives thousands of columns or indexes is replayed in linear time
    (a tuple per op made it quadratic: 16,000 ops took 15 s). Items live in a TableMap by
    insertion number, the numbers of each key in another; the sequence is sorted out on
    first iteration (and kept). Compares equal to a tuple of the same items."""

    __slots__ = ("_kind", "_items", "_keys", "_next", "_tuple")

    @classmethod
    def of(cls, items: Iterable[Any], kind: str) -> Keyed:
        """Raises TypeError for an unhashable key (callers then use tuples)."""
        key = _KEYS[kind]
        items = tuple(items)
        by_key: dict[Any, tuple[int, ...]] = {}
        for n, item in enumerate(items):
            k = key(item)
            by_key[k] = by_key.get(k, ()) + (n,)
        new = cls._make(kind, TableMap(enumerate(items)), TableMap(by_key), len(items))
        new._tuple = items
        return new

    @classmethod
    def _make(cls, kind: str, items: TableMap, keys: TableMap, next_: int) -> Keyed:
        new = object.__new__(cls)
        new._kind, new._items, new._keys, new._next, new._tuple = kind, items, keys, next_, None
        return new

    def get(self, key: Any) -> Any:
        """The first item of `key`, or None."""
        numbers = self._keys.get(key)
        return self._items[numbers[0]] if numbers else None

    def appended(self, item: Any) -> Keyed:
        k = _KEYS[self._kind](item)
        n = self._next
        return Keyed._make(self._kind, self._items.set(n, item), self._keys.set(k, self._keys.get(k, ()) + (n,)),
                           n + 1)

    def without(self, key: Any) -> Keyed:
        """The sequence without the items of `key` (this one when there are none)."""
        numbers = self._keys.get(key)
        if not numbers:
            return self
        items = self._items
        for n in numbers:
            items = items.delete(n)
        return Keyed._make(self._kind, items, self._keys.delete(key), self._next)

    def replaced(self, old: Any, new: Any) -> Keyed:
        """`new` in the place of the item that *is* `old` (its key may differ)."""
        key = _KEYS[self._kind]
        old_key, new_key = key(old), key(new)
        for n in self._keys.get(old_key, ()):
            if self._items[n] is old:
                break
        else:
            raise ValueError("not an item of this sequence")
        keys = self._keys
        if old_key != new_key:
            rest = tuple(m for m in keys[old_key] if m != n)
            keys = keys.set(old_key, rest) if rest else keys.delete(old_key)
            keys = keys.set(new_key, tuple(sorted(keys.get(new_key, ()) + (n,))))
        return Keyed._make(self._kind, self._items.set(n, new), keys, self._next)

    def _all(self) -> tuple:
        if self._tuple is None:
            self._tuple = tuple(item for _, item in sorted(self._items.items(), key=_first))
        return self._tuple

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._all())

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __add__(self, items: Iterable[Any]) -> Keyed:
        new = self
        for item in items:
            new = new.appended(item)
        return new

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, (Keyed, tuple)):
            return len(self) == len(other) and self._all() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return repr(self._all())

    def __reduce__(self):
        return (Keyed.of, (self._all(), self._kind))


def _first(pair: tuple) -> Any:
    return pair[0]


KEYED_FROM = 32  # items: below, a tuple is copied faster than a Keyed is updated


def keyed(items: Sequence[Any], kind: str) -> Keyed | None:
    """`items` as a Keyed sequence (the same object when it is one), None for a short
    tuple or when a key is unhashable (the caller then works on the tuple)."""
    if type(items) is Keyed:
        return items  # type: ignore[return-value]
    if len(items) < KEYED_FROM:
        return None
    try:
        return Keyed.of(items, kind)
    except TypeError:
        return None


class IndexRecord:
    """An index on plain columns, as the schema state keeps it: what `sa.Index` would hold
    (`name`, `unique`, `expressions` as column names, dialect `kwargs`) without building
    the throwaway Table an `sa.Index` / `CreateIndexOp.to_index()` needs. Immutable."""

    __slots__ = ("name", "expressions", "unique", "kwargs")

    def __init__(self, name: Any, columns: Iterable[str], unique: Any = False,
                 kwargs: Mapping[str, Any] | None = None) -> None:
        # what sa.Index does with its name (a plain str becomes a quoted_name)
        object.__setattr__(self, "name", sa.sql.elements.quoted_name.construct(name, None))
        object.__setattr__(self, "expressions", tuple(columns))
        object.__setattr__(self, "unique", unique)
        object.__setattr__(self, "kwargs", dict(kwargs or {}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("IndexRecord is immutable")

    def __repr__(self) -> str:
        return f"IndexRecord({self.name!r}, {list(self.expressions)!r}, unique={self.unique!r})"


@dataclass(frozen=True, slots=True)
class ColumnState:
    # never mutated, never attached to a table we hand out (to_table copies it); shared
    # with the op that made it (an add_column's column, a create_table's table)
    column: sa.Column
    origin: Origin | None = None
    name: str = field(init=False, repr=False, compare=False)  # the column's (read often)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.column.name)


@dataclass(frozen=True, slots=True)
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
        if type(self.columns) is Keyed:
            try:
                return self.columns.get(name)
            except TypeError:  # an unhashable name: no such column
                return None
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
                   column_origins: Mapping[str, Origin] | None = None, *, copy: bool = True) -> TableState:
        """The state of `table`, with private copies of its columns. `copy=False` shares
        them instead, but for those with foreign keys (a copy leaves out the ones the table's
        constraints own, which the state keeps as constraints): only for a table nobody
        changes afterwards (the throwaway one `CreateTableOp.to_table()` builds)."""
        column_origins = column_origins or {}
        columns = tuple(ColumnState(c._copy() if copy or c.foreign_keys else c, column_origins.get(c.name, origin))
                        for c in table.columns)
        constraints = tuple((c, origin) for c in table.constraints)
        indexes = tuple((i, origin) for i in table.indexes)
        return cls(table.name, table.schema, columns, constraints, indexes, table.comment, origin)

    def evolve(self, **changes: Any) -> TableState:
        """`dataclasses.replace`, without its per-call introspection (the replay's hot path)."""
        get = changes.get
        return TableState(get("name", self.name), get("schema", self.schema), get("columns", self.columns),
                          get("constraints", self.constraints), get("indexes", self.indexes),
                          get("comment", self.comment), get("origin", self.origin), get("info", self.info))


def _index_columns(index: sa.Index | IndexRecord) -> tuple[str, ...]:
    if type(index) is IndexRecord:
        return index.expressions
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


@dataclass(frozen=True, slots=True)
class SchemaState:
    """All tables at one revision: a mapping shared structurally between revisions."""

    tables: Mapping[str, TableState] = field(default_factory=lambda: EMPTY_TABLES)  # any mapping -> TableMap
    # tables whose shape we cannot know (raw DDL, helpers): never reported as drift
    uncertain: AbstractSet[str] = NO_NAMES  # a Names (any set is converted)
    # anything at all may have happened (a helper call we cannot follow)
    unknown: Sequence[Origin] = NO_ORIGINS  # an Origins (any sequence is converted)

    def __post_init__(self) -> None:
        if type(self.tables) is not TableMap:
            object.__setattr__(self, "tables", TableMap(self.tables))
        if type(self.unknown) is not Origins:
            object.__setattr__(self, "unknown", Origins(self.unknown))
        if type(self.uncertain) is not Names:
            object.__setattr__(self, "uncertain", Names(self.uncertain))

    def table(self, name: str, schema: str | None = None) -> TableState | None:
        return self.tables.get(f"{schema}.{name}" if schema else name)

    def with_table(self, table: TableState) -> SchemaState:
        return SchemaState(self.tables.set(table.key, table), self.uncertain, self.unknown)

    def without_table(self, key: str) -> SchemaState:
        return SchemaState(self.tables.delete(key), self.uncertain, self.unknown)

    def with_uncertain(self, names: Iterable[str]) -> SchemaState:
        names = tuple(names)
        if all(name in self.uncertain for name in names):  # nothing new: share the set
            return self
        return SchemaState(self.tables, self.uncertain.union(names), self.unknown)

    def with_unknown(self, origin: Origin) -> SchemaState:
        return SchemaState(self.tables, self.uncertain, self.unknown + (origin,))


def merge_states(states: Iterable[SchemaState]) -> SchemaState:
    """The schema where several branches meet: the union of their tables."""
    states = list(states)
    if not states:
        return SchemaState()
    if len(states) == 1:
        return states[0]
    # the first branch's tables, plus what each other branch has that differs (branches
    # share the tables nobody touched since they forked: only the touched ones are visited)
    tables = states[0].tables
    for state in states[1:]:
        theirs = state.tables
        for key in tables.diff(theirs):
            table = theirs.get(key)
            if table is None:
                continue  # only in the tables so far: kept
            mine = tables.get(key)
            tables = tables.set(key, table if mine is None else _union(mine, table))
    uncertain = states[0].uncertain
    for state in states[1:]:
        if state.uncertain is not uncertain:
            uncertain = uncertain.union(state.uncertain)
    # every branch's unknown origins, in order, each once (the branches share those from
    # before they forked: concatenating them would double those at every merge)
    unknown = states[0].unknown
    seen = None
    for state in states[1:]:
        if state.unknown is unknown or not state.unknown:
            continue
        seen = set(unknown) if seen is None else seen
        for origin in state.unknown:
            if origin not in seen:
                seen.add(origin)
                unknown = unknown + (origin,)
    return SchemaState(tables, uncertain, unknown)


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


# Raw SQL can be any length (a 100 KB op.execute): it is read in linear time. Patterns run
# on the whole text only when their matches have a bounded length (a bounded number of
# steps at each position); what follows a keyword is read from a bounded window after it,
# in text whose whitespace runs are squeezed to one space. (`^\\s*(CREATE|...)` took minutes
# on 40,000 newlines: each line start scanned all the whitespace after it.)
SQL_WINDOW = 512
_DDL_WORD = re.compile(r"(?:CREATE|ALTER|DROP|RENAME|COMMENT)\b", re.I)
_DDL_KEYWORD = re.compile(r"\b(?:(INDEX)|TABLE|INTO|UPDATE)", re.I)
_DDL_NAME = re.compile(r"\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)", re.I)
_DDL_INDEX_NAME = re.compile(r"\s+\S+\s+ON\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)", re.I)


def squeeze_sql(sql: str) -> str:
    """The SQL with every run of whitespace one space (and none at the ends)."""
    return " ".join(sql.split())


def is_ddl(sql: str) -> bool:
    """Does a line of the SQL start with CREATE / ALTER / DROP / RENAME / COMMENT?"""
    return any(_DDL_WORD.match(line.lstrip()[:8]) for line in sql.split("\n"))


def find_after_keywords(sql: str, keyword: re.Pattern, rest: Callable[[re.Match], re.Pattern]) -> list[str]:
    """`findall` of keyword + rest(keyword's match) on the squeezed SQL (group 1 of `rest`),
    with `rest` matched in a window of SQL_WINDOW characters after each keyword."""
    text = squeeze_sql(sql)
    out = []
    pos = 0
    while (m := keyword.search(text, pos)) is not None:
        found = rest(m).match(text, m.end(), m.end() + SQL_WINDOW)
        if found is None:
            pos = m.start() + 1
        else:
            out.append(found.group(1))
            pos = found.end()
    return out


def ddl_tables(sql: str) -> list[str]:
    """Names after TABLE / INDEX x ON / INTO / UPDATE (tables raw DDL may change)."""
    return find_after_keywords(sql, _DDL_KEYWORD, lambda m: _DDL_INDEX_NAME if m.group(1) else _DDL_NAME)


def add_constraint_op(constraint: sa.Constraint) -> alembic_ops.AddConstraintOp:
    """`AddConstraintOp.from_constraint`, also for a foreign key whose referred table is not in
    the constraint's MetaData (a table rebuilt alone from the history, the few tables a D002
    comparison looks at): Alembic resolves the referred column object there and raises, so
    such a key is described from its own "table.column" spec instead."""
    try:
        return alembic_ops.AddConstraintOp.from_constraint(constraint)
    except sa.exc.NoReferencedTableError:
        if not isinstance(constraint, sa.ForeignKeyConstraint):
            raise
    specs = [element.target_fullname.rpartition(".") for element in constraint.elements]
    referent_schema, _, referent_table = specs[0][0].rpartition(".")
    kw = {key: getattr(constraint, key) for key in ("onupdate", "ondelete", "initially", "deferrable", "match",
                                                    "use_alter") if getattr(constraint, key)}
    return alembic_ops.CreateForeignKeyOp(
        constraint.name, constraint.table.name, referent_table, list(constraint.column_keys),
        [column for _, _, column in specs], source_schema=constraint.table.schema,
        referent_schema=referent_schema or None, **kw, **constraint.dialect_kwargs)


def drop_constraint_op(constraint: sa.Constraint) -> alembic_ops.DropConstraintOp:
    """`DropConstraintOp.from_constraint`, with `add_constraint_op` as its reverse."""
    try:
        return alembic_ops.DropConstraintOp.from_constraint(constraint)
    except sa.exc.NoReferencedTableError:
        if not isinstance(constraint, sa.ForeignKeyConstraint):
            raise
    return alembic_ops.DropConstraintOp(
        constraint.name, constraint.table.name, type_="foreignkey", schema=constraint.table.schema,
        _reverse=add_constraint_op(constraint))


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
        return state.with_uncertain((table,)) if table else state
    if op is None:
        table = _literal_table_name(ev.call)
        if table:
            return state.with_uncertain((table,))
        return state.with_unknown(origin)
    return _apply_safely(state, op, origin)


def _apply_safely(state: SchemaState, op: alembic_ops.MigrateOperation, origin: Origin) -> SchemaState:
    try:
        return _apply(state, op, origin)
    except Exception:  # an op inconsistent with the history (column already dropped...)
        table = op_table(op)[0]
        return state.with_uncertain((table,)) if table else state


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
        if sql and is_ddl(sql):
            return state.with_uncertain(ddl_tables(sql))
        return state
    if method in DATA_METHODS:
        return state
    return state.with_unknown((path, call.span))


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
        # the table is the op's own throwaway one: its columns are shared, not copied
        return state.with_table(TableState.from_table(_created_table(op), origin, copy=False))
    if isinstance(op, O.DropTableOp):
        if state.table(op.table_name, op.schema) is None:  # made outside the migrations
            return state.with_uncertain((op.table_name,))
        return state.without_table(_key(op.table_name, op.schema))
    if isinstance(op, O.RenameTableOp):
        old = state.table(op.table_name, op.schema)
        if old is None:
            return state.with_uncertain((op.table_name, op.new_table_name))
        state = state.without_table(old.key).with_table(old.evolve(name=op.new_table_name))
        # foreign keys pointing at the table follow it
        return _renamed_refs(state, None, old.name, {}, op.new_table_name)
    if isinstance(op, O.ExecuteSQLOp):
        sql = op.sqltext if isinstance(op.sqltext, str) else str(getattr(op.sqltext, "text", ""))
        if is_ddl(sql):
            return state.with_uncertain(ddl_tables(sql))
        return state
    if isinstance(op, (O.BulkInsertOp,)):
        return state
    table_name, schema_name = op_table(op)
    table = state.table(table_name, schema_name) if table_name else None
    if table is None:
        if table_name:
            return state.with_uncertain((table_name,))
        return state
    if isinstance(op, O.AddColumnOp):
        col = op.column  # never mutated: shared with the op
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
    if isinstance(op, O.DropColumnOp):
        name = op.column_name
        if table.column(name) is None:
            return state.with_uncertain((table.name,))
        columns = keyed(table.columns, "column")
        return state.with_table(table.evolve(
            columns=columns.without(name) if columns is not None else tuple(c for c in table.columns if c.name != name),
            indexes=tuple((i, o) for i, o in table.indexes if name not in _index_columns(i)),
            constraints=tuple((c, o) for c, o in table.constraints if name not in constraint_columns(c)),
        ))
    if isinstance(op, O.AlterColumnOp):
        current = table.column(op.column_name)
        if current is None:
            return state.with_uncertain((table.name,))
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
    if isinstance(op, O.CreateIndexOp):
        index = _index_of(op)
        indexes = keyed(table.indexes, "index")
        if indexes is not None and _hashable(index.name):
            return state.with_table(table.evolve(indexes=indexes.without(index.name).appended((index, origin))))
        return state.with_table(table.evolve(indexes=tuple(
            (i, o) for i, o in table.indexes if i.name != index.name) + ((index, origin),)))
    if isinstance(op, O.DropIndexOp):
        indexes = keyed(table.indexes, "index")
        if indexes is not None and _hashable(op.index_name):
            return state.with_table(table.evolve(indexes=indexes.without(op.index_name)))
        return state.with_table(table.evolve(indexes=tuple(
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
            return state.with_table(table.evolve(columns=tuple(columns)))
        return state.with_table(table.evolve(constraints=table.constraints + ((constraint, origin),)))
    if isinstance(op, O.DropConstraintOp):
        return state.with_table(table.evolve(constraints=tuple(
            (c, o) for c, o in table.constraints if c.name != op.constraint_name)))
    if isinstance(op, O.CreateTableCommentOp):
        return state.with_table(table.evolve(comment=op.comment))
    if isinstance(op, O.DropTableCommentOp):
        return state.with_table(table.evolve(comment=None))
    return state


_CREATED_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CREATED_TABLES_LOCK = threading.Lock()


def _created_table(op: alembic_ops.CreateTableOp) -> sa.Table:
    """`op.to_table()`, built once per op. Alembic attaches the op's own columns to the table
    it builds the first time, and copies them every other time, which leaves out their
    inline `ForeignKey`s: a second replay of the same op (a revision replayed again after an
    edit below it, the safety rules' op-by-op replay) would lose those foreign keys."""
    with _CREATED_TABLES_LOCK:
        table = _CREATED_TABLES.get(op)
        if table is None:
            table = _CREATED_TABLES[op] = op.to_table()
        return table


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
    if not op.kw and type(columns) in (list, tuple) and columns \
            and all(type(c) is str for c in columns) and len(set(columns)) == len(columns):
        return IndexRecord(op.index_name, columns, op.unique)
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
                constraint, changed = sa.UniqueConstraint(*new_cols, name=constraint.name), True
            elif new_cols != list(cols) and isinstance(constraint, sa.PrimaryKeyConstraint):
                constraint, changed = sa.PrimaryKeyConstraint(*new_cols, name=constraint.name), True
            constraints.append((constraint, origin))
        indexes = []
        for index, origin in table.indexes:
            cols = _index_columns(index)
            if local and any(c in local for c in cols):
                index = IndexRecord(index.name, [local.get(c, c) for c in cols], index.unique, index.kwargs)
                changed = True
            indexes.append((index, origin))
        if changed:
            state = state.with_table(table.evolve(constraints=tuple(constraints), indexes=tuple(indexes)))
    return state


def _key(name: str, schema: str | None) -> str:
    return f"{schema}.{name}" if schema else name


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

    def __init__(self, graph: RevisionGraph, previous: Replay | None = None) -> None:
        self.graph = graph
        self._results: dict[str, RevisionSchema] = {}
        self._ops: dict[MigrationScript, tuple[EvaluatedOp, ...]] = {}
        self._released: set[str] = set()  # results kept without their ops (see release)
        if previous is not None:
            current = set(graph.by_id.values())
            self._ops = {s: ops for s, ops in previous._ops.items() if s in current}
            stale = self._changed_since(previous.graph)
            for rev, result in previous._results.items():
                if rev not in stale and rev in graph.by_id:
                    self._results[rev] = result
            self._released = {r for r in previous._released if r in self._results}

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
        script = self.graph.by_id[rev]
        if script not in self._ops:
            self._ops[script] = tuple(evaluate_function(script, script.upgrade))
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

    def _replay_one(self, rev: str) -> RevisionSchema:
        before = merge_states(self._results[p].after for p in self._below(rev) if p in self._results)
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
        return merge_states(self.prepare(h).after for h in self.graph.heads)


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
                return drop_constraint_op(constraint)
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
        except Exception:
            irreversible.append(ev)
            continue
        completed.append(op)
        state = apply_op(state, ev, path)
    downgrade = alembic_ops.UpgradeOps(ops=completed).reverse()
    return list(downgrade.ops), irreversible
