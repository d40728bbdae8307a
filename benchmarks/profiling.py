"""Profile the engine's hot paths on a generated project (cProfile, sorted by cumulative time).

    python benchmarks/profiling.py check DIR [--limit 900] [--top 60] [--cold] [--select G]
                                        [--sort tottime]
        `migration-lsp check --no-import DIR` in-process (same as
        `python -m cProfile -s cumtime -m migration_lsp check --no-import DIR`), but stopped
        after --limit seconds with the statistics gathered so far still printed. `--cold`:
        with an empty cache (a new XDG_CACHE_HOME: the first check ever, what issue 13's
        "cold path" rows measure); `--select`: passed to check (G: the graph-only path).

    python benchmarks/profiling.py edit DIR [--kind break|repair|docstring] [--full] [--top 60]
        Engine([DIR]) and a full snapshot() first (not profiled), then profiles
        set_buffer(<mid-history file>, one-character edit) + snapshot(quick=True) (the
        server's per-keystroke path) and, with --full, the full snapshot() after it.
        `--kind break` mistypes the last character of down_revision (what the benchmark
        does); `repair` breaks it unprofiled and profiles the repair; `docstring` adds a
        space to the message line.

    python benchmarks/profiling.py stages DIR [--select G]
        `check --no-import DIR` in-process with an empty cache, without cProfile (whose
        overhead inflates Python-heavy stages): the CPU time of each stage of a first check,
        measured by wrapping it (the replay, the body parse, each rule family), imports and
        the whole; with the CLI's findings worker (engine/forked_findings.py), its CPU, this
        process's CPU when it collected the worker's findings and how long it waited for them.

DIR is a project from benchmarks/generate.py (its .bench.json names the mid-history file).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import inspect
import io
import json
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import typo  # noqa: E402


class Stop(Exception):
    pass


def _alarm(_signum, _frame):
    raise Stop()


SORT = "cumulative"


def by_module(stats: pstats.Stats) -> str:
    """Own time per source file, largest first (where a first check goes, stage by stage)."""
    totals: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        name = filename.split("site-packages/")[-1] if "site-packages/" in filename else filename
        name = name.split("/migration_lsp/")[-1] if "/migration_lsp/" in name else name
        totals[name] = totals.get(name, 0.0) + tottime
    whole = sum(totals.values()) or 1.0
    rows = sorted(totals.items(), key=lambda kv: -kv[1])[:25]
    return "\n".join(f"{t:8.3f} s {100 * t / whole:5.1f} %  {name}" for name, t in rows)


def report(prof: cProfile.Profile, top: int, title: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats(SORT).print_stats(top)
    print(f"===== {title}")
    print(out.getvalue())
    print("===== own time by source file (migration_lsp modules by name, libraries by package path)")
    print(by_module(stats))


def profile_check(root: Path, limit: float, top: int, cold: bool = False, select: str | None = None) -> None:
    if cold:
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="migration-lsp-profile-")
    from migration_lsp.cli import main as cli_main

    prof = cProfile.Profile()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(limit))
    start = time.perf_counter()
    finished = True
    prof.enable()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            cli_main(["check", "--no-import", str(root), *(["--select", select] if select else [])])
    except Stop:
        finished = False
    except SystemExit:
        pass
    finally:
        prof.disable()
        signal.alarm(0)
    elapsed = time.perf_counter() - start
    report(prof, top, f"check --no-import {'--select ' + select + ' ' if select else ''}{'(empty cache) ' if cold else ''}{root}: {elapsed:.1f} s" + ("" if finished else f" (STOPPED after {limit:.0f} s)"))


def stages(root: Path, select: str | None = None) -> None:
    """CPU per stage of a first check (time.process_time around each, nested ones included
    in their callers': the replay holds the body parse, `schema pass` holds the replay and
    the rule families)."""
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="migration-lsp-stages-")
    start = time.process_time()
    import functools
    import importlib

    from migration_lsp import cli, replay, scripts
    from migration_lsp.engine import documents, forked_findings, schema_pass

    families = {name: importlib.import_module(f"migration_lsp.checks.{name}") for name in
                ("downgrade", "safety", "pg_ddl", "pg_transactions", "portable", "history")}
    imports = time.process_time() - start
    spent: dict[str, float] = {}

    def wrap(owner, attr: str, label: str) -> None:
        real = getattr(owner, attr)

        @functools.wraps(real)
        def timed(*args, **kwargs):
            t = time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - t
        setattr(owner, attr, timed)

    wrap(schema_pass.SchemaPass, "_compute", "schema pass (replay + rule families)")
    wrap(replay.Replay, "revision", "  replay (body parse, evaluation, ops applied)")
    wrap(scripts, "_parse_functions", "    body parse")
    wrap(documents, "parse_script", "header scan (documents.parse_script)")
    collect = forked_findings.FindingsWorker.collect
    worker: dict[str, float] = {}

    def collected(self, *args):
        first, wall = not self.collected, time.perf_counter()
        took = collect(self, *args)
        if first:
            worker["waited"] = worker.get("waited", 0.0) + time.perf_counter() - wall
            worker["revisions"] = worker.get("revisions", 0) + took
            worker["parent CPU at collect"] = time.process_time() - start
        return took
    forked_findings.FindingsWorker.collect = collected
    for name, module in families.items():
        wrap(module, f"check_{name}", f"  rules: {name}")
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(["check", "--no-import", str(root), *(["--select", select] if select else [])])
    total = time.process_time() - start
    children = os.times()
    print(f"{'whole check (CPU s)':48} {total:7.2f}")
    if worker:  # the CLI's findings worker (engine/forked_findings.py): its CPU is the children's
        print(f"{'  findings worker: revisions it judged':48} {worker['revisions']:7.0f}")
        print(f"{'  findings worker: CPU (children, s)':48} {children.children_user + children.children_system:7.2f}")
        print(f"{'  this process CPU when it collected (s)':48} {worker['parent CPU at collect']:7.2f}")
        print(f"{'  waited for it (wall s)':48} {worker['waited']:7.2f}")
    print(f"{'imports of the CLI (SQLAlchemy, Alembic come later)':48} {imports:7.2f}")
    for label, value in spent.items():
        print(f"{label:48} {value:7.2f}")


def profile_edit(root: Path, kind: str, full: bool, top: int) -> None:
    from migration_lsp.engine import Engine

    manifest = json.loads((root / ".bench.json").read_text())
    mid = (root / manifest["mid"]["path"]).resolve()
    text = mid.read_text(encoding="utf-8")
    line, col, _, wrong = typo(text, set(manifest["ids"]))
    lines = text.splitlines(keepends=True)
    lines[line] = lines[line][:col] + wrong + lines[line][col + 1:]
    broken = "".join(lines)
    t = time.perf_counter()
    engine = Engine([root.resolve()])
    engine.snapshot()
    print(f"cold Engine + snapshot(): {time.perf_counter() - t:.2f} s (not profiled)")
    quick = {"quick": True} if "quick" in inspect.signature(engine.snapshot).parameters else {}
    if kind == "repair":
        engine.set_buffer(mid, broken)
        engine.snapshot()
        new = text
    else:
        new = broken if kind == "break" else text.replace('"""', '""" ', 1)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    engine.set_buffer(mid, new)
    engine.snapshot(**quick)
    prof.disable()
    report(prof, top, f"set_buffer ({kind}) + snapshot({'quick=True' if quick else ''}): "
                      f"{(time.perf_counter() - t) * 1000:.1f} ms")
    if full and quick:
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        engine.snapshot()
        prof.disable()
        report(prof, top, f"then snapshot() (full pass): {(time.perf_counter() - t) * 1000:.1f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["check", "edit", "stages"])
    p.add_argument("root", type=Path)
    p.add_argument("--limit", type=float, default=900)
    p.add_argument("--top", type=int, default=60)
    p.add_argument("--kind", choices=["break", "repair", "docstring"], default="break")
    p.add_argument("--full", action="store_true")
    p.add_argument("--cold", action="store_true", help="check with an empty cache")
    p.add_argument("--select", help="check --select CODES")
    p.add_argument("--sort", default="cumulative", help="pstats sort key (cumulative, tottime)")
    args = p.parse_args()
    global SORT
    SORT = args.sort
    if args.what == "stages":
        stages(args.root, args.select)
    elif args.what == "check":
        profile_check(args.root, args.limit, args.top, args.cold, args.select)
    else:
        profile_edit(args.root, args.kind, args.full, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
