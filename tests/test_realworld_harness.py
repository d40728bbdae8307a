"""The real-world benchmark's vocabulary (benchmarks/realworld/normalize.py): Alembic's
compare_metadata output and migration-lsp's M001–M003 diagnostics become the same items.

The Alembic side is checked on real compare_metadata output (in-memory SQLite); the
migration-lsp side on the messages migration_lsp/checks/models.py writes, produced by a real
`check` run on a small project, so a change of wording breaks this test, not the benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "realworld"))
from normalize import from_alembic, from_diagnostic, score  # noqa: E402


def _db_and_models() -> tuple[sa.Engine, sa.MetaData]:
    engine = sa.create_engine("sqlite://")
    db = sa.MetaData()  # what the migrations created
    sa.Table("users", db, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(10)),
             sa.Column("old", sa.Integer, index=True))
    sa.Table("gone", db, sa.Column("id", sa.Integer, primary_key=True))
    db.create_all(engine)
    md = sa.MetaData()
    sa.Table("users", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.Text, nullable=False), sa.Column("email", sa.String(50), index=True),
             sa.UniqueConstraint("email", "name", name="uq_users"))
    sa.Table("posts", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")))
    return engine, md


def test_alembic_differences_become_items():
    engine, md = _db_and_models()
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), md)
    items = sorted({i for d in diffs for i in from_alembic(d)})
    assert items == sorted({
        ("add_table", "posts", ""),
        ("remove_table", "gone", ""),
        ("add_column", "users", "email"),
        ("remove_column", "users", "old"),
        ("modify_type", "users", "name"),
        ("modify_nullable", "users", "name"),
        ("add_index", "users", "ix_users_email"),
        ("remove_index", "users", "ix_users_old"),
        ("add_unique", "users", "email,name"),
    })


def test_messages_become_items():
    diag = lambda code, message: {"code": code, "message": message}  # noqa: E731
    assert from_diagnostic(diag("M001", "column posts.published_at is in the models but no migration creates it")) \
        == [("add_column", "posts", "published_at")]
    assert from_diagnostic(diag("M002", "table audit.log exists in the migrations but not in the models")) \
        == [("remove_table", "audit.log", "")]
    assert from_diagnostic(diag("M001", "index ix_a on t is in the models but no migration creates it")) \
        == [("add_index", "t", "ix_a")]
    assert from_diagnostic(diag("M002", "unique constraint on t(b, a) exists in the migrations but not in the models")) \
        == [("remove_unique", "t", "a,b")]
    assert from_diagnostic(diag("M001", "foreign key on s.t(a) is in the models but no migration creates it")) \
        == [("add_fk", "s.t", "a")]
    assert from_diagnostic(diag(
        "M003", "column t.c differs: type VARCHAR(10) in the migrations, TEXT() in the model; "
                "NOT NULL in the model, nullable in the migrations")) \
        == [("modify_type", "t", "c"), ("modify_nullable", "t", "c")]
    assert from_diagnostic(diag(  # (an expression index's columns: parentheses in parentheses, prefect)
        "M002", "index ix_f on flow_run (deployment_id, (created_by ->> 'id'::text), next_start) is in the "
                "database at head but not in the models (alembic check)")) == [("remove_index", "flow_run", "ix_f")]
    assert from_diagnostic(diag("M001", "something new")) == [("unparsed", "M001", "something new")]
    assert from_diagnostic(diag("G001", "anything")) == []


def test_score_counts_found_missed_and_false():
    truth = [("add_column", "t", "a"), ("remove_table", "x", "")]
    found = [("add_column", "t", "a"), ("add_index", "t", "ix")]
    sc = score(truth, found)
    assert (sc["truth"], sc["found"], sc["missed"], sc["false"]) == \
        (2, 1, [("remove_table", "x", "")], [("add_index", "t", "ix")])
    assert sc["recall"] == 0.5 and sc["precision"] == 0.5
    assert score([], [])["recall"] is None


def test_real_check_output_maps_to_alembic_items(tmp_path):
    """The same drift, seen by real Alembic and by a real `migration-lsp check`, gives the
    same items: the message parser follows what the product writes."""
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = migrations\nsqlalchemy.url = sqlite://\n")
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "models.py").write_text(textwrap.dedent("""\
        import sqlalchemy as sa
        metadata = sa.MetaData()
        users = sa.Table("users", metadata, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("name", sa.Text, nullable=False), sa.Column("email", sa.String(50)))
        posts = sa.Table("posts", metadata, sa.Column("id", sa.Integer, primary_key=True))
    """))
    (tmp_path / "migrations" / "env.py").write_text(textwrap.dedent("""\
        from alembic import context
        from models import metadata
        target_metadata = metadata
    """))
    (tmp_path / "migrations" / "versions" / "a1_init.py").write_text(textwrap.dedent("""\
        import sqlalchemy as sa
        from alembic import op
        revision = "a1"
        down_revision = None
        def upgrade():
            op.create_table("users", sa.Column("id", sa.Integer, primary_key=True),
                            sa.Column("name", sa.String(10)), sa.Column("old", sa.Integer))
            op.create_table("gone", sa.Column("id", sa.Integer, primary_key=True))
        def downgrade():
            op.drop_table("gone")
            op.drop_table("users")
    """))
    proc = subprocess.run([sys.executable, "-m", "migration_lsp", "check", "--format", "json", "--no-cache",
                           "--exit-zero", "."], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    ours = sorted({i for d in json.loads(proc.stdout)["diagnostics"] for i in from_diagnostic(d)})

    engine = sa.create_engine("sqlite://")
    db = sa.MetaData()  # what a1 creates
    sa.Table("users", db, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(10)),
             sa.Column("old", sa.Integer))
    sa.Table("gone", db, sa.Column("id", sa.Integer, primary_key=True))
    db.create_all(engine)
    namespace: dict = {}
    exec((tmp_path / "models.py").read_text(), namespace)
    with engine.connect() as conn:
        truth = sorted({i for d in compare_metadata(MigrationContext.configure(conn), namespace["metadata"])
                        for i in from_alembic(d)})
    assert truth == ours
