"""Rule family D: does downgrade() undo upgrade()? (D001–D003)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from alembic.operations import ops as alembic_ops

from ..compare import CompareError, CompareOptions, compare
from ..core import Diagnostic
from ..interpret import evaluate_function
from ..outside import Outside
from ..pmap import TableMap
from ..replay import RevisionSchema, apply_op, apply_other_call
from ..rules import severity
from ..schema import TableState
from ..scripts import MigrationScript

DATA_OPS = (alembic_ops.ExecuteSQLOp, alembic_ops.BulkInsertOp)
D002_SIDES = ("after downgrade()", "before upgrade()")  # both sides are migration states, no model


def _data_kind(ev) -> str | None:
    """"raw SQL" / "a data migration" for op.execute / op.bulk_insert, also when their
    arguments are not literals (an f-string, a variable): they are never schema changes."""
    if isinstance(ev.op, alembic_ops.ExecuteSQLOp) or (ev.op is None and ev.call.name == "execute"):
        return "raw SQL"
    if isinstance(ev.op, alembic_ops.BulkInsertOp) or (ev.op is None and ev.call.name == "bulk_insert"):
        return "a data migration"
    return None


def _changed_keys(after: Mapping[str, TableState], before: Mapping[str, TableState]) -> set[str]:
    """Keys bound to different table objects. SchemaState keeps its tables in a TableMap, whose
    diff skips what the two versions share; any other mapping is compared key by key."""
    if isinstance(after, TableMap) and isinstance(before, TableMap):
        return after.diff(before)
    return {k for k in after.keys() | before.keys() if after.get(k) is not before.get(k)}


def _same_shape(a: TableState | None, b: TableState | None) -> bool:
    """A cheap structural equality (column names, types, nullability, index and constraint
    names) that lets a correct downgrade skip the full comparison."""
    if a is None or b is None:
        return a is b
    if len(a.columns) != len(b.columns):
        return False
    theirs = {c.name: c for c in b.columns}
    for mine in a.columns:
        other = theirs.get(mine.name)
        if other is None:
            return False
        if other is not mine and (bool(other.column.nullable) != bool(mine.column.nullable)
                                  or (other.column.type is not mine.column.type
                                      and repr(other.column.type) != repr(mine.column.type))):
            return False
    return ({i.name for i, _ in a.indexes} == {i.name for i, _ in b.indexes}
            and sorted(str(c.name) for c, _ in a.constraints) == sorted(str(c.name) for c, _ in b.constraints))


def _changes_schema(schema: RevisionSchema) -> bool:
    return any(_data_kind(ev) is None for ev in schema.upgrade)


def check_downgrade(script: MigrationScript, schema: RevisionSchema, options: CompareOptions,
                    env_name: str, outside: Outside | None = None) -> list[Diagnostic]:
    """D001-D003 of one revision. `outside`: what its downgrade() may read of other files, as
    its upgrade() did in the replay (the engine's open buffers; None: the disk)."""
    down = script.downgrade
    if down is None or script.upgrade is None:
        return []
    out: list[Diagnostic] = []
    if down.is_empty:
        if not _changes_schema(schema):
            return []
        out.append(Diagnostic("D001", severity("D001"), script.path, down.def_span,
                              "downgrade() is empty while upgrade() changes the schema", env_name,
                              {"revision": script.revision_id}))
        for ev in schema.upgrade:
            if ev.op is None or isinstance(ev.op, DATA_OPS):
                what = _data_kind(ev) or f"op.{ev.call.name}(...) ({ev.reason})"
                out.append(Diagnostic("D003", severity("D003"), script.path, ev.span,
                                      f"{what} cannot be reversed automatically; write its downgrade by hand",
                                      env_name))
        return out
    # D002: replay upgrade then downgrade; the schema must be back where it started.
    if any(ev.op is None or ev.call.conditional for ev in schema.upgrade) or schema.after.unknown != schema.before.unknown:
        return []  # not knowable statically: say nothing rather than guess
    downgrade_ops = evaluate_function(script, down, None, outside)
    if any(ev.op is None or ev.call.conditional for ev in downgrade_ops):
        return []
    state = schema.after
    for ev in downgrade_ops:
        state = apply_op(state, ev, script.path)
    for call in down.other_calls:
        state = apply_other_call(state, call, script.path)
    if state.unknown != schema.after.unknown:
        return []
    uncertain = state.uncertain | schema.after.uncertain
    # Tables are shared between states until an op replaces them: only those that are not
    # the very same object as before can differ, and the maps find them without visiting
    # the others (keeps this linear in what the revision did, not in the size of the schema).
    before = schema.before.tables
    touched = {k for k in _changed_keys(state.tables, before)
               if not _same_shape(state.tables.get(k), before.get(k))}
    if not touched:
        return out
    restored = replace(state, tables={k: state.tables[k] for k in touched if k in state.tables})
    try:
        differences = [d for d in compare(restored, {k: before[k] for k in touched if k in before}, options, D002_SIDES)
                       if d.what.split()[-1].split(".")[0] not in uncertain]
    except CompareError:
        return out  # not comparable: say nothing rather than guess
    # sorted: Alembic reports a table's removed columns and its foreign keys in the order of
    # sets (hash seeds, addresses), and the message must not change from one run to the next
    differences.sort(key=lambda d: (d.what, d.kind, d.detail))
    if differences:
        listed = "; ".join(
            f"{d.what} {'is left behind' if d.kind == 'extra' else 'is not restored' if d.kind == 'missing' else 'differs: ' + d.detail}"
            for d in differences[:3])
        more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
        out.append(Diagnostic("D002", severity("D002"), script.path, down.def_span,
                              f"downgrade() does not restore the schema upgrade() started from: {listed}{more}",
                              env_name))
    return out
