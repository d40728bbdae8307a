"""Stage `graph`: the revision graph of one environment, with Alembic's semantics.

Like `alembic.script.revision.RevisionMap` (the reference the differential tests compare
with): heads are revisions no `down_revision` points to; bases have an empty
`down_revision`; `depends_on` adds ordering edges but never hides a head; a
`down_revision` element must be a full revision id, a `depends_on` element a full id or a
branch label (Alembic resolves nothing else in a script header: a label in down_revision
is a KeyError there); branch labels flow to every descendant. Unlike RevisionMap,
problems do not raise: they are recorded with their source location and the rest of the
graph is still built (a broken reference or a clashing label is simply left out).
"""

from __future__ import annotations

import copy
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .scripts import IdString, MigrationScript


@dataclass(frozen=True)
class BrokenRef:
    """A down_revision/depends_on element that names no revision and no label."""

    script: MigrationScript
    kind: str  # "down_revision" or "depends_on"
    ref: IdString
    prefix_matches: tuple[str, ...]  # ids the text is a prefix of (a partial id)


@dataclass(frozen=True)
class LabelClash:
    script: MigrationScript
    label: IdString
    other: str  # revision id that already owns the label, or that the label equals
    is_revision_id: bool


@dataclass
class _Lazy:
    """What a RevisionGraph computes on first use (None until then), in one place because
    `RevisionGraph.replacing` decides for each what the patched graph may keep. A patch
    relinks one revision and changes no id: the patched graph
    - shares `position` and `sorted_ids` (the ids, in file order: the same);
    - shares `topological_order` and `depth` unless the edit relinked a down_revision,
      `inherited_labels` unless it did so in an environment with branch labels (without
      any, every revision inherits none);
    - shares `rank` (the order that spares an edit the loop check) unless the edit relinked
      a down_revision or depends_on and that order no longer holds (`_still_acyclic`);
    - gets a copy of `suspects` (filled in per graph, as cycles() is asked) unless the edit
      relinked anything.
    Anything not kept is computed again when asked for, from the patched graph."""

    position: dict[str, int] | None = None
    sorted_ids: list[str] | None = None
    topological_order: tuple[str, ...] | None = None
    depth: dict[str, int] | None = None
    inherited_labels: dict[str, frozenset[str]] | None = None
    rank: dict[str, int] | None = None  # (None is also the answer "there is a loop": see rank_known)
    rank_known: bool = False
    # include_dependencies -> the revisions a topological sort cannot place (_unordered)
    suspects: dict[bool, set[str]] = field(default_factory=dict)

    def patched(self, relinked: set[str], labelled: bool) -> _Lazy:
        """What a graph patched by relinking `relinked` ("down_revision", "depends_on")
        keeps of this one (see the class docstring)."""
        if not relinked:
            return _Lazy(position=self.position, sorted_ids=self.sorted_ids,
                         topological_order=self.topological_order, depth=self.depth,
                         inherited_labels=self.inherited_labels, rank=self.rank, rank_known=self.rank_known,
                         suspects=dict(self.suspects))
        down = "down_revision" in relinked
        # (no rank, no suspects: _still_acyclic puts the rank back when it still holds)
        return _Lazy(position=self.position, sorted_ids=self.sorted_ids,
                     topological_order=None if down else self.topological_order,
                     depth=None if down else self.depth,
                     inherited_labels=None if down and labelled else self.inherited_labels)


class RevisionGraph:
    """Immutable once built; every query is answered from precomputed maps (or from the
    ones computed on first use, `_lazy`)."""

    def __init__(self, scripts: Iterable[MigrationScript]):
        self._lazy = _Lazy()  # (the links below already look up ids: `_sorted_ids`)
        self.scripts: tuple[MigrationScript, ...] = tuple(scripts)
        self.by_id: dict[str, MigrationScript] = {}
        self.duplicates: dict[str, list[MigrationScript]] = {}
        self.unreadable: list[MigrationScript] = []
        for script in self.scripts:
            rev = script.revision_id
            if rev is None:
                self.unreadable.append(script)
            elif rev in self.by_id:
                self.duplicates.setdefault(rev, [self.by_id[rev]]).append(script)
            else:
                self.by_id[rev] = script

        self.labels: dict[str, str] = {}
        self.label_clashes: list[LabelClash] = []
        self.unknown_labels: dict[str, tuple[str, ...]] = {}
        # labels each revision really carries: a clashing one is reported, then left out
        self.own_labels: dict[str, frozenset[str]] = {}
        for rev, script in self.by_id.items():
            if script.branch_labels is None:
                self.own_labels[rev] = frozenset()
                continue
            if script.branch_labels.unknown:
                self.unknown_labels[rev] = script.branch_labels.unknown
            own: list[str] = [f"<{u}>" for u in script.branch_labels.unknown]
            for label in script.branch_labels.ids:
                if label.value in self.by_id:
                    self.label_clashes.append(LabelClash(script, label, label.value, True))
                elif label.value in self.labels:  # another revision's, or listed twice here
                    self.label_clashes.append(LabelClash(script, label, self.labels[label.value], False))
                else:
                    self.labels[label.value] = rev
                    own.append(label.value)
            self.own_labels[rev] = frozenset(own)

        self.parents: dict[str, tuple[str, ...]] = {}
        self.dependencies: dict[str, tuple[str, ...]] = {}
        self.children: dict[str, list[str]] = {rev: [] for rev in self.by_id}
        self.dependents: dict[str, list[str]] = {rev: [] for rev in self.by_id}
        self.broken: list[BrokenRef] = []
        # revisions whose down_revision is not a literal: we cannot know their parents
        self.uncertain: set[str] = set()
        for rev, script in self.by_id.items():
            self.parents[rev] = self._link(script, "down_revision", self.children, self.broken)
            self.dependencies[rev] = self._link(script, "depends_on", self.dependents, self.broken)
            if script.down_revision and script.down_revision.unknown:
                self.uncertain.add(rev)
        self._summarise()
        # set when an update proved the graph has no loop (cycles() then skips its search)
        self._acyclic = False

    def _summarise(self, old: RevisionGraph | None = None, rev: str | None = None,
                   touched: Iterable[str] = ()) -> None:
        """heads, bases, merge and branch points; after a patch of `rev` (whose old parents
        and new parents are `touched`), only `rev` and `touched` can change status: each
        tuple is updated for them (in file order), not rescanned (20,000 revisions: a scan
        per tuple per keystroke)."""
        children, parents = self.children, self.parents
        if old is None or rev is None:
            self.heads: tuple[str, ...] = tuple(r for r in self.by_id if not children[r])
            self.bases: tuple[str, ...] = tuple(r for r, s in self.by_id.items() if _is_base(s))
            self.merge_points = tuple(r for r, p in parents.items() if len(p) > 1)
            self.branch_points = tuple(r for r, c in children.items() if len(c) > 1)
            return
        position = old._position
        self.heads = _toggled(old.heads, {t: not children[t] for t in touched}, position)
        self.bases = _toggled(old.bases, {rev: _is_base(self.by_id[rev])}, position)
        self.merge_points = _toggled(old.merge_points, {rev: len(parents[rev]) > 1}, position)
        self.branch_points = _toggled(old.branch_points, {t: len(children[t]) > 1 for t in touched}, position)

    def _targets(self, script: MigrationScript, kind: str) -> tuple[tuple[str, ...], list[BrokenRef]]:
        """What one header (down_revision or depends_on) points at, and what it fails to."""
        value = getattr(script, kind)
        if value is None:
            return (), []
        out: list[str] = []
        broken: list[BrokenRef] = []
        for ref in value.ids:
            if kind == "down_revision":  # ids only: Alembic does not resolve labels here
                target = ref.value if ref.value in self.by_id else None
            else:
                target = self.resolve_exact(ref.value)
            if target is None:
                broken.append(BrokenRef(script, kind, ref, self.prefix_matches(ref.value)))
            elif target not in out:
                out.append(target)
        return tuple(out), broken

    def _link(self, script: MigrationScript, kind: str, reverse: dict[str, list[str]],
              broken: list[BrokenRef]) -> tuple[str, ...]:
        targets, missing = self._targets(script, kind)
        broken.extend(missing)
        for target in targets:
            reverse[target].append(script.revision_id)  # type: ignore[arg-type]
        return targets

    @property
    def _position(self) -> dict[str, int]:
        lazy = self._lazy
        if lazy.position is None:
            lazy.position = {rev: n for n, rev in enumerate(self.by_id)}
        return lazy.position

    def replacing(self, old: MigrationScript, new: MigrationScript) -> RevisionGraph | None:
        """This graph with one file's new text, built by patching the links of that one
        revision: what every keystroke needs (a body, a message, a down_revision edited)
        at the cost of a few linear scans instead of a rebuild. The result equals
        RevisionGraph(scripts-with-new) (tests/test_graph_incremental.py). None when the
        edit touches what the patch does not cover (the id, the branch labels, a duplicate):
        then build from scratch."""
        rev = old.revision_id
        if (rev is None or new.revision_id != rev or self.by_id.get(rev) is not old or rev in self.duplicates
                or new.path != old.path or _label_header(old) != _label_header(new)
                or any(c.script is old for c in self.label_clashes)):
            return None
        position = self._position  # (computed before the copy: the patched graph keeps it)
        self._sorted_ids  # noqa: B018 (likewise)
        g = copy.copy(self)  # (every map shared; those the edit changes are replaced below)
        index = self.scripts.index(old)
        g.scripts = self.scripts[:index] + (new,) + self.scripts[index + 1:]
        g.by_id = dict(self.by_id)
        g.by_id[rev] = new
        broken = [b for b in self.broken if b.script is not old]
        added: list[str] = []
        relinked = set()
        for kind, links_name, reverse_name in (("down_revision", "parents", "children"),
                                               ("depends_on", "dependencies", "dependents")):
            targets, missing = g._targets(new, kind)
            broken.extend(missing)
            before = getattr(self, links_name)[rev]
            if before == targets:  # (a body or a message edited: the maps are shared, not copied)
                continue
            relinked.add(kind)
            links, reverse = dict(getattr(self, links_name)), dict(getattr(self, reverse_name))
            setattr(g, links_name, links)
            setattr(g, reverse_name, reverse)
            links[rev] = targets
            for t in set(before) - set(targets):
                reverse[t] = [c for c in reverse[t] if c != rev]
            for t in set(targets) - set(before):
                reverse[t] = sorted(reverse[t] + [rev], key=position.__getitem__)
                added.append(t)
        # what is derived from the links survives an edit that leaves them (a body, a message);
        # labels are the same before and after (else no patch)
        g._lazy = self._lazy.patched(relinked, bool(self.labels or self.unknown_labels))
        kinds = {"down_revision": 0, "depends_on": 1}
        g.broken = sorted(broken, key=lambda b: (position[b.script.revision_id], kinds[b.kind]))  # type: ignore[index]
        if rev in self.uncertain or (new.down_revision and new.down_revision.unknown):
            g.uncertain = set(self.uncertain)
            g.uncertain.discard(rev)
            if new.down_revision and new.down_revision.unknown:
                g.uncertain.add(rev)
        g._summarise(self, rev, set(self.parents[rev]) | set(g.parents[rev]))
        if relinked:
            g._acyclic = g._still_acyclic(self, rev, added)
        else:
            g._acyclic = self._acyclic or not self._unordered(True)
        return g

    def _still_acyclic(self, old: RevisionGraph, rev: str, added: list[str]) -> bool:
        """After `old` was patched into this graph by relinking `rev` to the new targets
        `added` (and away from others): is it still free of loops? Links removed never make
        one; a link to a target ranked below `rev` in `old`'s order (`_rank`) does not
        either, and that order stays valid: an edit that breaks and repairs a down_revision
        costs no walk. Otherwise: a loop iff a new target is above `rev`."""
        rank = old._rank if old._acyclic or not old._unordered(True) else None
        if rank is not None and all(rank[t] < rank[rev] for t in added):
            self._lazy.rank, self._lazy.rank_known = rank, True
            return True
        was_acyclic = rank is not None
        return was_acyclic and not (added and (rev in added or set(added) & self.descendants(rev)))

    @property
    def _rank(self) -> dict[str, int] | None:
        """Each revision's place in one order where every parent and dependency comes first
        (None when there is a loop): kept through patches that respect it."""
        lazy = self._lazy
        if not lazy.rank_known:
            lazy.rank, lazy.rank_known = self._find_rank(), True
        return lazy.rank

    def _find_rank(self) -> dict[str, int] | None:
        pending = {r: len(set(self.parents[r] + self.dependencies[r])) for r in self.by_id}
        ready = [r for r, n in pending.items() if n == 0]
        rank: dict[str, int] = {}
        while ready:
            rev = ready.pop()
            rank[rev] = len(rank)
            for above in set(self.children[rev] + self.dependents[rev]):
                pending[above] -= 1
                if pending[above] == 0:
                    ready.append(above)
        return rank if len(rank) == len(self.by_id) else None

    def prepare_for_edits(self) -> None:
        """Compute now what the first `replacing()` would otherwise pay for on a keystroke: the
        loop check, the file positions and the order that spares an edit the loop check's
        walk (kept in `_lazy`; a patched graph keeps them). The server calls it after
        indexing (GraphIndex.warm_up)."""
        self.cycles(include_dependencies=True)
        self._position  # noqa: B018 (computed on first use)
        self._rank  # noqa: B018

    # ---------------------------------------------------------------- lookups

    def resolve_exact(self, ref: str) -> str | None:
        """What Alembic accepts in a script header: a full id or a branch label."""
        if ref in self.by_id:
            return ref
        return self.labels.get(ref)

    def prefix_matches(self, text: str) -> tuple[str, ...]:
        if not text:
            return ()
        ids = self._sorted_ids
        found = []
        for rev in ids[bisect_left(ids, text):]:
            if not rev.startswith(text):
                break
            if rev != text:
                found.append(rev)
        return tuple(found)

    @property
    def _sorted_ids(self) -> list[str]:
        lazy = self._lazy
        if lazy.sorted_ids is None:
            lazy.sorted_ids = sorted(self.by_id)
        return lazy.sorted_ids

    def resolve(self, text: str) -> tuple[str, ...]:
        """Ids `text` may mean for a human: exact id, label, or the ids it is a prefix of."""
        exact = self.resolve_exact(text)
        return (exact,) if exact else self.prefix_matches(text)

    def script(self, rev: str) -> MigrationScript | None:
        return self.by_id.get(rev)

    # ---------------------------------------------------------------- structure

    def ancestors(self, rev: str, include_dependencies: bool = True) -> set[str]:
        """Every revision below `rev` (not `rev` itself)."""
        return self._closure(rev, self.parents, self.dependencies if include_dependencies else None)

    def descendants(self, rev: str, include_dependencies: bool = True) -> set[str]:
        return self._closure(rev, self.children, self.dependents if include_dependencies else None)

    @staticmethod
    def _closure(start: str, links: Mapping[str, Sequence[str]], more: Mapping[str, Sequence[str]] | None) -> set[str]:
        """What `start` reaches through `links` (and `more`), not `start` itself. A plain loop
        over the two maps: a keystroke that relinks a revision walks everything above it
        (the loop check of `replacing`), 10,000 revisions at 20,000."""
        seen: set[str] = set()
        todo = [start]
        while todo:
            rev = todo.pop()
            for nxt in links.get(rev, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
            if more is not None:
                for nxt in more.get(rev, ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
        seen.discard(start)
        return seen

    @property
    def inherited_labels(self) -> dict[str, frozenset[str]]:
        """Branch labels of each revision: its own and those of every ancestor through
        down_revision, as Alembic's RevisionMap propagates them to descendants. Labels that
        are not literals appear as `<expr>`."""
        lazy = self._lazy
        if lazy.inherited_labels is None:
            lazy.inherited_labels = self._find_inherited_labels()
        return lazy.inherited_labels

    def _find_inherited_labels(self) -> dict[str, frozenset[str]]:
        own = self.own_labels
        if not self.labels and not self.unknown_labels:  # the usual project: no labels at all
            return dict.fromkeys(self.by_id, frozenset())
        result: dict[str, frozenset[str]] = {}
        for rev in self.topological_order:
            acc = set(own[rev])
            for parent in self.parents[rev]:
                acc |= result.get(parent, frozenset())
            result[rev] = frozenset(acc)
        for rev in self.by_id:  # revisions caught in a cycle
            result.setdefault(rev, frozenset(own[rev]))
        return result

    @property
    def topological_order(self) -> tuple[str, ...]:
        """Parents before children (down_revision edges); revisions in cycles are left out."""
        lazy = self._lazy
        if lazy.topological_order is None:
            lazy.topological_order = self._find_topological_order()
        return lazy.topological_order

    def _find_topological_order(self) -> tuple[str, ...]:
        pending = {r: len(p) for r, p in self.parents.items()}
        ready = [r for r, n in pending.items() if n == 0]
        order: list[str] = []
        while ready:
            rev = ready.pop()
            order.append(rev)
            for child in self.children[rev]:
                pending[child] -= 1
                if pending[child] == 0:
                    ready.append(child)
        return tuple(order)

    @property
    def depth(self) -> dict[str, int]:
        """Distance from base: the number of revisions on the longest path down to a base."""
        lazy = self._lazy
        if lazy.depth is None:
            lazy.depth = self._find_depth()
        return lazy.depth

    def _find_depth(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for rev in self.topological_order:
            result[rev] = 1 + max((result.get(p, 0) for p in self.parents[rev]), default=0)
        return result

    def _unordered(self, include_dependencies: bool) -> set[str]:
        """Revisions a topological sort cannot place: exactly those in or above a loop."""
        if self._acyclic:
            return set()
        known = self._lazy.suspects
        if include_dependencies not in known:
            known[include_dependencies] = self._find_unordered(include_dependencies)
        return set(known[include_dependencies])

    def _find_unordered(self, include_dependencies: bool) -> set[str]:
        if not include_dependencies or not any(self.dependencies.values()):  # (no depends_on: the same sort)
            return set(self.by_id) - set(self.topological_order)
        pending = {r: len(set(self.parents[r] + self.dependencies[r])) for r in self.by_id}
        ready = [r for r, n in pending.items() if n == 0]
        placed = 0
        while ready:
            rev = ready.pop()
            placed += 1
            for above in set(self.children[rev] + self.dependents[rev]):
                pending[above] -= 1
                if pending[above] == 0:
                    ready.append(above)
        return {r for r, n in pending.items() if n > 0} if placed != len(self.by_id) else set()

    def cycles(self, include_dependencies: bool = False) -> list[list[str]]:
        """Strongly connected components that form a loop (Tarjan, iterative), looked for
        only among the revisions a topological sort could not place (usually none)."""
        suspects = self._unordered(include_dependencies)
        if not suspects:
            return []

        def edges(rev: str) -> tuple[str, ...]:
            found = self.parents[rev] + (self.dependencies[rev] if include_dependencies else ())
            return tuple(r for r in found if r in suspects)

        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        found: list[list[str]] = []
        counter = 0
        for start in [r for r in self.by_id if r in suspects]:  # file order: stable output
            if start in index:
                continue
            work = [(start, iter(edges(start)))]
            index[start] = low[start] = counter
            counter += 1
            stack.append(start)
            on_stack.add(start)
            while work:
                node, it = work[-1]
                advanced = False
                for nxt in it:
                    if nxt not in index:
                        index[nxt] = low[nxt] = counter
                        counter += 1
                        stack.append(nxt)
                        on_stack.add(nxt)
                        work.append((nxt, iter(edges(nxt))))
                        advanced = True
                        break
                    if nxt in on_stack:
                        low[node] = min(low[node], index[nxt])
                if advanced:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in edges(node):
                        found.append(component[::-1])
        return found

    def effective_labels(self, rev: str) -> frozenset[str]:
        """Labels of the branch a revision belongs to (G008 asks this of bases): inherited
        ones, plus those of the first labelled descendant reached through a plain chain.
        RevisionMap also pushes labels down below a labelled revision, but more narrowly
        (not when the labelled revision's own line up to its head branches or merges, nor
        past a revision that has a depends_on dependent); whenever it labels a revision,
        this does too (checked by tests/test_differential.py)."""
        if not self.labels and not self.unknown_labels:  # the usual project: no walk up a plain chain
            return frozenset()
        labels = set(self.inherited_labels.get(rev, frozenset()))
        node = rev
        seen = {rev}
        while len(self.children.get(node, ())) == 1:
            child = self.children[node][0]
            if child in seen or len(self.parents[child]) > 1:
                break
            seen.add(child)
            if self.own_labels[child]:
                labels |= self.own_labels[child]
                break
            node = child
        return frozenset(labels)

    def head_groups(self) -> list[list[str]]:
        """Heads that compete for the same branch: unlabelled heads together, and heads
        sharing a literal label together (`alembic upgrade <label>@head` is ambiguous)."""
        unlabelled = [h for h in self.heads if not self.inherited_labels[h]]
        groups = [unlabelled] if len(unlabelled) > 1 else []
        by_label: dict[str, list[str]] = {}
        for head in self.heads:
            for label in self.inherited_labels[head]:
                if not label.startswith("<"):
                    by_label.setdefault(label, []).append(head)
        seen: set[tuple[str, ...]] = set()
        for heads in by_label.values():
            key = tuple(sorted(heads))
            if len(heads) > 1 and key not in seen:
                seen.add(key)
                groups.append(heads)
        return groups

    def message(self, rev: str) -> str:
        script = self.by_id.get(rev)
        return script.message if script else ""


def _toggled(members: tuple[str, ...], status: dict[str, bool], position: dict[str, int]) -> tuple[str, ...]:
    """`members` (in file order) with each revision of `status` in or out as it says: the
    same tuple when none moves."""
    have = set(members)
    if all((rev in have) == inside for rev, inside in status.items()):
        return members
    have.update(rev for rev, inside in status.items() if inside)
    have.difference_update(rev for rev, inside in status.items() if not inside)
    return tuple(sorted(have, key=position.__getitem__))


def _is_base(script: MigrationScript) -> bool:
    return script.down_revision is None or script.down_revision.is_empty


def _label_header(script: MigrationScript) -> tuple | None:
    labels = script.branch_labels
    return None if labels is None else (labels.values, labels.unknown)
