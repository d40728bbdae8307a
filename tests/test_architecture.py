"""Who may import whom (README, "Development"), checked on the source with `ast`.

- The pipeline stages never import a front end (server, cli), a feature or the output
  formats; features never import a front end.
- The rule families in checks/ never import each other: what several of them need lives in
  the shared modules above them (checks/__init__, checks/walk, checks/env_py).
- No module imports another module's private (underscore) names: a helper another module
  needs is public, with a docstring, in the module that owns it.

Imports inside functions count as much as those at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "migration_lsp"

FRONT_ENDS = {"migration_lsp.server", "migration_lsp.cli", "migration_lsp.__main__", "migration_lsp.pytest_plugin"}
CHECKS_SHARED = {"__init__", "walk", "env_py"}

# Family imports allowed, with the reason. `check --changed` (git.changed_only) compares the
# base's graph findings: it belongs in cli, which is being rewritten in parallel (issue 13).
ALLOWED_FAMILY_IMPORTS = {("git", "graph")}

# Private names still imported across modules that other work of issue 13 is rewriting
# (engine / schema split). The list only shrinks: an entry that no longer occurs fails.
KNOWN_PRIVATE_IMPORTS = {
    ("migration_lsp/pglocks.py", "migration_lsp.replay", "_created_table"),
    ("migration_lsp/truth.py", "migration_lsp.models", "_sys_path"),
    ("migration_lsp/truth.py", "migration_lsp.checks.models", "_location"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module imported from, name or None for `import x`, line) of every import in the file,
    relative imports resolved against the file's package."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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
    lazy = {(m, n) for m, n, _ in imports(folder / "git.py")}
    assert ("migration_lsp.checks.graph", "check_graph") in lazy  # imported inside changed_only


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
    offenders, allowed_seen = [], set()
    for path in sorted((PACKAGE / "checks").glob("*.py")):
        for source, _, line in imports(path):
            prefix = "migration_lsp.checks."
            other = source[len(prefix):].split(".")[0] if source.startswith(prefix) else None
            if other is None or other == path.stem or other not in families:
                continue
            if (path.stem, other) in ALLOWED_FAMILY_IMPORTS:
                allowed_seen.add((path.stem, other))
                continue
            kind = "shared module" if path.stem in CHECKS_SHARED else "family"
            offenders.append(f"checks/{path.name}:{line} ({kind}) imports the family checks/{other}.py")
    assert sorted(set(offenders)) == []
    assert allowed_seen == ALLOWED_FAMILY_IMPORTS, "an allowed import is gone: remove it from the list"


def test_no_private_name_is_imported_from_another_module():
    found = set()
    where = {}
    for path in package_files():
        rel = str(path.relative_to(REPO_ROOT))
        for source, name, line in imports(path):
            if name and name.startswith("_") and not name.startswith("__") and source.startswith("migration_lsp"):
                found.add((rel, source, name))
                where[(rel, source, name)] = line
    new = sorted(f"{rel}:{where[(rel, source, name)]} imports {name} from {source}"
                 for rel, source, name in found - KNOWN_PRIVATE_IMPORTS)
    assert new == [], "make the helper public (no underscore, a docstring) in the module that owns it"
    assert sorted(KNOWN_PRIVATE_IMPORTS - found) == [], "fixed: remove these from KNOWN_PRIVATE_IMPORTS"
