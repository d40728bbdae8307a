"""Quick fixes for the PostgreSQL DDL rules S006–S014, as plain text edits.

`pg_ddl_fixes(diagnostic, script)` returns `(title, edits)` pairs like `safety_fixes`, and
uses its text helpers: the op's own source is kept verbatim, and a rewrite is offered only
when the result is certain to be valid Python and to do what the rule asks for.

The safe forms PostgreSQL has, each in the same revision (Alembic's `autocommit_block()`
commits the migration's transaction first, so the long step runs in a transaction of its
own, holding only the weak lock it needs):

- S006: the constraint added `NOT VALID` (a brief lock, no scan), then `VALIDATE CONSTRAINT`
  in an autocommit_block (SHARE UPDATE EXCLUSIVE: reads and writes go on);
- S007 (PostgreSQL 12+): `CHECK (col IS NOT NULL) NOT VALID`, validated in an
  autocommit_block, makes `SET NOT NULL` skip its scan; the helper CHECK is dropped after;
- S009: the unique index built `CONCURRENTLY` in an autocommit_block, then the constraint
  added `USING INDEX` (a primary key only when its columns are NOT NULL already: otherwise
  PostgreSQL would SET NOT NULL, a scan);
- S011: `postgresql_concurrently=True` inside an autocommit_block.

- S013: the index on the key's columns, right after the op that adds the key (CONCURRENTLY
  in an autocommit_block when the table is not new).

S008 and S010 have no safe single-op form (a new column, a backfill in batches and a switch
over are a plan, not an edit): they get only "Ignore". So do S012 and S014 (a name is the
author's to choose). What a fix leaves behind if it fails halfway is what any
autocommit_block leaves: the steps before it are committed.
"""

from __future__ import annotations

import ast
import hashlib

import sqlalchemy as sa

from ..checks.pg_ddl import CODES, MAX_IDENTIFIER
from ..checks.walk import FunctionTree, keyword, literal_string
from ..core import Diagnostic, Span
from ..scripts import MigrationScript, OpCall
from .safety_fixes import (
    AUTOCOMMIT,
    Edit,
    Fix,
    add_keyword,
    alone_on_lines,
    concurrently,
    fixes_at_op,
    indent_unit,
    newline_of,
    py_string,
    string_lines,
    wrap_unit,
)

PG_DDL_CODES = CODES
_PREPARER = sa.dialects.postgresql.dialect().identifier_preparer


def _op_name(node: ast.Call) -> str:
    """The name `op` goes by in `op.add_column(...)`: an OpCall's node always has that shape."""
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id
    raise ValueError("not an op.<operation>(...) call")


def pg_ddl_fixes(diagnostic: Diagnostic, script: MigrationScript) -> list[Fix]:
    code = diagnostic.code
    if code not in PG_DDL_CODES:
        return []

    def build(tree: FunctionTree, node: ast.Call, call: OpCall | None) -> Fix | None:
        if call is None:
            return None
        if code == "S006":
            return _fix_s006(diagnostic, tree, node, call)
        if code == "S007":
            return _fix_s007(diagnostic, tree, node, call)
        if code == "S009":
            return _fix_s009(diagnostic, tree, node, call)
        if code == "S011":
            return _fix_s011(tree, node, call)
        if code == "S013":
            return _fix_s013(diagnostic, tree, node, call)
        return None

    return fixes_at_op(diagnostic, script, build)


# --------------------------------------------------------------------------- helpers


def _qualified(table: str, schema: str | None) -> str:
    return (_PREPARER.quote_schema(schema) + "." if schema else "") + _PREPARER.quote(table)


def _short_name(*parts: str) -> str:
    """`parts` joined by `_`, shortened with a hash when longer than PostgreSQL keeps."""
    name = "_".join(parts)
    if len(name.encode("utf-8")) <= MAX_IDENTIFIER:
        return name
    tail = "_" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    head = name.encode("utf-8")[: MAX_IDENTIFIER - len(tail)].decode("utf-8", "ignore")
    return head + tail


def _plain_statement(tree: FunctionTree, node: ast.Call, call: OpCall) -> ast.stmt | None:
    """The op's own statement, alone on its lines, not in a batch block; `op.x(...)` only."""
    if call.batch_table is not None or not isinstance(node.func, ast.Attribute) \
            or not isinstance(node.func.value, ast.Name):
        return None
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        return None
    stmt = wrap_unit(tree, node, batch=False)
    if stmt is None or not isinstance(stmt, ast.Expr) or not alone_on_lines(tree, stmt):
        return None
    (l1, _), (l2, _) = tree.start(stmt), tree.end(stmt)
    inside = string_lines(tree, l1, l2)
    if inside is None or l2 + 1 in inside:
        return None
    return stmt


def _around(tree: FunctionTree, stmt: ast.stmt, before: list[str], after: list[str],
            inner: list[Edit]) -> Edit:
    """One edit replacing the statement's whole lines by `before` lines, the statement (with
    `inner` edits applied: spans inside it), and `after` lines, all at its indentation."""
    lines = tree.lines
    (l1, c1), (l2, _) = tree.start(stmt), tree.end(stmt)
    indent = lines[l1][:c1]
    starts = [0]
    for n in range(l1, l2 + 1):
        starts.append(starts[-1] + len(lines[n]) + 1)
    text = "\n".join(lines[l1 : l2 + 1])
    for span, new in sorted(inner, key=lambda e: (e[0].line, e[0].col), reverse=True):
        if not (l1 <= span.line <= span.end_line <= l2):
            raise ValueError("edit outside the statement")
        a, b = starts[span.line - l1] + span.col, starts[span.end_line - l1] + span.end_col
        text = text[:a] + new + text[b:]
    block = [indent + line for line in before] + [text] + [indent + line for line in after]
    return Span(l1, 0, l2, len(lines[l2])), "\n".join(block).replace("\n", newline_of(tree.script.text))


def _validate_lines(tree: FunctionTree, op_name: str, table: str, schema: str | None, constraint: str,
                    in_autocommit: bool) -> list[str]:
    sql = f"ALTER TABLE {_qualified(table, schema)} VALIDATE CONSTRAINT {_PREPARER.quote(constraint)}"
    execute = f"{op_name}.execute({py_string(sql)})"
    if in_autocommit:
        return [execute]
    return [AUTOCOMMIT.replace("op.", f"{op_name}.", 1) + "  # its own transaction: reads and writes go on",
            indent_unit(tree) + execute]


def _argument(node: ast.Call, position: int, name: str) -> ast.expr | None:
    if len(node.args) > position:
        return node.args[position]
    kw = keyword(node, name)
    return kw.value if kw is not None else None


# --------------------------------------------------------------------------- S006


def _fix_s006(d: Diagnostic, tree: FunctionTree, node: ast.Call, call: OpCall) -> Fix | None:
    if call.name not in ("create_foreign_key", "create_check_constraint"):
        return None
    name, table = d.data.get("constraint"), d.data.get("table")
    if not name or not table or literal_string(_argument(node, 0, "constraint_name")) != name:
        return None
    stmt = _plain_statement(tree, node, call)
    if stmt is None:
        return None
    op_name = _op_name(node)
    after = _validate_lines(tree, op_name, table, d.data.get("schema"), name, call.in_autocommit)
    edit = _around(tree, stmt, [], after, [add_keyword(tree, node, "postgresql_not_valid", "True")])
    return "Add it NOT VALID, then VALIDATE it in an autocommit_block (no long lock)", [edit]


# --------------------------------------------------------------------------- S007


def _fix_s007(d: Diagnostic, tree: FunctionTree, node: ast.Call, call: OpCall) -> Fix | None:
    if call.name != "alter_column" or call.in_autocommit or (d.data.get("postgres_version") or 0) < 12:
        return None
    table, column, schema = d.data.get("table"), d.data.get("column"), d.data.get("schema")
    if not table or not column:
        return None
    if literal_string(_argument(node, 0, "table_name")) != table \
            or literal_string(_argument(node, 1, "column_name")) != column:
        return None
    stmt = _plain_statement(tree, node, call)
    if stmt is None:
        return None
    op_name = _op_name(node)
    check = _short_name("ck", table, column, "not_null")
    in_schema = f", schema={py_string(schema)}" if schema else ""
    before = [(f"{op_name}.create_check_constraint({py_string(check)}, {py_string(table)}, "
               f"{py_string(_PREPARER.quote(column) + ' IS NOT NULL')}{in_schema}, postgresql_not_valid=True)"),
              *_validate_lines(tree, op_name, table, schema, check, False)]
    after = [f"{op_name}.drop_constraint({py_string(check)}, {py_string(table)}{in_schema}, type_=\"check\")"]
    edit = _around(tree, stmt, before, after, [])
    return "SET NOT NULL without a scan: CHECK NOT VALID, VALIDATE it, then SET NOT NULL", [edit]


# --------------------------------------------------------------------------- S009


def _fix_s009(d: Diagnostic, tree: FunctionTree, node: ast.Call, call: OpCall) -> Fix | None:
    if call.name not in ("create_unique_constraint", "create_primary_key") or call.in_autocommit:
        return None
    if call.name == "create_primary_key" and not d.data.get("not_null"):
        return None  # USING INDEX would SET NOT NULL: a scan under the lock again
    name, table, schema = d.data.get("constraint"), d.data.get("table"), d.data.get("schema")
    columns = _argument(node, 2, "columns")
    if not name or not table or literal_string(_argument(node, 0, "constraint_name")) != name \
            or not isinstance(columns, (ast.List, ast.Tuple)):
        return None
    allowed = {"constraint_name", "table_name", "columns", "schema"}
    if len(node.args) > 3 or any(k.arg not in allowed for k in node.keywords):
        return None  # deferrable=, initially=, dialect options: not carried over by hand
    stmt = _plain_statement(tree, node, call)
    if stmt is None:
        return None
    op_name = _op_name(node)
    in_schema = f", schema={py_string(schema)}" if schema else ""
    kind = "UNIQUE" if call.name == "create_unique_constraint" else "PRIMARY KEY"
    sql = (f"ALTER TABLE {_qualified(table, schema)} ADD CONSTRAINT {_PREPARER.quote(name)} {kind} "
           f"USING INDEX {_PREPARER.quote(name)}")
    lines = [AUTOCOMMIT.replace("op.", f"{op_name}.", 1),
             (f"{indent_unit(tree)}{op_name}.create_index({py_string(name)}, {py_string(table)}, "
              f"{tree.text(columns)}, unique=True{in_schema}, postgresql_concurrently=True)"),
             f"{op_name}.execute({py_string(sql)})"]
    (l1, c1), (l2, _) = tree.start(stmt), tree.end(stmt)
    indent = tree.lines[l1][:c1]
    text = "\n".join(indent + line for line in lines).replace("\n", newline_of(tree.script.text))
    return "Build the unique index CONCURRENTLY, then add the constraint USING INDEX", \
        [(Span(l1, 0, l2, len(tree.lines[l2])), text)]


# --------------------------------------------------------------------------- S011


def _fix_s011(tree: FunctionTree, node: ast.Call, call: OpCall) -> Fix | None:
    if call.name != "drop_index":
        return None
    return concurrently(tree, node, call, "Drop")


# --------------------------------------------------------------------------- S013


def _fix_s013(d: Diagnostic, tree: FunctionTree, node: ast.Call, call: OpCall) -> Fix | None:
    """The index right after the op that adds the key: plainly on a table this revision
    creates (it is empty), CONCURRENTLY in an autocommit_block on an existing one."""
    table, columns, index = d.data.get("table"), d.data.get("columns"), d.data.get("index")
    if not table or not columns or not index:
        return None
    stmt = _plain_statement(tree, node, call)
    if stmt is None:
        return None
    op_name = _op_name(node)
    schema = d.data.get("schema")
    in_schema = f", schema={py_string(schema)}" if schema else ""
    listed = "[" + ", ".join(py_string(c) for c in columns) + "]"
    create = f"{op_name}.create_index({py_string(index)}, {py_string(table)}, {listed}{in_schema}"
    if d.data.get("fresh"):
        after = [create + ")"]
    elif call.in_autocommit:
        after = [create + ", postgresql_concurrently=True)"]
    else:
        after = [AUTOCOMMIT.replace("op.", f"{op_name}.", 1),
                 indent_unit(tree) + create + ", postgresql_concurrently=True)"]
    return f"Create index {index} on ({', '.join(columns)})", [_around(tree, stmt, [], after, [])]
