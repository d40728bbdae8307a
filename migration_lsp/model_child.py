"""Runs in a child process with the project's interpreter: import the target metadata and
write it as JSON. Standalone on purpose (only the standard library and SQLAlchemy, which
the project has): it must not need migration_lsp to be installed in the project's venv.
Started through child.py (the sandbox), which names the result file.

usage: python child.py model_child.py '<json: {"specs": [...], "sys_path": [...], "cwd": "...",
                                                 "dialect": "postgresql" | null}>'
"""

import importlib
import inspect
import json
import os
import sys



def resolve(spec):
    """`pkg.mod:Base.metadata` or `pkg.mod.Base.metadata` -> the object. For a dotted path,
    import the longest importable module prefix; a failing import inside the project is
    reported as itself, not as a missing attribute."""
    module_part, _, attr_part = spec.partition(":")
    if attr_part:
        obj = importlib.import_module(module_part)
        for attr in attr_part.split("."):
            if attr:
                obj = getattr(obj, attr)
        return obj
    parts = module_part.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # this prefix is not a module (yet): try a shorter one
            raise
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"no module named {parts[0]!r}")


def type_info(type_, dialect):
    info = {"repr": repr(type_), "module": type(type_).__module__, "class": type(type_).__name__}
    impl = getattr(type_, "impl", None)
    if impl is not None and not isinstance(impl, type):
        info["impl_repr"] = repr(impl)
        info["impl_module"] = type(impl).__module__
    try:
        info["ddl"] = type_.compile(dialect=dialect) if dialect is not None else type_.compile()
    except Exception:
        info["ddl"] = None
    return info


def default_text(default, dialect=None):
    """The server default as SQL text: a SQL expression (func.now()) compiled for the
    environment's dialect, as the database would get it."""
    if default is None:
        return None
    arg = getattr(default, "arg", default)
    text = getattr(arg, "text", None)
    if isinstance(text, str):
        return text
    if isinstance(arg, str):
        return arg
    return sql_text(arg, dialect) or sql_text(arg)


def table_info(table, dialect):
    return {
        "name": table.name,
        "schema": table.schema,
        "comment": table.comment,
        "columns": [
            {
                "name": c.name,
                "key": c.key,
                "type": type_info(c.type, dialect),
                "nullable": bool(c.nullable),
                "primary_key": bool(c.primary_key),
                "server_default": default_text(c.server_default, dialect),
                # a plain string is a literal value ('new'), anything else SQL (now())
                "server_default_is_string": isinstance(getattr(c.server_default, "arg", None), str),
                "comment": c.comment,
            }
            for c in table.columns
        ],
        "indexes": [
            {"name": i.name, "unique": bool(i.unique), "conv": is_conv(i.name),
             "columns": [getattr(e, "name", str(e)) for e in i.expressions]}
            for i in sorted(table.indexes, key=lambda i: str(i.name))
        ],
        "constraints": [constraint_info(c) for c in table.constraints],
    }


def is_conv(name):
    """A name the naming convention made final (autogenerate writes it as `op.f(...)`)."""
    try:
        from sqlalchemy.sql.elements import conv

        return isinstance(name, conv)
    except ImportError:
        return False


def sql_text(clause, dialect=None):
    """A SQL expression as text, or None: a custom construct compiled only for some dialects
    (`@compiles(X, "postgresql")`) refuses the default one, and one such CHECK must not cost
    every table of the models."""
    try:
        return str(clause.compile(dialect=dialect)) if dialect is not None else str(clause)
    except Exception:
        return None


def constraint_info(c):
    kind = type(c).__name__
    out = {"kind": kind, "name": c.name if isinstance(c.name, str) else None, "conv": is_conv(c.name),
           "columns": [col.name for col in c.columns] if hasattr(c, "columns") else []}
    if kind == "ForeignKeyConstraint":
        out["targets"] = [e.target_fullname for e in c.elements]
        out["ondelete"] = c.ondelete
        out["onupdate"] = c.onupdate
    if kind == "CheckConstraint":
        out["sqltext"] = sql_text(c.sqltext)
    return out


def sources(tables):
    """Where each table is defined: declarative classes or module-level Table() objects."""
    found = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or "site-packages" in file or not file.endswith(".py"):
            continue
        try:
            members = list(vars(module).items())
        except Exception:
            continue
        for name, value in members:
            table = getattr(value, "__table__", None) if inspect.isclass(value) else None
            if table is not None and id(table) in tables and inspect.getmodule(value) is module:
                attrs = {}
                try:
                    import sqlalchemy

                    mapper = sqlalchemy.inspect(value)
                    for prop in mapper.column_attrs:
                        for col in prop.columns:
                            if getattr(col, "table", None) is table:
                                attrs[col.name] = prop.key
                except Exception:
                    pass
                found.setdefault(id(table), {"file": file, "class": name, "attrs": attrs})
            elif id(value) in tables and type(value).__name__ == "Table":
                found.setdefault(id(value), {"file": file, "variable": name})
    return found


def main():
    config = json.loads(sys.argv[1])
    sys.path[:0] = config.get("sys_path", [])
    os.chdir(config.get("cwd") or ".")
    result = {"tables": [], "files": [], "error": None}
    try:
        import sqlalchemy

        dialect = None
        if config.get("dialect") in ("mssql", "mysql", "mariadb", "oracle", "postgresql", "sqlite"):
            try:  # SQLAlchemy's own dialects only: a name never reaches the entry points
                from sqlalchemy.dialects import registry

                dialect = registry.load(config["dialect"])()
            except Exception:
                dialect = None
        metadatas = []
        for spec in config["specs"]:
            obj = resolve(spec)
            metadatas.extend(obj if isinstance(obj, (list, tuple)) else [obj])
        by_id = {}
        for md in metadatas:
            for table in md.tables.values():
                by_id[id(table)] = table
        where = sources(by_id)
        for key, table in by_id.items():
            info = table_info(table, dialect)
            info["source"] = where.get(key)
            result["tables"].append(info)
        result["files"] = sorted({
            m.__file__ for m in list(sys.modules.values())
            if getattr(m, "__file__", None) and "site-packages" not in m.__file__
            and m.__file__.startswith(os.path.abspath(config.get("root") or "."))
        })
    except BaseException as exc:  # report, never traceback into the editor
        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    with open(os.environ["MIGRATION_LSP_RESULT"], "w", encoding="utf-8") as fh:  # not stdout: ours alone
        json.dump(result, fh)


if __name__ == "__main__":
    main()
