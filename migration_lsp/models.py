"""Stage `models`: the project's target MetaData, loaded in a child process.

Project code never runs in our process: a child (the project's interpreter) runs env.py
under Alembic's EnvironmentContext, as autogenerate does, keeps what it passes to
`context.configure()`, imports the revision modules, and prints the tables as JSON
(model_child.py); we rebuild tables from that with the static evaluator, so nothing the
child sends can execute here. Only a trusted workspace loads models; a timeout, a memory
limit and a crash all become one clear reason (M004). When env.py cannot be run, the
child imports where target_metadata comes from (read statically from env.py) or the
`models` setting, which also overrides env.py's target_metadata.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from . import child
from .core import Span
from .evaluate import OpaqueType, type_from_repr
from .project import Environment, alembic_config, read_text
from .schema import IndexElement, Origin, SchemaState, TableState, rebuilt_element

CHILD = Path(__file__).with_name("model_child.py")
TIMEOUT = 120.0  # a big package imports in seconds on an idle machine, in 40 s on a busy one
MEMORY_LIMIT = 2 * 1024**3
Parsed = dict[Path, tuple[ast.Module | None, list[str]] | None]  # model files read in one load


@dataclass(frozen=True)
class MetadataSource:
    """Where target_metadata comes from, and where env.py says so (for M004)."""

    specs: tuple[str, ...]
    env_py: Path | None
    span: Span | None  # the `target_metadata = ...` line
    problem: str | None = None  # why we cannot tell (or that it is None)
    disabled: bool = False  # `target_metadata = None`: the project compares nothing
    # what the migrations build (the engine's last full pass), for env.py's filters in the child
    schema: SchemaState | None = field(default=None, compare=False, repr=False)

    def location(self, fallback: Path) -> tuple[Path, Span]:
        """Where a finding about the models goes: the `target_metadata = ...` line, else env.py's
        first line, else `fallback`'s (the config)."""
        if self.env_py and self.span:
            return self.env_py, self.span
        if self.env_py:
            return self.env_py, Span.point(0)
        return fallback, Span.point(0)


@dataclass(frozen=True)
class ModelTables:
    tables: dict[str, TableState] = field(default_factory=dict)
    error: str | None = None
    files: tuple[Path, ...] = ()  # project files the import read: reload when they change
    # what env.py passed to context.configure(): booleans and names as given, "callable" for a
    # function (whose decisions are in `excluded`)
    options: Mapping[str, Any] = field(default_factory=dict)
    # objects env.py's include_object / include_name leave out: (side, kind, table key, name, how),
    # see model_child.evaluate_filters
    excluded: frozenset[tuple[str, str, str, str, str]] = frozenset()
    # the schema objects the filters were evaluated on (None: none were sent)
    judged: frozenset[tuple[str, str, str]] | None = None
    # a callable compare_type's answer per (table key, column): True / False, None for "as usual";
    # None when it was not asked (no callable, or the migrations' columns were not sent)
    type_decisions: Mapping[tuple[str, str], bool | None] | None = None
    note: str | None = None  # env.py could not be run: why, and what was loaded instead
    disabled: bool = False  # env.py passes target_metadata=None: nothing to compare

    @property
    def needs_schema(self) -> bool:
        """env.py's callables could not judge the migrations' objects (loaded before the
        first full pass): load again once the static schema is known."""
        return self.judged is None and "callable" in (self.options.get("include_object"),
                                                     self.options.get("include_name"),
                                                     self.options.get("compare_type"))


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
    value: ast.expr | None = None
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
    """The Python the project's user set up: the `python` setting; else a `.venv` or `venv`
    from the environment's folder up to the repository (the git root, or the workspace
    root when there is none: never above it); else the virtualenv / conda environment
    the server was started in (VIRTUAL_ENV, CONDA_PREFIX); else the server's own when it
    runs in a virtualenv (someone chose it: `.venv/bin/migration-lsp` of the project, an
    editor's selected interpreter); else `python3` on PATH; else the server's own."""
    if env.settings.python:
        python = Path(env.settings.python)
        return str(python if python.is_absolute() else env.root / python)
    for folder in _folders_up(env):
        for venv in (folder / ".venv", folder / "venv"):
            for candidate in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
                if candidate.is_file():
                    return str(candidate)
    for variable in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        prefix = os.environ.get(variable)
        if prefix:
            for candidate in (Path(prefix) / "bin" / "python", Path(prefix) / "python.exe"):
                if candidate.is_file():
                    return str(candidate)
    if sys.prefix != sys.base_prefix:
        return sys.executable
    return shutil.which("python3") or sys.executable


def _folders_up(env: Environment) -> list[Path]:
    """The environment's folder (its config's, else its scripts'), then each parent up to the
    repository's root (the folder holding `.git`); outside a repository, up to the
    workspace root. (Neovim's root is the nearest alembic.ini's folder: the repository's
    `.venv` is above it.)"""
    start = Path(os.path.abspath(env.config_path.parent if env.config_path else env.script_location or env.root))
    chain = [start, *start.parents]
    git = next((n for n, folder in enumerate(chain) if (folder / ".git").exists()), None)
    if git is not None:
        return chain[:git + 1]
    root = Path(os.path.abspath(env.root))
    if root in chain:
        return chain[:chain.index(root) + 1]
    return [start, root]


def sys_paths(env: Environment) -> tuple[list[str], list[str]]:
    """(in front, after): alembic.ini's `prepend_sys_path` goes in front, as Alembic puts it;
    the workspace root and the config's folder go after the standard library (their
    `logging/` must not shadow it) but before the installed packages (the checkout, not a
    copy installed in the venv: model_child.place_workspace), the folder only when it is
    not inside a package."""
    base = env.config_path.parent if env.config_path else env.root
    after = [str(env.root)]
    if not (base / "__init__.py").exists():
        after.insert(0, str(base))
    front: list[str] = []
    if env.config_path and env.config_path.suffix == ".ini":
        import configparser
        import warnings

        from alembic.util import CommandError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # read by us: regular file, bounded interpolation
                extra = alembic_config(env.config_path).get_prepend_sys_paths_list() or []
            front = [str((base / p).resolve()) for p in extra if p]
        except (OSError, ValueError, RuntimeError, configparser.Error, CommandError):
            front = []  # an ini Alembic cannot read either: the import that fails says so
    return front, after


def _schema_objects(schema: SchemaState | None) -> list[dict]:
    """The names of what the migrations build, for env.py's filters in the child."""
    if schema is None:
        return []
    out = []
    for table in schema.tables.values():
        out.append({
            "name": table.name, "schema": table.schema, "columns": [c.name for c in table.columns],
            "types": {c.name: [type(c.column.type).__module__, repr(c.column.type)] for c in table.columns
                      if not isinstance(c.column.type, OpaqueType)},
            "indexes": [{"name": i.name, "columns": [getattr(e, "name", str(e)) for e in i.expressions],
                         "unique": bool(i.unique)} for i, _ in table.indexes if isinstance(i.name, str)],
            "uniques": [{"name": c.name, "columns": [col.name for col in c.columns]} for c, _ in table.constraints
                        if isinstance(c, sa.UniqueConstraint) and isinstance(c.name, str)],
        })
    return out


def load_models(env: Environment, source: MetadataSource, timeout: float | None = None,
                schema: SchemaState | None = None) -> ModelTables:
    """Run the child (sandboxed by child.py); never raises. `timeout` defaults to the
    module's TIMEOUT (read at call time, so it can be configured). `schema`: what the
    migrations build, when known, so env.py's filters can judge those objects too."""
    timeout = TIMEOUT if timeout is None else timeout
    schema = schema if schema is not None else source.schema
    env_mode = env.config_path is not None and env.env_py is not None
    if source.disabled:  # env.py says `target_metadata = None`: nothing to run, nothing to compare
        return ModelTables(error=source.problem, disabled=True)
    if not source.specs and not env_mode:
        return ModelTables(error=source.problem or "no models")
    front, after = sys_paths(env)
    cwd = str(env.config_path.parent if env.config_path else env.root)
    config = {
        "specs": list(source.specs),
        "override": bool(env.settings.models),
        "config": str(env.config_path) if env_mode else None,
        "script_location": str(env.script_location) if env.script_location else None,
        "files": [str(f) for f in env.files],
        "schema": _schema_objects(schema),
        "sys_path": front,
        "sys_path_after": after,
        "cwd": cwd,
        "dialect": env.dialect,
        "dialect_setting": env.settings.dialect,
        "root": str(env.root),
    }
    try:
        payload = child.run(interpreter(env), str(CHILD), [json.dumps(config)], cwd=cwd,
                            timeout=timeout, memory=MEMORY_LIMIT)
    except child.ChildError as exc:
        return ModelTables(error=f"model loader {exc}")
    try:
        data = json.loads(payload)
    except ValueError:
        return ModelTables(error="model loader sent unreadable output")
    if not isinstance(data, dict):
        return ModelTables(error="model loader sent unreadable output")
    options: dict[str, Any] = data["options"] if isinstance(data.get("options"), dict) else {}
    if data.get("disabled"):
        return ModelTables(error="env.py sets target_metadata = None (no models to compare)", options=options,
                           disabled=True)
    note = None
    if data.get("env_error") and not env.settings.models:  # (with `models` set, env.py gave options only)
        note = f"env.py could not be run under Alembic ({data['env_error']})"
    if data.get("error"):
        if note and source.specs:
            error = f"{note}; importing {', '.join(source.specs)} failed: {data['error']}"
        elif note:
            error = f"{note}; {source.problem or 'set `models` in [tool.migration-lsp] to import them instead'}"
        elif data.get("loaded_by") == "env.py":
            error = f"loading the models env.py names failed: {data['error']}"
        else:
            error = f"importing {', '.join(source.specs)} failed: {data['error']}"
        return ModelTables(error=error, options=options)
    if note:
        note += f": the models were imported from {', '.join(source.specs)} instead"
    tables = {}
    parsed: Parsed = {}
    for info in data.get("tables", []):
        table = _table(info, env.dialect, parsed)
        tables[table.key] = table
    excluded = frozenset((str(side), str(kind), str(key), str(name), str(how))
                         for side, kind, key, name, how in (item for item in data.get("excluded", [])
                                                           if isinstance(item, list) and len(item) == 5))
    judged = None
    if schema is not None:
        judged = frozenset((t.key, kind, str(name)) for t in schema.tables.values()
                           for kind, name in [("table", t.name), *(("column", c.name) for c in t.columns),
                                              *(("index", i.name) for i, _ in t.indexes),
                                              *(("unique_constraint", c.name) for c, _ in t.constraints
                                                if isinstance(c, sa.UniqueConstraint))])
    decisions = None
    if options.get("compare_type") == "callable" and schema is not None and isinstance(data.get("type_decisions"), list):
        decisions = {(str(k), str(c)): v for k, c, v in
                     (d for d in data["type_decisions"] if isinstance(d, list) and len(d) == 3)
                     if v is None or isinstance(v, bool)}
    revisions = {str(f) for f in env.files}  # (imported for their side effects; an edit reloads nothing)
    files = tuple(Path(f) for f in data.get("files", []) if isinstance(f, str) and f not in revisions)
    return ModelTables(tables, None, files, options, excluded, judged, decisions, note)


def _table(info: dict, dialect: str | None, parsed: Parsed) -> TableState:
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
        computed = c.get("computed")
        extra = (sa.Computed(sa.text(computed["sqltext"] or ""), persisted=computed.get("persisted")),) if computed else ()
        nullable = {} if c.get("nullable_unset") and computed else {"nullable": c["nullable"]}
        columns.append(sa.Column(
            c["name"], type_, *extra, primary_key=c["primary_key"], **nullable,
            server_default=None if default is None or computed else default if c.get("server_default_is_string")
            else sa.text(default),
            comment=c.get("comment"),
        ))
    def name_of(item: dict) -> str | None:
        name = item.get("name")
        return sa.sql.elements.conv(name) if isinstance(name, str) and item.get("conv") else name

    # an Index declared in __table_args__ without any column (mlflow's
    # `Index(f"index_{__tablename__}_request_id")`) belongs to the table all the same:
    # Alembic compares it (remove + add of the database's index of that name)
    empty = [sa.Index(name_of(idx), unique=idx["unique"]) for idx in info.get("indexes", [])
             if not idx["columns"] and isinstance(idx.get("name"), str)]
    table = sa.Table(info["name"], metadata, *columns, *empty, schema=info.get("schema"), comment=info.get("comment"))
    names = set(table.c.keys())

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
        _index(table, idx, name_of(idx))
    origin, column_origins, table_args = _origins(info, table, parsed)
    state = TableState.from_table(table, origin, column_origins)
    declared = _declared(info, origin, parsed)  # indexes and constraints made on a line of their own
    if declared:
        state = state.evolve(indexes=tuple((i, _made_at(declared, "index", i.name, o)) for i, o in state.indexes),
                             constraints=tuple((c, _made_at(declared, "constraint", c.name, o))
                                               for c, o in state.constraints))
    if table_args:  # where indexes/constraints not on one column are declared
        state = replace(state, info=table_args)
    return state


def _index(table: sa.Table, idx: dict, name: str | None) -> None:
    """The models' index on `table`, element by element as the child described it (a column
    and its sort order, or an expression's SQL), with its dialect options; an index on a
    column the table lacks is left out."""
    described = idx.get("elements")
    if not isinstance(described, list):  # (a child of an older version: plain columns)
        described = [{"column": c, "modifiers": []} for c in idx.get("columns", [])]
    elements = []
    for item in described:
        if not isinstance(item, dict):
            return
        if isinstance(item.get("column"), str):
            modifiers = tuple(m for m in item.get("modifiers") or () if m in ("desc", "asc", "nulls_first", "nulls_last"))
            elements.append(IndexElement(item["column"], modifiers))
        elif isinstance(item.get("sql"), str):
            on = item.get("on")
            elements.append(IndexElement(None, (), item["sql"], on if isinstance(on, str) else None))
        else:
            return
    built = [rebuilt_element(e, table) for e in elements]
    if any(b is None for b in built):  # (none at all is kept: mlflow's `Index("index_trace_tags_request_id")`)
        return
    kwargs: dict[str, Any] = {}
    for key, value in (idx.get("kwargs") or {}).items():
        if isinstance(key, str) and "_" in key:
            kwargs[key] = sa.text(value["sql"]) if isinstance(value, dict) and isinstance(value.get("sql"), str) \
                else value
    try:
        sa.Index(name, *built, unique=bool(idx.get("unique")), _table=table, **kwargs)
    except (sa.exc.ArgumentError, TypeError):  # an option of a dialect not loaded here: the index without it
        sa.Index(name, *built, unique=bool(idx.get("unique")), _table=table)


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


def _read(path: Path, parsed: Parsed) -> tuple[ast.Module | None, list[str]] | None:
    """A model file's syntax tree and lines, read and parsed once per load (a models module
    declares dozens of tables)."""
    if path not in parsed:
        try:
            text = read_text(path)
        except (OSError, ValueError):
            parsed[path] = None
            return None
        try:
            tree: ast.Module | None = ast.parse(text)
        except (SyntaxError, ValueError):
            tree = None
        parsed[path] = (tree, text.splitlines())
    return parsed[path]


def _line_span(lines: list[str], line: int) -> Span:
    """Span of a 0-based line, its indentation and trailing blanks left out."""
    text = lines[line] if 0 <= line < len(lines) else ""
    return Span(line, len(text) - len(text.lstrip()), line, len(text.rstrip()))


def _site(site: object, parsed: Parsed) -> Origin | None:
    """The child's [file, 1-based line] where a model object was made, as an origin."""
    if not (isinstance(site, list) and len(site) == 2 and isinstance(site[0], str) and isinstance(site[1], int)
            and os.path.isabs(site[0]) and site[1] > 0):
        return None
    path = Path(site[0])
    read = _read(path, parsed)
    if read is None or site[1] > len(read[1]):
        return None
    return path, _line_span(read[1], site[1] - 1)


def _declared(info: dict, table_origin: Origin | None, parsed: Parsed) -> dict[tuple[str, str], Origin]:
    """Indexes and constraints made on a line of their own (`Index(...)` in __table_args__),
    by name; those SQLAlchemy made for a column (`index=True`) are at the table's line."""
    table_site = _site(info.get("site"), parsed)
    out: dict[tuple[str, str], Origin] = {}
    for kind, items in (("index", info.get("indexes", [])), ("constraint", info.get("constraints", []))):
        for item in items:
            origin = _site(item.get("site"), parsed)
            if isinstance(item.get("name"), str) and origin is not None and origin not in (table_site, table_origin):
                out[(kind, item["name"])] = origin
    return out


def _made_at(declared: dict[tuple[str, str], Origin], kind: str, name: object, default: Origin | None
             ) -> Origin | None:
    return declared.get((kind, name), default) if isinstance(name, str) else default


def _origins(info: dict, table: sa.Table, parsed: Parsed
             ) -> tuple[Origin | None, dict[str, Origin], dict[str, Any]]:
    """Line of the class (or `name = Table(...)`) and of each column: where the child saw
    them made (a Table() no variable holds, a function's table, a mixin's column), else
    the class's attribute of that name. Third: the class's `__table_args__` line and the
    names in it (`table_args`, `table_args_names`), if it has one."""
    table_site = _site(info.get("site"), parsed)
    columns: dict[str, Origin] = {}
    for c in info.get("columns", []):
        origin = _site(c.get("site"), parsed)
        if origin is not None and origin != table_site and c["name"] in table.c:
            columns[c["name"]] = origin
    source = info.get("source")
    if not source or not source.get("file"):
        return table_site, columns, {}
    path = Path(source["file"])
    read = _read(path, parsed)
    if read is None:
        return table_site, columns, {}
    tree, lines = read
    if tree is None:
        return table_site, columns, {}

    def span(node: ast.stmt) -> Span:
        return _line_span(lines, node.lineno - 1)

    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == source.get("class"):
            attrs = {v: k for k, v in (source.get("attrs") or {}).items()}  # attr key -> column name
            table_args: dict[str, Any] = {}
            for stmt in node.body:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) and stmt.targets else getattr(stmt, "target", None)
                if isinstance(target, ast.Name):
                    name = attrs.get(target.id, target.id)
                    if name in table.c:
                        columns.setdefault(name, (path, span(stmt)))
                if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(target, ast.Name) \
                        and target.id == "__table_args__" and not table_args:
                    table_args = {"table_args": (path, span(stmt)), "table_args_names": tuple(
                        n.value for n in ast.walk(stmt) if isinstance(n, ast.Constant) and isinstance(n.value, str))}
            _mixin_columns(source, table, columns, parsed)
            return (path, span(node)), columns, table_args
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and target.id == source.get("variable"):
                return (path, span(node)), columns, {}
    return table_site, columns, {}


def _mixin_columns(source: dict, table: sa.Table, columns: dict[str, Origin], parsed: Parsed) -> None:
    """Columns still without a line, declared in a base class's body (a mixin's
    `state_timestamp: Mapped[...]`, which SQLAlchemy makes when the subclass is created):
    that attribute's line, in the base class the child named."""
    attrs = source.get("attrs") or {}
    for name, where in (source.get("declared_in") or {}).items():
        if name in columns or name not in table.c or not (isinstance(where, list) and len(where) == 2):
            continue
        read = _read(Path(str(where[0])), parsed)
        if read is None:
            continue
        tree, lines = read
        if tree is None:
            continue
        key = attrs.get(name, name)
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == where[1]:
                for stmt in node.body:
                    target = stmt.targets[0] if isinstance(stmt, ast.Assign) and stmt.targets \
                        else getattr(stmt, "target", None)
                    if isinstance(target, ast.Name) and target.id == key:
                        columns[name] = (Path(str(where[0])), _line_span(lines, stmt.lineno - 1))
                        break
                break
