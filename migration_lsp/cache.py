"""Persistent cache: results that took parsing and replaying, kept between runs.

Why: a `check` in CI or a server start on thousands of revisions should not redo the
work for files that did not change since the last run. Every entry is keyed by a hash of
everything that produced it (file contents, the graph below a revision, this tool's and
its libraries' versions), so a stale entry can only be missed, never used. It lives in the
user's cache directory (never in the workspace), one file per workspace root, written
atomically; the folder is versioned and safe to delete at any time. Values are plain data
(marshal: fast to load, and loading runs no code), except the discovery records, which
are unpickled with only the project's own record classes and paths allowed (engine.py);
anything unreadable is no cache.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import tempfile
from pathlib import Path

from . import __version__

FORMAT = 1  # bump when the layout of what is stored changes
DISABLE_ENV = "MIGRATION_LSP_NO_CACHE"
DIR_ENV = "MIGRATION_LSP_CACHE_DIR"
MAX_BYTES = 200_000_000  # a cache file larger than this is ignored (and rewritten smaller)


def cache_root() -> Path | None:
    """Where caches live: $MIGRATION_LSP_CACHE_DIR, else the platform's user cache folder
    ($XDG_CACHE_HOME or ~/.cache, ~/Library/Caches, %LOCALAPPDATA%); None when disabled."""
    if os.environ.get(DISABLE_ENV, "").strip() not in ("", "0"):
        return None
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "migration-lsp"


def _library_versions() -> str:
    """Which Alembic and SQLAlchemy evaluate the migrations (a new SQLAlchemy may read a type
    differently): where each is installed and when its __init__.py was written, found without
    importing either (that takes 0.4 s) or importlib.metadata."""
    from importlib.util import find_spec

    out = []
    for name in ("alembic", "sqlalchemy"):
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

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._old: dict[str, dict] = {}
        self._new: dict[str, dict] = {}
        self._dirty = False
        if path is not None:
            try:
                if path.stat().st_size <= MAX_BYTES:
                    loaded = marshal.loads(path.read_bytes())
                    if isinstance(loaded, dict):
                        self._old = {k: v for k, v in loaded.items() if isinstance(v, dict)}
            except (OSError, EOFError, ValueError, TypeError):
                self._old = {}

    @classmethod
    def for_root(cls, root: Path) -> Store:
        base = cache_root()
        if base is None:
            return cls(None)
        name = digest(str(root), __version__, sys.version, _library_versions())
        return cls(base / f"v{FORMAT}" / f"{name}.marshal")

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def get(self, section: str, key: str):
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
        section_map = self._new.setdefault(section, {})
        if section_map.get(key) != value:
            section_map[key] = value
            self._dirty = True

    def save(self) -> bool:
        """Write what this run used and produced; never raises. True when written."""
        if self.path is None:
            return False
        if not self._dirty and all(set(self._new.get(s, {})) == set(v) for s, v in self._old.items()):
            return False
        try:
            data = marshal.dumps(self._new)
        except ValueError:  # something not plain slipped in: keep the old file
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".marshal")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
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
