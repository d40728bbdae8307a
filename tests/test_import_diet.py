"""A graph-only check (`check --no-import --select G`, the pre-commit "one head" check)
imports only what it uses: its start-up is a fixed cost of every run (issue 13: start-up and
imports were ~45 % of the instructions a graph-only check of 5,000 revisions could spend).
These modules were each imported by the CLI before and are used only elsewhere."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

from migration_lsp.core import log

NOT_ON_THE_GRAPH_PATH = ("logging", "json", "tempfile", "secrets", "random", "signal", "textwrap",
                         "sqlalchemy", "alembic", "migration_lsp.replay", "migration_lsp.schema")

CHILD = """
import io, sys
from contextlib import redirect_stdout
from migration_lsp import cli
out = io.StringIO()
with redirect_stdout(out):
    code = cli.main(["check", "--no-import", "--select", "G", sys.argv[1]])
modules = sorted(sys.modules)
import json
print(json.dumps({"code": code, "out": out.getvalue(), "modules": modules}))
"""


def test_a_graph_only_check_imports_only_what_it_uses(tmp_path: Path):
    project = tmp_path / "blog"
    shutil.copytree(REPO_ROOT / "examples" / "blog", project, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    env = {"MIGRATION_LSP_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(project)], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["code"] in (0, 1) and "G0" in found["out"]  # it ran the check (the example has findings)
    assert any((tmp_path / "cache").rglob("*"))
    imported = set(found["modules"])
    assert "migration_lsp.engine.forked" in imported  # (the test sees the CLI's real modules)
    assert imported.isdisjoint(NOT_ON_THE_GRAPH_PATH), sorted(imported & set(NOT_ON_THE_GRAPH_PATH))


def test_the_lazy_logger_is_the_packages(caplog):
    with caplog.at_level(logging.WARNING, logger="migration_lsp"):
        log.warning("migration-lsp: %s", "said")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("migration_lsp", "migration-lsp: said")]
