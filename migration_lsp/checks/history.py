"""S022: the history drops a column that a foreign key still references.

PostgreSQL, MySQL and SQL Server refuse the drop ("other objects depend on it"), so
`alembic upgrade` stops there; SQLite allows it and leaves a foreign key to a column that
no longer exists. Either way the history is broken, and the static schema at head has a
key no reflection could resolve (compare.py leaves it out rather than crash): said here,
once, at the op that drops the column.
"""

from __future__ import annotations

from alembic.operations import ops as alembic_ops

from ..core import Diagnostic
from ..replay import RevisionSchema, apply_op
from ..rules import severity
from ..schema import SchemaState, table_key
from ..scripts import MigrationScript


def check_history(script: MigrationScript, schema: RevisionSchema, env_name: str) -> list[Diagnostic]:
    """S022 on one revision's upgrade, replayed op by op from the schema before it."""
    out: list[Diagnostic] = []
    state = schema.before
    for ev in schema.upgrade:
        op = ev.op
        if isinstance(op, alembic_ops.DropColumnOp) and not ev.conditional:
            for table, key_name in _referencing(state, op.table_name, op.schema, op.column_name):
                target = table_key(op.table_name, op.schema)
                out.append(Diagnostic(
                    "S022", severity("S022"), script.path, ev.span,
                    f"drops {target}.{op.column_name}, which the foreign key {key_name} of table {table} still "
                    "references: PostgreSQL and MySQL refuse the drop, SQLite keeps a key to nothing; drop or "
                    "change the foreign key first", env_name, {"table": table, "column": op.column_name}))
        state = apply_op(state, ev, script.path)
    return out


def _referencing(state: SchemaState, table: str, schema: str | None, column: str) -> list[tuple[str, str]]:
    """(table, foreign key name) of every key whose target is table.column; tables whose
    shape is uncertain (raw SQL, an undecidable `if`) are left out: their keys may be gone."""
    target = f"{schema}.{table}.{column}" if schema else f"{table}.{column}"
    found = []
    for state_table in state.tables.values():
        if state_table.name in state.uncertain or state_table.key in state.uncertain:
            continue
        for constraint, _ in state_table.constraints:
            if not hasattr(constraint, "elements"):
                continue
            for element in constraint.elements:
                try:
                    spec = element.target_fullname  # (the text of a key given as "table.column")
                except Exception:  # noqa: BLE001, S112 - a key we cannot read is not this one
                    continue
                if spec == target:
                    name = constraint.name if isinstance(constraint.name, str) else "(unnamed)"
                    found.append((state_table.key, name))
                    break
    return found
