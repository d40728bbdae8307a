"""Stage `compare`: the schema at head vs the models -> the ops autogenerate would emit.

Alembic decides what a difference is: its own autogenerate comparators run with the
static schema in the place of the database (`StaticInspector` answers reflection from the
replayed MetaData the way the dialect's reflection would), so tables, columns, types
(the dialect's `compare_type`), nullability, server defaults (when env.py turns
`compare_server_default` on), indexes (a renamed one is remove + add), unique constraints,
foreign keys and comments are reported exactly when autogenerate reports them. Anything the
replay could not follow (opaque types, uncertain tables, helpers) is never reported. Each
difference carries Alembic's own op, so "Generate revision" renders it with Alembic's renderer.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from alembic.ddl.impl import DefaultImpl
from alembic.operations import ops as alembic_ops
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine.reflection import Inspector, ObjectKind, ObjectScope

from .alembic_api import fill_inspector, skip_functional_indexes
from .evaluate import is_opaque_type
from .project import KNOWN_DIALECTS, sqlalchemy_dialect
from .schema import (
    ANY_INSIDE,
    OPAQUE_ANY,
    IndexElement,
    Origin,
    SchemaState,
    TableState,
    constraint_columns,
    index_columns,
    index_elements,
    plain_element,
    table_hidden,
    table_key,
)

IGNORED_TABLES = {"alembic_version"}


@dataclass(frozen=True)
class Difference:
    kind: str  # "missing" (in models, not in schema), "extra" (in schema, not models), "changed"
    what: str  # human description: "column posts.published_at"
    op: alembic_ops.MigrateOperation
    model_origin: Origin | None
    schema_origin: Origin | None
    detail: str = ""

    @property
    def code(self) -> str:
        return {"missing": "M001", "extra": "M002", "changed": "M003"}[self.kind]


@dataclass(frozen=True)
class CompareOptions:
    dialect: str | None = None
    compare_type: bool = True
    compare_server_default: bool = False
    exclude_tables: tuple[str, ...] = ()
    render_as_batch: bool = False  # env.py's context.configure(render_as_batch=True)
    # what env.py passed to context.configure(), as the model child caught it (with_env_options)
    include_schemas: bool | None = None  # False: only the default schema, as Alembic compares
    version_table: str = "alembic_version"
    # objects env.py's include_object / include_name leave out: (side, kind, table key, name, how)
    excluded: frozenset = frozenset()
    filtered: bool = False  # env.py gives include_object or include_name as a callable
    judged: frozenset | None = None  # (table key, kind, name) of migration-side objects the filters saw
    unsure: tuple[str, ...] = ()  # options given as callables we could not evaluate: not compared
    # env.py's compare_type callable, asked in the model child: (table key, column) -> True / False / None
    type_decisions: Mapping | None = None


def with_env_options(options: CompareOptions, captured: Mapping, excluded: frozenset = frozenset(),
                     judged: frozenset | None = None, type_decisions: Mapping | None = None) -> CompareOptions:
    """The options env.py really passed to context.configure() (caught by the model child)
    replace those read from its text. A callable compare_type / compare_server_default
    cannot be evaluated without the database's column: that comparison is left out (said
    in `unsure`) rather than guessed."""
    changes: dict[str, Any] = {}
    unsure = []
    for name in ("compare_type", "compare_server_default", "render_as_batch"):
        value = captured.get(name)
        if isinstance(value, bool):
            changes[name] = value
        elif value == "callable" and name == "compare_type" and type_decisions is not None:
            changes[name], changes["type_decisions"] = True, type_decisions
        elif value == "callable" and name != "render_as_batch":
            changes[name] = False
            unsure.append(name)
    if isinstance(captured.get("include_schemas"), bool):
        changes["include_schemas"] = captured["include_schemas"]
    if isinstance(captured.get("version_table"), str) and captured["version_table"]:
        changes["version_table"] = captured["version_table"]
    filtered = "callable" in (captured.get("include_object"), captured.get("include_name"))
    return replace(options, **changes, excluded=frozenset(excluded), filtered=filtered, judged=judged,
                   unsure=tuple(unsure))


def _left_out(options: CompareOptions, side: str, kind: str, key: str, name: Any, *hows: str) -> bool:
    """env.py's filters leave this object out. A migration-side object the filters never saw
    (its names were not sent to the model child) is left out too when there are filters:
    not reported rather than guessed."""
    if any((side, kind, key, str(name), how) in options.excluded for how in hows):
        return True
    if side == "schema" and options.filtered and "new" in hows:
        return options.judged is None or (key, kind, str(name)) not in options.judged
    return False


def options_from_env_py(text: str, dialect: str | None, exclude: tuple[str, ...]) -> CompareOptions:
    """env.py's context.configure(compare_type=..., compare_server_default=...)."""
    def flag(name: str, default: bool) -> bool:
        m = re.search(rf"\b{name}\s*=\s*(True|False)\b", text)
        return default if not m else m.group(1) == "True"

    return CompareOptions(dialect, flag("compare_type", True), flag("compare_server_default", False), exclude,
                          flag("render_as_batch", False))


@lru_cache(maxsize=16)
def _impl(dialect_name: str | None) -> DefaultImpl:
    dialect: Any = None
    if dialect_name in KNOWN_DIALECTS:
        try:
            dialect = sqlalchemy_dialect(dialect_name)
        except Exception:  # noqa: BLE001 - a dialect that cannot be loaded here: compared without one
            dialect = None
    if dialect is None:
        from sqlalchemy.engine.default import DefaultDialect

        dialect = DefaultDialect()
    try:
        cls = DefaultImpl.get_by_dialect(dialect)
    except KeyError:
        cls = DefaultImpl
    return cls(dialect, None, True, None, None, {})


def type_dialect(type_: Any) -> str | None:
    """The dialect a type belongs to (`postgresql` for sqlalchemy.dialects.postgresql.JSONB)."""
    m = re.match(r"sqlalchemy\.dialects\.(\w+)", type(type_).__module__)
    return m.group(1) if m else None


def _default_text(column: sa.Column, dialect: str | None = None) -> str | None:
    """A server default as comparable text: SQL expressions compiled for the dialect
    (`func.now()` is CURRENT_TIMESTAMP on SQLite), enclosing parentheses and quotes removed."""
    default = column.server_default
    if default is None:
        return None
    arg = getattr(default, "arg", default)
    text = getattr(arg, "text", None)
    if not isinstance(text, str):
        if isinstance(arg, sa.sql.ClauseElement):
            try:
                text = str(arg.compile(dialect=_impl(dialect).dialect))
            except Exception:  # noqa: BLE001 - an expression the dialect cannot compile: its plain text
                text = str(arg)
        else:
            text = str(arg)
    return _normalise_default(text)


def _normalise_default(text: str) -> str:
    text = text.strip()
    while True:
        if len(text) >= 2 and text[0] == "(" and text[-1] == ")" and _balanced(text[1:-1]):
            text = text[1:-1].strip()
        elif len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        else:
            return text.lower()


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


Sides = tuple[str, str]  # how a detail names the schema side and the model side
MODEL_SIDES: Sides = ("in the migrations", "in the model")


def compare(schema: SchemaState, models: dict[str, TableState], options: CompareOptions,
            sides: Sides = MODEL_SIDES) -> list[Difference]:
    """What Alembic's autogenerate reports between the schema at head and the models, found
    by Alembic's own comparators (alembic.autogenerate.compare: tables, columns, types,
    nullability, server defaults when enabled, indexes including name-only differences,
    unique constraints, foreign keys, comments) run against the static schema as if a
    database of the dialect had been reflected (`StaticInspector`). Tables the replay is not
    sure of (uncertain, excluded) are filtered out on both sides; when a helper could not be
    followed, only differences inside tables both sides have are kept."""
    excluded = IGNORED_TABLES | {options.version_table} | set(options.exclude_tables)
    uncertain = set(schema.uncertain)
    schema_md, model_md = sa.MetaData(), sa.MetaData()
    s_states: dict[tuple, TableState] = {}
    m_states: dict[tuple, TableState] = {}
    for state in schema.tables.values():
        if _compared(options, state, "schema"):
            state.to_table(schema_md)
            s_states[(state.schema, state.name)] = state
    for state in models.values():
        if _compared(options, state, "model"):
            state.to_table(model_md)
            m_states[(state.schema, state.name)] = state

    def skip(state: TableState) -> bool:
        return state.name in excluded or any(n in uncertain and not schema.partly_uncertain(n)
                                             for n in (state.name, state.key))

    skipped = {k for k, st in [*s_states.items(), *m_states.items()] if skip(st)}
    if schema.unknown:  # a helper we cannot follow may have created or dropped any table
        skipped |= set(s_states).symmetric_difference(m_states)
    _neutralise_opaque(schema_md, model_md)
    _convention_names(schema_md, model_md)
    skipped |= _stub_missing_targets(model_md)
    try:
        upgrade_ops = run_alembic_compare(schema_md, model_md, options, skipped)
    except Exception as exc:  # never a crash: the check says drift was not compared, and why
        raise CompareError(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
    out: list[Difference] = []
    for op in upgrade_ops.ops:
        out.extend(_differences(op, s_states, m_states, sides, options.dialect))
    if schema.unknown:
        out = [d for d in out if d.kind == "changed"]
    if schema.opaque_kinds - {OPAQUE_ANY} or schema.hidden:
        out = [d for d in out if not _may_be_opaque(d.op, schema.opaque_kinds, schema.hidden)]
    return _filtered(out, options)


def _may_be_opaque(op: Any, kinds: frozenset[str], hidden: AbstractSet[str] = frozenset()) -> bool:
    """Could an op whose table could not be read (of `kinds`) have made this difference? Or
    one of a table partly uncertain (`SchemaState.with_uncertain(hides=...)`), in that table?"""
    kind = _kind_of(op)
    if kind in kinds:
        return True
    _, name, table, schema_name = _object_of(op)
    if table is not None and kind not in ("add_table", "drop_table"):
        for key in {table, table_key(table, schema_name)}:
            if any(k in hidden for k in (table_hidden(ANY_INSIDE, key), table_hidden(kind, key),
                                         table_hidden(f"{kind}:{name}", key))):
                return True
    if isinstance(op, alembic_ops.CreateTableOp):  # a table of the same columns
        return f"add_table:{','.join(sorted(c.name for c in op.columns if isinstance(c, sa.Column)))}" in kinds
    return f"{kind}:{_object_of(op)[1]}" in kinds


_DIFFERENCE_KINDS: tuple[tuple[type, str], ...] = (
    (alembic_ops.CreateTableOp, "add_table"), (alembic_ops.DropTableOp, "drop_table"),
    (alembic_ops.AddColumnOp, "add_column"), (alembic_ops.DropColumnOp, "drop_column"),
    (alembic_ops.AlterColumnOp, "alter_column"), (alembic_ops.CreateIndexOp, "add_index"),
    (alembic_ops.DropIndexOp, "drop_index"), (alembic_ops.CreateTableCommentOp, "comment"),
    (alembic_ops.DropTableCommentOp, "comment"), (alembic_ops.AddConstraintOp, "add_constraint"),
    (alembic_ops.DropConstraintOp, "drop_constraint"))


def _kind_of(op: Any) -> str:
    """Which kind of difference (as replay.OPAQUE_KINDS names them) an op is: an op whose
    table could not be read may have made any such difference, in any table (of that name,
    when the op's argument names it)."""
    return next((kind for cls, kind in _DIFFERENCE_KINDS if isinstance(op, cls)), OPAQUE_ANY)


def _compared(options: CompareOptions, state: TableState, side: str) -> bool:
    """Alembic compares only the default schema when env.py says include_schemas=False; a
    table env.py's include_name refuses is one the database does not have."""
    if options.include_schemas is False and state.schema is not None:
        return False
    return side == "model" or not _left_out(options, "schema", "table", state.key, state.name, "name")


_CONSTRAINT_KINDS = {"unique": "unique_constraint", "foreignkey": "foreign_key_constraint"}


def _object_of(op: Any) -> tuple[str | None, Any, str | None, str | None]:
    """(kind as include_object names it, name, table, schema) of a difference's op."""
    if isinstance(op, (alembic_ops.CreateTableOp, alembic_ops.DropTableOp)):
        return "table", op.table_name, op.table_name, op.schema
    if isinstance(op, (alembic_ops.AddColumnOp, alembic_ops.DropColumnOp)):
        column = getattr(op, "column", None)
        name = column.name if column is not None else getattr(op, "column_name", None)
        return "column", name, op.table_name, op.schema
    if isinstance(op, alembic_ops.AlterColumnOp):
        return "column", op.column_name, op.table_name, op.schema
    if isinstance(op, (alembic_ops.CreateIndexOp, alembic_ops.DropIndexOp)):
        return "index", op.index_name, op.table_name, op.schema
    if isinstance(op, alembic_ops.CreateUniqueConstraintOp):
        return "unique_constraint", op.constraint_name, op.table_name, op.schema
    if isinstance(op, alembic_ops.CreateForeignKeyOp):
        return "foreign_key_constraint", op.constraint_name, op.source_table, (op.kw or {}).get("source_schema")
    if isinstance(op, alembic_ops.DropConstraintOp):
        return _CONSTRAINT_KINDS.get(op.constraint_type or ""), op.constraint_name, op.table_name, op.schema
    return None, None, None, None


def _filtered(found: list[Difference], options: CompareOptions) -> list[Difference]:
    """What env.py's include_object / include_name leave out (judged in the model child,
    by name: an unnamed model-side object is kept; a migration-side object the filters
    never saw, under callable filters, is not reported rather than guessed)."""
    if not options.excluded and not options.filtered:
        return found
    kept = []
    for diff in found:
        kind, name, table, schema = _object_of(diff.op)
        if kind is None:
            kept.append(diff)
            continue
        key = f"{schema}.{table}" if schema else str(table)
        if diff.kind == "extra":
            left_out = _left_out(options, "schema", kind, key, name, "name", "new")
        elif diff.kind == "missing":
            left_out = name is not None and _left_out(options, "model", kind, key, name, "new")
        else:
            left_out = _left_out(options, "model", "table", key, table, "both") or (
                name is not None and _left_out(options, "model", kind, key, name, "both"))
        if not left_out:
            kept.append(diff)
    return kept


class CompareError(Exception):
    """Alembic's comparison could not run on these tables (the message says why)."""


def _stub_missing_targets(metadata: sa.MetaData) -> set[tuple]:
    """A foreign key to a table the metadata lacks (left out, or the models' own mistake)
    gets a stand-in table, so Alembic can read the key; the stand-in is never compared."""
    stubs: set[tuple] = set()
    for table in list(metadata.tables.values()):
        for fk in table.foreign_key_constraints:
            for element in fk.elements:
                parts = element.target_fullname.split(".")
                name, column, schema = parts[-2], parts[-1], ".".join(parts[:-2]) or None
                key = table_key(name, schema)
                target = metadata.tables.get(key)
                if target is None:
                    target = sa.Table(name, metadata, schema=schema)
                    stubs.add((schema, name))
                if (schema, name) in stubs and column not in target.c:
                    target.append_column(sa.Column(column, element.parent.type))
    return stubs


def _convention_names(schema_md: sa.MetaData, model_md: sa.MetaData) -> None:
    """An unnamed unique constraint the migrations create gets its name in the database from
    the naming convention of env.py's target_metadata (Alembic's ops build their tables with
    it), else from the database; the replay knows neither, so it takes the name the models
    give the same columns: with a convention that is the name the database has, without one
    autogenerate matches unnamed constraints by their columns anyway."""
    for table in schema_md.tables.values():
        other = model_md.tables.get(table.key)
        if other is None:
            continue
        named = {frozenset(constraint_columns(c)): c.name for c in other.constraints
                 if isinstance(c, sa.UniqueConstraint) and isinstance(c.name, str)}
        for c in table.constraints:
            if isinstance(c, sa.UniqueConstraint) and not isinstance(c.name, str):
                name = named.get(frozenset(constraint_columns(c)))
                if name:
                    c.name = name
        # Column(index=True) in op.create_table: its index is named by the convention too; the
        # replay, knowing none, has SQLAlchemy's default `ix_<table>_<column>`: a model index
        # on the same column named by a convention has the name the database has
        conventional = {(tuple(index_columns(i)), bool(i.unique)): i.name for i in other.indexes
                        if isinstance(i.name, sa.sql.elements.conv)}
        model_names = {i.name for i in other.indexes}
        for index in table.indexes:
            columns = tuple(index_columns(index))
            if (isinstance(index.name, sa.sql.elements.conv) and len(columns) == 1
                    and index.name == f"ix_{table.name}_{columns[0]}" and index.name not in model_names):
                name = conventional.get((columns, bool(index.unique)))
                if name:
                    index.name = name


def _neutralise_opaque(schema_md: sa.MetaData, model_md: sa.MetaData) -> None:
    """A column whose type the replay could not evaluate compares as no type at all on both
    sides (Alembic skips NullType): its type is unknown, not different."""
    for table in schema_md.tables.values():
        other = model_md.tables.get(table.key)
        for column in table.columns:
            twin = other.c.get(column.name) if other is not None else None
            if is_opaque_type(column.type) or (twin is not None and is_opaque_type(twin.type)):
                column.type = sa.types.NullType()
                if twin is not None:
                    twin.type = sa.types.NullType()


def run_alembic_compare(schema_md: sa.MetaData, model_md: sa.MetaData, options: CompareOptions,
                        skipped: AbstractSet[tuple] = frozenset()) -> alembic_ops.UpgradeOps:
    """Alembic's autogenerate between `schema_md` (as the database) and `model_md`."""
    from alembic.autogenerate.api import AutogenContext
    from alembic.runtime.migration import MigrationContext

    impl = _impl(options.dialect or _dialect_of_types(schema_md, model_md))
    dialect = impl.dialect

    def include_object(obj, name, type_, reflected, compare_to):
        return not (type_ == "table" and (obj.schema if obj.schema != dialect.default_schema_name else None,
                                          name) in skipped)

    compare_type: Any = options.compare_type
    if options.compare_type and options.type_decisions:
        decisions = options.type_decisions

        def compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type):
            """env.py's compare_type callable, as the model child evaluated it per column (None:
            it had no answer; Alembic's own comparison decides)."""
            table = metadata_column.table
            key = table_key(table.name, table.schema)
            return decisions.get((key, metadata_column.name))

    context = MigrationContext.configure(dialect=dialect, opts={
        "compare_type": compare_type, "compare_server_default": options.compare_server_default,
        "include_object": include_object, "include_schemas": True,
        "target_metadata": model_md})
    _connectionless_defaults(context.impl)
    _tolerant_types(context.impl)
    if options.dialect is None and dialect.name != "sqlite":  # SQLite stands in for the indexes (StaticInspector)
        context.impl.correct_for_autogen_constraints = _skip_functional_indexes(context.impl)  # type: ignore[method-assign]
    autogen = AutogenContext(context, model_md)
    # a dialect only guessed from the types (none configured) picks no variant: the models were
    # loaded without a dialect, so theirs are left out too (mlflow: Text().with_variant(MEDIUMTEXT,
    # "mysql") against the models' Text(), compared as MySQL because some column is MEDIUMTEXT)
    inspector = StaticInspector(schema_md, dialect, variants=options.dialect is not None,
                                indexes_as=options.dialect or "sqlite")
    fill_inspector(autogen, inspector)
    # what alembic.autogenerate.compare.schema._produce_net_changes does with a connection
    # every schema the tables use is compared (as with include_schemas=True): a table in a
    # named schema is never reported as missing only because env.py leaves that option off
    schemas: set[str | None] = {None}
    schemas |= set(inspector.get_schema_names()) - {"information_schema", dialect.default_schema_name}
    schemas |= {t.schema for t in model_md.tables.values() if t.schema and t.schema != dialect.default_schema_name}
    schemas = {s for s in schemas if autogen.run_name_filters(s, "schema", {})}
    upgrade_ops = alembic_ops.UpgradeOps([])
    with warnings.catch_warnings():  # (SQLAlchemy's notes on the project's tables: not ours to print)
        warnings.simplefilter("ignore")
        autogen.comparators.dispatch("schema", qualifier=dialect.name)(autogen, upgrade_ops, schemas)
    return upgrade_ops


def _dialect_of_types(*metadatas: sa.MetaData) -> str | None:
    """With no dialect configured, the one whose types the tables use (`postgresql.JSONB`)."""
    for metadata in metadatas:
        for table in metadata.tables.values():
            for column in table.columns:
                name = type_dialect(column.type)
                if name in KNOWN_DIALECTS:
                    return name
    return None


def _skip_functional_indexes(impl: DefaultImpl) -> Any:
    """The impl's `correct_for_autogen_constraints`, then SQLite's (Alembic's own skip of the
    models' expression indexes a SQLite database cannot reflect)."""
    correct_for_dialect = impl.correct_for_autogen_constraints

    def correct(conn_uniques: Any, conn_indexes: Any, metadata_uniques: Any, metadata_indexes: Any) -> None:
        correct_for_dialect(conn_uniques, conn_indexes, metadata_uniques, metadata_indexes)
        skip_functional_indexes(impl, metadata_indexes, conn_indexes)

    return correct


def _tolerant_types(impl: DefaultImpl) -> None:
    """A type the dialect cannot compile (another dialect's) is compared by its class name."""
    compare_type = impl.compare_type

    def tolerant(inspector_column, metadata_column):
        try:
            return compare_type(inspector_column, metadata_column)
        except Exception:  # noqa: BLE001 - another dialect's type the impl cannot compile
            return type(inspector_column.type).__name__.upper() != type(metadata_column.type).__name__.upper()

    impl.compare_type = tolerant  # type: ignore[method-assign]


def _connectionless_defaults(impl: DefaultImpl) -> None:
    """PostgreSQL's impl asks the server whether two different default texts are equal;
    with no server, normalised texts decide."""
    compare_default = impl.compare_server_default

    def compare_server_default(inspector_column, metadata_column, rendered_metadata, rendered_inspector):
        try:
            return compare_default(inspector_column, metadata_column, rendered_metadata, rendered_inspector)
        except (AssertionError, AttributeError):
            return _normalise_default(rendered_metadata or "") != _normalise_default(rendered_inspector or "")

    impl.compare_server_default = compare_server_default  # type: ignore[method-assign]


_NO_DDL = sa.DDL("")  # what a DDL compiler is built on when only its column helpers are used


class StaticInspector(Inspector):
    """A SQLAlchemy Inspector that reflects a MetaData instead of a database, the way the
    dialect's own reflection would report it (SQLite: declared types by affinity, names only
    for named constraints; PostgreSQL: the names the server gives unnamed constraints)."""

    def __init__(self, metadata: sa.MetaData, dialect: Any, variants: bool = True,
                 indexes_as: str | None = None) -> None:  # (no super(): no bind)
        self.dialect = dialect
        self.variants = variants
        # whose reflection of indexes: with no dialect configured SQLite stands in (as in the
        # truth pass), whatever dialect the types suggest
        self.indexes_as = indexes_as or dialect.name
        self.bind = self.engine = _StaticBind(dialect)  # type: ignore[assignment]
        self.info_cache: dict = {}
        default = dialect.default_schema_name
        self._tables = {(t.schema if t.schema != default else None, t.name): t for t in metadata.tables.values()}

    @contextlib.contextmanager
    def _operation_context(self):
        yield self.bind

    @property
    def default_schema_name(self) -> str | None:
        return self.dialect.default_schema_name

    def get_schema_names(self, **kw) -> list[str]:
        return sorted({s for s, _ in self._tables if s})

    def get_table_names(self, schema: str | None = None, **kw) -> list[str]:
        return sorted(n for s, n in self._tables if s == schema)

    def has_table(self, table_name: str, schema: str | None = None, **kw) -> bool:
        return (schema, table_name) in self._tables

    def _one(self, table_name: str, schema: str | None) -> sa.Table:
        try:
            return self._tables[(schema, table_name)]
        except KeyError:
            raise sa.exc.NoSuchTableError(table_name) from None

    def _multi(self, what, schema=None, filter_names=None, **kw) -> dict:
        return {(s, n): what(t) for (s, n), t in self._tables.items()
                if s == schema and (filter_names is None or n in filter_names)}

    # one table
    def get_columns(self, table_name, schema=None, **kw):
        return self._columns(self._one(table_name, schema))

    def get_pk_constraint(self, table_name, schema=None, **kw):
        return self._pk(self._one(table_name, schema))

    def get_foreign_keys(self, table_name, schema=None, **kw):
        return self._fks(self._one(table_name, schema))

    def get_indexes(self, table_name, schema=None, **kw):
        return self._indexes(self._one(table_name, schema))

    def get_unique_constraints(self, table_name, schema=None, **kw):
        return self._uniques(self._one(table_name, schema))

    def get_table_comment(self, table_name, schema=None, **kw):
        return self._comment(self._one(table_name, schema))

    def get_check_constraints(self, table_name, schema=None, **kw):
        return []  # autogenerate does not compare CHECK constraints

    def get_table_options(self, table_name, schema=None, **kw):
        return {}

    # several tables (what Alembic pre-caches)
    def get_multi_columns(self, schema: str | None = None, filter_names: Sequence[str] | None = None,
                   kind: ObjectKind = ObjectKind.TABLE, scope: ObjectScope = ObjectScope.DEFAULT, **kw: Any) -> Any:
        return self._multi(self._columns, schema, filter_names)

    def get_multi_pk_constraint(self, schema: str | None = None, filter_names: Sequence[str] | None = None,
                   kind: ObjectKind = ObjectKind.TABLE, scope: ObjectScope = ObjectScope.DEFAULT, **kw: Any) -> Any:
        return self._multi(self._pk, schema, filter_names)

    def get_multi_foreign_keys(self, schema: str | None = None, filter_names: Sequence[str] | None = None,
                   kind: ObjectKind = ObjectKind.TABLE, scope: ObjectScope = ObjectScope.DEFAULT, **kw: Any) -> Any:
        return self._multi(self._fks, schema, filter_names)

    def get_multi_indexes(self, schema: str | None = None, filter_names: Sequence[str] | None = None,
                   kind: ObjectKind = ObjectKind.TABLE, scope: ObjectScope = ObjectScope.DEFAULT, **kw: Any) -> Any:
        return self._multi(self._indexes, schema, filter_names)

    def get_multi_unique_constraints(self, schema: str | None = None, filter_names: Sequence[str] | None = None,
                   kind: ObjectKind = ObjectKind.TABLE, scope: ObjectScope = ObjectScope.DEFAULT, **kw: Any) -> Any:
        return self._multi(self._uniques, schema, filter_names)

    def get_multi_table_comment(self, schema: str | None = None, filter_names: Sequence[str] | None = None,
                   kind: ObjectKind = ObjectKind.TABLE, scope: ObjectScope = ObjectScope.DEFAULT, **kw: Any) -> Any:
        return self._multi(self._comment, schema, filter_names)

    def get_multi_check_constraints(self, schema: str | None = None, filter_names: Sequence[str] | None = None,
                   kind: ObjectKind = ObjectKind.TABLE, scope: ObjectScope = ObjectScope.DEFAULT, **kw: Any) -> Any:
        return self._multi(lambda t: [], schema, filter_names)

    def get_multi_table_options(self, schema: str | None = None, filter_names: Sequence[str] | None = None,
                   kind: ObjectKind = ObjectKind.TABLE, scope: ObjectScope = ObjectScope.DEFAULT, **kw: Any) -> Any:
        return self._multi(lambda t: {}, schema, filter_names)

    # what the dialect's reflection reports
    @property
    def _sqlite(self) -> bool:
        return self.dialect.name == "sqlite"

    @property
    def _postgresql(self) -> bool:
        return self.dialect.name == "postgresql"

    def _type(self, type_: Any) -> Any:
        variants = getattr(type_, "_variant_mapping", None)
        if variants and not self.variants:  # the base type alone (compiling would pick the variant)
            type_ = type_.copy()
            type_._variant_mapping = type(variants)()
        elif variants and self.dialect.name in variants:  # the database has only this dialect's type
            type_ = variants[self.dialect.name]
        if isinstance(self.dialect, SQLiteDialect) and not isinstance(type_, sa.types.NullType):
            try:  # SQLite keeps the declared type's text; reflection reads it back by affinity
                return self.dialect._resolve_type_affinity(type_.compile(dialect=self.dialect))
            except Exception:  # noqa: BLE001 - a type SQLite cannot compile keeps its class
                return type_
        return type_

    def _name(self, obj: sa.Constraint | sa.Index) -> str | None:
        """The name as the database stores it: a naming convention's name longer than the
        dialect allows is shortened the way SQLAlchemy's DDL does (PostgreSQL: 63 characters,
        with a hash), any other long name cut as the server cuts it."""
        if not isinstance(obj.name, str):
            return None
        try:
            final = self.dialect.identifier_preparer.format_constraint(obj, _alembic_quote=False)
        except sa.exc.IdentifierError:
            final = None
        if not isinstance(final, str):
            limit = self.dialect.max_identifier_length or len(obj.name)
            return str(obj.name)[:limit]
        return final

    def _default(self, column: sa.Column) -> str | None:
        if column.server_default is None:
            return None
        try:
            return self.dialect.ddl_compiler(self.dialect, _NO_DDL).get_column_default_string(column)
        except Exception:  # noqa: BLE001 - a default the DDL compiler refuses: its text
            return _default_text(column, self.dialect.name)

    def _columns(self, table: sa.Table) -> list[dict]:
        out = []
        for c in table.columns:
            info = {"name": c.name, "type": self._type(c.type), "nullable": bool(c.nullable),
                    "default": self._default(c), "autoincrement": c.autoincrement if c.primary_key else False}
            if c.comment is not None:
                info["comment"] = c.comment
            out.append(info)
        return out

    def _pk(self, table: sa.Table) -> dict:
        pk = table.primary_key
        name = self._name(pk)
        if name is None and self._postgresql and pk.columns:
            name = f"{table.name}_pkey"
        return {"constrained_columns": [c.name for c in pk.columns], "name": name}

    def _fks(self, table: sa.Table) -> list[dict]:
        out = []
        for fk in sorted(table.foreign_key_constraints, key=lambda f: [e.parent.name for e in f.elements]):
            name = self._name(fk)
            if name is None and self._postgresql:
                name = f"{table.name}_{fk.elements[0].parent.name}_fkey"
            target = fk.elements[0].target_fullname.split(".")
            referred_schema = ".".join(target[:-2]) or None
            if referred_schema == self.dialect.default_schema_name:
                referred_schema = None
            referred = self._tables.get((referred_schema, target[-2]))
            if referred is not None and any(e.target_fullname.split(".")[-1] not in referred.c for e in fk.elements):
                continue  # its column was dropped later in the history: no reflection could resolve it
            options = {k: getattr(fk, k) for k in ("onupdate", "ondelete", "deferrable", "initially")
                       if getattr(fk, k) is not None}
            out.append({"name": name, "constrained_columns": [e.parent.name for e in fk.elements],
                        "referred_schema": referred_schema, "referred_table": target[-2],
                        "referred_columns": [e.target_fullname.split(".")[-1] for e in fk.elements],
                        "options": options})
        return out

    def _indexes(self, table: sa.Table) -> list[dict]:
        out = []
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if not isinstance(index.name, str):
                continue
            elements = [plain_element(e, set(table.c.keys())) for e in index_elements(index)]
            info: dict[str, Any] = {"name": self._name(index), "unique": bool(index.unique), "dialect_options": {}}
            if self.indexes_as == "sqlite":
                # PRAGMA index_xinfo: column names only (no sort order); an index on an
                # expression is skipped ("Skipped unsupported reflection of expression-based index")
                if any(e.column is None for e in elements):
                    continue
                info["column_names"] = [e.column for e in elements]
                where = index.dialect_kwargs.get("sqlite_where")
                if where is not None:
                    info["dialect_options"] = {"sqlite_where": where}
            elif self.indexes_as == "postgresql":
                # pg_index: a column's name, else the expression's text; the sort order as
                # PostgreSQL keeps it (DESC implies NULLS FIRST, ASC NULLS LAST), also when
                # given as `postgresql_ops={"id": "DESC"}` (airflow's task_reschedule)
                elements = [_with_pg_ops(e, index.dialect_kwargs.get("postgresql_ops")) for e in elements]
                info["column_names"] = [e.column for e in elements]
                if any(e.column is None for e in elements):
                    info["expressions"] = [e.column or e.sql for e in elements]
                sorting = {e.column: _pg_sorting(e.modifiers) for e in elements
                           if e.column is not None and _pg_sorting(e.modifiers)}
                if sorting:
                    info["column_sorting"] = sorting
            else:  # (an index with an expression or a sort order is not compared: _unsure_indexes)
                info["column_names"] = [e.column for e in elements]
                info["expressions"] = [e.column or e.sql for e in elements]
            out.append(info)
        return out

    def _uniques(self, table: sa.Table) -> list[dict]:
        out = []
        for c in table.constraints:
            if not isinstance(c, sa.UniqueConstraint):
                continue
            name = self._name(c)
            if name is None and self._postgresql:
                name = f"{table.name}_{'_'.join(col.name for col in c.columns)}_key"
            out.append({"name": name, "column_names": [col.name for col in c.columns]})
        for col in table.columns:  # Column(unique=True) is a constraint once created
            if col.unique and not any(isinstance(c, sa.UniqueConstraint) and list(c.columns) == [col]
                                      for c in table.constraints):
                out.append({"name": f"{table.name}_{col.name}_key" if self._postgresql else None,
                            "column_names": [col.name]})
        return out

    def _comment(self, table: sa.Table) -> dict:
        return {"text": table.comment}


_SORT_ORDER = re.compile(r"^\s*(ASC|DESC)?\s*(?:NULLS\s+(FIRST|LAST))?\s*$", re.IGNORECASE)


def _with_pg_ops(element: IndexElement, ops: Any) -> IndexElement:
    """A column's `postgresql_ops` entry that is only a sort order, as its modifiers (another
    operator class is no sort order: PostgreSQL's comparison leaves it out)."""
    value = ops.get(element.column) if isinstance(ops, dict) and element.column is not None else None
    m = _SORT_ORDER.match(value) if isinstance(value, str) and value.strip() else None
    if m is None:
        return element
    added = ((m.group(1).lower(),) if m.group(1) else ()) + ((f"nulls_{m.group(2).lower()}",) if m.group(2) else ())
    return replace(element, modifiers=element.modifiers + added)


def _pg_sorting(modifiers: tuple[str, ...]) -> tuple[str, ...]:
    """A column's sort modifiers as PostgreSQL reflects them: only what differs from the
    default (ASC NULLS LAST; DESC NULLS FIRST)."""
    desc = "desc" in modifiers
    nulls = next((m for m in reversed(modifiers) if m.startswith("nulls_")), None)
    out: tuple[str, ...] = ("desc",) if desc else ()
    if nulls == ("nulls_last" if desc else "nulls_first"):
        out += (nulls,)
    return out


class _StaticBind:
    """What reflection asks of its connection: the dialect and a table's schema."""

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect

    def schema_for_object(self, obj: Any) -> str | None:
        return obj.schema


def _differences(op: Any, s_states: dict, m_states: dict, sides: Sides,
                 dialect: str | None = None) -> list[Difference]:
    """Alembic's op -> Difference records, located where the models declare it (missing,
    changed) or where the migrations made it (extra)."""
    if isinstance(op, alembic_ops.CreateTableOp):
        state = m_states.get((op.schema, op.table_name))
        return [Difference("missing", f"table {table_key(op.table_name, op.schema)}", op,
                           state.origin if state else None, None)]
    if isinstance(op, alembic_ops.DropTableOp):
        state = s_states.get((op.schema, op.table_name))
        if state is not None:  # its downgrade re-creates the table as the migrations wrote it
            op = alembic_ops.DropTableOp.from_table(state.to_table(sa.MetaData()))
        return [Difference("extra", f"table {table_key(op.table_name, op.schema)}", op, None,
                           state.origin if state else None)]
    if not isinstance(op, alembic_ops.ModifyTableOps):
        return []
    key = table_key(op.table_name, op.schema)
    s_state, m_state = s_states.get((op.schema, op.table_name)), m_states.get((op.schema, op.table_name))
    new_table = s_state is None
    gone_table = m_state is None
    m_origin = m_state.origin if m_state else None
    s_origin = s_state.origin if s_state else None
    out = []
    unsure = _unsure_indexes(op, s_state, m_state, dialect)
    for sub in op.ops:
        if isinstance(sub, alembic_ops.AddColumnOp):
            col = m_state.column(sub.column.name) if m_state else None
            out.append(Difference("missing", f"column {key}.{sub.column.name}", sub,
                                  (col.origin if col else None) or m_origin, None))
        elif isinstance(sub, alembic_ops.DropColumnOp):
            col = s_state.column(sub.column_name) if s_state else None
            if col is not None:  # the column as the migrations wrote it, not as reflected
                sub = alembic_ops.DropColumnOp.from_column_and_tablename(op.schema, op.table_name, col.column._copy())
            out.append(Difference("extra", f"column {key}.{sub.column_name}", sub, m_origin,
                                  (col.origin if col else None) or s_origin))
        elif isinstance(sub, alembic_ops.AlterColumnOp):
            m_col = m_state.column(sub.column_name) if m_state else None
            s_col = s_state.column(sub.column_name) if s_state else None
            if s_col is not None:
                sub.existing_type = s_col.column.type  # the migrations' own spelling (String, not VARCHAR)
            details = _alter_details(sub, sides, sub.existing_type)
            out.append(Difference("changed", f"column {key}.{sub.column_name}", sub,
                                  (m_col.origin if m_col else None) or m_origin, s_col.origin if s_col else None,
                                  "; ".join(details)))
        elif isinstance(sub, (alembic_ops.CreateIndexOp, alembic_ops.DropIndexOp)) and sub.index_name in unsure:
            continue  # expressions whose text the database would normalise: not compared here
        elif isinstance(sub, alembic_ops.CreateIndexOp):
            columns = tuple(str(getattr(c, "name", c)) for c in sub.columns)
            out.append(Difference("missing", f"index {sub.index_name} on {key}", sub,
                                  _declared_at(m_state, sub.index_name, columns) if m_state else None, None,
                                  "with table" if new_table else ""))
        elif isinstance(sub, alembic_ops.DropIndexOp):
            if m_state is not None and sub.index_name in m_state.info.get("table_args_names", ()) \
                    and not any(i.name == sub.index_name for i, _ in m_state.indexes):
                continue  # the models declare it (an expression index the loader could not rebuild)
            origin = next((o for i, o in (s_state.indexes if s_state else ()) if i.name == sub.index_name), s_origin)
            out.append(Difference("extra", f"index {sub.index_name} on {key}", sub, m_origin, origin,
                                  "with table" if gone_table else ""))
        elif isinstance(sub, (alembic_ops.AddConstraintOp, alembic_ops.DropConstraintOp)):
            out.extend(_constraint_difference(sub, key, s_state, m_state))
        elif isinstance(sub, (alembic_ops.CreateTableCommentOp, alembic_ops.DropTableCommentOp)):
            new = getattr(sub, "comment", None)
            old = sub.existing_comment
            out.append(Difference("changed", f"table {key}", sub, m_origin, s_origin,
                                  f"comment {new!r} {sides[1]}, {old!r} {sides[0]}"))
    return out


def _unsure_indexes(op: alembic_ops.ModifyTableOps, s_state: TableState | None, m_state: TableState | None,
                    dialect: str | None) -> set[str]:
    """Indexes Alembic reports that a database of the dialect might not. SQLite (and no
    dialect: SQLite stands in): none, the static reflection is SQLite's own (column names
    only, expression indexes skipped). PostgreSQL compares expressions by the text the server
    normalised (`lower((name)::text)`): an index changed (dropped and created again) with an
    expression on either side is left out. Other dialects: any index with an expression or
    a sort order on either side."""
    if dialect in ("sqlite", None):
        return set()
    dropped = {sub.index_name for sub in op.ops if isinstance(sub, alembic_ops.DropIndexOp)}
    created = {sub.index_name for sub in op.ops if isinstance(sub, alembic_ops.CreateIndexOp)}
    unsure: set[str] = set()
    for state in (s_state, m_state):
        if state is None:
            continue
        for index, _ in state.indexes:
            if not isinstance(index.name, str) or index.name not in dropped | created:
                continue
            if dialect == "postgresql":
                columns = {c.name for c in state.columns}
                if index.name in dropped & created and \
                        any(plain_element(e, columns).column is None for e in index_elements(index)):
                    unsure.add(index.name)
            elif _ordered(index) or any(e.column is None or e.modifiers for e in index_elements(index)):
                unsure.add(index.name)
    return unsure


def _ordered(index: Any) -> bool:
    """An index with a sort order (`postgresql_ops={"id": "DESC"}`, `DESC` in SQL) or an
    expression among its columns."""
    kwargs = getattr(index, "kwargs", None) or {}
    if any(key.endswith("_ops") and value for key, value in kwargs.items()):
        return True
    return any(not isinstance(e, (sa.Column, str)) for e in getattr(index, "expressions", ()))


def _alter_details(op: alembic_ops.AlterColumnOp, sides: Sides, schema_type: Any) -> list[str]:
    schema_side, model_side = sides
    details = []
    if op.modify_type is not None:
        details.append(f"type {_type_text(schema_type)} {schema_side}, {_type_text(op.modify_type)} {model_side}")
    if op.modify_nullable is not None:
        details.append(f"{'nullable' if op.modify_nullable else 'NOT NULL'} {model_side}, "
                       f"{'nullable' if op.existing_nullable else 'NOT NULL'} {schema_side}")
    if op.modify_server_default is not False:
        details.append(f"server default {_arg_text(op.modify_server_default)!r} {model_side}, "
                       f"{_arg_text(op.existing_server_default)!r} {schema_side}")
    if op.modify_comment is not False:
        details.append(f"comment {op.modify_comment!r} {model_side}, {op.existing_comment!r} {schema_side}")
    return details


def _arg_text(default: Any) -> str | None:
    if default is None or default is False:
        return None
    arg = getattr(default, "arg", default)
    text = getattr(arg, "text", None)
    return _normalise_default(text if isinstance(text, str) else str(arg))


def _constraint_difference(op: Any, table_key: str, s_state: TableState | None,
                           m_state: TableState | None) -> list[Difference]:
    if isinstance(op, alembic_ops.AddConstraintOp):
        constraint = op.to_constraint()
        kind = "missing"
    else:
        constraint = op.to_constraint()
        kind = "extra"
    if isinstance(constraint, sa.ForeignKeyConstraint):
        label = "foreign key"
        columns = tuple(constraint.column_keys)
    elif isinstance(constraint, sa.UniqueConstraint):
        label = "unique constraint"
        columns = tuple(constraint_columns(constraint)) or tuple(getattr(op, "columns", ()) or ())
    else:
        return []
    what = f"{label} on {table_key}({', '.join(columns)})"
    if kind == "missing":
        return [Difference("missing", what, op, _declared_at(m_state, constraint.name, columns) if m_state else None,
                           None)]
    origin = next((o for c, o in (s_state.constraints if s_state else ())
                   if c.name is not None and c.name == constraint.name), s_state.origin if s_state else None)
    return [Difference("extra", what, op, m_state.origin if m_state else None, origin)]


def _type_text(type_: Any) -> str:
    try:
        return repr(type_)
    except Exception:  # noqa: BLE001 - a project type whose repr fails
        return type(type_).__name__


def _declared_at(m_state: TableState, name: Any, columns: tuple[str, ...]) -> Origin | None:
    """Where the models declare an index or constraint: `__table_args__` when it names it,
    else the one column it is on (`index=True`, `ForeignKey(...)`), else the class line.
    The line that made it comes first, when the models loader saw one (`Index(...)`)."""
    declared: tuple[tuple[sa.Index | sa.Constraint, Origin | None], ...] = (*m_state.indexes, *m_state.constraints)
    made = next((o for item, o in declared
                 if isinstance(name, str) and item.name == name and o is not None and o != m_state.origin), None)
    if made is not None:
        return made
    table_args = m_state.info.get("table_args")
    mentioned = set(m_state.info.get("table_args_names", ()))
    if table_args and ((isinstance(name, str) and name in mentioned) or (columns and set(columns) <= mentioned)):
        return table_args
    if len(columns) == 1:
        column = m_state.column(columns[0])
        if column is not None and column.origin is not None and column.origin != m_state.origin:
            return column.origin
    return table_args or m_state.origin
