"""Rule family S, for every dialect: what breaks a revision outside the one way it was
tried (S017, S019, S020, S021).

- S017 (info): renaming a table or a column breaks the application version still running
  while the deploy happens (its queries name the old table or column). Only for tables and
  columns that existed before the revision.
- S019: `alembic upgrade --sql` (offline mode) runs upgrade() against a mock connection that
  writes SQL out and returns nothing: `inspect()` of the bind raises, and reading rows of a
  result (`fetchall()`, `scalar()`, iterating it, an ORM Session on the bind) fails. Using
  `op.get_bind()` only to look at the dialect or to execute statements works offline and is
  not reported. Silenced inside `if not context.is_offline_mode():` (or the `else` of
  `if context.is_offline_mode():`), or after an early `return` under such a test.
- S020: a revision that imports the application's models (a module of the project, found in
  the project's source tree, whose dotted path has a `models` / `model` / `orm` / `entities`
  part, or the module env.py takes `target_metadata` from): the revision runs the models as
  they are on the day it is run, not as they were when it was written.
- S021: a constraint whose name is `None`: `drop_constraint(None, ...)` cannot be emitted on
  any dialect (SQLAlchemy: "Can't emit DROP CONSTRAINT ... it has no name"); creating one in
  `batch_alter_table` fails on SQLite, where the batch rebuilds the table ("Constraint must
  have a name"). Error where it fails for sure (in upgrade(); the batch form on SQLite),
  warning in downgrade() and for the batch form on other dialects.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic.operations import ops as alembic_ops

from ..core import Diagnostic, Severity, Span
from ..replay import RevisionSchema
from ..rules import severity
from ..schema import table_key
from ..scripts import Function, MigrationScript, OpCall
from .env_py import EnvPy
from .walk import (
    Existing,
    FunctionTree,
    Tables,
    function_tree,
    keyword,
    literal,
    op_target,
    upgrade_ops,
)

FETCH_METHODS = frozenset({"fetchall", "fetchone", "fetchmany", "scalar", "scalar_one", "scalar_one_or_none",
                           "scalars", "first", "one", "one_or_none", "all", "mappings", "partitions", "keys"})
SESSION_NAMES = frozenset({"Session", "sessionmaker", "scoped_session"})
MODEL_PARTS = frozenset({"models", "model", "orm", "entities"})
PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "alembic.ini", ".git")
NEVER_APPLICATION = frozenset({"alembic", "sqlalchemy", "__future__", "sqlmodel", "geoalchemy2", "sqlalchemy_utils"})
CONSTRAINT_CREATES = frozenset({"create_foreign_key", "create_unique_constraint", "create_check_constraint",
                                "create_primary_key", "create_exclude_constraint"})


def check_portable(script: MigrationScript, schema: RevisionSchema, dialect: str | None, env_name: str,
                   env_py: EnvPy | None = None) -> list[Diagnostic]:
    """S017, S019, S020, S021 on one revision (every dialect)."""
    dialect = (dialect or "").lower() or None
    out: list[Diagnostic] = []
    for rule in (lambda: _renames(script, schema, dialect, env_name), lambda: _offline(script, env_name),
                 lambda: _model_imports(script, env_name, env_py or EnvPy()),
                 lambda: _unnamed_constraints(script, dialect, env_name)):
        try:
            out += rule()
        except Exception:  # noqa: BLE001, S110 - a half-typed revision must never take the other findings down
            pass
    return out


def _report(out: list[Diagnostic], code: str, script: MigrationScript, span: Span, message: str, env_name: str,
            level: Severity | None = None, **data: Any) -> None:
    out.append(Diagnostic(code, severity(code, level), script.path, span, message, env_name,
                          {"code": code, **data}))


# --------------------------------------------------------------------------- S017


def _renames(script: MigrationScript, schema: RevisionSchema, dialect: str | None, env_name: str) -> list[Diagnostic]:
    if script.upgrade is None:
        return []
    tree = function_tree(script, script.upgrade)
    tables = Tables(Existing(schema.before.tables), schema.before.uncertain)
    out: list[Diagnostic] = []
    for ev in upgrade_ops(script, schema, dialect):
        call, op = ev.call, ev.op
        target = op_target(call, tree)
        key = target.key
        if not key:
            continue
        if call.name == "create_table":
            tables.created(key)
        elif call.name == "drop_table":
            tables.dropped(key)
        elif isinstance(op, alembic_ops.AddColumnOp):
            tables.added.add((key, op.column.name))
        elif call.name == "rename_table" and isinstance(op, alembic_ops.RenameTableOp):
            if tables.is_existing(key, target.name):
                _report(out, "S017", script, call.span,
                        f"renaming table '{target.name}' to '{op.new_table_name}' breaks the application version "
                        f"still running during the deploy (its queries name '{target.name}'); create the new "
                        f"table or a view, move the code over, then drop the old name", env_name,
                        table=target.name)
            tables.renamed(key, table_key(op.new_table_name, target.schema))
        elif isinstance(op, alembic_ops.AlterColumnOp) and op.modify_name \
                and tables.is_existing(key, target.name) and (key, op.column_name) not in tables.added:
            _report(out, "S017", script, call.span,
                    f"renaming column '{target.name}.{op.column_name}' to '{op.modify_name}' breaks the "
                    f"application version still running during the deploy (its queries name "
                    f"'{op.column_name}'); add the new column, write both, backfill, move the reads, then "
                    f"drop the old one", env_name, table=target.name, column=op.column_name)
    return out


# --------------------------------------------------------------------------- S019


_OFFLINE_WORDS = re.compile(r"inspect|execute|Session|sessionmaker|\.scalar")


def _offline(script: MigrationScript, env_name: str) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for function in (script.upgrade, script.downgrade):
        if function is None or function.node is None:
            continue
        text = "\n".join(script.lines[function.span.line:function.span.end_line + 1])
        if _OFFLINE_WORDS.search(text):  # (most functions have nothing to look at)
            out += _offline_function(script, function, env_name)
    return out


def _offline_function(script: MigrationScript, function: Function, env_name: str) -> list[Diagnostic]:
    tree = function_tree(script, function)
    imports = dict(script.imports)
    binds: set[str] = set()  # names holding op.get_bind() / a connection
    results: set[str] = set()  # names holding the result of an execute()
    found: list[tuple[ast.expr, str]] = []

    def is_bind(node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in binds
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return node.func.attr in ("get_bind", "connect")
        if isinstance(node, ast.Attribute):  # op.get_context().bind / .connection
            return node.attr in ("bind", "connection") and isinstance(node.value, ast.Call)
        return False

    def is_execute(node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in ("execute", "exec_driver_sql") and is_bind(node.func.value)

    def is_result(node: ast.AST) -> bool:
        return is_execute(node) or (isinstance(node, ast.Name) and node.id in results)

    def is_inspect(node: ast.Call) -> bool:
        func = node.func
        if isinstance(func, ast.Name):
            return imports.get(func.id, "").rsplit(".", 1)[-1] == "inspect" and \
                imports.get(func.id, "").startswith("sqlalchemy")
        if isinstance(func, ast.Attribute):
            if func.attr == "inspect" and isinstance(func.value, ast.Name):
                return imports.get(func.value.id, "").startswith("sqlalchemy")
            return func.attr == "from_engine" and isinstance(func.value, ast.Name) and func.value.id == "Inspector"
        return False

    def is_session(node: ast.Call) -> bool:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name in SESSION_NAMES and any(is_bind(a) for a in [*node.args, *(k.value for k in node.keywords)])

    nodes = list(ast.walk(function.node)) if function.node is not None else []  # (_offline checked)
    for node in nodes:  # what names hold, first (a name used before its assignment is rare)
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            value = node.value
            if is_bind(value):
                binds.add(name)
            elif is_execute(value):
                results.add(name)
        elif isinstance(node, ast.With):
            for item in node.items:
                if isinstance(item.optional_vars, ast.Name) and is_bind(item.context_expr):
                    binds.add(item.optional_vars.id)
    for node in nodes:
        if isinstance(node, ast.Call):
            func = node.func
            if is_inspect(node):
                found.append((node, "inspect() needs a live connection"))
            elif is_session(node):
                found.append((node, "an ORM Session on the bind reads rows"))
            elif isinstance(func, ast.Attribute) and func.attr in FETCH_METHODS and is_result(func.value):
                found.append((node, f".{func.attr}() reads rows of a result"))
            elif isinstance(func, ast.Attribute) and func.attr in ("scalar", "scalars") and is_bind(func.value):
                found.append((node, f".{func.attr}() reads a row"))
            elif isinstance(func, ast.Name) and func.id in ("list", "tuple", "dict", "set") and node.args \
                    and is_result(node.args[0]):
                found.append((node, "reading the rows of a result"))
        elif isinstance(node, (ast.For, ast.comprehension)) and is_result(node.iter):
            found.append((node.iter, "iterating a result reads its rows"))
    out: list[Diagnostic] = []
    seen: set[int] = set()
    for node, why in found:
        if _guarded(tree, node):
            continue
        span = tree.span(node)
        if span.line in seen:
            continue
        seen.add(span.line)
        _report(out, "S019", script, span,
                f"{why}: `alembic {function.name} --sql` (offline mode) fails here — the bind is a mock that "
                f"only writes SQL out; put it under `if not context.is_offline_mode():` (from alembic import "
                f"context)", env_name, function=function.name)
    return out


def _offline_test(test: ast.AST) -> bool | None:
    """True: the test is true offline (`context.is_offline_mode()`, `...as_sql`); False: it
    is true online (`not ...`); None: not such a test."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _offline_test(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.Call):
        test = test.func
    if isinstance(test, ast.Attribute) and test.attr in ("is_offline_mode", "as_sql"):
        return True
    if isinstance(test, ast.Name) and test.id in ("is_offline_mode", "as_sql", "offline"):
        return True
    # a compound test naming offline mode: the author knows
    if isinstance(test, ast.BoolOp) and any(_offline_test(v) is not None for v in test.values):
        return False
    return None


def _guarded(tree: FunctionTree, node: ast.AST) -> bool:
    child = node
    for anc in tree.ancestors(node):
        if isinstance(anc, ast.If):
            offline = _offline_test(anc.test)
            if offline is not None:
                in_body = any(child is s for s in anc.body)
                return in_body != offline  # online branch
        if isinstance(anc, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module, ast.If, ast.For, ast.While,
                            ast.With, ast.Try)):
            body = getattr(anc, "body", [])
            index = next((i for i, s in enumerate(body) if s is child), None)
            if index is not None and any(_early_exit(s) for s in body[:index]):
                return True
        child = anc
    return False


def _early_exit(stmt: ast.stmt) -> bool:
    """`if context.is_offline_mode(): ... return` (the rest only runs online)."""
    return isinstance(stmt, ast.If) and _offline_test(stmt.test) is True and bool(stmt.body) \
        and isinstance(stmt.body[-1], (ast.Return, ast.Raise))


# --------------------------------------------------------------------------- S020


_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\b|import\s+([\w.]+))")


def _model_imports(script: MigrationScript, env_name: str, env_py: EnvPy) -> list[Diagnostic]:
    # cheap first: import lines of something outside the standard library, Alembic, SQLAlchemy
    # that name a models-like part or what env.py takes the metadata from
    leaves = [m.rsplit(".", 1)[-1] for m in env_py.models]
    words = re.compile(r"\b(?:models?|orm|entities" + "".join(f"|{re.escape(w)}" for w in leaves) + r")\b")
    if not any(_candidate(m.group(1) or m.group(2)) and words.search(m.string)
               for m in (_IMPORT.match(line) for line in script.lines if "import" in line) if m):
        return []
    try:
        module = ast.parse(script.text)
    except (SyntaxError, ValueError):
        return []
    env_models = {m for m in env_py.models if _candidate(m)}
    out: list[Diagnostic] = []
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            written = node.module
            dotted = [written] + [f"{written}.{alias.name}" for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Import):
            written = node.names[0].name
            dotted = [alias.name for alias in node.names]
        else:
            continue
        models = next((d for d in dotted if _candidate(d) and (set(d.split(".")) & MODEL_PARTS or d in env_models
                                                               or d.rpartition(".")[0] in env_models)), None)
        if models is None or not _in_project(script.path.parent, models.split(".")[0]):
            continue
        line = node.lineno - 1
        text = script.lines[line] if line < len(script.lines) else ""
        col = text.find(written)
        col = max(col, 0)
        _report(out, "S020", script, Span(line, col, line, col + len(written)),
                f"this revision imports the application's models ({models}): it will run against the models as "
                f"they are on the day it is run, not as they were when it was written, and breaks when they "
                f"change; describe the tables it needs here (sa.table()/sa.column() or a local MetaData)",
                env_name, module=models)
    return out


def _candidate(dotted: str | None) -> bool:
    top = (dotted or "").split(".")[0]
    return bool(top) and top not in NEVER_APPLICATION and top not in sys.stdlib_module_names


def _in_project(start: Path, top: str) -> bool:
    """Is `top` a package or module of the project (found in the source tree from the revision's
    folder up to the project root, or in that root's src/)?"""
    return _find_module(str(start), top)


@lru_cache(maxsize=4096)
def _find_module(start: str, top: str) -> bool:
    path = Path(start)
    for folder in (path, *path.parents):
        if folder.name == top and os.path.isfile(folder / "__init__.py"):
            return True  # the revision lives inside package `top`
        for base in (folder, folder / "src"):
            if os.path.isfile(base / top / "__init__.py") or os.path.isfile(base / f"{top}.py"):
                return True
        if any(os.path.exists(folder / marker) for marker in PROJECT_MARKERS) and folder != path \
                and not os.path.isfile(folder / "__init__.py"):
            return False
    return False


# --------------------------------------------------------------------------- S021


def _unnamed_constraints(script: MigrationScript, dialect: str | None, env_name: str) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for function in (script.upgrade, script.downgrade):
        if function is None:
            continue
        upgrade = function.name == "upgrade"
        for call in function.ops:
            if not _name_is_none(call):
                continue
            if call.name == "drop_constraint":
                level = Severity.ERROR if upgrade else Severity.WARNING
                _report(out, "S021", script, call.span,
                        "drop_constraint(None, ...): a constraint without a name cannot be dropped — Alembic raises "
                        "\"Can't emit DROP CONSTRAINT ... it has no name\" on every dialect; write the name the "
                        "database gave it (or set a naming_convention on the MetaData so names are known)",
                        env_name, level, function=function.name)
            elif call.name in CONSTRAINT_CREATES and call.batch_table is not None:
                sure = dialect == "sqlite" and upgrade
                _report(out, "S021", script, call.span,
                        f"batch_op.{call.name}(None, ...): batch mode rebuilds the table on SQLite and Alembic then "
                        f"raises \"Constraint must have a name\"; give the constraint a name (a later drop needs it "
                        f"too)", env_name, Severity.ERROR if sure else Severity.WARNING, function=function.name)
    return out


def _name_is_none(call: OpCall) -> bool:
    node = call.node
    if node.args:
        return isinstance(node.args[0], ast.Constant) and node.args[0].value is None
    kw = keyword(node, "constraint_name") or keyword(node, "name")
    return kw is not None and literal(kw.value, "x") is None

