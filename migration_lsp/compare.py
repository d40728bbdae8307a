"""Stage `compare`: the schema at head vs the models -> the ops autogenerate would emit.

Only what Alembic's autogenerate calls a difference is one: types are compared with the
dialect's own Alembic implementation (`DefaultImpl.compare_type`, so `Integer` and
`INTEGER` agree), server defaults only when env.py turns `compare_server_default` on,
`alembic_version` and excluded tables are skipped, and anything the replay could not
follow (opaque types, raw DDL, helpers) is never reported. Each difference carries the
Alembic op that fixes it, so "Generate revision" renders them with Alembic's renderer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from alembic.ddl.impl import DefaultImpl
from alembic.operations import ops as alembic_ops

from .evaluate import is_opaque_type
from .schema import Origin, SchemaState, TableState, add_constraint_op, constraint_columns, drop_constraint_op

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


def options_from_env_py(text: str, dialect: str | None, exclude: tuple[str, ...]) -> CompareOptions:
    """env.py's context.configure(compare_type=..., compare_server_default=...)."""
    def flag(name: str, default: bool) -> bool:
        m = re.search(rf"\b{name}\s*=\s*(True|False)\b", text)
        return default if not m else m.group(1) == "True"

    return CompareOptions(dialect, flag("compare_type", True), flag("compare_server_default", False), exclude,
                          flag("render_as_batch", False))


# SQLAlchemy's own dialects: loading one of these names never looks at entry points (a
# dialect name comes from the workspace's settings; an entry point of an installed project
# would run its code, also under --no-import)
_BUILTIN_DIALECTS = frozenset(("mssql", "mysql", "mariadb", "oracle", "postgresql", "sqlite"))


@lru_cache(maxsize=16)
def _impl(dialect_name: str | None) -> DefaultImpl:
    dialect: Any = None
    if dialect_name in _BUILTIN_DIALECTS:
        try:
            from sqlalchemy.dialects import registry

            dialect = registry.load(dialect_name)()
        except Exception:
            dialect = None
    if dialect is None:
        from sqlalchemy.engine.default import DefaultDialect

        dialect = DefaultDialect()
    try:
        cls = DefaultImpl.get_by_dialect(dialect)
    except KeyError:
        cls = DefaultImpl
    return cls(dialect, None, True, None, None, {})


def _dialect_of(type_: Any, default: str | None) -> str | None:
    if default:
        return default
    m = re.match(r"sqlalchemy\.dialects\.(\w+)", type(type_).__module__)
    return m.group(1) if m else None


def types_differ(schema_type: Any, model_type: Any, dialect: str | None) -> bool:
    if is_opaque_type(schema_type) or is_opaque_type(model_type):
        return False
    name = _dialect_of(model_type, None) or _dialect_of(schema_type, dialect)
    try:
        return _impl(dialect or name).compare_type(sa.Column("x", schema_type), sa.Column("x", model_type))
    except Exception:  # a type the dialect cannot compile: compare what we can see
        return type(schema_type).__name__.upper() != type(model_type).__name__.upper()


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
            except Exception:
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


def _index_key(index: sa.Index) -> tuple:
    return tuple(getattr(e, "name", str(e)) for e in index.expressions)


def _sorted(metadata: sa.MetaData) -> list[sa.Table]:
    """Tables in foreign-key order when it can be had (a key may name a table we lack)."""
    try:
        return list(metadata.sorted_tables)
    except Exception:
        return list(metadata.tables.values())


def compare(schema: SchemaState, models: dict[str, TableState], options: CompareOptions) -> list[Difference]:
    out: list[Difference] = []
    excluded = IGNORED_TABLES | set(options.exclude_tables)
    uncertain = set(schema.uncertain)
    schema_md, model_md = sa.MetaData(), sa.MetaData()
    schema_tables = {k: (t, t.to_table(schema_md)) for k, t in schema.tables.items()}
    model_tables = {k: (t, t.to_table(model_md)) for k, t in models.items()}

    def skip(state: TableState) -> bool:
        return state.name in excluded or state.name in uncertain or state.key in uncertain

    for table in _sorted(model_md):
        key = f"{table.schema}.{table.name}" if table.schema else table.name
        state = model_tables[key][0]
        if skip(state) or key in schema_tables:
            continue
        if schema.unknown:
            continue  # a helper we cannot follow may have created it
        out.append(Difference("missing", f"table {key}", alembic_ops.CreateTableOp.from_table(table),
                              state.origin, None))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(Difference("missing", f"index {index.name} on {key}",
                                  alembic_ops.CreateIndexOp.from_index(index), state.origin, None, "with table"))
    for table in reversed(_sorted(schema_md)):
        key = f"{table.schema}.{table.name}" if table.schema else table.name
        state = schema_tables[key][0]
        if skip(state) or key in model_tables or schema.unknown:
            continue
        out.append(Difference("extra", f"table {key}", alembic_ops.DropTableOp.from_table(table), None, state.origin))

    for key, (model_state, model_table) in model_tables.items():
        if key not in schema_tables or skip(model_state):
            continue
        schema_state, schema_table = schema_tables[key]
        out.extend(_compare_table(schema_state, schema_table, model_state, model_table, options,
                                  bool(schema.unknown)))
    return out


def _compare_table(
    s_state: TableState, s_table: sa.Table, m_state: TableState, m_table: sa.Table,
    options: CompareOptions, unknown: bool,
) -> list[Difference]:
    out: list[Difference] = []
    name = s_table.fullname
    m_origin = {c.name: c.origin for c in m_state.columns}
    s_origin = {c.name: c.origin for c in s_state.columns}
    if not unknown:
        for col in m_table.columns:
            if col.name not in s_table.c:
                out.append(Difference(
                    "missing", f"column {name}.{col.name}",
                    alembic_ops.AddColumnOp.from_column_and_tablename(s_table.schema, s_table.name, col._copy()),
                    m_origin.get(col.name) or m_state.origin, None))
        for col in s_table.columns:
            if col.name not in m_table.c:
                out.append(Difference(
                    "extra", f"column {name}.{col.name}",
                    alembic_ops.DropColumnOp.from_column_and_tablename(s_table.schema, s_table.name, col._copy()),
                    m_state.origin, s_origin.get(col.name) or s_state.origin))
    for col in m_table.columns:
        if col.name not in s_table.c:
            continue
        old = s_table.c[col.name]
        changes: dict[str, Any] = {}
        details = []
        if options.compare_type and types_differ(old.type, col.type, options.dialect):
            changes["modify_type"] = col.type
            details.append(f"type {_type_text(old.type)} in the migrations, {_type_text(col.type)} in the model")
        if bool(old.nullable) != bool(col.nullable) and not col.primary_key:
            changes["modify_nullable"] = col.nullable
            details.append("nullable" if col.nullable else "NOT NULL" + " in the model")
            details[-1] = f"{'nullable' if col.nullable else 'NOT NULL'} in the model, " \
                          f"{'nullable' if old.nullable else 'NOT NULL'} in the migrations"
        old_default, new_default = _default_text(old, options.dialect), _default_text(col, options.dialect)
        if options.compare_server_default and old_default != new_default:
            changes["modify_server_default"] = col.server_default.arg if col.server_default is not None else None
            details.append(f"server default {new_default!r} in the model, {old_default!r} in the migrations")
        if changes:
            op = alembic_ops.AlterColumnOp(
                s_table.name, col.name, schema=s_table.schema,
                existing_type=old.type, existing_nullable=old.nullable,
                existing_server_default=old.server_default.arg if old.server_default is not None else False,
                **changes)
            out.append(Difference("changed", f"column {name}.{col.name}", op,
                                  m_origin.get(col.name) or m_state.origin, s_origin.get(col.name), "; ".join(details)))
    if unknown:
        return out
    out.extend(_compare_indexes(s_state, s_table, m_state, m_table))
    out.extend(_compare_constraints(s_state, s_table, m_state, m_table))
    return out


def _type_text(type_: Any) -> str:
    try:
        return repr(type_)
    except Exception:
        return type(type_).__name__


def _declared_at(m_state: TableState, name: Any, columns: tuple[str, ...]) -> Origin | None:
    """Where the models declare an index or constraint: `__table_args__` when it names it,
    else the one column it is on (`index=True`, `ForeignKey(...)`), else the class line."""
    table_args = m_state.info.get("table_args")
    mentioned = set(m_state.info.get("table_args_names", ()))
    if table_args and ((isinstance(name, str) and name in mentioned) or (columns and set(columns) <= mentioned)):
        return table_args
    if len(columns) == 1:
        column = m_state.column(columns[0])
        if column is not None and column.origin is not None and column.origin != m_state.origin:
            return column.origin
    return table_args or m_state.origin


def _compare_indexes(s_state: TableState, s_table: sa.Table, m_state: TableState, m_table: sa.Table) -> list[Difference]:
    out = []
    origin_of = {i.name: o for i, o in s_state.indexes}
    s_by = {(i.name or _index_key(i)): i for i in s_table.indexes}
    m_by = {(i.name or _index_key(i)): i for i in m_table.indexes}
    s_sigs = {(_index_key(i), bool(i.unique)) for i in s_table.indexes}
    s_unique_cols = {constraint_columns(c) for c in s_table.constraints if isinstance(c, sa.UniqueConstraint)}
    m_unique_cols = {constraint_columns(c) for c in m_table.constraints if isinstance(c, sa.UniqueConstraint)}
    for key, index in m_by.items():
        if key in s_by or (_index_key(index), bool(index.unique)) in s_sigs:
            continue
        if index.unique and _index_key(index) in s_unique_cols:
            continue  # a unique index and a unique constraint are the same thing to most databases
        out.append(Difference("missing", f"index {index.name} on {s_table.fullname}",
                              alembic_ops.CreateIndexOp.from_index(index),
                              _declared_at(m_state, index.name, _index_key(index)), None))
    m_sigs = {(_index_key(i), bool(i.unique)) for i in m_table.indexes}
    for key, index in s_by.items():
        if key in m_by or (_index_key(index), bool(index.unique)) in m_sigs:
            continue
        if index.unique and _index_key(index) in m_unique_cols:
            continue
        out.append(Difference("extra", f"index {index.name} on {s_table.fullname}",
                              alembic_ops.DropIndexOp.from_index(index), m_state.origin, origin_of.get(index.name)))
    return out


def _constraint_sig(c: sa.Constraint) -> tuple | None:
    if isinstance(c, sa.UniqueConstraint):
        return ("unique", tuple(sorted(constraint_columns(c))))
    if isinstance(c, sa.ForeignKeyConstraint):
        return ("fk", tuple(constraint_columns(c)), tuple(e.target_fullname for e in c.elements))
    return None


def _compare_constraints(s_state: TableState, s_table: sa.Table, m_state: TableState, m_table: sa.Table) -> list[Difference]:
    out = []
    origin_of = {_constraint_sig(c): o for c, o in s_state.constraints}
    s_sigs = {_constraint_sig(c): c for c in s_table.constraints if _constraint_sig(c)}
    m_sigs = {_constraint_sig(c): c for c in m_table.constraints if _constraint_sig(c)}
    s_unique_index = {("unique", tuple(sorted(_index_key(i)))) for i in s_table.indexes if i.unique}
    m_unique_index = {("unique", tuple(sorted(_index_key(i)))) for i in m_table.indexes if i.unique}
    for sig, c in m_sigs.items():
        if sig in s_sigs or sig in s_unique_index:
            continue
        kind = "unique constraint" if sig[0] == "unique" else "foreign key"
        out.append(Difference("missing", f"{kind} on {s_table.fullname}({', '.join(constraint_columns(c))})",
                              add_constraint_op(c),
                              _declared_at(m_state, c.name, constraint_columns(c)), None))
    for sig, c in s_sigs.items():
        if sig in m_sigs or sig in m_unique_index:
            continue
        kind = "unique constraint" if sig[0] == "unique" else "foreign key"
        if c.name is None:
            continue  # an unnamed constraint cannot be dropped by name: autogenerate skips it too
        out.append(Difference("extra", f"{kind} on {s_table.fullname}({', '.join(constraint_columns(c))})",
                              drop_constraint_op(c), m_state.origin, origin_of.get(sig)))
    return out
