"""The garbage collector's policy for a long session (the server; benchmarks/long_session.py
and tests/test_memgc.py measure it, RESULTS.md "Long session", "Issue 13: memory").

A pass makes millions of long-lived objects, so the old generation is never collected
during it (each automatic full collection would scan them all again), and what exists is
frozen after it (gc.freeze): later automatic collections look only at what is new, and
take no pause worth the name. The young generations are collected during the pass as
usual, and once more at its end: what the pass makes and soon drops in a cycle (SQL
rendered for a rule, Alembic's throwaway tables) is freed there instead of being frozen.

The permanent generation is never scanned, so an object frozen alive that later dies *in
a cycle* stays until a full collection. The replay makes such objects rare: the schema
states are values that (but for some SQLAlchemy columns) die by refcount, and the SQLAlchemy Tables they hold (each a knot
of cycles) are shared by every evaluation of the same create_table (replay.created_table),
so an edit makes none for the revisions whose text it did not change. Measured at 5,000
revisions (RESULTS.md): ~5,000 such objects per edit with a never-seen text, against
~87,000 before (and +30 MiB per 6 edits).

What still accumulates is swept now and then, as a safety net: once the permanent
generation holds GROWTH times the objects it held after the first complete pass (or the
last sweep), gc.unfreeze() + a full gc.collect() + gc.freeze(), at a moment the server is
idle. At ~5,000 objects per edit that is hundreds of edits of new text apart at 5,000
revisions (a sweep there is one full collection, about a second).

Counting the frozen objects exactly (gc.get_freeze_count) walks all of them (25 ms of CPU
per 2 million), too much after every pass: each pass adds to an upper bound instead —
the objects in the old generation when it ends (survivors of a young collection since the
last freeze, what freezing moves) — and the exact count is taken, at an idle moment, only
when that bound says a sweep may be due.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

GROWTH = 2.0  # sweep once the permanent generation holds this many times its last baseline
MIN_OBJECTS = 100_000  # ... and at least this many objects more (a small index sweeps rarely)
OLD_NEVER = 1 << 30  # the old generation's threshold during a pass: never collected automatically


class FrozenGrowth:
    """When to sweep the permanent generation. The decision is counting (frozen, added,
    may_be_due, due); paused() and check() are the parts that touch the collector."""

    def __init__(self, growth: float = GROWTH, min_objects: int = MIN_OBJECTS) -> None:
        self.growth = growth
        self.min_objects = min_objects
        self.baseline: int | None = None  # frozen objects after the first complete pass or the last sweep
        self.bound: int | None = None  # at least as many as are frozen now (from the baseline on)
        self.counts = 0  # exact counts taken (each walks every frozen object)
        self.sweeps = 0
        self.longest = 0.0  # the longest sweep (seconds)
        self.young = 0  # unreachable objects the young collection at the end of a pass found

    # ---------------------------------------------------------------- counting

    def frozen(self, count: int) -> None:
        """A complete pass froze what exists and `count` objects are frozen: the first one
        sets the baseline (what is alive once the whole history is checked)."""
        if self.baseline is None:
            self.baseline = self.bound = count

    def added(self, objects: int) -> None:
        """A pass froze at most `objects` more."""
        if self.bound is not None:
            self.bound += objects

    def _threshold(self) -> float:
        assert self.baseline is not None
        return max(self.baseline * self.growth, self.baseline + self.min_objects)

    def may_be_due(self) -> bool:
        """Does the upper bound reach the threshold (then an exact count decides)?"""
        return self.baseline is not None and self.bound is not None and self.bound >= self._threshold()

    def due(self, count: int) -> bool:
        """`count` objects are frozen (exact): is a sweep due? The bound starts again from it."""
        self.bound = count
        return self.baseline is not None and count >= self._threshold()

    def swept(self, count: int, seconds: float) -> None:
        """After a sweep: what is frozen now is the new baseline."""
        self.baseline = self.bound = count
        self.sweeps += 1
        self.longest = max(self.longest, seconds)

    # ---------------------------------------------------------------- the collector

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Around a pass: only the young generations are collected (automatically, as
        usual: what the pass makes and drops at once, SQL rendered for a rule, a throwaway
        Table, is freed there), never the old one (the pass's long-lived objects would be
        scanned again and again); then the young ones once more, and what exists is frozen.
        The objects that joins to the permanent generation are added to the bound: those in
        the old generation (survivors of a young collection since the last freeze)."""
        enabled = gc.isenabled()
        thresholds = gc.get_threshold()
        gc.set_threshold(thresholds[0], thresholds[1], OLD_NEVER)
        gc.enable()
        try:
            yield
        finally:
            self.young += gc.collect(1)
            if self.bound is not None:
                self.added(len(gc.get_objects(2)))
            gc.freeze()
            gc.set_threshold(*thresholds)
            if not enabled:
                gc.disable()

    def check(self) -> float | None:
        """At an idle moment: count exactly when the bound says a sweep may be due, and sweep
        when it is. The sweep's duration (seconds), or None when none ran."""
        if not self.may_be_due():
            return None
        self.counts += 1
        if not self.due(gc.get_freeze_count()):
            return None
        return self.sweep()

    def sweep(self) -> float:
        """Collect everything once (the frozen objects included), then freeze again and
        count what is frozen (the new baseline); returns how long all that took."""
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        count = gc.get_freeze_count()
        seconds = time.perf_counter() - started
        self.swept(count, seconds)
        return seconds
