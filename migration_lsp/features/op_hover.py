"""Hover on an `op.*` / `batch_op.*` call: the SQL Alembic would emit for it (its own offline
`--sql` rendering), on PostgreSQL the lock each statement takes, on what, whether it scans or
rewrites the table and what that blocks, and the table's columns as they are at that point
of the history (the replayed schema before the call)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from lsprotocol import types

from .. import pglocks
from ..engine import EnvironmentState
from ..evaluate import EvaluatedOp
from ..interpret import evaluate_function
from ..project import sqlalchemy_dialect
from ..replay import apply_op
from ..schema import SchemaState, TableState, op_table
from ..scripts import MigrationScript
from . import md_text, replayed

MAX_COLUMNS = 40


@dataclass(frozen=True)
class OpAtCursor:
    state: EnvironmentState
    script: MigrationScript
    function: str  # "upgrade" / "downgrade"
    ops: tuple[EvaluatedOp, ...]  # every op of that function, in order
    index: int  # the one under the cursor

    @property
    def evaluated(self) -> EvaluatedOp:
        return self.ops[self.index]


def op_at(snapshot, path: Path, line: int, col: int) -> OpAtCursor | None:
    state = snapshot.environment_of(path)
    script = snapshot.script(path)
    if state is None or script is None:
        return None
    for name in ("upgrade", "downgrade"):
        function = getattr(script, name)
        if function is None or not any(c.span.contains(line, col) and c.name != "batch_alter_table"
                                       for c in function.ops):
            continue
        ops = evaluated_ops(state, script, name)
        for index, ev in enumerate(ops):
            if ev.call.span.contains(line, col):
                return OpAtCursor(state, script, name, ops, index)
    return None


def evaluated_ops(state: EnvironmentState, script: MigrationScript, name: str) -> tuple[EvaluatedOp, ...]:
    """The evaluated ops of upgrade()/downgrade(): the replay's when it has them, else evaluated here."""
    result = replayed(state, script.revision_id) if name == "upgrade" else None
    if result is not None:
        return result.upgrade
    outside = state.replay.outside if state.replay is not None else None  # (the engine's buffers)
    return tuple(evaluate_function(script, getattr(script, name), None, outside))  # (the op alone still renders)


def schema_before(found: OpAtCursor) -> SchemaState | None:
    """The schema just before the op: the revision's start (its end for a downgrade) and the
    ops of the same function before it."""
    result = replayed(found.state, found.script.revision_id)
    if result is None:
        return None  # (no schema shown then)
    schema = result.before if found.function == "upgrade" else result.after
    for ev in found.ops[:found.index]:
        schema = apply_op(schema, ev, found.script.path)
    return schema


def _code(text: str) -> str:
    """Inline code that survives backticks in `text`."""
    text = str(text).replace("\n", " ")
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _fenced(text: str, language: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text}\n{fence}"


def _yes_no(value: bool | None, yes: str, no: str, unknown: str) -> str:
    return unknown if value is None else yes if value else no


def describe_effect(effect: pglocks.StatementEffect, version: int, in_autocommit: bool = False) -> list[str]:
    """Markdown bullet lines for one statement on PostgreSQL."""
    lines = []
    for rel in effect.locks:
        what = _code(rel.relation) if rel.relation else rel.role
        role = f" ({rel.role})" if rel.relation and rel.role != "table" else ""
        lines.append(f"- {_code(rel.lock.sql)} on {what}{role}: blocks {rel.lock.blocks}")
    if not effect.locks:
        lines.append("- no table lock" if "unknown" not in effect.forms else "- lock: unknown")
    if effect.rewrite:
        lines.append("- **rewrites the table** (every row written anew, under the lock)")
    else:
        lines.append("- " + _yes_no(effect.scan, "scans every row under the lock", "no table scan, no rewrite",
                                    "scan / rewrite: unknown"))
    if effect.unknown:
        lines.append(f"- not known: {md_text(str(effect.unknown))}")
    for name in effect.forms:
        note = pglocks.FORMS.get(name, pglocks.UNKNOWN).note
        if note:
            lines.append(f"- {note}")
    if not effect.transactional and not in_autocommit:
        lines.append("- **cannot run inside a transaction**: put it in "
                     "`with op.get_context().autocommit_block():`")
    return lines


def _type(column: sa.Column, dialect: Any) -> str:
    try:
        return column.type.compile(dialect=dialect)
    except Exception:  # noqa: BLE001 - SQLAlchemy compiling a project type may raise anything
        return repr(column.type)


def _cell(text: str) -> str:
    """Inline code inside a Markdown table cell (a `|` would end the cell)."""
    return _code(text).replace("|", "\\|")


def describe_table(table: TableState, dialect: str) -> list[str]:
    lines = [f"Table {_code(table.key)} at this point of the history:", "",
             "| column | type | null | default |", "|---|---|---|---|"]
    try:
        sa_dialect = sqlalchemy_dialect(dialect)
    except sa.exc.ArgumentError:  # not a dialect name (NoSuchModuleError is one)
        sa_dialect = None
    for col in table.columns[:MAX_COLUMNS]:
        column = col.column
        # a DefaultClause has the text; a Computed or Identity column has none to show here
        server_default = column.server_default
        arg = server_default.arg if isinstance(server_default, sa.DefaultClause) else ""
        default = arg if isinstance(arg, str) else str(getattr(arg, "text", arg))
        cell = _cell(default) if default != "" else ""
        lines.append(f"| {_cell(col.name)} | {_cell(_type(column, sa_dialect))} | "
                     f"{'yes' if column.nullable else 'no'} | {cell} |".replace("\n", " "))
    if len(table.columns) > MAX_COLUMNS:
        lines.append(f"| … {len(table.columns) - MAX_COLUMNS} more | | | |")
    return lines


def describe_op(found: OpAtCursor, version: int | None = None) -> str:
    """Markdown card for the op under the cursor."""
    ev = found.evaluated
    version = version or pglocks.postgres_version(getattr(found.state.env.settings, "postgres_version", None))
    configured = found.state.env.dialect
    dialect = configured or "postgresql"
    title = f"**{'batch_op' if ev.call.batch_table is not None else 'op'}.{ev.call.name}**"
    if ev.op is None:
        why = f": {md_text(ev.reason)}" if ev.reason else ""
        return f"{title}\n\nNot known statically{why}: no SQL to show."
    lines = [title, ""]
    try:
        sql = pglocks.render_sql(ev.op, dialect, version if dialect == "postgresql" else None).strip()
    except Exception as exc:  # noqa: BLE001 - Alembic rendering a workspace op may raise anything; the card says what
        sql = ""
        lines.append(f"Alembic cannot render it for {dialect}: {type(exc).__name__}: {md_text(str(exc)[:200])}")
    if sql:
        shown = "" if configured else " (no dialect configured: shown for PostgreSQL)"
        lines += [f"SQL ({dialect}{shown}):", "", _fenced(sql, "sql")]
    before = schema_before(found)
    if dialect == "postgresql" and sql:
        effects = pglocks.sql_effects(sql, before, version, pglocks.existing_types(ev.op))
        lines += ["", f"On PostgreSQL {version}:"]
        if effects is None:
            lines.append("- locks: unknown (the SQL could not be parsed)")
        else:
            several = len(effects) > 1
            for effect in effects:
                if several:
                    lines.append(f"- {_code(effect.sql if len(effect.sql) <= 100 else effect.sql[:97] + '...')}")
                lines += [("  " if several else "") + line
                          for line in describe_effect(effect, version, ev.call.in_autocommit)]
    table_name, schema_name = op_table(ev.op)
    table = before.table(table_name, schema_name) if before is not None and table_name else None
    if table is not None:
        lines += ["", *describe_table(table, dialect)]
    return "\n".join(lines)


def op_hover(snapshot, path: Path, position: types.Position, locator) -> types.Hover | None:
    found = op_at(snapshot, path, position.line, locator.column(path, position))
    if found is None:
        return None
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=describe_op(found)),
        range=locator.range(path, found.evaluated.call.span),
    )


# --------------------------------------------------------------------------- `migration-lsp sql`


def select_revisions(state: EnvironmentState, spec: str | None) -> list[str]:
    """Revisions of `spec` in upgrade order: all of them (None), one (`REV`), or what
    `alembic upgrade FROM:TO` runs (`FROM:TO`, after FROM up to TO; `base` / `heads`
    allowed). Raises ValueError with a message for the user."""
    graph = state.graph
    order = graph.topological_order

    def one(text: str) -> str:
        found = graph.resolve(text)
        if len(found) != 1:
            raise ValueError(f"{text}: {'ambiguous' if found else 'no such revision'}")
        return found[0]

    if not spec:
        return list(order)
    if ":" not in spec:
        return [one(spec)]
    start, _, end = spec.partition(":")
    chosen = set(order)
    if start and start != "base":
        low = one(start)
        chosen &= graph.descendants(low)
    if end and end not in ("head", "heads"):
        high = one(end)
        chosen &= graph.ancestors(high) | {high}
    return [rev for rev in order if rev in chosen]


def _plain(line: str) -> str:
    """A Markdown bullet of describe_effect as plain text."""
    return line.removeprefix("- ").replace("**", "").replace("`", "")


def _comment(text: str) -> str:
    return "\n".join(f"-- {line}" for line in text.splitlines() or [""])


def revision_sql(state: EnvironmentState, rev: str, dialect: str, version: int) -> str:
    """The upgrade SQL of one revision as `alembic upgrade --sql` renders each op, each op
    located in its file and, on PostgreSQL, each statement followed by its locks (as SQL
    comments: the output stays runnable)."""
    script = state.graph.by_id[rev]
    parents = ", ".join(state.graph.parents.get(rev, ())) or "<base>"
    out = [f"-- Running upgrade {parents} -> {rev}, {script.message or ''}".rstrip(", "), ""]
    result = replayed(state, rev)  # (none: the op alone still renders)
    ops = result.upgrade if result is not None else tuple(evaluate_function(script, script.upgrade))
    schema = result.before if result is not None else None
    for ev in ops:
        where = f"{script.path.name}:{ev.span.line + 1}"
        head = f"-- op.{ev.call.name} ({where})" + (" [conditional: may not run]" if ev.call.conditional else "")
        out.append(head)
        if ev.op is None:
            out += [f"-- not known statically: {ev.reason or 'opaque'}", ""]
            continue
        try:
            sql = pglocks.render_sql(ev.op, dialect, version if dialect == "postgresql" else None).strip()
        except Exception as exc:  # noqa: BLE001 - Alembic rendering a workspace op may raise anything; the output says what
            out += [_comment(f"Alembic cannot render it: {type(exc).__name__}: {exc}"), ""]
            sql = ""
        effects = pglocks.sql_effects(sql, schema, version, pglocks.existing_types(ev.op)) \
            if sql and dialect == "postgresql" else None
        if effects is None:
            out += [sql, ""] if sql else []
        else:
            for effect in effects:
                out.append(effect.sql + ";")
                out += [_comment(_plain(line)) for line in describe_effect(effect, version, ev.call.in_autocommit)]
            out.append("")
        if schema is not None:
            schema = apply_op(schema, ev, script.path)
    return "\n".join(out)
