"""The CLI's first full check on two cores: a forked worker computes the D/S findings of the
last part of the revisions that have none in memory or in the cache, meanwhile this process
computes the first part (issue 13, "the cold path": the rule families judge each revision on
its own, once the schema below it is replayed).

Why this split: the replay is a chain (a revision's schema is its parent's plus its ops), the
rules are not. The worker replays the revisions below its part without judging them, then
replays and judges its own; this process replays and judges only its part and never replays
the worker's (their findings come back like cache hits). SHARE balances the two: the worker
replays everything, this process judges and stores more.

Same contract as engine.forked (whose helpers it uses): only the CLI (Engine(fork=True)), only
with os.fork and no other thread, only from FORK_MIN revisions to compute, and only with two
CPUs to run on (the worker's replay of this process's part is extra work: on one core it is
only a cost). The worker writes
nothing but its pipe (its stdout and stderr go to /dev/null, the store it gets is a null one),
sends plain data (stored.encode_diagnostics per revision), and leaves with os._exit. A revision
the worker could not judge (a bug of ours raised, its findings are not plain) is left out:
this process computes it itself, and says so the way it always does. Any failure of the worker
— it died, raised, sent less or other than expected — costs only time: this process computes
those revisions itself, to the same answer. `close()` always reaps it: no process or descriptor
is left.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import Store
from ..core import Diagnostic
from ..graph import RevisionGraph
from ..project import Environment
from . import forked
from .stored import decode_diagnostics, encode_diagnostics

if TYPE_CHECKING:
    from ..compare import CompareOptions
    from .schema_pass import ReplayMaker, SchemaPass

FORK_MIN = 1000  # revisions to compute from which a worker pays for itself
SHARE = 0.66  # this process's part of them (the worker also replays this part, without the rules)


class FindingsWorker(forked.Worker):
    """A forked process computing the findings of `revs`; collect() them once, always close()
    (forked.Worker's pipe, messages and reaping)."""

    def __init__(self, pid: int, fd: int, revs: frozenset[str]) -> None:
        super().__init__(pid, fd, 0, len(revs))
        self.revs = revs
        self.collected = False

    @classmethod
    def fork(cls, schema: SchemaPass, env: Environment, graph: RevisionGraph, keys: dict[str, str],
                  todo: list[str], replay_of: ReplayMaker, options: Callable[[], CompareOptions],
                  env_py: Callable[[], tuple[Path | None, str]]) -> FindingsWorker | None:
        """A worker for the last part of `todo` (revisions in pass order with a key and no
        findings yet); None: too few, no fork here, or it failed."""
        if len(todo) < FORK_MIN or not forked.available() or cores() < 2:
            return None
        mine = tuple(todo[round(len(todo) * SHARE):])

        def job(write: int) -> None:
            _quiet()
            work(schema, env, graph, keys, mine, replay_of, options, env_py, write)

        made = forked.fork(job)
        return None if made is None else cls(*made, frozenset(mine))

    def collect(self, schema: SchemaPass, graph: RevisionGraph, keys: dict[str, str], store: Store) -> int:
        """Wait for the worker's findings and enter them in the memo and the store as this
        process would have (once; later calls do nothing): how many revisions it judged (0
        when it failed: this process computes them all)."""
        if self.collected:
            return 0
        self.collected = True
        found = self._message()
        if not isinstance(found, list) or not self._reap():
            return 0
        decoded: list[tuple[str, list, list[Diagnostic]]] = []
        for item in found:
            if not (isinstance(item, tuple) and len(item) == 2 and item[0] in self.revs):
                return 0
            rev, encoded = item
            diagnostics = decode_diagnostics(encoded, graph.by_id[rev].path)
            if diagnostics is None:
                return 0
            decoded.append((rev, encoded, diagnostics))
        for rev, encoded, diagnostics in decoded:
            schema.memo.entry(keys[rev]).found = diagnostics
            store.put("schema", keys[rev], encoded)
        schema.computed_revisions += len(decoded)
        return len(decoded)


def cores() -> int:
    """The CPUs this process may run on: its affinity, bounded by a cgroup (v2) quota (a CI
    container with one CPU's quota on a many-core host). With one, a worker only adds its
    replay of this process's part to the same core."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return count


def _quiet() -> None:
    """The worker's stdout and stderr go nowhere: a warning it meets is said by this process
    when it meets it (the worker also replays this process's part)."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
    finally:
        os.close(null)


def work(schema: SchemaPass, env: Environment, graph: RevisionGraph, keys: dict[str, str], revs: Sequence[str],
         replay_of: ReplayMaker, options: Callable[[], CompareOptions],
         env_py: Callable[[], tuple[Path | None, str]], fd: int) -> None:
    """The worker's job: replay up to each of `revs` and judge it; send [(rev, encoded findings)]."""
    replay = replay_of()
    out: list = []
    for rev in revs:
        try:
            found = schema.judge(graph, replay, keys, rev, options, env, env_py)
        except Exception:  # noqa: BLE001, S112 - left out: this process computes it and reports the bug
            continue
        encoded = encode_diagnostics(found, graph.by_id[rev].path)
        if encoded is not None:
            out.append((rev, encoded))
    forked.send(fd, out)
