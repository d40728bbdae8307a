"""Runs in the trusted child with the PROJECT's interpreter (started through child.py):
the project's migrations on the scratch database, as Alembic runs them, then `alembic
check`. Standard library, SQLAlchemy and Alembic only (the project has them).

What it does, in order:
1. The network: a new network namespace when it can (no TCP/UDP at all, a unix socket
   still works), and in any case Python's sockets may connect only to the scratch
   database (its socket folder, or its host:port for --database-url). An env.py with a
   hard-coded production URL must never reach that server.
2. Every engine the project creates (create_engine, engine_from_config,
   create_async_engine, at import time too) is redirected to the scratch database, with
   the project's own driver when it names one; `config.attributes["connection"]` is a
   connection to it, handed in as the Alembic cookbook does.
3. `alembic upgrade <rev>` one revision at a time (ancestors first): success, or the error
   (its first line), and the SQL it emitted. The first failure stops the run.
4. At head, `alembic check` itself (command.check): its list of differences, item for
   item, each described for locating; plus the options env.py passed to
   context.configure.

usage: python child.py truth_child.py '<json job>' (see truth.py), or `--wait` and the
job as one line on stdin (a spare, warmed up before there is a job); result: JSON in the
file named by $MIGRATION_LSP_RESULT.
"""

import functools
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

T0 = time.perf_counter()
# child.py, which started this script, loads the files next to it (imported as part of the
# package instead, in tests: the package's child.py, the same function)
sibling = (sys.modules.get("migration_lsp_child") or importlib.import_module("migration_lsp.child")).sibling

MAX_SQL = 200  # statements kept per revision
MAX_SQL_TEXT = 2000


def short(exc):
    text = f"{type(exc).__name__}: {exc}".strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:400]


# --------------------------------------------------------------------------- 1. the network


def isolate_network():
    """A network namespace of our own: only a down loopback, so no TCP or UDP leaves this
    process (or its children, libpq included); pathname unix sockets still work."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        clone_newnet, clone_newuser = 0x40000000, 0x10000000
        if libc.unshare(clone_newnet) == 0:
            return "namespace"
        if libc.unshare(clone_newuser | clone_newnet) == 0:
            return "user+namespace"
    except (OSError, AttributeError):  # no libc to load; a libc without unshare()
        pass
    return "python"


def guard_sockets(allow_unix, allow_tcp):
    """Python's sockets connect only where the scratch database is."""
    import socket

    folders = [os.path.realpath(p) for p in allow_unix]
    allowed = set()
    for host, port in allow_tcp:
        try:
            for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP):
                allowed.add((info[4][0], port))
        except OSError:
            pass
        allowed.add((host, port))

    def permitted(sock, address):
        family = getattr(sock, "family", None)
        if family == getattr(socket, "AF_UNIX", None):
            if isinstance(address, bytes):
                address = address.decode("utf-8", "replace")
            if not isinstance(address, str) or address.startswith("\0"):
                return False
            path = os.path.realpath(address)
            return any(path == f or path.startswith(f + os.sep) for f in folders)
        if isinstance(address, tuple) and len(address) >= 2:
            return (address[0], address[1]) in allowed
        return False

    def refuse(address):
        raise ConnectionRefusedError(f"migration-lsp truth pass: network access blocked ({address!r}): "
                                     "only the scratch database may be reached")

    original_connect, original_connect_ex, original_sendto = (
        socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto)

    def connect(self, address):
        if not permitted(self, address):
            refuse(address)
        return original_connect(self, address)

    def connect_ex(self, address):
        if not permitted(self, address):
            refuse(address)
        return original_connect_ex(self, address)

    def sendto(self, data, *args):
        address = args[-1]
        if not permitted(self, address):
            refuse(address)
        return original_sendto(self, data, *args)

    # (replacing the methods is the point: every socket of the process goes through them)
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign]


# --------------------------------------------------------------------------- 2. the engines


ASYNC_DRIVERS = {"postgresql": (("asyncpg", "postgresql+asyncpg"), ("psycopg", "postgresql+psycopg_async")),
                 "sqlite": (("aiosqlite", "sqlite+aiosqlite"),),
                 "mysql": (("aiomysql", "mysql+aiomysql"), ("asyncmy", "mysql+asyncmy"))}


def with_driver(url, drivername):
    """The scratch URL with the project's driver (a unix socket said the driver's way)."""
    url = url.set(drivername=drivername)
    if drivername.endswith("+pg8000") and "host" in url.query:
        folder = url.query["host"]
        url = url.difference_update_query(["host"]).update_query_dict(
            {"unix_sock": os.path.join(folder, ".s.PGSQL.5432")})
    return url


def default_driver(scratch):
    """A synchronous driver the project has, for the connection we hand in."""
    if scratch.get_backend_name() != "postgresql" or "+" in scratch.drivername:
        return scratch
    import importlib.util

    for module, name in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg"),
                         ("pg8000", "postgresql+pg8000")):
        if importlib.util.find_spec(module) is not None:
            return with_driver(scratch, name)
    return scratch


OTHER_BACKENDS: set = set()  # the backends of the URLs env.py asked engines for, other than the scratch one


def redirect_engines(scratch, statements):
    """Every engine made from now on points at the scratch database; what any of them
    executes is recorded (`statements`, the current revision's list)."""
    import sqlalchemy
    import sqlalchemy.engine
    import sqlalchemy.engine.create
    from sqlalchemy import event
    from sqlalchemy.engine import Engine, make_url

    original = sqlalchemy.engine.create.create_engine

    def target(url, is_async):
        try:
            asked = make_url(url)
        except Exception:  # noqa: BLE001 - whatever the project passes to create_engine: not a URL we can read
            asked = None
        if asked is not None and asked.get_backend_name() != scratch.get_backend_name():
            OTHER_BACKENDS.add(asked.get_backend_name())  # (see other_history)
        if asked is not None and asked.get_backend_name() == scratch.get_backend_name() \
                and asked.drivername != scratch.drivername and "+" in asked.drivername:
            return with_driver(scratch, asked.drivername)
        if is_async:  # an async engine for another backend: the scratch backend's async driver
            import importlib.util

            for module, name in ASYNC_DRIVERS.get(scratch.get_backend_name(), ()):
                if importlib.util.find_spec(module) is not None:
                    return with_driver(scratch, name)
        return default_driver(scratch)

    def create_engine(url, *args, **kw):
        kw.pop("creator", None)  # would connect somewhere else
        kw.pop("async_creator", None)
        if scratch.get_backend_name() != "sqlite":
            kw.pop("connect_args", None)  # sslmode, hosts...: the scratch server's are its URL's
        return original(target(url, kw.get("_is_async")), *args, **kw)

    sqlalchemy.create_engine = create_engine
    sqlalchemy.engine.create_engine = create_engine
    sqlalchemy.engine.create.create_engine = create_engine
    try:
        import sqlalchemy.ext.asyncio.engine as async_engine

        async_engine._create_engine = create_engine
    except ImportError:  # no greenlet: no async engines either
        pass

    @event.listens_for(Engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        if len(statements) < MAX_SQL:
            statements.append(str(statement)[:MAX_SQL_TEXT])

    return original


def unsynced(scratch):
    """SQLite: no fsync at each commit on the scratch file (`PRAGMA synchronous=OFF`), as
    the embedded PostgreSQL cluster runs with fsync off: the file is thrown away, and the
    pass commits after every step (each revision up, down and up again), where `alembic
    upgrade head` commits once. Nothing the migrations or the comparisons see changes."""
    if scratch.get_backend_name() != "sqlite":
        return
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    @event.listens_for(Pool, "connect")
    def no_fsync(dbapi_connection, record):
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.close()
        except Exception:  # noqa: BLE001, S110 - a driver that refuses the pragma: the default (slower) is fine
            pass


# --------------------------------------------------------------------------- 3, 4. Alembic


def describe(item):
    """One item of `alembic check`'s list as data: what, where (table, column, name)."""
    if isinstance(item, list):  # the modify_* changes of one column
        first = item[0]
        return {"kind": "modify_column", "schema": first[1], "table": first[2], "column": first[3],
                "changes": [{"kind": c[0], "old": _text(c[-2]), "new": _text(c[-1])} for c in item],
                "repr": repr(item)[:1000]}
    kind = item[0] if isinstance(item, tuple) and item and isinstance(item[0], str) else "unknown"
    out: dict[str, object] = {"kind": kind, "repr": repr(item)[:1000]}
    obj = item[1] if len(item) > 1 else None
    if kind in ("add_column", "remove_column"):
        out.update(schema=item[1], table=item[2], column=item[3].name)
    elif kind.startswith("modify_"):
        out.update(schema=item[1], table=item[2], column=item[3] if len(item) > 3 else None,
                   changes=[{"kind": kind, "old": _text(item[-2]), "new": _text(item[-1])}])
    elif obj is not None and type(obj).__name__ == "Table":
        out.update(schema=obj.schema, table=obj.name)
    elif obj is not None and hasattr(obj, "table"):
        table = obj.table
        columns = [getattr(c, "name", str(c)) for c in getattr(obj, "expressions", None) or obj.columns]
        out.update(schema=getattr(table, "schema", None), table=getattr(table, "name", None),
                   name=obj.name if isinstance(obj.name, str) else None, columns=columns,
                   unique=bool(getattr(obj, "unique", False)), object=type(obj).__name__)
    return out


def _text(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return repr(value)[:200]
    except Exception:  # noqa: BLE001 - a project object's __repr__ may raise anything
        return type(value).__name__


def warm_up():
    """A spare child (`--wait`, truth.Spares): the libraries every pass imports, imported
    before there is a job (the project's interpreter's own: no workspace code, the
    project's folders are not on sys.path yet)."""
    import importlib

    for name in ("logging.config", "sqlalchemy", "sqlalchemy.engine", "sqlalchemy.engine.create", "sqlalchemy.pool",
                 "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql", "alembic.command", "alembic.config",
                 "alembic.script", "alembic.runtime.environment", "alembic.runtime.migration",
                 "alembic.autogenerate", "alembic.operations", "sqlite3", "sqlalchemy.ext.asyncio",
                 "psycopg2", "psycopg", "sqlalchemy.dialects.postgresql.psycopg2",
                 "sqlalchemy.dialects.postgresql.psycopg"):
        try:
            importlib.import_module(name)
        except ImportError:  # (an old or partial install: the pass says what is missing)
            pass


def main():
    if sys.argv[1:] == ["--wait"]:
        warm_up()
        line = sys.stdin.readline()
        if not line.strip():  # not needed after all: no result
            return
        job = json.loads(line)
        global T0
        T0 = time.perf_counter()  # (the timings: from the job on)
    else:
        job = json.loads(sys.argv[1])
    # the JSON document the parent reads (truth.py): values of any JSON shape
    result: dict[str, Any] = {"network": None, "steps": [], "compare": None, "error": None, "configure": {}, "timings": {}}
    try:
        result["network"] = isolate_network() if job.get("isolate_network") else "python"
        guard_sockets(job.get("allow_unix", []), [tuple(x) for x in job.get("allow_tcp", [])])
        result["timings"]["network"] = time.perf_counter() - T0
        work(job, result)
    except BaseException as exc:  # noqa: BLE001 - the child's boundary: report, never a traceback into the editor
        result["error"] = short(exc)
        result["traceback"] = traceback.format_exc()[-2000:]
    with open(os.environ["MIGRATION_LSP_RESULT"], "w", encoding="utf-8") as fh:
        json.dump(result, fh, default=str)
    # the result is written: no interpreter teardown (freeing SQLAlchemy's, Alembic's and
    # the project's modules took 0.3-0.6 s here: a third of a re-run after a save). The
    # scratch database is the parent's to drop (PostgreSQL: WITH (FORCE)), our file copies
    # are gone (Reflector.close), and the project's atexit hooks are not ours to run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def model_child():
    """model_child.py: what both children do alike (Alembic's private names checked, where the
    workspace goes on sys.path, an env.py that runs only in an AnyIO worker thread), loaded
    by child.py's one loader (child.sibling)."""
    return sibling("model_child")


def work(job, result):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scratch = make_url(job["url"])
    statements: list[str] = []
    original_create_engine = redirect_engines(scratch, statements)
    unsynced(scratch)
    # Alembic and what it imports (argparse, logging.config...) loaded before the project's
    # folders go on sys.path, as the `alembic` command has them: a workspace `argparse.py`
    # shadows nothing Alembic uses
    import logging.config  # noqa: F401

    import alembic.command
    import alembic.config
    import alembic.script  # noqa: F401 (loaded first, as above)
    if job.get("pycache"):
        # the project's modules compiled once, into the user's cache folder (never into the
        # workspace): compiling env.py, the models and the revisions on every pass is time
        sys.pycache_prefix = job["pycache"]
        sys.dont_write_bytecode = False
    # Alembic's private names, checked against the project's Alembic (before the project's
    # folders are on sys.path): a clear answer, not an upgrade that "fails" on every revision
    shared = model_child()
    shared.alembic_api()
    sys.path[:0] = job.get("sys_path", [])
    shared.place_workspace(job.get("sys_path_after", []))  # the checkout before a copy installed in the venv
    os.chdir(job["cwd"])

    from alembic import command
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    recorded = result["configure"]
    configure = EnvironmentContext.configure

    def recording_configure(self, *args, **kwargs):
        recorded.update({k: (getattr(v, "__name__", type(v).__name__) if callable(v) else
                             v if isinstance(v, (bool, str, int, type(None))) else type(v).__name__)
                         for k, v in kwargs.items() if k not in ("connection", "url")})
        # one commit per revision, as `alembic upgrade REV` one at a time (the pass's work
        # between two revisions needs the first committed)
        kwargs["transaction_per_migration"] = True
        # env.py has chosen its history by now (prefect, before it connects): another one than
        # the environment's makes the run, or `alembic check` at head (every revision from a
        # snapshot: no upgrade ran env.py first), say nothing about this environment
        other = other_history(job, getattr(self, "script", None))
        if other is not None:
            result["not_verified"] = other
        return configure(self, *args, **kwargs)

    EnvironmentContext.configure = recording_configure  # type: ignore[method-assign]  # (recording is the point)

    if job.get("toml"):
        cfg = Config(file_=job.get("ini"), toml_file=job["toml"], ini_section=job.get("section") or "alembic")
    else:
        cfg = Config(job["ini"], ini_section=job.get("section") or "alembic")
    if job.get("script_location"):  # resolved by us (a relative one is relative to where Alembic runs)
        cfg.set_main_option("script_location", job["script_location"])
    own = cfg.get_main_option("sqlalchemy.url") if job.get("ini") else None
    try:
        asked = make_url(own) if own else None
    except (ArgumentError, ValueError):  # unparseable; a port that is not a number
        asked = None
    main_url = with_driver(scratch, asked.drivername) if asked is not None and "+" in asked.drivername \
        and asked.get_backend_name() == scratch.get_backend_name() else default_driver(scratch)
    cfg.set_main_option("sqlalchemy.url", main_url.render_as_string(hide_password=False).replace("%", "%%"))
    connection = None
    sync_url = default_driver(scratch)
    if not sync_url.drivername.endswith(("+asyncpg", "+aiosqlite", "+psycopg_async", "+aiomysql", "+asyncmy")):
        try:
            engine = original_create_engine(sync_url)
            engine._connection_cls = shared_connection_class()
            connection = engine.connect()
            cfg.attributes["connection"] = connection
        except Exception as exc:  # noqa: BLE001 - the driver's error is a result (env.py may connect itself)
            result["connection_error"] = short(exc)

    result["timings"]["configured"] = time.perf_counter() - T0
    if job.get("version_locations"):  # one dialect's history of the config's versions folder
        set_version_locations(cfg, job["version_locations"])
    script = ScriptDirectory.from_config(cfg)
    order = [r.revision for r in reversed(list(script.walk_revisions("base", "heads")))]
    result["timings"]["revisions read"] = time.perf_counter() - T0
    wanted = job.get("revisions")
    if wanted is not None:
        order = [r for r in order if r in set(wanted)]
    if job.get("initial_metadata"):
        try:
            create_initial(job["initial_metadata"], shared, original_create_engine, sync_url)
        except BaseException as exc:  # noqa: BLE001 - the setting's module may raise anything: a result
            result["initial_metadata_error"] = short(exc)
            result["traceback"] = traceback.format_exc()[-2000:]
            return
        result["timings"]["initial metadata"] = time.perf_counter() - T0
    reflect = Reflector(original_create_engine, sync_url, recorded)
    try:
        run = Run(job, cfg, script, order, result, statements, reflect, connection)
        if run.all() and job.get("compare"):
            result["timings"]["migrated"] = time.perf_counter() - T0
            compare(functools.partial(command.check, cfg), result, shared, run.worker_thread)
    finally:
        reflect.close()
    result["timings"]["reflecting"] = reflect.secs
    result["timings"]["reflections"] = reflect.reflected
    result["timings"]["fingerprints"] = reflect.marks
    result["timings"]["done"] = time.perf_counter() - T0


def create_initial(spec, shared, create_engine, url):
    """The `initial-metadata` setting: its tables created on the empty scratch database before
    the first revision, as the project does to a new database before `alembic upgrade head`
    (mlflow: `InitialBase.metadata.create_all(engine)`, then the upgrade). `spec` is
    `module:attr`, a MetaData, a declarative Base (its .metadata) or a Table."""
    from sqlalchemy import MetaData, Table, pool

    obj = shared.resolve(spec)
    if not isinstance(obj, (MetaData, Table)) and isinstance(getattr(obj, "metadata", None), MetaData):
        obj = obj.metadata
    if not isinstance(obj, (MetaData, Table)):
        raise TypeError(f"{spec} is a {type(obj).__name__}, not a MetaData, a declarative Base or a Table")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            if isinstance(obj, Table):
                obj.create(conn, checkfirst=True)
            else:
                obj.create_all(conn)
    finally:
        engine.dispose()


def other_history(job, script):
    """env.py chose another history than the environment's (prefect sets
    `context.script.version_locations` by the dialect of its own settings' URL): why the run
    says nothing about this environment, else None."""
    own = job.get("version_locations")
    if not own or script is None:
        return None
    chosen = [str(p) for p in script.version_locations or ()]
    if {os.path.realpath(p) for p in chosen} == {os.path.realpath(p) for p in own}:
        if OTHER_BACKENDS:  # (prefect makes its engine first, and fails on it, before it chooses)
            return (f"env.py made its engine for {', '.join(sorted(OTHER_BACKENDS))} (by its own settings, e.g. an "
                    "environment variable naming the database), not for this environment's history")
        return None

    def shown(paths):
        return ", ".join(os.path.relpath(p, script.dir) for p in paths) or "(none)"

    return (f"env.py chose the history in {shown(chosen)}, not this environment's {shown(own)} (it picks "
            "one by its own settings, e.g. an environment variable naming the database)")


def set_version_locations(cfg, locations):
    """The environment's version locations (prefect: `versions/sqlite`, one history of
    several that env.py chooses between by dialect) as the config's own, so that every
    ScriptDirectory Alembic makes from it (ours, `alembic check`'s) walks that history.
    Joined with the separator Alembic will split them on (path_separator, or the older
    version_path_separator); a config that has neither gets `os` only when the legacy
    split on spaces and commas would cut a path."""
    seps = {"space": " ", "newline": "\n", "os": os.pathsep, ":": ":", ";": ";"}
    names = ("path_separator", "version_path_separator") if hasattr(cfg, "get_version_locations_list") \
        else ("version_path_separator",)  # (Alembic before 1.16)
    sep = next((seps.get(cfg.get_main_option(n)) for n in names if cfg.get_main_option(n) is not None), None)
    if sep is None:
        if any(" " in p or "," in p for p in locations):
            cfg.set_main_option(names[0], "os")
            sep = os.pathsep
        else:
            sep = " "
    cfg.set_main_option("version_locations", sep.join(locations).replace("%", "%%"))


# One query whose answer changes whenever anything the reflection below reads changes (it
# reads more: defaults, check constraints, sequences, views, domains): equal answers, equal
# reflections. Like the reflection, it leaves out Alembic's version table ({version}: its
# name, a SQL string literal), which the first upgrade creates.
FINGERPRINT = {
    "sqlite": "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name <> {version} ORDER BY type, name",
    "postgresql": """
WITH cls AS MATERIALIZED (  -- (the relations first: pg_attribute read by their oids, not scanned)
  SELECT c.oid, n.nspname || '.' || c.relname || ':' || c.relkind::text AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND left(n.nspname, 8) <> 'pg_toast'
    AND c.relkind NOT IN ('i', 'I') AND c.relname <> {version})
SELECT md5(coalesce(string_agg(item, '|' ORDER BY item), '')) FROM (
  SELECT cls.name || ':' || coalesce(a.attname, '') || ':' || coalesce(format_type(a.atttypid, a.atttypmod), '')
         || ':' || coalesce(a.attnotnull::text, '') || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS item
  FROM cls LEFT JOIN LATERAL (
    SELECT * FROM pg_attribute a WHERE a.attrelid = cls.oid AND a.attnum > 0 AND NOT a.attisdropped) a ON true
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  UNION ALL
  SELECT 'con:' || conrelid::regclass::text || ':' || conname || ':' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace NOT IN (
    SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))
    AND conrelid NOT IN (SELECT oid FROM pg_class WHERE relname = {version})
  UNION ALL
  SELECT 'idx:' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN cls ON cls.oid = i.indrelid
  UNION ALL
  SELECT 'enum:' || t.typname || ':' || e.enumlabel || ':' || e.enumsortorder::text
  FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
  UNION ALL
  SELECT 'domain:' || t.typname || ':' || format_type(t.typbasetype, t.typtypmod) || ':' || t.typnotnull::text
  FROM pg_type t WHERE t.typtype = 'd' AND t.typnamespace NOT IN (
    SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))
) items""",
}


class Reflector:
    """The schema as the database has it, as comparable data (for the downgrade checks).

    Reflecting every table is most of a pass with downgrades (0.2 s a schema on PostgreSQL),
    and a healthy downgrade needs none: the schema's *mark* (a one-query fingerprint of the
    catalog, `FINGERPRINT`) after the downgrade equals the one before the upgrade, and equal
    fingerprints are equal reflections. Only a mark that differs is explained by reflecting
    (`explain`): the database now, and the states it has left from a file copy with that
    mark (SQLite: the copies the downgrade check makes anyway); a state with no copy left
    (PostgreSQL) is "unexplained" and truth.py runs the pass again reflecting eagerly around
    that revision (`eager`). A dialect without a fingerprint query is reflected every time."""

    KEEP = 4  # reflections remembered (by fingerprint)
    SOURCES = 3  # SQLite file copies kept to reflect a state the database has left

    def __init__(self, create_engine, url, configure):
        self.create_engine, self.url, self.configure = create_engine, url, configure
        self.secs = 0.0  # spent reflecting (the timings)
        self.known: dict = {}  # fingerprint -> reflection
        self.reflected = 0  # full reflections (the timings)
        self.marks = 0  # fingerprint queries (the timings)
        self.sources: dict = {}  # fingerprint -> a SQLite file copy with that schema
        self.unkeyed: list = []  # copies made where the fingerprint query failed
        self.eager = False  # reflect each mark at once (a run that must explain a mismatch: truth.py)
        self.copies = 0
        self.engine = None  # one engine (its dialect set up once), no pool
        self.conn = None  # (a server's) the connection of the catalog queries

    def fingerprint(self, conn):
        query = FINGERPRINT.get(conn.dialect.name)
        if query is None:
            return None
        version = self.configure.get("version_table")
        version = version if isinstance(version, str) else "alembic_version"
        query = query.replace("{version}", "'" + version.replace("'", "''") + "'")
        self.marks += 1
        try:
            return tuple(tuple(row) for row in conn.exec_driver_sql(query).fetchall())
        except Exception:  # noqa: BLE001 - a server that refuses the catalog query: reflect in full
            conn.rollback()
            return None

    def heads(self):
        """The revisions the version table holds (where env.py's configure says it is)."""
        from alembic.runtime.migration import MigrationContext
        from sqlalchemy import pool

        engine = self.create_engine(self.url, poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                opts = {k: self.configure[k] for k in ("version_table", "version_table_schema")
                        if isinstance(self.configure.get(k), str)}
                return set(MigrationContext.configure(conn, opts=opts).get_current_heads())
        except Exception:  # noqa: BLE001 - no version table where env.py said, a driver's error: no heads
            return set()
        finally:
            engine.dispose()

    def backup(self):
        """A copy of the SQLite file (None for a server database)."""
        if self.url.get_backend_name() != "sqlite" or not self.url.database:
            return None
        import shutil

        self.copies += 1
        copy = f"{self.url.database}.down-check-{self.copies}"
        if self.wal():
            sqlite_backup(self.url.database, copy)
        else:
            shutil.copyfile(self.url.database, copy)
        return copy

    def wal(self):
        """The database is in WAL mode (prefect): what was committed may be in the -wal file,
        and a file written in place under it would not be the database SQLite reads."""
        return os.path.exists(self.url.database + "-wal")

    def restore(self, backup):
        """The file as it was, written in place (open connections keep working); True if done.
        In WAL mode through SQLite's backup API, which needs the write lock: not done while
        the project holds it (its own transaction around the migrations: the caller goes on
        without the restore)."""
        if backup is None:
            return False
        import shutil
        import sqlite3

        if self.wal():
            try:
                sqlite_backup(backup, self.url.database, timeout=1.0)
            except sqlite3.OperationalError:  # database is locked
                return False
            return True
        shutil.copyfile(backup, self.url.database)
        return True

    def discard(self, backup):
        if backup is not None:
            for path in (backup, backup + "-wal", backup + "-shm", backup + "-journal"):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def keep(self, mark, backup):
        """`backup` (a file copy) has the schema `mark`: the Reflector owns it from now on."""
        if backup is None:
            return
        if isinstance(mark, dict):  # (no fingerprint to find it by: removed at the end)
            self.unkeyed.append(backup)
            return
        old = self.sources.pop(mark, None)
        if old is not None and old != backup:
            self.discard(old)
        self.sources[mark] = backup
        while len(self.sources) > self.SOURCES:
            self.discard(self.sources.pop(next(iter(self.sources))))

    def close(self):
        self.release()
        for path in [*self.sources.values(), *self.unkeyed]:
            self.discard(path)
        self.sources.clear()
        self.unkeyed.clear()
        if self.engine is not None:
            self.engine.dispose()

    def mark(self, copy=False):
        """The schema now: its fingerprint (one catalog query), or its reflection where the
        dialect has no fingerprint query. `copy`: keep a file copy to explain it later (SQLite)."""
        t0 = time.perf_counter()
        try:
            mark = self._now(self.eager)
        finally:
            self.secs += time.perf_counter() - t0
        if copy and not isinstance(mark, dict) and mark not in self.sources:
            self.keep(mark, self.backup())
        return mark

    def explain_now(self, mark):
        """The reflection of the schema now (whose mark is `mark`)."""
        if isinstance(mark, dict):
            return mark
        if mark not in self.known:
            t0 = time.perf_counter()
            try:
                now = self._now(True)
            finally:
                self.secs += time.perf_counter() - t0
            if now != mark:  # (the caller's mark is of the schema now: never)
                return self.known.get(now) if not isinstance(now, dict) else now
        return dict(self.known[mark])

    def explain(self, mark):
        """The reflection of a schema the database had, by its mark: remembered, or read from
        a file copy that has it; None when neither is left (then the caller cannot say)."""
        if isinstance(mark, dict):
            return mark
        if mark in self.known:
            return dict(self.known[mark])
        path = self.sources.get(mark)
        if path is None or not os.path.exists(path):
            return None
        t0 = time.perf_counter()
        try:
            return self._now(True, self.url.set(database=path), expect=mark)
        finally:
            self.secs += time.perf_counter() - t0

    def _now(self, reflect, url=None, expect=None):
        from sqlalchemy import pool

        if url is not None:  # a file copy
            engine = self.create_engine(url, poolclass=pool.NullPool)
            try:
                with engine.connect() as conn:
                    return self._read(conn, reflect, expect)
            finally:
                engine.dispose()
        if self.engine is None:
            self.engine = self.create_engine(self.url, poolclass=pool.NullPool)
        if self.url.get_backend_name() == "sqlite":  # (a connection is cheap; the file may be restored in place)
            with self.engine.connect() as conn:
                return self._read(conn, reflect, expect)
        # a server: one connection for the pass's catalog queries (a new one costs more than
        # the query), in no transaction between them
        if self.conn is None:  # (autocommit: no BEGIN and ROLLBACK around each query)
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            out = self._read(self.conn, reflect, expect)
            self.conn.rollback()
            return out
        except BaseException:
            self.release()
            raise

    def release(self):
        """No connection of ours left open (a PostgreSQL template needs none to the database)."""
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001, S110 - a broken connection: closed is what we wanted
                pass
            self.conn = None

    def _read(self, conn, reflect, expect):
        mark = self.fingerprint(conn)
        if expect is not None and mark != expect:
            return None
        if mark is None:
            self.reflected += 1
            return self._full(conn)
        if reflect and mark not in self.known:
            self.reflected += 1
            self.known[mark] = self._full(conn)
            while len(self.known) > self.KEEP:
                self.known.pop(next(iter(self.known)))
        if expect is not None:
            return dict(self.known[mark])
        return mark

    def _full(self, conn):
        from sqlalchemy import inspect

        insp = inspect(conn)
        version_table = self.configure.get("version_table") or "alembic_version"
        if conn.dialect.name == "postgresql" and hasattr(insp, "get_multi_columns"):
            return self._multi(insp, version_table)  # a few queries in all, not a few per table
        out = {}
        for table in insp.get_table_names():
            if table == version_table:
                continue
            out[f"table {table}"] = "table"
            for c in insp.get_columns(table):
                out[f"column {table}.{c['name']}"] = f"{c['type']!s} {'NULL' if c['nullable'] else 'NOT NULL'}"
            for i in insp.get_indexes(table):
                out[f"index {i['name']} on {table}"] = f"{i.get('column_names')} unique={i.get('unique')}"
            for u in insp.get_unique_constraints(table):
                out[f"unique constraint {u['name'] or u['column_names']} on {table}"] = str(u["column_names"])
            for f in insp.get_foreign_keys(table):
                out[f"foreign key {f['name'] or f['constrained_columns']} on {table}"] = \
                    f"{f['constrained_columns']} -> {f['referred_table']}{f['referred_columns']}"
        if conn.dialect.name == "postgresql":
            for e in insp.get_enums(schema="*") if hasattr(insp, "get_enums") else []:
                out[f"enum {e['name']}"] = str(e["labels"])
        return out


    def _multi(self, insp, version_table):
        """The same as _full, by SQLAlchemy 2's one-query-per-kind reflection."""
        out = {}
        columns = insp.get_multi_columns()
        indexes, uniques, fks = insp.get_multi_indexes(), insp.get_multi_unique_constraints(), \
            insp.get_multi_foreign_keys()
        for key in sorted(columns, key=lambda k: (k[0] or "", k[1])):
            table = key[1]
            if table == version_table:
                continue
            out[f"table {table}"] = "table"
            for c in columns[key]:
                out[f"column {table}.{c['name']}"] = f"{c['type']!s} {'NULL' if c['nullable'] else 'NOT NULL'}"
            for i in indexes.get(key, ()):
                out[f"index {i['name']} on {table}"] = f"{i.get('column_names')} unique={i.get('unique')}"
            for u in uniques.get(key, ()):
                out[f"unique constraint {u['name'] or u['column_names']} on {table}"] = str(u["column_names"])
            for f in fks.get(key, ()):
                out[f"foreign key {f['name'] or f['constrained_columns']} on {table}"] = \
                    f"{f['constrained_columns']} -> {f['referred_table']}{f['referred_columns']}"
        for e in insp.get_enums(schema="*"):
            out[f"enum {e['name']}"] = str(e["labels"])
        return out


class Run:
    """The pass's revisions upgraded one at a time (each downgraded one step and upgraded
    again when asked) by as few runs of env.py as it takes: one, unless something makes it
    start again (a downgrade undone from a file copy, a PostgreSQL snapshot, a failure).
    Running env.py once per revision costs its import, its engine and its configure every
    time; here Alembic's `fn` is a generator that hands run_migrations one step at a time
    and does the pass's work in between, when the step's transaction is committed
    (transaction_per_migration is forced on, as `alembic upgrade REV` one at a time would
    commit). An env.py that holds a transaction of its own around run_migrations commits
    only when it returns: then one step per run of env.py."""

    def __init__(self, job, cfg, script, order, result, statements, reflect, connection):
        self.job, self.cfg, self.script, self.result = job, cfg, script, result
        self.statements, self.reflect, self.connection = statements, reflect, connection
        self.pending = list(order)
        downs = job.get("downgrades")
        self.down_revs = set(downs) if isinstance(downs, list) else None
        self.downs = bool(downs)
        eager = job.get("eager") or ()
        # the revisions whose states are reflected at once (truth.py: explaining a difference)
        self.eager_all, self.eager = eager is True, set() if eager is True else set(eager)
        self.boundaries = job.get("pg_snapshots") or {}  # rev -> database name (PostgreSQL snapshots)
        self.before = None  # the schema before pending[0], when known
        self.heads: tuple = ()
        self.at: tuple | None = None  # (phase, step, detail) of the step running now: a failure is its
        self.gen = None  # the current revision's work, across runs of env.py
        self.next_step = None
        self.restart = False
        self.one_by_one = False
        self.called = False
        self.progress = 0  # steps handed to Alembic and revisions done
        self.due = None  # (rev, database name): a PostgreSQL snapshot to take after this run of env.py
        self.last = None  # the last revision upgraded
        self.impl = None
        self.shared = model_child()
        self.worker_thread = False  # env.py runs only in an AnyIO worker thread (prefect)
        result["timings"]["env.py runs"] = 0

    def other_history(self):
        """env.py chose another history than the environment's (prefect sets
        `context.script.version_locations` by the dialect of its own settings' URL): why the
        run says nothing about this environment, else None."""
        return other_history(self.job, self.script)

    def wants_downgrade(self, rev):
        return self.downs and (self.down_revs is None or rev in self.down_revs)

    # ---------------------------------------------------------------- env.py runs

    def all(self):
        """Every pending revision; True when the run reached its end (then `alembic check`)."""
        while self.pending or self.gen is not None:
            self.called, self.restart = False, False
            progress = self.progress
            failed = self.attempt(self.run_env)
            self.result["timings"]["env.py runs"] += 1
            other = self.other_history()
            if other is not None:  # whatever it did, it did it with another history: not ours to report
                self.result["not_verified"] = other
                return False
            if failed is not None:
                if not self.failure(failed):
                    return False
                continue
            if not self.called or self.progress == progress:
                rev = self.pending[0] if self.pending else "?"
                self.result["error"] = (f"env.py did not run the migrations: {rev} is not in the version table "
                                        f"after `alembic upgrade {rev}`")
                return False
            if self.last is not None and self.gen is None and self.last not in self.reflect.heads():
                self.result["error"] = (f"env.py did not run the migrations: {self.last} is not in the version "
                                        f"table after `alembic upgrade {self.last}`")
                return False
            if self.due:
                self.pg_snapshot(*self.due)
                self.due = None
        return True

    def run_env(self):
        from alembic.runtime.environment import EnvironmentContext

        target = self.pending[-1] if self.pending else "heads"

        def run():
            with EnvironmentContext(self.cfg, self.script, fn=self.steps, as_sql=False, starting_rev=None,
                                    destination_rev=target, tag=None):
                self.script.run_env()

        if self.worker_thread:
            self.shared.in_worker_thread(run)
            return
        progress = self.progress
        try:
            run()
        except Exception as exc:
            if self.progress != progress or not self.shared.needs_worker_thread(exc):
                raise
            self.worker_thread = True  # refused before any step: as its project's CLI runs it
            self.shared.in_worker_thread(run)

    def attempt(self, action):
        """Run `action`; None, or the failure (first line, traceback tail, frames)."""
        connection = self.connection
        try:
            action()
            if connection is not None and connection.in_transaction():
                connection.commit()
            return None
        except BaseException as exc:  # noqa: BLE001 - a failure is a result
            if connection is not None:
                try:
                    connection.rollback()
                except Exception:  # noqa: BLE001, S110 - a connection the failure left broken: the failure is the result
                    pass
            return {"error": short(exc), "traceback": traceback.format_exc()[-2000:],
                    "frames": [[f.filename, f.lineno] for f in traceback.extract_tb(exc.__traceback__)][-200:]}

    def failure(self, failed):
        """A run of env.py raised: whose it is; True if the pass goes on."""
        phase, step, detail = self.at or ("upgrade", None, None)
        gen, self.gen, self.next_step, self.at = self.gen, None, None, None
        try:
            return self._failure(failed, phase, step, detail)
        finally:
            if gen is not None:
                gen.close()  # (its `finally` removes the file copy: after it was used)

    def _failure(self, failed, phase, step, detail):
        if phase == "upgrade":
            if step is None:
                step = {"rev": self.pending[0] if self.pending else "?"}
            step.update(ok=False, sql=list(self.statements), **failed)
            self.result["steps"].append(step)
            return False
        if phase == "downgrade":
            backup, after_up = detail
            step["downgrade"] = dict(failed, ok=False)
            restored = self.reflect.restore(backup) or self.unchanged(step, after_up)  # (PostgreSQL: rolled back)
            if not restored:
                return False
            self.finish(step["rev"], after_up)
            return True
        if phase == "reupgrade":
            before, after_down = detail
            # the schema was restored and the upgrade fails again: a finding; otherwise the
            # database is neither here nor there: the run stops (truth.py runs it again
            # without downgrades)
            step["reupgrade" if after_down == before else "unrestored"] = failed
            return False
        return False  # the stamp back after a downgrade that did nothing

    # ---------------------------------------------------------------- inside env.py

    def applied(self, ctx=None, step=None, heads=None, run_args=None):
        self.heads = tuple(heads or ())

    def steps(self, heads, context):
        """Alembic's `fn`: the steps, one at a time (a generator: run_migrations asks for the
        next one when the last one's transaction is committed)."""
        self.called = True
        self.heads = tuple(heads)
        self.impl = getattr(context, "impl", None)
        context.on_version_apply_callbacks = (*context.on_version_apply_callbacks, self.applied)
        if self.shared.alembic_api().in_external_transaction(context) or getattr(context, "as_sql", False):
            self.one_by_one = True
        yielded = False
        while True:
            if yielded and self.one_by_one:
                return  # committed when env.py returns: the work after the step waits for the next run
            if self.next_step is None:
                if self.gen is None:
                    if not self.pending:
                        return
                    self.gen = self.revision(self.pending[0])
                try:
                    self.next_step = next(self.gen)
                except StopIteration:
                    self.gen = None
                    if self.restart:
                        return
                    continue
            step, self.next_step = self.next_step, None
            yield step
            yielded = True
            self.progress += 1

    def memo(self, memo):
        """Alembic's impl remembers the named types (PostgreSQL enums) it created in a run and
        does not create them twice; `upgrade head` runs every revision with one impl, so our
        upgrades share one memo too (else a second table with the same enum fails where
        `alembic upgrade head` does not); a downgrade has one of its own, as `alembic
        downgrade` in a new process. The upgrade again after a downgrade shares it too (an
        enum the downgrade left is not made twice), less the types the downgrade dropped: those
        it must make again (prefect's initial revision drops its enums)."""
        if memo is MEMO and self.at is not None and self.at[0] == "reupgrade":
            forget_dropped_types(MEMO, self.reflect.create_engine, self.reflect.url)
        if self.impl is not None and isinstance(getattr(self.impl, "memo", None), dict):
            self.impl.memo = memo

    def revision(self, rev):
        """One revision's work: upgrade; then down one step, compare, up again."""
        down = self.wants_downgrade(rev)
        self.reflect.eager = self.eager_all or rev in self.eager
        if down and self.before is None:
            self.before = self.reflect.mark(copy=True)
        before = self.before
        self.statements.clear()
        t0 = time.perf_counter()
        step = {"rev": rev, "ok": True, "error": None}
        self.at = ("upgrade", step, None)
        self.memo(MEMO)
        yield from self.shared.alembic_api().upgrade_steps(self.script, rev, self.heads)
        step["secs"] = time.perf_counter() - t0
        step["sql"] = list(self.statements)
        self.result["steps"].append(step)
        self.last = rev
        after_up = None
        if down:
            after_up = yield from self.down_and_up(rev, step, before)
        self.at = None
        self.finish(rev, after_up)

    def down_and_up(self, rev, step, before):
        """Downgrade `rev` one step, compare the database with the one before its upgrade, and
        upgrade it again (pytest-alembic's up/down consistency): the schema after (its mark).
        Equal marks (a healthy downgrade) cost a catalog query each; only a difference is
        reflected (Reflector.explain), and the decisions below are the reflections'."""
        down = self.script.get_revision(rev).down_revision
        after_up = self.reflect.mark()
        if isinstance(down, (tuple, list)):
            step["downgrade"] = {"skipped": "a merge revision"}
            return after_up
        backup = self.reflect.backup()  # SQLite: the file as `rev` left it
        self.reflect.keep(after_up, backup)  # (also what the next revision's `before` is read from)
        self.at = ("downgrade", step, (backup, after_up))
        self.memo({})
        yield from self.shared.alembic_api().downgrade_steps(self.script, down or "base", self.heads)
        mark = self.reflect.mark()
        if mark == before:
            step["downgrade"] = {"ok": True, "left": [], "missing": [], "changed": [], "noop": False}
            b = after_down = None  # (equal: no reflection needed)
        else:
            after_down = self.reflect.explain_now(mark)
            b = self.reflect.explain(before)
            u = after_down if mark == after_up else self.reflect.explain(after_up)
            if b is None or u is None:  # a state with nothing left to reflect it from: truth.py runs again
                step["downgrade"] = {"ok": True, "unexplained": True, "left": [], "missing": [], "changed": [],
                                     "noop": False}
                self.result.setdefault("unexplained", []).append(rev)
                b = u = None
            else:
                left = sorted(k for k in after_down if k not in b)
                missing = sorted(k for k in b if k not in after_down)
                changed = sorted(k for k in b if k in after_down and b[k] != after_down[k])
                step["downgrade"] = {"ok": True, "left": left, "missing": missing, "changed": changed,
                                     "noop": after_down == u and u != b}
                if after_down != b and self.reflect.restore(backup):
                    # back where `rev` left it (the upgrade again would only fail on what is left);
                    # the version table says `rev` again: Alembic's idea of the heads must be read anew
                    self.restart = True
                    return after_up
            if (after_down == u and after_down != b) if b is not None else mark == after_up:
                # the downgrade did nothing: stamp back
                self.at = ("stamp", step, None)
                yield from self.shared.alembic_api().stamp_steps(self.script, rev, self.heads)
                return after_up
        # (an enum the downgrade left is not made twice)
        self.at = ("reupgrade", step, (True, True) if b is None else (b, after_down))
        self.memo(MEMO)
        yield from self.shared.alembic_api().upgrade_steps(self.script, rev, self.heads)
        return after_up

    def unchanged(self, step, after_up):
        """After a failed downgrade: the schema is the one the upgrade made (PostgreSQL rolled
        the downgrade back)."""
        mark = self.reflect.mark()
        if mark == after_up:
            return True
        before = self.reflect.explain(after_up)
        if before is None:
            step["downgrade"]["unexplained"] = True
            self.result.setdefault("unexplained", []).append(step["rev"])
            return False
        return self.reflect.explain_now(mark) == before

    def finish(self, rev, after_up):
        """`rev` is done: its snapshot, and the schema the next revision starts from."""
        if self.pending and self.pending[0] == rev:
            self.pending.pop(0)
        self.before = after_up
        self.progress += 1
        if self.job.get("snapshot_each"):
            snapshot(self.job, rev, self.result)
        if rev in self.boundaries:
            self.due = (rev, self.boundaries[rev])
            self.restart = True  # a template database needs every connection to it closed

    def pg_snapshot(self, rev, name):
        """PostgreSQL: `CREATE DATABASE name TEMPLATE scratch` (truth.py keeps it), between
        runs of env.py; a database somebody still holds open is not copied (skipped)."""
        from sqlalchemy import pool
        from sqlalchemy.engine import make_url

        scratch = make_url(self.job["url"])
        self.reflect.release()
        if self.connection is not None:
            self.connection.close()
            self.connection.engine.dispose()  # (its pool holds the connection open)
        try:
            engine = self.reflect.create_engine(default_driver(scratch.set(database="postgres")),
                                                poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{scratch.database}"')
                self.result.setdefault("pg_snapshots", {})[rev] = name
            finally:
                engine.dispose()
        except Exception as exc:  # noqa: BLE001 - a connection the project left open, a driver's error: no snapshot
            self.result.setdefault("snapshot_errors", []).append(short(exc))
        finally:
            if self.connection is not None:
                self.connection = self.connection.engine.connect()
                self.cfg.attributes["connection"] = self.connection


MEMO: dict = {}  # (as Alembic's impl.memo) the DDL memo of Alembic's impl, shared by all upgrades of the run


def forget_dropped_types(memo, create_engine, url):
    """PostgreSQL: the named types in `memo` (SQLAlchemy's {"pg_enum": {(schema, name)}, ...})
    that the database no longer has, removed, so that the next CREATE TABLE using one makes
    it again, as a new `alembic upgrade` process would."""
    remembered = [names for names in memo.values() if isinstance(names, set) and names]
    if not remembered or url.get_backend_name() != "postgresql":
        return
    from sqlalchemy import pool

    try:
        engine = create_engine(url, poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                default = conn.exec_driver_sql("SELECT current_schema()").scalar()
                present = {tuple(row) for row in conn.exec_driver_sql(
                    "SELECT n.nspname, t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')")}
        finally:
            engine.dispose()
    except Exception:  # noqa: BLE001 - the catalog unreadable: the memo as it is (the upgrade says what fails)
        return
    for names in remembered:
        for entry in list(names):
            if isinstance(entry, tuple) and len(entry) == 2 and (entry[0] or default, entry[1]) not in present:
                names.discard(entry)


def shared_connection_class():
    """The connection handed in as config.attributes["connection"]: a Connection (the
    Alembic cookbook, mlflow) that also answers `.connect()` as an Engine would (projects
    that hand in an engine: jupyterhub), with itself, left open."""
    import contextlib

    from sqlalchemy.engine import Connection

    class SharedConnection(Connection):
        def connect(self):
            return contextlib.nullcontext(self)

    return SharedConnection


def sqlite_backup(path, target, timeout=5.0):
    """SQLite's backup API: `path`'s database, what its -wal file holds included, into `target`."""
    import sqlite3

    source, copy = sqlite3.connect(path), sqlite3.connect(target, timeout=timeout)
    try:
        # no fsync (a scratch copy; the snapshots are a cache: truth.py keeps them by rename):
        # 10-20 ms a copy otherwise, once per revision
        copy.execute("PRAGMA synchronous=OFF")
        source.backup(copy)
    finally:
        copy.close()  # (a copy in WAL mode is checkpointed into its file here)
        source.close()


def snapshot(job, rev, result):
    """SQLite: the database as it is after `rev` (truth.py keeps it), by SQLite's backup API:
    a copy of the file alone misses what a project in WAL mode (prefect) has committed to
    the -wal file and not yet checkpointed; restored, such a copy is revisions behind."""
    from sqlalchemy.engine import make_url

    path = make_url(job["url"]).database
    if path is None:  # (never: snapshots are of a SQLite file)
        raise ValueError("a snapshot needs a database file")
    target = os.path.join(job["snapshot_each"], rev)
    sqlite_backup(path, target)
    result.setdefault("snapshots", {})[rev] = target


def compare(check, result, shared, worker_thread):
    """`alembic check` itself (`check()`): its list of differences, or its error. In an
    AnyIO worker thread when env.py runs only in one (`shared`: model_child's helpers)."""
    from alembic.util import exc as alembic_exc

    t0 = time.perf_counter()
    out = {"ok": True, "items": [], "error": None}

    def in_thread():
        shared.in_worker_thread(check)

    try:
        if worker_thread:
            in_thread()
        else:
            try:
                check()
            except Exception as exc:
                if not shared.needs_worker_thread(exc):
                    raise
                in_thread()
    except getattr(alembic_exc, "AutogenerateDiffsDetected", ()) as exc:
        diffs = getattr(exc, "diffs", None)
        if diffs is None:
            out.update(ok=False, error="this Alembic's `check` does not list its differences")
        else:
            out["items"] = [describe(d) for d in diffs]
    except BaseException as exc:  # noqa: BLE001
        out.update(ok=False, error=short(exc), traceback=traceback.format_exc()[-2000:])
    out["secs"] = time.perf_counter() - t0
    result["compare"] = out
    if OTHER_BACKENDS:  # env.py asked for an engine of another dialect (truth.py: another history's)
        result["other_backends"] = sorted(OTHER_BACKENDS)


if __name__ == "__main__":
    main()
