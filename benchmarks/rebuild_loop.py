"""Issue 13: the event loop's CPU when every environment is built anew outside a request —
after a base branch moved (Engine.base_moved) and after a rescan that rebuilds everything
(Engine.adopt of a clearing rescan) — with the rebuild on the loop (rebuild_off_loop off, as
before) and in a thread (the server's way: Engine.plan_rebuild, Rebuild.run, take_rebuild).
Thread CPU time of each phase, median of --repeat samples; the generated projects of run.py.

    python benchmarks/rebuild_loop.py --sizes "5000 20000"
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import run  # (benchmarks/run.py, next to this script: the generated projects)

from migration_lsp.engine import Engine

Change = tuple[Callable[[], object], Callable[[object], None]]  # (prepared off the loop, done on the loop)


def cpu_ms(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.thread_time()
    out = fn()
    return (time.thread_time() - started) * 1000, out


def on_the_loop(engine: Engine, change: Change) -> float:
    """The old way: the change, then the quick snapshot that builds every environment."""
    prepared = change[0]()
    return cpu_ms(lambda: (change[1](prepared), engine.snapshot(quick=True)))[0]


def off_the_loop(engine: Engine, change: Change) -> tuple[float, float]:
    """The server's way: (loop CPU: the change + its quick snapshot + the plan + taking the
    result in and the snapshot after; the rebuild thread's CPU)."""
    prepared = change[0]()
    loop, _ = cpu_ms(lambda: (change[1](prepared), engine.snapshot(quick=True)))
    plan_ms, plan = cpu_ms(engine.plan_rebuild)
    thread_ms, states = cpu_ms(plan.run)  # (run here; in the server: asyncio.to_thread)
    take_ms, _ = cpu_ms(lambda: (engine.take_rebuild(plan, states), engine.snapshot(quick=True)))
    return loop + plan_ms + take_ms, thread_ms


def base_moved(engine: Engine) -> Change:
    return (lambda: None), (lambda _: engine.base_moved())


def clearing_rescan(engine: Engine) -> Change:
    def walk() -> object:  # (in a thread in the server: not counted)
        engine.want_rescan()
        plan = engine.plan_rescan()
        return plan, plan.run()

    def adopt(walked) -> None:
        engine.adopt(*walked)

    return walk, adopt


def measure(root: Path, repeat: int) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for off in (False, True):
        engine = Engine([root], cache=False)
        engine.rebuild_off_loop = off
        engine.snapshot(quick=True)
        for name, change in (("base moved", base_moved(engine)), ("clearing rescan", clearing_rescan(engine))):
            for _ in range(repeat):
                if off:
                    loop, thread = off_the_loop(engine, change)
                    out.setdefault(f"{name}, off the loop: loop", []).append(loop)
                    out.setdefault(f"{name}, off the loop: thread", []).append(thread)
                else:
                    out.setdefault(f"{name}, on the loop: loop", []).append(on_the_loop(engine, change))
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="5000 20000")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "BENCH_CACHE", Path(tempfile.gettempdir()) / "migration-lsp-bench")))
    args = p.parse_args()
    for n in (int(s) for s in args.sizes.split()):
        root, _ = run.project(args.cache, n, 1)
        print(f"{n} revisions (load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())})")
        for name, ms in measure(root, args.repeat).items():
            print(f"  {name}: {ms:.1f} ms CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
