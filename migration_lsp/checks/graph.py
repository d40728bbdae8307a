"""Rule family G: the revision graph (G001–G010, DESIGN.md)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from functools import lru_cache

from ..core import Diagnostic, Span
from ..graph import RevisionGraph
from ..rules import severity
from ..scripts import MigrationScript


def closest_ids(graph: RevisionGraph, text: str, exclude: str | None = None, limit: int = 3) -> list[str]:
    """Ids a typo most likely meant: ids it is a prefix of (or that are a prefix of it),
    then ids within a small edit distance (transposed characters count once)."""
    # every keystroke builds a new graph, but the ids rarely change: remember the answer
    return list(_closest(tuple(graph.by_id), tuple(graph.labels), text, exclude, limit))


class _Index:
    """Strings (revision ids, or labels) indexed for did-you-mean lookups.

    `_closest` runs on every keystroke that leaves a broken reference, and running the
    optimal string alignment (OSA) distance DP (a transposition counts once; the plain DP
    is the oracle of tests/test_closest_ids.py) against each of thousands of ids costs
    ~100 ms in pure Python. Here
    the strings of each length are bit sets instead (bit b stands for the b-th string of
    that length; `at[j][c]` has the bits of those whose j-th character is c), so one run of
    the OSA DP computes, with a few big-integer operations per cell, which of
    *all* of them are within distance k of the text (see `_within`). Prefix matches come
    from a sorted list. Built once per id tuple (`_index` is cached): each keystroke builds
    a new graph, but its ids rarely change.
    """

    def __init__(self, strings: tuple[str, ...]) -> None:
        self.sorted = sorted(strings)
        self.count = Counter(strings)
        by_length: dict[int, list[str]] = {}
        for s in strings:
            by_length.setdefault(len(s), []).append(s)
        self.groups: dict[int, tuple[list[str], list[dict[str, int]]]] = {}
        for n, group in by_length.items():
            at: list[dict[str, int]] = []
            for column in zip(*group):
                col = "".join(reversed(column))  # as binary digits, the last character is bit 0
                zeros = dict.fromkeys(map(ord, set(col)), "0")
                at.append({c: int(col.translate({**zeros, ord(c): "1"}), 2) for c in set(col)})
            self.groups[n] = (group, at)

    def starting_with(self, text: str, exclude: str | None, limit: int) -> list[str]:
        """The first `limit` strings (all if limit < 0) that start with text, sorted, except `exclude`."""
        out: list[str] = []
        for i in range(bisect_left(self.sorted, text), len(self.sorted)):
            s = self.sorted[i]
            if len(out) == limit or not s.startswith(text):
                break
            if s != exclude:
                out.append(s)
        return out

    def near(self, text: str, max_distance: int) -> list[tuple[int, str]]:
        """(OSA distance(text, s), s) for every string s within max_distance (repeated ones repeated)."""
        out: list[tuple[int, str]] = []
        for n in range(len(text) - max_distance, len(text) + max_distance + 1):
            if n not in self.groups:
                continue
            group, at = self.groups[n]
            seen = 0
            for d, mask in enumerate(_within(text, at, (1 << len(group)) - 1, max_distance)):
                mask &= ~seen
                seen |= mask
                while mask:
                    low = mask & -mask
                    out.append((d, group[low.bit_length() - 1]))
                    mask ^= low
        return out


def _within(text: str, at: list[dict[str, int]], everyone: int, max_distance: int) -> list[int]:
    """For k = 0..max_distance, the bits of the strings (all len(at) long, their characters
    given by `at` as in `_Index`) whose OSA distance to text is <= k.

    This is the OSA DP run on all of them at once: cell [i][j] of table k has the bits
    of the strings s with OSA(text[:i], s[:j]) <= k, which holds iff one of the DP's terms does:
    [i-1][j-1] <= k where text[i-1] == s[j-1], or [i-1][j], [i][j-1], [i-1][j-1], or (when
    the two characters are transposed) [i-2][j-2] <= k-1, read from table k-1. Cells with
    |i - j| > k stay 0, since the distance is at least the length difference."""
    n, m = len(text), len(at)
    out: list[int] = []
    below: list[list[int]] = []
    for k in range(max_distance + 1):
        table = [[0] * (m + 1) for _ in range(n + 1)]
        for i in range(n + 1):
            for j in range(max(0, i - k), min(m, i + k) + 1):
                if i == 0 or j == 0:
                    table[i][j] = everyone
                    continue
                cell = at[j - 1].get(text[i - 1], 0) & table[i - 1][j - 1]
                if k:
                    cell |= below[i - 1][j] | below[i][j - 1] | below[i - 1][j - 1]
                    if i > 1 and j > 1:
                        cell |= below[i - 2][j - 2] & at[j - 2].get(text[i - 1], 0) & at[j - 1].get(text[i - 2], 0)
                table[i][j] = cell
        out.append(table[n][m])
        below = table
    return out


@lru_cache(maxsize=16)
def _index(strings: tuple[str, ...]) -> _Index:
    return _Index(strings)


@lru_cache(maxsize=256)
def _closest(ids: tuple[str, ...], labels: tuple[str, ...], text: str, exclude: str | None,
             limit: int) -> tuple[str, ...]:
    """Ids that start with text or that text starts with (distance 0), then ids and labels
    within OSA distance max_distance; sorted by (distance, string), the first `limit`."""
    max_distance = max(1, min(3, len(text) // 4))
    index = _index(ids)
    # with the same distance 0 and sorted by string, prefix matches past the first `limit` are never shown
    prefixed = index.starting_with(text, exclude, limit)
    for k in range(len(text)):  # the ids text starts with (text itself is in starting_with)
        if text[:k] != exclude:
            prefixed += [text[:k]] * index.count[text[:k]]
    candidates = [(0, rev) for rev in prefixed]
    candidates += [(d, rev) for d, rev in index.near(text, max_distance)
                   if rev != exclude and not (rev.startswith(text) or text.startswith(rev))]
    candidates += _index(labels).near(text, max_distance)
    candidates.sort()
    return tuple(rev for _, rev in candidates[:limit])


def detached_heads(graph: RevisionGraph) -> set[str]:
    """Revisions a broken down_revision most likely meant (its full id, or the closest id):
    they look like heads only until the typo is fixed."""
    return {
        m for b in graph.broken if b.kind == "down_revision"
        for m in (b.prefix_matches if len(b.prefix_matches) == 1
                  else closest_ids(graph, b.ref.value, exclude=b.script.revision_id)[:1])
    }


def _describe(graph: RevisionGraph, rev: str) -> str:
    message = graph.message(rev) if rev in graph.by_id else "branch label"
    return f"'{rev}' ({message})" if message else f"'{rev}'"


def _revision_span(script: MigrationScript) -> Span:
    return script.revision.span if script.revision else Span.point(0)


def check_script(script: MigrationScript, env_name: str = "") -> list[Diagnostic]:
    """G009 for one revision: what depends on its own text only."""
    out: list[Diagnostic] = []
    doc, rev = script.doc, script.revision_id
    if not doc or rev is None:
        return out
    if doc.revision_id and doc.revision_id.value != rev:
        out.append(Diagnostic("G009", severity("G009"), script.path, doc.revision_id.span,
                              f"docstring says Revision ID '{doc.revision_id.value}' but revision = '{rev}'",
                              env_name))
    if doc.revises_line and script.down_revision and not script.down_revision.unknown:
        written = [i.value for i in doc.revises if i.value != "None"]
        actual = list(script.down_revision.values)
        if written != actual and sorted(written) != sorted(actual):  # (equal as written: most files)
            out.append(Diagnostic("G009", severity("G009"), script.path, doc.revises_line,
                                  f"docstring says Revises: {', '.join(written) or '(nothing)'} "
                                  f"but down_revision = {', '.join(actual) or 'None'}", env_name))
    return out


def check_graph(graph: RevisionGraph, env_name: str = "",
                per_script: Callable[[MigrationScript, str], list[Diagnostic]] | None = check_script,
                ) -> list[Diagnostic]:
    """G001–G010; G009 by `per_script` for every revision (None: the caller keeps G009
    itself, per file, as the engine does to re-check only edited files)."""
    out: list[Diagnostic] = []

    def add(code: str, script: MigrationScript, span: Span, message: str, **data) -> None:
        out.append(Diagnostic(code, severity(code), script.path, span, message, env_name, data))

    # G001: several heads competing for one branch. A revision that is a head only because
    # a typo'd down_revision elsewhere detached its intended child is not reported: fixing
    # the typo (G002) removes it.
    detached = detached_heads(graph)
    if not graph.uncertain:
        for heads in graph.head_groups():
            heads = [h for h in heads if h not in detached]
            if len(heads) < 2:
                continue
            for head in heads:
                others = ", ".join(_describe(graph, h) for h in heads if h != head)
                add("G001", graph.by_id[head], _revision_span(graph.by_id[head]),
                    f"multiple heads: '{head}' and {others}; merge them or rebase one onto the other",
                    heads=list(heads))

    # G002 / G003 / G007: references that resolve to nothing, or to several revisions.
    for broken in graph.broken:
        code = "G002" if broken.kind == "down_revision" else "G003"
        ref = broken.ref.value
        if broken.kind == "down_revision" and ref in graph.labels:
            # Alembic resolves labels in depends_on only; here `alembic heads` fails (KeyError)
            me = broken.script.revision_id or ""
            above = graph.descendants(me) | {me}  # pointing there would make a loop
            heads = [h for h in graph.heads if ref in graph.inherited_labels[h] and h not in above]
            candidates = (heads or [graph.labels[ref]])[:3]
            candidates = [c for c in candidates if c not in above]
            message = f"down_revision '{ref}' is a branch label; Alembic only accepts a revision id here"
            if candidates:
                message += (": " + " or ".join(_describe(graph, c) for c in candidates)
                            + (" (head of that branch)" if heads else " (the revision that declares it)"))
            add(code, broken.script, broken.ref.span, message,
                ref=ref, candidates=candidates, kind=broken.kind)
            continue
        if len(broken.prefix_matches) > 1:
            shown = ", ".join(_describe(graph, m) for m in broken.prefix_matches[:4])
            add("G007", broken.script, broken.ref.span,
                f"{broken.kind} '{ref}' is a partial id that matches {len(broken.prefix_matches)} revisions: {shown}",
                ref=ref, candidates=list(broken.prefix_matches[:5]), kind=broken.kind)
            continue
        candidates = closest_ids(graph, ref, exclude=broken.script.revision_id)
        if len(broken.prefix_matches) == 1:
            full = broken.prefix_matches[0]
            message = (f"{broken.kind} '{ref}' is a partial id; Alembic needs the full id "
                       f"{_describe(graph, full)}")
        else:
            what = "revision" if broken.kind == "down_revision" else "revision or branch label"
            message = f"{broken.kind} '{ref}' does not exist: no {what} has this id"
            if candidates:
                message += "; did you mean " + " or ".join(_describe(graph, c) for c in candidates) + "?"
        add(code, broken.script, broken.ref.span, message,
            ref=ref, candidates=candidates, kind=broken.kind)

    # G004: cycles through down_revision (and through depends_on).
    reported: set[frozenset[str]] = set()
    for include_deps in (False, True):
        for loop in graph.cycles(include_dependencies=include_deps):
            key = frozenset(loop)
            if key in reported:
                continue
            reported.add(key)
            text = " -> ".join(loop + [loop[0]])
            for rev in loop:
                script = graph.by_id[rev]
                header = script.down_revision
                if include_deps and not (set(graph.parents[rev]) & key):
                    header = script.depends_on or header
                add("G004", script, header.span if header else _revision_span(script),
                    f"revision cycle: {text}", loop=loop)

    # G005: one id, several files.
    for rev, scripts in graph.duplicates.items():
        for script in scripts:
            others = ", ".join(s.path.name for s in scripts if s is not script)
            add("G005", script, _revision_span(script),
                f"revision id '{rev}' is also declared in {others}", revision=rev)

    # G006: branch label used twice or equal to a revision id.
    for clash in graph.label_clashes:
        if clash.is_revision_id:
            message = f"branch label '{clash.label.value}' is also a revision id"
        elif clash.other == clash.script.revision_id:
            message = f"branch label '{clash.label.value}' is listed twice"
        else:
            message = f"branch label '{clash.label.value}' is already used by revision {_describe(graph, clash.other)}"
        add("G006", clash.script, clash.label.span, message, label=clash.label.value)

    # G008: a second base in an unlabelled branch.
    unlabelled_bases = [b for b in graph.bases if not graph.effective_labels(b)]
    if len(unlabelled_bases) > 1:
        main = max(unlabelled_bases, key=lambda b: (len(graph.descendants(b)), -graph.scripts.index(graph.by_id[b])))
        for base in unlabelled_bases:
            if base == main:
                continue
            script = graph.by_id[base]
            span = script.down_revision.span if script.down_revision else _revision_span(script)
            add("G008", script, span,
                f"second base revision: '{base}' has no down_revision and no branch label, "
                f"besides base {_describe(graph, main)}", main_base=main)

    # G009: docstring header disagrees with the variables (per file: the engine memoises it).
    if per_script is not None:
        for script in graph.by_id.values():
            out.extend(per_script(script, env_name))

    # G010: a file in a versions directory whose header cannot be read.
    for script in graph.unreadable:
        if not script.text and script.error and script.functions == {}:  # not read: the engine says why
            add("G010", script, Span(0, 0, 0, 0), f"cannot read this file: {script.error}")
            continue
        if script.revision is None:
            why = "no `revision = ...` assignment found"
        else:
            why = f"`revision` is not a string literal ({', '.join(script.revision.unknown) or 'empty'})"
        if script.syntax_error:
            why += f"; syntax error: {script.syntax_error}"
        line = script.lines[0] if script.lines else ""
        add("G010", script, Span(0, 0, 0, len(line)),
            f"cannot read the revision header of this file: {why}")
    return out
