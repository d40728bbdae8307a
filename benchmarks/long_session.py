"""Long-session memory (issue 13): what the collector policy around the server's full pass
does to the RSS over many edit + full-pass cycles. `make bench` runs it.

    python benchmarks/long_session.py [--revisions 1000] [--cycles 160] [--policies ...]

Each (policy, edit pattern) runs in its own process on a benchmarks/generate.py project:
an Engine as the server holds it, then CYCLES times: set_buffer(mid-history file) +
snapshot(quick=True) (the keystroke) and snapshot() (the full pass) under the policy. It
prints VmRSS after the first pass and after each quarter, the growth per 100 cycles over
the second half (where a leak shows as a slope and a bounded cache as flat), and the
longest collector call the policy added on the event loop.

Policies (what the server does around each full pass; the collector is paused during it in
all of them, since a pass makes millions of long-lived objects and no cyclic garbage):
  freeze          gc.freeze() after every pass (whatever garbage the pass left is frozen
                  with it and never collected)
  collect-freeze  gc.collect() then gc.freeze() after every pass but the first (the index,
                  frozen as it is): the collection looks only at what the pass made (all
                  older objects are frozen), and frees its garbage first
  freeze-once     gc.freeze() after the first pass only (the index); later passes just
                  re-enable the collector
  none            never freeze
  sweep           what the server does (migration_lsp.engine.collector.FrozenGrowth): the
                  young generations collected during the pass, never the old one, then
                  freeze; once the permanent generation holds twice the objects it held
                  after the first pass (or the last sweep), unfreeze, collect everything and
                  freeze again (the server at an idle moment; here right after the pass, and
                  counted in "longest collector call")
Edit patterns: `typo` alternately breaks and repairs down_revision (two texts: the memo by
revision key answers every second pass); `unique` appends a comment never seen before
(every pass recomputes the revisions above the file: the caches must evict).
At the end, everything is unfrozen and collected once: what that finds died in a cycle
(after being frozen, or left by a pass), what only a sweep would free in the server.
`make bench` also runs the server's policy at 5,000 revisions (--revisions 5000 --cycles 40
--policies sweep,freeze --patterns unique).
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

POLICIES = ("sweep", "freeze", "collect-freeze", "freeze-once", "none")
PATTERNS = ("typo", "unique")


def rss() -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1)) * 1024


def child(root: Path, policy: str, pattern: str, cycles: int) -> dict:
    from migration_lsp.engine import Engine
    from migration_lsp.engine.collector import FrozenGrowth
    from run import typo

    manifest = json.loads((root / ".bench.json").read_text())
    mid = (root / manifest["mid"]["path"]).resolve()
    text = mid.read_text(encoding="utf-8")
    line, col, _, wrong = typo(text, set(manifest["ids"]))
    lines = text.splitlines(keepends=True)
    lines[line] = lines[line][:col] + wrong + lines[line][col + 1:]
    broken = "".join(lines)
    engine = Engine([root], cache=False, trusted=False)
    longest = 0.0  # the longest collector call after a pass (the first excepted; wall and CPU), and
    longest_cpu = 0.0
    # the longest automatic collection the re-enabled collector ran between passes
    automatic = [0.0]
    sweeper = FrozenGrowth()
    started: list[float] = []

    explicit = [False]  # (the sweep's own collection is not an automatic one)

    def timing(phase: str, info: dict) -> None:
        if explicit[0]:
            return
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            automatic[0] = max(automatic[0], time.perf_counter() - started.pop())

    def full_pass(first: bool) -> None:
        nonlocal longest, longest_cpu
        if policy == "sweep":  # as the server does (its check waits for an idle moment)
            with sweeper.paused():
                engine.snapshot()
            t, c = time.perf_counter(), time.thread_time()
            if first:
                sweeper.frozen(gc.get_freeze_count())
            else:
                explicit[0] = True
                sweeper.check()
                explicit[0] = False
                longest = max(longest, time.perf_counter() - t)
                longest_cpu = max(longest_cpu, time.thread_time() - c)
            return
        gc.disable()
        try:
            engine.snapshot()
        finally:
            t, c = time.perf_counter(), time.thread_time()
            if policy == "collect-freeze" and not first:
                gc.collect()
                gc.freeze()
            elif policy in ("freeze", "collect-freeze") or (policy == "freeze-once" and first):
                gc.freeze()
            gc.enable()
            if not first:
                longest = max(longest, time.perf_counter() - t)
                longest_cpu = max(longest_cpu, time.thread_time() - c)

    full_pass(True)
    gc.callbacks.append(timing)
    samples = {0: rss()}
    for i in range(1, cycles + 1):
        if pattern == "typo":
            new = broken if i % 2 else text
        else:
            new = f"{text}\n# edit {i}\n"
        engine.set_buffer(mid, new)
        engine.snapshot(quick=True)
        full_pass(False)
        if i % max(cycles // 4, 1) == 0 or i == cycles:
            samples[i] = rss()
    frozen = gc.get_freeze_count()
    gc.unfreeze()  # what a full collection finds now died in a cycle (after being frozen, or left by a pass)
    garbage = gc.collect()
    half = cycles // 2
    slope = (samples[cycles] - samples[min(k for k in samples if k >= half)]) / max(cycles - half, 1) * 100
    return {"policy": policy, "pattern": pattern, "rss": samples, "growth_per_100": slope,
            "longest_gc_ms": longest * 1000, "longest_gc_cpu_ms": longest_cpu * 1000, "longest_auto_ms": automatic[0] * 1000,
            "frozen": frozen, "garbage": garbage, "sweeps": f"{sweeper.sweeps} / {sweeper.counts}"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--revisions", type=int, default=1000)
    p.add_argument("--cycles", type=int, default=160)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--patterns", default=",".join(PATTERNS))
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "migration-lsp-bench")
    p.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        root, policy, pattern = args._child
        print(json.dumps(child(Path(root), policy, pattern, args.cycles)))
        return 0
    import run

    args.cache.mkdir(parents=True, exist_ok=True)
    root, _ = run.project(args.cache, args.revisions, args.seed)
    MiB = 1024 * 1024
    print(f"Long session: {args.cycles} edit + full-pass cycles at {args.revisions:,} revisions "
          f"(benchmarks/long_session.py), VmRSS in MiB\n")
    print("| policy | edits | after the first pass | after each quarter | growth per 100 cycles, 2nd half | "
          "longest collector call after a pass, wall / CPU (ms) | longest automatic collection (ms) | sweeps / exact counts | "
          "frozen objects at the end | cyclic garbage a full collection then finds |")
    print("|---|---|--:|--|--:|--:|--:|--:|--:|--:|")
    for policy in args.policies.split(","):
        for pattern in args.patterns.split(","):
            out = subprocess.run([sys.executable, __file__, "--cycles", str(args.cycles), "--_child", str(root),
                                  policy, pattern], capture_output=True, text=True, timeout=3600)
            if out.returncode != 0:
                print(f"| {policy} | {pattern} | failed: {out.stderr.strip().splitlines()[-1:]} | | | | | |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            quarters = " / ".join(f"{v / MiB:.0f}" for k, v in sorted(r["rss"].items(), key=lambda kv: int(kv[0]))
                                  if int(k) > 0)
            print(f"| {policy} | {pattern} | {r['rss']['0'] / MiB:.0f} | {quarters} | "
                  f"{r['growth_per_100'] / MiB:+.1f} | {r['longest_gc_ms']:.1f} / {r['longest_gc_cpu_ms']:.1f} | {r['longest_auto_ms']:.1f} | "
                  f"{r['sweeps']} | {r['frozen']:,} | {r['garbage']:,} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
