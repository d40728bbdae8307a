"""Inlay hints: after ids in `down_revision` / `depends_on`, the target's message; on
PostgreSQL, after each `op.*` / `batch_op.*` call, the lock it takes (setting `lockHints`,
on by default: only environments whose dialect is PostgreSQL get them)."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from .. import pglocks
from ..engine import EnvironmentState, Snapshot
from ..replay import apply_op
from ..scripts import MigrationScript
from . import Locator, replayed
from .op_hover import evaluated_ops

MAX_LABEL = 60
MAX_TABLES = 2
_OFF = (False, 0, "false", "off", "no", "0")


def inlay_hints(snapshot: Snapshot, path: Path, visible: types.Range, locator: Locator) -> list[types.InlayHint]:
    script = snapshot.script(path)
    state = snapshot.environment_of(path)
    if script is None or state is None:
        return []
    out = []
    for header in (script.down_revision, script.depends_on):
        if header is None:
            continue
        for ident in header.ids:
            if not visible.start.line <= ident.span.line <= visible.end.line:
                continue
            targets = state.graph.resolve(ident.value)
            if len(targets) != 1:
                continue
            message = state.graph.message(targets[0]) or targets[0]
            if len(message) > MAX_LABEL:
                message = message[: MAX_LABEL - 1] + "…"
            # after the closing quote
            end = locator.position(path, ident.span.end_line, ident.span.end_col + 1)
            out.append(types.InlayHint(position=end, label=message, padding_left=True,
                                       tooltip=f"{targets[0]} ({state.graph.by_id[targets[0]].path.name})"))
    if lock_hints_on(state):
        for line, col, label, tooltip in lock_hints(state, script, visible.start.line, visible.end.line):
            out.append(types.InlayHint(position=locator.position(path, line, col), label=label, padding_left=True,
                                       tooltip=tooltip))
    return out


def lock_hints_on(state: EnvironmentState) -> bool:
    setting = getattr(state.env.settings, "lock_hints", None)
    if isinstance(setting, str):
        setting = setting.strip().lower()
    return (state.env.dialect or "").lower() in ("postgresql", "postgres") and setting not in _OFF


def lock_hints(state: EnvironmentState, script: MigrationScript, first: int, last: int
               ) -> list[tuple[int, int, str, str]]:
    """(line, column, label, tooltip) after each op call ending in lines [first, last]:
    the strongest lock each statement of the op takes, on what, and whether it rewrites."""
    version = pglocks.postgres_version(getattr(state.env.settings, "postgres_version", None))
    out = []
    for name in ("upgrade", "downgrade"):
        function = getattr(script, name)
        if function is None or not any(first <= c.span.end_line <= last for c in function.ops):
            continue
        schema = _start(state, script, name)
        for ev in evaluated_ops(state, script, name):
            span = ev.call.span
            if first <= span.end_line <= last and ev.op is not None:
                try:
                    effects = pglocks.op_effects(ev.op, schema, version)
                except Exception:  # noqa: BLE001 - a workspace op the lock model chokes on: no hint, the others stay
                    effects = None
                hint = _label(effects)
                if hint is not None:
                    out.append((span.end_line, span.end_col, *hint))
            if schema is not None:
                try:
                    schema = apply_op(schema, ev, script.path)
                except Exception:  # noqa: BLE001 - an op the replay cannot apply: later hints go without a schema
                    schema = None
    return out


def _start(state: EnvironmentState, script: MigrationScript, name: str):
    result = replayed(state, script.revision_id)  # (none: no schema, hints still come)
    if result is None:
        return None
    return result.before if name == "upgrade" else result.after


def _label(effects: list[pglocks.StatementEffect] | None) -> tuple[str, str] | None:
    if not effects:
        return None
    locks: dict[str, pglocks.Lock] = {}
    rewrite = scan = False
    for effect in effects:
        for rel in effect.locks:
            if rel.relation and rel.role not in ("new table", "new view", "read table"):
                locks[rel.relation] = max(locks.get(rel.relation, rel.lock), rel.lock)
        rewrite |= bool(effect.rewrite)
        scan |= bool(effect.scan)
    if not locks:
        return None
    strongest = max(locks.values())
    tables = [t for t, lock in locks.items() if lock == strongest]
    shown = ", ".join(tables[:MAX_TABLES]) + (" …" if len(tables) > MAX_TABLES else "")
    label = f"{strongest.sql} on {shown}" + (", rewrites" if rewrite else ", scans" if scan else "")
    tooltip = "; ".join(f"{lock.sql} on {table}: blocks {lock.blocks}" for table, lock in locks.items())
    return label, tooltip
