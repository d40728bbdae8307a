"""The lock table's examples as the tests use them (pglocks.FORMS' `examples`, on
`pglocks.example_metadata()`): Alembic ops, the schema the history would know, and
PostgreSQL's own lock-mode names. Only tests need these, so they live here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic.operations import ops as alembic_ops

from migration_lsp import pglocks
from migration_lsp.evaluate import BatchRecorder, Recorder
from migration_lsp.schema import SchemaState, TableState


def example_state() -> SchemaState:
    """`example_metadata()` as the schema history would know it."""
    state = SchemaState()
    for table in pglocks.example_metadata().tables.values():
        state = state.with_table(TableState.from_table(table))
    return state


def example_ops(form: pglocks.Form) -> list[Any]:
    """The examples of `form` as Alembic ops (raw SQL as `op.execute`)."""
    return [alembic_ops.ExecuteSQLOp(example) if isinstance(example, str) else _build(example)
            for example in form.examples]


def lock_of_pg_mode(mode: str) -> pglocks.Lock:
    """The Lock PostgreSQL calls `mode` in pg_locks (`ShareUpdateExclusiveLock`)."""
    return next(lock for lock in pglocks.Lock if lock.pg_mode == mode)


class _Op:
    """A Recorder whose batch_alter_table is used without `with` (the examples are
    expressions): not an Operations, so it forwards the other names to one."""

    def __init__(self) -> None:
        self.recorder = Recorder()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.recorder, name)

    def batch_alter_table(self, table_name: str, schema: str | None = None, **kw: Any) -> BatchRecorder:
        return BatchRecorder(self.recorder, table_name, schema)


def _build(example: Callable[[Any], Any]) -> Any:
    op = _Op()
    result = example(op)
    return result if isinstance(result, alembic_ops.MigrateOperation) else op.recorder.recorded[-1]
