"""Rule family S006–S014: PostgreSQL DDL that locks, scans or rewrites an existing table.

What an op does is not decided here: each op is handed to the lock model
(`pglocks.op_effects`: Alembic's own `--sql` rendering parsed by PostgreSQL's parser, read
against the replayed schema right before the op, for the configured `postgres_version`),
and a rule fires on the *form* the model names (`add_constraint.foreign_key`,
`alter_column.type` with a rewrite, ...). What the model cannot know (an old type the
history does not have, a default calling an unknown function) is never reported.

The walk is the one of S001–S005 (`walk.UpgradeWalk`): op by op through upgrade(), so a table
created earlier in the same upgrade() is *fresh* (empty: nothing to lock, scan or rewrite)
and never triggers S006–S011. Two rules are about names and indexes rather than locks and
apply to new tables too (a new table is the cheapest place to get them right):

- S012 / S014: an identifier longer than PostgreSQL's 63 bytes (S012: PostgreSQL truncates
  a table or column name, or a multi-byte name SQLAlchemy lets through, so the database's name
  never equals the model's; S014: an explicit index or constraint name over 63 characters,
  which SQLAlchemy refuses with IdentifierError: the upgrade fails);
- S013: a foreign key added by this revision whose columns no index leads with, in the
  schema as it is after the revision (deleting a parent row scans the child table).

Everything here speaks only for PostgreSQL: with another dialect, or none, it is silent.
"""

from __future__ import annotations

import ast
import hashlib
from typing import Any

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops

from .. import pglocks
from ..core import Diagnostic, Span
from ..evaluate import EvaluatedOp
from ..replay import RevisionSchema
from ..rules import severity
from ..schema import (
    SchemaState,
    TableState,
    constraint_columns,
    index_columns,
    table_key,
)
from ..scripts import MigrationScript, OpCall, OtherCall, sql_literal
from .walk import (
    FunctionTree,
    Target,
    UpgradeWalk,
    keyword,
    keyword_string,
    literal_string,
    op_target,
    walk_upgrade,
)

CODES = tuple(f"S{n:03}" for n in range(6, 15))  # S006–S014
MAX_IDENTIFIER = 63  # NAMEDATALEN - 1, in bytes

# the ops whose effect on an existing table the lock rules ask the model about
_LOCKING_OPS = frozenset({
    "add_column", "alter_column", "create_foreign_key", "create_check_constraint", "create_unique_constraint",
    "create_primary_key", "create_exclude_constraint", "drop_index",
})
_CONSTRAINT_KIND = {"add_constraint.unique": "unique constraint", "add_constraint.primary_key": "primary key",
                    "add_constraint.exclude": "exclusion constraint"}
_ADD_COLUMN_KIND = {"add_column.volatile_default": "a volatile server_default (each row gets its own value)",
                    "add_column.identity": "an identity (every row is numbered)",
                    "add_column.generated_stored": "a stored generated value (computed for every row)"}


def check_pg_ddl(script: MigrationScript, schema: RevisionSchema, dialect: str | None, env_name: str,
                 version: Any = None) -> list[Diagnostic]:
    """S006–S014 on the upgrade() of one revision, for PostgreSQL `version` (a setting's
    value: anything not a version means the newest supported major)."""
    dialect = (dialect or "").lower()
    function = script.upgrade
    if dialect not in ("postgresql", "postgres") or function is None:
        return []
    tree = FunctionTree(script, function)
    checker = _PgChecker(script, schema, "postgresql", env_name, tree, pglocks.postgres_version(version))
    walk_upgrade(script, schema, "postgresql", function, checker)
    try:
        checker.unindexed_foreign_keys(schema.after)
    except Exception:  # noqa: BLE001, S110 - a replay quirk must not take the other findings down
        pass
    return checker.out


class _PgChecker(UpgradeWalk):
    def __init__(self, script: MigrationScript, schema: RevisionSchema, dialect: str, env_name: str,
                 tree: FunctionTree, version: int) -> None:
        super().__init__(script, schema, dialect, env_name, tree)
        self.version = version
        self.validated: set[tuple[str, str]] = set()  # (table key, constraint) VALIDATEd by raw SQL so far
        # (table, schema, columns, span, table created by this upgrade()) of the keys it adds
        self.foreign_keys: list[tuple[str, str | None, tuple[str, ...], Span, bool]] = []

    def report(self, code: str, span: Span, message: str, **data: Any) -> None:
        self.out.append(Diagnostic(code, severity(code), self.script.path, span, message, self.env_name,
                                   {"code": code, "postgres_version": self.version, **data}))

    # ------------------------------------------------------------------ the walk

    def op(self, ev: EvaluatedOp) -> None:
        target = op_target(ev.call, self.tree)
        for rule in (self._identifiers, self._locks, self._note_foreign_keys):
            try:
                rule(ev, target)
            except Exception:  # noqa: BLE001, S110 - a half-typed call must never take the other findings down
                pass
        if ev.call.name == "execute":
            self.other(ev.call)
        self.advance_safely(ev, target)

    def other(self, call: OpCall | OtherCall) -> None:
        """Literal SQL (`op.execute`, `conn.execute`): the same rules, statement by statement."""
        sql = sql_literal(call.node)
        try:  # raw SQL's own findings come from checks/pg_transactions (one parser pass per string)
            self._note_validate(sql)
        except Exception:  # noqa: BLE001, S110 - SQL of a shape nobody expected: no finding, never a crash
            pass

    def _note_validate(self, sql: str | None) -> None:
        """`ALTER TABLE t VALIDATE CONSTRAINT c` earlier in upgrade(): the history keeps the
        constraint NOT VALID, PostgreSQL no longer does (a valid CHECK (c IS NOT NULL) spares
        SET NOT NULL its scan)."""
        if not sql or "validate" not in sql.lower():
            return
        for statement in pglocks.parse_sql(sql) or ():
            node = statement.node
            if type(node).__name__ != "AlterTableStmt":
                continue
            for cmd in node.cmds or ():
                if cmd.subtype == pglocks.pge.AlterTableType.AT_ValidateConstraint and cmd.name:
                    self.validated.add((pglocks.relation_name(node.relation), cmd.name))

    def _before(self) -> SchemaState:
        """The replayed schema at this op, with the constraints raw SQL has validated."""
        state = self.state
        for key in {key for key, _ in self.validated}:
            table = state.tables.get(key)
            if table is None:
                continue
            constraints = tuple((_valid_copy(c) if (key, c.name) in self.validated else c, origin)
                                for c, origin in table.constraints)
            state = state.with_table(table.evolve(constraints=constraints))
        return state

    # ------------------------------------------------------------------ S006–S011

    def _locks(self, ev: EvaluatedOp, target: Target) -> None:
        call, op = ev.call, ev.op
        if op is None and call.name == "drop_index":
            op = _bare_drop_index(call.node)
        if call.name not in _LOCKING_OPS or op is None or not _may_lock(op):
            return
        before = self._before()
        key, name = target.key, target.name
        if call.name == "drop_index" and not key:
            key = name = _index_table(before, getattr(op, "index_name", None))
        if not key or not self.tables.is_existing(key, name):
            return
        effects = pglocks.op_effects(op, before, self.version)
        for effect in effects or ():
            lock = max((r.lock for r in effect.locks if r.relation == key), default=effect.lock)
            for form in effect.forms:
                self._form(ev.call, op, form, effect, lock, key, name)

    def _form(self, call: Any, op: Any, form: str, effect: pglocks.StatementEffect, lock: Any, key: str,
              table: str | None) -> None:
        span = call.span
        held = f"{_article(lock)} {lock.sql} lock on '{table}'" if lock is not None else f"a lock on '{table}'"
        blocks = f"blocks {lock.blocks}" if lock is not None else "blocks it"
        data = {"table": table, "table_key": key, "form": form, "lock": lock.sql if lock else None,
                "batch": call.batch_table is not None}
        if form in ("add_constraint.foreign_key", "add_constraint.check"):
            kind = "foreign key" if form.endswith("foreign_key") else "CHECK constraint"
            name = getattr(op, "constraint_name", None)
            what = f"{kind} '{name}'" if isinstance(name, str) else f"a {kind}"
            others = [r.relation for r in effect.locks if r.role == "referenced table" and r.relation]
            also = f" (and on {', '.join(repr(o) for o in others)})" if others else ""
            self.report(
                "S006", span,
                f"{call.name} adds {what} to existing table '{table}' and checks every row while holding "
                f"{held}{also}, which {blocks}; add it with postgresql_not_valid=True and run "
                f"VALIDATE CONSTRAINT in a separate transaction (SHARE UPDATE EXCLUSIVE: reads and writes go on)",
                **data, kind=kind, constraint=name if isinstance(name, str) else None,
                schema=getattr(op, "schema", None) if call.name != "create_foreign_key"
                else (getattr(op, "kw", None) or {}).get("source_schema"))
        elif form == "alter_column.set_not_null" and effect.scan:
            column = op.column_name
            known = self.column_state(Target(op.table_name, op.schema), column)
            if known is not None and known.nullable is False:
                return  # NOT NULL already: PostgreSQL does nothing
            fix = ("since PostgreSQL 12 a valid CHECK (col IS NOT NULL) spares the scan: add it NOT VALID, "
                   "VALIDATE it in a separate transaction, then SET NOT NULL" if self.version >= 12 else
                   "PostgreSQL < 12 has no way around the scan: run it when the table is quiet")
            self.report(
                "S007", span,
                f"alter_column makes '{table}.{column}' NOT NULL: PostgreSQL scans every row holding "
                f"{held}, which {blocks}; {fix}",
                **data, column=column, schema=op.schema)
        elif form in ("alter_column.type", "alter_column.type_timezone") and effect.rewrite:
            column = op.column_name
            self.report(
                "S008", span,
                f"alter_column changes the type of '{table}.{column}' in a way that rewrites the whole table "
                f"(and its indexes) on PostgreSQL {self.version} under {held}, which {blocks}; "
                f"only varchar to text, a longer varchar or more numeric precision are free: otherwise add a "
                f"new column, backfill it in batches, and switch over",
                **data, column=column, schema=op.schema)
        elif form in _CONSTRAINT_KIND:
            kind = _CONSTRAINT_KIND[form]
            name = getattr(op, "constraint_name", None)
            via = "" if call.name != "add_column" else " (add_column's unique=True)"
            how = ("create the unique index with postgresql_concurrently=True in an autocommit_block, then "
                   "add the constraint USING INDEX" if form != "add_constraint.exclude" else
                   "an exclusion constraint cannot be built concurrently: run it when the table is quiet")
            columns = [c for c in getattr(op, "columns", None) or () if isinstance(c, str)]
            states = [self.column_state(Target(table, getattr(op, "schema", None)), c) for c in columns]
            not_null = bool(states) and all(s is not None and s.nullable is False for s in states)
            self.report(
                "S009", span,
                f"{call.name}{via} builds the index of a {kind} on existing table '{table}' while holding "
                f"{held}, which {blocks} for the whole build; {how}",
                **data, kind=kind, constraint=name if isinstance(name, str) else None,
                schema=getattr(op, "schema", None), not_null=not_null)
        elif form in _ADD_COLUMN_KIND:
            column = op.column.name
            self.report(
                "S010", span,
                f"add_column adds '{column}' with {_ADD_COLUMN_KIND[form]} to existing table '{table}': "
                f"PostgreSQL rewrites the whole table under {held}, which {blocks}; add the column "
                f"without it (nullable, or with a constant default), then fill existing rows in batches",
                **data, column=column)
        elif form == "drop_index":
            index = getattr(op, "index_name", None)
            self.report(
                "S011", span,
                f"drop_index needs {held}: it waits for every running query on the table, and every new "
                f"read and write waits behind it; pass postgresql_concurrently=True inside "
                f"op.get_context().autocommit_block()",
                **data, index=index if isinstance(index, str) else None, in_autocommit=call.in_autocommit)

    # ------------------------------------------------------------------ S012 / S014

    def _identifiers(self, ev: EvaluatedOp, target: Target) -> None:
        for name, kind in _named(ev.op):
            size = len(name.encode("utf-8"))
            if size <= MAX_IDENTIFIER:
                continue
            conv = isinstance(name, sa.sql.elements.conv)
            span = self._literal_span(ev.call.node, name) or ev.call.span
            if kind in ("index", "constraint") and len(name) > MAX_IDENTIFIER:
                if conv:
                    continue  # op.f(): SQLAlchemy shortens it the same way for the models (name + hash)
                self.report(
                    "S014", span,
                    f"{kind} name '{name}' is {len(name)} characters: SQLAlchemy refuses names longer than "
                    f"{MAX_IDENTIFIER} characters, PostgreSQL's limit (IdentifierError), so the upgrade fails; shorten it",
                    name=name, kind=kind, length=len(name))
                continue
            cut = name.encode("utf-8")[:MAX_IDENTIFIER].decode("utf-8", "ignore")
            self.report(
                "S012", span,
                f"{kind} name '{name}' is {size} bytes: PostgreSQL truncates identifiers to {MAX_IDENTIFIER} "
                f"bytes ('{cut}'), so the database's name never equals the one written here (autogenerate "
                f"sees a difference forever); shorten it",
                name=name, kind=kind, length=size, truncated=cut)

    def _literal_span(self, node: ast.Call, value: str) -> Span | None:
        if not self.tree.contains(node):
            return None
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and sub.value == value:
                return self.tree.span(sub)
        return None

    # ------------------------------------------------------------------ S013

    def _note_foreign_keys(self, ev: EvaluatedOp, target: Target) -> None:
        op, key = ev.op, target.key
        fresh = key is not None and self.tables.is_fresh(key)
        if isinstance(op, alembic_ops.CreateTableOp):
            found: dict[tuple[str, ...], None] = {}
            for item in op.columns:
                if isinstance(item, sa.ForeignKeyConstraint):
                    found[tuple(item.column_keys)] = None
                elif isinstance(item, sa.Column):  # a column of a built table also knows its table's keys
                    for fk in item.foreign_keys:
                        found[tuple(fk.constraint.column_keys) if fk.constraint is not None else (item.name,)] = None
            self.foreign_keys += [(op.table_name, op.schema, cols, ev.span, True) for cols in found]
        elif isinstance(op, alembic_ops.CreateForeignKeyOp):
            self.foreign_keys.append((op.source_table, (op.kw or {}).get("source_schema"), tuple(op.local_cols),
                                      ev.span, fresh))
        elif isinstance(op, alembic_ops.AddColumnOp) and op.column.foreign_keys:
            self.foreign_keys.append((op.table_name, op.schema, (op.column.name,), ev.span, fresh))

    def unindexed_foreign_keys(self, after: SchemaState) -> None:
        seen = set()
        taken: set[str] | None = None  # every index and table name: only once a finding needs it
        for name, schema, cols, span, fresh in self.foreign_keys:
            table = after.table(name, schema)
            if not cols or table is None or name in after.uncertain or table_key(name, schema) in after.uncertain:
                continue
            if (name, schema, cols) in seen or _indexed(table, cols):
                continue
            seen.add((name, schema, cols))
            listed = ", ".join(cols)
            if taken is None:
                taken = {str(index.name) for table in after.tables.values() for index, _ in table.indexes} | \
                    {table.name for table in after.tables.values()}
            self.report(
                "S013", span,
                f"foreign key on '{name}' ({listed}) has no index leading with its columns: every delete (or "
                f"key update) in the referenced table scans '{name}' for referencing rows; create an index "
                f"on ({listed})",
                table=name, schema=schema, columns=list(cols), fresh=fresh,
                index=None if index_name(name, cols) in taken else index_name(name, cols))


def index_name(table: str, columns: tuple[str, ...]) -> str:
    """`ix_<table>_<columns>`, shortened with a hash past PostgreSQL's 63 bytes."""
    name = "_".join(("ix", table, *columns))
    if len(name.encode("utf-8")) <= MAX_IDENTIFIER:
        return name
    tail = "_" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return name.encode("utf-8")[: MAX_IDENTIFIER - len(tail)].decode("utf-8", "ignore") + tail


def _named(op: Any) -> list[tuple[str, str]]:
    """(name, kind) of every object `op` creates or names anew."""
    O = alembic_ops
    out: list[tuple[str, str]] = []

    def add(name: Any, kind: str) -> None:
        if isinstance(name, str) and name:
            out.append((name, kind))

    if isinstance(op, O.CreateTableOp):
        add(op.table_name, "table")
        for item in op.columns:
            if isinstance(item, sa.Column):
                add(item.name, "column")
                for constraint in item.constraints:
                    add(constraint.name, "constraint")
            elif isinstance(item, sa.Constraint):
                add(item.name, "constraint")
            elif isinstance(item, sa.Index):
                add(item.name, "index")
    elif isinstance(op, O.AddColumnOp):
        add(op.column.name, "column")
        for constraint in op.column.constraints:
            add(constraint.name, "constraint")
    elif isinstance(op, O.CreateIndexOp):
        add(op.index_name, "index")
    elif isinstance(op, (O.CreateForeignKeyOp, O.CreateCheckConstraintOp, O.CreateUniqueConstraintOp,
                         O.CreatePrimaryKeyOp)) or type(op).__name__ == "CreateExcludeConstraintOp":
        add(op.constraint_name, "constraint")
    elif isinstance(op, O.AlterColumnOp):
        add(op.modify_name, "column")
    elif isinstance(op, O.RenameTableOp):
        add(op.new_table_name, "table")
    return out


def _article(lock: Any) -> str:
    return "an" if lock.sql[0] in "AEIOU" else "a"


def _may_lock(op: Any) -> bool:
    """Can the model name a form S006–S011 report? (Rendering an op costs more than asking.)"""
    if isinstance(op, alembic_ops.AddColumnOp):
        col = op.column
        return bool(col.server_default is not None or col.computed is not None or col.identity is not None
                    or col.foreign_keys or col.unique or col.primary_key or col.constraints)
    if isinstance(op, alembic_ops.AlterColumnOp):
        return op.modify_nullable is False or op.modify_type is not None
    return True


def _bare_drop_index(node: ast.Call) -> alembic_ops.DropIndexOp | None:
    """`op.drop_index("ix")` without its table (the replay leaves it opaque), and without
    CONCURRENTLY: PostgreSQL finds the table by the index; so does the model, in the history."""
    name = literal_string(node.args[0]) if node.args else keyword_string(node, "index_name")
    if name is None or len(node.args) > 1 or keyword(node, "postgresql_concurrently") is not None \
            or any(k.arg is None for k in node.keywords):
        return None
    schema = keyword(node, "schema")
    return alembic_ops.DropIndexOp(name, schema=literal_string(schema.value) if schema is not None else None)


def _index_table(state: SchemaState, index: Any) -> str | None:
    if not isinstance(index, str):
        return None
    found = [key for key, table in state.tables.items() if any(i.name == index for i, _ in table.indexes)]
    return found[0] if len(found) == 1 else None


def _indexed(table: TableState, cols: tuple[str, ...]) -> bool:
    """Does an index, a primary key or a unique constraint of `table` lead with `cols` (in any
    order)? That is what PostgreSQL can use to find the rows referencing a deleted key."""
    wanted = set(cols)
    leads: list[tuple[str, ...]] = [tuple(index_columns(index)) for index, _ in table.indexes]
    leads += [constraint_columns(c) for c, _ in table.constraints
              if isinstance(c, (sa.PrimaryKeyConstraint, sa.UniqueConstraint))]
    if len(cols) == 1:
        state = table.column(cols[0])
        if state is not None and (state.column.primary_key or state.column.unique or state.column.index):
            return True
    pk = tuple(c.name for c in table.columns if c.column.primary_key)
    leads.append(pk)
    return any(len(lead) >= len(cols) and set(lead[: len(cols)]) == wanted for lead in leads)


def _valid_copy(constraint: sa.Constraint) -> sa.Constraint:
    """A CHECK constraint as it is once validated (no NOT VALID); others unchanged."""
    if isinstance(constraint, sa.CheckConstraint):
        return sa.CheckConstraint(constraint.sqltext, name=constraint.name)
    return constraint

