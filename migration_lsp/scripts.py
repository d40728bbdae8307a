"""Stage `scripts`: one migration file's text -> MigrationScript, without running it.

The parser is tolerant because a file being typed is usually not valid Python: when
`ast.parse` fails, each header assignment, the docstring and each of upgrade()/downgrade()
is recovered on its own, so a syntax error in one place never hides the revision header.
Header values are read the way Alembic reads them (None, "", a string, a tuple or list);
anything that is not a literal is kept as "unknown" source text, never an error.

Speed (the graph needs every file's header before the first diagnostics): the header as
Alembic's templates write it is read by a string scanner, without `ast.parse`; anything the
scanner is not sure about goes the ast way. upgrade()/downgrade() are parsed on first use,
compiling only the text from the first `def` on. Both shortcuts give exactly what the ast
path gives (tests/test_scripts_fast.py compares them with `parse_script(..., _legacy=True)`).
"""

from __future__ import annotations

import ast
import keyword
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .core import Span

HEADER_NAMES = ("revision", "down_revision", "branch_labels", "depends_on")
SAFE_PACKAGES = ("sqlalchemy", "alembic")  # what the interpreter may resolve (evaluate.in_safe_package)
OP_RECEIVER = "op"
# `op.` attributes that are helpers, not schema operations
NOT_OPERATIONS = frozenset({"f", "get_bind", "get_context", "inline_literal", "implementation_for",
                            "register_operation", "invoke", "run_async"})


# The header's records are built for every file of a first check: plain dataclasses, hashed
# by value as frozen ones are, and read-only by convention (a frozen dataclass's __init__,
# object.__setattr__ per field, costs 3-4x a plain one's; RESULTS.md, "G-only check").
@dataclass(unsafe_hash=True)
class IdString:
    """A revision id (or label) written in the source, with the range of its characters."""

    value: str
    span: Span


@dataclass(unsafe_hash=True)
class HeaderValue:
    """One of `revision`, `down_revision`, `branch_labels`, `depends_on`."""

    ids: tuple[IdString, ...]
    unknown: tuple[str, ...]  # source text of elements that are not literals
    span: Span  # the whole assignment statement
    value_span: Span  # the right-hand side

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(i.value for i in self.ids)

    @property
    def is_empty(self) -> bool:
        """None, "" or an empty tuple: Alembic treats all of them as 'nothing'."""
        return not self.ids and not self.unknown


@dataclass(unsafe_hash=True)
class DocHeader:
    """The `Revision ID:` / `Revises:` / `Create Date:` lines of the module docstring."""

    message: str
    span: Span
    revision_id: IdString | None = None
    revision_id_line: Span | None = None  # the value part of the "Revision ID:" line
    revises: tuple[IdString, ...] = ()
    revises_line: Span | None = None  # the value part of the "Revises:" line
    create_date: str | None = None


@dataclass(frozen=True, eq=False)
class OpCall:
    """`op.<name>(...)` or `batch_op.<name>(...)` inside upgrade()/downgrade()."""

    name: str
    span: Span
    node: ast.Call
    batch_table: str | None = None  # set inside `with op.batch_alter_table(...) as x:`
    in_autocommit: bool = False  # inside `with op.get_context().autocommit_block():`
    conditional: bool = False  # inside an if / for / while / try: may not run, or run twice


@dataclass(frozen=True, eq=False)
class Function:
    name: str
    def_span: Span  # `def name` on the def line
    span: Span  # the whole function
    ops: tuple[OpCall, ...]
    is_empty: bool  # body is only pass / ... / docstring / comments
    node: ast.FunctionDef | None = None
    # statement-level calls that are not `op.*` (helpers, conn.execute, print...)
    other_calls: tuple[OtherCall, ...] = ()


@dataclass(frozen=True, eq=False)
class OtherCall:
    name: str  # dotted callee as written, e.g. "conn.execute" or "create_audit_table"
    span: Span
    node: ast.Call


@dataclass(eq=False)
class MigrationScript:
    """One parsed migration file; read-only once built, except for what is parsed on first
    use: `functions` and `error` (the bodies), `_module` (the whole file's statements), which
    `release_bodies` forgets again. Not a frozen dataclass: a first check builds one per file,
    and a frozen dataclass's __init__ (object.__setattr__ per field) costs 4x a plain one's."""

    path: Path
    text: str
    revision: HeaderValue | None = None
    down_revision: HeaderValue | None = None
    branch_labels: HeaderValue | None = None
    depends_on: HeaderValue | None = None
    doc: DocHeader | None = None
    # upgrade()/downgrade() by name; None until first asked for: the graph needs only the
    # header, so a file's bodies are parsed when a feature needs them
    functions: dict[str, Function] | None = field(default=None, repr=False)
    error: str | None = None  # the syntax error, once the whole file has been parsed
    # the text's lines (`lines`), split on first use when not given: the graph never reads them
    _lines: tuple[str, ...] | None = field(default=None, repr=False)
    # module-level imports: local name -> dotted path ("sa" -> "sqlalchemy")
    imports: tuple[tuple[str, str], ...] = ()
    # where the first top-level `def upgrade/downgrade` starts when the header above it is
    # known to parse on its own and holds no upgrade()/downgrade(): the lazy body parse
    # then compiles only the text from there on
    _body_start: int | None = field(default=None, repr=False)
    # the lazily filled state (not __init__ parameters: the class attribute is the default,
    # so building a script costs nothing more, and `replace()` does not carry it over)
    # True once `functions` was filled by the lazy body parse (then it may be forgotten)
    _reparsable: bool = field(default=False, init=False, repr=False)
    # the whole file's top-level statements (module_body), None until first asked for
    _module: list[ast.stmt] | None = field(default=None, init=False, repr=False)

    @property
    def lines(self) -> tuple[str, ...]:
        found = self._lines
        if found is None:
            found = self._lines = tuple(split_lines(self.text))
        return found

    @property
    def upgrade(self) -> Function | None:
        return self._functions().get("upgrade")

    @property
    def downgrade(self) -> Function | None:
        return self._functions().get("downgrade")

    @property
    def syntax_error(self) -> str | None:
        self._functions()
        return self.error

    def _functions(self) -> dict[str, Function]:
        if self.functions is None:
            functions, error = _parse_functions(self.path, self.text, self._body_start, self.lines)
            self.error, self.functions, self._reparsable = error, functions, True
            return functions
        return self.functions

    def release_bodies(self) -> None:
        """Forget the parsed upgrade()/downgrade() when they were parsed on demand (the next
        use parses them again, to the same result): an index of thousands of revisions keeps
        their headers, not their syntax trees. The lines go too (split again on first use:
        12 MiB at 5,000 revisions), except those of a script built with its bodies (kept
        with them; `()` for a text that could not be parsed at all)."""
        if self._reparsable:
            self.functions = None
        if self._lines is not None and self.functions is None:
            self._lines = None
        if self._module is not None:  # (a first write of it makes the instance's dict 768 bytes larger)
            self._module = None

    @property
    def revision_id(self) -> str | None:
        """The id when `revision = "<literal>"` could be read, else None."""
        if self.revision and len(self.revision.ids) == 1 and not self.revision.unknown:
            return self.revision.ids[0].value
        return None

    @property
    def message(self) -> str:
        return self.doc.message if self.doc else ""

    def id_strings(self) -> list[tuple[str, IdString]]:
        """Every id-bearing string in the file with the header it belongs to."""
        out: list[tuple[str, IdString]] = []
        for name in HEADER_NAMES:
            value = getattr(self, name)
            if value:
                out.extend((name, i) for i in value.ids)
        if self.doc:
            if self.doc.revision_id:
                out.append(("doc_revision", self.doc.revision_id))
            out.extend(("doc_revises", i) for i in self.doc.revises)
        return out


# --------------------------------------------------------------------------- helpers


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Lines as Python's tokenizer (and LSP) count them: only \\n, \\r\\n and \\r end a
    line. `str.splitlines` also splits at form feeds, \\x1c-\\x1e, \\x85, U+2028/U+2029,
    which would shift every position after such a character away from ast's line numbers."""
    if not text:
        return []
    lines = text.split("\n") if "\r" not in text else _LINE_BREAK.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def _line_at(text: str, offset: int) -> int:
    """0-based line number of a character offset, counted like `split_lines`."""
    return len(_LINE_BREAK.findall(text, 0, offset))


class _Source:
    """Source lines, and conversion of ast's UTF-8 byte columns to code points."""

    def __init__(self, text: str, lines: list[str] | tuple[str, ...] | None = None) -> None:
        self.text = text
        self.lines = split_lines(text) if lines is None else lines

    def col(self, lineno: int, byte_col: int) -> int:
        """ast lineno is 1-based, col_offset is in UTF-8 bytes."""
        if not 0 < lineno <= len(self.lines):
            return byte_col
        line = self.lines[lineno - 1]
        if line.isascii():
            return byte_col
        return len(line.encode("utf-8")[:byte_col].decode("utf-8", "replace"))

    def span(self, node: ast.expr | ast.stmt, offset: int = 0) -> Span:
        line = node.lineno + offset
        end = (node.end_lineno or node.lineno) + offset
        return Span(
            line - 1,
            self.col(line, node.col_offset),
            end - 1,
            self.col(end, node.end_col_offset or node.col_offset),
        )


def _string_inner_span(src: _Source, node: ast.Constant, offset: int) -> Span:
    """The range of a one-line string literal's characters, without prefix and quotes."""
    outer = src.span(node, offset)
    if outer.line != outer.end_line:
        return outer
    raw = src.lines[outer.line][outer.col : outer.end_col]
    m = re.match(r"[rRuUbBfF]{0,2}('''|\"\"\"|'|\")", raw)
    if not m:
        return outer
    quote = len(m.group(0))
    closing = len(m.group(1))
    return Span(outer.line, outer.col + quote, outer.line, max(outer.col + quote, outer.end_col - closing))


def _header_value(
    src: _Source, stmt: ast.stmt, value: ast.expr | None, offset: int, constants: dict[str, str]
) -> HeaderValue:
    ids: list[IdString] = []
    unknown: list[str] = []
    elements: list[ast.expr]
    if value is None:
        elements = []
    elif isinstance(value, (ast.Tuple, ast.List)):
        elements = list(value.elts)
    else:
        elements = [value]
    for el in elements:
        if isinstance(el, ast.Constant) and el.value is None and len(elements) == 1:
            continue
        if isinstance(el, ast.Constant) and isinstance(el.value, str):
            if el.value:
                ids.append(IdString(el.value, _string_inner_span(src, el, offset)))
            continue
        if isinstance(el, ast.Name) and el.id in constants:
            ids.append(IdString(constants[el.id], src.span(el, offset)))
            continue
        unknown.append(ast.unparse(el))
    return HeaderValue(
        tuple(ids),
        tuple(unknown),
        src.span(stmt, offset),
        src.span(value, offset) if value is not None else src.span(stmt, offset),
    )


def _assignment(stmt: ast.stmt) -> tuple[str, ast.expr | None] | None:
    """`name = value` or `name: T = value` at module level -> (name, value)."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id, stmt.value
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return stmt.target.id, stmt.value
    return None


_DOC_KEYS = ("Revision ID", "Revises", "Create Date")
_NOT_IN_TOKENS = str.maketrans({c: " " for c in ",()'\""})


def _doc_field(line: str) -> tuple[str, int, int] | None:
    """(key, start, end of the value) of a `Revision ID:` / `Revises:` / `Create Date:` line:
    the key after any whitespace, any whitespace, a colon, spaces or tabs, then the value
    without trailing whitespace. String methods only, linear in the line (the regex
    `\\s*(key)\\s*:[ \\t]*(.*?)\\s*$` it replaces backtracked quadratically on a long
    run of spaces inside the value)."""
    rest = line.lstrip()
    for key in _DOC_KEYS:
        if rest.startswith(key):
            break
    else:
        return None
    after = rest[len(key):].lstrip()
    if not after.startswith(":"):
        return None
    value = after[1:].lstrip(" \t")
    start = len(line) - len(value)
    return key, start, start + len(value.rstrip())


def _rev_tokens(value: str):
    """(start, end) of each run of characters that are neither whitespace nor `,()'"`,
    in order (str.split on a translated copy: linear, no regex)."""
    spaced = value.translate(_NOT_IN_TOKENS)
    at = 0
    for token in spaced.split():
        at = spaced.index(token, at)
        yield at, at + len(token)
        at += len(token)


def _doc_header(src: _Source, first_line: int, last_line: int, message_text: str | None,
                span=Span) -> DocHeader | None:
    """Read the docstring fields from the source lines [first_line, last_line] (0-based).
    `span`: how Spans are made (the fast header path shares equal ones)."""
    revision_id = revision_id_line = revises_line = create_date = None
    revises: list[IdString] = []
    found = False
    for n in range(first_line, min(last_line, len(src.lines) - 1) + 1):
        line = src.lines[n]
        if "Revis" not in line and "Create Date" not in line:
            continue  # (no key in it: what _doc_field would say, without the call)
        # the lines as Alembic's templates write them, with one plain id (or a date), read
        # without _doc_field / _rev_tokens: the same fields, spans and values they give
        if line.startswith("Revision ID: ") and revision_id is None and line[13:].isalnum():
            found = True
            revision_id_line = span(n, 13, n, len(line))
            revision_id = IdString(line[13:], span(n, 13, n, len(line)))
            continue
        if line.startswith("Revises: ") and revises_line is None and line[9:].isalnum():
            found = True
            revises_line = span(n, 9, n, len(line))
            revises.append(IdString(line[9:], span(n, 9, n, len(line))))
            continue
        if line.startswith("Create Date: ") and line[13:14] not in (" ", "\t"):
            found = True
            if create_date is None:
                create_date = line[13:].rstrip()
            continue
        fields = _doc_field(line)
        if fields is None:
            continue
        found = True
        key, start, end = fields
        value = line[start:end]
        value_span = span(n, start, n, end)
        if key == "Revision ID" and revision_id is None:
            revision_id_line = value_span
            for a, b in _rev_tokens(value):
                revision_id = IdString(value[a:b], span(n, start + a, n, start + b))
                break
        elif key == "Revises" and revises_line is None:
            revises_line = value_span
            for a, b in _rev_tokens(value):
                if value[a:b] != "<base>":
                    revises.append(IdString(value[a:b], span(n, start + a, n, start + b)))
        elif key == "Create Date" and create_date is None:
            create_date = value
    if message_text is None and not found:
        return None
    return DocHeader(
        message=_message(message_text),
        span=span(first_line, 0, last_line, len(src.lines[last_line]) if last_line < len(src.lines) else 0),
        revision_id=revision_id,
        revision_id_line=revision_id_line,
        revises=tuple(revises),
        revises_line=revises_line,
        create_date=create_date,
    )


def _message(message_text: str | None) -> str:
    """The docstring's message: the first line of the stripped text, as splitlines() counts
    lines (it ends at the first "\\n" or before: splitting only up to there gives the same
    first line), unless that line is a `Revision ID:` / `Revises:` / `Create Date:` field."""
    return _first_line_message((message_text or "").strip().partition("\n")[0])


def _first_line_message(first: str) -> str:
    for line in first.splitlines():
        return line.strip() if _doc_field(line) is None else ""
    return ""


def _is_op_receiver(node: ast.expr, batch_names: dict[str, str | None]) -> tuple[bool, str | None]:
    if isinstance(node, ast.Name):
        if node.id == OP_RECEIVER:
            return True, None
        if node.id in batch_names:
            return True, batch_names[node.id]
    return False, None


def _with_context(item: ast.withitem) -> tuple[str | None, str | None, bool]:
    """For a `with` item: (batch alias, batch table, is autocommit block)."""
    call = item.context_expr
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
        return None, None, False
    if call.func.attr == "autocommit_block":
        return None, None, True
    if call.func.attr == "batch_alter_table" and isinstance(call.func.value, ast.Name) and call.func.value.id == OP_RECEIVER:
        alias = item.optional_vars.id if isinstance(item.optional_vars, ast.Name) else None
        table = None
        if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
            table = call.args[0].value
        return alias, table or "", False
    return None, None, False


# Statements that hold no statements (their expressions cannot: a lambda's body is one)
_SIMPLE_STATEMENTS = frozenset({ast.Expr, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Return, ast.Delete,
                                ast.Raise, ast.Assert, ast.Pass, ast.Import, ast.ImportFrom, ast.Global,
                                ast.Nonlocal, ast.Break, ast.Continue})


def _collect_ops(
    src: _Source,
    body: list[ast.stmt],
    offset: int,
    batch_names: dict[str, str | None],
    autocommit: bool,
    out: list[OpCall],
) -> None:
    for stmt in body:
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            names = dict(batch_names)
            auto = autocommit
            for item in stmt.items:
                alias, table, is_auto = _with_context(item)
                auto = auto or is_auto
                if table is not None:
                    _add_call(src, item.context_expr, offset, batch_names, autocommit, out)
                    if alias:
                        names[alias] = table
            _collect_ops(src, stmt.body, offset, names, auto, out)
            continue
        if type(stmt) in _SIMPLE_STATEMENTS:  # no statements inside: just its calls
            for node in _calls(stmt):
                _add_call(src, node, offset, batch_names, autocommit, out)
            continue
        # Calls anywhere inside this statement (expression statements, assignments, ifs...).
        nested = [s for s in ast.iter_child_nodes(stmt) if isinstance(s, ast.stmt)]
        for node in _calls(stmt) if not nested else _expressions_of(stmt):
            if isinstance(node, ast.Call):
                _add_call(src, node, offset, batch_names, autocommit, out)
        for field_name in ("body", "orelse", "finalbody"):
            sub = getattr(stmt, field_name, None)
            if isinstance(sub, list) and sub and isinstance(sub[0], ast.stmt):
                _collect_ops(src, sub, offset, batch_names, autocommit, out)
        for handler in getattr(stmt, "handlers", []) or []:
            _collect_ops(src, handler.body, offset, batch_names, autocommit, out)


def _expressions_of(stmt: ast.stmt):
    """Nodes of a compound statement's own expressions (its test, iter...), not its body."""
    for name, value in ast.iter_fields(stmt):
        if name in ("body", "orelse", "finalbody", "handlers"):
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, ast.AST):
                yield from ast.walk(v)


_AST, _Call = ast.AST, ast.Call
# The fields of each node class that may hold nodes below it, without the ones that cannot
# hold a call: `ctx` (Load / Store), and everything of a Name or a Constant (leaves).
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {ast.Name: (), ast.Constant: ()}
_LEAVES = frozenset({ast.Name, ast.Constant})  # (never queued)


def _child_fields(kind: type) -> tuple[str, ...]:
    found = _CHILD_FIELDS.get(kind)
    if found is None:
        found = _CHILD_FIELDS[kind] = tuple(name for name in kind._fields if name != "ctx")  # type: ignore[attr-defined]
    return found


def _calls(root: ast.AST) -> list[ast.Call]:
    """The Call nodes among `root` and everything below it, in ast.walk's order (breadth
    first, fields in order): the same answer as filtering ast.walk, without its generator
    layers (a migration body is mostly deeply nested call arguments) and without visiting
    the leaves that cannot be or hold a call (see _CHILD_FIELDS)."""
    found: list[ast.Call] = []
    todo = [root]
    fields_of = _CHILD_FIELDS
    for node in todo:  # the list grows while iterated: a breadth-first queue
        kind = type(node)
        if type(node) is _Call or isinstance(node, _Call):
            found.append(node)
        fields = fields_of.get(kind)
        for name in fields if fields is not None else _child_fields(kind):
            value = getattr(node, name, None)
            if type(value) is list:
                for v in value:
                    if isinstance(v, _AST) and type(v) not in _LEAVES:
                        todo.append(v)
            elif isinstance(value, _AST) and type(value) not in _LEAVES:
                todo.append(value)
    return found


def _add_call(
    src: _Source, node: ast.expr, offset: int, batch_names: dict[str, str | None], autocommit: bool, out: list[OpCall]
) -> None:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return
    is_op, table = _is_op_receiver(node.func.value, batch_names)
    if is_op and node.func.attr not in NOT_OPERATIONS:
        out.append(OpCall(node.func.attr, src.span(node, offset), node, table, autocommit))


def _is_empty_body(body: list[ast.stmt]) -> bool:
    for stmt in body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and (
            isinstance(stmt.value.value, str) or stmt.value.value is Ellipsis
        ):
            continue
        return False
    return True


def _function(src: _Source, node: ast.FunctionDef, offset: int) -> Function:
    ops: list[OpCall] = []
    _collect_ops(src, node.body, offset, {}, False, ops)
    line = node.lineno + offset - 1
    text = src.lines[line] if line < len(src.lines) else ""
    start = text.find("def ")
    start = max(start, 0)
    def_span = Span(line, start, line, start + 4 + len(node.name))
    conditional = _conditional_calls(node.body, False, set())
    ops = [replace(op, conditional=True) if id(op.node) in conditional else op for op in ops]
    op_nodes = {id(op.node) for op in ops}
    others = tuple(c for c in _other_calls(src, node.body, offset) if id(c.node) not in op_nodes)
    return Function(node.name, def_span, src.span(node, offset), tuple(ops), _is_empty_body(node.body), node, others)


_BRANCHY = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.FunctionDef, ast.AsyncFunctionDef)


def _conditional_calls(body: list[ast.stmt], inside: bool, out: set[int]) -> set[int]:
    """ids of the calls that sit inside an if / loop / try / nested function: one pass."""
    for stmt in body:
        nested = inside or isinstance(stmt, _BRANCHY)
        if nested:
            out.update(id(n) for n in _calls(stmt))
            continue
        for field_name in ("body", "orelse", "finalbody"):
            sub = getattr(stmt, field_name, None)
            if isinstance(sub, list) and sub and isinstance(sub[0], ast.stmt):
                _conditional_calls(sub, False, out)
    return out


def _other_calls(src: _Source, body: list[ast.stmt], offset: int) -> list[OtherCall]:
    """Calls made directly by statements (not calls nested in arguments), except `op.x(...)`."""
    out = []
    for stmt in body:
        value = getattr(stmt, "value", None) if isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Await):
            value = value.value
        if isinstance(value, ast.Call):
            name = _callee(value.func)
            if name and not (name.startswith(OP_RECEIVER + ".") and "(" not in name):
                out.append(OtherCall(name, src.span(value, offset), value))
        for field_name in ("body", "orelse", "finalbody"):
            sub = getattr(stmt, field_name, None)
            if isinstance(sub, list) and sub and isinstance(sub[0], ast.stmt):
                out.extend(_other_calls(src, sub, offset))
        for handler in getattr(stmt, "handlers", []) or []:
            out.extend(_other_calls(src, handler.body, offset))
    return out


def _callee(func: ast.expr) -> str | None:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
        return ".".join(reversed(parts))
    if isinstance(func, ast.Call):  # op.get_bind().execute(...)
        inner = _callee(func.func)
        return f"{inner}().{'.'.join(reversed(parts))}" if inner else None
    return None



def module_body(script: MigrationScript) -> list[ast.stmt]:
    """The top-level statements of the whole file (constants and helper functions the
    evaluation of upgrade() may need), parsed on first use and kept until the bodies are
    released; [] when the file does not parse."""
    found = script._module
    if found is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = ast.parse(script.text).body
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            found = []
        script._module = found
    return found


def op_call(script: MigrationScript, node: ast.Call, name: str, batch_table: str | None = None,
            in_autocommit: bool = False) -> OpCall:
    """An OpCall for a call the body scan does not list (one inside a helper function of the
    file, reached by evaluating upgrade()); its span is that of the whole file."""
    return OpCall(name, span_of(script, node), node, batch_table, in_autocommit)


def span_of(script: MigrationScript, node: ast.expr | ast.stmt) -> Span:
    """The range of a node of the whole file's parse (see module_body)."""
    return _Source(script.text, script.lines or None).span(node)


def sql_argument(node: ast.Call) -> ast.Constant | None:
    """The string node of `execute("...")` / `execute(sa.text("..."))` / `sqltext=` /
    `statement=`: op.execute and a connection's execute alike (the replay and the rules read
    literal SQL with this one helper)."""
    arg: ast.expr | None = node.args[0] if node.args else \
        next((k.value for k in node.keywords if k.arg in ("sqltext", "statement")), None)
    if isinstance(arg, ast.Call) and arg.args:
        arg = arg.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg
    return None


def sql_literal(node: ast.Call) -> str | None:
    """The SQL of a call `sql_argument` reads, when written as a literal."""
    found = sql_argument(node)
    return str(found.value) if found is not None else None


# --------------------------------------------------------------------------- parsing


def parse_script(path: Path, text: str, header_only: bool = True, *, _legacy: bool = False) -> MigrationScript:
    """Parse one file; never raises (and never prints: SyntaxWarnings are silenced).
    `header_only`: when the header sits above the functions (as Alembic writes it), parse
    just that part now and the functions on first use.
    `_legacy` (tests only): the reference behaviour, without the fast header scanner and
    with the lazy body parse compiling the whole file again."""
    try:
        if header_only and not _legacy:
            try:
                fast = _fast_header(path, text)
            except Exception:  # noqa: BLE001 — a bug in the shortcut must not cost the file: the ast path decides
                STATS["header_fast_failed"] += 1
                fast = None
            if fast is not None:
                STATS["header_fast"] += 1
                return fast
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _parse(path, text, header_only, _legacy)
    except (RecursionError, MemoryError, ValueError) as exc:  # absurd nesting, NUL bytes...
        return MigrationScript(path=path, text=text, error=f"cannot parse: {type(exc).__name__}",
                               functions={}, _lines=())


# How often each path was taken (tests check that the fast paths are really used).
STATS = {"header_fast": 0, "header_template": 0, "header_fast_failed": 0, "header_ast": 0, "body_piece": 0, "body_full": 0}


def _parse(path: Path, text: str, header_only: bool, legacy: bool = False) -> MigrationScript:
    src = _Source(text)
    if header_only:
        first_def = _DEF_START.search(text)
        if first_def and not _HEADER_START.search(text, first_def.start()):
            start = first_def.start()
            try:
                head = ast.parse(text[:start])
            except (SyntaxError, ValueError):
                pass  # the whole file decides, tolerantly
            else:
                STATS["header_ast"] += 1
                script = _from_module(path, src, head.body, 0, None, lazy=True)
                if not legacy and _body_alone_is_safe(head.body, text, start):
                    script._body_start = start
                return script
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        where = f" (line {err.lineno})" if err.lineno else ""
        return _parse_tolerant(path, src, f"{err.msg}{where}")
    except ValueError as err:  # NUL bytes on Python < 3.12: still recover the header
        return _parse_tolerant(path, src, str(err))
    return _from_module(path, src, tree.body, 0, None)


def _body_alone_is_safe(head: list[ast.stmt], text: str, start: int) -> bool:
    """Given that text[:start] parses on its own: is parsing text[start:] alone (padded to
    the same line numbers) as good as parsing the whole file? Yes unless the head defines
    upgrade()/downgrade() itself (a `def` _DEF_START does not see) or changes how the rest
    is parsed (a __future__ flag)."""
    if "barry_as_FLUFL" in text[:start]:
        return False
    return not any(isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in ("upgrade", "downgrade")
                   for stmt in head)


def _parse_functions(path: Path, text: str, body_start: int | None,
                     lines: tuple[str, ...]) -> tuple[dict[str, Function], str | None]:
    """upgrade()/downgrade() and the syntax error, exactly as the whole-file parse finds them.
    With `body_start` (the text before it is known to parse on its own), only the text from
    there on is compiled, behind as many empty lines as it starts after, so every line number,
    node and span is that of the whole-file parse. When that piece does not parse (or
    anything else goes wrong), the whole file is parsed as before: same errors, same recovery."""
    if body_start is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                head = text[:body_start]
                line = head.count("\n") if "\r" not in head else _line_at(text, body_start)
                tree = ast.parse("\n" * line + text[body_start:])
                src = _Source(text, lines)
                functions = {stmt.name: _function(src, stmt, 0) for stmt in tree.body
                             if isinstance(stmt, ast.FunctionDef) and stmt.name in ("upgrade", "downgrade")}
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            pass
        else:
            STATS["body_piece"] += 1
            return functions, None
    STATS["body_full"] += 1
    full = parse_script(path, text, header_only=False)
    return full.functions or {}, full.error


# --------------------------------------------------------------------------- fast header
#
# The header as Alembic's templates write it, read by string scanning instead of
# `ast.parse`. The scanner accepts only a small sublanguage it fully understands (every line
# is blank, a comment, the module docstring, a one-line import or a one-line header
# assignment of None / a plain string / a tuple or list of those); on anything else it gives
# up (returns None) and the ast path decides. Whatever it accepts is valid Python whose ast
# path result is exactly what it builds.

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_IDENT}(?:\.{_IDENT})*"
_FAST_ASSIGN = re.compile(r"(revision|down_revision|branch_labels|depends_on)[ \t]*(?::([^=]*))?=[ \t]*")
_FAST_IMPORT = re.compile(r"import[ \t]+(.+)")
_FAST_FROM = re.compile(rf"from[ \t]+({_DOTTED})[ \t]+import(?:[ \t]*\((.*)\)|[ \t]+(.*))")
_FAST_IMPORT_ITEM = re.compile(rf"({_DOTTED})(?:[ \t]+as[ \t]+({_IDENT}))?")
_FAST_FROM_ITEM = re.compile(rf"({_IDENT})(?:[ \t]+as[ \t]+({_IDENT}))?")
_FAST_STRING = re.compile(r"'([^'\\]*)'|\"([^\"\\]*)\"")
_FAST_TRAIL = re.compile(r"[ \t]*(?:#.*)?")
_FAST_WS = re.compile(r"[ \t]*")
_FAST_ANN_TOKEN = re.compile(rf"[ \t]*(?:({_IDENT})|(\.\.\.)|([\[\],.|]))")
_KEYWORDS = frozenset(keyword.kwlist) | {"__debug__"}  # never a name the fast path accepts
# __future__ features that change nothing about how the rest of the file parses
_HARMLESS_FUTURES = frozenset({"annotations", "absolute_import", "division", "generators", "generator_stop",
                               "nested_scopes", "print_function", "unicode_literals", "with_statement"})
_NONE_FOLLOWERS = frozenset(" \t,)]#")
# `_HEADER_START.search(text, pos)` for pos > 0 where a line starts, faster (`^` means after "\n")
_HEADER_AFTER = re.compile(r"\n(revision|down_revision|branch_labels|depends_on)\s*(?::[^=\n]*)?=(?!=)")
_annotation_ok: dict[str, bool] = {}
_span_cache: dict[tuple[int, int, int, int], Span] = {}
_value_cache: dict[tuple[str, int], HeaderValue] = {}
_import_cache: dict[str, tuple[tuple[str, str], ...] | None] = {}
# the caches hold at most this many entries, and only lines up to _CACHED_LINE characters
_CACHE_LIMIT = 4096
_CACHED_LINE = 200


def _fast_header(path: Path, text: str) -> MigrationScript | None:
    """The lazy header-only script `_parse` would build, or None when not sure."""
    script = _template_header(path, text)
    if script is not None:
        STATS["header_template"] += 1
        return script
    first_def = _first_def(text)
    if not first_def:
        return None
    body_start = first_def.start()
    if _HEADER_AFTER.search(text, max(body_start - 1, 0)):
        return None
    head = text[:body_start]
    if "\\" in head or "\x00" in head:
        return None  # escapes, line continuations; NUL bytes
    if not head.isascii():
        try:
            head.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: ast.parse refuses the text
            return None
    lines = split_lines(text)
    n = head.count("\n") if "\r" not in head else _line_at(text, body_start)
    headers: dict[str, HeaderValue] = {}
    imports: list[tuple[str, str]] = []
    doc_at: tuple[int, int, str] | None = None
    seen_statement = False
    i = 0
    while i < n:
        line = lines[i]
        c = line[:1]
        if not c or c == "#":
            i += 1
            continue
        if c == " " or c == "\t":
            rest = line.lstrip(" \t")
            if not rest or rest[0] == "#":
                i += 1
                continue
            return None  # an indented statement
        if c == '"' or c == "'":
            if seen_statement:
                return None  # a string that is not the module docstring
            seen_statement = True
            quote = line[:3]
            if quote != '"""' and quote != "'''":
                return None
            close = line.find(quote, 3)
            if close >= 0:
                value = line[3:close]
                last = i
            elif i == 0 and "\r" not in head:  # (the usual place) one search in the text, no line loop
                end = text.find(quote, 3, body_start)
                if end < 0:
                    return None  # not closed before the first def
                value = text[3:end]
                last = value.count("\n")
                close = end - text.rfind("\n", 0, end) - 1
            else:
                parts = [line[3:]]
                last = i + 1
                while last < n:
                    close = lines[last].find(quote)
                    if close >= 0:
                        break
                    parts.append(lines[last])
                    last += 1
                else:
                    return None  # not closed before the first def
                parts.append(lines[last][:close])
                value = "\n".join(parts)
            if not _FAST_TRAIL.fullmatch(lines[last], close + 3):
                return None
            doc_at = (i, last, value)
            i = last + 1
            continue
        seen_statement = True
        if c == "i" or c == "f":
            try:
                found = _import_cache[line]
            except KeyError:
                found = _fast_import(line)
                if len(_import_cache) < _CACHE_LIMIT and len(line) <= _CACHED_LINE:
                    _import_cache[line] = found
            if found is None:
                return None
            imports.extend(found)
        else:
            m = _FAST_ASSIGN.match(line)
            if not m:
                return None
            annotation = m.group(2)
            if annotation is not None and not _fast_annotation_ok(annotation):
                return None
            header = _fast_header_value(line, i, m.end())
            if header is None:
                return None
            headers[m.group(1)] = header
        i += 1
    src = _Source(text, lines)
    doc = _doc_header(src, doc_at[0], doc_at[1], doc_at[2], _span) if doc_at else None
    return _header_script(path, text, doc, tuple(imports), body_start, tuple(lines), headers.get("revision"),
                          headers.get("down_revision"), headers.get("branch_labels"), headers.get("depends_on"))


def _header_script(path: Path, text: str, doc: DocHeader | None, imports: tuple[tuple[str, str], ...],
                   body_start: int | None, lines: tuple[str, ...] | None, revision: HeaderValue | None,
                   down_revision: HeaderValue | None, branch_labels: HeaderValue | None,
                   depends_on: HeaderValue | None) -> MigrationScript:
    """The header-only script the template reader, the line scanner and `from_plain` build:
    the bodies are parsed on first use, from `body_start` on; `lines`: None when not split yet."""
    # (positional, in the order of the fields: keywords cost a third more, a file of a first check each)
    return MigrationScript(path, text, revision, down_revision, branch_labels, depends_on, doc, None, None, lines,
                           imports, body_start)



# --------------------------------------------------------------------------- plain data
#
# A header-only script as tuples of str / int / None (what `marshal` carries): the CLI's
# forked reader (engine/forked.py) parses half of a first check's files in another process
# and sends these back; `from_plain` builds records equal to the ones sent.

def _span_plain(span: Span) -> tuple[int, int, int, int]:
    return span.line, span.col, span.end_line, span.end_col


def _id_plain(found: IdString) -> tuple[str, tuple[int, int, int, int]]:
    span = found.span
    return found.value, (span.line, span.col, span.end_line, span.end_col)


def _value_plain(value: HeaderValue | None) -> tuple | None:
    if value is None:
        return None
    return tuple(map(_id_plain, value.ids)), value.unknown, _span_plain(value.span), _span_plain(value.value_span)


def to_plain(script: MigrationScript) -> tuple | None:
    """`script` as plain data, when it is a header-only one (bodies not parsed, no error);
    None otherwise (the receiver parses the text itself). Its lines are not sent: split on
    first use, to the same tuple."""
    if script.functions is not None or script.error is not None or script._module is not None:
        return None
    doc = script.doc
    plain_doc = None if doc is None else (
        doc.message, _span_plain(doc.span), _id_plain(doc.revision_id) if doc.revision_id else None,
        _span_plain(doc.revision_id_line) if doc.revision_id_line else None, tuple(map(_id_plain, doc.revises)),
        _span_plain(doc.revises_line) if doc.revises_line else None, doc.create_date)
    return (script.text, script._body_start, script.imports, plain_doc, _value_plain(script.revision),
            _value_plain(script.down_revision), _value_plain(script.branch_labels), _value_plain(script.depends_on))


_plain_values: dict[tuple, HeaderValue] = {}  # a value without ids (None, "", ()): one record for all files


def _plain_to_span(plain: tuple[int, int, int, int]) -> Span:
    span = _span_cache.get(plain)
    return span if span is not None else _span(*plain)


def _plain_to_ids(plain: tuple) -> tuple[IdString, ...]:
    get = _span_cache.get
    return tuple([IdString(value, get(span) or _span(*span)) for value, span in plain])


def _plain_to_value(plain: tuple | None) -> HeaderValue | None:
    if plain is None:
        return None
    ids, unknown, span, value_span = plain
    if ids:
        get = _span_cache.get
        return HeaderValue(_plain_to_ids(ids), unknown, get(span) or _span(*span), get(value_span) or _span(*value_span))
    value = _plain_values.get(plain)
    if value is None:
        value = HeaderValue((), unknown, _plain_to_span(span), _plain_to_span(value_span))
        if len(_plain_values) < _CACHE_LIMIT:
            _plain_values[plain] = value
    return value


def from_plain(path: Path, plain: tuple) -> MigrationScript:
    """The script `to_plain` described (ValueError / TypeError on data of another shape)."""
    text, body_start, imports, doc, revision, down_revision, branch_labels, depends_on = plain
    if not (isinstance(text, str) and (body_start is None or type(body_start) is int) and isinstance(imports, tuple)):
        raise TypeError("not a plain script")
    header = None
    if doc is not None:
        message, span, revision_id, revision_id_line, revises, revises_line, create_date = doc
        get = _span_cache.get
        header = DocHeader(message, get(span) or _span(*span),
                           IdString(revision_id[0], _plain_to_span(revision_id[1])) if revision_id else None,
                           _plain_to_span(revision_id_line) if revision_id_line else None,
                           _plain_to_ids(revises) if revises else (),
                           _plain_to_span(revises_line) if revises_line else None, create_date)
    return _header_script(path, text, header, imports, body_start, None, _plain_to_value(revision),
                          _plain_to_value(down_revision), _plain_to_value(branch_labels), _plain_to_value(depends_on))

# --------------------------------------------------------------------------- the template's header
#
# What Alembic's own script.py.mako templates render (generic, async, multidb, pyproject),
# matched whole by one regular expression: the docstring's seven lines with the three
# fields, a block of one-line imports, blank and comment lines (read once per distinct
# block), the four assignments in their order, blank and comment lines, then the first
# `def upgrade/downgrade`. One match in C instead of a Python loop over the lines (the
# header 32 -> ~20 us a file); anything else is left to the scanner above (then the ast path).

_T_ID = r"[0-9A-Za-z_]+"
_T_REST = r"[^\r\n\\\x00]"  # (no line break, escape or NUL anywhere in what is matched)
_T_TEXT = r'[^"\r\n\\\x00]'  # (nor a quote inside the docstring)


def _t_assign(name: str) -> str:
    """`name[: annotation] = value[  # comment]` on one line: groups (the line, the
    annotation, None, '...', "...", any other value up to the line's end, for the scanner's
    reader). No two ways to match a line: after a backtrack every alternative fails at once."""
    return (rf"({name}[ \t]*(?::([^=\r\n\\\x00]*))?=[ \t]*"
            rf"(?:(?:(None)|'([^'\r\n\\\x00]*)'|\"([^\"\r\n\\\x00]*)\")[ \t]*(?:#{_T_REST}*)?"
            rf"|((?:[^ \t\r\n\\\x00]{_T_REST}*)?)))\n")


_TEMPLATE = re.compile(
    rf'"""({_T_TEXT}*)\n'  # 1: the message
    r"\n"
    rf"Revision ID: ({_T_ID})\n"  # 2
    rf"Revises: ((?:{_T_ID}(?:, {_T_ID})*)?)\n"  # 3
    rf'Create Date: ((?:[^\s"\\\x00]{_T_TEXT}*)?)\n'  # 4
    r"\n"
    r'"""\n'
    rf"((?:(?:import|from)[ \t]{_T_REST}*\n|[ \t]*(?:#{_T_REST}*)?\n)*)"  # 5: imports, blank and comment lines
    + _t_assign("revision") + _t_assign("down_revision") + _t_assign("branch_labels") + _t_assign("depends_on")
    + rf"(?:[ \t]*(?:#{_T_REST}*)?\n)*"
    r"(?=def\s+(?:upgrade|downgrade)\s*\()"
)
_DOC_LINES = 7  # the template's docstring, the closing quotes included
# the pattern is given at most this much of the text (tests/test_linear_inputs.py: no pattern of
# unbounded width reads a whole file); a longer header is left to the scanner
_TEMPLATE_WINDOW = 2048
_block_imports_cache: dict[str, tuple[tuple[str, str], ...] | None] = {}


def _template_header(path: Path, text: str) -> MigrationScript | None:
    """The lazy header-only script `_parse` would build for a header of the template's exact
    shape, or None (the scanner decides)."""
    m = _TEMPLATE.match(text, 0, _TEMPLATE_WINDOW)
    if m is None:
        return None
    body_start = m.end()
    # (the first `def upgrade/downgrade` of the text: no line matched above starts with "def")
    after = body_start - 1
    if (text.find("\nrevision", after) >= 0 or text.find("\ndown_revision", after) >= 0
            or text.find("\nbranch_labels", after) >= 0 or text.find("\ndepends_on", after) >= 0) and \
            _HEADER_AFTER.search(text, after):
        return None  # a later assignment wins, as when Python runs the module
    if not text.isascii():
        try:
            text[:body_start].encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: ast.parse refuses the text
            return None
    groups = m.groups()
    block = groups[4]
    imports = _block_imports_cache.get(block)
    if imports is None:
        imports = _block_imports(block)
        if imports is None:
            return None
        if len(_block_imports_cache) < _CACHE_LIMIT and len(block) <= 10 * _CACHED_LINE:
            _block_imports_cache[block] = imports
    n = _DOC_LINES + block.count("\n")
    values = []
    for g in (5, 11, 17, 23):  # each assignment's groups: line, annotation, None, '...', "...", other
        annotation = groups[g + 1]
        if annotation is not None and not _fast_annotation_ok(annotation):
            return None
        line_start = m.start(g + 1)  # (m.start counts groups from 1, `groups` from 0)
        quoted = groups[g + 3] if groups[g + 3] is not None else groups[g + 4]
        if quoted is not None:  # a plain string: built here, as _scan_header_value builds it
            start = m.start(g + 4 if groups[g + 3] is not None else g + 5) - 1 - line_start
            end = start + len(quoted) + 2
            ids = (IdString(quoted, _span(n, start + 1, n, end - 1)),) if quoted else ()
            value: HeaderValue | None = HeaderValue(ids, (), _span(n, 0, n, end), _span(n, start, n, end))
        else:  # None (shared by every file), or anything else for the scanner's reader
            value = _fast_header_value(groups[g], n, m.start(g + 3 if groups[g + 2] is not None else g + 6)
                                       - line_start)
            if value is None:
                return None
        values.append(value)
        n += 1
    message, rid, revises_text = groups[0], groups[1], groups[2]
    revises = []
    at = 9
    for token in revises_text.split(", ") if revises_text else ():
        revises.append(IdString(token, _span(3, at, 3, at + len(token))))
        at += len(token) + 2
    rid_span = _span(2, 13, 2, 13 + len(rid))
    doc = DocHeader(
        message=_first_line_message(message.lstrip()) if message.strip() else "",
        span=_span(0, 0, _DOC_LINES - 1, 3),
        revision_id=IdString(rid, rid_span),
        revision_id_line=rid_span,
        revises=tuple(revises),
        revises_line=_span(3, 9, 3, 9 + len(revises_text)),
        create_date=groups[3].rstrip(),
    )
    return _header_script(path, text, doc, imports, body_start, None, *values)


def _block_imports(block: str) -> tuple[tuple[str, str], ...] | None:
    """The imports of the template's import block (one-line imports, blank and comment
    lines), read as the scanner reads them; None when a line is not of that kind."""
    imports: list[tuple[str, str]] = []
    for line in block.split("\n")[:-1]:
        rest = line.lstrip(" \t")
        if not rest or rest[0] == "#":
            continue
        if len(rest) != len(line) or not line.startswith(("import", "from")):
            return None  # an indented statement, or not an import
        found = _fast_import(line)
        if found is None:
            return None
        imports.extend(found)
    return tuple(imports)


def _blank_or_comments(text: str) -> bool:
    """Is every line of `text` blank or a comment (spaces and tabs before it)?"""
    if not text.strip("\n"):
        return True
    return all(not rest or rest[0] == "#" for rest in (line.lstrip(" \t") for line in text.split("\n")))


def _first_def(text: str) -> re.Match | None:
    """`_DEF_START.search(text)`, faster: only where a line starts with "def"."""
    if text.startswith("def"):
        m = _DEF_START.match(text)
        if m:
            return m
    i = 0
    while True:
        i = text.find("\ndef", i)
        if i < 0:
            return None
        m = _DEF_START.match(text, i + 1)
        if m:
            return m
        i += 1


def _span(line: int, col: int, end_line: int, end_col: int) -> Span:
    """An equal Span, shared: they repeat from file to file (same template, same layout)."""
    key = (line, col, end_line, end_col)
    span = _span_cache.get(key)
    if span is None:
        span = Span(line, col, end_line, end_col)
        if len(_span_cache) < _CACHE_LIMIT:
            _span_cache[key] = span
    return span


def _fast_header_value(line: str, n: int, start: int) -> HeaderValue | None:
    key = (line, n)
    value = _value_cache.get(key)
    if value is None:
        value = _scan_header_value(line, n, start)
        if value is not None and not value.ids and len(_value_cache) < _CACHE_LIMIT and len(line) <= _CACHED_LINE:
            _value_cache[key] = value  # None / empty: the same in many files
    return value


def _scan_header_value(line: str, n: int, start: int) -> HeaderValue | None:
    """The right-hand side at line[start:] when it is None, a plain string or a one-line
    tuple / list of those, followed by nothing but a comment."""
    c = line[start : start + 1]
    ids: list[IdString] = []
    unknown: list[str] = []
    if c == "(" or c == "[":
        closing = ")" if c == "(" else "]"
        p = _FAST_WS.match(line, start + 1).end()  # type: ignore[union-attr]
        count = commas = 0
        nones = 0
        if line[p : p + 1] != closing:
            while True:
                m = _FAST_STRING.match(line, p)
                if m:
                    value = m.group(1) if m.group(1) is not None else m.group(2)
                    if value:
                        ids.append(IdString(value, _span(n, p + 1, n, m.end() - 1)))
                    p = m.end()
                elif line.startswith("None", p) and (len(line) == p + 4 or line[p + 4] in _NONE_FOLLOWERS):
                    nones += 1
                    p += 4
                else:
                    return None
                count += 1
                p = _FAST_WS.match(line, p).end()  # type: ignore[union-attr]
                c = line[p : p + 1]
                if c == ",":
                    commas += 1
                    p = _FAST_WS.match(line, p + 1).end()  # type: ignore[union-attr]
                    if line[p : p + 1] == closing:
                        break
                elif c == closing:
                    break
                else:
                    return None
            if closing == ")" and not commas:
                return None  # `(x)` is x, not a tuple
            if nones and count > 1:
                unknown = ["None"] * nones
        end = p + 1
    elif c == "'" or c == '"':
        m = _FAST_STRING.match(line, start)
        if not m:
            return None
        value = m.group(1) if m.group(1) is not None else m.group(2)
        end = m.end()
        if value:
            ids.append(IdString(value, _span(n, start + 1, n, end - 1)))
    elif line.startswith("None", start) and (len(line) == start + 4 or line[start + 4] in _NONE_FOLLOWERS):
        end = start + 4
    else:
        return None
    if not _FAST_TRAIL.fullmatch(line, end):
        return None
    return HeaderValue(tuple(ids), tuple(unknown), _span(n, 0, n, end), _span(n, start, n, end))


def _fast_import(line: str) -> tuple[tuple[str, str], ...] | None:
    """What `_imports` reads from a one-line `import a.b as c, d` or `from a.b import (c as
    d, e)`; None when the line is anything else (relative imports, continuation lines...)."""
    code = line.partition("#")[0].rstrip(" \t")
    out: list[tuple[str, str]] = []
    m = _FAST_FROM.fullmatch(code)
    if m:
        module = m.group(1)
        if not _fast_names_ok(module.split(".")):
            return None
        if m.group(2) is not None:  # parenthesized: a trailing comma is fine
            items = m.group(2).strip(" \t")
            items = items.removesuffix(",")
        else:
            items = m.group(3)
            if items == "*":
                return None if module == "__future__" else ()
        for item in items.split(","):
            im = _FAST_FROM_ITEM.fullmatch(item.strip(" \t"))
            if not im or not _fast_names_ok((im.group(1), im.group(2))):
                return None
            if module == "__future__" and im.group(1) not in _HARMLESS_FUTURES:
                return None
            out.append((im.group(2) or im.group(1), f"{module}.{im.group(1)}"))
        return tuple(out)
    m = _FAST_IMPORT.fullmatch(code)
    if not m:
        return None
    for item in m.group(1).split(","):
        im = _FAST_IMPORT_ITEM.fullmatch(item.strip(" \t"))
        if not im or not _fast_names_ok((*im.group(1).split("."), im.group(2))):
            return None
        if im.group(2):
            out.append((im.group(2), im.group(1)))
        else:
            root = im.group(1).split(".")[0]
            out.append((root, root))
    return tuple(out)


def _fast_names_ok(names) -> bool:
    return not any(name in _KEYWORDS for name in names if name is not None)


def _fast_annotation_ok(annotation: str) -> bool:
    if len(annotation) > _CACHED_LINE:
        return False  # not what a template writes (and keeps the recursive check shallow)
    ok = _annotation_ok.get(annotation)
    if ok is None:
        ok = _check_annotation(annotation)
        if len(_annotation_ok) < _CACHE_LIMIT:
            _annotation_ok[annotation] = ok
    return ok


def _check_annotation(annotation: str) -> bool:
    """Is it an expression of this grammar (all of it valid Python)?
        expr := term ('|' term)*
        term := 'None' | '...' | NAME ('.' NAME)* ['[' expr (',' expr)* [','] ']']
    with NAME any identifier that is not a keyword."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while True:
        pos = _FAST_WS.match(annotation, pos).end()  # type: ignore[union-attr]
        if pos == len(annotation):
            break
        m = _FAST_ANN_TOKEN.match(annotation, pos)
        if not m:
            return False
        if m.group(1):
            tokens.append(("name", m.group(1)))
        elif m.group(2):
            tokens.append(("...", "..."))
        else:
            tokens.append((m.group(3), m.group(3)))
        pos = m.end()
    tokens.append(("end", ""))
    at = 0

    def expr() -> bool:
        nonlocal at
        if not term():
            return False
        while tokens[at][0] == "|":
            at += 1
            if not term():
                return False
        return True

    def term() -> bool:
        nonlocal at
        kind, value = tokens[at]
        if kind == "...":
            at += 1
            return True
        if kind != "name":
            return False
        at += 1
        if value == "None":
            return True
        if value in _KEYWORDS:
            return False
        while tokens[at][0] == ".":
            if tokens[at + 1][0] != "name" or tokens[at + 1][1] in _KEYWORDS:
                return False
            at += 2
        if tokens[at][0] == "[":
            at += 1
            if not expr():
                return False
            while tokens[at][0] == ",":
                at += 1
                if tokens[at][0] == "]":
                    break
                if not expr():
                    return False
            if tokens[at][0] != "]":
                return False
            at += 1
        return True

    return expr() and tokens[at][0] == "end"


def _imports(body: list[ast.stmt]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for stmt in body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    out.append((alias.asname, alias.name))
                else:
                    root = alias.name.split(".")[0]
                    out.append((root, root))
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
            for alias in stmt.names:
                if alias.name != "*":
                    out.append((alias.asname or alias.name, f"{stmt.module}.{alias.name}"))
    return tuple(out)


def _constants(body: list[ast.stmt]) -> dict[str, str]:
    out: dict[str, str] = {}
    for stmt in body:
        pair = _assignment(stmt)
        if pair and pair[0] not in HEADER_NAMES:
            name, value = pair
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                out[name] = value.value
    return out


def _from_module(path: Path, src: _Source, body: list[ast.stmt], offset: int, syntax_error: str | None,
                 lazy: bool = False) -> MigrationScript:
    headers: dict[str, HeaderValue] = {}
    functions: dict[str, Function] = {}
    constants = _constants(body)
    doc = None
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        doc = _doc_header(src, first.lineno - 1, (first.end_lineno or first.lineno) - 1, first.value.value)
    for stmt in body:
        pair = _assignment(stmt)
        if pair and pair[0] in HEADER_NAMES:
            headers[pair[0]] = _header_value(src, stmt, pair[1], offset, constants)
        elif isinstance(stmt, ast.FunctionDef) and stmt.name in ("upgrade", "downgrade"):
            functions[stmt.name] = _function(src, stmt, offset)
    return MigrationScript(
        path=path,
        text=src.text,
        doc=doc,
        functions=None if lazy else functions,
        error=syntax_error,
        _lines=tuple(src.lines),
        imports=_imports(body),
        revision=headers.get("revision"),
        down_revision=headers.get("down_revision"),
        branch_labels=headers.get("branch_labels"),
        depends_on=headers.get("depends_on"),
    )


_HEADER_START = re.compile(r"^(revision|down_revision|branch_labels|depends_on)\s*(?::[^=\n]*)?=(?!=)", re.MULTILINE)
_DEF_START = re.compile(r"^def\s+(upgrade|downgrade)\s*\(", re.MULTILINE)
_TOP_LEVEL = re.compile(r"^[^\s#)\]}]")
_MAX_STATEMENT_LINES = 40


def _parse_piece(lines: Sequence[str]) -> list[ast.stmt] | None:
    try:
        return ast.parse("\n".join(lines)).body
    except (SyntaxError, ValueError):
        return None


def _parse_tolerant(path: Path, src: _Source, error: str) -> MigrationScript:
    lines = src.lines
    headers: dict[str, HeaderValue] = {}
    functions: dict[str, Function] = {}
    constants: dict[str, str] = {}
    for line_no, line in enumerate(lines):
        m = re.match(r"^([A-Za-z_]\w*)\s*(?::[^=\n]*)?=\s*(['\"])([^'\"\n]*)\2\s*(#.*)?$", line)
        if m and m.group(1) not in HEADER_NAMES:
            constants[m.group(1)] = m.group(3)
    for m in _HEADER_START.finditer(src.text):
        first = _line_at(src.text, m.start())
        for last in range(first, min(first + _MAX_STATEMENT_LINES, len(lines))):
            body = _parse_piece(lines[first : last + 1])
            pair = _assignment(body[0]) if body and len(body) == 1 else None
            if body and pair:
                name, value = pair
                # the last assignment wins, as when Python runs the module
                headers[name] = _header_value(src, body[0], value, first, constants)
                break
    for m in _DEF_START.finditer(src.text):
        first = _line_at(src.text, m.start())
        last = first + 1
        while last < len(lines) and not _TOP_LEVEL.match(lines[last]):
            last += 1
        piece = lines[first:last]
        # Cut at the first line that breaks the parse until what is left parses.
        while piece:
            body = _parse_piece(piece)
            if body is not None:
                break
            try:
                ast.parse("\n".join(piece))
            except SyntaxError as err:
                cut = (err.lineno or len(piece)) - 1
            except ValueError:
                cut = len(piece) - 1
            cut = min(max(cut, 1), len(piece) - 1)
            piece = piece[:cut]
            if len(piece) == 1:
                piece = [*piece, "    pass"]
                body = _parse_piece(piece)
                break
        if body and isinstance(body[0], ast.FunctionDef):
            functions[body[0].name] = _function(src, body[0], first)
    doc = _tolerant_doc(src, headers)
    import_lines = [line for line in lines if line.startswith(("import ", "from "))]
    imports = _imports([stmt for line in import_lines for stmt in (_parse_piece([line]) or [])])
    return MigrationScript(
        path=path,
        text=src.text,
        doc=doc,
        functions=functions,
        error=error,
        _lines=tuple(src.lines),
        imports=imports,
        revision=headers.get("revision"),
        down_revision=headers.get("down_revision"),
        branch_labels=headers.get("branch_labels"),
        depends_on=headers.get("depends_on"),
    )


def _tolerant_doc(src: _Source, headers: dict[str, HeaderValue]) -> DocHeader | None:
    """The docstring when the module does not parse: the text before the header."""
    stop = min((h.span.line for h in headers.values()), default=min(len(src.lines), 40))
    text = "\n".join(src.lines[:stop])
    m = re.search(r"^[rRuU]?(\"\"\"|''')(.*?)(\1|\Z)", text, re.DOTALL | re.MULTILINE)
    if not m:
        return None
    first = text.count("\n", 0, m.start())
    last = first + m.group(0).count("\n")
    return _doc_header(src, first, last, m.group(2))


def project_import(path: str) -> bool:
    """An import of the project's own code: neither sqlalchemy / alembic nor the standard
    library (`from typing import Sequence` of Alembic's template)."""
    top = path.partition(".")[0]
    return top not in SAFE_PACKAGES and top not in sys.stdlib_module_names


def reads_outside(script: MigrationScript) -> bool:
    """Can evaluating `script` ask another file anything (outside.tablename)? Only through
    a name imported at module level from the project's code (a local import of one is
    opaque), and only as `X.__tablename__` or inside `ForeignKey(...)` (the interpreter has
    no getattr: either is written in the file). Most migrations cannot: their keys and
    replays never look at another file."""
    return ("__tablename__" in script.text or "ForeignKey" in script.text) and any(
        project_import(path) for _, path in script.imports)
