"""Who may import whom (README, "Development"), checked on the source with `ast`.

- The README's module map is ordered: a module imports only modules listed above it, and every
  module is in the map. Outside engine/, only the server imports a part of the engine (its
  garbage-collector policy); everything else takes what engine/__init__ exports.
- The pipeline stages never import a front end (server, cli), a feature or the output
  formats; features never import a front end.
- The rule families in checks/ never import each other: what several of them need lives in
  the shared modules above them (checks/__init__, checks/walk, checks/env_py).
- No module imports another module's private (underscore) names: a helper another module
  needs is public, with a docstring, in the module that owns it; nor reads another module's
  classes' private members through an object (`state.graph._position`).
- No object is changed behind its class's back: no write into an `__dict__` (or `vars()`),
  no `object.__setattr__` except while an immutable record builds itself; lazily computed
  state is a declared attribute. Alembic's memoized properties are filled in ahead only by
  alembic_api.py, whose test fails when Alembic changes them.

Imports inside functions count as much as those at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "migration_lsp"

FRONT_ENDS = {"migration_lsp.server", "migration_lsp.cli", "migration_lsp.__main__", "migration_lsp.pytest_plugin"}
CHECKS_SHARED = {"__init__", "walk", "env_py"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, text: str | None = None) -> list[tuple[str, str | None, int]]:
    """(module imported from, name or None for `import x`, line) of every import in the file
    (or in `text`, read as that file), relative imports resolved against the file's package."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8") if text is None else text)):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                # `from . import walk` imports a module: name it as one
                sub = f"{source}.{alias.name}"
                if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() or \
                        (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").exists():
                    found.append((sub, None, node.lineno))
                else:
                    found.append((source, alias.name, node.lineno))
    return found


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def is_front_end_or_feature(module: str) -> bool:
    return module in FRONT_ENDS or module == "migration_lsp.formats" or module.startswith("migration_lsp.features")


def test_the_walk_sees_every_kind_of_import(tmp_path):
    """The scanner itself: relative, absolute, lazy (inside a function), `from . import mod`."""
    folder = PACKAGE / "checks"
    found = {(m, n) for m, n, _ in imports(folder / "pg_ddl.py")}
    assert ("migration_lsp.checks.walk", "op_target") in found
    assert ("migration_lsp.schema", "constraint_columns") in found
    assert ("migration_lsp.pglocks", None) in found  # `from .. import pglocks`
    lazy = {(m, n) for m, n, _ in imports(folder / "git.py", "def f():\n    from .graph import check_graph\n")}
    assert ("migration_lsp.checks.graph", "check_graph") in lazy  # inside a function, relative to checks/


def test_stages_import_no_front_end_feature_or_format():
    offenders = []
    for path in package_files():
        me = module_name(path)
        if is_front_end_or_feature(me):
            continue
        for source, name, line in imports(path):
            if is_front_end_or_feature(source):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {source}")
    assert offenders == []


def test_features_and_formats_import_no_front_end():
    offenders = []
    for path in package_files():
        me = module_name(path)
        if not (me.startswith("migration_lsp.features") or me == "migration_lsp.formats"):
            continue
        for source, _, line in imports(path):
            if source in FRONT_ENDS:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {source}")
    assert offenders == []


def test_rule_families_do_not_import_each_other():
    families = {p.stem for p in (PACKAGE / "checks").glob("*.py")} - CHECKS_SHARED
    assert {"safety", "pg_ddl", "pg_transactions", "portable", "graph", "git"} <= families
    offenders = []
    for path in sorted((PACKAGE / "checks").glob("*.py")):
        for source, _, line in imports(path):
            prefix = "migration_lsp.checks."
            other = source[len(prefix):].split(".")[0] if source.startswith(prefix) else None
            if other is None or other == path.stem or other not in families:
                continue
            kind = "shared module" if path.stem in CHECKS_SHARED else "family"
            offenders.append(f"checks/{path.name}:{line} ({kind}) imports the family checks/{other}.py")
    assert sorted(set(offenders)) == []


def private_uses(path: Path, text: str | None = None) -> list[tuple[str, str, int]]:
    """(module, private name, line) of each `from mod import _x` and `mod._x` in the file (or in
    `text`) where `mod` is a module of this package (`import mod` or `from . import mod`)."""
    text = path.read_text(encoding="utf-8") if text is None else text
    found, modules = [], {}
    for source, name, line in imports(path, text):
        if not source.startswith("migration_lsp"):
            continue
        if name is None:
            modules[source.rsplit(".", 1)[-1]] = source
        elif name.startswith("_") and not name.startswith("__"):
            found.append((source, name, line))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append((modules[node.value.id], node.attr, node.lineno))
    return found


def test_the_private_name_scan_sees_imports_and_attribute_access():
    text = "from .. import pglocks\nfrom ..schema import _hidden\nx = pglocks._name(1) + pglocks.public\n"
    assert sorted(private_uses(PACKAGE / "checks" / "pg_ddl.py", text)) == [
        ("migration_lsp.pglocks", "_name", 3), ("migration_lsp.schema", "_hidden", 2)]


def test_no_private_name_is_imported_from_another_module():
    offenders = sorted(f"{path.relative_to(REPO_ROOT)}:{line} uses {name} of {source}"
                       for path in package_files() for source, name, line in private_uses(path))
    assert offenders == [], "make the helper public (no underscore, a docstring) in the module that owns it"


def readme_map(text: str) -> list[list[str]]:
    """The README's ordered module map ("Development"): one list of module names per entry, top
    first. `checks/` and `features/` (no sub-entries) stand for all their modules; `engine/`'s
    sub-entries are its modules, in their own order."""
    lines = text.split("\n")
    start = lines.index(next(line for line in lines if line.startswith("migration_lsp/ ")))
    entries: list[list[str]] = []
    package = None
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break  # the next top-level folder (editors/, examples/, ...)
        indent = len(line) - len(line.lstrip(" "))
        names = line.strip().split("   ")[0].split("  ")[0]
        if indent not in (2, 4) or not names:
            continue  # a description's continuation line
        if indent == 2:
            package = names.rstrip("/") if names.endswith("/") else None
            if package is None:
                entries.append([f"migration_lsp.{n.strip().removesuffix('.py')}" for n in names.split(",")])
            else:
                entries.append([f"migration_lsp.{package}.*"])
        else:
            assert package is not None, line
            if entries and entries[-1] == [f"migration_lsp.{package}.*"]:
                entries.pop()  # the folder lists its modules: they stand for it
            entries.append([f"migration_lsp.{package}.{n.strip().removesuffix('.py')}" for n in names.split(",")])
    return [[name.replace(".__init__", "").removesuffix(".*") + (".*" if name.endswith(".*") else "")
             for name in entry] for entry in entries]


def map_positions(entries: list[list[str]]) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """Each listed module's (entry, place on its line); each `pkg.*` folder's entry."""
    modules, folders = {}, {}
    for i, entry in enumerate(entries):
        for j, name in enumerate(entry):
            if name.endswith(".*"):
                folders[name[:-2]] = i
            else:
                modules[name] = (i, j)
    return modules, folders


def position(module: str, modules: dict[str, tuple[int, int]], folders: dict[str, int]) -> tuple[int, int] | None:
    """Where the map lists a module: its own entry, or the entry of the folder it is in."""
    if module in modules:
        return modules[module]
    return next(((i, 0) for folder, i in folders.items() if module == folder or module.startswith(folder + ".")), None)


def map_offenders(text: str) -> list[str]:
    """Modules missing from the README's map, and imports of a module listed below the importer
    or beside it later on its line (inside a folder listed as a whole, its own tests hold)."""
    modules, folders = map_positions(readme_map(text))
    offenders = []
    for path in package_files():
        me = module_name(path)
        mine = position(me, modules, folders)
        if mine is None:
            offenders.append(f"{path.relative_to(REPO_ROOT)} is missing from the README's map")
            continue
        for source, _, line in imports(path):
            theirs = position(source, modules, folders) if source.startswith("migration_lsp") else None
            same_folder = me not in modules and source not in modules and theirs == mine
            if theirs is not None and source != me and theirs >= mine and not same_folder:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {source}, listed below it")
    return sorted(set(offenders))


README = REPO_ROOT / "README.md"


def test_the_readme_map_is_read_as_written():
    entries = readme_map(README.read_text(encoding="utf-8"))
    flat = [name for entry in entries for name in entry]
    assert flat[:3] == ["migration_lsp", "migration_lsp.core", "migration_lsp.alembic_api"]
    assert ["migration_lsp.models", "migration_lsp.compare"] in entries
    assert "migration_lsp.checks.*" in flat and "migration_lsp.features.*" in flat
    engine = [name for name in flat if name.startswith("migration_lsp.engine")]
    assert engine[0] == "migration_lsp.engine.sources" and engine[-1] == "migration_lsp.engine"
    assert "migration_lsp.engine.*" not in flat  # its sub-entries stand for the folder


def test_the_readme_map_catches_an_upward_import_and_a_missing_module():
    text = README.read_text(encoding="utf-8")
    assert map_offenders(text) == []
    # cache listed below the engine again, as it was: every engine part that stores is caught
    moved = text.replace("  cache.py            persistent cache in the user's cache folder\n", "")
    moved = moved.replace("  features/ ", "  cache.py            persistent cache\n  features/ ", 1)
    assert "migration_lsp/engine/stored.py:" in " ".join(map_offenders(moved))
    assert any(o.startswith("migration_lsp/scratchdb.py:") for o in map_offenders(moved))
    # inside one line the order counts: server listed after cli
    swapped = text.replace("  server.py, cli.py, __main__.py ", "  cli.py, server.py, __main__.py ")
    assert any(o.startswith("migration_lsp/cli.py:") and "migration_lsp.server" in o for o in map_offenders(swapped))
    dropped = text.replace("  progress.py         the terminal's progress line of `check`\n", "")
    assert "migration_lsp/progress.py is missing from the README's map" in map_offenders(dropped)


def test_only_the_engine_imports_its_parts():
    """Front ends and features read what engine/__init__ exports; the server alone also owns
    the session's garbage-collector policy (engine.collector)."""
    allowed = {("migration_lsp.server", "migration_lsp.engine.collector")}
    offenders = []
    for path in package_files():
        me = module_name(path)
        if me.startswith("migration_lsp.engine"):
            continue
        for source, _, line in imports(path):
            if source.startswith("migration_lsp.engine.") and (me, source) not in allowed:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {source}")
    assert offenders == []


def private_members(text: str) -> set[str]:
    """The private (underscore) names a module's classes define: methods, properties and the
    attributes their methods set on `self`/`cls`."""
    found = set()
    for cls in ast.walk(ast.parse(text)):
        if not isinstance(cls, ast.ClassDef):
            continue
        for node in ast.walk(cls):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                found.add(node.attr)
    return {n for n in found if n.startswith("_") and not n.startswith("__")}


def foreign_private_reads(text: str, own: set[str], others: set[str]) -> list[tuple[str, int]]:
    """(name, line) of each `obj._name` (obj not self/cls) where `_name` is a private member of
    another module's class (`others`) and of none of this module's own (`own`): reading another
    module's internals through an object, which the import scan cannot see."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and node.attr in others and node.attr not in own \
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            found.append((node.attr, node.lineno))
    return found


def test_the_private_member_scan_sees_reads_through_objects():
    owner = "class Graph:\n    def __init__(self):\n        self._seen = {}\n    @property\n    def _position(self):\n        return 1\n"
    assert private_members(owner) == {"_seen", "_position"}
    reader = "def warm(state):\n    state.graph._position\n    return state.graph.public, self._position\n"
    assert foreign_private_reads(reader, set(), private_members(owner)) == [("_position", 2)]
    assert foreign_private_reads(reader, {"_position"}, private_members(owner)) == []  # (its own class's name)


def test_no_module_reads_another_modules_private_members():
    texts = {path: path.read_text(encoding="utf-8") for path in package_files()}
    members = {path: private_members(text) for path, text in texts.items()}
    offenders = []
    for path, text in texts.items():
        others = set().union(*(m for p, m in members.items() if p != path))
        offenders += [f"{path.relative_to(REPO_ROOT)}:{line} reads {name}"
                      for name, line in foreign_private_reads(text, members[path], others)]
    assert offenders == [], "give the owner a public, documented accessor"


# where reading an object's own attributes (not what its class computes) is the point
JUSTIFIED_DICT_READS = {
    ("evaluate.py", "callable_ok"): "a type the migration declared carries the mark itself, not through a base",
    ("evaluate.py", "well_typed"): "the fields an Alembic op was given, as stored",
    ("interpret.py", "_evaluate_op"): "the type_ an Alembic op was given, as stored",
    ("model_child.py", "sources"): "a loaded module's own names, without running a module __getattr__",
    ("model_child.py", "declared_in"): "the attributes a class's own body declares, not its bases'",
    ("model_child.py", "rebuilt_type"): "a module's names, as the namespace a type's repr is evaluated in",
}
MUTATING = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def dict_access(text: str, module: str = "m.py") -> list[tuple[str, int]]:
    """(what, line) of each write through an object's `__dict__` (or `vars(obj)`), each
    `object.__setattr__` outside an `__init__`/`__post_init__` setting `self`'s own fields,
    and each read of an `__dict__`/`vars()` not in JUSTIFIED_DICT_READS."""
    tree = ast.parse(text)
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def function(node: ast.AST) -> str | None:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node.name
        return None

    found = []
    for node in ast.walk(tree):
        is_dict = isinstance(node, ast.Attribute) and node.attr == "__dict__"
        is_vars = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "vars" \
            and len(node.args) == 1
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__setattr__" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "object":
            own = node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "self"
            if not (own and function(node) in ("__init__", "__post_init__")):
                found.append(("object.__setattr__", node.lineno))
            continue
        if not (is_dict or is_vars):
            continue
        up = parents.get(node)
        written = (isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load)) \
            or (isinstance(up, ast.Subscript) and not isinstance(up.ctx, ast.Load)) \
            or (isinstance(up, ast.Attribute) and up.attr in MUTATING)
        if written:
            found.append(("__dict__ write", node.lineno))
        elif (module, function(node)) not in JUSTIFIED_DICT_READS:
            found.append(("__dict__ read", node.lineno))
    return sorted(found, key=lambda f: f[1])


def test_the_dict_scan_sees_writes_and_unjustified_reads():
    text = (
        "class Graph:\n"
        "    def __init__(self, x):\n"
        "        object.__setattr__(self, 'x', x)\n"  # (an immutable record building itself)
        "    def patch(self, other):\n"
        "        object.__setattr__(other, 'x', 1)\n"
        "        object.__setattr__(self, 'x', 2)\n"
        "        self.__dict__['_rank'] = 1\n"
        "        self.__dict__.pop('_rank', None)\n"
        "        del self.__dict__['x']\n"
        "        other.__dict__ = {}\n"
        "        vars(other).update(x=1)\n"
        "        return self.__dict__.get('x')\n"
        "def callable_ok(fn):\n"
        "    return 'mark' in fn.__dict__\n"
    )
    assert dict_access(text) == [("object.__setattr__", 5), ("object.__setattr__", 6), ("__dict__ write", 7),
                                 ("__dict__ write", 8), ("__dict__ write", 9), ("__dict__ write", 10),
                                 ("__dict__ write", 11), ("__dict__ read", 12), ("__dict__ read", 14)]
    assert dict_access(text, "evaluate.py")[-1] == ("__dict__ read", 12)  # (a justified read)


def test_no_write_through_dict_and_no_mutation_of_records():
    """Issue 13: cached properties written through `__dict__`, a "frozen" MigrationScript
    changed after creation. Lazily computed state is a declared attribute (MigrationScript's
    `_module`, RevisionGraph's `_lazy`); only alembic_api.py fills Alembic's memoized
    properties in."""
    offenders = []
    for path in package_files():
        if path.name == "alembic_api.py":
            continue
        offenders += [f"{path.relative_to(REPO_ROOT)}:{line} {what}"
                      for what, line in dict_access(path.read_text(encoding="utf-8"), path.name)]
    assert offenders == []
