"""Truth pass wall time vs `alembic upgrade head` + `alembic check` (issue 15).

    python benchmarks/truth_speed.py [--revisions 100] [--dialect sqlite|postgresql|both] [--repeat 3]

A generated project (N revisions: a table every fifth revision, a column otherwise; the
models match the head, so `alembic check` finds nothing) is checked three ways, each in a
fresh process so every run is cold:

* alembic: `python -m alembic upgrade head` then `python -m alembic check` on a new
  database (SQLite: a file; PostgreSQL: a database on an already running embedded
  cluster — somebody has to provide one);
* truth (cold): `truth.verify` on an empty cache folder, PostgreSQL started inside the
  timing (downgrades off: the same work as alembic's; and on: the CLI's default);
* truth (warm bytecode): the same with the cache folder of a previous run minus its
  snapshots (what a second CI run on the same machine sees);
* PostgreSQL, truth (pristine only): a cache folder holding nothing but the pristine data
  folder of a previous run (`pg-pristine/`): no initdb, nothing else cached;
* re-run after editing the head revision (snapshots: only the head runs again), in the
  process of the cold run, through truth.Verifier as the server runs it (it keeps its
  cluster, and a spare child warmed up during a pause of PAUSE seconds: the user typing);
  the row includes the engine's full static snapshot after the edit, which the server has
  computed for its static diagnostics before the pass starts: the row under it leaves it out.

Prints a Markdown table (median of --repeat runs). Not a test: wall time depends on the
machine; the tests count executions instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAUSE = 5.0  # seconds between the first pass and the edit (the spare child imports meanwhile)
ROOT = HERE.parent

ENV_PY = """\
from alembic import context
from sqlalchemy import engine_from_config, pool

from app.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online():
    connectable = config.attributes.get("connection") or engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""

INI = """\
[alembic]
script_location = migrations
prepend_sys_path = .
sqlalchemy.url = {url}
"""

REVISION = '''\
"""{message}

Revision ID: {rev}
Revises: {down}
"""
from alembic import op
import sqlalchemy as sa

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    {up}


def downgrade():
    {down_body}
'''


def generate(root: Path, n: int, url: str) -> list[Path]:
    """The project; returns the revision files in order."""
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text("")
    (root / "alembic.ini").write_text(INI.format(url=url.replace("%", "%%")))
    (root / "migrations" / "env.py").write_text(ENV_PY)
    tables: dict[str, list[str]] = {}
    files = []
    current = None
    for i in range(n):
        rev, down = f"{i + 1:04d}", (f"{i:04d}" if i else None)
        if i % 5 == 0:
            current = f"t{i // 5}"
            tables[current] = []
            up = (f"op.create_table({current!r}, sa.Column('id', sa.Integer(), primary_key=True), "
                  f"sa.Column('name', sa.String(50), nullable=False))\n"
                  f"    op.create_index('ix_{current}_name', {current!r}, ['name'])")
            down_body = f"op.drop_index('ix_{current}_name', table_name={current!r})\n    op.drop_table({current!r})"
        else:
            col = f"c{i}"
            tables[current].append(col)
            up = f"op.add_column({current!r}, sa.Column({col!r}, sa.Integer(), nullable=True))"
            down_body = f"op.drop_column({current!r}, {col!r})"
        path = root / "migrations" / "versions" / f"{rev}_step.py"
        path.write_text(REVISION.format(message=f"step {rev}", rev=rev, down=down, up=up, down_body=down_body))
        files.append(path)
    lines = ["from sqlalchemy import Column, Index, Integer, MetaData, String, Table", "",
             "from sqlalchemy.orm import DeclarativeBase", "", "",
             "class Base(DeclarativeBase):", "    pass", ""]
    for table, cols in tables.items():
        lines.append(f"Table({table!r}, Base.metadata, Column('id', Integer, primary_key=True), "
                     f"Column('name', String(50), nullable=False), "
                     + "".join(f"Column({c!r}, Integer), " for c in cols)
                     + f"Index('ix_{table}_name', 'name'))")
    (root / "app" / "models.py").write_text("\n".join(lines) + "\n")
    return files


# --------------------------------------------------------------------------- one measurement (a fresh process)


def one(project: Path, downgrades: bool, edit: bool) -> dict:
    """(In a fresh process) the truth pass, timed, as the server runs it (truth.Verifier);
    then, if `edit`, the head edited and the pass again: after a pause (the user typing),
    the spare child the first pass left has imported its libraries."""
    sys.path.insert(0, str(ROOT))
    from migration_lsp import child, scratchdb, truth
    from migration_lsp.engine import Engine

    engine = Engine([project], trusted=True)
    engine.load_models()
    verifier = truth.Verifier()

    split = {}

    def run():
        t0 = time.perf_counter()
        jobs = verifier.jobs(engine, engine.snapshot())
        split["static"] = time.perf_counter() - t0  # (the server has this snapshot already: its static pass)
        if not downgrades:  # (the server always downgrades what it re-runs: this is the CLI's --downgrades none)
            return next(iter({k: truth.verify(s, m, src, schema=sch, downgrades=False, spares=verifier.spares)
                              for k, s, m, src, sch in jobs}.values()))
        return next(iter(verifier.run(jobs).values()))

    t0 = time.perf_counter()
    outcome = run()
    out = {"cold": time.perf_counter() - t0, "summary": outcome.summary(), "ran": outcome.ran}
    assert outcome.compared, outcome.summary()
    if edit:
        head = sorted((project / "migrations" / "versions").glob("*.py"))[-1]
        head.write_text(head.read_text() + "\n# edited\n")
        engine.file_changed(head)
        time.sleep(PAUSE)
        t0 = time.perf_counter()
        again = run()
        out.update(rerun=time.perf_counter() - t0, rerun_ran=again.ran, rerun_summary=again.summary(),
                   spares_taken=verifier.spares.taken, rerun_static=split["static"], rerun_timings=again.timings)
        assert again.compared and again.ran == 1, again.summary()
    verifier.spares.close()
    child.kill_all()
    scratchdb.close_all()
    return out


def measure(project: Path, cache: Path, downgrades: bool, edit: bool) -> dict:
    env = dict(os.environ, MIGRATION_LSP_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, __file__, "--one", str(project), "--downgrades", str(int(downgrades)),
                           "--edit", str(int(edit))], env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def alembic(project: Path) -> float:
    t0 = time.perf_counter()
    for args in (["upgrade", "head"], ["check"]):
        proc = subprocess.run([sys.executable, "-m", "alembic", *args], cwd=project, capture_output=True, text=True,
                              timeout=1800)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return time.perf_counter() - t0


def bench(dialect: str, n: int, repeat: int) -> list[str]:
    rows = []
    sys.path.insert(0, str(ROOT))
    from migration_lsp import scratchdb

    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        work = Path(tempfile.mkdtemp(prefix="truth-speed-"))
        try:
            if dialect == "postgresql":
                cluster = scratchdb.cluster()
                scratch = scratchdb.open_scratch("postgresql")
                url = scratch.url.replace("postgresql://", "postgresql+psycopg://")
            else:
                scratch, url = None, f"sqlite:///{work / 'alembic.db'}"
            project = work / "project"
            generate(project, n, url)
            times.setdefault("alembic upgrade head + alembic check", []).append(alembic(project))
            if scratch is not None:
                scratch.close()
            for downs in (False, True):
                cache = work / f"cache-{int(downs)}"
                label = "downgrades" if downs else "no downgrades"
                first = measure(project, cache, downs, edit=True)
                times.setdefault(f"truth pass, cold ({label})", []).append(first["cold"])
                times.setdefault(f"re-run after editing the head ({label})", []).append(first["rerun"])
                times.setdefault(f"  of which the truth pass alone (Verifier.run, not the static snapshot) ({label})",
                                 []).append(first["rerun"] - first["rerun_static"])
                shutil.rmtree(cache / "truth-snapshots", ignore_errors=True)
                head = sorted((project / "migrations" / "versions").glob("*.py"))[-1]
                head.write_text(head.read_text().replace("\n# edited\n", ""))
                warm = measure(project, cache, downs, edit=False)
                times.setdefault(f"truth pass, cold, bytecode cached ({label})", []).append(warm["cold"])
                if dialect == "postgresql":  # a cache folder with only the pristine data folder (no initdb)
                    pristine = work / f"cache-{int(downs)}-pristine"
                    shutil.copytree(cache / "pg-pristine", pristine / "pg-pristine")
                    seeded = measure(project, pristine, downs, edit=False)
                    times.setdefault(f"truth pass, cold, only the pristine data folder cached ({label})",
                                     []).append(seeded["cold"])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if dialect == "postgresql":
        scratchdb.close_all()
    base = statistics.median(times["alembic upgrade head + alembic check"])
    for label, values in times.items():
        med = statistics.median(values)
        ratio = "" if label.startswith(("re-run", "  of which")) else f"{med / base:.2f}x"
        rows.append(f"| {dialect} | {n} | {label} | {med:.2f} s | {ratio} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--revisions", type=int, default=100)
    ap.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--downgrades", default="0", help=argparse.SUPPRESS)
    ap.add_argument("--edit", default="0", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(Path(args.one), args.downgrades == "1", args.edit == "1")))
        return 0
    rows = ["| dialect | revisions | run | wall time (median) | vs alembic |", "|---|---|---|---|---|"]
    for dialect in (("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)):
        rows += bench(dialect, args.revisions, args.repeat)
        print("\n".join(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
