"""Persistent cache: results that took parsing and replaying, kept between runs.

Why: a `check` in CI or a server start on thousands of revisions should not redo the
work for files that did not change since the last run. Every entry is keyed by a hash of
everything that produced it (file contents, the graph below a revision, this tool's and
its libraries' versions), so a stale entry can only be missed, never used. It lives in the
user's cache directory (never in the workspace: a relative $XDG_CACHE_HOME is ignored, as
the XDG spec says), one file per workspace root, written atomically; the folder is
versioned and safe to delete at any time. Values are plain data (marshal: fast to load,
and loading runs no code), except the discovery records, which are unpickled with only
the project's own record classes and paths allowed (engine.py); anything unreadable is no
cache.

The cache decides what is reported, so nobody else may write it: folders are created
0700 and files 0600; a folder or file that is not the user's own, or that others may
write, is not used (said once); each file carries an HMAC-SHA256 under a random per-user
key (a 0600 file in the cache folder), checked before anything in it is decoded, so a
forged or foreign file is a miss. Callers still check the shape of every entry.
"""

from __future__ import annotations

import hashlib
import hmac
import marshal
import os
import stat
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from . import __version__
from .core import say_once

FORMAT = 4  # bump when the layout of what is stored changes, or what a stored report holds
# (4: identical findings once, checks.apply_filters: a report of 3 may hold a loop's duplicates)
DISABLE_ENV = "MIGRATION_LSP_NO_CACHE"
DIR_ENV = "MIGRATION_LSP_CACHE_DIR"
MAX_BYTES = 200_000_000  # a cache file larger than this is ignored (and rewritten smaller)
MAGIC = b"migration-lsp cache\n"
KEY_FILE = "key"
KEY_BYTES = 32

def cache_root() -> Path | None:
    """Where caches live: $MIGRATION_LSP_CACHE_DIR, else the platform's user cache folder
    ($XDG_CACHE_HOME or ~/.cache, ~/Library/Caches, %LOCALAPPDATA%); None when disabled.
    A relative folder (it would be relative to the workspace) is ignored."""
    if os.environ.get(DISABLE_ENV, "").strip() not in ("", "0"):
        return None
    chosen = os.environ.get(DIR_ENV)
    if chosen:
        where = Path(chosen).expanduser()
        if where.is_absolute():
            return where
        say_once(f"{DIR_ENV}={chosen!r} is not an absolute path; ignored")
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "migration-lsp"


def _private(st: os.stat_result, what: Path) -> bool:
    """Is this folder/file the user's own and not writable by others? (Always on Windows.)"""
    if not hasattr(os, "geteuid"):
        return True
    if st.st_uid != os.geteuid():
        say_once(f"cache {what} belongs to another user (uid {st.st_uid}); the cache is not used")
        return False
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        say_once(f"cache {what} is writable by others (mode {stat.S_IMODE(st.st_mode):o}); the cache is not used")
        return False
    return True


def _private_dir(path: Path, create: bool) -> bool:
    """The folder exists (created 0700 when `create`), is a real folder and private."""
    try:
        if create and not os.path.lexists(path):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.mkdir(path, 0o700)
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        say_once(f"cache {path} is not a folder; the cache is not used")
        return False
    return _private(st, path)


def _open_private(path: Path) -> int | None:
    """A private regular cache file opened for reading (no link followed, never blocking)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode) or not _private(st, path) or st.st_size > MAX_BYTES:
        os.close(fd)
        return None
    return fd


def _read_fd(fd: int) -> bytes:
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_BYTES:
                return b""
        return b"".join(chunks)
    finally:
        os.close(fd)


def user_key(root: Path) -> bytes | None:
    """The per-user HMAC key (KEY_BYTES random bytes in `root`/key, 0600), made on first use;
    None when the folder or the key is not private (then there is no cache)."""
    if not _private_dir(root, create=True):
        return None
    path = root / KEY_FILE
    fd = _open_private(path)
    if fd is not None:
        try:
            key = _read_fd(fd)
        except OSError:
            key = b""
        if len(key) == KEY_BYTES:
            return key
    elif os.path.lexists(path):
        try:  # ours to replace only when the folder is ours (checked above)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_uid != getattr(os, "geteuid", lambda: st.st_uid)():
                return None  # planted by someone else: said by _open_private
        except OSError:
            return None
    key = os.urandom(KEY_BYTES)  # (what secrets.token_bytes returns)
    try:
        fd, tmp = _mkstemp(root, ".tmp-key-")
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        os.replace(tmp, path)
    except OSError:
        return None
    return key


def _mkstemp(folder: Path, prefix: str, suffix: str = "") -> tuple[int, str]:
    """tempfile.mkstemp's promise — a new file of ours, mode 0600, never one that was there
    (O_EXCL, no symlink followed) — without importing tempfile, shutil and random: every
    check writes the cache, and those imports were ~3 % of a graph-only check's instructions."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{os.urandom(8).hex()}{suffix}")
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


PACKAGE = Path(__file__).resolve().parent


def _own_code(package: Path | None = None) -> str:
    """This package's version and a fingerprint of its code (how many .py files, their total
    size, the newest change): a development install keeps its version number while its rules
    change, and must not be answered with what the old code stored (a message changed in
    checks/, a new rule). About 80 stats."""
    count = size = newest = 0
    for folder, dirs, files in os.walk(package or PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                try:
                    found = os.stat(os.path.join(folder, name))
                except OSError:
                    continue
                count, size, newest = count + 1, size + found.st_size, max(newest, found.st_mtime_ns)
    return f"{__version__} {count} {size} {newest}"


def _library_versions() -> str:
    """Which Alembic, SQLAlchemy, sqlglot and pglast evaluate the migrations (a new SQLAlchemy
    may read a type differently, a new sqlglot or pglast parse literal SQL differently): where
    each is installed and when its __init__.py was written, found without importing any (that
    takes 0.4 s) or importlib.metadata."""
    from importlib.util import find_spec

    out = []
    for name in ("alembic", "sqlalchemy", "sqlglot", "pglast"):
        try:
            spec = find_spec(name)
            origin = spec.origin if spec and spec.origin else "?"
            out.append(f"{name}={origin}@{os.stat(origin).st_mtime_ns if origin != '?' else 0}")
        except (ImportError, ValueError, OSError):
            out.append(f"{name}=?")
    return " ".join(out)


def digest(*parts: str | bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


class Store:
    """One workspace root's cache: sections of key -> plain value. `get` marks an entry as
    used; `save` keeps only used and new entries, so the file tracks the project instead of
    growing with every edit ever made."""

    def __init__(self, path: Path | None, key: bytes | None = None) -> None:
        self.path = path if key is not None else None
        self._key = key
        self._old: dict[str, dict] = {}
        self._new: dict[str, dict] = {}
        self._dirty = False
        # the server's rescan reads and writes the discovery section in a thread (engine.folders)
        self._lock = threading.Lock()
        if self.path is not None:
            self._old = self._load(self.path)

    def _load(self, path: Path) -> dict[str, dict]:
        """The file's sections, when it is private, of this format and its HMAC checks."""
        if not _private_dir(path.parent, create=False):
            return {}
        fd = _open_private(path)
        if fd is None:
            return {}
        try:
            data = _read_fd(fd)
        except OSError:
            return {}
        mac, body = data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
        if not data.startswith(MAGIC) or not hmac.compare_digest(mac, self._mac(body)):
            return {}
        try:
            loaded = marshal.loads(body)
        except (EOFError, ValueError, TypeError):
            return {}
        if not isinstance(loaded, dict):
            return {}
        return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, dict)}

    def _mac(self, body: bytes) -> bytes:
        """The HMAC of MAGIC + body, without making that concatenation (a copy of the whole
        body; the server saves a body of megabytes at idle moments, and its peak counts)."""
        assert self._key is not None
        mac = hmac.new(self._key, MAGIC, hashlib.sha256)
        mac.update(body)
        return mac.digest()

    @classmethod
    def for_root(cls, root: Path) -> Store:
        base = cache_root()
        if base is None:
            return cls(None)
        key = user_key(base)
        if key is None:
            return cls(None)
        name = digest(str(root), _own_code(), sys.version, _library_versions())
        return cls(base / f"v{FORMAT}" / f"{name}.marshal", key)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def get(self, section: str, key: str):
        with self._lock:
            new = self._new.setdefault(section, {})
            if key in new:
                return new[key]
            value = self._old.get(section, {}).get(key)
            if value is not None:
                new[key] = value
            return value

    def put(self, section: str, key: str, value) -> None:
        """`value` must be marshal-able plain data (None is not stored)."""
        if value is None or self.path is None:
            return
        with self._lock:
            section_map = self._new.setdefault(section, {})
            if section_map.get(key) != value:
                section_map[key] = value
                self._dirty = True

    def forget(self, section: str, keys: Iterable[str]) -> None:
        """What the caller will not ask for again (the server's memo evicted it): not kept in
        memory nor written (a long session makes new results after every edit, and each
        save writes all of them)."""
        with self._lock:
            section_map = self._new.get(section)
            if section_map:
                for key in keys:
                    if section_map.pop(key, None) is not None:
                        self._dirty = True

    def save(self) -> bool:
        """Write what this run used and produced; never raises. True when written."""
        with self._lock:
            return self._save()

    def _save(self) -> bool:
        if self.path is None:
            return False
        if not self._dirty and all(set(self._new.get(s, {})) == set(v) for s, v in self._old.items()):
            return False
        try:
            body = marshal.dumps(self._new)
        except ValueError:  # something not plain slipped in (a str subclass): leave only it out
            self._new = _plain_only(self._new)
            body = marshal.dumps(self._new)
        if not _private_dir(self.path.parent, create=True):
            return False
        try:
            fd, tmp = _mkstemp(self.path.parent, ".tmp-", ".marshal")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(MAGIC + self._mac(body))
                    out.write(body)
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            return False
        self._old = {k: dict(v) for k, v in self._new.items()}
        self._dirty = False
        return True


def _plain_only(sections: dict[str, dict]) -> dict[str, dict]:
    """The entries marshal can write: one value it cannot (a finding whose data holds a
    SQLAlchemy `quoted_name`, a str subclass) must cost that entry, not the whole file."""
    kept: dict[str, dict] = {}
    for section, entries in sections.items():
        kept[section] = {}
        for key, value in entries.items():
            try:
                marshal.dumps(value)
            except ValueError:
                continue
            kept[section][key] = value
    return kept
