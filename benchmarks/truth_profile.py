"""Where a truth pass's time goes (issue 15): the child's own timings and a cProfile of it.

    python benchmarks/truth_profile.py [--revisions 100] [--dialect sqlite|postgresql] [--downgrades 0|1]
                                       [--rerun] [--top 25]

The project is benchmarks/truth_speed.py's (a table every fifth revision, a column
otherwise). One cold pass (truth.verify, empty cache folder) runs with the truth child
under cProfile; `--rerun` then edits the head and profiles the re-run instead, as the
server runs it (truth.Verifier, its spare child, PostgreSQL template / SQLite snapshot;
the spare's imports before it had a job are under `warm_up`), the parent profiled too. Prints the child's `timings` (counts: env.py runs,
reflections, fingerprints) and the functions with the most cumulative time. Not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

WRAPPER = """\
import cProfile, os, runpy, sys
_profile = cProfile.Profile()
_exit = os._exit


def _dump_and_exit(code):  # (the child ends by os._exit once its result is written)
    _profile.disable()
    _profile.dump_stats({out!r})
    _exit(code)


os._exit = _dump_and_exit
_profile.enable()
try:
    runpy.run_path({child!r}, run_name="__main__")
finally:
    _profile.disable()
    _profile.dump_stats({out!r})
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--revisions", type=int, default=100)
    ap.add_argument("--dialect", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--downgrades", default="1")
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="truth-profile-"))
    os.environ["MIGRATION_LSP_CACHE_DIR"] = str(work / "cache")

    import truth_speed

    from migration_lsp import child, scratchdb, truth
    from migration_lsp.engine import Engine

    url = "postgresql://scratch/db" if args.dialect == "postgresql" else f"sqlite:///{work / 'unused.db'}"
    project = work / "project"
    truth_speed.generate(project, args.revisions, url)
    out = work / "child.prof"
    wrapper = work / "profiled_truth_child.py"
    wrapper.write_text(WRAPPER.format(child=str(truth.CHILD), out=str(out)))
    real_child = truth.CHILD
    engine = Engine([project], trusted=True)
    engine.load_models()
    verifier = truth.Verifier()
    downs = args.downgrades == "1"

    def run():
        jobs = verifier.jobs(engine, engine.snapshot())
        if not downs:
            return next(iter({k: truth.verify(s, m, src, schema=sch, downgrades=False, spares=verifier.spares)
                              for k, s, m, src, sch in jobs}.values()))
        return next(iter(verifier.run(jobs).values()))

    parent = cProfile.Profile()
    truth.CHILD = wrapper  # (the spare child too: its profile has its warm-up apart, in warm_up)
    try:
        if args.rerun:
            outcome = run()
            print(f"first pass: {outcome.summary()}")
            head = max((project / "migrations" / "versions").glob("*.py"))
            head.write_text(head.read_text() + "\n# edited\n")
            engine.file_changed(head)
            time.sleep(truth_speed.PAUSE)  # the spare child imports meanwhile
        t0 = time.perf_counter()
        parent.enable()
        outcome = run()
        parent.disable()
        wall = time.perf_counter() - t0
    finally:
        truth.CHILD = real_child
        verifier.spares.close()
        child.kill_all()
        scratchdb.close_all()
    print(f"{'re-run' if args.rerun else 'cold pass'}: {wall:.2f} s wall; {outcome.summary()}")
    print(f"load average: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for key, value in sorted(outcome.timings.items(), key=lambda kv: str(kv[0])):
        print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    print("\n--- child (cumulative)")
    pstats.Stats(str(out)).sort_stats("cumulative").print_stats(args.top)
    if args.rerun:
        print("\n--- parent (cumulative)")
        pstats.Stats(parent).sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
