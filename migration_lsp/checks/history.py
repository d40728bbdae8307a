"""S022: the history drops a column that a foreign key still references.

PostgreSQL, MySQL and SQL Server refuse the drop ("other objects depend on it"), so
`alembic upgrade` stops there; SQLite allows it and leaves a foreign key to a column that
no longer exists. Either way the history is broken, and the static schema at head has a
key no reflection could resolve (compare.py leaves it out rather than crash): said here,
once, at the op that drops the column.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from alembic.operations import ops as alembic_ops

from ..core import Diagnostic
from ..replay import RevisionSchema, apply_op
from ..rules import severity
from ..schema import SchemaState, table_key
from ..scripts import MigrationScript


def check_history(script: MigrationScript, schema: RevisionSchema, env_name: str) -> list[Diagnostic]:
    """S022 on one revision's upgrade, replayed op by op from the schema before it."""
    out: list[Diagnostic] = []
    drops = [n for n, ev in enumerate(schema.upgrade)
             if isinstance(ev.op, alembic_ops.DropColumnOp) and not ev.conditional]
    if not drops:
        return out  # (no state is needed: the ops are not applied again)
    state = schema.before
    for ev in schema.upgrade[:drops[-1] + 1]:  # the states up to the last drop
        op = ev.op
        if isinstance(op, alembic_ops.DropColumnOp) and not ev.conditional:
            for table, key_name in _referencing(state, op.table_name, op.schema, op.column_name):
                # (the data as plain str: a quoted_name is a str subclass, which the cache cannot store)
                target = table_key(op.table_name, op.schema)
                out.append(Diagnostic(
                    "S022", severity("S022"), script.path, ev.span,
                    f"drops {target}.{op.column_name}, which the foreign key {key_name} of table {table} still "
                    "references: PostgreSQL and MySQL refuse the drop, SQLite keeps a key to nothing; drop or "
                    "change the foreign key first", env_name, {"table": str(table), "column": str(op.column_name)}))
        state = apply_op(state, ev, script.path)
    return out


def _referencing(state: SchemaState, table: str, schema: str | None, column: str) -> list[tuple[str, str]]:
    """(table, foreign key name) of every key whose target is table.column; tables whose
    shape is uncertain (raw SQL, an undecidable `if`) are left out: their keys may be gone."""
    target = f"{schema}.{table}.{column}" if schema else f"{table}.{column}"
    found = []
    if len(_SUMMARIES) >= _CHUNKS_LIMIT:
        _SUMMARIES.clear()
    for chunk in state.table_map.chunks_with(target, _targets_of, _SUMMARIES):
        _, keys = _chunk_targets(chunk)
        for state_table in chunk.values():
            if state_table.name in state.uncertain or state_table.key in state.uncertain:
                continue
            for specs, name in keys.get(state_table.key, ()):
                if target in specs:
                    found.append((state_table.key, name))
    return found


# A piece of the state's table map (by identity; kept alive by the entry) -> every target
# its tables' foreign keys name, and per table key each key's targets and name. States
# share the pieces they do not change, so the drops of a whole history read each piece's
# keys once instead of every table's keys at every drop, and skip the subtrees of the map
# whose keys do not name the dropped column (TableMap.chunks_with) (S022 at every drop_column was
# 12 % of a first check at 5,000 revisions, nearly all in SQLAlchemy's target_fullname).
_Keys = dict[str, tuple[tuple[frozenset[str], str], ...]]
_CHUNKS: dict[int, tuple[object, frozenset[str], _Keys]] = {}
_SUMMARIES: dict[int, tuple[object, AbstractSet[str]]] = {}  # the table map's nodes -> the targets below them
_CONSTRAINTS: dict[int, tuple[object, tuple[tuple[frozenset[str], str], ...]]] = {}  # the same, per table
# entries per memo (each pins a piece of an old state until cleared: most are the states this
# check makes op by op, garbage once it returns; at 8,192 a server session at 5,000 revisions
# kept ~20 MiB of them, filled over ~15 edits. A first check at 5,000 revisions computes 22 %
# more summaries with 1,024, ~0.03 s of CPU; with 256 it thrashes: 10x)
_CHUNKS_LIMIT = 1024


def _targets_of(chunk) -> frozenset[str]:
    return _chunk_targets(chunk)[0]


def _chunk_targets(chunk) -> tuple[frozenset[str], _Keys]:
    entry = _CHUNKS.get(id(chunk))
    if entry is not None and entry[0] is chunk:
        return entry[1], entry[2]
    every: set[str] = set()
    keys: _Keys = {}
    for state_table in chunk.values():
        found = _key_targets(state_table.constraints)
        if found:
            keys[state_table.key] = found
            every.update(t for specs, _ in found for t in specs)
    if len(_CHUNKS) >= _CHUNKS_LIMIT:
        _CHUNKS.clear()
    targets = frozenset(every)
    _CHUNKS[id(chunk)] = (chunk, targets, keys)
    return targets, keys


def _key_targets(constraints) -> tuple[tuple[frozenset[str], str], ...]:
    """(the targets as "[schema.]table.column", the key's name) of each foreign key (a
    table's constraints are shared by the versions of the table an op did not change them in)."""
    entry = _CONSTRAINTS.get(id(constraints))
    if entry is not None and entry[0] is constraints:
        return entry[1]
    found = []
    for constraint, _ in constraints:
        if not hasattr(constraint, "elements"):
            continue
        specs = set()
        for element in constraint.elements:
            try:
                specs.add(element.target_fullname)  # (the text of a key given as "table.column")
            except Exception:  # noqa: BLE001, S112 - a key we cannot read is not this one
                continue
        if specs:
            found.append((frozenset(specs), constraint.name if isinstance(constraint.name, str) else "(unnamed)"))
    if len(_CONSTRAINTS) >= _CHUNKS_LIMIT:
        _CONSTRAINTS.clear()
    _CONSTRAINTS[id(constraints)] = (constraints, tuple(found))
    return tuple(found)
