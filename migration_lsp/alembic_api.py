"""Alembic's private names, in one place.

A new revision must look exactly like `alembic revision` output, and only Alembic's private
helpers know its file name (file_template, slug rules, truncation) and its create date
(the `timezone` option); a dropped table's types are only on the op it reverses. Every use
of a `_`-name of Alembic goes through this module, and tests/test_alembic_api.py fails
loudly when an installed Alembic changes one of them (pyproject.toml also keeps `alembic`
below the next major version).
"""

from __future__ import annotations

import datetime
import inspect
from pathlib import Path
from typing import Any

from alembic.operations import ops as alembic_ops
from alembic.script import ScriptDirectory

# name -> the parameters it is called with (self included), checked by `problems()`
SIGNATURES: dict[str, tuple[str, ...]] = {
    "ScriptDirectory._rev_path": ("self", "path", "rev_id", "message", "create_date"),
    "ScriptDirectory._generate_create_date": ("self",),
}
# ops whose constructor keeps the op they are the reverse of, as `_reverse`
REVERSIBLE_DROPS = (alembic_ops.DropTableOp, alembic_ops.DropColumnOp, alembic_ops.DropIndexOp,
                    alembic_ops.DropConstraintOp)


class AlembicChanged(RuntimeError):
    """The installed Alembic no longer has a private name this tool relies on."""


def _member(name: str) -> Any:
    owner, attr = name.split(".")
    found = getattr({"ScriptDirectory": ScriptDirectory}[owner], attr, None)
    if found is None:
        raise AlembicChanged(f"the installed Alembic has no {name}: migration-lsp needs an update")
    return found


def rev_path(directory: ScriptDirectory, folder: Path, rev_id: str, message: str | None,
             create_date: datetime.datetime) -> Path:
    """The path `alembic revision` gives a new revision file in `folder`."""
    return Path(_member("ScriptDirectory._rev_path")(directory, folder, rev_id, message, create_date))


def generate_create_date(directory: ScriptDirectory) -> datetime.datetime:
    """The `Create Date` of a new revision, in the environment's `timezone` (Alembic raises
    CommandError for an unknown one)."""
    return _member("ScriptDirectory._generate_create_date")(directory)


def reverse_of(op: Any) -> Any | None:
    """The op a drop op was made from by `.reverse()` (it holds the dropped columns' types)."""
    return getattr(op, "_reverse", None)


def problems() -> list[str]:
    """What of the above the installed Alembic does not provide as expected (empty: all is well)."""
    out = []
    for name, expected in SIGNATURES.items():
        try:
            member = _member(name)
        except AlembicChanged as exc:
            out.append(str(exc))
            continue
        params = tuple(inspect.signature(member).parameters)
        if params != expected:
            out.append(f"{name} takes {params}, not {expected}")
    for cls in REVERSIBLE_DROPS:
        if "_reverse" not in inspect.signature(cls.__init__).parameters:
            out.append(f"{cls.__name__} no longer keeps `_reverse`")
    return out
