"""Issue 13's floor for a first full `check --no-import`: what the steps every check must
take cost on their own, against `alembic heads`, measured in the same run.

    python benchmarks/cold_floor.py DIR [--repeat 3]

DIR is a project from benchmarks/generate.py. In-process, CPU time (process_time) and wall,
best of --repeat: reading and decoding every migration file, the header scan (stage
`scripts`), `ast.parse` of every upgrade()/downgrade() (what the body parse compiles),
and the same parse spread over two forked workers (os.fork; each parses its half and sends
back either a count — the most parallelism can give — or the trees, pickled — what handing
parsed bodies back to the main process costs). `alembic heads` (with its .pyc) runs as a
new process, CPU = its user + system time (wait4). A full check needs at least the parse of
every body: when that alone is not 2x faster than `alembic heads`, the 2x target is out of
reach for a check written in Python that parses the bodies.
"""

from __future__ import annotations

import argparse
import ast
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def _timed(fn, repeat: int):
    best = None
    result = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        sample = (time.perf_counter() - wall, time.process_time() - cpu)
        best = sample if best is None or sample[0] < best[0] else best
    return best, result


def _heads(root: Path) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cmd = [sys.executable, "-m", "alembic", "heads"]
    subprocess.run(cmd, cwd=root, env=env, capture_output=True, check=True)  # writes the .pyc
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def _parse_bodies(bodies: list[str]) -> list[ast.Module]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [ast.parse(b) for b in bodies]


CHILD_CPU = [0.0]  # the forked workers' user + system time, added up (wait4)


def _forked(bodies: list[str], send_trees: bool, workers: int = 2) -> int:
    """Parse the bodies in `workers` forked children; returns what came back (count of trees)."""
    children = []
    for n in range(workers):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: parse its share, answer, leave
            os.close(read)
            trees = _parse_bodies(bodies[n::workers])
            payload = pickle.dumps(trees if send_trees else len(trees), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write, "wb") as out:
                out.write(payload)
            os._exit(0)
        os.close(write)
        children.append((pid, read))
    got = 0
    for pid, read in children:
        with os.fdopen(read, "rb") as inp:
            answer = pickle.loads(inp.read())
        _, _, usage = os.wait4(pid, 0)
        CHILD_CPU[0] += usage.ru_utime + usage.ru_stime
        got += len(answer) if send_trees else answer
    return got


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cold-floor-")
    from migration_lsp.engine import Engine
    from migration_lsp.engine.sources import decode_source, read_file
    from migration_lsp.scripts import parse_script

    engine = Engine([args.root.resolve()], {"select": ("G",)}, trusted=False, cache=False)
    files = [f for _, env in engine.environments() for f in env.files]
    rows: list[tuple[str, tuple[float, float]]] = []
    t, texts = _timed(lambda: [decode_source(read_file(f)[0] or b"")[0] for f in files], args.repeat)
    rows.append((f"read + decode {len(files)} files", t))
    t, parsed = _timed(lambda: [parse_script(f, text) for f, text in zip(files, texts)], args.repeat)
    rows.append(("header scan (parse_script)", t))
    bodies = []
    for script in parsed:
        start = script._body_start or 0
        head = script.text[:start]
        bodies.append("\n" * head.count("\n") + script.text[start:])
    t, _ = _timed(lambda: _parse_bodies(bodies), args.repeat)
    rows.append(("ast.parse of every body, one process", t))
    for send, name in ((False, "a count back"), (True, "the trees back")):
        CHILD_CPU[0] = 0.0
        (wall, cpu), got = _timed(lambda: _forked(bodies, send), args.repeat)
        assert got == len(bodies)
        rows.append((f"the same, 2 forked workers, {name}", (wall, cpu + CHILD_CPU[0] / args.repeat)))
    heads = min((_heads(args.root) for _ in range(args.repeat)), key=lambda s: s[0])
    shutil.rmtree(os.environ["XDG_CACHE_HOME"], ignore_errors=True)
    print(f"{'what':44} {'wall s':>7} {'CPU s':>7}   heads/it wall, CPU")
    print(f"{'alembic heads (.pyc), a new process':44} {heads[0]:7.3f} {heads[1]:7.3f}")
    for name, (wall, cpu) in rows:
        print(f"{name:44} {wall:7.3f} {cpu:7.3f}   {heads[0] / wall:6.2f}x {heads[1] / max(cpu, 1e-9):6.2f}x")
    print("(CPU of the forked rows: the parent's, plus its workers' averaged over the runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
