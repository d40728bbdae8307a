"""Persistent (immutable, structure-sharing) collections for the schema states.

A revision's schema state shares every table it does not touch with the state it started
from, so the cached states of a whole history take memory linear in its length, and the
tables two states differ in are found without looking at the others (`TableMap.diff`).
Nothing here knows about schemas: keys and values are anything hashable / anything.
"""

from __future__ import annotations

import builtins
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    ValuesView,
)
from collections.abc import Set as AbstractSet
from typing import Any

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

    __slots__ = ("_len", "_root")

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

    def chunks_with(self, wanted: Any, summary: Callable[[Mapping[Any, Any]], AbstractSet[Any]],
                    memo: dict[int, tuple[Any, AbstractSet[Any]]]) -> Iterator[Mapping[Any, Any]]:
        """The map's disjoint read-only pieces (its leaves, in iteration order) whose
        `summary` holds `wanted`. A branch's summary is the union of its children's; both are
        kept in `memo` by node identity (the caller's dict: it bounds it), and versions share
        nodes, so a version derived from another summarizes only its new nodes, and a subtree
        without `wanted` is skipped whole (checks/history.py: which tables' foreign keys
        name a dropped column)."""
        root = self._root
        if wanted not in _summary(root, summary, memo):
            return
        if type(root) is dict:
            yield root
            return
        stack = [root]
        while stack:  # (the order of _leaves)
            for child in reversed(stack.pop()):
                if child is None or wanted not in _summary(child, summary, memo):
                    continue
                if type(child) is dict:
                    yield child
                else:
                    stack.append(child)

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

    def diff(self, other: TableMap) -> builtins.set[Any]:  # (`set` here is the method above)
        """Keys present in only one of the maps or bound to different objects (identity):
        linear in what differs when the maps derive from a common version."""
        out: builtins.set[Any] = set()
        _diff(self._root, other._root, out)
        return out


class _Items(ItemsView):
    _mapping: TableMap  # (MappingView's slot; typeshed does not declare it)

    def __iter__(self):
        for leaf in _leaves(self._mapping._root):
            yield from leaf.items()


class _Values(ValuesView):
    _mapping: TableMap  # (MappingView's slot; typeshed does not declare it)

    def __iter__(self):
        for leaf in _leaves(self._mapping._root):
            yield from leaf.values()


def _summary(node: Any, summary: Callable[[Mapping[Any, Any]], AbstractSet[Any]],
             memo: dict[int, tuple[Any, AbstractSet[Any]]]) -> AbstractSet[Any]:
    entry = memo.get(id(node))
    if entry is not None and entry[0] is node:
        return entry[1]
    if type(node) is dict:
        found = summary(node)
    else:
        found = frozenset().union(*(_summary(child, summary, memo) for child in node if child is not None))
    memo[id(node)] = (node, found)  # (the node is kept: its id is not reused while the entry lives)
    return found


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
    def _from_iterable(cls, names: Iterable[Any]) -> Names:
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

    __slots__ = ("_first", "_item", "_len", "_parent")

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._parent: Origins | None = None
        self._item: Any = None
        self._len = 0
        self._first: Any = None
        node = self
        for item in items:
            node = node._append(item)
        if node is not self:
            self._parent, self._item, self._len, self._first = node._parent, node._item, node._len, node._first

    def _append(self, item: Any) -> Origins:
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
            parent = node._parent
            assert parent is not None  # (0 < index < len: the chain is that long)
            node = parent
        return node._item

    def __add__(self, items: Iterable[Any]) -> Origins:
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


def _name_key(item: Any) -> Any:
    return item.name


def _first_name_key(pair: tuple) -> Any:
    return pair[0].name


# what a Keyed sequence is keyed by: a column state's name, an (index, origin) pair's index name
_KEYS = {"column": _name_key, "index": _first_name_key}


class Keyed(Sequence):
    """An immutable sequence (a table's columns, its (index, origin) pairs) whose versions
    share structure: appending, removing the items of a key (a name), replacing one item
    and finding the first item of a key cost O(log n), not a copy of the sequence. A table
    that one revision gives thousands of columns or indexes is replayed in linear time
    (a tuple per op made it quadratic: 16,000 ops took 15 s). Items live in a TableMap by
    insertion number, the numbers of each key in another; the sequence is sorted out on
    first iteration (and kept). Compares equal to a tuple of the same items."""

    __slots__ = ("_items", "_keys", "_kind", "_next", "_tuple")
    _kind: str  # "column" or "index": what the items are keyed by (_KEYS)
    _items: TableMap  # insertion number -> item
    _keys: TableMap  # key -> the insertion numbers of its items, ascending
    _next: int  # the next insertion number
    _tuple: tuple | None  # the items in order, once sorted out

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
        return items
    if len(items) < KEYED_FROM:
        return None
    try:
        return Keyed.of(items, kind)
    except TypeError:
        return None
