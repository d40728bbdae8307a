"""`Path.resolve()` for a batch of paths, each folder resolved once.

The server names every file it is told about by its resolved path (`features.uri_to_path`:
a symlinked migrations folder, a symlinked file are one file under every name). Resolving
costs an `lstat` per component in Python's `realpath`, 25-40 µs a path; a checkout or a pull
sends the file watcher's events for thousands of files at once, and the server handles them
on its event loop. They share a handful of folders: a `Resolver` resolves each folder once
and then only asks whether the file itself is a symlink (one `lstat`), which gives exactly
what `Path.resolve()` gives. It is made for one batch and then dropped, so a folder turned
into a symlink later is seen by the next batch.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class Resolver:
    """`resolver(path) == path.resolve()`, with each parent folder resolved once."""

    def __init__(self) -> None:
        self._folders: dict[str, Path] = {}  # a folder as given -> resolved
        self._resolved: set[str] = set()  # what it returned: resolving it again gives itself

    def __call__(self, path: Path) -> Path:
        text = str(path)  # (strings: hashing a Path costs more than the lstat)
        if text in self._resolved:
            return path
        parent, _, name = text.rpartition("/")
        if os.name != "posix" or not parent.startswith("/") or name in ("", ".", ".."):
            found = path.resolve()  # (Windows' resolve also normalises case: not ours to copy)
        else:
            folder = self._folders.get(parent)
            if folder is None:
                folder = self._folders[parent] = path.parent.resolve()
            found = _child(folder, name)
            try:
                link = stat.S_ISLNK(os.lstat(found).st_mode)
            except OSError:  # missing (a deleted file's event), unreadable: realpath keeps the name too
                link = False
            if link:
                found = found.resolve()
        self._resolved.add(str(found))
        return found


def _child(folder: Path, name: str) -> Path:
    """folder / name, without parsing `name` again (it holds no separator)."""
    make = getattr(folder, "_make_child_relpath", None)  # (pathlib's fast way, where there is one)
    return make(name) if make is not None else folder / name
