"""Quick fixes for S015–S021 and for findings on a statement inside an `op.execute` string.

Same shape as `safety_fixes`: `txn_fixes(diagnostic, script)` returns `(title, edits)` pairs,
each edit a `(Span, new text)` on `script.text`. S015 gets "Set lock_timeout at the top of
upgrade()"; every finding in a revision gets "Ignore SXXX on this line" — for a statement
inside a string literal the comment goes on the last line of the call (a comment inside the
string would become SQL), which the rule families also read.
"""

from __future__ import annotations

import ast

from ..checks.pg_transactions import LOCK_TIMEOUT_SQL
from ..checks.walk import FunctionTree
from ..core import Diagnostic, Span
from ..scripts import MigrationScript
from .safety_fixes import ignore_comment, newline_of, py_string, string_lines

Edit = tuple[Span, str]
Fix = tuple[str, list[Edit]]

TXN_FIX_CODES = ("S015", "S016", "S017", "S019", "S020", "S021")


def wants(diagnostic: Diagnostic) -> bool:
    """Is this finding ours to fix (rather than safety_fixes')?"""
    return diagnostic.code in TXN_FIX_CODES or bool(diagnostic.data.get("raw_sql"))


def txn_fixes(diagnostic: Diagnostic, script: MigrationScript) -> list[Fix]:
    if diagnostic.path != script.path:
        return []
    out: list[Fix] = []
    if diagnostic.code == "S015" and script.upgrade is not None:
        fix = lock_timeout_fix(script)
        if fix is not None:
            out.append(fix)
    ignore = _ignore(diagnostic, script)
    if ignore is not None:
        out.append(ignore)
    return out


def lock_timeout_fix(script: MigrationScript) -> Fix | None:
    """`op.execute("SET lock_timeout = '5s'")` before the first statement of upgrade() (after
    its docstring), indented like it; none when that statement shares the def's line."""
    function = script.upgrade
    if function is None or function.node is None or not function.node.body:
        return None
    tree = FunctionTree(script, function)
    body = function.node.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        if len(body) == 1:
            return None
        first = body[1]
    line, col = tree.start(first)
    if line <= tree.start(function.node)[0] or tree.lines[line][:col].strip():
        return None
    indent = tree.lines[line][:col]
    if indent.strip():
        return None
    text = f"{indent}op.execute({py_string(LOCK_TIMEOUT_SQL)}){newline_of(script.text)}"
    return "Set lock_timeout at the top of upgrade()", [(Span(line, 0, line, 0), text)]


def _ignore(diagnostic: Diagnostic, script: MigrationScript) -> Fix | None:
    line = diagnostic.span.line
    lines = diagnostic.data.get("call_lines")
    if lines:
        line = lines[-1]  # the call's last line: after the closing quote
    if not 0 <= line < len(script.lines):
        return None
    text = script.lines[line]
    if text.rstrip().endswith("\\"):
        return None
    for function in (script.upgrade, script.downgrade):
        if function is not None and function.node is not None and function.span.line <= line <= function.span.end_line:
            tree = FunctionTree(script, function)
            inside = string_lines(tree, function.span.line, function.span.end_line)
            if inside is None or line + 1 in inside:
                return None  # the line ends inside a multi-line string
    return ignore_comment(diagnostic.code, line, text)
