"""pytest plugin: migration-lsp's findings as test items, next to the project's own tests.

Installed with migration-lsp (entry point `pytest11`) and inert until asked for:
`pytest --migration-lsp`, or `migration_lsp = true` in the pytest configuration. Then every
Alembic environment under the rootdir (or `migration_lsp_paths`) gets one item per finding
family — graph (G), models (M), downgrade (D), safety (S) — which fails with the findings
as `path:line:col: CODE message` lines and passes when there are none.

Like the pre-commit hook, it runs no project code by default (no model import: the M
family then reports nothing to compare against); `--migration-lsp-import` or
`migration_lsp_import = true` loads the models in a child process, as `migration-lsp check`
does. Everything heavy is imported only when the plugin is enabled, so merely being
installed costs a pytest run nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .engine import Snapshot

# code prefix -> item name; a finding with another prefix is reported by the graph item
FAMILIES = {"G": "graph", "M": "models", "D": "downgrade", "S": "safety", "R": "database"}
SEVERITIES = {"error": 1, "warning": 2, "info": 3}  # core.Severity's numbering


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("migration-lsp", "Alembic migration checks (migration-lsp)")
    group.addoption("--migration-lsp", action="store_true", default=None, dest="migration_lsp",
                    help="check the Alembic migrations under the rootdir: one item per environment and "
                         "finding family")
    group.addoption("--migration-lsp-import", action="store_true", default=None, dest="migration_lsp_import",
                    help="load the project's models (runs project code in a child process) to compare "
                         "them with the migrations")
    parser.addini("migration_lsp", type="bool", default=False,
                  help="enable the migration-lsp checks (like --migration-lsp)")
    parser.addini("migration_lsp_paths", type="paths", default=[],
                  help="workspace roots to check, relative to the ini file (default: the rootdir)")
    parser.addini("migration_lsp_import", type="bool", default=False,
                  help="load the project's models (like --migration-lsp-import)")
    parser.addini("migration_lsp_fail_on", default="warning",
                  help="lowest severity that fails an item: error, warning (default) or info")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "migration_lsp: a migration-lsp check of one environment and finding family")


def _enabled(config: pytest.Config) -> bool:
    return bool(config.option.migration_lsp or config.getini("migration_lsp"))


@pytest.hookimpl(tryfirst=True)  # before -k / -m / --deselect, which then apply to our items too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    if _enabled(config):
        items[:0] = _Run(session).items()


class _Run:
    """One engine for the session: environments found at collection, checked once, on the
    first item that runs (so `--collect-only` parses nothing)."""

    def __init__(self, session: pytest.Session) -> None:
        from .engine import Engine

        config = session.config
        self.session = session
        self.roots = [Path(p) for p in config.getini("migration_lsp_paths")] or [config.rootpath]
        trusted = bool(config.option.migration_lsp_import or config.getini("migration_lsp_import"))
        fail_on = str(config.getini("migration_lsp_fail_on")).strip().lower()
        if fail_on not in SEVERITIES:
            raise pytest.UsageError(f"migration_lsp_fail_on = {fail_on!r}: expected error, warning or info")
        self.threshold = SEVERITIES[fail_on]
        missing = [str(r) for r in self.roots if not r.is_dir()]
        if missing:
            raise pytest.UsageError(f"migration_lsp_paths: no such directory: {', '.join(missing)}")
        self.engine = Engine(self.roots, trusted=trusted,
                             untrusted_reason="models are not loaded (enable with --migration-lsp-import)")
        self._snapshot: Snapshot | None = None

    def items(self) -> list[pytest.Item]:
        found: list[pytest.Item] = []
        problems = [p for d in self.engine.workspace.discoveries for p in d.problems]
        if problems:
            found.append(MigrationLspItem.from_parent(
                self.session, name="configuration", nodeid="migration-lsp::configuration", run=self, index=None,
                family="configuration", path=problems[0].path))
        environments = self.engine.environments()
        if not environments and not problems:
            found.append(MigrationLspItem.from_parent(
                self.session, name="migration-lsp", nodeid="migration-lsp", run=self, index=None, family=None,
                path=self.roots[0]))
        for index, (_, env) in enumerate(environments):
            where = env.config_path or env.script_location or env.root
            base = f"{_shown(where, self.session.config.rootpath)}::migration-lsp"
            for family in FAMILIES.values():
                if family == "database" and not self.engine.trusted:  # the truth pass imports the models
                    continue
                name = f"{family}[{env.name}]"  # node id: alembic.ini::migration-lsp::graph[migrations]
                found.append(MigrationLspItem.from_parent(
                    self.session, name=name, nodeid=f"{base}::{name}", run=self, index=index, family=family,
                    path=where))
        return found

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self.engine.load_models()
            self._snapshot = self.engine.snapshot()
            self.engine.save_cache()
            if self.engine.trusted:  # models imported: the truth pass too, as `migration-lsp check`
                from . import scratchdb, truth

                try:
                    self._snapshot, _ = truth.verify_snapshot(self.engine, self._snapshot)
                finally:
                    scratchdb.close_all()
        return self._snapshot


def _shown(path: Path, base: Path) -> str:
    """`path` relative to `base` when below it (pytest's node ids), else absolute."""
    try:
        return Path(os.path.relpath(path, base)).as_posix() if path.is_relative_to(base) else path.as_posix()
    except ValueError:
        return path.as_posix()


def _family(code: str) -> str:
    return FAMILIES.get(code[:1], "graph")


class MigrationLspFindings(Exception):
    """The findings that fail one item (shown by repr_failure, without a traceback)."""


class MigrationLspItem(pytest.Item):
    def __init__(self, *, run: _Run, index: int | None, family: str | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run, self.index, self.family = run, index, family
        # pytest-lsp's pytest_runtest_call wrapper returns without yielding (an error) for an
        # item that has no `funcargs`; we have none, so say so
        self.funcargs: dict = {}
        self.add_marker("migration_lsp")

    def runtest(self) -> None:
        snapshot = self.run.snapshot()
        base = self.config.invocation_params.dir
        if self.index is None:  # not an environment's item
            if self.family == "configuration":
                raise MigrationLspFindings("\n".join(
                    f"{_shown(p.path, base)}: {p.message.removeprefix(p.path.name + ': ')}" for p in snapshot.problems))
            roots = ", ".join(_shown(r, base) for r in self.run.roots)
            raise MigrationLspFindings(f"no Alembic environment found under {roots}")
        env = self.run.engine.environments()[self.index][1]
        identity = (env.name, env.config_path, env.script_location)
        state = next(s for s in snapshot.environments
                     if (s.env.name, s.env.config_path, s.env.script_location) == identity)
        found = [d for d in state.diagnostics
                 if _family(d.code) == self.family and d.severity <= self.run.threshold]
        if found:
            raise MigrationLspFindings("\n".join(
                f"{_shown(d.path, base)}:{d.span.line + 1}:{d.span.col + 1}: {d.code} {d.message}"
                for d in found))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, MigrationLspFindings):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"[migration-lsp] {self.name}"
