"""Rule family S, PostgreSQL transactions and raw SQL (S015, S016, S018, and the lock rules
on literal SQL).

A revision runs inside one transaction, and PostgreSQL holds every lock until it commits.
Three rules follow from that, judged with the lock model (`pglocks`):

- S015: the revision takes ACCESS EXCLUSIVE on an existing table and nothing set
  `lock_timeout` before (in the revision, or anywhere in env.py): if a long query holds the
  table, the ALTER waits behind it and every read and write of the table queues behind the
  ALTER — an outage for as long as that query runs;
- S016: a data backfill (`UPDATE` / `INSERT` / `DELETE` / `MERGE` in `op.execute`,
  `op.bulk_insert`) after DDL that locked the same table against writes, in the same
  transaction: the DDL's lock is held for the whole backfill;
- S018 (on env.py): `transaction_per_migration` is off (Alembic's default), so `alembic
  upgrade` runs every pending revision in one transaction and an ACCESS EXCLUSIVE lock taken
  by one revision is held until the last one commits.

Literal SQL in `op.execute("...")` / `op.execute(sa.text("..."))` (and `conn.execute` of the
bind) is parsed with PostgreSQL's own parser and judged by the same rules the ops get, each
finding located on the statement inside the string: S002 CREATE INDEX without CONCURRENTLY,
S005 DROP TABLE / DROP COLUMN, S006 foreign key / CHECK without NOT VALID, S007 SET NOT NULL
that scans, S008 a type change that rewrites, S009 UNIQUE / PRIMARY KEY / EXCLUDE built under
the lock (not USING INDEX), S010 a column whose values are computed per row (volatile
default, identity, stored generated, serial), S011 DROP INDEX without CONCURRENTLY, S017 a
rename. As for the ops, a table created earlier in the same upgrade() is new and never judged.

A statement inside a multi-line string cannot carry a suppression comment: such findings are
also silenced by `# migration-lsp: ignore[...]` on the first or the last line of the call.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from alembic.operations import ops as alembic_ops

from .. import pglocks
from ..core import Diagnostic, Span
from ..evaluate import EvaluatedOp
from ..replay import RevisionSchema, apply_op
from ..rules import severity
from ..schema import SchemaState, table_key
from ..scripts import Function, MigrationScript, OtherCall, sql_argument
from . import suppressed
from .env_py import EnvPy
from .walk import (
    Existing,
    FunctionTree,
    Tables,
    function_tree,
    op_target,
    upgrade_ops,
)

Lock = pglocks.Lock


LOCK_TIMEOUT_SQL = "SET lock_timeout = '5s'"

_EXECUTES = ("execute", "exec_driver_sql")
_DML_FORMS = {"insert", "update", "delete", "merge"}
_SET_CONFIG = re.compile(r"\bset_config\s*\(\s*'lock_timeout'\s*,\s*'(?P<value>[^']*)'", re.IGNORECASE)


# --------------------------------------------------------------------------- literals


class Locator(Protocol):
    def __call__(self, offset: int, closing: bool = False) -> tuple[int, int]: ...


def literal_locator(tree: FunctionTree, node: ast.Constant) -> Locator:
    """Maps a character offset in a string literal's value to its (line, column) in the file.
    Exact inside string pieces whose source text is their value (no escapes); a piece with
    escapes maps every offset to its start."""
    start_line, start_col = tree.start(node)
    source = tree.text(node)
    pieces: list[tuple[int, int, int, int, str | None]] = []  # value start/end, line, col, body
    pos = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type != tokenize.STRING:
                continue
            value = ast.literal_eval(tok.string)
            prefix = len(tok.string) - len(tok.string.lstrip("rRuUbBfF"))
            quote = 3 if tok.string[prefix:prefix + 3] in ('"""', "'''") else 1
            body = tok.string[prefix + quote: len(tok.string) - quote]
            line = start_line + tok.start[0] - 1
            col = (start_col if tok.start[0] == 1 else 0) + tok.start[1] + prefix + quote
            pieces.append((pos, pos + len(value), line, col, body if body == value else None))
            pos += len(value)
    except (tokenize.TokenError, SyntaxError, ValueError, IndentationError):
        pieces = []

    def locate(offset: int, closing: bool = False) -> tuple[int, int]:
        """`closing`: the offset ends a range (at a piece boundary: the end of the piece before)."""
        for n, (begin, end, line, col, body) in enumerate(pieces):
            if (offset <= end if closing else offset < end) or n == len(pieces) - 1:
                if body is None:
                    return line, col
                k = max(0, min(offset - begin, len(body)))
                before = body[:k]
                newlines = before.count("\n")
                if newlines:
                    return line + newlines, k - before.rfind("\n") - 1
                return line, col + k
        return start_line, start_col

    return locate


# --------------------------------------------------------------------------- the walk


def check_pg_transactions(script: MigrationScript, schema: RevisionSchema, dialect: str | None, env_name: str,
                          env_py: EnvPy | None = None, version: int | None = None) -> list[Diagnostic]:
    """S015, S016, S018 and the raw-SQL rules on the upgrade() of one revision (PostgreSQL)."""
    dialect = (dialect or "").lower()
    if dialect not in ("postgresql", "postgres") or script.upgrade is None:
        return []
    walk = _Walk(script, script.upgrade, schema, env_name, env_py or EnvPy(), pglocks.postgres_version(version))
    try:
        walk.run()
    except Exception:  # noqa: BLE001, S110 - a half-typed revision must never take the other families down
        pass
    return [d for d in walk.out if not walk.call_suppressed(d)]


@dataclass
class _Held:
    """A lock DDL took on a table, earlier in the current transaction."""

    lock: Lock
    line: int
    what: str


@dataclass
class _Walk:
    script: MigrationScript
    upgrade: Function
    schema: RevisionSchema
    env_name: str
    env_py: EnvPy
    version: int
    out: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tree = function_tree(self.script, self.upgrade)
        self.tables = Tables(Existing(self.schema.before.tables), self.schema.before.uncertain)
        self._state: SchemaState = self.schema.before
        self._pending: list[EvaluatedOp] = []
        self.timeout_set = self.env_py.lock_timeout
        self.exclusive: tuple[Span, str] | None = None  # the first ACCESS EXCLUSIVE on an existing table
        self.held: dict[str, _Held] = {}  # table -> the strongest DDL lock of this transaction
        self.held_in_autocommit: bool = False

    @property
    def state(self) -> SchemaState:
        for ev in self._pending:
            try:
                self._state = apply_op(self._state, ev, self.script.path)
            except Exception:  # noqa: BLE001, S110 - an op the replay cannot apply leaves the state as it was
                pass
        self._pending.clear()
        return self._state

    def run(self) -> None:
        function = self.upgrade
        events: list[tuple[tuple[int, int], int, Any]] = []
        ops = upgrade_ops(self.script, self.schema, "postgresql")
        for n, ev in enumerate(ops):
            events.append(((ev.span.line, ev.span.col), n, ev))
        for n, other in enumerate(function.other_calls):
            if other.name.rsplit(".", 1)[-1] in _EXECUTES:
                events.append(((other.span.line, other.span.col), 10**9 + n, other))
        self.has_dml = any(_is_dml_event(item) for _, _, item in events)
        for _, _, item in sorted(events, key=lambda e: (e[0], e[1])):
            try:
                if isinstance(item, EvaluatedOp):
                    self.op(item)
                else:
                    self.other(item)
            except Exception:  # noqa: BLE001, S110 - one half-typed call must not hide the findings of the others
                pass
        self.finish()

    # ------------------------------------------------------------------ events

    def _transaction_boundary(self, in_autocommit: bool) -> None:
        """Entering or leaving autocommit_block() commits: the locks held so far are released."""
        if in_autocommit != self.held_in_autocommit:
            self.held.clear()
            self.held_in_autocommit = in_autocommit

    def op(self, ev: EvaluatedOp) -> None:
        call = ev.call
        self._transaction_boundary(call.in_autocommit)
        node = sql_argument(call.node) if call.name == "execute" else None
        if node is not None:
            self.sql(str(node.value), node, call.node, call.in_autocommit)
            self._pending.append(ev)
            return
        target = op_target(call, self.tree)
        # rendering is the cost: only ops that can lock an existing table, while a rule still needs them
        need = (self.exclusive is None or self.has_dml) and call.name != "create_table" \
            and not (target.key and self.tables.is_fresh(target.key))
        effects = None
        form = _LOCK_BY_OP.get(type(ev.op))
        locks = _form_locks(form, self.version) if form and target.key and not self.has_dml else None
        if need and form and locks == {Lock.ACCESS_EXCLUSIVE}:  # (locks are known only with a form)
            # every form of this op takes ACCESS EXCLUSIVE on its table: known without rendering
            effects = [pglocks.StatementEffect("", 0, 0, (form,), (pglocks.RelationLock(
                target.key, Lock.ACCESS_EXCLUSIVE, "table"),), None, None)]
        elif need and locks is not None and Lock.ACCESS_EXCLUSIVE not in locks:
            effects = []  # (only S015 is looking, and no form of it takes ACCESS EXCLUSIVE)
        elif need and ev.op is not None:
            effects = pglocks.op_effects(ev.op, self.state, self.version)
        for effect in effects or ():
            self.locked(effect, call.span, call.name, call.in_autocommit)
        self._advance(ev, target)
        self._pending.append(ev)

    def other(self, call: OtherCall) -> None:
        node = sql_argument(call.node)
        if node is None:
            return
        in_autocommit = self.tree.contains(call.node) and self.tree.in_autocommit(call.node)
        self._transaction_boundary(in_autocommit)
        self.sql(str(node.value), node, call.node, in_autocommit)

    def _advance(self, ev: EvaluatedOp, target: Any) -> None:
        name, key = ev.call.name, target.key
        if not key:
            return
        if name == "create_table":
            self.tables.created(key)
        elif name == "drop_table":
            self.tables.dropped(key)
        elif name == "rename_table" and isinstance(ev.op, alembic_ops.RenameTableOp):
            self.tables.renamed(key, table_key(ev.op.new_table_name, target.schema))

    # ------------------------------------------------------------------ raw SQL

    def sql(self, sql: str, node: ast.Constant, call_node: ast.Call, in_autocommit: bool) -> None:
        statements = pglocks.parse_sql(sql)
        effects = pglocks.sql_effects(sql, self.state, self.version) if statements else None
        if not statements or not effects:
            return
        locate = literal_locator(self.tree, node)
        first, last = self.tree.start(call_node)[0], self.tree.end(call_node)[0]

        def span_of(statement: Any) -> Span:
            return Span(*locate(statement.offset), *locate(statement.offset + statement.length, closing=True))

        for statement, effect in zip(statements, effects):
            if _sets_lock_timeout(statement):
                self.timeout_set = True
            span = span_of(statement)
            before = len(self.out)
            self.raw_rules(effect, statement.node, span)
            self.locked(effect, span, _first_words(statement.sql), in_autocommit)
            for d in self.out[before:]:  # where a suppression comment can go
                d.data.update(raw_sql=True, call_lines=[first, last])
            for rel in effect.locks:
                if rel.relation and rel.role in ("new table", "new view"):
                    self.tables.created(rel.relation)
                elif rel.relation and "drop_table" in effect.forms[0]:
                    self.tables.dropped(rel.relation)
                elif rel.relation and "rename_table" in effect.forms:
                    new = getattr(statement.node, "newname", None)
                    if new:
                        self.tables.renamed(rel.relation, table_key(new, rel.relation.rpartition(".")[0] or None))

    def _existing(self, relation: str | None) -> bool:
        if not relation:
            return False
        return self.tables.is_existing(relation, relation.rpartition(".")[2])

    def raw_rules(self, effect: pglocks.StatementEffect, node: Any, span: Span) -> None:
        """The op rules, on one statement of literal SQL."""
        table = next((r.relation for r in effect.locks if r.role == "table"), None)
        if table is None:  # DROP INDEX whose table the history does not know
            table_known = False
        else:
            table_known = True
            if not self._existing(table):
                return
        shown = f"'{table}'" if table else "its table"
        for form in effect.forms:
            if form == "create_index" and table_known:
                self.report("S002", span, f"CREATE INDEX on existing table {shown} without CONCURRENTLY: PostgreSQL "
                            f"blocks writes to the table for the whole build; write CREATE INDEX CONCURRENTLY "
                            f"inside `with op.get_context().autocommit_block():`", table=table)
            elif form in ("drop_table", "drop_table.foreign_key", "drop_column") and table_known:
                what = "DROP TABLE deletes table" if form != "drop_column" else "DROP COLUMN deletes a column of"
                self.report("S005", span, f"{what} {shown} and its data; the downgrade cannot bring the data back",
                            table=table)
            elif form in ("add_constraint.foreign_key", "add_constraint.check") and table_known:
                kind = "a foreign key" if form.endswith("foreign_key") else "a CHECK constraint"
                lock = pglocks.FORMS[form].lock  # (both forms name their lock)
                held = lock.sql if lock is not None else "table"
                self.report("S006", span, f"ADD CONSTRAINT of {kind} on existing table {shown} checks every row "
                            f"under a {held} lock; add it NOT VALID, then VALIDATE "
                            f"CONSTRAINT in a separate revision", table=table)
            elif form == "alter_column.set_not_null" and effect.scan and table_known:
                self.report("S007", span, f"SET NOT NULL on existing table {shown} scans every row under ACCESS "
                            f"EXCLUSIVE; on PostgreSQL 12+ add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, "
                            f"then SET NOT NULL (no scan)", table=table)
            elif form == "alter_column.type" and table_known:
                self.report("S008", span, f"this type change rewrites existing table {shown} (and its indexes) "
                            f"under ACCESS EXCLUSIVE: reads and writes wait for the whole rewrite", table=table)
            elif form in ("add_constraint.unique", "add_constraint.primary_key", "add_constraint.exclude") \
                    and table_known:
                self.report("S009", span, f"this constraint builds its index on existing table {shown} under "
                            f"ACCESS EXCLUSIVE; build a unique index CONCURRENTLY first, then ADD CONSTRAINT ... "
                            f"USING INDEX", table=table)
            elif form in ("add_column.volatile_default", "add_column.identity", "add_column.generated_stored") \
                    and table_known:
                self.report("S010", span, f"this column gets a value computed for every row: existing table "
                            f"{shown} is rewritten under ACCESS EXCLUSIVE; add the column without it, backfill "
                            f"in batches, then set the default", table=table)
            elif form == "drop_index":
                self.report("S011", span, f"DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on {shown}: "
                            f"reads and writes wait; write DROP INDEX CONCURRENTLY inside "
                            f"`with op.get_context().autocommit_block():`", table=table)
            elif form in ("rename_table", "alter_column.rename") and table_known:
                what = "table" if form == "rename_table" else "column of"
                self.report("S017", span, f"renaming a {what} {shown} breaks the application version still "
                            f"running during the deploy (its queries use the old name); add the new name, "
                            f"move the code over, then drop the old one", table=table)

    # ------------------------------------------------------------------ locks

    def locked(self, effect: pglocks.StatementEffect, span: Span, what: str, in_autocommit: bool) -> None:
        """S015 bookkeeping (the first ACCESS EXCLUSIVE on an existing table) and S016."""
        dml = set(effect.forms) & _DML_FORMS
        for rel in effect.locks:
            if not rel.relation or rel.role in ("new table", "new view", "read table"):
                continue
            existing = self._existing(rel.relation)
            if rel.lock is Lock.ACCESS_EXCLUSIVE and existing and self.exclusive is None:
                self.exclusive = (span, rel.relation)
                if not self.timeout_set:
                    self.report(
                        "S015", span,
                        f"takes ACCESS EXCLUSIVE on existing table '{rel.relation}' with no lock_timeout set: "
                        f"if a long query holds the table, this statement waits behind it and every read and "
                        f"write of '{rel.relation}' queues behind this one; set lock_timeout first "
                        f"(op.execute(\"{LOCK_TIMEOUT_SQL}\") at the top of upgrade(), or in env.py) and retry "
                        f"on timeout", table=rel.relation, insert=LOCK_TIMEOUT_SQL)
            if dml and rel.role == "table" and existing and not in_autocommit:
                held = self.held.get(rel.relation)
                if held is not None:
                    self.report(
                        "S016", span,
                        f"backfill of '{rel.relation}' in the same transaction as {held.what} on line "
                        f"{held.line + 1}: its {held.lock.sql} lock is held until the backfill commits, "
                        f"blocking {held.lock.blocks} of the table meanwhile; backfill in a separate revision "
                        f"(or in `with op.get_context().autocommit_block():`)", table=rel.relation)
            elif not dml and rel.lock >= Lock.SHARE and rel.role == "table" and not in_autocommit:
                held = self.held.get(rel.relation)
                if held is None or rel.lock > held.lock:
                    self.held[rel.relation] = _Held(rel.lock, span.line, what)

    def finish(self) -> None:
        env = self.env_py
        if self.exclusive is None or env.path is None or env.per_migration is not False:
            return
        span = env.configure or Span.point(0)
        self.out.append(Diagnostic(
            "S018", severity("S018"), env.path, span,
            "transaction_per_migration is off (Alembic's default): `alembic upgrade` runs every pending revision "
            "in one transaction, so an ACCESS EXCLUSIVE lock a revision takes (an ALTER TABLE on an existing "
            "table) is held until the last revision commits; pass transaction_per_migration=True to "
            "context.configure()", self.env_name, {"code": "S018"}))

    # ------------------------------------------------------------------ output

    def report(self, code: str, span: Span, message: str, **data: Any) -> None:
        self.out.append(Diagnostic(code, severity(code), self.script.path, span, message, self.env_name,
                                   {"code": code, **data}))

    def call_suppressed(self, d: Diagnostic) -> bool:
        """A finding inside a string: also silenced on the first or last line of its call."""
        lines = d.data.get("call_lines") if d.path == self.script.path else None
        if not lines:
            return False
        return any(suppressed(self.script, Diagnostic(d.code, d.severity, d.path, Span.point(line), ""))
                   for line in lines)


# op classes whose every form in the lock model takes one lock on the table it names
_LOCK_BY_OP = {
    alembic_ops.AddColumnOp: "add_column", alembic_ops.DropColumnOp: "drop_column",
    alembic_ops.DropTableOp: "drop_table", alembic_ops.RenameTableOp: "rename_table",
    alembic_ops.CreateIndexOp: "create_index",
}


@cache
def _form_locks(name: str, version: int) -> frozenset[Lock | None]:
    """The locks the forms `name` / `name.*` of the lock model take on their table: e.g.
    every add_column form takes ACCESS EXCLUSIVE, no create_index form does."""
    return frozenset(form.lock_at(version) for key, form in pglocks.FORMS.items()
                     if key == name or key.startswith(name + "."))


def _sets_lock_timeout(statement: Any) -> bool:
    """SET [LOCAL|SESSION] lock_timeout = <not 0>, or SELECT set_config('lock_timeout', '<not 0>', ...)."""
    node = statement.node
    kind = type(node).__name__
    if kind == "VariableSetStmt" and (node.name or "").lower() == "lock_timeout":
        values = [getattr(getattr(a, "val", None), "sval", None) or getattr(getattr(a, "val", None), "ival", None)
                  for a in node.args or ()]
        return bool(values) and str(values[0]).strip() not in ("0", "0s", "0ms", "None")
    if kind == "SelectStmt":
        m = _SET_CONFIG.search(statement.sql)
        return m is not None and m.group("value").strip() not in ("0", "0s", "0ms")
    return False


def _first_words(sql: str) -> str:
    words = sql.split()
    return " ".join(words[:4]) if words else "SQL"


def _is_dml_event(item: Any) -> bool:
    if isinstance(item, EvaluatedOp):
        if item.call.name == "bulk_insert":
            return True
        if item.call.name != "execute":
            return False
        node = sql_argument(item.call.node)
        if node is None:
            return item.op is not None  # a SQLAlchemy update()/insert()/delete() construct: the model tells
        return bool(_DML_WORD.search(str(node.value)))
    node = sql_argument(item.node)
    return node is not None and bool(_DML_WORD.search(str(node.value)))


_DML_WORD = re.compile(r"\b(?:UPDATE|INSERT|DELETE|MERGE)\b", re.IGNORECASE)
