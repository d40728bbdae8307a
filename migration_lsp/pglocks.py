"""Stage `pglocks`: what an operation does to a PostgreSQL table while it runs.

For every form of operation a migration can contain, one table (`FORMS`) says which lock
PostgreSQL takes on the table the statement names (and, for a foreign key, on the table it
references), whether the statement scans or rewrites the table, and so what the lock blocks.
The table is version aware (`version`: a PostgreSQL major, default `DEFAULT_VERSION`).

An Alembic op is classified by the SQL it emits: the op is rendered through Alembic's own
offline (`--sql`) machinery (`render_sql`) and that SQL is parsed with PostgreSQL's own
parser (pglast, i.e. libpg_query), so an op and the same statement written as raw SQL in
`op.execute(...)` go through the same classifier and the same table. What the SQL does not
say (a column's old type, the table an index belongs to, whether a constraint is a foreign
key) comes from the replayed schema before the op, when known; otherwise the answer is
"unknown" (None), never a guess. Without pglast everything is unknown.

Every form's `examples` (Alembic op calls on `example_metadata()`, or raw SQL) are run on a
real PostgreSQL by tests/test_pglocks_real.py, which compares `pg_locks` and
`pg_class.relfilenode` with this table: the table cannot drift from what PostgreSQL does.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from typing import Any, Literal

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.operations import ops as alembic_ops
from sqlalchemy.dialects.postgresql.base import PGDialect

from .project import postgres_major, sqlalchemy_dialect
from .replay import created_table
from .schema import SchemaState, TableState, table_key

try:  # PostgreSQL's own parser; without it raw SQL (and so every op) is "unknown"
    import pglast
    from pglast import ast as pg
    from pglast import enums as pge
    HAVE_PGLAST = True
except ImportError:  # pragma: no cover - pglast has wheels for the usual platforms
    HAVE_PGLAST = False

SUPPORTED_VERSIONS = tuple(range(12, 19))
DEFAULT_VERSION = SUPPORTED_VERSIONS[-1]


def postgres_version(value: Any) -> int:
    """A `postgresVersion` setting as a major version: 16, "16", "16.4" -> 16; anything
    else (missing, nonsense, older than 9) -> DEFAULT_VERSION."""
    return postgres_major(value) or DEFAULT_VERSION


class Lock(IntEnum):
    """PostgreSQL's table lock modes, numbered as PostgreSQL numbers them (weakest first)."""

    ACCESS_SHARE = 1
    ROW_SHARE = 2
    ROW_EXCLUSIVE = 3
    SHARE_UPDATE_EXCLUSIVE = 4
    SHARE = 5
    SHARE_ROW_EXCLUSIVE = 6
    EXCLUSIVE = 7
    ACCESS_EXCLUSIVE = 8

    @property
    def sql(self) -> str:
        """As written in SQL and the docs: `ACCESS EXCLUSIVE`."""
        return self.name.replace("_", " ")

    @property
    def pg_mode(self) -> str:
        """As `pg_locks.mode` shows it: `AccessExclusiveLock`."""
        return "".join(part.capitalize() for part in self.name.split("_")) + "Lock"

    @property
    def blocks(self) -> str:
        """What ordinary traffic on the table waits while the lock is held."""
        if self is Lock.ACCESS_EXCLUSIVE:
            return "reads and writes"
        if self >= Lock.SHARE:
            return "writes"
        return "neither reads nor writes"


# An example is an Alembic op call (a function of `op`, an Operations that records) or raw SQL,
# on the tables of `example_metadata()`.
Example = Callable[[Any], Any] | str


@dataclass(frozen=True)
class Form:
    """One kind of statement and what it does to the table it names."""

    name: str
    summary: str
    lock: Lock | None  # on the table the statement names; None: it names no table
    scan: bool | None  # reads every row under that lock (None: cannot be known from the SQL)
    rewrite: bool | None  # writes the table anew (a new relfilenode: TRUNCATE's is empty, unread)
    referenced: Lock | None = None  # on the table a foreign key references
    lock_before: tuple[int, Lock | None] | None = None  # (N, lock): the lock on versions below N
    unsure: tuple[int, ...] = ()  # versions whose lock nobody has checked: unknown there
    rewrite_below: int | None = None  # also rewrites on PostgreSQL versions below this one
    since: int = 0  # exists since this PostgreSQL major
    transactional: bool = True  # False: cannot run inside a transaction block
    examples: tuple[Example, ...] = ()
    note: str = ""

    def lock_at(self, version: int) -> Lock | None:
        if version in self.unsure:
            return None
        if self.lock_before is not None and version < self.lock_before[0]:
            return self.lock_before[1]
        return self.lock

    def rewrites(self, version: int) -> bool | None:
        if self.rewrite_below is not None and version < self.rewrite_below:
            return True
        return self.rewrite

    def scans(self, version: int) -> bool | None:
        if self.rewrite_below is not None and version < self.rewrite_below:
            return True
        return self.scan


def example_metadata() -> sa.MetaData:
    """The tables every example runs against (the real-PostgreSQL test fills them with rows).
    Constraints marked `postgresql_not_valid` exist NOT VALID (to be validated)."""
    md = sa.MetaData()
    sa.Table("parent", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("code", sa.String(10)))
    sa.Table(
        "t", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("parent.id", name="fk_t_parent")),
        sa.Column("other_id", sa.Integer),
        sa.Column("name", sa.String(20)),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("note", sa.Text),
        sa.Column("n", sa.Integer),
        sa.Column("created", sa.DateTime),
        sa.Column("label", sa.String(10), nullable=False, server_default="x"),
        sa.CheckConstraint("amount >= 0", name="ck_t_amount"),
        sa.CheckConstraint("n > 0", name="ck_t_n_nv", postgresql_not_valid=True),
        sa.CheckConstraint("created IS NOT NULL", name="ck_t_created_nn"),
        sa.ForeignKeyConstraint(["other_id"], ["parent.id"], name="fk_t_other_nv", postgresql_not_valid=True),
        sa.UniqueConstraint("name", name="uq_t_name"),
        sa.Index("ix_t_note", "note"),
        sa.Index("ux_t_n", "n", unique=True),
    )
    sa.Table("u", md, sa.Column("id", sa.Integer, nullable=False), sa.Column("v", sa.Text))
    return md


# Created after the tables of example_metadata() (what some examples need to exist).
EXAMPLE_SETUP_SQL = (
    "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
    "CREATE FUNCTION noop2() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE TRIGGER tr_t_noop BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION noop()",
)


AE, SRE, SHARE, SUE = Lock.ACCESS_EXCLUSIVE, Lock.SHARE_ROW_EXCLUSIVE, Lock.SHARE, Lock.SHARE_UPDATE_EXCLUSIVE
Col = sa.Column

_FORMS = (
    # ---- tables
    Form("create_table", "create a table", AE, False, False, examples=(
        lambda op: op.create_table("t_new", Col("id", sa.Integer, primary_key=True), Col("v", sa.Text)),),
         note="the lock is on the new table only: nobody waits for it"),
    Form("create_table.foreign_key", "create a table with a foreign key", AE, False, False, referenced=SRE,
         examples=(lambda op: op.create_table("t_child", Col("id", sa.Integer, primary_key=True),
                                              Col("parent_id", sa.Integer, sa.ForeignKey("parent.id"))),)),
    Form("drop_table", "drop a table", AE, False, False, examples=(lambda op: op.drop_table("u"),)),
    Form("drop_table.foreign_key", "drop a table that has foreign keys", AE, False, False, referenced=AE,
         examples=(lambda op: op.drop_table("t"),),
         note="the referenced tables are locked too (known when the schema history knows the keys)"),
    Form("rename_table", "rename a table", AE, False, False, examples=(lambda op: op.rename_table("u", "u2"),)),
    Form("truncate", "truncate a table", AE, False, True, examples=("TRUNCATE u",),
         note="a new, empty file: nothing is read"),
    # ---- columns
    Form("add_column", "add a column without a default", AE, False, False, examples=(
        lambda op: op.add_column("t", Col("c", sa.Integer)),
        lambda op: op.batch_alter_table("t").add_column(Col("c", sa.Text)),)),
    Form("add_column.default", "add a column with a non-volatile default", AE, False, False, rewrite_below=11,
         examples=(lambda op: op.add_column("t", Col("c", sa.Integer, nullable=False, server_default="0")),
                   lambda op: op.add_column("t", Col("c", sa.DateTime, server_default=sa.func.now())),
                   lambda op: op.add_column("t", Col("c", sa.DateTime, server_default=sa.text("CURRENT_TIMESTAMP"))),),
         note="since PostgreSQL 11 a non-volatile default (a constant, now()) is stored in the catalog"),
    Form("add_column.volatile_default", "add a column with a volatile default", AE, True, True, examples=(
        lambda op: op.add_column("t", Col("c", sa.Float, server_default=sa.text("random()"))),
        lambda op: op.add_column("t", Col("c", sa.Uuid, server_default=sa.text("gen_random_uuid()"))),
        lambda op: op.add_column("t", Col("c", sa.DateTime, server_default=sa.func.clock_timestamp())),
        "ALTER TABLE t ADD COLUMN c serial",),
         note="every existing row gets its own value"),
    Form("add_column.unknown_default", "add a column with a default of unknown volatility", AE, None, None,
         note="a default calling a function PostgreSQL does not ship: it rewrites if the function is volatile"),
    Form("add_column.identity", "add an identity column", AE, True, True, examples=(
        lambda op: op.add_column("t", Col("c", sa.Integer, sa.Identity())),)),
    Form("add_column.generated_stored", "add a stored generated column", AE, True, True, examples=(
        lambda op: op.add_column("t", Col("c", sa.Integer, sa.Computed("n * 2", persisted=True))),)),
    Form("add_column.generated_virtual", "add a virtual generated column", AE, False, False, since=18, examples=(
        lambda op: op.add_column("t", Col("c", sa.Integer, sa.Computed("n * 2"))),),
         note="PostgreSQL 18 computes a virtual column on read (before 18 SQLAlchemy renders it STORED)"),
    Form("add_column.references", "add a column with an inline foreign key", AE, False, False, referenced=SRE,
         examples=("ALTER TABLE t ADD COLUMN c integer REFERENCES parent (id)",)),
    Form("drop_column", "drop a column", AE, False, False, examples=(lambda op: op.drop_column("t", "note"),)),
    Form("alter_column.rename", "rename a column", AE, False, False, examples=(
        lambda op: op.alter_column("t", "note", new_column_name="remark"),)),
    Form("alter_column.type", "change a column's type (rewrites)", AE, True, True, examples=(
        lambda op: op.alter_column("t", "n", type_=sa.BigInteger, existing_type=sa.Integer),
        lambda op: op.alter_column("t", "n", type_=sa.BigInteger),  # old type from the schema history
        lambda op: op.alter_column("t", "name", type_=sa.String(10)),
        lambda op: op.alter_column("t", "amount", type_=sa.Numeric(12, 4)),
        lambda op: op.alter_column("t", "note", type_=sa.String(200)),
        lambda op: op.alter_column("t", "name", type_=sa.Text, postgresql_using="upper(name)"),),
         note="every row is converted; indexes on the column are rebuilt"),
    Form("alter_column.type_coercible", "change a column's type without a rewrite", AE, False, False, examples=(
        lambda op: op.alter_column("t", "name", type_=sa.String(40)),
        lambda op: op.alter_column("t", "name", type_=sa.Text),
        lambda op: op.alter_column("t", "name", type_=sa.String()),
        lambda op: op.alter_column("t", "note", type_=sa.String()),
        lambda op: op.alter_column("t", "amount", type_=sa.Numeric(14, 2)),
        lambda op: op.alter_column("t", "amount", type_=sa.Numeric()),
        lambda op: op.alter_column("t", "name", type_=sa.Text, postgresql_using="name::text"),),
         note="varchar to text or to a longer varchar, numeric to more precision: binary coercible; a CHECK "
              "constraint on the column is validated again (a scan)"),
    Form("alter_column.type_unknown", "change a column's type (old type unknown)", AE, None, None,
         note="whether it rewrites depends on the old type, which the schema history does not know"),
    Form("alter_column.type_timezone", "change timestamp to timestamptz", AE, None, None, examples=(
        lambda op: op.alter_column("t", "created", type_=sa.DateTime(timezone=True)),),
         note="no rewrite when the session time zone is UTC (PostgreSQL 12+), a rewrite otherwise"),
    Form("alter_column.set_not_null", "make a column NOT NULL", AE, True, False, examples=(
        lambda op: op.alter_column("t", "n", nullable=False),
        lambda op: op.alter_column("t", "n", existing_type=sa.Integer, nullable=False),
        lambda op: op.alter_column("t", "created", nullable=False),),  # no scan: ck_t_created_nn proves it
         note="scans every row; since PostgreSQL 12 a valid CHECK (col IS NOT NULL) makes the scan unnecessary"),
    Form("alter_column.drop_not_null", "make a column nullable", AE, False, False, examples=(
        lambda op: op.alter_column("t", "label", nullable=True),)),
    Form("alter_column.set_default", "set a column's default", AE, False, False, examples=(
        lambda op: op.alter_column("t", "n", server_default="1"),
        lambda op: op.alter_column("t", "n", server_default=sa.text("random()")),),
         note="only rows inserted later get it"),
    Form("alter_column.drop_default", "drop a column's default", AE, False, False, examples=(
        lambda op: op.alter_column("t", "label", server_default=None),)),
    Form("comment", "set a table's or a column's comment", SUE, False, False, examples=(
        lambda op: op.alter_column("t", "n", comment="a number"),
        lambda op: op.create_table_comment("t", "things"),
        lambda op: op.drop_table_comment("t"),)),
    # ---- indexes
    Form("create_index", "create an index", SHARE, True, False, examples=(
        lambda op: op.create_index("ix_t_n2", "t", ["n"]),
        lambda op: op.create_index("ux_t_amount", "t", ["amount"], unique=True),),
         note="blocks writes while the index is built"),
    Form("create_index.concurrently", "create an index concurrently", SUE, True, False, transactional=False,
         examples=(lambda op: op.create_index("ix_t_n2", "t", ["n"], postgresql_concurrently=True),
                   "CREATE UNIQUE INDEX CONCURRENTLY ux_t_amount ON t (amount)",),
         note="waits for the transactions using the table; if it fails it leaves an INVALID index behind"),
    Form("drop_index", "drop an index", AE, False, False, examples=(
        lambda op: op.drop_index("ix_t_note", table_name="t"),
        lambda op: op.drop_index("ix_t_note"),),  # the table from the schema history
         note="the table is locked too"),
    Form("drop_index.concurrently", "drop an index concurrently", SUE, False, False, transactional=False,
         examples=(lambda op: op.drop_index("ix_t_note", table_name="t", postgresql_concurrently=True),),
         note="waits for the transactions using the table"),
    # ---- constraints
    Form("add_constraint.foreign_key", "add a foreign key", SRE, True, False, referenced=SRE, examples=(
        lambda op: op.create_foreign_key("fk_t_other", "t", "parent", ["other_id"], ["id"]),),
         note="checks every row under the lock; NOT VALID, then VALIDATE CONSTRAINT, does not"),
    Form("add_constraint.foreign_key_not_valid", "add a foreign key NOT VALID", SRE, False, False,
         referenced=SRE, examples=(lambda op: op.create_foreign_key(
             "fk_t_other", "t", "parent", ["other_id"], ["id"], postgresql_not_valid=True),)),
    Form("add_constraint.check", "add a check constraint", AE, True, False, examples=(
        lambda op: op.create_check_constraint("ck_t_n", "t", "n > -1"),
        lambda op: op.add_column("t", Col("c", sa.Integer, sa.CheckConstraint("c > 0"))),)),
    Form("add_constraint.check_not_valid", "add a check constraint NOT VALID", AE, False, False, examples=(
        lambda op: op.create_check_constraint("ck_t_n", "t", "n > -1", postgresql_not_valid=True),)),
    Form("add_constraint.unique", "add a unique constraint", AE, True, False, examples=(
        lambda op: op.create_unique_constraint("uq_t_amount", "t", ["amount"]),
        lambda op: op.add_column("t", Col("c", sa.Integer, unique=True)),
        "ALTER TABLE t ADD COLUMN c integer UNIQUE",),
         note="builds its index under the lock; build it CONCURRENTLY first and add the constraint USING INDEX"),
    Form("add_constraint.primary_key", "add a primary key", AE, True, False, examples=(
        lambda op: op.create_primary_key("pk_u", "u", ["id"]),)),
    Form("add_constraint.using_index", "add a unique / primary key constraint USING INDEX", AE, False, False,
         examples=("ALTER TABLE t ADD CONSTRAINT uq_t_n UNIQUE USING INDEX ux_t_n",)),
    Form("add_constraint.exclude", "add an exclusion constraint", AE, True, False, examples=(
        lambda op: op.create_exclude_constraint("ex_t_n", "t", ("n", "="), using="btree"),)),
    Form("validate_constraint", "validate a constraint", SUE, True, False, examples=(
        "ALTER TABLE t VALIDATE CONSTRAINT ck_t_n_nv",)),
    Form("validate_constraint.foreign_key", "validate a foreign key", SUE, True, False,
         referenced=Lock.ROW_SHARE, examples=("ALTER TABLE t VALIDATE CONSTRAINT fk_t_other_nv",),
         note="the referenced table is known when the schema history knows the constraint"),
    Form("drop_constraint", "drop a constraint", AE, False, False, examples=(
        lambda op: op.drop_constraint("ck_t_amount", "t", type_="check"),
        lambda op: op.drop_constraint("uq_t_name", "t", type_="unique"),
        lambda op: op.drop_constraint("t_pkey", "t", type_="primary"),)),
    Form("drop_constraint.foreign_key", "drop a foreign key", AE, False, False, referenced=AE, examples=(
        lambda op: op.drop_constraint("fk_t_parent", "t", type_="foreignkey"),
        lambda op: op.drop_constraint("fk_t_parent", "t"),),  # its kind from the schema history
         note="the referenced table is known when the schema history knows the constraint"),
    Form("rename_index", "rename an index", SUE, False, False, lock_before=(12, AE), examples=(
        "ALTER INDEX ix_t_note RENAME TO ix_t_remark",),
         note="the lock is on the index; before PostgreSQL 12 it was ACCESS EXCLUSIVE"),
    Form("rename_constraint", "rename a constraint", AE, False, False, examples=(
        "ALTER TABLE t RENAME CONSTRAINT ck_t_amount TO ck_t_amount_positive",)),
    Form("alter_column.set_statistics", "set a column's statistics target", SUE, False, False, examples=(
        "ALTER TABLE t ALTER COLUMN n SET STATISTICS 500",)),
    Form("alter_column.add_identity", "make an existing column an identity column", AE, False, False, examples=(
        "ALTER TABLE u ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY",)),
    Form("create_trigger", "create a trigger", SRE, False, False, examples=(
        "CREATE TRIGGER tr_t_new BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION noop()",)),
    Form("drop_trigger", "drop a trigger", AE, False, False, examples=("DROP TRIGGER tr_t_noop ON t",)),
    Form("enable_trigger", "enable or disable triggers", SRE, False, False, examples=(
        "ALTER TABLE t DISABLE TRIGGER tr_t_noop", "ALTER TABLE t ENABLE TRIGGER ALL",)),
    Form("create_policy", "create a row security policy", AE, False, False, examples=(
        "CREATE POLICY p_t ON t USING (true)",)),
    Form("row_security", "enable or disable row level security", AE, False, False, examples=(
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY",)),
    Form("set_logged", "make a table logged or unlogged", AE, True, True, examples=("ALTER TABLE u SET UNLOGGED",)),
    Form("create_view", "create a view", AE, False, False, examples=("CREATE VIEW v_t AS SELECT id, n FROM t",),
         note="the lock is on the new view; the tables it reads get ACCESS SHARE"),
    Form("create_table_as", "create a table from a query", AE, False, False, examples=(
        "CREATE TABLE t_copy AS SELECT id, n FROM t",), note="reads the whole query's tables"),
    Form("reindex", "rebuild indexes", SHARE, True, False, examples=("REINDEX TABLE t", "REINDEX INDEX ix_t_note",),
         note="blocks writes while the indexes are rebuilt"),
    Form("reindex.concurrently", "rebuild indexes concurrently", SUE, True, False, since=12, transactional=False,
         examples=("REINDEX TABLE CONCURRENTLY t",)),
    Form("vacuum", "vacuum a table", SUE, True, False, transactional=False, examples=("VACUUM u",)),
    Form("vacuum.full", "VACUUM FULL", AE, True, True, transactional=False, examples=("VACUUM FULL u",)),
    Form("analyze", "analyze a table", SUE, False, False, examples=("ANALYZE u",),
         note="reads a sample of the rows"),
    Form("grant", "grant or revoke privileges on a table", Lock.ACCESS_SHARE, False, False,
         lock_before=(16, None), unsure=(16, 17),
         examples=("GRANT SELECT ON t TO PUBLIC", "REVOKE ALL ON u FROM PUBLIC",),
         note="no lock on the table up to PostgreSQL 15, ACCESS SHARE on 18 (both checked; 16 and 17 not)"),
    Form("cluster", "CLUSTER a table", AE, True, True, examples=("CLUSTER t USING ix_t_note",)),
    # ---- data and everything else
    Form("insert", "insert rows", Lock.ROW_EXCLUSIVE, False, False, examples=(
        lambda op: alembic_ops.BulkInsertOp(
            sa.table("parent", sa.column("id", sa.Integer), sa.column("code", sa.String)),
            [{"id": -1, "code": "a"}, {"id": -2, "code": "b"}]),
        "INSERT INTO parent (id, code) VALUES (-1, 'a')",)),
    Form("update", "update rows", Lock.ROW_EXCLUSIVE, None, False, examples=(
        lambda op: op.execute(sa.text("UPDATE t SET note = note || '!'")),
        lambda op: op.execute("UPDATE t SET note = 'x' WHERE id = 1"),),
         note="rows it changes stay locked until commit"),
    Form("delete", "delete rows", Lock.ROW_EXCLUSIVE, None, False, examples=("DELETE FROM u WHERE id < 10",)),
    Form("merge", "merge rows", Lock.ROW_EXCLUSIVE, None, False, since=15, examples=(
        "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET note = u.v",)),
    Form("select", "read rows", Lock.ACCESS_SHARE, None, False, examples=(
        "SELECT count(*) FROM t", "UPDATE t SET note = u.v FROM u WHERE t.id = u.id",
        "INSERT INTO u (id, v) SELECT id, note FROM t WHERE id < 10",),
         note="blocks only ACCESS EXCLUSIVE (most DDL on the table)"),
    Form("select.for_update", "lock rows for update", Lock.ROW_SHARE, None, False, examples=(
        "SELECT id FROM t WHERE id < 5 FOR UPDATE",)),
    Form("transaction", "transaction control", None, False, False, examples=("SAVEPOINT sp",),
         note="COMMIT / BEGIN in a migration end Alembic's transaction: what follows runs outside it"),
    Form("lock_table", "LOCK TABLE", None, False, False, examples=("LOCK TABLE t IN SHARE MODE",),
         note="the mode the statement names"),
    Form("no_table", "a statement that locks no table", None, False, False, examples=(
        "SET lock_timeout = '2s'", "CREATE SEQUENCE seq_x", "CREATE TYPE mood AS ENUM ('a', 'b')",
        "SELECT pg_advisory_xact_lock(42)", "DROP FUNCTION noop2()",)),
)
FORMS: dict[str, Form] = {form.name: form for form in _FORMS}
UNKNOWN = Form("unknown", "a statement the lock model does not know", None, None, None)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RelationLock:
    relation: str | None  # "schema.name" or "name"; None: not known (an index's table)
    lock: Lock
    role: str  # "table", "referenced table", "new table", "table of index ix"


@dataclass(frozen=True)
class StatementEffect:
    """One SQL statement and what it does. `offset`/`length` locate `sql` in the string
    it came from (characters)."""

    sql: str
    offset: int
    length: int
    forms: tuple[str, ...]
    locks: tuple[RelationLock, ...]  # the strongest lock per relation
    scan: bool | None
    rewrite: bool | None
    transactional: bool = True
    unknown: str = ""  # why a part is unknown

    @property
    def lock(self) -> Lock | None:
        """The strongest lock it takes."""
        return max((r.lock for r in self.locks), default=None)

    @property
    def blocks(self) -> str:
        lock = self.lock
        return lock.blocks if lock is not None else "nothing"


# --------------------------------------------------------------------------- rendering


def render_sql(op: alembic_ops.MigrateOperation, dialect: str = "postgresql", version: int | None = None) -> str:
    """The SQL Alembic emits for `op` in offline (`--sql`) mode: Alembic's own rendering, on
    a private copy of the op (rendering attaches the op's columns to a table). Raises what
    Alembic raises for an op it cannot render.

    Rendering costs milliseconds and several readers want the same op's SQL (the PostgreSQL
    rule families, inlay hints, hover): it is remembered with the op, per (dialect, version).
    An op is changed after it is built only where the schema history completes an
    alter_column (`replay.with_history`: its existing_* arguments), which are part of the
    key; it is forgotten with the op."""
    version = version or None
    dialect_version = (dialect, version if dialect == "postgresql" else None)
    key = (*dialect_version, *_completed(op))
    with _RENDERED_LOCK:
        known = _rendered_of(op)
        if known is not None and key in known:
            return known[key]
    sql = _render(op, *dialect_version)
    with _RENDERED_LOCK:
        known = _rendered_of(op, create=True)
        if known is not None:
            known[key] = sql
    return sql


# op -> {(dialect, version, *what the history completed): its SQL}
_RENDERED: weakref.WeakKeyDictionary[Any, dict[tuple, str]] = weakref.WeakKeyDictionary()
_RENDERED_LOCK = threading.Lock()


def _completed(op: Any) -> tuple:
    """What `replay.with_history` may fill in after an op is built (MySQL's and MS-SQL's
    rendering of alter_column depends on it)."""
    if isinstance(op, alembic_ops.AlterColumnOp):
        return id(op.existing_type), op.existing_nullable, id(op.existing_server_default), op.existing_comment
    return ()


def _rendered_of(op: Any, create: bool = False) -> dict[tuple, str] | None:
    """The op's remembered renderings; None when the op cannot be remembered (not weakly
    referable, or unhashable)."""
    try:
        known = _RENDERED.get(op)
        if known is None and create:
            known = _RENDERED[op] = {}
    except TypeError:
        return None
    return known


class _Contexts(threading.local):
    """Per thread: (dialect, version) -> (offline MigrationContext, its buffer)."""

    def __init__(self) -> None:  # (run once in each thread that uses it)
        self.by_dialect: dict[tuple[str, int | None], tuple[MigrationContext, io.StringIO]] = {}


_CONTEXTS = _Contexts()


def _render(op: alembic_ops.MigrateOperation, dialect: str, version: int | None) -> str:
    """Render through one offline MigrationContext per (dialect, version) and thread, as
    `alembic upgrade --sql` renders a whole history through one: configuring a context
    (its dialect, the version table) costs more than rendering an op."""
    contexts = _CONTEXTS.by_dialect
    found = contexts.get((dialect, version))
    if found is None:
        buf = io.StringIO()
        sa_dialect = sqlalchemy_dialect(dialect)
        if dialect == "postgresql" and version and isinstance(sa_dialect, PGDialect):
            sa_dialect.server_version_info = (version, 0)
            sa_dialect.supports_virtual_generated_columns = version >= 18
        context = MigrationContext.configure(dialect=sa_dialect, opts={"as_sql": True, "output_buffer": buf})
        found = contexts[(dialect, version)] = (context, buf)
    context, buf = found
    buf.seek(0)
    buf.truncate()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Operations(context).invoke(_fresh(op))
        return buf.getvalue()
    finally:
        buf.seek(0)
        buf.truncate()


def _fresh_column(column: sa.Column) -> sa.Column:
    copy = column._copy()
    for fk in column.foreign_keys:
        if fk.constraint is not None:  # _copy leaves out keys a table's constraint owns
            copy.append_foreign_key(fk._copy())
    return copy


def _fresh(op: Any) -> Any:
    O = alembic_ops
    if isinstance(op, O.CreateTableOp):
        table = created_table(op).to_metadata(sa.MetaData())
        return O.CreateTableOp.from_table(table)
    if isinstance(op, O.AddColumnOp):
        return O.AddColumnOp(op.table_name, _fresh_column(op.column), schema=op.schema, **op.kw)
    return op


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Statement:
    node: Any
    offset: int  # characters
    length: int
    sql: str


def parse_sql(sql: str) -> list[_Statement] | None:
    """The statements of `sql` with their place in it; None when pglast is missing or the
    SQL does not parse. The same SQL is asked about by several rule families in a row (an
    op's rendering, a literal in op.execute): the last few parses are remembered (the
    statements are only read, never changed)."""
    if not HAVE_PGLAST:
        return None
    parsed = _parse(sql)
    return list(parsed) if parsed is not None else None


@lru_cache(maxsize=256)
def _parse(sql: str) -> tuple[_Statement, ...] | None:
    try:
        raws = pglast.parse_sql(sql)
    except (pglast.Error, ValueError):  # a syntax error; text libpg_query cannot encode (a lone surrogate)
        return None
    out = []
    for raw in raws:  # pglast turns libpg_query's byte offsets into character offsets
        start = raw.stmt_location or 0
        text = sql[start:start + raw.stmt_len] if raw.stmt_len else sql[start:]
        stripped = text.lstrip()
        before = start + len(text) - len(stripped)
        text = stripped.rstrip().rstrip(";").rstrip()
        out.append(_Statement(raw.stmt, before, len(text), text))
    return tuple(out)


# --------------------------------------------------------------------------- classifying


@dataclass
class _Context:
    state: SchemaState | None = None
    # (table key, column) -> its type before the op, from the op itself (existing_type)
    types: dict[tuple[str, str], Any] = field(default_factory=dict)
    # constraints added earlier in the same SQL: (table key, name) -> referenced table or False
    added: dict[tuple[str, str], str | Literal[False]] = field(default_factory=dict)

    def table(self, key: str | None) -> TableState | None:
        return self.state.tables.get(key) if self.state is not None and key else None

    def column_type(self, key: str, column: str) -> Any:
        if (key, column) in self.types:
            return self.types[(key, column)]
        table = self.table(key)
        col = table.column(column) if table is not None else None
        return col.column.type if col is not None else None

    def foreign_key(self, key: str, name: str | None) -> str | Literal[False] | None:
        """The table foreign key `name` of table `key` references; False: it is not a foreign
        key; None: not known."""
        if name and (key, name) in self.added:
            return self.added[(key, name)]
        table = self.table(key)
        if table is None or not name:
            return None
        for constraint, _ in table.constraints:
            if constraint.name == name:
                if isinstance(constraint, sa.ForeignKeyConstraint) and constraint.elements:
                    return constraint.elements[0].target_fullname.rsplit(".", 1)[0]
                return False
        return None

    def not_null_checked(self, key: str, column: str) -> bool:
        """Does a valid CHECK (column IS NOT NULL) of table `key` prove the column has no NULL?"""
        table = self.table(key)
        checks = [c for c, _ in table.constraints if isinstance(c, sa.CheckConstraint)] if table is not None else []
        if not checks:
            return False
        pattern = re.compile(rf"\(*\s*\"?{re.escape(column)}\"?\s+IS\s+NOT\s+NULL\s*\)*", re.IGNORECASE)
        return any(not c.dialect_options["postgresql"].get("not_valid") and pattern.fullmatch(str(c.sqltext).strip())
                   for c in checks)

    def checks_column(self, key: str, column: str) -> bool | None:
        """Does a CHECK constraint of table `key` mention `column`? None: not known."""
        table = self.table(key)
        if table is None:
            return None
        checks = [c for c, _ in table.constraints if isinstance(c, sa.CheckConstraint)]
        if not checks:
            return False
        word = re.compile(rf"\b{re.escape(column)}\b")
        return any(word.search(str(c.sqltext)) for c in checks)

    def index_table(self, name: str) -> str | None:
        if self.state is None:
            return None
        found = [key for key, table in self.state.tables.items()
                 if any(index.name == name for index, _ in table.indexes)]
        return found[0] if len(found) == 1 else None


@dataclass
class _Hit:
    form: Form
    table: str | None
    referenced: tuple[str, ...] = ()
    role: str = "table"
    lock: Lock | None = None  # instead of the form's (LOCK TABLE)
    why: str = ""
    scan: Any = "form"  # instead of the form's: what the context shows


def relation_name(rv: Any) -> str:
    """A parsed statement's relation (pglast RangeVar) as the schema state keys its table."""
    return table_key(rv.relname, getattr(rv, "schemaname", None) or None)


def _names(items: Iterable[Any]) -> list[str]:
    return [getattr(item, "sval", "") for item in items or ()]


def _classify(node: Any, ctx: _Context, version: int) -> list[_Hit]:
    kind = type(node).__name__
    if kind == "AlterTableStmt" and node.objtype == pge.ObjectType.OBJECT_TABLE:
        table = relation_name(node.relation)
        return [hit for cmd in node.cmds or () for hit in _alter_cmd(cmd, table, ctx, version)]
    if kind == "CreateStmt":
        if node.partbound is not None or node.inhRelations:
            return [_Hit(UNKNOWN, None, why="CREATE TABLE ... PARTITION OF / INHERITS")]
        refs = []
        for element in node.tableElts or ():
            constraints = element.constraints or () if type(element).__name__ == "ColumnDef" else (element,)
            refs += [relation_name(c.pktable) for c in constraints
                     if type(c).__name__ == "Constraint" and c.contype == pge.ConstrType.CONSTR_FOREIGN]
        form = FORMS["create_table.foreign_key" if refs else "create_table"]
        return [_Hit(form, relation_name(node.relation), tuple(refs), role="new table")]
    if kind == "IndexStmt":
        return [_Hit(FORMS["create_index.concurrently" if node.concurrent else "create_index"], relation_name(node.relation))]
    if kind == "DropStmt":
        return _drop(node, ctx)
    if kind == "RenameStmt":
        if node.renameType == pge.ObjectType.OBJECT_TABLE:
            return [_Hit(FORMS["rename_table"], relation_name(node.relation))]
        if node.renameType == pge.ObjectType.OBJECT_INDEX:
            return [_Hit(FORMS["rename_index"], relation_name(node.relation), role="index")]
        if node.renameType == pge.ObjectType.OBJECT_TABCONSTRAINT:
            return [_Hit(FORMS["rename_constraint"], relation_name(node.relation))]
        if node.renameType == pge.ObjectType.OBJECT_COLUMN and node.relationType == pge.ObjectType.OBJECT_TABLE:
            return [_Hit(FORMS["alter_column.rename"], relation_name(node.relation))]
        return [_Hit(UNKNOWN, None, why=f"RENAME of a {node.renameType.name}")]
    if kind == "CommentStmt":
        parts = _names(node.object)
        if node.objtype == pge.ObjectType.OBJECT_COLUMN and len(parts) >= 2:
            return [_Hit(FORMS["comment"], ".".join(parts[:-1]))]
        if node.objtype == pge.ObjectType.OBJECT_TABLE and parts:
            return [_Hit(FORMS["comment"], ".".join(parts))]
        if node.objtype == pge.ObjectType.OBJECT_INDEX and parts:
            return [_Hit(FORMS["comment"], ".".join(parts), role="index")]
        if node.objtype == pge.ObjectType.OBJECT_TABCONSTRAINT and len(parts) >= 2:
            return [_Hit(FORMS["comment"], ".".join(parts[:-1]))]
        return [_Hit(UNKNOWN, None, why=f"COMMENT ON {node.objtype.name}")]
    if kind == "TruncateStmt":
        return [_Hit(FORMS["truncate"], relation_name(rv)) for rv in node.relations]
    if kind in _DML:
        main = relation_name(node.relation)
        return [_Hit(FORMS[_DML[kind]], main)] + _reads(node, {main})
    if kind == "SelectStmt":
        form = FORMS["select.for_update" if node.lockingClause else "select"]
        reads = _reads(node, set())
        return [_Hit(form, h.table, role="table", why=h.why) if h.form is FORMS["select"] else h for h in reads] \
            or [_Hit(FORMS["no_table"], None)]
    if kind == "CreateTableAsStmt" and node.objtype == pge.ObjectType.OBJECT_TABLE and node.into:
        return [_Hit(FORMS["create_table_as"], relation_name(node.into.rel), role="new table")] + _reads(node.query, set())
    if kind == "ViewStmt":
        return [_Hit(FORMS["create_view"], relation_name(node.view), role="new view")] + _reads(node.query, set())
    if kind == "CreateTrigStmt":
        return [_Hit(FORMS["create_trigger"], relation_name(node.relation))]
    if kind == "CreatePolicyStmt":
        return [_Hit(FORMS["create_policy"], relation_name(node.table))]
    if kind == "ReindexStmt":
        return _reindex(node, ctx)
    if kind == "VacuumStmt":
        return _vacuum(node)
    if kind == "ClusterStmt" and node.relation is not None:
        return [_Hit(FORMS["cluster"], relation_name(node.relation))]
    if kind == "TransactionStmt":
        return [_Hit(FORMS["transaction"], None)]
    if kind == "GrantStmt" and node.targtype == pge.GrantTargetType.ACL_TARGET_OBJECT:
        if node.objtype == pge.ObjectType.OBJECT_TABLE:
            return [_Hit(FORMS["grant"], relation_name(rv)) for rv in node.objects]
        return [_Hit(FORMS["no_table"], None)]
    if kind == "LockStmt":
        return [_Hit(FORMS["lock_table"], relation_name(rv), lock=Lock(node.mode)) for rv in node.relations]
    if kind in _NO_TABLE:
        return [_Hit(FORMS["no_table"], None)]
    return [_Hit(UNKNOWN, None, why=f"{kind} is not in the lock model")]


_DML = {"InsertStmt": "insert", "UpdateStmt": "update", "DeleteStmt": "delete", "MergeStmt": "merge"}


def _reads(node: Any, skip: set[str]) -> list[_Hit]:
    """ACCESS SHARE on every other table a statement reads; a data-modifying WITH or a
    function PostgreSQL does not ship makes it unknown."""
    ctes = {cte.ctename for n in _walk(node) if type(n).__name__ == "WithClause" for cte in n.ctes or ()}
    hits = []
    for n in _walk(node):
        kind = type(n).__name__
        if kind == "RangeVar" and n.relname not in ctes and relation_name(n) not in skip:
            skip.add(relation_name(n))
            hits.append(_Hit(FORMS["select"], relation_name(n), role="read table"))
        elif kind == "CommonTableExpr" and type(n.ctequery).__name__ != "SelectStmt":
            return [_Hit(UNKNOWN, None, why="a WITH that changes data")]
        elif kind == "FuncCall" and (_names(n.funcname) or [""])[-1].lower() not in _KNOWN_FUNCTIONS:
            hits.append(_Hit(UNKNOWN, None, why=f"what {'.'.join(_names(n.funcname))}() does"))
    return hits


def _reindex(node: Any, ctx: _Context) -> list[_Hit]:
    form = FORMS["reindex.concurrently" if _option(node.params, "concurrently") else "reindex"]
    K = pge.ReindexObjectType
    if node.kind == K.REINDEX_OBJECT_TABLE:
        return [_Hit(form, relation_name(node.relation))]
    if node.kind == K.REINDEX_OBJECT_INDEX:
        table = ctx.index_table(relation_name(node.relation))
        return [_Hit(form, table, role="table" if table else f"table of index {relation_name(node.relation)}")]
    return [_Hit(UNKNOWN, None, why=f"REINDEX {node.kind.name}")]


def _vacuum(node: Any) -> list[_Hit]:
    full = _option(node.options, "full")
    if not node.is_vacuumcmd:
        form = FORMS["analyze"]
    else:
        form = FORMS["vacuum.full" if full else "vacuum"]
    return [_Hit(form, relation_name(rel.relation)) for rel in node.rels or ()] or [_Hit(UNKNOWN, None, why="every table")]


def _option(options: Any, name: str) -> bool:
    """Is option `name` of a REINDEX / VACUUM on (`(FULL)`, `(FULL true)`, `(FULL off)`)?"""
    for option in options or ():
        if option.defname == name:
            arg = option.arg
            if arg is None:
                return True
            value = getattr(arg, "boolval", getattr(arg, "sval", getattr(arg, "ival", True)))
            return str(value).lower() not in ("false", "off", "0")
    return False


_NO_TABLE = {"VariableSetStmt", "CreateSeqStmt", "AlterSeqStmt", "CreateEnumStmt", "AlterEnumStmt",
             "CreateFunctionStmt", "CreateExtensionStmt", "DefineStmt", "CompositeTypeStmt", "CreateSchemaStmt",
             "CreateDomainStmt"}


def _drop(node: Any, ctx: _Context) -> list[_Hit]:
    T = pge.ObjectType
    if node.removeType == T.OBJECT_TABLE:
        hits = []
        for names in node.objects:
            key = ".".join(_names(names))
            table = ctx.table(key)
            refs = () if table is None else tuple(
                sorted({c.elements[0].target_fullname.rsplit(".", 1)[0] for c, _ in table.constraints
                        if isinstance(c, sa.ForeignKeyConstraint) and c.elements}))
            hits.append(_Hit(FORMS["drop_table.foreign_key" if refs else "drop_table"], key, refs))
        return hits
    if node.removeType == T.OBJECT_INDEX:
        form = FORMS["drop_index.concurrently" if node.concurrent else "drop_index"]
        hits = []
        for names in node.objects:
            name = ".".join(_names(names))
            on = ctx.index_table(name)
            hits.append(_Hit(form, on, role="table" if on else f"table of index {name}"))
        return hits
    if node.removeType == T.OBJECT_TRIGGER:
        return [_Hit(FORMS["drop_trigger"], ".".join(_names(names)[:-1])) for names in node.objects]
    if node.removeType in (T.OBJECT_SEQUENCE, T.OBJECT_TYPE, T.OBJECT_FUNCTION, T.OBJECT_EXTENSION,
                           T.OBJECT_SCHEMA, T.OBJECT_DOMAIN):
        if node.behavior == pge.DropBehavior.DROP_CASCADE:
            return [_Hit(UNKNOWN, None, why="DROP ... CASCADE drops what depends on it")]
        return [_Hit(FORMS["no_table"], None)]
    return [_Hit(UNKNOWN, None, why=f"DROP {node.removeType.name}")]


def _alter_cmd(cmd: Any, table: str, ctx: _Context, version: int) -> list[_Hit]:
    if cmd.subtype == pge.AlterTableType.AT_AddColumn:
        return _add_column(cmd.def_, table, version)
    return [_alter_one(cmd, table, ctx, version)]


def _alter_one(cmd: Any, table: str, ctx: _Context, version: int) -> _Hit:
    A, C = pge.AlterTableType, pge.ConstrType
    sub = cmd.subtype
    if sub == A.AT_DropColumn:
        return _Hit(FORMS["drop_column"], table)
    if sub in _SIMPLE_ALTERS:
        return _Hit(FORMS[_SIMPLE_ALTERS[sub]], table)
    if sub == A.AT_AlterColumnType:
        form = _type_change(ctx.column_type(table, cmd.name), cmd.def_, cmd.name, version)
        if form.name == "alter_column.type_coercible":  # constraints on the column are checked again
            checked = ctx.checks_column(table, cmd.name)
            return _Hit(form, table, scan=checked,
                        why="" if checked is not None else "whether a CHECK on the column is validated again")
        return _Hit(form, table)
    if sub == A.AT_SetNotNull:
        proven = version >= 12 and ctx.not_null_checked(table, cmd.name)
        return _Hit(FORMS["alter_column.set_not_null"], table, scan=False if proven else "form")
    if sub == A.AT_DropNotNull:
        return _Hit(FORMS["alter_column.drop_not_null"], table)
    if sub == A.AT_ColumnDefault:
        return _Hit(FORMS["alter_column.set_default" if cmd.def_ is not None else "alter_column.drop_default"], table)
    if sub == A.AT_AddConstraint:
        c = cmd.def_
        if c.conname:
            ctx.added[(table, c.conname)] = relation_name(c.pktable) if c.contype == C.CONSTR_FOREIGN else False
        if c.contype == C.CONSTR_FOREIGN:
            fk = "add_constraint.foreign_key_not_valid" if c.skip_validation else "add_constraint.foreign_key"
            return _Hit(FORMS[fk], table, (relation_name(c.pktable),))
        if c.contype == C.CONSTR_CHECK:
            return _Hit(FORMS["add_constraint.check_not_valid" if c.skip_validation else "add_constraint.check"], table)
        if c.contype in (C.CONSTR_UNIQUE, C.CONSTR_PRIMARY):
            if c.indexname:
                return _Hit(FORMS["add_constraint.using_index"], table)
            kind = "unique" if c.contype == C.CONSTR_UNIQUE else "primary_key"
            return _Hit(FORMS[f"add_constraint.{kind}"], table)
        if c.contype == C.CONSTR_EXCLUSION:
            return _Hit(FORMS["add_constraint.exclude"], table)
        return _Hit(UNKNOWN, table, why=f"ADD CONSTRAINT of kind {c.contype.name}")
    if sub in (A.AT_ValidateConstraint, A.AT_DropConstraint):
        verb = "validate_constraint" if sub == A.AT_ValidateConstraint else "drop_constraint"
        ref = ctx.foreign_key(table, cmd.name)
        if ref:
            return _Hit(FORMS[f"{verb}.foreign_key"], table, (ref,))
        return _Hit(FORMS[verb], table,
                    why="" if ref is False else "whether it is a foreign key (which also locks the referenced table)")
    return _Hit(UNKNOWN, table, why=f"ALTER TABLE {sub.name}")


def _add_column(coldef: Any, table: str, version: int) -> list[_Hit]:
    C = pge.ConstrType
    type_name = (_names(coldef.typeName.names) or [""])[-1].lower()
    refs: list[str] = []
    extra: list[_Hit] = []  # inline CHECK / UNIQUE / PRIMARY KEY
    form = "add_column"
    for c in coldef.constraints or ():
        if c.contype == C.CONSTR_IDENTITY:
            form = "add_column.identity"
        elif c.contype == C.CONSTR_GENERATED:
            stored = c.generated_kind != "v"
            form = "add_column.generated_stored" if stored else "add_column.generated_virtual"
        elif c.contype == C.CONSTR_DEFAULT:
            volatility = _volatility(c.raw_expr)
            form = {"v": "add_column.volatile_default", None: "add_column.unknown_default"}.get(
                volatility, "add_column.default")
        elif c.contype == C.CONSTR_FOREIGN:
            refs.append(relation_name(c.pktable))
        elif c.contype in _INLINE:
            extra.append(_Hit(FORMS[_INLINE[c.contype]], table))
    if type_name in ("serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"):
        form = "add_column.volatile_default"
    if refs:
        form = "add_column.references" if form == "add_column" else form
    return [_Hit(FORMS[form], table, tuple(refs))] + extra


_SIMPLE_ALTERS = {} if not HAVE_PGLAST else {
    pge.AlterTableType.AT_SetStatistics: "alter_column.set_statistics",
    pge.AlterTableType.AT_AddIdentity: "alter_column.add_identity",
    pge.AlterTableType.AT_EnableTrig: "enable_trigger", pge.AlterTableType.AT_DisableTrig: "enable_trigger",
    pge.AlterTableType.AT_EnableTrigAll: "enable_trigger", pge.AlterTableType.AT_DisableTrigAll: "enable_trigger",
    pge.AlterTableType.AT_EnableTrigUser: "enable_trigger", pge.AlterTableType.AT_DisableTrigUser: "enable_trigger",
    pge.AlterTableType.AT_EnableRowSecurity: "row_security", pge.AlterTableType.AT_DisableRowSecurity: "row_security",
    pge.AlterTableType.AT_ForceRowSecurity: "row_security", pge.AlterTableType.AT_NoForceRowSecurity: "row_security",
    pge.AlterTableType.AT_SetLogged: "set_logged", pge.AlterTableType.AT_SetUnLogged: "set_logged",
}

_INLINE = {} if not HAVE_PGLAST else {
    pge.ConstrType.CONSTR_CHECK: "add_constraint.check", pge.ConstrType.CONSTR_UNIQUE: "add_constraint.unique",
    pge.ConstrType.CONSTR_PRIMARY: "add_constraint.primary_key"}

# Functions PostgreSQL ships, by volatility (pg_proc.provolatile). Not listed: unknown.
_VOLATILE = {"random", "random_normal", "gen_random_uuid", "uuidv4", "uuidv7", "uuid_generate_v1",
             "uuid_generate_v1mc", "uuid_generate_v4", "clock_timestamp", "timeofday", "nextval", "setval",
             "txid_current", "pg_current_xact_id", "currval", "lastval", "gen_random_bytes"}
_NOT_VOLATILE = {"now", "statement_timestamp", "transaction_timestamp", "current_setting", "to_char", "to_date",
                 "to_timestamp", "lower", "upper", "coalesce", "concat", "length", "md5", "abs", "round",
                 "date_trunc", "make_date", "make_timestamp", "make_interval", "jsonb_build_object",
                 "json_build_object", "jsonb_build_array", "array_fill", "nullif", "greatest", "least",
                 "current_database", "current_schema", "current_user", "timezone", "replace", "trim",
                 "btrim", "ltrim", "rtrim", "substring", "substr", "left", "right", "format", "pg_catalog"}


_KNOWN_FUNCTIONS = _NOT_VOLATILE | {"count", "sum", "min", "max", "avg", "array_agg", "string_agg", "bool_and",
                                     "bool_or", "nextval", "setval", "currval", "pg_advisory_xact_lock",
                                     "pg_advisory_lock", "pg_advisory_unlock", "set_config"}


def _volatility(expr: Any) -> str | None:
    """'v' volatile, 's' not volatile (immutable or stable), None unknown."""
    result: str | None = "s"
    for node in _walk(expr):
        kind = type(node).__name__
        if kind == "FuncCall":
            name = (_names(node.funcname) or [""])[-1].lower()
            if name in _VOLATILE:
                return "v"
            if name not in _NOT_VOLATILE:
                result = None
        elif kind in ("SubLink", "ColumnRef"):
            result = None
    return result


def _walk(node: Any):
    if isinstance(node, tuple):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, pg.Node):
        yield node
        for name in node:
            yield from _walk(getattr(node, name))


# types PostgreSQL ships (normalized names); a change to or from any other type is unknown
_BUILTIN_TYPES = {"int2", "int4", "int8", "float4", "float8", "numeric", "text", "varchar", "bpchar", "bool",
                  "date", "time", "timetz", "timestamp", "timestamptz", "interval", "bytea", "uuid", "json",
                  "jsonb", "inet", "cidr", "bit", "varbit", "xml", "money", "macaddr", "tsvector", "char"}
_PRECISION_TYPES = {"time", "timetz", "timestamp", "timestamptz", "interval"}


def _type_key(type_name: Any) -> tuple[str, tuple[int, ...], bool] | None:
    if type_name is None:
        return None
    name = (_names(type_name.names) or [""])[-1].lower()
    mods = []
    for mod in type_name.typmods or ():
        value = getattr(getattr(mod, "val", None), "ival", None)
        if value is None:
            return None
        mods.append(value)
    return name, tuple(mods), bool(type_name.arrayBounds)


def _sa_type_key(type_: Any) -> tuple[str, tuple[int, ...], bool] | None:
    """A SQLAlchemy type as PostgreSQL's parser sees it."""
    if type_ is None or isinstance(type_, sa.types.NullType):
        return None
    try:
        spelled = sa.types.to_instance(type_).compile(dialect=_PG_DIALECT)
    except Exception:  # noqa: BLE001 - SQLAlchemy compiling a project type: unknown, never a crash
        return None
    return _spelled_type_key(spelled)


@lru_cache(maxsize=256)
def _spelled_type_key(spelled: str) -> tuple[str, tuple[int, ...], bool] | None:
    """A type as written in SQL (`VARCHAR(20)`), as PostgreSQL's parser sees it: the same few
    spellings come back op after op."""
    try:
        stmt = pglast.parse_sql(f"CREATE TABLE x (c {spelled})")[0].stmt
        if not isinstance(stmt, pg.CreateStmt) or not stmt.tableElts:
            return None
        return _type_key(stmt.tableElts[0].typeName)
    except Exception:  # noqa: BLE001 - parsing what SQLAlchemy spelled (a project type's own SQL): unknown, never a crash
        return None


def _type_change(old_type: Any, coldef: Any, column: str, version: int) -> Form:
    using = coldef.raw_default
    new = _type_key(coldef.typeName)
    old = _sa_type_key(old_type)
    if old is None or new is None:
        return FORMS["alter_column.type_unknown"]
    if using is not None and not _plain_using(using, column):
        return FORMS["alter_column.type"]
    rewrites = _type_rewrites(old, new, version)
    if rewrites is None:
        return FORMS["alter_column.type_timezone" if (old[0], new[0]) == ("timestamp", "timestamptz")
                     else "alter_column.type_unknown"]
    return FORMS["alter_column.type" if rewrites else "alter_column.type_coercible"]


def _plain_using(expr: Any, column: str) -> bool:
    """USING the column itself or a plain cast of it: PostgreSQL decides by the types."""
    if type(expr).__name__ == "TypeCast":
        expr = expr.arg
    return type(expr).__name__ == "ColumnRef" and _names(expr.fields) == [column]


def _type_rewrites(old: tuple, new: tuple, version: int) -> bool | None:
    """Does changing a column from `old` to `new` (`_type_key`s) rewrite the table? The
    binary-coercible changes PostgreSQL does without one (ATColumnChangeRequiresRewrite)."""
    (on, om, oa), (nn, nm, na) = old, new
    if old == new:
        return False
    if on not in _BUILTIN_TYPES or nn not in _BUILTIN_TYPES or oa != na:
        return None
    if on in ("varchar", "text") and nn == "text":
        return False
    if on in ("varchar", "text") and nn == "varchar":
        return not (not nm or (on == "varchar" and om and nm[0] >= om[0]))
    if on == nn == "varbit":
        return not (not nm or (om and nm[0] >= om[0]))
    if on == nn == "numeric":
        if not nm:
            return False
        if not om:
            return True
        return not (nm[0] >= om[0] and (nm[1:] or (0,)) == (om[1:] or (0,)))
    if on == nn and on in _PRECISION_TYPES:
        return not (not nm or (om and nm[0] >= om[0]))
    if (on, nn) == ("timestamp", "timestamptz"):
        return True if version < 12 else None
    return True


_PG_DIALECT = sqlalchemy_dialect("postgresql")


# --------------------------------------------------------------------------- effects


def sql_effects(sql: str, state: SchemaState | None = None, version: int = DEFAULT_VERSION,
                types: dict[tuple[str, str], Any] | None = None) -> list[StatementEffect] | None:
    """What each statement of raw SQL does; None when the SQL cannot be parsed (or pglast
    is missing): unknown, never guessed."""
    statements = parse_sql(sql)
    if statements is None:
        return None
    ctx = _Context(state, dict(types or {}))
    return [_effect(s, _classify_safely(s.node, ctx, version), version) for s in statements]


def _classify_safely(node: Any, ctx: _Context, version: int) -> list[_Hit]:
    """A statement of a shape the classifier did not expect is unknown, never a crash."""
    try:
        return _classify(node, ctx, version)
    except Exception as exc:  # noqa: BLE001 - a statement shape the classifier did not expect is unknown, never a crash
        return [_Hit(UNKNOWN, None, why=f"{type(node).__name__}: {type(exc).__name__}")]


def _effect(statement: _Statement, hits: list[_Hit], version: int) -> StatementEffect:
    locks: dict[tuple[str | None, str], Lock] = {}

    def take(relation: str | None, role: str, lock: Lock | None) -> None:
        if lock is not None:
            key = (relation, role if relation is None else "")
            locks[key] = max(locks.get(key, lock), lock)

    roles: dict[str | None, str] = {}
    for hit in hits:
        take(hit.table, hit.role, hit.lock or hit.form.lock_at(version))
        roles.setdefault(hit.table, hit.role)
        for ref in hit.referenced:
            take(ref, "referenced table", hit.form.referenced)
            roles.setdefault(ref, "referenced table")
    forms = tuple(dict.fromkeys(hit.form.name for hit in hits))
    whys = [hit.why for hit in hits if hit.why] + [
        f"the lock of {hit.form.summary} on PostgreSQL {version}" for hit in hits if version in hit.form.unsure] + [
        f"{hit.form.summary}: needs PostgreSQL {hit.form.since}" for hit in hits if version < hit.form.since]
    return StatementEffect(
        sql=statement.sql, offset=statement.offset, length=statement.length, forms=forms,
        locks=tuple(RelationLock(rel, lock, roles.get(rel, role) if rel else role)
                    for (rel, role), lock in locks.items()),
        scan=_any(hit.form.scans(version) if hit.scan == "form" else hit.scan for hit in hits),
        rewrite=_any(hit.form.rewrites(version) for hit in hits),
        transactional=all(hit.form.transactional for hit in hits),
        unknown="; ".join(whys))


def _any(values: Iterable[bool | None]) -> bool | None:
    values = list(values)
    if True in values:
        return True
    return None if None in values else False


def op_effects(op: alembic_ops.MigrateOperation, before: SchemaState | None = None,
               version: int = DEFAULT_VERSION) -> list[StatementEffect] | None:
    """What each statement Alembic emits for `op` does on PostgreSQL `version`, the schema
    `before` the op supplying what the SQL does not say. None: it cannot be rendered or parsed."""
    try:
        sql = render_sql(op, "postgresql", version)
    except Exception:  # noqa: BLE001 - Alembic rendering a workspace op may raise anything: unknown
        return None
    return sql_effects(sql, before, version, existing_types(op))


def existing_types(op: Any) -> dict[tuple[str, str], Any]:
    """What the op itself says of a column's type before it (alter_column's existing_type)."""
    if isinstance(op, alembic_ops.AlterColumnOp) and op.existing_type is not None:
        key = table_key(op.table_name, op.schema)
        return {(key, op.column_name): op.existing_type}
    return {}
