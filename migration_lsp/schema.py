"""Stage `schema`, part 2: the schema state at one point of the history.

States are values: a `SchemaState` maps table keys to `TableState`s that are replaced,
never mutated, and shares structure with the state it was derived from (see `pmap`).
Evaluation (`evaluate`) turns op calls into Alembic ops; the replay (`replay`) applies
them to these states along the revision graph.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.schema import ColumnCollectionConstraint

from . import alembic_api
from .core import Span
from .pmap import EMPTY_TABLES, NO_NAMES, NO_ORIGINS, Keyed, Names, Origins, TableMap

Origin = tuple[Path, Span]


class IndexRecord:
    """An index on plain columns, as the schema state keeps it: what `sa.Index` would hold
    (`name`, `unique`, `expressions` as column names, dialect `kwargs`) without building
    the throwaway Table an `sa.Index` / `CreateIndexOp.to_index()` needs. Immutable."""

    __slots__ = ("expressions", "kwargs", "name", "unique")
    name: Any  # (the slots' types, for the type checker)
    expressions: tuple[str, ...]
    unique: Any
    kwargs: dict[str, Any]

    def __init__(self, name: Any, columns: Iterable[str], unique: Any = False,
                 kwargs: Mapping[str, Any] | None = None) -> None:
        # what sa.Index does with its name (a plain str becomes a quoted_name)
        object.__setattr__(self, "name", sa.sql.elements.quoted_name.construct(name, None))
        object.__setattr__(self, "expressions", tuple(columns))
        object.__setattr__(self, "unique", unique)
        object.__setattr__(self, "kwargs", dict(kwargs or {}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("IndexRecord is immutable")

    def __repr__(self) -> str:
        return f"IndexRecord({self.name!r}, {list(self.expressions)!r}, unique={self.unique!r})"


@dataclass(frozen=True, slots=True)
class ColumnState:
    # never mutated, never attached to a table we hand out (to_table copies it); shared
    # with the op that made it (an add_column's column, a create_table's table)
    column: sa.Column
    origin: Origin | None = None
    name: str = field(init=False, repr=False, compare=False)  # the column's (read often)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.column.name)


@dataclass(frozen=True, slots=True)
class TableState:
    """One table at one point in history; replaced, never mutated."""

    name: str
    schema: str | None
    columns: tuple[ColumnState, ...]
    constraints: tuple[tuple[sa.Constraint, Origin | None], ...] = ()
    indexes: tuple[tuple[sa.Index, Origin | None], ...] = ()
    comment: str | None = None
    origin: Origin | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return table_key(self.name, self.schema)

    def column(self, name: str) -> ColumnState | None:
        if type(self.columns) is Keyed:
            try:
                return self.columns.get(name)
            except TypeError:  # an unhashable name: no such column
                return None
        for col in self.columns:
            if col.name == name:
                return col
        return None

    def to_table(self, metadata: sa.MetaData) -> sa.Table:
        """A Table with this state's columns, constraints and indexes, and no others: a
        column's own `index=True` / `unique=True` would add an index or constraint a later
        op dropped (the state keeps those it made as indexes and constraints)."""
        cols = [_plain_copy(c.column) for c in self.columns]
        # an index of no column (mlflow's models declare one) is the table's all the same
        empty = [sa.Index(index.name, unique=index.unique) for index, _ in self.indexes
                 if not index_columns(index) and isinstance(index.name, str)]
        table = sa.Table(self.name, metadata, *cols, *empty, schema=self.schema, comment=self.comment)
        names = {c.name for c in cols}
        for constraint, _ in self.constraints:
            if isinstance(constraint, sa.PrimaryKeyConstraint):
                continue
            copy = _copy_constraint(constraint, names)
            if copy is not None:
                table.append_constraint(copy)
        for index, _ in self.indexes:
            elements = index_elements(index)
            built = [rebuilt_element(e, table) for e in elements]
            if all(b is not None for b in built):
                try:
                    sa.Index(index.name, *built, unique=index.unique, _table=table, **_index_kwargs(index))
                except (sa.exc.ArgumentError, TypeError):  # another dialect's option: the index without it
                    sa.Index(index.name, *built, unique=index.unique, _table=table)
        return table

    @classmethod
    def from_table(cls, table: sa.Table, origin: Origin | None = None,
                   column_origins: Mapping[str, Origin] | None = None, *, copy: bool = True) -> TableState:
        """The state of `table`, with private copies of its columns. `copy=False` shares
        them instead, but for those with foreign keys (a copy leaves out the ones the table's
        constraints own, which the state keeps as constraints): only for a table nobody
        changes afterwards (the throwaway one `CreateTableOp.to_table()` builds)."""
        column_origins = column_origins or {}
        columns = tuple(ColumnState(c._copy() if copy or c.foreign_keys else c, column_origins.get(c.name, origin))
                        for c in table.columns)
        constraints = tuple((c, origin) for c in table.constraints)
        indexes = tuple((i, origin) for i in table.indexes)
        return cls(table.name, table.schema, columns, constraints, indexes, table.comment, origin)

    def evolve(self, **changes: Any) -> TableState:
        """`dataclasses.replace`, without its per-call introspection (the replay's hot path)."""
        get = changes.get
        return TableState(get("name", self.name), get("schema", self.schema), get("columns", self.columns),
                          get("constraints", self.constraints), get("indexes", self.indexes),
                          get("comment", self.comment), get("origin", self.origin), get("info", self.info))


def _plain_copy(column: sa.Column) -> sa.Column:
    copy = column._copy()
    copy.index = copy.unique = None
    return copy


def index_columns(index: sa.Index | IndexRecord) -> tuple[str, ...]:
    """The column names an index is on (its expressions' text for a raw-SQL index)."""
    if isinstance(index, IndexRecord):
        return index.expressions
    names = []
    for expr in index.expressions:
        if isinstance(expr, sa.Column):
            names.append(expr.name)
        elif isinstance(expr, str):
            names.append(expr)
        elif hasattr(expr, "name") and isinstance(expr.name, str):
            names.append(expr.name)
        else:
            names.append(str(expr))
    return tuple(names)


class IndexExpression(sa.sql.expression.ColumnElement):
    """An index element that is an expression (`lower(name)`, `text("x DESC")`), kept as its
    SQL text and the one column SQLAlchemy files it under (an Index's `.columns` holds the
    first column of each expression; Alembic's SQLite comparison reads them): Alembic
    compares, skips and renders it as the expression the project wrote."""

    __visit_name__ = "index_expression"
    inherit_cache = False

    def __init__(self, sql: str, column: sa.ColumnElement | None = None) -> None:
        self.sql = sql
        self.column = column

    def get_children(self, **kw: Any) -> tuple:  # (what SQLAlchemy's traversal looks into)
        return (self.column,) if self.column is not None else ()


@compiles(IndexExpression)
def _compile_index_expression(element: IndexExpression, compiler: Any, **kw: Any) -> str:
    return element.sql


@dataclass(frozen=True)
class IndexElement:
    """One element of an index: a `column` with its sort `modifiers` (`desc`, `nulls_last`,
    innermost first), or an expression's `sql` text and the column SQLAlchemy files it `on`."""

    column: str | None
    modifiers: tuple[str, ...] = ()
    sql: str | None = None
    on: str | None = None


_MODIFIERS = {"desc_op": "desc", "asc_op": "asc", "nulls_first_op": "nulls_first", "nulls_last_op": "nulls_last",
              "nullsfirst_op": "nulls_first", "nullslast_op": "nulls_last"}


def index_elements(index: sa.Index | IndexRecord) -> tuple[IndexElement, ...]:
    """What an index is on, element by element (SQL text for what is not a column)."""
    if isinstance(index, IndexRecord):
        return tuple(IndexElement(c) for c in index.expressions)
    return tuple(_element(e) for e in index.expressions)


def _element(expr: Any) -> IndexElement:
    if isinstance(expr, str):
        return IndexElement(expr)
    modifiers: list[str] = []
    inner = expr
    while isinstance(inner, sa.sql.elements.UnaryExpression) and \
            getattr(inner.modifier, "__name__", None) in _MODIFIERS:
        modifiers.insert(0, _MODIFIERS[inner.modifier.__name__])  # type: ignore[union-attr]
        inner = inner.element
    if isinstance(inner, sa.sql.elements.ColumnClause) and not inner.is_literal and isinstance(inner.name, str):
        return IndexElement(inner.name, tuple(modifiers))
    if isinstance(expr, IndexExpression):
        on = getattr(expr.column, "name", None)
        return IndexElement(None, (), expr.sql, on if isinstance(on, str) else None)
    text = getattr(expr, "text", None)  # a TextClause's str, Alembic's _textual_index_element's TextClause
    text = getattr(text, "text", text)
    if isinstance(text, str):
        return IndexElement(None, (), text)
    try:
        sql = str(expr.compile(compile_kwargs={"literal_binds": True, "include_table": False}))
    except Exception:  # noqa: BLE001 - an element no compiler renders: its repr stands for it
        sql = repr(expr)
    found: list = []
    sa.sql.visitors.traverse(expr, {}, {"column": found.append})
    on = getattr(found[0], "name", None) if found else None
    return IndexElement(None, (), sql, on if isinstance(on, str) else None)


def rebuilt_element(element: IndexElement, table: sa.Table) -> Any:
    """The element over `table`'s columns (None: a column the table lacks)."""
    if element.column is not None:
        if element.column not in table.c:
            return None
        item: Any = table.c[element.column]
        for modifier in element.modifiers:
            item = getattr(item, modifier)()
        return item
    on = table.c[element.on] if element.on is not None and element.on in table.c else None
    return IndexExpression(element.sql or "", on)


_PLAIN_ELEMENT = re.compile(r'^\s*"?(\w+)"?(?:\s+(ASC|DESC))?(?:\s+NULLS\s+(FIRST|LAST))?\s*$', re.IGNORECASE)


def plain_element(element: IndexElement, columns: AbstractSet[str]) -> IndexElement:
    """An expression that is only a column and a sort order (`text("start_time DESC")`) as
    the column it is: what a database keeps and reflects."""
    if element.column is not None or element.sql is None:
        return element
    m = _PLAIN_ELEMENT.match(element.sql)
    if not m or m.group(1) not in columns:
        return element
    modifiers = ((m.group(2).lower(),) if m.group(2) else ()) + ((f"nulls_{m.group(3).lower()}",) if m.group(3) else ())
    return IndexElement(m.group(1), modifiers)


def _index_kwargs(index: sa.Index | IndexRecord) -> dict[str, Any]:
    if isinstance(index, IndexRecord):
        return index.kwargs
    return dict(index.dialect_kwargs)


def constraint_columns(constraint: sa.Constraint) -> tuple[str, ...]:
    try:
        cols = list(constraint.columns.keys()) if isinstance(constraint, ColumnCollectionConstraint) else []
        if cols:
            return tuple(cols)
    except Exception:  # noqa: BLE001, S110 - a constraint whose columns cannot be resolved: the pending names
        pass
    return tuple(getattr(constraint, "_pending_colargs", None) or ())


def _copy_constraint(constraint: sa.Constraint, names: set[str]) -> sa.Constraint | None:
    cols = constraint_columns(constraint)
    if any(c not in names for c in cols):
        return None
    if isinstance(constraint, sa.UniqueConstraint):
        return sa.UniqueConstraint(*cols, name=constraint.name)
    if isinstance(constraint, sa.ForeignKeyConstraint):
        return sa.ForeignKeyConstraint(
            list(cols), [e.target_fullname for e in constraint.elements], name=constraint.name,
            ondelete=constraint.ondelete, onupdate=constraint.onupdate)
    if isinstance(constraint, sa.CheckConstraint):
        return sa.CheckConstraint(constraint.sqltext, name=constraint.name)
    return None


OPAQUE_ANY = "any"  # an opaque call that may have changed anything in the table it touches
# marks in `hidden` of how a table is uncertain: wholly (its existence, anything in it), or
# partly (only the kinds of difference `table_hidden` spells for it)
WHOLLY, PARTLY = "uncertain:", "partly:"
ANY_INSIDE = "*"  # a table-scoped kind: any difference inside the table, not its existence


def table_hidden(kind: str, table: str) -> str:
    """A kind of difference ("drop_index", "drop_index:ix_a", ANY_INSIDE) that may be wrong in
    one table only."""
    return f"{kind}@{table}"


@dataclass(frozen=True, slots=True)
class SchemaState:
    """All tables at one revision: a mapping shared structurally between revisions."""

    tables: Mapping[str, TableState] = field(default_factory=lambda: EMPTY_TABLES)  # any mapping -> TableMap
    # tables whose shape we cannot know (raw DDL, an op under an undecidable `if`): never
    # reported as drift
    uncertain: AbstractSet[str] = NO_NAMES  # a Names (any set is converted)
    # anything at all may have happened (a revision the replay itself failed on)
    unknown: Sequence[Origin] = NO_ORIGINS  # an Origins (any sequence is converted)
    # op calls whose table could not be read statically: what they did is not known, every
    # table with a fully known history is still compared (said once, at each such call)
    opaque: Sequence[Origin] = NO_ORIGINS  # an Origins
    # the kinds of difference those calls may have made, in whichever table they touch
    # ("add_column", "drop_index"..., "add_column:body" when the call names its object;
    # OPAQUE_ANY when even that is unknown): none is reported anywhere, it may be theirs
    opaque_kinds: frozenset[str] = frozenset()
    # how each uncertain table is uncertain (WHOLLY / PARTLY marks) and, for those partly so,
    # the table-scoped kinds of difference not to report (`table_hidden`): a Names, shared
    # between states like `uncertain` (one table made uncertain at a time stays linear)
    hidden: AbstractSet[str] = NO_NAMES

    def __post_init__(self) -> None:
        if type(self.tables) is not TableMap:
            object.__setattr__(self, "tables", TableMap(self.tables))
        if type(self.unknown) is not Origins:
            object.__setattr__(self, "unknown", Origins(self.unknown))
        if type(self.uncertain) is not Names:
            object.__setattr__(self, "uncertain", Names(self.uncertain))
        if type(self.opaque) is not Origins:
            object.__setattr__(self, "opaque", Origins(self.opaque))
        if type(self.hidden) is not Names:
            object.__setattr__(self, "hidden", Names(self.hidden))

    # the fields as __post_init__ made them (the persistent structures of pmap)
    @property
    def table_map(self) -> TableMap:
        tables = self.tables
        assert isinstance(tables, TableMap)  # (made so by __post_init__)
        return tables

    @property
    def uncertain_names(self) -> Names:
        names = self.uncertain
        assert isinstance(names, Names)  # (made so by __post_init__)
        return names

    @staticmethod
    def _origins(origins: Sequence[Origin]) -> Origins:
        assert isinstance(origins, Origins)  # (made so by __post_init__)
        return origins

    def table(self, name: str, schema: str | None = None) -> TableState | None:
        return self.tables.get(table_key(name, schema))

    def with_table(self, table: TableState) -> SchemaState:
        return SchemaState(self.table_map.set(table.key, table), self.uncertain, self.unknown, self.opaque,
                           self.opaque_kinds, self.hidden)

    def without_table(self, key: str) -> SchemaState:
        return SchemaState(self.table_map.delete(key), self.uncertain, self.unknown, self.opaque, self.opaque_kinds,
                           self.hidden)

    def with_uncertain(self, names: Iterable[str], hides: Iterable[str] | None = None) -> SchemaState:
        """The tables `names` are not known for sure. With `hides`, each is known to exist and
        only these kinds of difference in it may be wrong (`table_hidden` names them): the
        comparison with the models compares the rest of the table, every other check still
        treats it as uncertain."""
        names = tuple(n for n in names if n)
        marks = frozenset(f"{PARTLY}{n}" for n in names) | frozenset(hides) if hides is not None \
            else frozenset(f"{WHOLLY}{n}" for n in names)
        hidden = self.hidden
        assert isinstance(hidden, Names)  # (made so by __post_init__)
        uncertain, hidden = self.uncertain_names.union(names), hidden.union(marks)
        if uncertain is self.uncertain and hidden is self.hidden:
            return self  # nothing new: share the state
        return SchemaState(self.tables, uncertain, self.unknown, self.opaque, self.opaque_kinds, hidden)

    def partly_uncertain(self, name: str) -> bool:
        """Is `name` uncertain only in the kinds of difference its `hides` named (and sure to
        exist)?"""
        return f"{PARTLY}{name}" in self.hidden and f"{WHOLLY}{name}" not in self.hidden

    def with_unknown(self, origin: Origin) -> SchemaState:
        return SchemaState(self.tables, self.uncertain, self._origins(self.unknown) + (origin,), self.opaque,
                           self.opaque_kinds, self.hidden)

    def with_unsure(self, kinds: Iterable[str]) -> SchemaState:
        """Differences of these kinds (`add_index:ix_name`) may or may not be there: an
        object an op that may not run made or dropped (its table stays compared)."""
        kinds = frozenset(kinds)
        if kinds <= self.opaque_kinds:
            return self
        return SchemaState(self.tables, self.uncertain, self.unknown, self.opaque, self.opaque_kinds | kinds,
                           self.hidden)

    def with_opaque(self, origin: Origin, kinds: Iterable[str] = (OPAQUE_ANY,)) -> SchemaState:
        return SchemaState(self.tables, self.uncertain, self.unknown, self._origins(self.opaque) + (origin,),
                           self.opaque_kinds | frozenset(kinds), self.hidden)


def merge_states(states: Iterable[SchemaState], base: SchemaState | None = None) -> SchemaState:
    """The schema where several branches meet: the union of their tables. With `base`, the
    state where they forked, what a branch dropped since then stays dropped (a three-way
    merge); without it, whatever either branch has is kept."""
    states = list(states)
    if not states:
        return SchemaState()
    if len(states) == 1:
        return states[0]
    # the first branch's tables, plus what each other branch has that differs (branches
    # share the tables nobody touched since they forked: only the touched ones are visited)
    tables = states[0].table_map
    before = base.tables if base is not None else None
    for state in states[1:]:
        theirs = state.table_map
        # (pmap's annotation `-> set` names its own method there: the keys, typed here)
        for key in cast("set[str]", tables.diff(theirs)):
            table, mine = theirs.get(key), tables.get(key)
            old = before.get(key) if before is not None else None
            if before is not None and old is not None and (mine is old or table is old):
                # one side did not touch it since the fork: the other side's version stands
                changed = table if mine is old else mine
                tables = tables.set(key, changed) if changed is not None else tables.delete(key)
                continue
            if table is None:
                continue  # only in the tables so far: kept
            tables = tables.set(key, table if mine is None else _union(mine, table, old))
    uncertain = states[0].uncertain_names
    for state in states[1:]:
        if state.uncertain is not uncertain:
            uncertain = uncertain.union(state.uncertain)
    # every branch's unknown / opaque origins, in order, each once (the branches share those
    # from before they forked: concatenating them would double those at every merge)
    return SchemaState(tables, uncertain, _merged_origins([s.unknown for s in states]),
                       _merged_origins([s.opaque for s in states]),
                       frozenset().union(*(s.opaque_kinds for s in states)), _merged_names([s.hidden for s in states]))


def _merged_names(branches: list) -> Names:
    merged = branches[0]
    for names in branches[1:]:
        if names is not merged:
            merged = merged.union(names)
    return merged


def _merged_origins(branches: list) -> Origins:
    merged = branches[0]
    seen = None
    for origins in branches[1:]:
        if origins is merged or not origins:
            continue
        seen = set(merged) if seen is None else seen
        for origin in origins:
            if origin not in seen:
                seen.add(origin)
                merged = merged + (origin,)
    return merged


def _union(a: TableState, b: TableState, base: TableState | None = None) -> TableState:
    """Two branches changed the same table: keep what either added (and, knowing the table
    at the fork, drop what either dropped)."""
    have = {c.name for c in a.columns}
    index_names = {i.name for i, _ in a.indexes}
    constraint_keys = {_constraint_key(c) for c, _ in a.constraints}
    merged = replace(
        a,
        columns=a.columns + tuple(c for c in b.columns if c.name not in have),
        indexes=a.indexes + tuple((i, o) for i, o in b.indexes if i.name not in index_names),
        constraints=a.constraints + tuple((c, o) for c, o in b.constraints if _constraint_key(c) not in constraint_keys),
    )
    if base is None:
        return merged
    gone_columns = {c.name for c in base.columns} - ({c.name for c in a.columns} & {c.name for c in b.columns})
    gone_indexes = {i.name for i, _ in base.indexes} - (index_names & {i.name for i, _ in b.indexes})
    if not gone_columns and not gone_indexes:
        return merged
    return replace(merged, columns=tuple(c for c in merged.columns if c.name not in gone_columns),
                   indexes=tuple((i, o) for i, o in merged.indexes if i.name not in gone_indexes))


def _constraint_key(constraint: sa.Constraint) -> tuple:
    return (type(constraint).__name__, constraint.name, constraint_columns(constraint))


def add_constraint_op(constraint: sa.Constraint) -> alembic_ops.AddConstraintOp:
    """`AddConstraintOp.from_constraint`, also for a foreign key whose referred table is not in
    the constraint's MetaData (a table rebuilt alone from the history, the few tables a D002
    comparison looks at) or whose referred column a later revision dropped (a broken
    history): Alembic resolves the referred column object there and raises, so such a key
    is described from its own "table.column" spec instead."""
    try:
        return alembic_ops.AddConstraintOp.from_constraint(constraint)
    except sa.exc.NoReferenceError:  # no such table, or no such column in it
        if not isinstance(constraint, sa.ForeignKeyConstraint):
            raise
    specs = [element.target_fullname.rpartition(".") for element in constraint.elements]
    referent_schema, _, referent_table = specs[0][0].rpartition(".")
    kw = {key: getattr(constraint, key) for key in ("onupdate", "ondelete", "initially", "deferrable", "match",
                                                    "use_alter") if getattr(constraint, key)}
    return alembic_ops.CreateForeignKeyOp(
        constraint.name, constraint.table.name, referent_table, list(constraint.column_keys),
        [column for _, _, column in specs], source_schema=constraint.table.schema,
        referent_schema=referent_schema or None, **kw, **constraint.dialect_kwargs)


def drop_constraint_op(constraint: sa.Constraint) -> alembic_ops.DropConstraintOp:
    """`DropConstraintOp.from_constraint`, with `add_constraint_op` as its reverse."""
    try:
        return alembic_ops.DropConstraintOp.from_constraint(constraint)
    except sa.exc.NoReferenceError:
        if not isinstance(constraint, sa.ForeignKeyConstraint):
            raise
    return alembic_api.drop_constraint(constraint.name, constraint.table.name, "foreignkey", constraint.table.schema,
                                       add_constraint_op(constraint))


def op_table(op: Any) -> tuple[str | None, str | None]:
    """(table name, schema) an op works on; `create_foreign_key` calls them source_table and
    source_schema, every other op table_name and schema."""
    name = getattr(op, "table_name", None)
    if name is not None:
        return name, getattr(op, "schema", None)
    name = getattr(op, "source_table", None)
    return name, (getattr(op, "kw", None) or {}).get("source_schema")


def table_key(name: str, schema: str | None) -> str:
    """How a table is named in a schema state's keys and in the checks' table sets:
    `schema.name`, or `name`."""
    return f"{schema}.{name}" if schema else name
