"""The cold path (issue 13): a check of graph rules only (`--select G`, a pre-commit "one head"
check) replays no schema and loads no models. Counted through Alembic-free hooks: the
replay's per-revision computation and the engine's own counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_lsp import cli, replay
from migration_lsp.engine import Engine, graph_only, may_enable
from migration_lsp.project import Settings

REVISIONS = 12


def _revision(n: int, parent: str | None) -> str:
    return (f'"""table {n}"""\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
            f"revision = '{n:012d}'\ndown_revision = {parent!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    op.create_table('t{n}', sa.Column('id', sa.Integer(), primary_key=True))\n\n\n"
            f"def downgrade():\n    pass\n")  # D001 each: the schema rules have something to say


@pytest.fixture
def project(tmp_path: Path) -> Path:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    (tmp_path / "migrations" / "env.py").write_text("from app import Base\ntarget_metadata = Base.metadata\n")
    for n in range(REVISIONS):
        parent = f"{n - 1:012d}" if n else None
        if n == REVISIONS - 1:
            parent = "ffffffffffff"  # G002: the graph rules have something to say too
        (versions / f"{n:012d}_t{n}.py").write_text(_revision(n, parent))
    return tmp_path


@pytest.fixture
def replays(monkeypatch) -> list[str]:
    """Every revision whose schema the replay computes."""
    seen: list[str] = []
    real = replay.Replay._compute

    def counted(self, rev):
        seen.append(rev)
        return real(self, rev)

    monkeypatch.setattr(replay.Replay, "_compute", counted)
    return seen


def test_graph_rules_only_replay_nothing(project: Path, replays: list[str]):
    engine = Engine([project], {"select": ["G"]}, trusted=False, cache=False)
    codes = {d.code for d in engine.snapshot().diagnostics}
    assert "G002" in codes and all(c.startswith("G") for c in codes)
    assert replays == [] and engine.computed_revisions == 0

    engine = Engine([project], trusted=False, cache=False)  # the same project, every rule
    codes = {d.code for d in engine.snapshot().diagnostics}
    assert {"G002", "D001"} <= codes
    assert len(replays) == REVISIONS and engine.computed_revisions == REVISIONS


def test_cli_select_g_with_an_empty_cache_replays_nothing(project: Path, replays: list[str], monkeypatch, tmp_path,
                                                           capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["check", "--no-import", "--select", "G001,G002", "--format", "json", str(project)]) == 1
    assert '"G002"' in capsys.readouterr().out
    assert replays == []


def test_graph_rules_only_load_no_models(project: Path):
    assert Engine([project], {"select": ["G"]}, trusted=True, cache=False).model_jobs() == []
    assert len(Engine([project], {"select": ["G", "M001"]}, trusted=True, cache=False).model_jobs()) == 1
    assert Engine([project], {"ignore": ["M"]}, trusted=True, cache=False).model_jobs() == []


@pytest.mark.parametrize("select, ignore, only, models", [
    ((), (), False, True),
    (("G",), (), True, False),
    (("G001", "g002"), (), True, False),
    (("G", "S001"), (), False, False),
    (("ALL",), (), False, True),
    (("M",), (), False, True),
    (("M00",), (), False, True),
    ((), ("M",), False, False),
    ((), ("M001",), False, True),  # M002 may still be reported
])
def test_which_rules_need_what(select, ignore, only, models):
    settings = Settings(select=select, ignore=ignore)
    assert graph_only(settings) is only
    assert may_enable(settings, "M") is models
