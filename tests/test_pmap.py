"""The persistent collections of `pmap`: each behaves as its plain counterpart (dict,
frozenset, tuple) and every older version stays what it was.

- `TableMap`: random operation sequences against a dict model, with colliding hashes and
  deep tries; `diff` finds exactly the keys two versions differ in (identity, not equality);
- `Names`: a frozenset whose `union` returns the same object when nothing is new;
- `Origins`: a tuple that shares its prefix;
- `Keyed`: a tuple of named items with O(log n) append / remove-by-name / replace, checked
  against a list model on random operation sequences.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_lsp.pmap import KEYED_FROM, Keyed, Names, Origins, TableMap, keyed

class Key:
    """A key whose hash we choose: forces collisions and deep tries."""

    def __init__(self, name: str, h: int) -> None:
        self.name, self.h = name, h

    def __hash__(self) -> int:
        return self.h

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.name == self.name

    def __repr__(self) -> str:
        return f"Key({self.name!r}, {self.h})"


KEYS = [f"t{i}" for i in range(60)] + [Key(f"k{i}", h) for i, h in enumerate(
    [0, 0, 0, 1, 32, 1024, 2 ** 40, -1, -2, 2 ** 63 - 1, -(2 ** 63), 31, 63] * 3)]


def naive_diff(a, b) -> set:
    missing = object()
    return {k for k in set(a) | set(b) if a.get(k, missing) is not b.get(k, missing)}


operations = st.lists(st.tuples(st.sampled_from(["set", "set", "set", "delete"]),
                                st.integers(0, len(KEYS) - 1), st.integers(0, 5)), max_size=250)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_table_map_is_an_immutable_dict(ops):
    versions = [(TableMap(), {})]
    values = [object() for _ in range(6)]
    for what, k, v in ops:
        m, d = versions[-1]
        key = KEYS[k]
        if what == "set":
            m2, d2 = m.set(key, values[v]), {**d, key: values[v]}
        else:
            m2, d2 = m.delete(key), {kk: vv for kk, vv in d.items() if kk != key}
            if key not in d:
                assert m2 is m
        versions.append((m2, d2))
    for m, d in versions:  # every version, old ones included, is what it was
        assert len(m) == len(d)
        assert dict(m.items()) == d and set(m) == set(d)
        assert sorted(map(id, m.values())) == sorted(map(id, d.values()))
        for key in KEYS:
            assert (key in m) == (key in d)
            assert m.get(key) is d.get(key)
        assert m == d and m == TableMap(d)
    for (m1, d1), (m2, d2) in zip(versions, versions[1:] + versions[:1]):
        assert m1.diff(m2) == naive_diff(d1, d2) == m2.diff(m1)
        assert (m1 == m2) == (d1 == d2)
    last_m, last_d = versions[-1]
    assert versions[0][0].diff(last_m) == naive_diff({}, last_d)


def test_table_map_basics():
    m = TableMap({"a": 1, "b": 2})
    assert m["a"] == 1 and m.get("zz") is None and m.get("zz", 3) == 3
    with pytest.raises(KeyError):
        m["zz"]
    big = TableMap((f"t{i}", i) for i in range(5000))
    assert len(big) == 5000 and big["t4999"] == 4999 and sorted(big.values()) == list(range(5000))
    smaller = big.delete("t17")
    assert len(smaller) == 4999 and "t17" in big and "t17" not in smaller
    assert big.diff(smaller) == {"t17"} and big.diff(big.set("t1", 1)) == set()
    assert big.diff(big.set("t1", 1.0)) == {"t1"}  # identity, not equality


def test_origins_is_a_tuple_that_shares_its_prefix():
    a = Origins()
    assert not a and len(a) == 0 and a == () and list(a) == []
    b = a + ((1, 2),) + ((3, 4),)
    c = b + ((5, 6),)
    assert b == ((1, 2), (3, 4)) and c == ((1, 2), (3, 4), (5, 6)) and b != c
    assert c[0] == (1, 2) and c[1] == (3, 4) and c[-1] == (5, 6) and c[1:] == ((3, 4), (5, 6))
    assert Origins([(1, 2), (3, 4)]) == b and hash(b) == hash(((1, 2), (3, 4)))
    assert len(b) == 2  # unchanged by c
    with pytest.raises(IndexError):
        c[3]


def test_names_is_a_frozenset_that_shares_itself():
    a = Names(["x", "y"])
    assert a == frozenset({"x", "y"}) and "x" in a and "z" not in a and len(a) == 2
    assert a.union(["x"], ("y",)) is a  # nothing new: the very same set
    b = a.union(["z"])
    assert b == {"x", "y", "z"} and a == {"x", "y"}  # the old version is unchanged
    assert hash(a) == hash(frozenset({"x", "y"})) and (a | {"q"}) == {"x", "y", "q"}
    many = Names(f"t{i}" for i in range(3000))
    assert len(many.union(["t1", "new"])) == 3001 and len(many) == 3000


def item(name: str, n: int) -> SimpleNamespace:
    return SimpleNamespace(name=name, n=n)


keyed_ops = st.lists(st.tuples(st.sampled_from(["append", "append", "without", "replace"]),
                               st.integers(0, 7), st.integers(0, 7)), max_size=120)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keyed_ops)
def test_keyed_is_a_tuple_of_named_items(ops):
    start = tuple(item(f"c{i % 8}", i) for i in range(KEYED_FROM))
    seq, model = Keyed.of(start, "column"), list(start)
    versions = [(seq, tuple(model))]
    for counter, (what, a, b) in enumerate(ops):
        name = f"c{a}"
        if what == "append":
            new = item(name, 1000 + counter)
            seq, model = seq.appended(new), model + [new]
        elif what == "without":
            after = seq.without(name)
            if not any(i.name == name for i in model):
                assert after is seq
            seq, model = after, [i for i in model if i.name != name]
        else:
            old = next((i for i in model if i.name == name), None)
            if old is None:
                with pytest.raises(ValueError):
                    seq.replaced(item(name, -1), item(name, -2))
                continue
            new = item(f"c{b}", 2000 + counter)
            seq, model = seq.replaced(old, new), [new if i is old else i for i in model]
        versions.append((seq, tuple(model)))
    for seq, model in versions:  # every version, old ones included
        assert len(seq) == len(model) and tuple(seq) == model and seq == model
        for k in range(8):
            first = next((i for i in model if i.name == f"c{k}"), None)
            assert seq.get(f"c{k}") is first


def test_keyed_only_for_long_sequences_of_hashable_keys():
    short = tuple(item(f"c{i}", i) for i in range(KEYED_FROM - 1))
    assert keyed(short, "column") is None  # a short tuple is copied faster
    long = short + (item("last", 0),)
    made = keyed(long, "column")
    assert type(made) is Keyed and keyed(made, "column") is made and made == long
    unhashable = long + (item(["a", "list"], 0),)
    assert keyed(unhashable, "column") is None  # the caller works on the tuple
    pairs = tuple((item(f"ix{i}", i), None) for i in range(KEYED_FROM))
    indexes = keyed(pairs, "index")
    assert indexes.get("ix3") is pairs[3] and indexes.without("ix3") == pairs[:3] + pairs[4:]
