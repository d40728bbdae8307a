"""Truth-pass parity on a real PostgreSQL for what real projects do (the realworld corpus):
a downgrade that drops the enum its upgrade made (prefect's initial revision), an env.py that
takes its history and its async engine from the project's own setting (prefect's database
URL), and the `initial-metadata` setting (mlflow). Each compared with real Alembic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from migration_lsp import scratchdb, truth
from migration_lsp.engine import Engine

from conftest import migration_text
from test_models import indent, make_project
from test_truth import CHECK, PARITY_MODELS, listener, outcome_of
from test_truth_parity import MODELS as INITIAL_PROJECT_MODELS
from test_truth_parity import INITIAL_MODELS, REVISIONS as INITIAL_PROJECT_REVISIONS
from test_truth_pg import cluster, pg_ini  # noqa: F401  (the fixture)


def real_alembic(root, url: str, environ: dict | None = None, before: str | None = None) -> list[str]:
    """`alembic upgrade head` (the CLI) and `alembic check`'s list on a new database `url` of
    the cluster (after `before`, python run first: what the application does)."""
    env = {**os.environ, **(environ or {})}
    steps = ([[sys.executable, "-c", before]] if before else []) + [[sys.executable, "-m", "alembic", "upgrade", "head"]]
    for argv in steps:
        done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
    checked = subprocess.run([sys.executable, "-c", CHECK], cwd=root, capture_output=True, text=True, timeout=120,
                             env=env)
    assert checked.returncode == 0, checked.stderr
    return reprs(json.loads(checked.stdout.strip().splitlines()[-1]))


def reprs(items) -> list[str]:
    """Sorted, without object addresses (a functional index's expression shows one)."""
    return sorted(re.sub(r" at 0x[0-9a-f]+", "", i["repr"] if isinstance(i, dict) else i) for i in items)


def new_database(cluster, name: str) -> str:  # noqa: F811
    with cluster.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@/{name}?host={cluster.socket_dir}"


ENUM_REVISIONS = {  # two tables share one enum; the downgrade drops them and the type (prefect)
    "0001_initial.py": migration_text("0001", upgrades=indent("""
        op.create_table('flow_run', sa.Column('id', sa.Integer(), primary_key=True),
                        sa.Column('state_type', sa.Enum('PENDING', 'RUNNING', name='state_type')))
        op.create_table('task_run', sa.Column('id', sa.Integer(), primary_key=True),
                        sa.Column('state_type', sa.Enum('PENDING', 'RUNNING', name='state_type')))"""),
        downgrades=indent("""
        op.drop_table('task_run')
        op.drop_table('flow_run')
        op.execute('DROP TYPE state_type')""")),
    "0002_name.py": migration_text("0002", "0001", upgrades="op.add_column('flow_run', sa.Column('name', sa.String(20)))",
                                   downgrades="op.drop_column('flow_run', 'name')"),
}


def test_a_downgrade_that_drops_its_enum_is_upgraded_again_with_it(tmp_path, cluster):  # noqa: F811
    """The upgrade after the downgrade makes the enum again (it was dropped: Alembic's memo of
    the run must not say it exists), and the run reaches head; no finding on a healthy pair."""
    url = new_database(cluster, "enum_dropped")
    make_project(tmp_path, models=PARITY_MODELS, revisions=ENUM_REVISIONS, files={"alembic.ini": pg_ini(url)})
    outcome, _ = outcome_of(tmp_path, snapshots=False)
    assert outcome.executed == ["0001", "0002"] and outcome.failed is None and outcome.compared, outcome.summary()
    assert not [d for d in outcome.diagnostics if d.code[0] in "RD"], [d.message for d in outcome.diagnostics]
    assert reprs(outcome.items) == real_alembic(tmp_path, url)


# prefect's env.py: the history (versions/<dialect>) AND the engine come from the project's own
# setting (an environment variable naming the database), not alembic.ini (prefect's engine is an
# async one: the corpus runs that; greenlet is not in the test extra)
SETTING_ENV_PY = """\
import os

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from app.models import Base

target_metadata = Base.metadata
url = os.environ.get("APP_DATABASE_URL", "sqlite:///app.db")
dialect = make_url(url).get_backend_name()
context.script.version_locations = [os.path.join(os.path.dirname(__file__), "versions", dialect)]
with create_engine(url).connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
"""

SETTING_REVISIONS = {
    "sqlite/0001_initial.py": migration_text("s001", upgrades=indent("""
        op.create_table('users', sa.Column('id', sa.Integer(), primary_key=True))""")),
    "postgresql/0001_initial.py": migration_text("p001", upgrades=indent("""
        op.create_table('users', sa.Column('id', sa.Integer(), primary_key=True),
                        sa.Column('name', sa.String(length=50), nullable=False))
        op.create_table('legacy', sa.Column('id', sa.Integer(), primary_key=True))""")),
    "postgresql/0002_pg.py": migration_text("p002", "p001", upgrades=indent("""
        op.execute("CREATE INDEX ix_users_lower_name ON users (lower(name))")
        op.add_column('users', sa.Column('email', sa.String(length=100), nullable=True))""")),
}


def history_outcome(root, folder: str):
    engine = Engine([root], trusted=True)
    engine.load_models()
    states = {s.env.name.rsplit("/", 1)[-1]: s for s in engine.snapshot().environments}
    state = states[folder]
    key = (state.env.root, state.env.name)
    return truth.verify(state, engine.models.get(key), engine.metadata_source(state.env), snapshots=False,
                        downgrades=False)


def test_the_projects_own_database_setting_takes_the_postgresql_history_on_the_scratch_server(
        tmp_path, cluster, monkeypatch):  # noqa: F811
    """A user whose project's setting names their PostgreSQL server (a listener here, which
    must see nothing): env.py takes the PostgreSQL history and builds its engine from
    that URL; the pass runs that history on the scratch PostgreSQL and equals real Alembic
    run against a PostgreSQL database, item for item."""
    server, seen = listener()
    try:
        prod = f"postgresql+psycopg://admin:secret@127.0.0.1:{server.getsockname()[1]}/production"
        monkeypatch.setenv("APP_DATABASE_URL", prod)
        make_project(tmp_path, env_py=SETTING_ENV_PY, models=PARITY_MODELS, revisions=SETTING_REVISIONS)
        outcome = history_outcome(tmp_path, "postgresql")
        assert seen == []
        assert outcome.database.startswith("PostgreSQL "), outcome.summary()
        assert outcome.not_verified is None and outcome.failed is None and outcome.compared, outcome.summary()
        assert outcome.executed == ["p001", "p002"]
        url = new_database(scratchdb.cluster(), "setting_history")
        items = real_alembic(tmp_path, url, {"APP_DATABASE_URL": url})
        assert reprs(outcome.items) == items
        assert any("legacy" in i for i in items)  # (the PostgreSQL history's own: the test could fail)
    finally:
        server.close()


BOOTSTRAP = """\
import os
import sqlalchemy as sa
from app.initial import Base
Base.metadata.create_all(sa.create_engine(os.environ["BOOTSTRAP_URL"]))
"""


def test_initial_metadata_on_postgresql(tmp_path, cluster):  # noqa: F811
    url = new_database(cluster, "initial_metadata")
    make_project(tmp_path, models=INITIAL_PROJECT_MODELS, revisions=INITIAL_PROJECT_REVISIONS,
                 files={"app/initial.py": INITIAL_MODELS, "alembic.ini": pg_ini(url)},
                 pyproject='[tool.migration-lsp]\ninitial-metadata = "app.initial:Base"\n')
    outcome, _ = outcome_of(tmp_path, snapshots=False)
    assert outcome.failed is None and outcome.compared and outcome.executed == ["0001", "0002"], outcome.summary()
    assert not [d for d in outcome.diagnostics if d.code[0] in "R"]
    assert reprs(outcome.items) == real_alembic(tmp_path, url, {"BOOTSTRAP_URL": url}, BOOTSTRAP)
