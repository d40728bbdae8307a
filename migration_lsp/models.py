"""Stage `models`: the project's target MetaData, loaded in a child process.

Project code never runs in our process: a child (the project's interpreter) imports the
models and prints them as JSON (model_child.py); we rebuild tables from that with the
static evaluator, so nothing the child sends can execute here. Only a trusted workspace
loads models; a timeout, a memory limit and a crash all become one clear reason (M004).
Where target_metadata comes from is read statically from env.py unless the `models`
setting says it.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa

from . import child
from .core import Span
from .project import Environment, alembic_config, read_text
from .evaluate import OpaqueType, type_from_repr
from .schema import Origin, TableState

CHILD = Path(__file__).with_name("model_child.py")
TIMEOUT = 30.0
MEMORY_LIMIT = 2 * 1024**3


@dataclass(frozen=True)
class MetadataSource:
    """Where target_metadata comes from, and where env.py says so (for M004)."""

    specs: tuple[str, ...]
    env_py: Path | None
    span: Span | None  # the `target_metadata = ...` line
    problem: str | None = None  # why we cannot tell (or that it is None)
    disabled: bool = False  # `target_metadata = None`: the project compares nothing


@dataclass(frozen=True)
class ModelTables:
    tables: dict[str, TableState] = field(default_factory=dict)
    error: str | None = None
    files: tuple[Path, ...] = ()  # project files the import read: reload when they change


def metadata_source(env: Environment) -> MetadataSource:
    """`models` setting, else env.py's `target_metadata = ...` and the import it comes from."""
    env_py = env.env_py
    span = None
    if env.settings.models:
        return MetadataSource((env.settings.models,), env_py, None)
    if env_py is None:
        return MetadataSource((), None, None, "no env.py: set `models` in [tool.migration-lsp]")
    try:
        tree = ast.parse(read_text(env_py))
    except (SyntaxError, ValueError, OSError) as exc:
        return MetadataSource((), env_py, None, f"cannot read env.py: {exc}")
    imports: dict[str, str] = {}
    value = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                imports[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
            for alias in stmt.names:
                imports[alias.asname or alias.name] = f"{stmt.module}.{alias.name}"
                if (alias.asname or alias.name) == "target_metadata":  # `from app.db import metadata as target_metadata`
                    value = ast.Name("target_metadata", ast.Load())
                    span = Span(stmt.lineno - 1, 0, (stmt.end_lineno or stmt.lineno) - 1, stmt.end_col_offset or 0)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(t, ast.Name) and t.id == "target_metadata" for t in targets):
                value = stmt.value
                span = Span(stmt.lineno - 1, 0, (stmt.end_lineno or stmt.lineno) - 1, stmt.end_col_offset or 0)
    if value is None:
        return MetadataSource((), env_py, None, "env.py has no `target_metadata = ...`")
    if isinstance(value, ast.Constant) and value.value is None:
        return MetadataSource((), env_py, span, "env.py sets target_metadata = None (no models to compare)",
                              disabled=True)
    elements = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
    specs = []
    for element in elements:
        dotted = _dotted(element)
        root = dotted.split(".")[0] if dotted else None
        if not dotted or root not in imports:
            return MetadataSource((), env_py, span,
                                  f"cannot tell statically where `{ast.unparse(value)}` comes from: "
                                  "set `models` in [tool.migration-lsp]")
        specs.append(imports[root] + dotted[len(root):])
    return MetadataSource(tuple(specs), env_py, span)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def interpreter(env: Environment) -> str:
    if env.settings.python:
        python = Path(env.settings.python)
        return str(python if python.is_absolute() else env.root / python)
    for venv in (env.root / ".venv", env.root / "venv"):
        for candidate in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
            if candidate.exists():
                return str(candidate)
    return sys.executable


def _sys_path(env: Environment) -> list[str]:
    base = env.config_path.parent if env.config_path else env.root
    entries = [str(base), str(env.root)]
    if env.config_path and env.config_path.suffix == ".ini":
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # read by us: regular file, bounded interpolation
                extra = alembic_config(env.config_path).get_prepend_sys_paths_list() or []
            entries = [str((base / p).resolve()) for p in extra if p] + entries
        except Exception:
            pass
    return entries


def load_models(env: Environment, source: MetadataSource, timeout: float | None = None) -> ModelTables:
    """Run the child (sandboxed by child.py); never raises. `timeout` defaults to the
    module's TIMEOUT (read at call time, so it can be configured)."""
    timeout = TIMEOUT if timeout is None else timeout
    if not source.specs:
        return ModelTables(error=source.problem or "no models")
    config = {
        "specs": list(source.specs),
        "sys_path": _sys_path(env),
        "cwd": str(env.config_path.parent if env.config_path else env.root),
        "dialect": env.dialect,
        "root": str(env.root),
    }
    try:
        payload = child.run(interpreter(env), str(CHILD), [json.dumps(config)], cwd=config["cwd"],
                            timeout=timeout, memory=MEMORY_LIMIT)
    except child.ChildError as exc:
        return ModelTables(error=f"model loader {exc}")
    try:
        data = json.loads(payload)
    except ValueError:
        return ModelTables(error="model loader sent unreadable output")
    if not isinstance(data, dict):
        return ModelTables(error="model loader sent unreadable output")
    if data.get("error"):
        return ModelTables(error=f"importing {', '.join(source.specs)} failed: {data['error']}")
    tables = {}
    parsed: dict[Path, tuple[ast.Module, list[str]] | None] = {}
    for info in data.get("tables", []):
        table = _table(info, env.dialect, parsed)
        tables[table.key] = table
    return ModelTables(tables, None, tuple(Path(f) for f in data.get("files", [])))


def _table(info: dict, dialect: str | None, parsed: dict[Path, tuple[ast.Module, list[str]] | None]) -> TableState:
    """Rebuild a table from the child's description (static evaluation only)."""
    metadata = sa.MetaData()
    columns = []
    for c in info["columns"]:
        t = c["type"]
        type_ = type_from_repr(t["repr"], t["module"])
        if isinstance(type_, OpaqueType) and t.get("impl_repr"):
            type_ = type_from_repr(t["impl_repr"], t.get("impl_module", "sqlalchemy"))
        if isinstance(type_, OpaqueType) and t.get("ddl"):
            type_ = CompiledType(t["ddl"], t["repr"], t["module"])
        default = c.get("server_default")
        columns.append(sa.Column(
            c["name"], type_, nullable=c["nullable"], primary_key=c["primary_key"],
            server_default=None if default is None else default if c.get("server_default_is_string") else sa.text(default),
            comment=c.get("comment"),
        ))
    table = sa.Table(info["name"], metadata, *columns, schema=info.get("schema"), comment=info.get("comment"))
    names = set(table.c.keys())

    def name_of(item: dict) -> str | None:
        name = item.get("name")
        return sa.sql.elements.conv(name) if isinstance(name, str) and item.get("conv") else name

    for con in info.get("constraints", []):
        cols = [c for c in con.get("columns", []) if c in names]
        if not cols or len(cols) != len(con.get("columns", [])):
            continue
        if con["kind"] == "UniqueConstraint":
            table.append_constraint(sa.UniqueConstraint(*cols, name=name_of(con)))
        elif con["kind"] == "ForeignKeyConstraint":
            table.append_constraint(sa.ForeignKeyConstraint(
                cols, con["targets"], name=name_of(con), ondelete=con.get("ondelete"), onupdate=con.get("onupdate")))
        elif con["kind"] == "CheckConstraint" and isinstance(con.get("sqltext"), str):  # (None: not renderable)
            table.append_constraint(sa.CheckConstraint(sa.text(con["sqltext"]), name=name_of(con)))
    for idx in info.get("indexes", []):
        cols = [table.c[n] for n in idx["columns"] if n in names]
        if cols and len(cols) == len(idx["columns"]):
            sa.Index(name_of(idx), *cols, unique=idx["unique"])
    origin, column_origins = _origins(info.get("source"), table, parsed)
    state = TableState.from_table(table, origin, column_origins)
    if "__table_args__" in column_origins:  # where indexes/constraints not on one column are declared
        state = replace(state, info={"table_args": column_origins["__table_args__"],
                                     "table_args_names": column_origins.get("__table_args_names__", ())})
    return state


class CompiledType(sa.types.UserDefinedType):
    """A model type we could not rebuild (a custom type): compared by its DDL."""

    cache_ok = True

    def __init__(self, ddl: str, source: str = "", module: str = "") -> None:
        self.ddl = ddl
        self.source = source
        self.module = module

    def get_col_spec(self, **kw) -> str:
        return self.ddl

    def __repr__(self) -> str:
        return self.source or self.ddl


def _origins(source: dict | None, table: sa.Table, parsed: dict[Path, tuple[ast.Module, list[str]] | None]
             ) -> tuple[Origin | None, dict[str, Origin]]:
    """Line of the class (or `name = Table(...)`) and of each column attribute. `parsed`:
    the model files read so far in this load (a models module declares dozens of tables:
    it is read and parsed once, not once per table)."""
    if not source or not source.get("file"):
        return None, {}
    path = Path(source["file"])
    if path not in parsed:
        try:
            text = read_text(path)
            parsed[path] = (ast.parse(text), text.splitlines())
        except (OSError, SyntaxError, ValueError):
            parsed[path] = None
    if parsed[path] is None:
        return None, {}
    tree, lines = parsed[path]

    def span(node: ast.AST) -> Span:
        line = node.lineno - 1
        text = lines[line] if line < len(lines) else ""
        return Span(line, len(text) - len(text.lstrip()), line, len(text.rstrip()))

    columns: dict[str, Origin] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == source.get("class"):
            attrs = {v: k for k, v in (source.get("attrs") or {}).items()}  # attr key -> column name
            for stmt in node.body:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) and stmt.targets else getattr(stmt, "target", None)
                if isinstance(target, ast.Name):
                    name = attrs.get(target.id, target.id)
                    if name in table.c:
                        columns[name] = (path, span(stmt))
                if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(target, ast.Name) \
                        and target.id == "__table_args__":
                    columns.setdefault("__table_args__", (path, span(stmt)))
                    columns.setdefault("__table_args_names__", tuple(  # type: ignore[arg-type]
                        n.value for n in ast.walk(stmt) if isinstance(n, ast.Constant) and isinstance(n.value, str)))
            return (path, span(node)), columns
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and target.id == source.get("variable"):
                return (path, span(node)), {}
    return None, {}
