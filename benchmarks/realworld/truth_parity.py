"""The truth pass (migration_lsp/truth.py) vs the harness's ground truth on the cached
real projects: same `alembic check` list, item for item?

    .venv/bin/python benchmarks/realworld/truth_parity.py [--only NAME ...] [--no-postgres]

Uses the workspaces and venvs `make realworld` left in $TMPDIR/migration-lsp-realworld and
the ground truth in results.json (truth_child.py: `alembic upgrade head` + compare_metadata
with the harness's per-project setup). The truth pass gets no URL: the corpus's environment
variables are set with `{url}` pointing at a file that must never be created (every engine
is redirected to the scratch database). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))
from corpus import CORPUS  # noqa: E402
from run import write_settings  # noqa: E402

from migration_lsp import scratchdb, truth  # noqa: E402
from migration_lsp.engine import Engine  # noqa: E402

BASE = Path(tempfile.gettempdir()) / "migration-lsp-realworld"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--downgrades", action="store_true", help="also down and up each revision")
    args = parser.parse_args()
    results = {p["name"]: p for p in json.loads((HERE / "results.json").read_text())}
    rows = []
    for project in CORPUS:
        if args.only and project["name"] not in args.only:
            continue
        shared = BASE / f"{project['name']}-{project['version']}"
        if not (shared / ".venv" / ".realworld-installed").is_file():
            rows.append(f"| {project['name']} | | | not installed | | | | |")
            continue
        ws = private_checkout(project, shared)
        for dialect in project["dialects"]:
            if dialect == "postgresql" and args.no_postgres:
                continue
            for label, env in project["envs"].items():
                rows.append(run_one(project, ws, label, env, dialect, results.get(project["name"]), args.downgrades))
                print(rows[-1], file=sys.stderr, flush=True)
    scratchdb.close_all()
    print("| project | env | dialect | truth pass | ground truth | ours | equal | located |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


def private_checkout(project: dict, shared: Path) -> Path:
    """The project laid out as run.py does it, in a folder of our own (other runs of the
    harness re-lay the shared one while they run), with the shared venv linked in."""
    import shutil
    import subprocess

    ws = Path(tempfile.mkdtemp(prefix=f"truth-parity-{project['name']}-"))
    (ws / ".venv").symlink_to(shared / ".venv")
    python = str(shared / ".venv" / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for folder in project["copy"]:
        shutil.copytree(Path(site) / folder, ws / folder, ignore=shutil.ignore_patterns("__pycache__"))
    if project.get("prepare"):
        subprocess.run([python, "-c", project["prepare"]], cwd=ws, check=True, capture_output=True, timeout=300)
    return ws


def run_one(project: dict, ws: Path, label: str, env: dict, dialect: str, result: dict | None,
            downgrades: bool) -> str:
    tmp = tempfile.mkdtemp(prefix="truth-parity-")
    never = Path(tmp) / "never-created.db"
    saved = dict(os.environ)
    os.environ.update({k: v.replace("{url}", f"sqlite:///{never}").replace("{tmp}", tmp)
                       for k, v in env.get("env", {}).items()})
    os.environ.update(project.get("user_env", {}).get(dialect, {}))  # what its user has set (wins)
    write_settings(ws, project.get("settings", {}).get(dialect, {}))  # (ws: this script's own copy)
    if env.get("setup"):
        exec(compile(env["setup"], "<corpus setup>", "exec"), {"job": {"tmp": tmp}})
    try:
        overrides = {"dialect": dialect} if dialect != "sqlite" else {}
        engine = Engine([ws], overrides, trusted=True, cache=False)
        engine.load_models()
        snapshot = engine.snapshot()
        ini = (ws / env["ini"]).resolve()
        states = [s for s in snapshot.environments if s.env.config_path and s.env.config_path.resolve() == ini]
        if not states:
            return f"| {project['name']} | {label} | {dialect} | environment not found | | | | |"
        state = states[0]
        key = (state.env.root, state.env.name)
        t0 = time.perf_counter()
        outcome = truth.verify(state, engine.models.get(key), engine.metadata_source(state.env), snapshots=False,
                               downgrades=downgrades)
        secs = time.perf_counter() - t0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    theirs = None
    for run in (result or {}).get("runs", []):
        if run.get("env") == label and run.get("dialect") == dialect:
            theirs = run.get("truth") or {}
    ours = sorted(_masked(i.get("repr", "")[:300]) for i in outcome.items)
    if theirs and theirs.get("ok"):
        gt = f"{len(theirs.get('raw') or [])} items"
        equal = "yes" if outcome.compared and ours == sorted(_masked(r) for r in theirs.get("raw") or []) else "**no**"
    else:
        gt = f"none ({(theirs or {}).get('error', 'no run')[:60]})"
        equal = "n/a"
    state_text = outcome.summary().replace("|", "/")[:150]
    if never.exists():
        state_text += " **(redirect failed: the corpus URL was created)**"
    located = f"{outcome.located}/{len(outcome.items)}" if outcome.items else "-"
    r001 = [d.message[:80] for d in outcome.diagnostics if d.code == "R001"]
    ours_text = f"{len(outcome.items)} items" if outcome.compared else (f"R001: {r001[0]}" if r001 else "no compare")
    if downgrades:
        found = sorted(d.code for d in outcome.diagnostics if d.code in ("D001", "D002", "R002"))
        ours_text += f"; downgrades: {', '.join(f'{c}×{found.count(c)}' for c in sorted(set(found))) or 'clean'}"
    return (f"| {project['name']} | {label} | {dialect} | {state_text} ({secs:.1f} s) | {gt} | "
            f"{ours_text.replace('|', '/')} | {equal} | {located} |")


def _masked(text: str) -> str:
    """Object addresses (`<... object at 0x7f...>`) differ between processes."""
    return re.sub(r" at 0x[0-9a-f]+>", " at 0x…>", text)


if __name__ == "__main__":
    sys.exit(main())
