"""Which model tables migration-lsp's loader gets, per environment of the real-project
corpus, against the tables in Alembic's own target_metadata after `upgrade head` (the
truth run of run.py, read from its results file).

    .venv/bin/python benchmarks/realworld/models_loaded.py [--results PATH]

Needs the workspaces run.py laid out under $TMPDIR/migration-lsp-realworld. Prints one
line per environment: tables Alembic has, tables we loaded, tables in both, and the error
or fallback note, if any.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from migration_lsp import models
from migration_lsp.engine import Engine

HERE = Path(__file__).resolve().parent
BASE = Path(tempfile.gettempdir()) / "migration-lsp-realworld"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=str(HERE / "results.json"))
    args = ap.parse_args()
    models.TIMEOUT = 600  # a busy machine: the question is what is loaded, not how fast
    print("| project | env | Alembic's tables | loaded | in both | note | s |\n|---|---|---:|---:|---:|---|---:|")
    for entry in json.loads(Path(args.results).read_text()):
        ws = BASE / f"{entry['name']}-{entry['version']}"
        engine = Engine([ws], trusted=True, cache=False)
        envs = engine.environments()
        for run in (r for r in entry["runs"] if r["dialect"] == "sqlite"):
            ini = (ws / run["ini"]).resolve()
            env = next((e for _, e in envs if e.config_path and e.config_path.resolve() == ini), None)
            if env is None:
                print(f"| {entry['name']} | {run['env']} | | | | not discovered | |")
                continue
            want = set(run["truth"].get("tables_in_models") or []) if run["truth"].get("ok") else None
            started = time.perf_counter()
            got = models.load_models(env, engine.metadata_source(env))
            secs = time.perf_counter() - started
            note = (got.error or got.note or "").replace("|", "/")[:120]
            print(f"| {entry['name']} | {run['env']} | {len(want) if want is not None else '–'} | {len(got.tables)} | "
                  f"{len(want & set(got.tables)) if want is not None else '–'} | {note} | {secs:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
