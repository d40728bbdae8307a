"""Alembic's private names, in one place.

A new revision must look exactly like `alembic revision` output, and only Alembic's private
helpers know its file name (file_template, slug rules, truncation) and its create date
(the `timezone` option); a dropped table's types are only on the op it reverses. The children
that run the project's migrations need Alembic's steps one revision at a time (what
`command.upgrade` runs inside env.py) and its revision files one by one (a file that fails
to import is counted, the rest still load). Some of Alembic's memoized properties are filled
in ahead (the config files' contents as we read them, a static inspector), a write into an
object's `__dict__` that only works while they stay memoized. Every use of a `_`-name of
Alembic, and every such write, goes through this module, and tests/test_alembic_api.py fails loudly when an installed Alembic changes one
of them (pyproject.toml also keeps `alembic` below the next major version).

Standalone on purpose (standard library and Alembic only, Python 3.8 syntax): the children
(model_child.py, truth_child.py) run with the project's interpreter, without migration_lsp,
and load this file by its path (child.sibling); there the project's own Alembic answers,
which the version bound does not cover, so they check `problems(CHILD_NAMES)` first
(model_child.alembic_api).
"""

from __future__ import annotations

import datetime
import inspect
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alembic.ddl.impl import DefaultImpl
from alembic.operations import ops as alembic_ops
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory

# name -> the parameters it is called with (self included; None: a property), checked by `problems()`
SIGNATURES: dict[str, tuple[str, ...] | None] = {
    "ScriptDirectory._rev_path": ("self", "path", "rev_id", "message", "create_date"),
    "ScriptDirectory._generate_create_date": ("self",),
    "ScriptDirectory._upgrade_revs": ("self", "destination", "current_rev"),
    "ScriptDirectory._downgrade_revs": ("self", "destination", "current_rev"),
    "ScriptDirectory._stamp_revs": ("self", "revision", "heads"),
    "ScriptDirectory._version_locations": None,
    "Script._list_py_dir": ("scriptdir", "path"),
    "Script._from_path": ("scriptdir", "path"),
    "DefaultImpl._skip_functional_indexes": ("self", "metadata_indexes", "conn_indexes"),
}
# what the children use (the rest is the server's, on the Alembic pyproject.toml bounds)
CHILD_NAMES = ("ScriptDirectory._upgrade_revs", "ScriptDirectory._downgrade_revs", "ScriptDirectory._stamp_revs",
               "ScriptDirectory._version_locations", "Script._list_py_dir", "Script._from_path")
# memoized properties (computed on first read, then kept in the instance's __dict__) that are
# filled in ahead with what this tool computed itself; checked by `problems()`
MEMOIZED = ("Config.file_config", "Config.toml_alembic_config", "AutogenContext.inspector")
# ops whose constructor keeps the op they are the reverse of, as `_reverse`
REVERSIBLE_DROPS = (alembic_ops.DropTableOp, alembic_ops.DropColumnOp, alembic_ops.DropIndexOp,
                    alembic_ops.DropConstraintOp)


class AlembicChanged(RuntimeError):
    """The installed Alembic no longer has a private name this tool relies on."""


def _member(name: str) -> Any:
    owner, attr = name.split(".")
    found = getattr({"ScriptDirectory": ScriptDirectory, "Script": Script, "DefaultImpl": DefaultImpl}[owner], attr,
                    None)
    if found is None:
        raise AlembicChanged(f"the installed Alembic has no {name}: migration-lsp needs an update")
    return found


def _memoized_owner(name: str) -> Any:
    # (imported here: the children load this module, and need neither)
    from alembic.autogenerate.api import AutogenContext
    from alembic.config import Config

    return {"Config": Config, "AutogenContext": AutogenContext}[name.split(".")[0]]


def _memoized_problem(owner: type, attr: str) -> str | None:
    """Why `owner.attr` cannot be filled in ahead (None: it can). A memoized property is a
    descriptor without `__set__`: the value in the instance's __dict__ wins over it. Were it
    a plain property, a value put there would be silently ignored."""
    descriptor = inspect.getattr_static(owner, attr, None)
    if descriptor is None:
        return f"the installed Alembic has no {owner.__name__}.{attr}: migration-lsp needs an update"
    if not hasattr(type(descriptor), "__get__") or hasattr(type(descriptor), "__set__"):
        return f"{owner.__name__}.{attr} is no longer a memoized property: migration-lsp needs an update"
    return None


def _fill_memoized(obj: Any, attr: str, value: Any) -> None:
    problem = _memoized_problem(type(obj), attr)
    if problem is not None:
        raise AlembicChanged(problem)
    obj.__dict__[attr] = value


def fill_file_config(config: Any, parser: Any) -> None:
    """Make `config.file_config` (an alembic.config.Config) the ConfigParser of the ini file
    as this tool read it (size-bounded, interpolation budgeted) instead of Alembic's own read."""
    _fill_memoized(config, "file_config", parser)


def fill_toml_config(config: Any, section: dict) -> None:
    """Make `config.toml_alembic_config` the [tool.alembic] table of pyproject.toml as this
    tool read it."""
    _fill_memoized(config, "toml_alembic_config", section)


def fill_inspector(autogen: Any, inspector: Any) -> None:
    """Make `autogen.inspector` (an AutogenContext without a connection) `inspector`: the
    comparison then reads the replayed schema instead of a database."""
    _fill_memoized(autogen, "inspector", inspector)


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


def drop_constraint(name: Any, table_name: str, type_: str | None, schema: str | None,
                    reverse: alembic_ops.AddConstraintOp) -> alembic_ops.DropConstraintOp:
    """A drop_constraint op whose `.reverse()` is `reverse`, as Alembic's own `.reverse()` of an
    add op makes it (its downgrade renders the whole constraint)."""
    return alembic_ops.DropConstraintOp(name, table_name, type_=type_, schema=schema, _reverse=reverse)


def upgrade_steps(directory: ScriptDirectory, destination: str, heads: Any) -> list:
    """The steps `alembic upgrade destination` runs from `heads` (env.py's `fn`)."""
    return _member("ScriptDirectory._upgrade_revs")(directory, destination, heads)


def downgrade_steps(directory: ScriptDirectory, destination: str, heads: Any) -> list:
    """The steps `alembic downgrade destination` runs from `heads`."""
    return _member("ScriptDirectory._downgrade_revs")(directory, destination, heads)


def stamp_steps(directory: ScriptDirectory, revision: str, heads: Any) -> list:
    """The steps `alembic stamp revision` runs from `heads`."""
    return _member("ScriptDirectory._stamp_revs")(directory, revision, heads)


def revision_files(directory: ScriptDirectory) -> list[str]:
    """The files ScriptDirectory considers in its version locations, in its order."""
    _member("ScriptDirectory._version_locations")
    lister = _member("Script._list_py_dir")
    return [str(path) for location in directory._version_locations if os.path.isdir(str(location))
            for path in lister(directory, location)]


def load_revision(directory: ScriptDirectory, path: str) -> Any:
    """Import one revision file as ScriptDirectory does (None: not a revision file's name)."""
    return _member("Script._from_path")(directory, path)


def skip_functional_indexes(impl: DefaultImpl, metadata_indexes: Any, conn_indexes: Any) -> None:
    """Alembic's own skip of the models' expression indexes a SQLite database cannot reflect
    (what `alembic check` does on SQLite), applied by the impl of the comparison's dialect."""
    _member("DefaultImpl._skip_functional_indexes")
    impl._skip_functional_indexes(metadata_indexes, conn_indexes)


def in_external_transaction(context: MigrationContext) -> bool:
    """Was env.py's connection already in a transaction when it configured the context (then
    Alembic runs every step in that one transaction)?"""
    return bool(getattr(context, "_in_external_transaction", False))


def problems(names: Iterable[str] = tuple(SIGNATURES)) -> list[str]:
    """What of `names` (and, for the server's names, the drop ops' `_reverse` and the
    memoized properties filled in ahead) the installed Alembic does not provide as expected
    (empty: all is well)."""
    out = []
    for name in names:
        expected = SIGNATURES[name]
        try:
            member = _member(name)
        except AlembicChanged as exc:
            out.append(str(exc))
            continue
        if expected is None:
            continue  # a property: that it exists is what can be checked
        params = inspect.signature(member).parameters
        extra = list(params.values())[len(expected):]  # (new optional parameters change nothing)
        if tuple(params)[:len(expected)] != expected or any(p.default is p.empty for p in extra):
            out.append(f"{name} takes {tuple(params)}, not {expected}")
    if set(names) - set(CHILD_NAMES):
        for name in MEMOIZED:
            owner = _memoized_owner(name)
            problem = _memoized_problem(owner, name.split(".")[1])
            if problem is not None:
                out.append(problem)
        for cls in REVERSIBLE_DROPS:
            if "_reverse" not in inspect.signature(cls.__init__).parameters:
                out.append(f"{cls.__name__} no longer keeps `_reverse`")
    return out

