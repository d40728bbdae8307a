"""Issue 13's cold-path ratios, interleaved in one run: `alembic heads` against
`migration-lsp check --no-import [--select G]` with an empty cache, wall and CPU time.

    python benchmarks/cold.py DIR [--repeat 3] [--baseline SRC] [--full]

DIR is a project from benchmarks/generate.py. Each sample is a new process; CPU time is
the child's user + system time (wait4), which a loaded machine inflates far less than wall
time. `alembic heads` runs twice per sample: with the migration files' .pyc present (what a
user's second run sees, as `make bench` measures it) and without (.pyc removed, -B), the
way it ran when PYTHONDONTWRITEBYTECODE was set in the benchmark's environment.
`--baseline SRC`: also run the migration_lsp package found in SRC (e.g. `git archive` of an
older commit unpacked there), for before/after rows measured under the same load; may be
given more than once (each named by its folder).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _env(src: str | None = None, pyc: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cold-xdg-")  # an empty cache every time
    if not pyc:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if src:
        env["PYTHONPATH"] = src
    return env


def _run(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    shutil.rmtree(env["XDG_CACHE_HOME"], ignore_errors=True)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--baseline", action="append", default=[], help="a folder holding an older migration_lsp package")
    p.add_argument("--full", action="store_true", help="also the full check (every rule)")
    args = p.parse_args()
    py = sys.executable
    heads = [py, "-m", "alembic", "heads"]
    variants = {"new": None, **{Path(src).name or src: src for src in args.baseline}}
    kinds = ["heads (.pyc)", "heads (no .pyc)"]
    for name in variants:
        kinds.append(f"check --select G [{name}]")
        if args.full:
            kinds.append(f"check [{name}]")
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    _run(heads, args.root, _env())  # writes the .pyc files
    for _ in range(args.repeat):
        samples["heads (.pyc)"].append(_run(heads, args.root, _env()))
        for cache in args.root.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        samples["heads (no .pyc)"].append(_run([py, "-B", "-m", "alembic", "heads"], args.root, _env(pyc=False)))
        _run(heads, args.root, _env())  # the .pyc files again
        for name, src in variants.items():
            check = [py, "-m", "migration_lsp", "check", "--no-import", "."]
            samples[f"check --select G [{name}]"].append(_run([*check, "--select", "G"], args.root, _env(src)))
            if args.full:
                samples[f"check [{name}]"].append(_run(check, args.root, _env(src)))
    median = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in samples.items()}
    print(f"{'what':34} {'wall s':>8} {'CPU s':>8}   heads(.pyc)/it wall, CPU   heads(no .pyc)/it wall, CPU")
    for kind, (wall, cpu) in median.items():
        ratios = ""
        if kind.startswith("check"):
            for ref in ("heads (.pyc)", "heads (no .pyc)"):
                ratios += f"   {median[ref][0] / wall:10.2f}x {median[ref][1] / cpu:6.2f}x    "
        print(f"{kind:34} {wall:8.2f} {cpu:8.2f}{ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
