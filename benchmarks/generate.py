"""Generate a large, realistic Alembic project in Alembic's own file format.

    python benchmarks/generate.py OUT_DIR --revisions N [--seed S] [--force]

The result is what `alembic init migrations` followed by N `alembic revision --autogenerate`
/ `alembic merge` commands would leave behind:

* `alembic.ini` rendered from Alembic's generic `alembic.ini.mako` (script_location =
  migrations, sqlalchemy.url = postgresql://u:p@localhost/db);
* `migrations/env.py`, `migrations/script.py.mako`, `migrations/README` copied from Alembic's
  generic template;
* `migrations/versions/<rev>_<slug>.py`, each rendered from that script.py.mako with the
  arguments `ScriptDirectory.generate_revision` passes, the upgrade/downgrade bodies rendered
  by Alembic's autogenerate renderer from `alembic.operations.ops` objects (the downgrade is
  the upgrade's `.reverse()`, exactly what autogenerate writes).

History shape: a main line; at ~2% of the main-line revisions a feature branch forks off
(a branch point), runs for 1-6 revisions while the main line goes on, and is merged back
by a merge revision (tuple `down_revision`, empty bodies, like `alembic merge`). All
branches are merged before the end, and the last revision is an ordinary one on the main
line: exactly one head.

Operations mix create_table (with a foreign key and an index now and then), add_column,
create_index, alter_column and drop_column. The generator keeps a model of the schema of
every line of history so that each op is valid where it stands (columns exist before they
are altered, dropped or indexed; a feature branch touches only what it created itself,
plus new columns on existing tables; the main line never drops a column a still-open
branch can see), so a faithful replay reaches one consistent schema.

Everything is deterministic in (N, seed): revision ids have `alembic.util.rev_id()`'s form
(the last 12 hex digits of a uuid4) drawn from `random.Random(seed)`, dates advance from a
fixed start. A `.bench.json` manifest in OUT_DIR names the head file and a mid-history
revision for the benchmark runner (Alembic and migration-lsp both ignore it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import alembic
import sqlalchemy as sa
from alembic.autogenerate import render
from alembic.autogenerate.api import AutogenContext
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.script import revision as alembic_revision
from alembic.util import format_as_comma, to_tuple
from mako.template import Template
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import conv

GENERATOR_VERSION = 2
URL = "postgresql://u:p@localhost/db"
TEMPLATES = Path(alembic.__file__).parent / "templates" / "generic"
BRANCH_PROBABILITY = 0.02
START_DATE = dt.datetime(2016, 3, 1, 9, 12, 7, 431_021)
_slug_re = re.compile(r"\w+")  # alembic.script.base._slug_re
TRUNCATE_SLUG_LENGTH = 40  # alembic's default

NOUNS = [
    "users", "accounts", "organizations", "teams", "memberships", "projects", "tasks", "comments",
    "attachments", "orders", "order_items", "products", "product_variants", "categories", "tags",
    "invoices", "invoice_lines", "payments", "refunds", "subscriptions", "plans", "coupons",
    "addresses", "shipments", "carriers", "warehouses", "inventory_levels", "suppliers",
    "purchase_orders", "notifications", "email_templates", "audit_events", "api_keys", "sessions",
    "roles", "permissions", "role_permissions", "webhooks", "webhook_deliveries", "feature_flags",
    "experiments", "reports", "dashboards", "widgets", "files", "folders", "messages", "threads",
    "reviews", "ratings", "carts", "cart_items", "wishlists", "currencies", "exchange_rates",
    "countries", "regions", "stores", "employees", "shifts", "timesheets", "contracts", "documents",
]
PREFIXES = ["legacy", "archived", "external", "partner", "internal", "customer", "vendor", "billing",
            "marketing", "support", "analytics", "staging"]
COLUMNS = [
    ("name", ("String", 100)), ("title", ("String", 200)), ("email", ("String", 255)),
    ("slug", ("String", 100)), ("description", ("Text",)), ("status", ("String", 20)),
    ("kind", ("String", 30)), ("code", ("String", 50)), ("external_id", ("String", 64)),
    ("phone_number", ("String", 32)), ("notes", ("Text",)), ("position", ("Integer",)),
    ("quantity", ("Integer",)), ("priority", ("Integer",)), ("version", ("Integer",)),
    ("amount", ("Numeric", 12, 2)), ("price", ("Numeric", 10, 2)), ("total", ("Numeric", 12, 2)),
    ("is_active", ("Boolean",)), ("is_deleted", ("Boolean",)), ("is_public", ("Boolean",)),
    ("published_at", ("DateTime",)), ("deleted_at", ("DateTime",)), ("expires_at", ("DateTime",)),
    ("last_seen_at", ("DateTime",)), ("birth_date", ("Date",)), ("due_date", ("Date",)),
    ("metadata_json", ("JSON",)), ("settings", ("JSON",)), ("score", ("Float",)),
    ("weight", ("Float",)), ("locale", ("String", 10)), ("timezone", ("String", 64)),
    ("currency", ("String", 3)), ("url", ("String", 2048)), ("ip_address", ("String", 45)),
]
STRING_STEPS = [3, 10, 20, 30, 32, 45, 50, 64, 100, 128, 200, 255, 512, 1024, 2048, 4096]


NOT_NULL_DEFAULTS = {"Boolean": "false", "Integer": "0", "Numeric": "0", "Float": "0", "DateTime": "now()",
                     "String": "''"}


def singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def make_type(spec: tuple) -> sa.types.TypeEngine:
    kind = spec[0]
    if kind == "String":
        return sa.String(length=spec[1])
    if kind == "Numeric":
        return sa.Numeric(precision=spec[1], scale=spec[2])
    if kind == "DateTime":
        return sa.DateTime(timezone=True) if len(spec) > 1 and spec[1] else sa.DateTime()
    return getattr(sa, kind)()


@dataclass
class Col:
    name: str
    type: tuple
    nullable: bool = True
    server_default: str | None = None
    primary_key: bool = False
    fk: str | None = None  # referenced table (its `id`)
    born: int = 0  # sequence number of the revision that created it

    def column(self) -> sa.Column:
        args = [sa.ForeignKey(f"{self.fk}.id")] if self.fk else []
        default = sa.text(self.server_default) if self.server_default else None
        return sa.Column(self.name, make_type(self.type), *args, primary_key=self.primary_key,
                         nullable=self.nullable, server_default=default)


@dataclass
class Tab:
    name: str
    cols: dict[str, Col]
    indexes: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (column, unique)
    born: int = 0

    def copy(self) -> "Tab":
        return Tab(self.name, {k: Col(**vars(c)) for k, c in self.cols.items()}, dict(self.indexes), self.born)

    def indexed(self) -> set[str]:
        return {c for c, _ in self.indexes.values()}


@dataclass
class Line:
    """One line of history: the main line or an open feature branch.

    A branch shares the main line's Tab objects (read-only for it) and copies a table
    before it changes it (copy on write), so forking costs a dict copy, not the schema."""

    head: str | None
    schema: dict[str, Tab]
    order: list[str] = field(default_factory=list)  # visible tables, for O(1) random choice
    touchable: list[str] = field(default_factory=list)  # tables this line may alter/index/drop in
    owned: set[str] = field(default_factory=set)  # tables this branch created or copied
    side: bool = False
    fork: int = 0  # sequence number at which the branch forked
    target: int = 0  # revisions the branch will get before it is merged
    length: int = 0
    main_moved: bool = False  # the main line has a revision of its own since the fork
    created_tables: set[str] = field(default_factory=set)
    created_columns: set[tuple[str, str]] = field(default_factory=set)
    created_indexes: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class Revision:
    rev: str
    down: str | tuple[str, ...] | None
    message: str
    upgrade: list
    date: dt.datetime
    downgrade: list | None = None  # None: autogenerate's, the upgrade reversed
    path: Path | None = None


class Generator:
    def __init__(self, revisions: int, seed: int) -> None:
        if revisions < 1:
            raise ValueError("at least one revision")
        self.n = revisions
        self.seed = seed
        self.rng = random.Random(seed)
        self.used_ids: set[str] = set()
        self.used_tables: set[str] = set()
        self.used_columns: set[tuple[str, str]] = set()
        self.seq = 0
        self.date = START_DATE
        self.revisions: list[Revision] = []
        self.branch_points: list[str] = []
        self.merges: list[str] = []

    # ------------------------------------------------------------- names, ids, dates

    def rev_id(self) -> str:
        """`alembic.util.rev_id()` is `uuid.uuid4().hex[-12:]`; the same, from our Random."""
        while True:
            rid = uuid.UUID(int=self.rng.getrandbits(128), version=4).hex[-12:]
            if rid not in self.used_ids:
                self.used_ids.add(rid)
                return rid

    def next_date(self) -> dt.datetime:
        self.date += dt.timedelta(hours=self.rng.randint(2, 60), minutes=self.rng.randint(0, 59),
                                  seconds=self.rng.randint(0, 59), microseconds=self.rng.randint(0, 999_999))
        return self.date

    def table_name(self) -> str:
        for _ in range(20):
            name = self.rng.choice(NOUNS)
            if self.rng.random() < 0.3:
                name = f"{self.rng.choice(PREFIXES)}_{name}"
            if name not in self.used_tables:
                break
        base, i = name, 2
        while name in self.used_tables:
            name, i = f"{base}_{i}", i + 1
        self.used_tables.add(name)
        return name

    def column_name(self, table: str, base: str) -> str:
        name, i = base, 2
        while (table, name) in self.used_columns:
            name, i = f"{base}_{i}", i + 1
        self.used_columns.add((table, name))
        return name

    def new_column(self, table: str) -> Col:
        base, spec = self.rng.choice(COLUMNS)
        if spec[0] == "DateTime" and self.rng.random() < 0.5:
            spec = ("DateTime", True)
        return Col(self.column_name(table, base), spec, born=self.seq)

    # ------------------------------------------------------------- operations

    def op_create_table(self, line: Line) -> list:
        name = self.table_name()
        self.used_columns.add((name, "id"))
        cols = {"id": Col("id", ("Integer",), nullable=False, primary_key=True, born=self.seq)}
        for _ in range(self.rng.randint(2, 6)):
            c = self.new_column(name)
            if self.rng.random() < 0.25:
                c.nullable = False
            cols[c.name] = c
        result = []
        fk = None
        if line.order and self.rng.random() < 0.5:
            target = self.rng.choice(line.order)
            fk = Col(self.column_name(name, singular(target) + "_id"), ("Integer",),
                     nullable=self.rng.random() < 0.3, fk=target, born=self.seq)
            cols[fk.name] = fk
        if self.rng.random() < 0.7:
            stamp = Col(self.column_name(name, "created_at"), ("DateTime", True), nullable=False,
                        server_default="now()", born=self.seq)
            cols[stamp.name] = stamp
        tab = Tab(name, cols, born=self.seq)
        metadata = sa.MetaData()
        table = sa.Table(name, metadata, *(c.column() for c in cols.values()))
        result.append(ops.CreateTableOp.from_table(table))
        index_cols = ([fk.name] if fk else []) + [c for c in cols if c in ("email", "slug", "code", "external_id")]
        for col in index_cols:
            unique = col in ("email", "slug", "external_id")
            result.append(self._index_op(table, col, unique, tab))
        line.schema[name] = tab
        line.order.append(name)
        line.touchable.append(name)
        line.owned.add(name)
        line.created_tables.add(name)
        return result

    def _index_op(self, table: sa.Table, col: str, unique: bool, tab: Tab):
        name = f"ix_{table.name}_{col}"
        tab.indexes[name] = (col, unique)
        return ops.CreateIndexOp.from_index(sa.Index(conv(name), table.c[col], unique=unique))

    def _table_obj(self, tab: Tab) -> sa.Table:
        return sa.Table(tab.name, sa.MetaData(), *(c.column() for c in tab.cols.values()))

    def _mine(self, line: Line, table: str, col: str | None = None) -> bool:
        """May this line alter / drop / index this table or column?"""
        if not line.side:
            return True
        if table in line.created_tables:
            return True
        return col is not None and (table, col) in line.created_columns

    def _writable(self, line: Line, name: str) -> Tab:
        """The line's own Tab for `name` (a branch copies the shared one first)."""
        tab = line.schema[name]
        if line.side and name not in line.owned:
            tab = line.schema[name] = tab.copy()
            line.owned.add(name)
            line.touchable.append(name)
        return tab

    def op_add_column(self, line: Line) -> list:
        tab = self._writable(line, self.rng.choice(line.order))
        col = self.new_column(tab.name)
        if col.type[0] in NOT_NULL_DEFAULTS and self.rng.random() < 0.15:
            col.nullable = False  # NOT NULL on an existing table: with a server default
            col.server_default = NOT_NULL_DEFAULTS[col.type[0]]
        tab.cols[col.name] = col
        line.created_columns.add((tab.name, col.name))
        return [ops.AddColumnOp(tab.name, col.column())]

    def _pick(self, line: Line, ok, tries: int = 12) -> tuple[Tab, Col] | None:
        """A random (table, column) this line may touch and `ok` accepts: sample tables
        rather than scan them all (the schema grows with the history)."""
        if not line.touchable:
            return None
        for _ in range(tries):
            tab = line.schema[self.rng.choice(line.touchable)]
            indexed = tab.indexed()
            cols = [c for c in tab.cols.values()
                    if not (c.primary_key or c.fk) and self._mine(line, tab.name, c.name) and ok(tab, c, indexed)]
            if cols:
                return tab, self.rng.choice(cols)
        return None

    def op_create_index(self, line: Line) -> list | None:
        picked = self._pick(line, lambda t, c, indexed: c.name not in indexed and c.type[0] not in ("JSON", "Text"))
        if picked is None:
            return None
        tab, col = picked
        unique = col.name.startswith(("email", "slug", "code", "external_id")) and self.rng.random() < 0.5
        op = self._index_op(self._table_obj(tab), col.name, unique, tab)
        line.created_indexes.add((tab.name, op.index_name))
        return [op]

    def op_alter_column(self, line: Line) -> list | None:
        picked = self._pick(line, lambda t, c, indexed: True)
        if picked is None:
            return None
        tab, col = picked
        old_type, old_nullable = make_type(col.type), col.nullable
        kw: dict = {}
        if col.type[0] == "String" and col.type[1] < STRING_STEPS[-1]:
            col.type = ("String", next(s for s in STRING_STEPS if s > col.type[1]))
            kw["modify_type"] = make_type(col.type)
        elif col.type[0] == "Integer" and self.rng.random() < 0.5:
            col.type = ("BigInteger",)
            kw["modify_type"] = make_type(col.type)
        elif col.type[0] == "Numeric" and col.type[1] < 20:
            col.type = ("Numeric", col.type[1] + 2, col.type[2])
            kw["modify_type"] = make_type(col.type)
        elif col.nullable and not col.server_default:
            col.nullable = False
            kw["modify_nullable"] = False
        else:
            col.nullable = not col.nullable
            kw["modify_nullable"] = col.nullable
        return [ops.AlterColumnOp(tab.name, col.name, existing_type=old_type, existing_nullable=old_nullable,
                                  existing_server_default=sa.schema.DefaultClause(sa.text(col.server_default))
                                  if col.server_default else False,
                                  **kw)]

    def op_drop_column(self, line: Line, lines: list[Line]) -> list | None:
        # the main line must not drop what an open branch still sees (it would come back at the merge)
        min_born = -1 if line.side else min((s.fork for s in lines if s.side), default=-1)
        picked = self._pick(line, lambda t, c, indexed: c.name not in indexed and c.born > min_born and len(t.cols) > 2)
        if picked is None:
            return None
        tab, col = picked
        del tab.cols[col.name]
        return [ops.DropColumnOp.from_column_and_tablename(None, tab.name, col.column())]

    def upgrade_ops(self, line: Line, lines: list[Line]) -> list:
        result: list = []
        for _ in range(self.rng.choices([1, 2, 3, 4], [50, 30, 14, 6])[0]):
            if not line.schema:
                result += self.op_create_table(line)
                continue
            kind = self.rng.choices(["create_table", "add_column", "create_index", "alter_column", "drop_column"],
                                    [8, 36, 20, 19, 17])[0]
            made = {
                "create_table": lambda: self.op_create_table(line),
                "add_column": lambda: self.op_add_column(line),
                "create_index": lambda: self.op_create_index(line),
                "alter_column": lambda: self.op_alter_column(line),
                "drop_column": lambda: self.op_drop_column(line, lines),
            }[kind]()
            result += made if made is not None else self.op_add_column(line)
        return result

    @staticmethod
    def message(upgrade: list) -> str:
        parts = []
        for op in upgrade:
            if isinstance(op, ops.CreateTableOp):
                parts.append(f"create {op.table_name} table")
            elif isinstance(op, ops.AddColumnOp):
                parts.append(f"add {op.column.name} to {op.table_name}")
            elif isinstance(op, ops.CreateIndexOp):
                if not any(isinstance(p, ops.CreateTableOp) and p.table_name == op.table_name for p in upgrade):
                    parts.append(f"index {op.table_name}.{op.columns[0].name}")
            elif isinstance(op, ops.AlterColumnOp):
                parts.append(f"alter {op.table_name}.{op.column_name}")
            elif isinstance(op, ops.DropColumnOp):
                parts.append(f"drop {op.table_name}.{op.column_name}")
        text = ", ".join(dict.fromkeys(parts))
        return text[0].upper() + text[1:] if text else "empty message"

    # ------------------------------------------------------------- history

    def add(self, line: Line, down, upgrade: list, message: str | None = None,
            downgrade: list | None = None) -> Revision:
        rev = Revision(self.rev_id(), down, message or self.message(upgrade), upgrade, self.next_date(), downgrade)
        self.revisions.append(rev)
        line.head = rev.rev
        self.seq += 1
        return rev

    def build(self) -> list[Revision]:
        main = Line(None, {})
        lines = [main]
        while len(self.revisions) < self.n:
            remaining = self.n - len(self.revisions)
            sides = [s for s in lines if s.side]
            # what closing every open branch still costs: its missing revisions + the merge
            # (+ one main-line revision when the main line has not moved since the fork)
            closing = sum(max(0, s.target - s.length) + 1 + (0 if s.main_moved else 1) for s in sides)
            ready = [s for s in sides if s.length >= s.target and s.main_moved]
            if ready and remaining > 1:
                self.merge(main, ready[0], lines)
                continue
            must_close = remaining - 1 <= closing  # keep the last revision for the main line
            if sides and must_close:
                unfinished = [s for s in sides if s.length < s.target]
                line = unfinished[0] if unfinished else main
            elif sides and self.rng.random() < 0.45:
                line = self.rng.choice(sides)
            else:
                line = main
            if line is main and not must_close and main.head is not None and remaining > 40 \
                    and self.rng.random() < BRANCH_PROBABILITY:
                side = Line(main.head, dict(main.schema), list(main.order), side=True, fork=self.seq,
                            target=self.rng.randint(1, 6))
                lines.append(side)
                self.branch_points.append(main.head)
                line = side
            if remaining == 1:
                upgrade = self.final_ops(main, lines)
                self.add(main, main.head, upgrade, f"Backfill {upgrade[0].table_name}.{upgrade[0].column.name}",
                         downgrade=[])
                break
            upgrade = self.upgrade_ops(line, lines)
            self.add(line, line.head, upgrade)
            if line.side:
                line.length += 1
            else:
                for s in sides:
                    s.main_moved = True
        assert not [s for s in lines if s.side], "unmerged branch"
        return self.revisions

    def merge(self, main: Line, side: Line, lines: list[Line]) -> None:
        """`alembic merge -m "merge ..." <main head> <branch head>`: empty bodies; the schema
        is the union (main first: it wins where both know a table)."""
        for name in side.order[len(side.order) - len(side.created_tables):]:
            main.schema[name] = side.schema[name]
            main.order.append(name)
            main.touchable.append(name)
        for table, col in side.created_columns:
            if table in main.schema and table not in side.created_tables and col in side.schema[table].cols:
                main.schema[table].cols[col] = side.schema[table].cols[col]
        for table, index in side.created_indexes:
            if table in main.schema and table not in side.created_tables and index in side.schema[table].indexes:
                main.schema[table].indexes[index] = side.schema[table].indexes[index]
        down = (main.head, side.head)
        rev = self.add(main, down, [], message=f"merge {down[0]} and {down[1]}")
        self.merges.append(rev.rev)
        lines.remove(side)

    def final_ops(self, main: Line, lines: list[Line]) -> list:
        """The head: a hand-edited "NOT NULL column with backfill" migration (add the column,
        fill it with raw SQL, make it NOT NULL, index it) whose author left the downgrade as
        autogenerate's empty stub. Realistic, and it gives the head file diagnostics of its
        own (D001, D003, S002) for the server benchmark's "first diagnostics" to wait for."""
        if not main.schema:
            self.op_create_table(main)
        tab = max(main.schema.values(), key=lambda t: (len(t.cols), t.name))
        col = Col(self.column_name(tab.name, "status"), ("String", 20), born=self.seq)
        tab.cols[col.name] = col
        add = ops.AddColumnOp(tab.name, col.column())
        fill = ops.ExecuteSQLOp(f"UPDATE {tab.name} SET {col.name} = 'active' WHERE {col.name} IS NULL")
        alter = ops.AlterColumnOp(tab.name, col.name, existing_type=make_type(col.type), existing_nullable=True,
                                  modify_nullable=False)
        col.nullable = False
        index = self._index_op(self._table_obj(tab), col.name, False, tab)
        return [add, fill, alter, index]


# ----------------------------------------------------------------------------- writing


def migration_context() -> MigrationContext:
    """What env.py's context.configure(url=..., target_metadata=...) gives autogenerate."""
    return MigrationContext.configure(dialect=postgresql.dialect(), opts={
        "sqlalchemy_module_prefix": "sa.", "alembic_module_prefix": "op.", "user_module_prefix": None,
        "render_as_batch": False})


def slug_of(message: str) -> str:
    """alembic.script.base.ScriptDirectory._rev_path, default file_template %(rev)s_%(slug)s."""
    slug = "_".join(_slug_re.findall(message or "")).lower()
    if len(slug) > TRUNCATE_SLUG_LENGTH:
        slug = slug[:TRUNCATE_SLUG_LENGTH].rsplit("_", 1)[0] + "_"
    return slug


def write_project(out: Path, revisions: list[Revision]) -> None:
    migrations = out / "migrations"
    versions = migrations / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    # `alembic init migrations`: alembic.ini from the generic template, env.py etc. copied
    ini = Template(filename=str(TEMPLATES / "alembic.ini.mako")).render_unicode(script_location="migrations")
    ini = re.sub(r"(?m)^sqlalchemy\.url = .*$", f"sqlalchemy.url = {URL}", ini)
    (out / "alembic.ini").write_text(ini, encoding="utf-8")
    for name in ("env.py", "script.py.mako", "README"):
        shutil.copyfile(TEMPLATES / name, migrations / name)
    template = Template(filename=str(migrations / "script.py.mako"))
    mc = migration_context()
    for rev in revisions:
        # the arguments ScriptDirectory.generate_revision passes to the template
        kw: dict = dict(
            up_revision=rev.rev,
            down_revision=alembic_revision.tuple_rev_as_scalar(
                rev.down if isinstance(rev.down, tuple) else (rev.down,)),
            branch_labels=to_tuple(None),
            depends_on=None,
            create_date=rev.date,
            comma=format_as_comma,
            message=rev.message,
        )
        if rev.upgrade:  # `alembic revision --autogenerate`: render the ops like autogenerate
            ac = AutogenContext(mc)  # fresh per revision: it collects the imports
            up = ops.UpgradeOps(ops=rev.upgrade)
            down = up.reverse() if rev.downgrade is None else ops.DowngradeOps(ops=rev.downgrade)
            script = ops.MigrationScript(rev.rev, up, down, message=rev.message)
            render._render_python_into_templatevars(ac, script, kw)
        text = template.render_unicode(**kw)
        rev.path = versions / f"{rev.rev}_{slug_of(rev.message)}.py"
        rev.path.write_bytes(text.encode("utf-8"))  # output_encoding utf-8, as alembic writes


def generate(out: Path, revisions: int, seed: int, force: bool = False) -> dict:
    out = Path(out)
    versions = out / "migrations" / "versions"
    if versions.exists() and any(versions.iterdir()):
        if not force:
            raise SystemExit(f"{versions} is not empty (use --force to replace it)")
        shutil.rmtree(versions)
    gen = Generator(revisions, seed)
    revs = gen.build()
    write_project(out, revs)
    by_seq = [r for r in revs if r.upgrade and not isinstance(r.down, tuple) and r.down is not None]
    mid = by_seq[len(by_seq) // 2] if by_seq else revs[-1]
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "revisions": revisions,
        "seed": seed,
        "head": {"revision": revs[-1].rev, "path": str(revs[-1].path.relative_to(out))},
        "mid": {"revision": mid.rev, "down_revision": mid.down, "path": str(mid.path.relative_to(out))},
        "branch_points": len(gen.branch_points),
        "merges": len(gen.merges),
        "ids": sorted(gen.used_ids),
    }
    (out / ".bench.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="project directory to create")
    parser.add_argument("--revisions", "-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="replace an existing versions directory")
    args = parser.parse_args(argv)
    m = generate(args.out, args.revisions, args.seed, args.force)
    print(f"{args.out}: {m['revisions']} revisions, {m['branch_points']} branch points, {m['merges']} merges, "
          f"head {m['head']['revision']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
