"""Raw SQL in migrations (`op.execute("...")`): which tables a DDL statement may touch.

Raw SQL can be any length (a 100 KB op.execute): it is read in linear time. Patterns run
on the whole text only when their matches have a bounded length (a bounded number of
steps at each position); what follows a keyword is read from a bounded window after it,
in text whose whitespace runs are squeezed to one space. (`^\\s*(CREATE|...)` took minutes
on 40,000 newlines: each line start scanned all the whitespace after it.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.operations import ops as alembic_ops

SQL_WINDOW = 512
_DDL_WORD = re.compile(r"(?:CREATE|ALTER|DROP|RENAME|COMMENT)\b", re.IGNORECASE)
_DDL_KEYWORD = re.compile(r"\b(?:(INDEX)|TABLE|INTO|UPDATE)", re.IGNORECASE)
_DDL_NAME = re.compile(r"\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)", re.IGNORECASE)
_DDL_INDEX_NAME = re.compile(r"\s+\S+\s+ON\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)", re.IGNORECASE)


def squeeze_sql(sql: str) -> str:
    """The SQL with every run of whitespace one space (and none at the ends)."""
    return " ".join(sql.split())


def is_ddl(sql: str) -> bool:
    """Does a line of the SQL start with CREATE / ALTER / DROP / RENAME / COMMENT?"""
    return any(_DDL_WORD.match(line.lstrip()[:8]) for line in sql.split("\n"))


def find_after_keywords(sql: str, keyword: re.Pattern, rest: Callable[[re.Match], re.Pattern]) -> list[str]:
    """`findall` of keyword + rest(keyword's match) on the squeezed SQL (group 1 of `rest`),
    with `rest` matched in a window of SQL_WINDOW characters after each keyword."""
    text = squeeze_sql(sql)
    out = []
    pos = 0
    while (m := keyword.search(text, pos)) is not None:
        found = rest(m).match(text, m.end(), m.end() + SQL_WINDOW)
        if found is None:
            pos = m.start() + 1
        else:
            out.append(found.group(1))
            pos = found.end()
    return out


def ddl_tables(sql: str) -> list[str]:
    """Names after TABLE / INDEX x ON / INTO / UPDATE (tables raw DDL may change)."""
    return find_after_keywords(sql, _DDL_KEYWORD, lambda m: _DDL_INDEX_NAME if m.group(1) else _DDL_NAME)


# ------------------------------------------------------------------ DDL read with a parser
#
# `op.execute("CREATE TABLE ...")` is read with sqlglot, a real SQL parser: pure Python (the
# server stays pure Python and bundles into the editor extensions), one parser for every
# dialect Alembic projects use (SQLite, PostgreSQL, MySQL, SQL Server...). pglast, already
# used by the PostgreSQL lock model, is PostgreSQL's own parser: exact for PostgreSQL, but it
# refuses SQLite's and MySQL's DDL and is an optional C extension. The statements become
# Alembic ops (CREATE/DROP TABLE, ADD/DROP/RENAME COLUMN, RENAME TABLE, CREATE/DROP INDEX);
# other DDL makes the tables it names uncertain; DML changes no schema. Without sqlglot,
# or on SQL it cannot parse, the regular expressions above decide (tables named: uncertain).

PARSE_LIMIT = 20_000  # characters: longer SQL (a data dump, a generated script) goes the regex way
SQLGLOT_DIALECTS = {"postgresql": "postgres", "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mysql",
                    "mssql": "tsql", "oracle": "oracle"}


@dataclass(frozen=True)
class DDLEffect:
    """What one statement does: an Alembic op, or tables that become uncertain, or an index
    dropped by name alone (its table is found in the schema)."""

    op: alembic_ops.MigrateOperation | None = None
    uncertain: tuple[str, ...] = ()
    dropped_index: str | None = None
    renamed_index: tuple[str, str] | None = None  # `ALTER INDEX old RENAME TO new` (PostgreSQL)
    # an index made on expressions or with a WHERE (not followed): its table, the one in
    # `uncertain`, is uncertain in this index only
    unfollowed_index: str | None = None


def ddl_effects(sql: str, dialect: str | None = None) -> list[DDLEffect]:
    """The schema effects of raw SQL, statement by statement (DML: none)."""
    if not is_ddl(sql):
        return []  # (a cheap test first: most raw SQL in migrations moves data)
    statements = _parse(sql, dialect) if len(sql) <= PARSE_LIMIT else None
    if statements is None:
        return [DDLEffect(uncertain=tuple(ddl_tables(sql)))]
    out = []
    for statement in statements:
        if statement is None:
            continue
        try:
            effect = _effect(statement, dialect)
        except Exception:  # noqa: BLE001 - a shape we did not foresee: its tables are uncertain, never a crash
            effect = DDLEffect(uncertain=_tables_named(statement))
        if effect is not None:
            out.append(effect)
    return out


def _parse(sql: str, dialect: str | None) -> list | None:
    try:
        import sqlglot
    except ImportError:
        return None
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its "falling back to Command" remarks
    reads = [SQLGLOT_DIALECTS.get(dialect or "")] if dialect in SQLGLOT_DIALECTS else []
    for read in [*reads, None, "postgres", "mysql", "sqlite"]:
        try:
            return sqlglot.parse(sql, read=read)
        except Exception:  # noqa: BLE001, S112 - ParseError, TokenError, a recursion limit on absurd input
            continue
    return None


def _name(node: Any) -> str | None:
    return node.name if node is not None and getattr(node, "name", None) else None


def _table(node: Any) -> tuple[str, str | None]:
    """(name, schema) of an exp.Table."""
    return node.name, (node.args.get("db").name if node.args.get("db") is not None else None)


def _tables_named(statement: Any) -> tuple[str, ...]:
    from sqlglot import exp
    return tuple(dict.fromkeys(t.name for t in statement.find_all(exp.Table) if t.name))


def _effect(statement: Any, dialect: str | None) -> DDLEffect | None:
    from sqlglot import exp
    if isinstance(statement, (exp.Select, exp.Insert, exp.Update, exp.Delete, exp.Merge)):
        return None  # data
    if isinstance(statement, exp.Command):  # what sqlglot does not model: the regexes decide
        text = statement.sql()
        return DDLEffect(uncertain=tuple(ddl_tables(text))) if is_ddl(text) else None
    if isinstance(statement, exp.Create):
        kind = (statement.args.get("kind") or "").upper()
        if kind == "TABLE":
            return _create_table(statement, dialect)
        if kind == "INDEX":
            return _create_index(statement, dialect)
        return None  # views, functions, triggers, types, sequences, extensions: not tables
    if isinstance(statement, exp.Drop):
        kind = (statement.args.get("kind") or "").upper()
        tables = statement.args.get("tables") or []
        if kind == "TABLE" and len(tables) == 1:
            name, schema = _table(tables[0])
            return DDLEffect(op=alembic_ops.DropTableOp(name, schema=schema,
                                                        if_exists=bool(statement.args.get("exists")) or None))
        if kind == "INDEX" and len(tables) == 1:
            return DDLEffect(dropped_index=tables[0].name)
        if kind == "TABLE":
            return DDLEffect(uncertain=tuple(t.name for t in tables))
        return None
    if isinstance(statement, exp.Alter) and (statement.args.get("kind") or "").upper() == "TABLE":
        return _alter_table(statement, dialect)
    if isinstance(statement, exp.Alter) and (statement.args.get("kind") or "").upper() == "INDEX":
        actions = statement.args.get("actions") or []
        if len(actions) == 1 and isinstance(actions[0], exp.AlterRename) and statement.this is not None:
            return DDLEffect(renamed_index=(statement.this.name, actions[0].this.name))
        return None  # SET TABLESPACE, ATTACH PARTITION, storage parameters: no schema Alembic compares
    return DDLEffect(uncertain=_tables_named(statement))


def _create_table(statement: Any, dialect: str | None) -> DDLEffect:
    from sqlglot import exp
    schema_node = statement.this
    if not isinstance(schema_node, exp.Schema) or statement.args.get("expression") is not None:
        return DDLEffect(uncertain=_tables_named(statement))  # CREATE TABLE ... AS SELECT
    name, schema = _table(schema_node.this)
    items: list = []
    primary: list[str] = []
    for element in schema_node.expressions:
        if isinstance(element, exp.ColumnDef):
            column, is_primary = _column(element, dialect)
            items.append(column)
            if is_primary:
                primary.append(column.name)
        elif isinstance(element, exp.PrimaryKey):
            primary.extend(e.name for e in element.expressions)
        elif isinstance(element, exp.Constraint) and element.expressions \
                and isinstance(element.expressions[0], exp.UniqueColumnConstraint):
            columns = [e.name for e in element.expressions[0].this.expressions]
            items.append(sa.UniqueConstraint(*columns, name=_name(element.this)))
        elif isinstance(element, exp.ForeignKey):
            items.append(_foreign_key(element, None))
        elif isinstance(element, exp.Constraint) and element.expressions \
                and isinstance(element.expressions[0], exp.ForeignKey):
            items.append(_foreign_key(element.expressions[0], _name(element.this)))
        # CHECK and other table constraints: Alembic does not compare them
    for item in items:
        if isinstance(item, sa.Column) and item.name in primary:
            # SQLite keeps a primary key column without NOT NULL nullable (its reflection says so)
            item.primary_key, item.nullable = True, item.nullable if dialect == "sqlite" else False
    # IF NOT EXISTS: made when the replayed schema lacks it, else the old one stays (the replay decides)
    return DDLEffect(op=alembic_ops.CreateTableOp(name, items, schema=schema,
                                                  if_not_exists=bool(statement.args.get("exists")) or None))


def _foreign_key(node: Any, name: str | None) -> sa.ForeignKeyConstraint:
    reference = node.args["reference"].this
    target, target_schema = _table(reference.this)
    prefix = f"{target_schema}.{target}" if target_schema else target
    return sa.ForeignKeyConstraint([e.name for e in node.expressions],
                                   [f"{prefix}.{e.name}" for e in reference.expressions], name=name)


def _column(node: Any, dialect: str | None = None) -> tuple[sa.Column, bool]:
    from sqlglot import exp
    nullable, primary, default = True, False, None
    foreign = []
    for constraint in node.constraints:
        kind = constraint.args.get("kind")
        if isinstance(kind, exp.NotNullColumnConstraint):
            nullable = bool(kind.args.get("allow_null"))
        elif isinstance(kind, exp.PrimaryKeyColumnConstraint):
            primary = True
        elif isinstance(kind, exp.DefaultColumnConstraint):
            default = kind.this.sql()
        elif isinstance(kind, exp.Reference):
            target, target_schema = _table(kind.this.this)
            columns = kind.this.expressions
            if columns:
                prefix = f"{target_schema}.{target}" if target_schema else target
                foreign.append(sa.ForeignKey(f"{prefix}.{columns[0].name}"))
    if primary and dialect != "sqlite":
        nullable = False
    column = sa.Column(node.name, sql_type(node.args.get("kind")), *foreign, nullable=nullable,
                       primary_key=primary,
                       server_default=sa.text(default) if default is not None else None)
    return column, primary


def _create_index(statement: Any, dialect: str | None) -> DDLEffect:
    """CREATE INDEX as the create_index op it amounts to: a column, a column with a sort order
    (`sa.column(c).desc()`), an expression (`sa.text(...)`, as the SQL has it); a partial
    index's WHERE and PostgreSQL's USING as the dialect's options (Alembic does not compare
    them, they are kept for what an op renders)."""
    from sqlglot import exp
    index = statement.this
    table_node = index.args.get("table")
    params = index.args.get("params")
    if table_node is None or params is None:
        return DDLEffect(uncertain=_tables_named(statement))
    name, schema = _table(table_node)
    read = SQLGLOT_DIALECTS.get(dialect or "")
    columns: list[Any] = []
    for ordered in params.args.get("columns") or []:
        element = ordered.this if isinstance(ordered, exp.Ordered) else ordered
        if isinstance(element, exp.Collate) and isinstance(element.this, exp.Column):
            element = element.this  # `title COLLATE NOCASE`: the column, as both dialects reflect it
        desc = isinstance(ordered, exp.Ordered) and bool(ordered.args.get("desc"))
        if isinstance(element, exp.Column) and not element.table:
            columns.append(sa.column(element.name).desc() if desc else element.name)
        else:
            columns.append(sa.text(element.sql(dialect=read) + (" DESC" if desc else "")))
    if not columns or not index.name:
        return DDLEffect(uncertain=(name,))
    options: dict[str, Any] = {}
    where = params.args.get("where")
    if where is not None and dialect in ("sqlite", "postgresql"):
        options[f"{dialect}_where"] = sa.text((where.this if isinstance(where, exp.Where) else where).sql(dialect=read))
    using = params.args.get("using")
    if using is not None and dialect == "postgresql":
        options["postgresql_using"] = using.name if hasattr(using, "name") and using.name else str(using)
    return DDLEffect(op=alembic_ops.CreateIndexOp(index.name, name, columns, schema=schema,
                                                  unique=bool(statement.args.get("unique")),
                                                  if_not_exists=bool(statement.args.get("exists")) or None,
                                                  **options))


def _alter_table(statement: Any, dialect: str | None) -> DDLEffect:
    from sqlglot import exp
    name, schema = _table(statement.this)
    actions = statement.args.get("actions") or []
    if len(actions) != 1:
        return DDLEffect(uncertain=(name,))
    action = actions[0]
    if isinstance(action, exp.ColumnDef):
        column, _ = _column(action, dialect)
        return DDLEffect(op=alembic_ops.AddColumnOp(name, column, schema=schema))
    if isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN" \
            and len(action.args.get("tables") or []) == 1:
        return DDLEffect(op=alembic_ops.DropColumnOp(name, action.args["tables"][0].name, schema=schema))
    if isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "CONSTRAINT" \
            and len(action.args.get("tables") or []) == 1:  # (IF EXISTS: the replay drops it if the table has it)
        return DDLEffect(op=alembic_ops.DropConstraintOp(action.args["tables"][0].name, name, schema=schema))
    if isinstance(action, exp.AlterRename):
        return DDLEffect(op=alembic_ops.RenameTableOp(name, action.this.name, schema=schema))
    if isinstance(action, exp.RenameColumn):
        return DDLEffect(op=alembic_ops.AlterColumnOp(name, action.this.name, schema=schema,
                                                      modify_name=action.args["to"].name))
    return DDLEffect(uncertain=(name,))  # types, defaults, constraints...: the table is uncertain


_SQL_TYPES: dict[str, Callable[[list[int]], Any]] = {
    "INT": lambda a: sa.INTEGER(), "BIGINT": lambda a: sa.BIGINT(), "SMALLINT": lambda a: sa.SMALLINT(),
    "TINYINT": lambda a: sa.SMALLINT(), "VARCHAR": lambda a: sa.VARCHAR(_nth(a, 0)), "NVARCHAR": lambda a: sa.NVARCHAR(_nth(a, 0)),
    "CHAR": lambda a: sa.CHAR(_nth(a, 0)), "NCHAR": lambda a: sa.NCHAR(_nth(a, 0)), "TEXT": lambda a: sa.TEXT(),
    "BOOLEAN": lambda a: sa.BOOLEAN(), "FLOAT": lambda a: sa.FLOAT(), "DOUBLE": lambda a: sa.DOUBLE(),
    "DECIMAL": lambda a: sa.NUMERIC(_nth(a, 0), _nth(a, 1)), "DATE": lambda a: sa.DATE(), "DATETIME": lambda a: sa.DATETIME(),
    "TIMESTAMP": lambda a: sa.TIMESTAMP(), "TIMESTAMPTZ": lambda a: sa.TIMESTAMP(timezone=True),
    "TIME": lambda a: sa.TIME(), "BLOB": lambda a: sa.BLOB(), "JSON": lambda a: sa.JSON(), "UUID": lambda a: sa.UUID(),
}


def _nth(numbers: list[int], n: int) -> int | None:
    return numbers[n] if len(numbers) > n else None


def sql_type(node: Any) -> Any:
    """The SQLAlchemy type of a column type written in SQL; an opaque type (never compared)
    for any other."""
    from .evaluate import OpaqueType
    if node is None:
        return OpaqueType("no type")
    key = getattr(node.this, "name", str(node.this))
    make = _SQL_TYPES.get(key)
    try:
        args = [int(e.this.name if hasattr(e.this, "name") else e.this) for e in node.expressions]
        return make(args) if make is not None else OpaqueType(node.sql())
    except Exception:  # noqa: BLE001 - arguments the type refuses: opaque
        return OpaqueType(node.sql())
