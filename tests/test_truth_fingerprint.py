"""The downgrade check's fingerprint (truth_child.Reflector, issue 15). The pass reflects a
schema only when the catalog fingerprint after a downgrade differs from the one before the
upgrade: every difference the reflection sees must change the fingerprint (else a downgrade
that leaves it behind would pass unseen), and the same schema made again must keep it (else
every healthy downgrade costs reflections). Real SQLite and real PostgreSQL (the embedded
cluster); a full pass in which downgrades leave each kind behind is at the end."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import migration_text
from sqlalchemy import pool
from test_models import INITIAL, indent, make_project
from test_truth import outcome_of

from migration_lsp import scratchdb, truth_child

BASE = ["CREATE TABLE parent (id INTEGER PRIMARY KEY, code VARCHAR(10))",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b VARCHAR(20), p INTEGER)"]

# kind -> the DDL after BASE that makes the other schema; (reflected): the kinds the
# downgrade check's reflection compares (D002 names them), the others the fingerprint sees too
COMMON = {
    "column (reflected)": ["ALTER TABLE t ADD COLUMN extra INTEGER"],
    "index (reflected)": ["CREATE INDEX ix_t_a ON t (a)"],
    "unique index (reflected)": ["CREATE UNIQUE INDEX ux_t_b ON t (b)"],
    "table (reflected)": ["CREATE TABLE extra (id INTEGER PRIMARY KEY)"],
}
SQLITE = {  # (SQLite: a table's constraints and types are in its CREATE TABLE)
    "type (reflected)": ["DROP TABLE t", "CREATE TABLE t (id INTEGER PRIMARY KEY, a BIGINT, b VARCHAR(20), p INTEGER)"],
    "length (reflected)": ["DROP TABLE t", "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b VARCHAR(30), p INTEGER)"],
    "nullability (reflected)": ["DROP TABLE t",
                                "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER NOT NULL, b VARCHAR(20), p INTEGER)"],
    "unique constraint (reflected)": ["DROP TABLE t", "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, "
                                      "b VARCHAR(20), p INTEGER, CONSTRAINT uq_t_b UNIQUE (b))"],
    "foreign key (reflected)": ["DROP TABLE t", "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b VARCHAR(20), "
                                "p INTEGER, CONSTRAINT fk_t_p FOREIGN KEY (p) REFERENCES parent (id))"],
    "server default": ["DROP TABLE t", "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER DEFAULT 0, "
                       "b VARCHAR(20), p INTEGER)"],
    "check constraint": ["DROP TABLE t", "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b VARCHAR(20), "
                         "p INTEGER, CONSTRAINT ck_t_a CHECK (a > 0))"],
    "trigger": ["CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END"],
    "view": ["CREATE VIEW v AS SELECT a FROM t"],
}
POSTGRES = {
    "type (reflected)": ["ALTER TABLE t ALTER COLUMN a TYPE BIGINT"],
    "length (reflected)": ["ALTER TABLE t ALTER COLUMN b TYPE VARCHAR(30)"],
    "nullability (reflected)": ["ALTER TABLE t ALTER COLUMN a SET NOT NULL"],
    "unique constraint (reflected)": ["ALTER TABLE t ADD CONSTRAINT uq_t_b UNIQUE (b)"],
    "foreign key (reflected)": ["ALTER TABLE t ADD CONSTRAINT fk_t_p FOREIGN KEY (p) REFERENCES parent (id)"],
    "foreign key target (reflected)": ["ALTER TABLE parent ADD CONSTRAINT uq_parent_code UNIQUE (code)",
                                       "ALTER TABLE t ADD COLUMN pc VARCHAR(10)",
                                       "ALTER TABLE t ADD CONSTRAINT fk_t_p FOREIGN KEY (pc) REFERENCES parent (code)"],
    "enum (reflected)": ["CREATE TYPE mood AS ENUM ('sad', 'ok')"],
    "enum value (reflected)": ["CREATE TYPE mood AS ENUM ('sad', 'ok')", "ALTER TYPE mood ADD VALUE 'happy'"],
    "server default": ["ALTER TABLE t ALTER COLUMN a SET DEFAULT 0"],
    "check constraint": ["ALTER TABLE t ADD CONSTRAINT ck_t_a CHECK (a > 0)"],
    "sequence": ["CREATE SEQUENCE s"],
    "view": ["CREATE VIEW v AS SELECT a FROM t"],
    "domain": ["CREATE DOMAIN posint AS INTEGER CHECK (VALUE > 0)"],
}
BASE_ENUM = ["CREATE TYPE mood AS ENUM ('sad', 'ok')"]  # (the "enum value" case's schema before)


class Databases:
    """Fresh databases of one dialect; `state(ddl)`: (fingerprint, reflection) of BASE + ddl."""

    def __init__(self, dialect: str, tmp_path: Path) -> None:
        self.dialect, self.tmp_path, self.made = dialect, tmp_path, 0
        self.scratch = scratchdb.open_scratch("postgresql") if dialect == "postgresql" else None

    def url(self):
        if self.scratch is not None:
            return truth_child.default_driver(sa.engine.make_url(self.scratch.url))
        self.made += 1
        return sa.engine.make_url(f"sqlite:///{self.tmp_path / f'db{self.made}.db'}")

    def state(self, ddl: list[str], version_table: bool = True):
        url = self.url()
        engine = sa.create_engine(url, poolclass=pool.NullPool)
        with engine.begin() as conn:
            if self.scratch is not None:  # (one database, emptied)
                conn.exec_driver_sql("DROP SCHEMA public CASCADE")
                conn.exec_driver_sql("CREATE SCHEMA public")
            if version_table:
                conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        for statement in BASE + ddl:  # (ALTER TYPE ... ADD VALUE: not in a transaction block before PG 12)
            with engine.begin() as conn:
                conn.exec_driver_sql(statement)
        engine.dispose()
        reflector = truth_child.Reflector(sa.create_engine, url, {})
        try:
            mark = reflector.mark()
            return mark, reflector.explain_now(mark), reflector
        finally:
            reflector.close()

    def close(self) -> None:
        if self.scratch is not None:
            self.scratch.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request, tmp_path):
    dbs = Databases(request.param, tmp_path)
    yield dbs
    dbs.close()


def test_every_kind_of_difference_changes_the_fingerprint(databases):
    cases = {**COMMON, **(POSTGRES if databases.dialect == "postgresql" else SQLITE)}
    base_mark, base_schema, reflector = databases.state([])
    assert isinstance(base_mark, tuple)  # a fingerprint (not a reflection: the dialect has the query)
    seen = set()
    for kind, ddl in cases.items():
        before = BASE_ENUM if kind == "enum value (reflected)" else []
        mark_before, schema_before, _ = databases.state(before) if before else (base_mark, base_schema, None)
        mark, schema, _ = databases.state(ddl)
        assert mark != mark_before, f"the fingerprint misses a {kind}"
        if "(reflected)" in kind:
            # what the downgrade check compares: a D002 would name it
            assert schema != schema_before, f"the reflection does not compare a {kind}"
        seen.add(kind)
    assert len(seen) == len(cases)


def test_the_same_schema_made_again_keeps_its_fingerprint(databases):
    """A healthy downgrade rebuilds the schema (a table dropped and created again, a column
    added and dropped, a constraint made with the same name): the fingerprint is the same,
    with or without Alembic's version table (the first upgrade creates it)."""
    ddl = ["CREATE INDEX ix_t_a ON t (a)", "ALTER TABLE t ADD COLUMN extra INTEGER"]
    once, schema, _ = databases.state(ddl, version_table=False)
    again, schema_again, _ = databases.state(
        ["CREATE TABLE gone (id INTEGER PRIMARY KEY)", "DROP TABLE gone", *ddl,
         "CREATE INDEX ix_gone ON t (b)", "DROP INDEX ix_gone"])
    assert once == again and schema == schema_again


# --------------------------------------------------------------------------- a whole pass (SQLite)

LEFT = {  # revision -> (upgrade, downgrade that leaves something behind, what D002 names)
    "0002": ("op.add_column('users', sa.Column('extra', sa.Integer()))", "pass", None),  # (D001: does nothing)
    "0003": ("op.create_index('ix_users_name', 'users', ['name'])", "pass", None),
    "0004": ("op.create_table('tags', sa.Column('id', sa.Integer(), primary_key=True),"
             " sa.Column('user_id', sa.Integer()))",
             "op.drop_table('tags')", None),  # (healthy)
    "0005": ("with op.batch_alter_table('tags') as b:\n"
             "        b.create_foreign_key('fk_tags_user', 'users', ['user_id'], ['id'])\n"
             "        b.create_unique_constraint('uq_tags_user', ['user_id'])\n"
             "        b.alter_column('user_id', existing_type=sa.Integer(), nullable=False)",
             "with op.batch_alter_table('tags') as b:\n"
             "        b.drop_constraint('uq_tags_user', type_='unique')",
             ["foreign key fk_tags_user on tags", "column tags.user_id"]),
    "0006": ("op.add_column('users', sa.Column('score', sa.Integer()))",
             "op.drop_column('users', 'score')\n    op.add_column('users', sa.Column('left_over', sa.String(5)))",
             ["column users.left_over"]),
}


def test_downgrades_leaving_each_kind_behind_are_found_in_one_run(tmp_path):
    revs = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL), downgrades="op.drop_table('users')")}
    for rev, (up, down, _) in LEFT.items():
        revs[f"{rev}_c.py"] = migration_text(rev, f"{int(rev) - 1:04d}", upgrades=up, downgrades=down)
    make_project(tmp_path, revisions=revs)
    outcome, _ = outcome_of(tmp_path, snapshots=False)
    assert outcome.ran == 6 and outcome.compared
    found = {d.path.name[:4]: d for d in outcome.diagnostics if d.code in ("D001", "D002")}
    assert found["0002"].code == "D001" and found["0003"].code == "D001"
    assert "0004" not in found and "0001" not in found
    for rev in ("0005", "0006"):
        assert found[rev].code == "D002", found[rev].message
        for name in LEFT[rev][2]:
            assert name in found[rev].message, (rev, name, found[rev].message)
    timings = outcome.timings
    # one run, SQLite file copies explain each difference; the healthy revisions reflect nothing
    assert timings.get("passes", 1) == 1
    assert 0 < timings["reflections"] <= 3 * 4  # (before, after the upgrade, after the downgrade: the four that differ)
