"""Ground truth with real Alembic, run with the PROJECT's interpreter (its own venv).

argv[1] is a JSON job: {"ini": path, "url": scratch database URL, "env": {VAR: value},
"main_options": {...}, "x": ["k=v"], "url_option": "sqlalchemy.url", "setup": python code}.
It runs `alembic upgrade head` the way the project's env.py does it (the URL redirected to the
scratch database), then runs env.py once more under Alembic's EnvironmentContext with a
migrations function that, instead of migrating, calls
`compare_metadata(context, context.opts["target_metadata"])` on the configured
MigrationContext: the env's own include_object / include_name / compare_type /
compare_server_default apply, exactly as in `alembic check`. `context.configure` is wrapped to
record which options env.py passed. Prints one JSON object on the last stdout line.
"""

import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from normalize import from_alembic  # noqa: E402


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__


def main() -> None:
    job = json.loads(sys.argv[1])
    if job.get("anyio_thread"):  # env.py expects to run in a worker thread of an event loop
        import anyio
        import anyio.to_thread

        anyio.run(anyio.to_thread.run_sync, lambda: work(job))
    else:
        work(job)


def work(job: dict) -> None:
    scratch_url = job["url"]
    if job.get("driver", {}).get(job.get("dialect")):  # the project's own driver (e.g. an async one)
        from sqlalchemy.engine import make_url

        job["url"] = make_url(job["url"]).set(drivername=job["driver"][job["dialect"]]) \
            .render_as_string(hide_password=False)
    os.environ.update({k: v.replace("{url}", job["url"]).replace("{tmp}", job["tmp"])
                       for k, v in job.get("env", {}).items()})
    os.chdir(job.get("cwd") or os.path.dirname(job["ini"]))
    if job.get("setup"):
        exec(compile(job["setup"], "<corpus setup>", "exec"), {"job": job})

    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    def config() -> Config:
        cfg = Config(job["ini"], ini_section=job.get("section", "alembic"), cmd_opts=None)
        for k, v in job.get("main_options", {}).items():
            cfg.set_main_option(k, v)
        cfg.set_main_option(job.get("url_option", "sqlalchemy.url"), job["url"].replace("%", "%%"))
        if job.get("connection_attribute"):  # env.py uses config.attributes["connection"]
            cfg.attributes["connection"] = shared_connection()
        if job.get("x"):
            import argparse
            cfg.cmd_opts = argparse.Namespace(x=job["x"])
        return cfg

    connections: list = []

    def shared_connection():
        import sqlalchemy as sa

        if not connections:
            connections.append(sa.create_engine(scratch_url).connect())
        return connections[0]

    out: dict = {"ok": False}
    if job.get("pg_admin_url"):  # a fresh database on the harness's throwaway cluster
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        admin = sa.create_engine(job["pg_admin_url"], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{make_url(scratch_url).database}"')
        admin.dispose()
    if job.get("bootstrap"):  # what the project does to a new database before upgrading it
        try:
            exec(compile(job["bootstrap"], "<corpus bootstrap>", "exec"), {"job": job, "url": scratch_url})
        except BaseException as exc:  # noqa: BLE001
            out.update(stage="bootstrap", error=_short(exc), traceback=traceback.format_exc()[-3000:])
            print(json.dumps(out))
            return
    t0 = time.perf_counter()
    try:
        command.upgrade(config(), "head")
    except BaseException as exc:  # noqa: BLE001 - any failure is a result here
        out.update(stage="upgrade", error=_short(exc), traceback=traceback.format_exc()[-3000:])
        print(json.dumps(out))
        return
    out["upgrade_secs"] = time.perf_counter() - t0

    recorded: dict = {}
    original = EnvironmentContext.configure

    def configure(self, *args, **kwargs):
        recorded.update({k: (v.__name__ if callable(v) and hasattr(v, "__name__") else type(v).__name__
                             if not isinstance(v, (bool, str, int, type(None))) else v)
                         for k, v in kwargs.items() if k not in ("connection", "url")})
        return original(self, *args, **kwargs)

    EnvironmentContext.configure = configure
    diffs: list = []

    def compare(rev, context):
        metadata = context.opts.get("target_metadata")
        out["tables_in_models"] = sorted(
            {t for md in (metadata if isinstance(metadata, (list, tuple)) else [metadata]) if md is not None
             for t in md.tables})
        out["head_matches"] = set(context.get_current_heads()) == set(script.get_heads())
        diffs.extend(compare_metadata(context, metadata))
        return []

    t1 = time.perf_counter()
    try:
        cfg = config()
        script = ScriptDirectory.from_config(cfg)
        with EnvironmentContext(cfg, script, fn=compare, as_sql=False):
            script.run_env()
    except BaseException as exc:  # noqa: BLE001
        out.update(stage="compare", error=_short(exc), traceback=traceback.format_exc()[-3000:])
        print(json.dumps(out))
        return
    finally:
        EnvironmentContext.configure = original
    out["compare_secs"] = time.perf_counter() - t1
    items = []
    for d in diffs:
        items.extend(from_alembic(d))
    out.update(ok=True, configure=recorded, items=sorted(set(items)), raw=[repr(d)[:300] for d in diffs])
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
