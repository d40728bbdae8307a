"""Truth-pass parity on real SQLite for what real projects do (the realworld corpus).

The `initial-metadata` setting: a project whose application makes a new database with
`create_all()` of some initial tables and then `alembic upgrade head` (mlflow) has a base
revision that alters tables no revision creates. The pass creates those tables on the
scratch database first, as the application does, and must then equal real Alembic run the
same way, item for item. And one history per dialect chosen by the project's own setting
(prefect), when that setting changes between two passes. PostgreSQL: test_truth_pg_parity.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from migration_lsp import truth
from migration_lsp.project import Settings
from migration_lsp.server import _settings

from conftest import line_of, migration_text
from test_models import indent, make_project
from test_truth import CHECK, DIALECT_ENV_PY, DIALECT_REVISIONS, PARITY_MODELS, dialect_outcome, outcome_of

INITIAL_MODELS = """\
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(50))
"""

# today's models: what the initial tables became, plus what the models add and no revision has
MODELS = """\
from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    owner: Mapped[str | None] = mapped_column(String(50))


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(50))
    step: Mapped[int | None] = mapped_column(Integer)


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
"""

REVISIONS = {  # the base revision alters a table the initial metadata creates (mlflow's 451aebb31d03)
    "0001_step.py": migration_text("0001", upgrades=indent("""
        op.add_column('metrics', sa.Column('step', sa.Integer(), nullable=True))""")),
    "0002_tags.py": migration_text("0002", "0001", upgrades=indent("""
        op.create_table('tags',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('experiment_id', sa.Integer(), sa.ForeignKey('experiments.id'), nullable=False),
            sa.PrimaryKeyConstraint('id'),
        )
        op.create_index('ix_tags_experiment_id', 'tags', ['experiment_id'])""")),
}

PYPROJECT = '[tool.migration-lsp]\ninitial-metadata = "{spec}"\n'

BOOTSTRAP = """\
import sqlalchemy as sa
from app.initial import Base
Base.metadata.create_all(sa.create_engine("sqlite:///app.db"))
"""


def project(root: Path, spec: str | None = "app.initial:Base") -> Path:
    return make_project(root, models=MODELS, revisions=REVISIONS, files={"app/initial.py": INITIAL_MODELS},
                        pyproject=PYPROJECT.format(spec=spec) if spec else None)


def alembic_as_the_application_does(root: Path) -> list[str]:
    """Real Alembic, the way the application makes a new database: create_all() of the
    initial metadata, then the `alembic upgrade head` CLI, then `alembic check`'s list."""
    for argv in ([sys.executable, "-c", BOOTSTRAP], [sys.executable, "-m", "alembic", "upgrade", "head"]):
        done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    checked = subprocess.run([sys.executable, "-c", CHECK], cwd=root, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    import json

    return sorted(json.loads(checked.stdout.strip().splitlines()[-1]))


def test_initial_metadata_is_created_before_the_base_revision_as_the_application_does(tmp_path):
    project(tmp_path)
    outcome, state = outcome_of(tmp_path, snapshots=False)
    assert state.env.settings.initial_metadata == "app.initial:Base"
    assert outcome.skipped is None and outcome.failed is None, outcome.summary()
    assert outcome.executed == ["0001", "0002"] and outcome.compared
    assert not (tmp_path / "app.db").exists()  # the ini's database was never touched
    assert not [d for d in outcome.diagnostics if d.code.startswith("R")]
    items = sorted(item["repr"] for item in outcome.items)
    assert items == alembic_as_the_application_does(tmp_path)
    whats = sorted(d.data["what"] for d in outcome.diagnostics if d.code.startswith("M"))
    assert whats == ["column experiments.name", "column experiments.owner",
                     "index ix_tags_experiment_id on tags (experiment_id)"]
    owner = next(d for d in outcome.diagnostics if d.data.get("what") == "column experiments.owner")
    assert owner.code == "M001" and owner.span.line == line_of(MODELS, "owner:")


def test_without_the_setting_the_base_revision_fails_there(tmp_path):
    """The same project unset: the base revision fails on the empty database (R001), which is
    what the setting answers; the summary names the setting."""
    project(tmp_path, spec=None)
    outcome, _ = outcome_of(tmp_path, snapshots=False, downgrades=False)
    assert outcome.failed == "0001" and not outcome.compared
    [r001] = [d for d in outcome.diagnostics if d.code == "R001"]
    assert "no such table: metrics" in r001.message
    assert "name that metadata in `initial-metadata`" in outcome.summary()  # (not guessed: named)


def test_snapshots_hold_the_initial_tables_and_are_keyed_by_the_setting(tmp_path):
    """A second pass starts from the snapshot (the initial tables in it, not created again)
    and answers the same; another setting is another database: no snapshot of the old one."""
    project(tmp_path)
    first, _ = outcome_of(tmp_path, downgrades=False)
    again, _ = outcome_of(tmp_path, downgrades=False)
    assert first.reused == 0 and first.ran == 2
    assert again.reused == 2 and again.ran == 0 and "initial metadata" not in again.timings
    assert sorted(i["repr"] for i in again.items) == sorted(i["repr"] for i in first.items)
    (tmp_path / "app" / "initial2.py").write_text(INITIAL_MODELS)
    project(tmp_path, spec="app.initial2:Base.metadata")
    other, state = outcome_of(tmp_path, downgrades=False)
    assert state.env.settings.initial_metadata == "app.initial2:Base.metadata"
    assert other.reused == 0 and other.ran == 2 and "initial metadata" in other.timings


def test_a_setting_that_names_no_metadata_skips_the_pass_and_says_why(tmp_path):
    """Not importable, or not metadata: the pass says so (no revision run, no R001 on the
    base revision) and the static findings stand."""
    for spec, why in (("app.nowhere:Base", "ModuleNotFoundError"), ("app.initial:Metric.key", "not a MetaData")):
        project(tmp_path, spec=spec)
        outcome, state = outcome_of(tmp_path, snapshots=False)
        assert outcome.skipped and why in outcome.skipped and spec in outcome.skipped, outcome.summary()
        assert outcome.executed == [] and outcome.diagnostics == []
        assert outcome.summary().startswith(f"truth pass skipped for {state.env.name}: initial-metadata")
        assert truth.with_outcome(state, outcome) is state


def test_the_setting_from_pyproject_and_the_editor():
    assert Settings().merged({"initial-metadata": " app.initial:Base "}).initial_metadata == "app.initial:Base"
    assert Settings().merged({"initial-metadata": ["x"]}).initial_metadata is None  # not a module:attr
    assert _settings({"migrationLsp": {"initialMetadata": "app.initial:Base"}}) == {
        "initial_metadata": "app.initial:Base"}


def test_a_history_from_snapshots_is_not_verified_when_env_py_now_chooses_another(tmp_path, monkeypatch):
    """The SQLite history verified once (its snapshots kept); then the project's setting names
    PostgreSQL (a prefect user switching servers): every revision comes from a snapshot, and
    env.py, run only by `alembic check`, takes the other history. "Not verified", as when it
    upgrades, never an `alembic check` error or findings from the other history."""
    monkeypatch.delenv("APP_DATABASE_URL", raising=False)
    make_project(tmp_path, env_py=DIALECT_ENV_PY, models=PARITY_MODELS, revisions=DIALECT_REVISIONS)
    first = dialect_outcome(tmp_path, "sqlite", snapshots=True)
    assert first.compared and first.executed == ["s001", "s002"], first.summary()
    monkeypatch.setenv("APP_DATABASE_URL", "postgresql://prod.example/db")
    again = dialect_outcome(tmp_path, "sqlite", snapshots=True)
    assert again.reused == 2 and again.executed == [], again.summary()
    assert again.not_verified and "versions/postgresql" in again.not_verified, again.summary()
    assert not again.compared and again.compare_error is None and again.diagnostics == []


# prefect's order: the engine first, from the project's own database setting (with options only
# PostgreSQL takes), then the history of that dialect
ENGINE_FIRST_ENV_PY = """\
import os

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from app.models import Base

target_metadata = Base.metadata
url = os.environ.get("APP_DATABASE_URL", "sqlite:///app.db")
dialect = make_url(url).get_backend_name()
engine = create_engine(url, **({"isolation_level": "READ COMMITTED"} if dialect == "postgresql" else {}))
with engine.connect() as connection:
    context.script.version_locations = [os.path.join(os.path.dirname(__file__), "versions", dialect)]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
"""


def test_env_py_making_its_engine_for_another_dialect_first_is_not_verified(tmp_path, monkeypatch):
    """The setting names PostgreSQL: env.py's engine (redirected to the SQLite scratch file)
    fails before env.py even chooses its history. Upgrading, and at head with every revision
    from a snapshot: "not verified", never R001 or an `alembic check` error."""
    monkeypatch.delenv("APP_DATABASE_URL", raising=False)
    make_project(tmp_path, env_py=ENGINE_FIRST_ENV_PY, models=PARITY_MODELS, revisions=DIALECT_REVISIONS)
    first = dialect_outcome(tmp_path, "sqlite", snapshots=True)
    assert first.compared and first.executed == ["s001", "s002"], first.summary()
    monkeypatch.setenv("APP_DATABASE_URL", "postgresql://prod.example/db")
    for snapshots in (False, True):
        outcome = dialect_outcome(tmp_path, "sqlite", snapshots=snapshots)
        assert outcome.reused == (2 if snapshots else 0), outcome.summary()
        assert outcome.not_verified and "made its engine for postgresql" in outcome.not_verified, outcome.summary()
        assert outcome.diagnostics == [] and not outcome.compared and outcome.compare_error is None


def test_initial_metadata_names_one_environment(tmp_path, caplog):
    """As `models`: at the top of the section it is for the only environment; with several
    it applies to none (the log says so) and an environments entry gives it to one."""
    import logging

    from migration_lsp.project import discover

    from test_discovery_real import two_environments

    root = two_environments(tmp_path / "top", '[tool.migration-lsp]\ninitial-metadata = "app.initial:Base"\n')
    with caplog.at_level(logging.WARNING, logger="migration_lsp"):
        assert {e.name: e.settings.initial_metadata for e in discover(root).environments} == {
            "a/migrations": None, "b/migrations": None}
    assert any("initial-metadata" in r.getMessage() for r in caplog.records)
    root = two_environments(tmp_path / "entry", '[[tool.migration-lsp.environments]]\npath = "b"\n'
                                                'initial-metadata = "app.initial:Base"\n')
    assert {e.name: e.settings.initial_metadata for e in discover(root).environments} == {
        "a/migrations": None, "b/migrations": "app.initial:Base"}
