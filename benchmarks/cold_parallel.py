"""Issue 13's graph-only cold check on two cores (engine/forked.py), measured so that the load
of other processes on the machine moves the numbers as little as possible.

    python benchmarks/cold_parallel.py DIR [--repeat 5] [--valgrind]

DIR is a project from benchmarks/generate.py. Each sample is `check --no-import --select G`
in a new process with an empty cache, once with the forked worker and once without
(forked.FORK_MIN set out of reach), interleaved. Per sample: the parent's CPU time (user +
system, the whole process: start-up, imports and all), its wait for the worker (wall time
blocked on the worker's pipe: the only wall time counted), the critical path = CPU + wait,
the worker's CPU, and the parent's CPU per stage. Medians of --repeat. `--valgrind`: also the
instructions of each process (callgrind, one run each way: a count does not move with the
load at all).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import functools, io, json, os, resource, sys, time
from contextlib import redirect_stdout
from migration_lsp import cli, project
from migration_lsp.engine import Engine, documents, forked, graph_index, stored
fork = sys.argv[2] == "fork"
if not fork:
    forked.FORK_MIN = 1 << 60
cpu, wait = {}, [0.0]

def timed(owner, attr, label, wall=False):
    real = getattr(owner, attr)
    @functools.wraps(real)
    def run(*args, **kwargs):
        t, w = time.process_time(), time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            cpu[label] = cpu.get(label, 0.0) + time.process_time() - t
            if wall:
                wait[0] += time.perf_counter() - w - (time.process_time() - t)
    setattr(owner, attr, run)

timed(project.Scan, "fingerprint", "discovery: stat of every file")
timed(stored, "walk", "discovery: walk")
timed(project, "discover_bare", "discovery: the rest")
timed(Engine, "_pieces", "read + hash (this process's files)")
timed(documents.Documents, "script", "decode + header scan (this process's files)")
timed(forked.Worker, "start_for", "fork")
timed(forked.Worker, "_read", "pipe reads", wall=True)
timed(forked.Worker, "scripts", "worker's scripts: unmarshal + records")
timed(graph_index, "RevisionGraph", "graph")
timed(graph_index, "check_graph", "G findings")
timed(graph_index, "check_script", "G findings")
timed(Engine, "save_cache", "cache written")
with redirect_stdout(io.StringIO()):
    cli.main(["check", "--no-import", "--select", "G", sys.argv[1]])
me = resource.getrusage(resource.RUSAGE_SELF)
child = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu": me.ru_utime + me.ru_stime, "sys": me.ru_stime, "faults": me.ru_minflt, "wait": wait[0], "worker": child.ru_utime + child.ru_stime,
                  "stages": cpu}))
'''


def _sample(root: Path, mode: str) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": tempfile.mkdtemp(prefix="cold-parallel-")}
    env.pop("MIGRATION_LSP_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), mode], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def _instructions(root: Path, mode: str) -> dict[str, int]:
    """Instructions of one run from callgrind: the parent before the fork (callgrind dumps and
    zeroes its counters when os.fork is called, so the worker's count is its own), the
    parent after it, and the worker."""
    folder = tempfile.mkdtemp(prefix="cold-parallel-vg-")
    env = {**os.environ, "XDG_CACHE_HOME": tempfile.mkdtemp(prefix="cold-parallel-"), "PYTHONHASHSEED": "0"}
    env.pop("MIGRATION_LSP_CACHE_DIR", None)
    subprocess.run(["valgrind", "--tool=callgrind", "--dump-before=PyOS_BeforeFork",
                    f"--callgrind-out-file={folder}/cg.%p", sys.executable, "-c", CHILD, str(root), mode],
                   env=env, capture_output=True, check=True)
    by_pid: dict[int, list[tuple[int, int]]] = {}
    for path in glob.glob(f"{folder}/cg.*"):
        pid, _, part = path.rsplit("/", 1)[1].removeprefix("cg.").partition(".")
        text = Path(path).read_text(errors="replace")
        found = re.search(r"^summary: (\d+)", text, re.MULTILINE) or re.search(r"^totals: (\d+)", text, re.MULTILINE)
        by_pid.setdefault(int(pid), []).append((int(part or 1 << 30), int(found.group(1)) if found else 0))
    parent, *workers = sorted(by_pid)
    parts = [count for _, count in sorted(by_pid[parent])]
    out = {"parent, the whole process": sum(parts)}
    if workers:
        out["parent until the fork"] = sum(parts[:-1])
        out["parent after the fork"] = parts[-1]
        out["worker"] = sum(count for pid in workers for _, count in by_pid[pid])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--valgrind", action="store_true")
    args = p.parse_args()
    print(f"load average at the start: {os.getloadavg()}")
    samples: dict[str, list[dict]] = {"sequential": [], "fork": []}
    for _ in range(args.repeat):
        for mode, taken in samples.items():
            taken.append(_sample(args.root, mode))
    rows = [("parent CPU (the whole process)", lambda s: s["cpu"]),
            ("parent's wait for the worker", lambda s: s["wait"]),
            ("critical path (CPU + wait)", lambda s: s["cpu"] + s["wait"]),
            ("worker CPU", lambda s: s["worker"]),
            ("  of the parent's CPU: system", lambda s: s["sys"]),
            ("  page faults of the parent (/ 1000)", lambda s: s["faults"] / 1e6)]
    stages = dict.fromkeys(k for mode in samples.values() for s in mode for k in s["stages"])
    rows += [(f"  {k}", lambda s, k=k: s["stages"].get(k, 0.0)) for k in stages]
    if args.repeat:
        print(f"{'ms, medians of ' + str(args.repeat):44} {'sequential':>11} {'fork':>9}")
        for label, get in rows:
            print(f"{label:44} " + " ".join(f"{1000 * statistics.median(get(s) for s in samples[m]):{w}.1f}"
                                             for m, w in (("sequential", 11), ("fork", 9))))
    print(f"load average at the end: {os.getloadavg()}")
    if args.valgrind:
        for mode in samples:
            counts = _instructions(args.root, mode)
            print(f"instructions, {mode}: " + ", ".join(f"{k} {c / 1e6:,.0f} M" for k, c in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
