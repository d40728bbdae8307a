"""A rule family whose every code select/ignore leaves out is not run at all (its work, not
just its findings, is skipped), and the cache never serves such a partial result to a run
that wants the family."""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
from pathlib import Path

from conftest import alembic_project, migration_text

from migration_lsp.checks import FAMILY_CODES, families_off
from migration_lsp.engine import Engine
from migration_lsp.project import Settings

PG = "postgresql+psycopg2://user:pass@localhost/app"
BASE = """
op.create_table(
    "users",
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("n", sa.Integer(), nullable=True),
)
"""
CHANGE = """
op.alter_column("users", "n", nullable=False)
op.drop_column("users", "n")
"""


def body(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ").lstrip()


def make(root: Path, settings: str = "") -> Path:
    alembic_project(root, {
        "aaaa_base.py": migration_text("aaaa", upgrades=body(BASE)),
        "bbbb_change.py": migration_text("bbbb", "aaaa", upgrades=body(CHANGE)),
    }, ini=f"[alembic]\nscript_location = %(here)s/migrations\npath_separator = os\nsqlalchemy.url = {PG}\n")
    return root


def codes(root: Path, overrides: dict | None = None) -> list[tuple[str, int]]:
    engine = Engine([root], overrides or {})
    (state,) = engine.snapshot().environments
    engine.save_cache()
    return sorted((d.code, d.span.line) for d in state.diagnostics if d.code[0] in "DS")


def test_every_code_a_family_module_writes_is_in_its_list():
    for name, listed in FAMILY_CODES.items():
        source = inspect.getsource(importlib.import_module(f"migration_lsp.checks.{name}"))
        written = set(re.findall(r"\"([DS]\d{3})\"", source))
        assert written and written <= listed, (name, written - listed)
    from migration_lsp.checks.pg_ddl import CODES

    assert set(CODES) <= FAMILY_CODES["pg_ddl"]


def test_families_off_follows_select_and_ignore():
    assert families_off(Settings()) == frozenset()
    assert families_off(Settings(select=("G",))) == set(FAMILY_CODES)
    assert families_off(Settings(select=("S015",))) == set(FAMILY_CODES) - {"pg_transactions"}
    pg_ddl = tuple(sorted(FAMILY_CODES["pg_ddl"]))
    assert families_off(Settings(ignore=pg_ddl)) == {"pg_ddl"}
    assert families_off(Settings(ignore=("S",))) == set(FAMILY_CODES) - {"downgrade"}


def test_a_family_left_out_does_not_run_and_the_cache_keeps_it_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = make(tmp_path / "p")
    from migration_lsp.checks import pg_ddl

    runs = []
    real = pg_ddl.check_pg_ddl

    def counting(*args, **kw):
        runs.append(args[0].revision_id)
        return real(*args, **kw)

    monkeypatch.setattr(pg_ddl, "check_pg_ddl", counting)
    ignore = {"ignore": tuple(sorted(FAMILY_CODES["pg_ddl"]))}
    without = codes(root, ignore)
    assert runs == []
    assert any(c == "S015" for c, _ in without) and any(c == "S005" for c, _ in without)
    assert not [c for c, _ in without if c in FAMILY_CODES["pg_ddl"]]
    full = codes(root)  # same cache folder: the partial results must not answer this run
    assert sorted(runs) == ["aaaa", "bbbb"]
    assert any(c == "S007" for c, _ in full)
    assert [d for d in full if d[0] not in FAMILY_CODES["pg_ddl"]] == without
    runs.clear()
    assert codes(root) == full  # answered from the cache
    assert runs == []
    assert codes(root, ignore) == without  # (the cache file keeps what the last run used: computed again)
    assert runs == []
