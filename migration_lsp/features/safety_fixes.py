"""Quick fixes for the safety rules S001–S005, as plain text edits.

`safety_fixes(diagnostic, script)` returns `(title, edits)` pairs, each edit a `(Span, new
text)` with the span in 0-based lines and code-point columns of `script.text`; the edits of
one fix never overlap and are listed in document order. The front end turns them into a
WorkspaceEdit. Every S-code also gets "Ignore SXXX on this line" (a trailing
`# migration-lsp: ignore[SXXX]`).

Fixes are built from the op call's own source text (kept verbatim, comments included) and
are only offered when the result is certain to be valid Python: a call sharing its line
with another statement, or a line ending inside a multi-line string, gets no rewrite.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import tokenize
from collections.abc import Callable

from alembic.operations import BatchOperations

from ..checks import IGNORE_COMMENT
from ..checks.walk import (
    TABLE_ARGUMENT,
    FunctionTree,
    column_argument,
    keyword,
)
from ..core import Diagnostic, Span
from ..scripts import MigrationScript, OpCall

Edit = tuple[Span, str]
Fix = tuple[str, list[Edit]]

SAFETY_CODES = ("S001", "S002", "S003", "S004", "S005")
AUTOCOMMIT = "with op.get_context().autocommit_block():"
BATCH_ALIAS = "batch_op"


def safety_fixes(diagnostic: Diagnostic, script: MigrationScript) -> list[Fix]:
    code = diagnostic.code
    if code not in SAFETY_CODES:
        return []

    def build(tree: FunctionTree, node: ast.Call, call: OpCall | None) -> Fix | None:
        if code == "S001" and call is not None:
            return _fix_s001(diagnostic, script, tree, node, call)
        if code == "S002" and call is not None:
            return _fix_s002(tree, node, call)
        if code == "S003":
            return _fix_s003(tree, node, call)
        if code == "S004" and call is not None:
            return _fix_s004(tree, node, call)
        return None

    return fixes_at_op(diagnostic, script, build)


def fixes_at_op(diagnostic: Diagnostic, script: MigrationScript,
                build: Callable[[FunctionTree, ast.Call, OpCall | None], Fix | None]) -> list[Fix]:
    """The fix `build` makes at the op call of upgrade() the diagnostic points at (none when the
    buffer is out of step with the diagnostic), then the one that silences it on its line."""
    if script.upgrade is None:
        return []
    tree = FunctionTree(script, script.upgrade)
    found = locate_op(script, tree, diagnostic.span)
    out: list[Fix] = []
    if found is not None:
        try:
            fix = build(tree, *found)
        except (IndexError, ValueError):  # a buffer out of step with the diagnostic
            fix = None
        if fix is not None:
            out.append(fix)
    ignore = ignore_fix(diagnostic, script, tree, found[0] if found else None)
    if ignore is not None:
        out.append(ignore)
    return out


# --------------------------------------------------------------------------- locating


def locate_op(script: MigrationScript, tree: FunctionTree, span: Span) -> tuple[ast.Call, OpCall | None] | None:
    """The op call of upgrade() a diagnostic's span points at (and its OpCall when parsed as one)."""
    function = script.upgrade
    assert function is not None
    for call in function.ops:
        if call.span == span and tree.contains(call.node):
            return call.node, call
    for other in function.other_calls:
        if other.span == span and tree.contains(other.node):
            return other.node, None
    return None


def wrap_unit(tree: FunctionTree, node: ast.Call, batch: bool) -> ast.stmt | None:
    """The statement a wrap must enclose: the op's own statement, or its batch block."""
    if batch:
        found = tree.batch_with(node)
        return found[0] if found else None
    stmt = tree.statement(node)
    if isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return stmt
    return None


# --------------------------------------------------------------------------- text helpers


def newline_of(text: str) -> str:
    """The line ending the file uses (an edit writes the same)."""
    return "\r\n" if "\r\n" in text else ("\r" if "\r" in text and "\n" not in text else "\n")


def py_string(value: str) -> str:
    """A double-quoted Python literal (SQL placeholders are mostly single-quoted)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def indent_unit(tree: FunctionTree) -> str:
    """The file's indentation step, as the function's first statement has it."""
    node = tree.node
    if node is None or not node.body:
        return "    "
    body_line = tree.lines[tree.start(node.body[0])[0]]
    def_line = tree.lines[tree.start(node)[0]]
    body = body_line[: len(body_line) - len(body_line.lstrip())]
    outer = def_line[: len(def_line) - len(def_line.lstrip())]
    if body.startswith("\t"):
        return "\t"
    width = len(body) - len(outer)
    return " " * width if width > 0 else "    "


def string_lines(tree: FunctionTree, first: int, last: int) -> set[int] | None:
    """Lines in [first, last] that start inside a multi-line string (never re-indent them);
    None when the lines cannot be tokenized."""
    piece = "\n".join(tree.lines[first : last + 1]) + "\n"
    out: set[int] = set()
    kinds = {tokenize.STRING}
    for name in ("FSTRING_MIDDLE", "FSTRING_END"):
        if hasattr(tokenize, name):
            kinds.add(getattr(tokenize, name))
    try:
        for tok in tokenize.generate_tokens(io.StringIO(piece).readline):
            if tok.type in kinds and tok.end[0] > tok.start[0]:
                out.update(range(first + tok.start[0], first + tok.end[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return out


def alone_on_lines(tree: FunctionTree, stmt: ast.stmt) -> bool:
    """Nothing but indentation before the statement, nothing but a comment after it."""
    (l1, c1), (l2, c2) = tree.start(stmt), tree.end(stmt)
    if tree.lines[l1][:c1].strip():
        return False
    rest = tree.lines[l2][c2:].strip()
    return not rest or rest.startswith("#")


def _wrap(tree: FunctionTree, stmt: ast.stmt, header: str, inner: list[Edit]) -> Edit | None:
    """One edit replacing the statement's whole lines by `header` + the statement indented
    one level, with `inner` edits (spans in the original text, inside the statement) applied."""
    if not alone_on_lines(tree, stmt):
        return None
    lines = tree.lines
    (l1, c1), (l2, _) = tree.start(stmt), tree.end(stmt)
    indent = lines[l1][:c1]
    unit = indent_unit(tree)
    keep = string_lines(tree, l1, l2)
    if keep is None:
        return None
    new_lines: list[str] = []
    shift: dict[int, int] = {}
    for n in range(l1, l2 + 1):
        line = lines[n]
        if n in keep or not line.strip():
            new_lines.append(line)
            shift[n] = 0
        else:
            new_lines.append(unit + line)
            shift[n] = len(unit)
    starts = [0]
    for line in new_lines:
        starts.append(starts[-1] + len(line) + 1)

    def offset(line: int, col: int) -> int:
        if not l1 <= line <= l2:
            raise ValueError("edit outside the statement")
        return starts[line - l1] + col + shift[line]

    text = "\n".join(new_lines)
    for span, new in sorted(inner, key=lambda e: (e[0].line, e[0].col), reverse=True):
        a, b = offset(span.line, span.col), offset(span.end_line, span.end_col)
        text = text[:a] + new + text[b:]
    nl = newline_of(tree.script.text)
    return Span(l1, 0, l2, len(lines[l2])), (indent + header + "\n" + text).replace("\n", nl)


def _elements(call: ast.Call) -> list[ast.expr | ast.keyword]:
    return sorted([*call.args, *call.keywords], key=lambda e: (e.lineno, e.col_offset))


def add_keyword(tree: FunctionTree, call: ast.Call, name: str, value: str) -> Edit:
    """Set `name=value` on a call: replace the value when given, else add it after the last
    argument (so a trailing comma stays valid)."""
    kw = keyword(call, name)
    if kw is not None:
        return tree.span(kw.value), value
    elements = _elements(call)
    if not elements:
        line, col = tree.end(call)
        return Span(line, col - 1, line, col - 1), f"{name}={value}"
    line, col = max(tree.end(e) for e in elements)
    return Span(line, col, line, col), f", {name}={value}"


def _remove_elements(tree: FunctionTree, call: ast.Call, remove: list[ast.expr | ast.keyword]) -> list[Edit]:
    """Edits deleting some arguments of a call, with their commas."""
    elements = _elements(call)
    gone = [e in remove for e in elements]
    edits: list[Edit] = []
    n = 0
    while n < len(elements):
        if not gone[n]:
            n += 1
            continue
        a = n
        while n + 1 < len(elements) and gone[n + 1]:
            n += 1
        b = n
        if b + 1 < len(elements):
            edits.append((Span(*tree.start(elements[a]), *tree.start(elements[b + 1])), ""))
        elif a > 0:
            edits.append((Span(*tree.end(elements[a - 1]), *tree.end(elements[b])), ""))
        else:
            edits.append((Span(*tree.start(elements[a]), *tree.end(elements[b])), ""))
        n += 1
    return edits


# --------------------------------------------------------------------------- S001


def _text_function(script: MigrationScript, tree: FunctionTree) -> tuple[str, Edit | None]:
    """How this file spells `sqlalchemy.text`, and an import edit when it cannot."""
    for local, path in script.imports:
        if path == "sqlalchemy":
            return f"{local}.text", None
    for local, path in script.imports:
        if path in ("sqlalchemy.text", "sqlalchemy.sql.text", "sqlalchemy.sql.expression.text"):
            return local, None
    nl = newline_of(script.text)
    for n, line in enumerate(tree.lines):
        if re.match(r"(import|from)\s", line) and not line.startswith("from __future__"):
            return "sa.text", (Span(n, 0, n, 0), "import sqlalchemy as sa" + nl)
    header = script.revision.span.line if script.revision else None
    if header is None:
        raise ValueError("no place for an import")
    return "sa.text", (Span(header, 0, header, 0), "import sqlalchemy as sa" + nl + nl)


def _fix_s001(diagnostic: Diagnostic, script: MigrationScript, tree: FunctionTree,
              node: ast.Call, call: OpCall) -> Fix | None:
    kind = diagnostic.data.get("kind") or call.name
    target = column_argument(call) if kind == "add_column" else node
    if not isinstance(target, ast.Call):
        return None
    placeholder = diagnostic.data.get("placeholder") or "''"
    text_fn, import_edit = _text_function(script, tree)
    value = f"{text_fn}({py_string(placeholder)})"
    edits = ([import_edit] if import_edit else []) + [add_keyword(tree, target, "server_default", value)]
    return f"Add server_default={value} (placeholder: check the value)", edits


# --------------------------------------------------------------------------- S002 / S003


def _fix_s002(tree: FunctionTree, node: ast.Call, call: OpCall) -> Fix | None:
    return concurrently(tree, node, call, "Create")


def concurrently(tree: FunctionTree, node: ast.Call, call: OpCall, verb: str) -> Fix | None:
    """`postgresql_concurrently=True` on an index op, inside autocommit_block() (CONCURRENTLY
    cannot run in the migration's transaction)."""
    keyword_edit = add_keyword(tree, node, "postgresql_concurrently", "True")
    if call.in_autocommit:
        return "Add postgresql_concurrently=True", [keyword_edit]
    stmt = wrap_unit(tree, node, call.batch_table is not None)
    if stmt is None:
        return None
    edit = _wrap(tree, stmt, AUTOCOMMIT, [keyword_edit])
    if edit is None:
        return None
    return f"{verb} the index CONCURRENTLY inside autocommit_block()", [edit]


def _fix_s003(tree: FunctionTree, node: ast.Call, call: OpCall | None) -> Fix | None:
    if call is not None and call.in_autocommit:
        return None
    if call is None and tree.in_autocommit(node):
        return None
    stmt = wrap_unit(tree, node, call is not None and call.batch_table is not None)
    if stmt is None:
        return None
    edit = _wrap(tree, stmt, AUTOCOMMIT, [])
    if edit is None:
        return None
    return "Run it inside op.get_context().autocommit_block()", [edit]


# --------------------------------------------------------------------------- S004


def _batch_accepts(name: str, positional: int, keywords: list[str]) -> bool:
    method = getattr(BatchOperations, name, None)
    if method is None:
        return False
    params = list(inspect.signature(method).parameters.values())[1:]  # without self
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        pass
    elif positional > sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        return False
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return all(k in names for k in keywords)


def _fix_s004(tree: FunctionTree, node: ast.Call, call: OpCall) -> Fix | None:
    where = TABLE_ARGUMENT.get(call.name)
    if where is None or call.batch_table is not None:
        return None
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        return None
    if not (isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)):
        return None
    pos, names, schema_kw = where
    table: ast.expr | ast.keyword | None = None
    table_value: ast.expr | None = None
    if len(node.args) > pos:
        table = table_value = node.args[pos]
    else:
        for name in names:
            kw = keyword(node, name)
            if kw is not None:
                table, table_value = kw, kw.value
                break
    if table is None or table_value is None:
        return None
    schema = keyword(node, schema_kw)
    remove = [table] + ([schema] if schema is not None else [])
    positional = len(node.args) - (1 if table in node.args else 0)
    keywords = [k.arg for k in node.keywords if k is not table and k is not schema and k.arg]
    if not _batch_accepts(call.name, positional, keywords):
        return None
    stmt = wrap_unit(tree, node, batch=False)
    if stmt is None:
        return None
    header = f"with op.batch_alter_table({tree.text(table_value)}"
    if schema is not None:
        header += f", schema={tree.text(schema.value)}"
    header += f") as {BATCH_ALIAS}:"
    inner = [(tree.span(node.func.value), BATCH_ALIAS)] + _remove_elements(tree, node, remove)
    edit = _wrap(tree, stmt, header, inner)
    if edit is None:
        return None
    return f"Rewrite as batch_alter_table({tree.text(table_value)}) block", [edit]


# --------------------------------------------------------------------------- ignore


def ignore_fix(diagnostic: Diagnostic, script: MigrationScript, tree: FunctionTree,
               node: ast.Call | None) -> Fix | None:
    """The "ignore this finding here" fix: a suppression comment on the diagnostic's line."""
    line = diagnostic.span.line
    if not 0 <= line < len(script.lines):
        return None
    text = script.lines[line]
    if text.rstrip().endswith("\\"):
        return None
    if node is not None:
        stmt = tree.statement(node)
        inside = string_lines(tree, tree.start(stmt)[0], tree.end(stmt)[0]) if stmt is not None else set()
        if inside is None or line + 1 in inside:
            return None  # the line ends inside a multi-line string
    return ignore_comment(diagnostic.code, line, text)


def ignore_comment(code: str, line: int, text: str) -> Fix:
    """`# migration-lsp: ignore[CODE]` at the end of `line` (added to one already there)."""
    title = f"Ignore {code} on this line"
    m = IGNORE_COMMENT.search(text)
    if m and m.group("codes") is not None:
        codes = m.group("codes")
        end = m.end("codes")
        sep = ", " if codes.strip() else ""
        return title, [(Span(line, end, line, end), f"{sep}{code}")]
    stripped = len(text.rstrip())
    return title, [(Span(line, stripped, line, len(text)), f"  # migration-lsp: ignore[{code}]")]

