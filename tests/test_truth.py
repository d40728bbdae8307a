"""The truth pass (truth.py, truth_child.py, scratchdb.py) on real SQLite: Alembic runs the
project's migrations on a scratch database, `alembic check` lists the differences; the
result must equal the real `alembic check` CLI item for item. PostgreSQL: test_truth_pg.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from migration_lsp import truth
from migration_lsp.cli import main

from conftest import MINIMAL_INI, line_of, migration_text
from test_models import ENV_PY, INITIAL, indent, loaded, make_project

PARITY_MODELS = """\
from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("email", name="uq_users_email"), Index("ix_users_name", "name"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    email: Mapped[str] = mapped_column(String(100))
    nickname: Mapped[str | None] = mapped_column(String(20))


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
"""

PARITY_REVISIONS = {
    "0001_initial.py": migration_text("0001", upgrades=indent("""
        op.create_table('users',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('name', sa.String(length=50), nullable=False),
            sa.Column('email', sa.String(length=100), nullable=True),
            sa.PrimaryKeyConstraint('id'),
        )
        op.create_table('legacy', sa.Column('id', sa.Integer(), primary_key=True))""")),
    "0002_age.py": migration_text("0002", "0001", upgrades=indent("""
        op.add_column('users', sa.Column('age', sa.Integer(), nullable=True))
        op.create_index('ix_users_age', 'users', ['age'])""")),
}


def outcome_of(root: Path, **kw):
    engine, state = loaded(root)
    key = (state.env.root, state.env.name)
    return truth.verify(state, engine.models.get(key), engine.metadata_source(state.env), **kw), state


def alembic_check_items(root: Path) -> list[str]:
    """The real `alembic check` CLI after `alembic upgrade head` on the ini's own database."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "alembic", *a], cwd=root, capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    upgraded = run("upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    checked = run("check")
    if checked.returncode == 0:
        return []
    marker = "New upgrade operations detected: "
    said = checked.stdout + checked.stderr  # (Alembic prints FAILED: on stdout)
    assert marker in said, said
    return [said.split(marker, 1)[1].strip()]


def test_alembic_check_parity_item_for_item(tmp_path):
    """Nine kinds of difference (table, column, type, nullable, index, unique, both
    directions): the same list as the real `alembic check`, each one located."""
    make_project(tmp_path, models=PARITY_MODELS, revisions=PARITY_REVISIONS)
    outcome, state = outcome_of(tmp_path, snapshots=False)
    assert not (tmp_path / "app.db").exists()  # the ini's database was never touched
    assert outcome.compared and outcome.ran == 2 and outcome.failed is None
    ours = "[" + ", ".join(item["repr"] for item in outcome.items) + "]"
    assert alembic_check_items(tmp_path) == [ours]
    kinds = sorted(item["kind"] for item in outcome.items)
    assert kinds == ["add_column", "add_constraint", "add_index", "add_table", "modify_column", "modify_column",
                     "remove_column", "remove_index", "remove_table"]
    assert outcome.located == len(outcome.items)  # every item on a model line or an op
    by_what = {d.data["what"]: d for d in outcome.diagnostics}
    models = (tmp_path / "app" / "models.py").read_text()
    v2 = (tmp_path / "migrations" / "versions" / "0002_age.py").read_text()
    assert by_what["column users.nickname"].code == "M001"
    assert by_what["column users.nickname"].span.line == line_of(models, "nickname:")
    assert by_what["column users.age"].code == "M002"
    assert by_what["column users.age"].span.line == line_of(v2, "op.add_column")
    assert by_what["index ix_users_age on users (age)"].span.line == line_of(v2, "op.create_index")
    assert by_what["column users.name"].code == "M003"
    assert "VARCHAR(length=50)" in by_what["column users.name"].message
    assert by_what["table posts"].span.line == line_of(models, "class Post")


def test_no_differences_no_findings_and_same_as_alembic(tmp_path):
    make_project(tmp_path)
    outcome, _ = outcome_of(tmp_path, snapshots=False)
    assert outcome.compared and outcome.items == [] and outcome.diagnostics == []
    assert alembic_check_items(tmp_path) == []


def test_failing_revision_is_r001_on_the_line_that_raised(tmp_path):
    revisions = {
        "0001_initial.py": migration_text("0001", upgrades=indent(INITIAL)),
        "0002_bad.py": migration_text("0002", "0001", upgrades=indent("""
            op.add_column('users', sa.Column('age', sa.Integer()))
            op.execute("UPDATE no_such_table SET x = 1")""")),
        "0003_after.py": migration_text("0003", "0002", upgrades="op.add_column('users', sa.Column('z', sa.Integer()))"),
    }
    make_project(tmp_path, revisions=revisions)
    outcome, state = outcome_of(tmp_path, snapshots=False)
    assert outcome.executed == ["0001", "0002"] and outcome.ran == 1 and outcome.failed == "0002"
    assert not outcome.compared  # not at head: the static M findings stand
    [r001] = [d for d in outcome.diagnostics if d.code == "R001"]
    path = tmp_path / "migrations" / "versions" / "0002_bad.py"
    assert r001.path.resolve() == path.resolve()
    assert r001.span.line == line_of(path.read_text(), "no_such_table")
    assert r001.message.startswith("upgrade fails on sqlite: OperationalError: ")
    assert "no such table: no_such_table" in r001.message
    assert any("no_such_table" in s for s in r001.data["sql"])  # the SQL it emitted
    after = truth.with_outcome(state, outcome)
    assert [d.code for d in after.diagnostics if d.code == "R001"] == ["R001"]
    assert any(d.code == "M002" and "users.age" in d.message for d in after.diagnostics)  # static kept


HARD_CODED_ENV = """\
import socket

from alembic import context
from sqlalchemy import create_engine

from app.models import Base

target_metadata = Base.metadata
try:  # a project that phones home: must reach nothing
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
except OSError as exc:
    open({blocked!r}, "w").write(str(exc))
connectable = create_engine({prod!r})
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
"""


def listener():
    """A TCP server that counts the connections it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    seen: list = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            seen.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, seen


def test_hard_coded_production_url_is_never_reached(tmp_path):
    server, seen = listener()
    try:
        prod = tmp_path / "production.db"
        blocked = tmp_path / "blocked.txt"
        env = HARD_CODED_ENV.format(port=server.getsockname()[1], blocked=str(blocked), prod=f"sqlite:///{prod}")
        make_project(tmp_path, env_py=env, extra_user="nickname: Mapped[str] = mapped_column(String(20))\n")
        outcome, _ = outcome_of(tmp_path, snapshots=False)
        assert outcome.ran == 1 and outcome.compared
        assert [d.data["what"] for d in outcome.diagnostics] == ["column users.nickname"]
        assert not prod.exists()  # the hard-coded database was never opened
        assert seen == []  # the listener saw nothing
        assert "network access blocked" in blocked.read_text() or "unreachable" in blocked.read_text()
    finally:
        server.close()


COUNTING = """\
with open({log!r}, "a") as fh:
        fh.write("{rev}\\n")
    op.add_column('users', sa.Column('c{rev}', sa.Integer()))"""


def test_an_edited_revision_reruns_only_itself(tmp_path):
    """Snapshots after each revision: editing the head twice upgrades only the head again."""
    log = tmp_path / "executions.log"

    def revision(rev, down, comment=""):
        return migration_text(rev, down, upgrades=f"# {comment}\n    " + COUNTING.format(log=str(log), rev=rev))

    revs = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL)),
            "0002_a.py": revision("0002", "0001"), "0003_b.py": revision("0003", "0002")}
    make_project(tmp_path, revisions=revs)

    def run():
        log.write_text("")
        outcome, _ = outcome_of(tmp_path)
        assert outcome.failed is None and outcome.compared
        return log.read_text().split(), outcome

    executed, first = run()
    assert executed == ["0002", "0003"] and first.ran == 3 and first.reused == 0
    for edit in ("first edit", "second edit"):
        (tmp_path / "migrations/versions/0003_b.py").write_text(revision("0003", "0002", edit))
        executed, again = run()
        assert executed == ["0003"] and again.ran == 1 and again.reused == 2
        assert [d.data["what"] for d in again.diagnostics] == [
            "column users.c0002", "column users.c0003"]  # same answer as a full run
    (tmp_path / "migrations/versions/0002_a.py").write_text(revision("0002", "0001", "edited below"))
    executed, _ = run()
    assert executed == ["0002", "0003"]  # an edit re-runs it and everything above


def test_snapshots_are_evicted_least_recently_used_first(tmp_path):
    for n, size in enumerate((100, 200, 300)):
        path = tmp_path / f"k{n}.db"
        path.write_bytes(b"x" * size)
        os.utime(path, (1000 + n, 1000 + n))
    truth._evict(tmp_path, 500)
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["k1.db", "k2.db"]


MARKER_ENV = ENV_PY.replace("config = context.config", "config = context.config\nopen({marker!r}, 'a').write('ran')")


def test_check_runs_the_truth_pass_and_says_so(tmp_path, capsys, monkeypatch):
    make_project(tmp_path, models=PARITY_MODELS, revisions=PARITY_REVISIONS)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert "(alembic check)" in out
    assert "truth pass on SQLite (temp file): 2 revisions upgraded" in err
    assert "alembic check: 9 differences" in err
    assert main(["check"]) == 0
    out, _ = capsys.readouterr()
    assert "truth pass on SQLite (temp file): 0 revisions upgraded (2 from snapshots)" in out
    codes = [line.split()[1] for line in out.splitlines() if ".py:" in line]
    assert codes.count("M001") + codes.count("M002") + codes.count("M003") == 9  # never static + truth
    assert "exists in the migrations but not in the models" not in out  # the static wording is gone


def test_untrusted_and_static_run_nothing(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "env_py_ran"
    make_project(tmp_path, env_py=MARKER_ENV.replace("{marker!r}", repr(str(marker))).replace("{options}", ""))
    monkeypatch.chdir(tmp_path)
    for flags in (["--no-import"], ["--static"]):
        main(["check", *flags])
        out, err = capsys.readouterr()
        assert "truth pass" not in out + err
        assert not marker.exists()
    main(["check"])
    assert marker.read_text().startswith("ran")  # (the same project with the pass on: it does run)


def test_unknown_dialect_failing_on_sqlite_is_not_verified_not_r001(tmp_path):
    ini = MINIMAL_INI.replace("sqlalchemy.url = sqlite:///app.db\n", "")
    revs = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL)),
            "0002_pg.py": migration_text("0002", "0001", upgrades="op.execute('CREATE EXTENSION hstore')")}
    env = ENV_PY.replace('engine_from_config(config.get_section(config.config_ini_section, {}),\n'
                         '                                     prefix="sqlalchemy.", poolclass=pool.NullPool)',
                         'engine_from_config({"sqlalchemy.url": "postgresql://prod/db"}, prefix="sqlalchemy.")')
    make_project(tmp_path, revisions=revs, env_py=env.replace("{options}", ""), files={"alembic.ini": ini})
    outcome, _ = outcome_of(tmp_path, snapshots=False)
    assert outcome.failed == "0002" and outcome.diagnostics == []
    assert "not verified: 0002 fails on SQLite" in outcome.summary()


def test_mysql_without_a_url_is_skipped_once(tmp_path, capsys, monkeypatch):
    ini = MINIMAL_INI.replace("sqlite:///app.db", "mysql://prod.example/db")
    make_project(tmp_path, files={"alembic.ini": ini})
    monkeypatch.chdir(tmp_path)
    main(["check"])
    out, _ = capsys.readouterr()
    lines = [line for line in out.splitlines() if "truth pass" in line]
    assert lines == ["truth pass skipped for migrations: no mysql database to run the migrations on: "
                     "give one with --database-url"]
    assert "R001" not in out
