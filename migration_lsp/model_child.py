"""Runs in a child process with the project's interpreter: load the target metadata the way
Alembic does and write it as JSON. Standalone on purpose (only the standard library,
SQLAlchemy and Alembic, which the project has): it must not need migration_lsp to be
installed in the project's venv. Started through child.py (the sandbox), which names the
result file.

How (`load`): the environment's env.py runs under Alembic's own EnvironmentContext, online
as autogenerate runs it, and `context.configure(...)` is intercepted: what env.py passes
(target_metadata, include_object, include_name, include_schemas, compare_type, ...) is kept
and a private exception stops it before any migration runs. Nothing may reach a database:
every engine env.py (or the project) creates is an in-memory SQLite stand-in that keeps the
dialect's name, and the socket module refuses to connect. Then the revision modules are
imported as ScriptDirectory does (model modules they import register their tables). If
env.py fails, the `specs` (the `models` setting, or env.py's target_metadata import read
statically) are imported instead, and the reason is sent back once. Callable filters are
evaluated here, on the models' objects and on stand-ins for the objects the migrations
build (the parent sends their names), since callables cannot travel.

usage: python child.py model_child.py '<json: {"specs": [...], "sys_path": [...], "cwd": "...",
                                                 "dialect": "postgresql" | null, "config": "alembic.ini",
                                                 "files": [...], "schema": [...], "override": bool}>'
"""

# annotations are never evaluated: the project's Python may be older than ours
from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (names for annotations only: `list[...]` is no runtime expression before Python 3.9)
    from types import FrameType, ModuleType

    Chain = list[tuple[str, int, bool]]  # (file, line, is a module or class body), innermost first


def resolve(spec):
    """`pkg.mod:Base.metadata` or `pkg.mod.Base.metadata` -> the object. For a dotted path,
    import the longest importable module prefix; a failing import inside the project is
    reported as itself, not as a missing attribute."""
    module_part, _, attr_part = spec.partition(":")
    if attr_part:
        obj = importlib.import_module(module_part)
        for attr in attr_part.split("."):
            if attr:
                obj = getattr(obj, attr)
        return obj
    parts = module_part.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # this prefix is not a module (yet): try a shorter one
            raise
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"no module named {parts[0]!r}")


def for_dialect(type_, dialect):
    """The variant `with_variant(..., name)` chose for this dialect: its repr leaves the
    variants out (`Integer()`), while the database (and Alembic's comparison) get the variant."""
    variants = getattr(type_, "_variant_mapping", None)  # (SQLAlchemy 1.4+; older: the Variant class)
    if dialect is None or not variants or dialect.name not in variants:
        return type_
    return variants[dialect.name]


def dialect_impl(type_, dialect):
    """What a TypeDecorator whose `load_dialect_impl` picks a type per dialect (prefect's JSON:
    JSONB on PostgreSQL, sqlite.JSON on SQLite) is on this dialect, as a public SQLAlchemy
    type (the dialect's private adaptation, `_PGJSONB`, adapted back): what the database gets
    and Alembic compares. None: the static `impl` stands."""
    from sqlalchemy.types import TypeDecorator
    if dialect is None or not isinstance(type_, TypeDecorator) \
            or type(type_).load_dialect_impl is TypeDecorator.load_dialect_impl:
        return None
    try:
        impl = type_.load_dialect_impl(dialect)
        public = next(c for c in type(impl).__mro__ if not c.__name__.startswith("_"))
        return impl if public is type(impl) else impl.adapt(public)
    except Exception:  # noqa: BLE001 - the project's own code: its static impl stands
        return None


def type_info(type_, dialect):
    type_ = for_dialect(type_, dialect)
    info: dict[str, str | None] = {"repr": repr(type_), "module": type(type_).__module__, "class": type(type_).__name__}
    impl = dialect_impl(type_, dialect) or getattr(type_, "impl", None)
    if impl is not None and not isinstance(impl, type):
        impl = for_dialect(impl, dialect)
        info["impl_repr"] = repr(impl)
        info["impl_module"] = type(impl).__module__
    try:
        info["ddl"] = type_.compile(dialect=dialect) if dialect is not None else type_.compile()
    except Exception:  # noqa: BLE001 - the project's own type (one compiled only for some dialects): anything
        info["ddl"] = None
    return info


def default_text(default, dialect=None):
    """The server default as SQL text: a SQL expression (func.now()) compiled for the
    environment's dialect, as the database would get it."""
    if default is None:
        return None
    arg = getattr(default, "arg", default)
    text = getattr(arg, "text", None)
    if isinstance(text, str):
        return text
    if isinstance(arg, str):
        return arg
    return sql_text(arg, dialect) or sql_text(arg)


def computed_info(column, dialect):
    computed = getattr(column, "computed", None)
    if computed is None:
        return None
    return {"sqltext": default_text(computed.sqltext, dialect), "persisted": computed.persisted}


def table_info(table, dialect, shared: set[tuple[str, int]] | None = None):
    from sqlalchemy.sql.schema import NULL_UNSPECIFIED
    return {
        "name": table.name,
        "schema": table.schema,
        "comment": table.comment,
        "site": site_of(table, shared if shared is not None else set()),
        "columns": [
            {
                "name": c.name,
                "key": c.key,
                "type": type_info(c.type, dialect),
                "nullable": bool(c.nullable),
                "primary_key": bool(c.primary_key),
                "server_default": default_text(c.server_default, dialect),
                # a plain string is a literal value ('new'), anything else SQL (now())
                "server_default_is_string": isinstance(getattr(c.server_default, "arg", None), str),
                "comment": c.comment,
                "site": site_of(c),
                # a generated column, and whether the model left its nullability unset: Alembic
                # then ignores a nullable difference on it (its `_nullability_might_be_unset`)
                "computed": computed_info(c, dialect),
                "nullable_unset": getattr(c, "_user_defined_nullable", None) is NULL_UNSPECIFIED,
            }
            for c in table.columns
        ],
        "indexes": [
            {"name": i.name, "unique": bool(i.unique), "conv": is_conv(i.name),
             "columns": [getattr(e, "name", str(e)) for e in i.expressions], "site": site_of(i),
             "elements": [index_element(e, dialect) for e in i.expressions], "kwargs": index_kwargs(i, dialect)}
            for i in sorted(table.indexes, key=lambda i: str(i.name))
        ],
        "constraints": [constraint_info(c) for c in table.constraints],
    }


MODIFIERS = {"desc_op": "desc", "asc_op": "asc", "nulls_first_op": "nulls_first", "nulls_last_op": "nulls_last",
             "nullsfirst_op": "nulls_first", "nullslast_op": "nulls_last"}


def index_element(expr, dialect):
    """One element of an index, as Alembic compares it: a column and its sort modifiers
    (innermost first), or an expression's SQL for the dialect and the first column in it
    (the one SQLAlchemy lists in the index's `.columns`)."""
    from sqlalchemy.sql import elements, visitors

    if isinstance(expr, str):
        return {"column": expr, "modifiers": []}
    modifiers: list[str] = []
    inner = expr
    while isinstance(inner, elements.UnaryExpression) and getattr(inner.modifier, "__name__", None) in MODIFIERS:
        modifiers.insert(0, MODIFIERS[getattr(inner.modifier, "__name__", "")])
        inner = inner.element
    if isinstance(inner, elements.ColumnClause) and not inner.is_literal and isinstance(inner.name, str):
        return {"column": inner.name, "modifiers": modifiers}
    if isinstance(expr, elements.TextClause):
        return {"sql": expr.text, "on": None}
    try:
        compiled = expr.compile(dialect=dialect, compile_kwargs={"literal_binds": True, "include_table": False})
        sql = str(compiled)
    except Exception:  # noqa: BLE001 - the project's own construct: it may raise anything
        sql = sql_text(expr) or repr(expr)
    found: list[Any] = []
    visitors.traverse(expr, {}, {"column": found.append})
    on = getattr(found[0], "name", None) if found else None
    return {"sql": sql, "on": on if isinstance(on, str) else None}


def index_kwargs(index, dialect):
    """The index's dialect options (`postgresql_where`, `sqlite_where`, `postgresql_using`...):
    SQL as text, plain values as they are, anything else left out."""
    out: dict[str, Any] = {}
    for key, value in dict(getattr(index, "dialect_kwargs", {})).items():
        if value is None or isinstance(value, (str, bool, int, float)):
            out[key] = value
        elif isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            out[key] = dict(value)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        elif hasattr(value, "compile"):
            text = getattr(value, "text", None)
            text = text if isinstance(text, str) else sql_text(value, dialect) or sql_text(value)
            if text is not None:
                out[key] = {"sql": text}
    return out


def is_conv(name):
    """A name the naming convention made final (autogenerate writes it as `op.f(...)`)."""
    try:
        from sqlalchemy.sql.elements import conv

        return isinstance(name, conv)
    except ImportError:
        return False


def sql_text(clause, dialect=None):
    """A SQL expression as text, or None: a custom construct compiled only for some dialects
    (`@compiles(X, "postgresql")`) refuses the default one, and one such CHECK must not cost
    every table of the models."""
    try:
        return str(clause.compile(dialect=dialect)) if dialect is not None else str(clause)
    except Exception:  # noqa: BLE001 - the project's own construct: it may raise anything
        return None


def constraint_info(c):
    kind = type(c).__name__
    out = {"kind": kind, "name": c.name if isinstance(c.name, str) else None, "conv": is_conv(c.name),
           "columns": [col.name for col in c.columns] if hasattr(c, "columns") else [], "site": site_of(c)}
    if kind == "ForeignKeyConstraint":
        out["targets"] = [e.target_fullname for e in c.elements]
        out["ondelete"] = c.ondelete
        out["onupdate"] = c.onupdate
    if kind == "CheckConstraint":
        out["sqltext"] = sql_text(c.sqltext)
    return out


def sources(tables):
    """Where each table is defined: declarative classes or module-level Table() objects."""
    found: dict[int, dict[str, Any]] = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or "site-packages" in file or not file.endswith(".py"):
            continue
        try:
            members = list(vars(module).items())
        except TypeError:  # a module object without a __dict__
            continue
        for name, value in members:
            table = getattr(value, "__table__", None) if inspect.isclass(value) else None
            if table is not None and id(table) in tables and inspect.getmodule(value) is module:
                attrs = {}
                try:
                    import sqlalchemy

                    mapper = sqlalchemy.inspect(value)
                    for prop in mapper.column_attrs:
                        for col in prop.columns:
                            if getattr(col, "table", None) is table:
                                attrs[col.name] = prop.key
                except Exception:  # noqa: BLE001, S110 - configuring the mappers runs the project's relationships
                    pass
                found.setdefault(id(table), {"file": file, "class": name, "attrs": attrs,
                                             "declared_in": declared_in(value, attrs)})
            elif id(value) in tables and type(value).__name__ == "Table":
                found.setdefault(id(value), {"file": file, "variable": name})
    return found


def declared_in(cls, attrs):
    """Column name -> [file, class name] of the base class (a mixin) whose body declares
    the attribute (`state_timestamp: Mapped[...]` without a value), for those the class
    itself does not."""
    out = {}
    for column, key in attrs.items():
        for klass in cls.__mro__[1:]:
            body = vars(klass)
            if key in body or key in body.get("__annotations__", {}):
                file = getattr(sys.modules.get(klass.__module__), "__file__", None)
                if isinstance(file, str) and not is_library(file):
                    out[column] = [file, klass.__name__]
                break
    return out


# --------------------------------------------------------------------------- where things are made


SITES: dict[int, tuple[object, Chain]] = {}  # id(schema item) -> (the item, where it was made)
_LIBRARY: dict[str, bool] = {}  # file -> True when its frames are not the project's


def is_library(filename):
    """Frames of SQLAlchemy, Alembic, the standard library, installed packages and this
    loader are not where the project declares anything."""
    known = _LIBRARY.get(filename)
    if known is None:
        import sysconfig

        parts = filename.replace("\\", "/").split("/")
        here = os.path.dirname(os.path.abspath(__file__))
        known = (filename.startswith("<") or "site-packages" in parts or "dist-packages" in parts
                 or os.path.abspath(filename).startswith(os.path.join(sysconfig.get_paths()["stdlib"], ""))
                 or os.path.dirname(os.path.abspath(filename)) == here)
        _LIBRARY[filename] = known
    return known


def creation_chain(depth: int = 2) -> Chain:
    """The project's frames that led here (at most 8, innermost first): file, line, and
    whether the frame is a module or class body (not a function)."""
    frame: FrameType | None = sys._getframe(depth)
    chain: Chain = []
    while frame is not None and len(chain) < 8:
        code = frame.f_code
        if not is_library(code.co_filename):
            chain.append((code.co_filename, frame.f_lineno, not code.co_flags & inspect.CO_OPTIMIZED))
        frame = frame.f_back
    return chain


def remember(item, chain=None):
    if id(item) not in SITES:  # the first record is the constructor's own (a subclass calls it again)
        SITES[id(item)] = (item, creation_chain(3) if chain is None else chain)


def site_of(item, shared: set[tuple[str, int]] | None = None) -> list[Any] | None:
    """[file, line] that declares the item, None when unknown: the innermost project line
    (the `Column(...)` call, in a class body, a mixin, a declared_attr or a helper). A
    table: the innermost line not `shared` with another table's making, so that a wrapper
    every table goes through (`def Table(*a, **kw): return sa.Table(*a, **kw)`, a
    `make(name)` called twice) gives the line that calls it for this table."""
    entry = SITES.get(id(item))
    if not entry or not entry[1]:
        return None
    chain = entry[1]
    if shared is not None:
        for file, line, _ in chain:
            if (file, line) not in shared:
                return [file, line]
    return [chain[0][0], chain[0][1]]


def shared_lines(tables) -> set[tuple[str, int]]:
    """(file, line) on the way to making more than one of the tables."""
    seen: set[tuple[str, int]] = set()
    shared: set[tuple[str, int]] = set()
    for table in tables:
        entry = SITES.get(id(table))
        for file, line, _ in set(entry[1]) if entry else ():
            (shared if (file, line) in seen else seen).add((file, line))
    return shared


def record_sites():
    """Hook the constructors of Table, Column, Index and constraints (before any project
    code runs) so that every model object knows where it was made: a Table() nobody
    assigns, one a function builds, a column of a mixin or a declared_attr, an Index in
    __table_args__. A column copied from a mixin keeps its original's place."""
    import sqlalchemy
    from sqlalchemy import event

    def wrap_init(cls):
        real = cls.__init__

        def init(self, *args, **kwargs):
            remember(self)
            real(self, *args, **kwargs)

        cls.__init__ = init

    for cls in (sqlalchemy.Column, sqlalchemy.Index, sqlalchemy.schema.Constraint):
        wrap_init(cls)
    event.listen(sqlalchemy.Table, "after_parent_attach", lambda table, metadata: remember(table))
    name = "_copy" if hasattr(sqlalchemy.Column, "_copy") else "copy"
    real_copy = getattr(sqlalchemy.Column, name)

    def copy(self, *args, **kwargs):
        made = real_copy(self, *args, **kwargs)
        if id(self) in SITES:
            SITES[id(made)] = (made, SITES[id(self)][1])
        return made

    setattr(sqlalchemy.Column, name, copy)


# --------------------------------------------------------------------------- no network


class NetworkBlocked(ConnectionRefusedError):
    """What any connection attempt in this process gets."""


def own_network_namespace():
    """Linux: move this process into a network namespace of its own (only a loopback that is
    down), so that no TCP connection leaves it, also from C code (libpq, a raw `_socket`).
    As root a network namespace alone; otherwise inside a user namespace mapping our own
    ids (refused where unprivileged user namespaces are off: then the socket patch and the
    engine stand-ins are what there is). True when it worked."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        clone_newuser, clone_newnet = 0x10000000, 0x40000000
        if libc.unshare(clone_newnet) == 0:
            return True
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(clone_newuser | clone_newnet) != 0:
            return False
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            try:
                with open(f"/proc/self/{name}", "w") as fh:
                    fh.write(text)
            except OSError:
                pass
        import signal

        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG again: new credentials may clear it
        return True
    except (OSError, AttributeError):  # no C library, no unshare/prctl (not Linux)
        return False


def block_network():
    """Every socket connection refused (TCP and unix: a local PostgreSQL is a socket file).
    Drivers written in C (libpq) bypass this module: the network namespace (TCP) and the
    engine stand-ins (SQLAlchemy engines, whatever the driver) keep them away."""
    import socket

    def refuse(*args, **kwargs):
        raise NetworkBlocked("migration-lsp: the model loader never connects to anything")

    for name in ("connect", "connect_ex", "sendto", "sendmsg"):
        try:
            setattr(socket.socket, name, refuse)
        except (AttributeError, TypeError):
            pass
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    socket.gethostbyname = refuse


class StandInAsyncConnection:
    """What `async with engine.connect()` gives env.py: run_sync runs on the SQLite stand-in."""

    def __init__(self, engine):
        self.engine = engine
        self.sync_connection: Any = None  # (a stand-in engine's connection, once entered)
        self.dialect = engine.dialect

    async def __aenter__(self):
        self.sync_connection = self.engine.connect()
        return self

    async def __aexit__(self, *exc):
        self.sync_connection.close()
        return False

    async def run_sync(self, fn, *args, **kwargs):
        return fn(self.sync_connection, *args, **kwargs)

    async def commit(self):
        pass

    async def rollback(self):
        pass


class StandInAsyncEngine:
    def __init__(self, engine):
        self.sync_engine = engine
        self.dialect = engine.dialect
        self.url = engine.url
        self.name = engine.dialect.name

    def connect(self):
        return StandInAsyncConnection(self.sync_engine)

    begin = connect

    async def dispose(self, close=True):
        self.sync_engine.dispose()


STAND_INS: dict[int, object] = {}  # id -> every engine redirect_engines made


def redirect_engines(dialect_name, config_dialect=None):
    """create_engine / engine_from_config / their async forms, wherever they are imported
    from, give an in-memory SQLite engine whose dialect says `dialect_name` (env.py may
    choose options by `connection.dialect.name`); the URL asked for is never used."""
    import sqlalchemy
    import sqlalchemy.engine
    import sqlalchemy.engine.create as create_module
    import sqlalchemy.exc

    real_create = create_module.create_engine

    def stand_in(url=None):
        engine = real_create("sqlite://")
        name = dialect_name  # the `dialect` setting, else the URL's, else the config's
        if not name and url is not None:
            try:
                name = sqlalchemy.engine.make_url(url).get_backend_name()
            except (sqlalchemy.exc.ArgumentError, ValueError, TypeError):  # not a URL: the config's dialect
                name = None
        name = name or config_dialect
        if name and name != "sqlite":
            engine.dialect.name = name  # (this instance only)
        STAND_INS[id(engine)] = engine
        return engine

    def async_stand_in(url):
        """The real AsyncEngine over the stand-in when greenlet is there (env.py's
        `run_sync` then works as it does), else a minimal look-alike."""
        engine = stand_in(url)
        if importlib.util.find_spec("greenlet") is None:
            return StandInAsyncEngine(engine)
        try:
            from sqlalchemy.ext.asyncio import AsyncEngine

            return AsyncEngine(engine)
        except (ImportError, sqlalchemy.exc.SQLAlchemyError):
            return StandInAsyncEngine(engine)

    def create_engine(url=None, *args, **kwargs):
        return stand_in(url)

    def engine_from_config(configuration=None, prefix="sqlalchemy.", **kwargs):
        return stand_in((configuration or {}).get(prefix + "url"))

    def create_async_engine(url=None, *args, **kwargs):
        return async_stand_in(url)

    def async_engine_from_config(configuration=None, prefix="sqlalchemy.", **kwargs):
        return async_stand_in((configuration or {}).get(prefix + "url"))

    for module in (sqlalchemy, sqlalchemy.engine, create_module):
        for attr, stand_in_fn in (("create_engine", create_engine), ("engine_from_config", engine_from_config)):
            setattr(module, attr, stand_in_fn)
    for name in ("sqlalchemy.ext.asyncio.engine", "sqlalchemy.ext.asyncio"):
        async_module: ModuleType | None
        try:  # the engine module first: the package re-exports from it, also when imported again
            async_module = importlib.import_module(name)
        except ImportError:  # no asyncio extension (greenlet missing): env.py cannot use it either
            async_module = sys.modules.get(name)
        if async_module is not None:
            for attr, stand_in_fn in (("create_async_engine", create_async_engine),
                                      ("async_engine_from_config", async_engine_from_config)):
                setattr(async_module, attr, stand_in_fn)
    engine_module = sys.modules.get("sqlalchemy.ext.asyncio.engine")
    async_engine = getattr(engine_module, "AsyncEngine", None)
    if async_engine is not None:  # `AsyncEngine(engine_from_config(...))` wraps a stand-in: allow it
        real_init = async_engine.__init__

        def init(self, sync_engine, *args, **kwargs):
            if id(sync_engine) in STAND_INS:
                sync_engine.dialect.is_async = True  # (the stand-in's dialect instance only)
            real_init(self, sync_engine, *args, **kwargs)

        async_engine.__init__ = init


# --------------------------------------------------------------------------- env.py


class Configured(BaseException):
    """Raised by the intercepted context.configure(): env.py stops there (a BaseException:
    env.py's own `except Exception` does not swallow it)."""


OPTION_NAMES = ("target_metadata", "include_object", "include_name", "include_schemas", "compare_type",
                "compare_server_default", "render_as_batch", "version_table", "version_table_schema",
                "user_module_prefix")


def run_env_py(config):
    """(captured configure() keywords, the ScriptDirectory): env.py run online under
    Alembic's EnvironmentContext, stopped at its first context.configure()."""
    import logging.config

    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    logging.config.fileConfig = lambda *args, **kwargs: None  # a log file handler would write into the workspace
    path = config["config"]
    if path.endswith(".toml"):
        alembic_config = Config(toml_file=path)
    else:
        alembic_config = Config(path, ini_section=config.get("section") or "alembic")
    if config.get("script_location"):  # as we resolved it (relative to where alembic would be run from)
        alembic_config.set_main_option("script_location", config["script_location"].replace("%", "%%"))
    script = ScriptDirectory.from_config(alembic_config)
    captured: dict[str, Any] = {}

    def configure(self, *args, **kwargs):
        captured.update(kwargs)
        captured["_called"] = True
        raise Configured()

    def run_migrations(self, *args, **kwargs):  # configure() was caught by env.py: stop anyway
        raise Configured()

    # Alembic's own class, patched: env.py's `context.configure(...)` is caught there
    EnvironmentContext.configure = configure  # type: ignore[method-assign]
    EnvironmentContext.run_migrations = run_migrations  # type: ignore[method-assign]

    def run():
        try:
            with EnvironmentContext(alembic_config, script, fn=lambda rev, context: [], as_sql=False,
                                    destination_rev="head"):
                script.run_env()
        except Configured:
            pass

    try:
        run()
    except Exception as exc:
        if not needs_worker_thread(exc):
            raise
        in_worker_thread(run)
    if not captured.get("_called"):
        raise RuntimeError("env.py ended without calling context.configure()")
    return captured, script


def needs_worker_thread(exc):
    """env.py refused to run outside an AnyIO worker thread: its project runs the
    migrations from one (prefect: `run_async_from_worker_thread(apply_migrations)` in
    env.py, called by its CLI through `run_sync_in_worker_thread`)."""
    return type(exc).__module__.split(".")[0] == "anyio" or "AnyIO worker thread" in str(exc)  # (anyio < 4.12)


def in_worker_thread(fn):
    """fn() in a worker thread of an AnyIO event loop, as such a project calls Alembic."""
    import anyio
    import anyio.to_thread

    async def main():
        await anyio.to_thread.run_sync(fn)

    anyio.run(main)


# child.py, which started this script, loads the files next to it (imported as part of the
# package instead, in tests: the package's child.py, the same function)
sibling = (sys.modules.get("migration_lsp_child") or importlib.import_module("migration_lsp.child")).sibling


@functools.lru_cache(maxsize=None)  # noqa: UP033 - functools.cache is 3.9+: the project's interpreter may be older
def alembic_api():
    """alembic_api.py (Alembic's private names, in one place), checked against the PROJECT's
    Alembic, which no version bound of ours covers: one AlembicChanged naming what is gone,
    before any of it is used (not a failure per revision). Both children call it first,
    before the project's folders are on sys.path."""
    api = sibling("alembic_api")
    changed = api.problems(api.CHILD_NAMES)
    if changed:
        import alembic

        raise api.AlembicChanged(f"the project's Alembic {alembic.__version__}: {'; '.join(changed)}")
    return api


def import_revisions(script, files):
    """Every revision module, as ScriptDirectory loads them (one that fails is counted,
    the rest still load). Without a ScriptDirectory, the files the parent found."""
    failed = 0
    paths: list[tuple[Any, Any]] = []  # (directory, path) or (None, path)
    api = None
    if script is not None:
        try:
            api = alembic_api()
            paths = [(script, p) for p in api.revision_files(script)]
        except (ImportError, AttributeError, TypeError, OSError, RuntimeError):  # Alembic changed: the files
            paths = []  # (AlembicChanged is a RuntimeError)
    if not paths:
        paths = [(None, f) for f in files]
    from alembic.util import load_python_file

    for directory, path in paths:
        try:
            if directory is not None and api is not None:
                api.load_revision(directory, path)
            else:
                load_python_file(os.path.dirname(str(path)), os.path.basename(str(path)))
        except BaseException:  # noqa: BLE001 - a revision module is project code (sys.exit() included): counted
            failed += 1
    return failed


# --------------------------------------------------------------------------- filters


def standin_tables(schema):
    """Tables the migrations build, as a reflected table would look (names only: NullType)."""
    import sqlalchemy as sa

    metadata = sa.MetaData()
    out = {}
    for info in schema:
        try:
            table = sa.Table(info["name"], metadata, *[sa.Column(c, sa.types.NullType()) for c in info["columns"]],
                             schema=info.get("schema"))
            for idx in info.get("indexes", []):
                if all(c in table.c for c in idx["columns"]) and idx["columns"]:
                    sa.Index(idx["name"], *[table.c[c] for c in idx["columns"]], unique=idx.get("unique", False))
            for uq in info.get("uniques", []):
                if all(c in table.c for c in uq["columns"]) and uq["columns"]:
                    table.append_constraint(sa.UniqueConstraint(*uq["columns"], name=uq.get("name")))
            out[table.key] = table
        except (sa.exc.SQLAlchemyError, KeyError, TypeError, ValueError):  # names SQLAlchemy refuses: not judged
            continue
    return out


def evaluate_filters(captured, tables, schema):
    """Which objects Alembic's autogenerate would leave out, decided by env.py's own
    include_object / include_name, on both sides. Keys: [side, kind, table key, name, how]
    where side is "model" or "schema" and `how` says with which compare_to: "new" (no
    counterpart) or "both" (compared with the other side's object) for the models;
    "name" (include_name: as if the database lacked it) or "new" (include_object, reflected,
    no counterpart) for the migrations' objects. As Alembic: include_name only ever sees
    reflected names, and an object on both sides is judged by its model side alone."""
    include_object = captured.get("include_object")
    include_name = captured.get("include_name")
    excluded: list[list[str]] = []
    errors: list[str] = []
    if not callable(include_object) and not callable(include_name):
        return excluded, errors

    def obj(value, name, kind, reflected, compare_to):
        if not callable(include_object):
            return True
        try:
            return bool(include_object(value, name, kind, reflected, compare_to))
        except Exception as exc:  # noqa: BLE001 - env.py's own function: reported, the object kept
            errors.append(f"include_object({name!r}, {kind!r}): {type(exc).__name__}: {exc}"[:300])
            return True

    def named(name, kind, parents):
        if not callable(include_name):
            return True
        try:
            return bool(include_name(name, kind, parents))
        except Exception as exc:  # noqa: BLE001 - env.py's own function: reported, the name kept
            errors.append(f"include_name({name!r}, {kind!r}): {type(exc).__name__}: {exc}"[:300])
            return True

    standins = standin_tables(schema)

    def sub_objects(table):
        out = [("column", c.name, c) for c in table.columns]
        out += [("index", i.name, i) for i in table.indexes if i.name]
        for c in table.constraints:
            kind = {"UniqueConstraint": "unique_constraint",
                    "ForeignKeyConstraint": "foreign_key_constraint"}.get(type(c).__name__)
            if kind and isinstance(c.name, str):
                out.append((kind, c.name, c))
        return out

    for key, table in tables.items():
        other = standins.get(key)
        for how, compare_to in (("new", None), ("both", other if other is not None else table)):
            if not obj(table, table.name, "table", False, compare_to):
                excluded.append(["model", "table", key, table.name, how])
        other_items = {(k, n): o for k, n, o in sub_objects(other)} if other is not None else {}
        for kind, name, item in sub_objects(table):
            for how, compare_to in (("new", None), ("both", other_items.get((kind, name), item))):
                if not obj(item, name, kind, False, compare_to):
                    excluded.append(["model", kind, key, name, how])
    for key, table in standins.items():
        parents = {"schema_name": table.schema}
        if not named(table.name, "table", parents):
            excluded.append(["schema", "table", key, table.name, "name"])
            continue
        if not obj(table, table.name, "table", True, None):
            excluded.append(["schema", "table", key, table.name, "new"])
        parents = {"table_name": table.name, "schema_name": table.schema}
        for kind, name, item in sub_objects(table):
            if not named(name, kind, parents):
                excluded.append(["schema", kind, key, name, "name"])
            elif not obj(item, name, kind, True, None):
                excluded.append(["schema", kind, key, name, "new"])
    return excluded, errors[:5]


def rebuilt_type(module_name, text):
    """A column type of the migrations from its repr (our static reading of the project's own
    revision files): evaluated with the names of its module and of sqlalchemy.types."""
    import sqlalchemy.types

    namespace = dict(vars(sqlalchemy.types))
    try:
        namespace.update(vars(importlib.import_module(module_name)))
    except Exception:  # noqa: BLE001, S110 - importing the project's module runs its code: sqlalchemy's names
        pass
    return eval(text, namespace)  # (trusted workspace, the text of its own migrations)


def type_decisions(captured, tables, schema, dialect_name):
    """env.py's compare_type callable asked about every column both sides have, as
    autogenerate asks it: (context, inspected column, model column, inspected type, model
    type) -> True (differs), False (same) or None (Alembic's own comparison)."""
    compare_type = captured.get("compare_type")
    if not callable(compare_type):
        return []
    import sqlalchemy as sa

    context = None
    try:
        from alembic.runtime.migration import MigrationContext

        context = MigrationContext.configure(dialect_name=dialect_name or "sqlite")
    except (ImportError, sa.exc.SQLAlchemyError):  # a dialect this SQLAlchemy lacks: compare_type gets None
        pass
    out: list[list[Any]] = []
    by_key = {(info.get("schema") + "." if info.get("schema") else "") + info["name"]: info for info in schema}
    for key, table in tables.items():
        info = by_key.get(key)
        if info is None:
            continue
        for column in table.columns:
            spec = (info.get("types") or {}).get(column.name)
            if not spec:
                continue
            try:
                inspected_type = rebuilt_type(*spec)
                inspected = sa.Column(column.name, inspected_type)
                decision = compare_type(context, inspected, column, inspected_type, column.type)
            except Exception:  # noqa: BLE001, S112 - env.py's function, on a type rebuilt by eval: anything
                continue  # not asked: Alembic's own comparison decides
            out.append([key, column.name, decision if decision is None else bool(decision)])
    return out


def plain_options(captured):
    """The configure() options as data: booleans and names as they are, callables as
    "callable" (their decisions are made here, see evaluate_filters)."""
    out: dict[str, bool | str | None] = {}
    for name in OPTION_NAMES[1:]:
        if name not in captured:
            continue
        value = captured[name]
        if callable(value):
            out[name] = "callable"
        elif isinstance(value, (bool, str)) or value is None:
            out[name] = value
    return out


def place_workspace(paths):
    """The workspace's folders after the standard library (a workspace `logging/` shadows
    nothing) but before the installed packages: the checkout a developer edits is what is
    loaded, not a copy of the same package installed in the venv (`pip install .`), as
    `alembic` with `prepend_sys_path = .` does from the repository's root."""
    paths = [p for p in paths if p not in sys.path]
    installed = next((n for n, p in enumerate(sys.path)
                      if os.path.basename(p.rstrip("/\\")) in ("site-packages", "dist-packages")), len(sys.path))
    sys.path[installed:installed] = paths


def _load_alembic_first() -> None:
    """Alembic and what it imports (argparse, logging.config...) before the project's folders
    go on sys.path, as the `alembic` command has them loaded before prepend_sys_path: a
    workspace `argparse.py` shadows nothing Alembic uses."""
    for name in ("logging.config", "alembic.command", "alembic.config", "alembic.runtime.environment",
                 "alembic.script"):
        importlib.import_module(name)


def main():
    config = json.loads(sys.argv[1])
    _load_alembic_first()
    try:  # checked now, before the project's folders are on sys.path (import_revisions uses it)
        alembic_api()
    except (ImportError, RuntimeError):  # (AlembicChanged) the revisions then come from the files the parent found
        pass
    sys.path[:0] = config.get("sys_path", [])  # alembic.ini's prepend_sys_path
    place_workspace(config.get("sys_path_after", []))
    os.chdir(config.get("cwd") or ".")
    result: dict[str, Any] = {"tables": [], "files": [], "error": None, "env_error": None, "options": {}, "excluded": [],
              "filter_errors": [], "revision_failures": 0, "loaded_by": None}
    try:
        result["network_namespace"] = own_network_namespace()  # first: still one thread
        block_network()
        from sqlalchemy import exc as sa_exc

        dialect = None
        if config.get("dialect") in ("mssql", "mysql", "mariadb", "oracle", "postgresql", "sqlite"):
            try:  # SQLAlchemy's own dialects only: a name never reaches the entry points
                from sqlalchemy.dialects import registry

                dialect = registry.load(config["dialect"])()
            except (ImportError, sa_exc.SQLAlchemyError):  # not in this SQLAlchemy: types compiled generically
                dialect = None
        redirect_engines(config.get("dialect_setting"), config.get("dialect"))
        try:
            record_sites()
        except (AttributeError, sa_exc.SQLAlchemyError):  # an older SQLAlchemy without a hook: located by class
            pass
        captured, script = {}, None
        if config.get("config"):
            try:
                captured, script = run_env_py(config)
                result["loaded_by"] = "env.py"
            except BaseException as exc:  # noqa: BLE001 - env.py failed (sys.exit too): the static specs instead
                result["env_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300] if str(exc) \
                    else type(exc).__name__
                captured = {}
        metadatas: list[Any] = []
        if config.get("override") or not captured:
            if not config["specs"]:
                raise RuntimeError(result["env_error"] or "no models")
            for spec in config["specs"]:
                obj = resolve(spec)
                metadatas.extend(obj if isinstance(obj, (list, tuple)) else [obj])
            if result["loaded_by"] is None:
                result["loaded_by"] = "import"
        else:
            if "target_metadata" not in captured:  # autogenerate refuses to run without one
                raise RuntimeError("env.py passes no target_metadata to context.configure()")
            target = captured.get("target_metadata")
            if target is None:
                result["options"] = plain_options(captured)
                result["disabled"] = True
                raise RuntimeError("env.py passes target_metadata=None (no models to compare)")
            metadatas.extend(target if isinstance(target, (list, tuple)) else [target])
        result["options"] = plain_options(captured)
        result["revision_failures"] = import_revisions(script, config.get("files", []))
        by_id: dict[int, Any] = {}
        for md in metadatas:
            for table in md.tables.values():
                by_id[id(table)] = table
        where = sources(by_id)
        shared = shared_lines(by_id.values())
        for key, table in by_id.items():
            info = table_info(table, dialect, shared)
            info["source"] = where.get(key)
            result["tables"].append(info)
        result["excluded"], result["filter_errors"] = evaluate_filters(
            captured, {t.key: t for t in by_id.values()}, config.get("schema") or [])
        result["type_decisions"] = type_decisions(captured, {t.key: t for t in by_id.values()},
                                                  config.get("schema") or [], config.get("dialect"))
        root = os.path.abspath(config.get("root") or ".")
        files = (getattr(m, "__file__", None) for m in list(sys.modules.values()))
        result["files"] = sorted({f for f in files if isinstance(f, str) and "site-packages" not in f
                                  and f.startswith(root)})
    except BaseException as exc:  # noqa: BLE001 - the child's boundary: reported, never a traceback into the editor
        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    with open(os.environ["MIGRATION_LSP_RESULT"], "w", encoding="utf-8") as fh:  # not stdout: ours alone
        json.dump(result, fh)


if __name__ == "__main__":
    main()
