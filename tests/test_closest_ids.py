"""The indexed did-you-mean (`_closest`) against the original brute force, kept here as the oracle."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from migration_lsp.checks import graph as checks_graph
from migration_lsp.checks.graph import _closest, _index, closest_ids
from migration_lsp.graph import RevisionGraph
from migration_lsp.scripts import parse_script

HEX = "0123456789abcdef"


# ----------------------------------------------------------------------------- the oracle
# The implementation before the index, verbatim (edit_distance included, so the oracle does
# not depend on the module under test).

def oracle_edit_distance(a: str, b: str, limit: int) -> int:
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def oracle_closest(ids: tuple[str, ...], labels: tuple[str, ...], text: str, exclude: str | None,
                   limit: int) -> tuple[str, ...]:
    candidates: list[tuple[int, str]] = []
    max_distance = max(1, min(3, len(text) // 4))
    for rev in ids:
        if rev == exclude or abs(len(rev) - len(text)) > max_distance and not (
                rev.startswith(text) or text.startswith(rev)):
            continue
        if rev.startswith(text) or text.startswith(rev):
            candidates.append((0, rev))
            continue
        d = oracle_edit_distance(text, rev, max_distance)
        if d <= max_distance:
            candidates.append((d, rev))
    for label in labels:
        d = oracle_edit_distance(text, label, max_distance)
        if d <= max_distance:
            candidates.append((d, label))
    candidates.sort()
    return tuple(rev for _, rev in candidates[:limit])


# ----------------------------------------------------------------------------- generators

def edited(rng: random.Random, s: str, alphabet: str, edits: int) -> str:
    """s after `edits` random substitutions, insertions, deletions, adjacent transpositions
    or truncations (to a prefix)."""
    chars = list(s)
    for _ in range(edits):
        op = rng.choice(("substitute", "insert", "delete", "transpose", "truncate"))
        i = rng.randrange(len(chars) + 1)
        if op == "insert":
            chars.insert(i, rng.choice(alphabet))
        elif op == "truncate":
            del chars[i:]
        elif not chars:
            continue
        elif op == "substitute":
            chars[min(i, len(chars) - 1)] = rng.choice(alphabet)
        elif op == "delete":
            del chars[min(i, len(chars) - 1)]
        elif i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def random_string(rng: random.Random, alphabet: str, low: int, high: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def hex_ids(rng: random.Random, n: int) -> list[str]:
    """Like alembic's rev_id(), plus some near-duplicates so that distances 1-3 and ties occur."""
    ids = [f"{rng.getrandbits(48):012x}" for _ in range(n)]
    return ids + [edited(rng, rng.choice(ids), HEX, rng.randint(1, 3)) for _ in range(n // 4)]


def named_ids(rng: random.Random, n: int) -> list[str]:
    """Hand-written ids (Django style), short ids, non-ASCII characters."""
    words = ["initial", "add", "users", "user", "email", "drop", "index", "café", "straße", "表"]
    ids = [f"{i:04d}_" + "_".join(rng.choice(words) for _ in range(rng.randint(1, 3))) for i in range(n)]
    ids += [random_string(rng, "a1b2é", 0, 6) for _ in range(n // 2)]
    return ids + [edited(rng, rng.choice(ids), "abc_1é", rng.randint(1, 3)) for _ in range(n // 4)]


def dense_ids(rng: random.Random, n: int) -> list[str]:
    """A two-letter alphabet: many strings within distance 1-3 of each other, many ties."""
    return [random_string(rng, "ab", 0, 9) for _ in range(n)]


KINDS = {"hex": (hex_ids, HEX), "named": (named_ids, "abc_1é0"), "dense": (dense_ids, "ab")}


def scenario(rng: random.Random, kind: str):
    """ids (with duplicates now and then), labels (some equal to ids), queries, excludes."""
    make, alphabet = KINDS[kind]
    ids = make(rng, rng.choice([0, 1, 5, 40, 150]))
    ids += [rng.choice(ids) for _ in range(rng.randint(0, 3))] if ids else []
    rng.shuffle(ids)
    labels = [random_string(rng, "abcdeé_", 1, 12) for _ in range(rng.randint(0, 6))]
    labels += [rng.choice(ids) for _ in range(rng.randint(0, 2))] if ids else []
    queries = [""]
    for _ in range(60):
        roll = rng.random()
        if ids and roll < 0.75:
            queries.append(edited(rng, rng.choice(ids), alphabet, rng.randint(0, 4)))
        elif labels and roll < 0.85:
            queries.append(edited(rng, rng.choice(labels), alphabet, rng.randint(0, 3)))
        else:
            queries.append(random_string(rng, alphabet + "xyz", 0, 16))
    return tuple(ids), tuple(labels), queries


def check(ids, labels, text, exclude, limit) -> None:
    expected = oracle_closest(ids, labels, text, exclude, limit)
    assert _closest(ids, labels, text, exclude, limit) == expected, (text, exclude, limit)


# ----------------------------------------------------------------------------- equivalence

@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("seed", range(16))
def test_same_answer_as_the_brute_force(kind, seed):
    rng = random.Random(f"{kind}-{seed}")
    ids, labels, queries = scenario(rng, kind)
    for text in queries:
        exclude = rng.choice([None, None, text, rng.choice(ids) if ids else None, "nothing"])
        limit = rng.choice([3, 3, 3, 1, 0, 10, 1000, -1, -3])
        check(ids, labels, text, exclude, limit)


def test_same_answer_at_scale():
    """5,000 alembic-style ids, as in the latency budget."""
    rng = random.Random(5000)
    ids = tuple(f"{rng.getrandbits(48):012x}" for _ in range(5000))
    for _ in range(20):
        check(ids, (), edited(rng, rng.choice(ids), HEX, rng.randint(0, 4)), rng.choice([None, ids[0]]), 3)
    for text in ("", "0", "ab", "ffffffffffff", "0001_initial"):
        check(ids, (), text, None, 3)


@pytest.mark.parametrize("text", ["", "a", "ab", "abc", "abcd", "abcde", "abcdefgh", "abcdefghijkl"])
def test_edge_cases(text):
    ids = ("", "a", "ab", "ab", "abc", "abcd", "abdc", "bacd", "abcdefgh", "abcdefgh", "abcdefhg", "abcdefghijkl",
           "bacdefghijlk", "xbcdefghijk")
    labels = ("ab", "abd", "abcdefgg", "")
    for exclude in (None, "", "ab", "abcdefgh", text):
        for limit in (-20, -1, 0, 1, 2, 3, 4, 100):
            check(ids, labels, text, exclude, limit)


def test_every_distance_and_tie_break():
    ids = ("abcdefghijkl", "abcdefghijkx", "abcdefghijxl", "abcdefghixyl", "abcdefgxyzkl", "abcdefghijlk",
           "zbcdefghijkl", "abcdefghijklm", "abcdefghijk", "bacdefghijlk", "xyzxyzxyzxyz")
    for text in ("abcdefghijkl", "abcdefghijkm", "abcdefghijmm", "abcdefghimmm", "mbcdefghijkm", "abcdefghij"):
        for limit in (-1, 3, 20):
            check(ids, (), text, None, limit)
    # a prefix of the text first (distance 0), then distance 1 by string
    assert _closest(ids, (), "abcdefghijkq", None, 20)[:3] == ("abcdefghijk", "abcdefghijkl", "abcdefghijkx")


# ----------------------------------------------------------------------------- the index is reused

def graph_of(revs: list[str]) -> RevisionGraph:
    return RevisionGraph([parse_script(Path(f"{r}.py"), f"revision = '{r}'\ndown_revision = None\n") for r in revs])


def test_index_built_once_per_id_set():
    revs = [f"{i:012x}" for i in range(0, 5000 * 977, 977)][:50]
    _closest.cache_clear()
    _index.cache_clear()
    closest_ids(graph_of(revs), "00000000003d2")
    built = _index.cache_info().misses  # the ids, and the (empty) labels
    assert built == 2
    # a new graph per keystroke, with equal ids: new queries, no new index
    for text in ("00000000003d1", "0000000000x", "zzz"):
        closest_ids(graph_of(revs), text)
    assert _index.cache_info().misses == built
    assert _index.cache_info().hits == 2 * 4 - built
    # different ids: a new index
    closest_ids(graph_of(revs + ["abcdef123456"]), "abcdef123457")
    assert _index.cache_info().misses == built + 1


def test_index_answers_match_edit_distance():
    rng = random.Random(7)
    strings = tuple(random_string(rng, "abé", 0, 7) for _ in range(300))
    index = checks_graph._Index(strings)
    for _ in range(200):
        text = random_string(rng, "abé", 0, 9)
        limit = rng.randint(0, 3)
        expected = sorted((d, s) for s in strings if (d := oracle_edit_distance(text, s, limit)) <= limit)
        assert sorted(index.near(text, limit)) == expected, (text, limit)


def test_the_oracle_distance():
    """The oracle itself: optimal string alignment, capped."""
    assert oracle_edit_distance("abcd", "abcd", 2) == 0
    assert oracle_edit_distance("abcd", "abdc", 2) == 1  # a transposition counts once
    assert oracle_edit_distance("abcd", "abce", 2) == 1
    assert oracle_edit_distance("abcd", "ab", 2) == 2
    assert oracle_edit_distance("abcdef", "a", 2) == 3  # capped at limit + 1
