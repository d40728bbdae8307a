"""What a migration's evaluation may read of files other than the migration, never importing
them: `User.__tablename__` from the models.py of the checkout the migrations live in
(interpret). Who may read what is handed to each evaluation (`Outside`): the disk, or an
engine's open buffers; nothing here is shared state, so two engines in one process never see
each other's buffers. Files are read as every workspace file is (project.read_file: bounded,
regular files only, never blocking)."""

from __future__ import annotations

import ast
import stat
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from . import project

MAX_MODULE_BYTES = 2_000_000


class Outside:
    """What an evaluation may read of files other than the migration (`User.__tablename__`
    from models.py): the disk, unless `text_of` gives a file's text instead (the engine's: an
    open buffer, unsaved edits included; or the version the imported models were loaded
    from). Handed to each evaluation, never kept in this module: two engines in one process
    (tests, a pytest plugin next to a server) never read each other's buffers."""

    def __init__(self, text_of: Callable[[Path], str | None] | None = None) -> None:
        self.text_of = text_of

    def tablenames(self, path: Path) -> dict[str, str] | None:
        """class name -> literal `__tablename__` of the file's module-level classes; None
        when there is no such file (nor text) to read."""
        text = self.text_of(path) if self.text_of is not None else None
        if text is not None:
            return _text_tablenames(text)
        try:
            found = path.stat()
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(found.st_mode):  # (a folder, a FIFO...: not this candidate)
            return None
        return _tablenames(str(path), found.st_mtime_ns, found.st_size)


DISK = Outside()  # the disk alone (the CLI's engine has no buffers; features without a replay)


def tablename(near: Path, dotted: str, outside: Outside | None = None) -> str | None:
    """`pkg.models.User` -> `User.__tablename__` when the class body assigns it a string
    literal, read (never imported) from `pkg/models.py` found in a folder above the
    migration file (the checkout the migrations live in), through `outside` (None: the
    disk); None otherwise."""
    module, _, name = dotted.rpartition(".")
    if not module:
        return None
    reader = outside if outside is not None else DISK
    relative = Path(*module.split("."))
    for folder in list(near.parents)[:12]:
        for candidate in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
            found = reader.tablenames(candidate)
            if found is not None:
                return found.get(name)
    return None


@lru_cache(maxsize=256)
def _tablenames(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """`Outside.tablenames` of a regular file on disk (cached by its stat). Read by
    project.read_file, as every workspace file: the open never blocks and the file's kind is
    checked on the opened descriptor, so a FIFO swapped in after the stat() is not read."""
    try:
        return _class_tablenames(project.read_file(path, MAX_MODULE_BYTES))
    except OSError:  # (project.SkippedFile too: too large, or no longer a regular file)
        return {}


@lru_cache(maxsize=16)
def _text_tablenames(text: str) -> dict[str, str]:
    """`_tablenames` of an open buffer's text."""
    return _class_tablenames(text.encode("utf-8", "surrogatepass")[:MAX_MODULE_BYTES])


def _class_tablenames(source: bytes) -> dict[str, str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    out = {}
    for stmt in tree.body:
        if not isinstance(stmt, ast.ClassDef):
            continue
        for item in stmt.body:
            target = item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else \
                item.target if isinstance(item, ast.AnnAssign) else None
            value = getattr(item, "value", None)
            if isinstance(target, ast.Name) and target.id == "__tablename__" \
                    and isinstance(value, ast.Constant) and isinstance(value.value, str):
                out[stmt.name] = value.value
    return out
