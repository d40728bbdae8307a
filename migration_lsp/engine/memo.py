"""The one in-memory memo of the engine: what was computed for a revision, keyed by its
revision key — a hash of its text, the keys of the revisions below it and its environment's
salt (schema_pass.revision_keys) — so an edit and its undo compute nothing twice, and two
graphs that share a history share its results.

One eviction policy for everything in it: the keys of an environment's last complete pass
are live (the served snapshot reads them), and so are those of the pass under way, from its
start (`begin`) until it completes (`retain`); when the memo holds more than twice the live
keys of all environments (plus SPARE), the oldest entries that are not live go, down to the
live ones plus SPARE (benchmarks/long_session.py: the memo's allowance, not garbage, is what
grew over a long session). Entries that are not live keep their findings, but only the
newest REPLAY_SPARE keep their replayed schema, the heavy part (at 5,000 revisions each
edit of a mid-history file with a text never seen before replaces the schemas of 2,500
revisions; holding two edits' worth cost ~20 MiB).

Evicting when a pass starts, not only when one completes, is what bounds the memo while
edits keep coming: a pass that an edit abandons never completes, and at 5,000 revisions a
pass after a mid-history edit takes longer than the pause between edits of someone who
types, stops, types (the server benchmark's request series: 40 such edits, not one pass
completed, the memo grew to 18,868 entries, each with its schema, and the server to 268 MiB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import Diagnostic
from ..project import Settings

if TYPE_CHECKING:
    from ..replay import RevisionSchema

SPARE = 250  # entries kept beyond the live ones (a revision's schemas weigh ~30 KB)
REPLAY_SPARE = 250  # entries no last pass used that keep their replayed schema (see _unpin)
EVICT_STEP = 500  # entries dropped between two yields of the full pass
UNPIN_STEP = 100  # schemas let go between two yields (each frees a revision's replaced states)


@dataclass
class Entry:
    # D001–D003 and S001–S005 of the revision, unfiltered
    found: list[Diagnostic] | None = None
    # `found` after select/ignore/suppressions, sorted, for the settings in `filtered_for`
    filtered: tuple[Diagnostic, ...] | None = None
    filtered_for: Settings | None = None
    # the replayed schema around the revision (and whether its ops were released)
    replay: tuple[RevisionSchema, bool] | None = None
    # M001–M004 and the differences for the heads whose keys make this entry's key, with the
    # environment and the models they were computed for
    models: tuple[Any, Any, tuple] | None = None

    def filtered_with(self, settings: Settings) -> tuple[Diagnostic, ...] | None:
        if self.filtered is not None and (self.filtered_for is settings or self.filtered_for == settings):
            return self.filtered
        return None


class RevisionMemo:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._live: dict[tuple[Path, str], set[str]] = {}  # the keys of each environment's last complete pass
        self._running: dict[tuple[Path, str], set[str]] = {}  # the keys of its pass under way (begin)

    def get(self, key: str | None) -> Entry | None:
        return self._entries.get(key) if key is not None else None

    def entry(self, key: str) -> Entry:
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = Entry()
        return found

    def __len__(self) -> int:
        return len(self._entries)

    def forget(self, environments: Iterable[tuple[Path, str]]) -> None:
        """Environments gone (their workspace folder was removed): their keys are live no more."""
        for environment in environments:
            self._live.pop(environment, None)
            self._running.pop(environment, None)

    def begin(self, environment: tuple[Path, str], keys: Iterable[str],
              forget: Callable[[list[str]], None] | None = None) -> Iterator[None]:
        """A full pass of `environment` starts and will use `keys`: they are live until it
        completes (retain) or the next pass begins. What no pass, complete or under way, uses
        is evicted now as retain() does (the pass an edit abandoned never gets to retain()),
        and what only the abandoned pass used goes at once, findings too: the results of a
        text the editor has already left (the stale entries of a complete pass stay for an
        undo, within the allowance)."""
        before = self._running.get(environment)
        self._running[environment] = set(keys)
        yield  # (each of these steps walks every key: a few ms at 20,000 revisions)
        kept = self._kept()
        yield
        if before:
            left = [k for k in before if k not in kept and k in self._entries]
            yield
            yield from self._drop(left, forget)
        yield from self._evict(forget, kept)

    def retain(self, environment: tuple[Path, str], live: Iterable[str],
               forget: Callable[[list[str]], None] | None = None) -> Iterator[None]:
        """After a complete pass of `environment`: the keys it used are its live ones. Once
        the memo holds more than twice the live keys (plus SPARE), the oldest entries no
        environment's last pass used go, down to the live ones plus SPARE (the most recent
        others stay: an undo finds them). Dropped in batches of EVICT_STEP, yielding between
        them (freeing the schemas of thousands of revisions takes a while: the server runs
        this in slices); `forget` is told each batch (the persistent cache drops them too)."""
        self._live[environment] = set(live)
        self._running.pop(environment, None)
        yield from self._evict(forget)

    def _kept(self) -> set[str]:
        return set().union(*self._live.values(), *self._running.values())

    def _evict(self, forget: Callable[[list[str]], None] | None, kept: set[str] | None = None) -> Iterator[None]:
        if kept is None:
            kept = self._kept()
            yield
        yield from self._unpin(kept)
        if len(self._entries) <= 2 * len(kept) + SPARE:
            return
        others = [k for k in self._entries if k not in kept]  # oldest first (insertion order)
        yield from self._drop(others[:max(len(others) - SPARE, 0)], forget)

    def _drop(self, doomed: list[str], forget: Callable[[list[str]], None] | None) -> Iterator[None]:
        for n in range(0, len(doomed), EVICT_STEP):
            batch = doomed[n:n + EVICT_STEP]
            for key in batch:
                self._entries.pop(key, None)
            if forget is not None:
                forget(batch)
            yield

    def _unpin(self, kept: set[str]) -> Iterator[None]:
        """Entries that are not live keep their findings (small: an undo computes nothing
        again), but only the newest REPLAY_SPARE keep their replayed schema (what weighs:
        states, tables, columns; measured: each edit's replaced schemas held on to made a
        long session's memory grow). An older one is replayed again if a feature asks for
        it (in slices, server._schema_ready). Yields every UNPIN_STEP schemas let go, and every
        EVICT_STEP entries looked at (40,000 entries at 20,000 revisions: ~60 ms in one step)."""
        spare, dropped = REPLAY_SPARE, 0
        for looked, key in enumerate(reversed(list(self._entries)), 1):  # newest first
            if looked % EVICT_STEP == 0:
                yield
            entry = self._entries.get(key)
            if entry is None or entry.replay is None or key in kept:
                continue
            if spare > 0:
                spare -= 1
                continue
            entry.replay = None
            dropped += 1
            if dropped % UNPIN_STEP == 0:
                yield
