"""Stage `render`: the text and path of a new revision file, as `alembic revision` writes it.

The template is rendered with the same arguments Alembic's `ScriptDirectory.generate_revision`
passes, the id comes from Alembic's `rev_id`, and the file name from Alembic's own `_rev_path`
(file_template, slug rules, truncation; through alembic_api). Nothing is written here: callers
turn the result into an editor edit or, for the CLI, a new file.

The environment's own `script.py.mako` is project code (a `<% %>` block runs Python): it is
rendered only when trusted, and then in a sandboxed child (render_child.py through child.py),
never in our process. Untrusted, or when the child fails, Alembic's own generic template
(part of the installed alembic, not of the project) is rendered here, and `note` says why.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from alembic import util as alembic_util
from alembic.script import ScriptDirectory
from alembic.script.revision import tuple_rev_as_scalar
from mako.template import Template

from . import alembic_api, child
from .graph import RevisionGraph
from .project import Environment
from .schema import op_table

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext

GENERIC_TEMPLATE = Path(alembic_util.__file__).resolve().parent.parent / "templates" / "generic" / "script.py.mako"
RENDER_CHILD = Path(__file__).with_name("render_child.py")
RENDER_TIMEOUT = 10.0  # seconds for the project's template to render
RENDER_MEMORY = 1024**3


def clean_message(message: str) -> str:
    """One line, no control characters, safe inside the template's triple-quoted docstring."""
    text = " ".join("".join(ch for ch in message if ch.isprintable() or ch.isspace()).split())
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') or "empty message"


class UnusableFileTemplate(ValueError):
    """The environment's `file_template` cannot name a file (an unknown key, a bad format)."""


@dataclass(frozen=True)
class NewRevision:
    rev_id: str
    path: Path
    text: str
    template: Path
    note: str | None = None  # why the project's template was not used


def version_directory(env: Environment, graph: RevisionGraph, parents: Sequence[str]) -> Path:
    """Where Alembic would put a revision on top of `parents`: the only version location, or
    the folder of the first parent's file (Alembic's rule for several locations)."""
    for parent in parents:
        script = graph.script(parent)
        if script is not None and len(env.version_locations) != 1:
            return script.path.parent
    if env.version_locations:
        return env.version_locations[0]
    return graph.scripts[0].path.parent if graph.scripts else env.root


def render_revision(
    env: Environment,
    graph: RevisionGraph,
    message: str,
    parents: Sequence[str],
    *,
    branch_labels: Sequence[str] = (),
    depends_on: Sequence[str] = (),
    upgrades: str = "",
    downgrades: str = "",
    imports: str = "",
    exists: Callable[[Path], bool] = Path.exists,
    rev_id: str | None = None,
    trusted: bool = False,
) -> NewRevision:
    """A new revision on top of `parents`. `exists` says whether a path is taken (on disk or
    as an open buffer): a clash gets a fresh id, so an existing file is never overwritten.
    `trusted`: the environment's own template may be rendered (in a child process)."""
    directory = version_directory(env, graph, parents)
    base = next(p for p in (env.script_location, directory.parent, env.root, Path.cwd()) if p and p.is_dir())
    helper = ScriptDirectory(
        str(base),
        file_template=env.file_template,
        truncate_slug_length=env.truncate_slug_length,
        version_locations=[str(directory)],
        timezone=env.timezone,
    )
    try:
        create_date = alembic_api.generate_create_date(helper)
    except alembic_util.CommandError:
        helper.timezone = None
        create_date = alembic_api.generate_create_date(helper)
    for _ in range(100):
        revision = rev_id or alembic_util.rev_id()
        try:
            path = alembic_api.rev_path(helper, directory, revision, message, create_date)
        except KeyError as exc:  # Alembic formats file_template with the keys it knows
            raise UnusableFileTemplate(f"file_template names an unknown key {exc}: use rev, slug, epoch, year, "
                                       "month, day, hour, minute, second") from None
        except (ValueError, TypeError) as exc:
            raise UnusableFileTemplate(f"cannot name the new revision file: {' '.join(str(exc).split())}") from None
        inside = path.resolve().is_relative_to(directory.resolve())
        if inside and not exists(path) and revision not in graph.by_id:
            break
        rev_id = None  # taken: try a fresh id
    else:  # pragma: no cover - 100 uuid clashes
        raise RuntimeError("cannot find a free revision id")

    kwargs = {
        "up_revision": revision,
        "down_revision": tuple_rev_as_scalar(tuple(parents)),
        "branch_labels": alembic_util.to_tuple(tuple(branch_labels) or None),
        "depends_on": tuple_rev_as_scalar(tuple(depends_on)),
        "create_date": create_date,
        "comma": alembic_util.format_as_comma,
        "message": clean_message(message),
        "upgrades": upgrades,
        "downgrades": downgrades,
        "imports": imports,
    }
    template, note = env.template_path, None
    if template is not None and not trusted:
        note = "the workspace is not trusted: new revisions use Alembic's generic template, not script.py.mako"
    elif template is not None:
        try:
            return NewRevision(revision, path, render_in_child(template, kwargs, env), template)
        except child.ChildError as exc:
            note = f"{template} could not be rendered ({exc}): Alembic's generic template was used"
    text = Template(filename=str(GENERIC_TEMPLATE)).render_unicode(**kwargs)
    return NewRevision(revision, path, text, GENERIC_TEMPLATE, note)


def render_in_child(template: Path, kwargs: dict, env: Environment) -> str:
    """The project's template rendered by Mako in a sandboxed child; ChildError if that fails."""
    import json

    data = {k: v for k, v in kwargs.items() if k != "comma"}
    data["create_date"] = kwargs["create_date"].isoformat()
    cwd = next((p for p in (env.script_location, env.root) if p and p.is_dir()), template.parent)
    out = child.run(sys.executable, str(RENDER_CHILD), [json.dumps({"template": str(template), "kwargs": data})],
                    cwd=str(cwd), timeout=RENDER_TIMEOUT, memory=RENDER_MEMORY)
    try:
        result = json.loads(out)
    except ValueError:
        raise child.ChildError("unreadable result") from None
    if not isinstance(result, dict) or not isinstance(result.get("text"), str):
        error = result.get("error") if isinstance(result, dict) else None
        raise child.ChildError(str(error or "no text"))
    return result["text"]


def group_ops(ops: Sequence) -> list:
    """Ops arranged as autogenerate arranges them: table-level ops (columns, indexes,
    constraints, comments) inside a `ModifyTableOps` per table, consecutive runs only so the
    order (and so foreign-key dependencies) is kept. Rendered with `render_as_batch`, each
    group becomes a `with op.batch_alter_table(...)` block."""
    from alembic.operations import ops as alembic_ops

    # ops that stand alone (top level) in autogenerate's output
    top_level = (alembic_ops.CreateTableOp, alembic_ops.DropTableOp, alembic_ops.RenameTableOp,
                 alembic_ops.ModifyTableOps, alembic_ops.ExecuteSQLOp, alembic_ops.BulkInsertOp)
    out: list = []
    for op in ops:
        name, schema = (None, None) if isinstance(op, top_level) else op_table(op)
        if not name:
            out.append(op)
            continue
        last = out[-1] if out else None
        if isinstance(last, alembic_ops.ModifyTableOps) and (last.table_name, last.schema) == (name, schema):
            last.ops.append(op)
        else:
            out.append(alembic_ops.ModifyTableOps(name, [op], schema=schema))
    return out


def _migration_context(dialect: str | None):
    """A MigrationContext for the environment's dialect, without a database: Alembic's
    per-dialect renderer spells e.g. `postgresql.JSONB(astext_type=sa.Text())`."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import ArgumentError

    if dialect:
        try:
            return MigrationContext.configure(dialect_name=dialect)
        except ArgumentError:  # a dialect that is not installed (NoSuchModuleError is one)
            pass
    return None


def _dialect_of_types(ops: Sequence) -> str | None:
    """The dialect whose types the ops use (`postgresql.JSONB`...), when the environment
    names none: its renderer is the one that writes them correctly."""
    import sqlalchemy as sa

    from .compare import type_dialect

    todo, seen = list(ops), 0
    while todo and seen < 10_000:
        seen += 1
        op = todo.pop()
        for name in ("ops", "columns"):
            todo.extend(x for x in (getattr(op, name, None) or ()) if not isinstance(x, str))
        for inner in (getattr(op, "column", None), alembic_api.reverse_of(op)):
            if inner is not None:
                todo.append(inner)
        types_ = [getattr(op, n, None) for n in ("type", "modify_type", "existing_type")]
        for type_ in types_:
            if isinstance(type_, sa.types.TypeEngine) and (found := type_dialect(type_)):
                return found
    return None


def render_ops(ops: Sequence, render_as_batch: bool = False, dialect: str | None = None) -> tuple[str, set[str]]:
    """Python source for a list of Alembic ops (Alembic's own renderer), and the imports it
    needs (e.g. `from sqlalchemy.dialects import postgresql`). `render_as_batch` as in
    env.py's `context.configure(render_as_batch=True)` (what SQLite projects need)."""
    from alembic.autogenerate import render_python_code
    from alembic.operations import ops as alembic_ops

    seen: dict[str, object] = {}

    def render_item(type_: str, obj: object, context: AutogenContext) -> str | Literal[False]:
        seen["context"] = context
        source = getattr(obj, "source", None) if type_ == "type" else None
        module = getattr(obj, "module", None)
        if source and module:  # a project type known by its repr (from the models child)
            context.imports.add(f"import {module}")
            return f"{module}.{source}"
        if source:  # a type copied from a migration that we could not evaluate
            return source
        return False

    text = render_python_code(alembic_ops.UpgradeOps(ops=group_ops(ops)), render_item=render_item,
                              render_as_batch=render_as_batch,
                              migration_context=_migration_context(dialect or _dialect_of_types(ops)))
    context = seen.get("context")
    return text, set(getattr(context, "imports", set()) or set())


def render_migration(ops: Sequence, render_as_batch: bool = False,
                     dialect: str | None = None) -> tuple[str, str, str]:
    """(upgrade body, downgrade body, imports) of a revision applying `ops`: the downgrade is
    Alembic's `.reverse()` of them, as `alembic revision --autogenerate` writes it."""
    from alembic.operations import ops as alembic_ops

    grouped = group_ops(ops)
    upgrades, up_imports = render_ops(grouped, render_as_batch, dialect)
    downgrades, down_imports = render_ops(alembic_ops.UpgradeOps(ops=grouped).reverse().ops, render_as_batch,
                                          dialect)
    return upgrades, downgrades, "\n".join(sorted(up_imports | down_imports))
