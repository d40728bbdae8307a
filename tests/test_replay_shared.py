"""What the replay shares between evaluations of the same text must say the same everywhere.

A create_table or add_column evaluated again from the same text reuses the SQLAlchemy
Table / Column its first evaluation made (replay.created_table, issue 13's memory work).
That is right only if the evaluation is a function of what the key holds, and if nothing
mutates what is shared:

- the same revision text next to other models (two services of one repository with the
  same first migration, `op.create_table(User.__tablename__, ...)`) names other tables:
  each gets its own (before the fix: the second service replayed the first one's table,
  a false M002 and M001 pair);
- one history altering, renaming and dropping what it shares with another (columns,
  constraints, indexes, foreign keys) changes nothing the other's states say, nor what
  comparing the two finds.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

from migration_lsp.cli import main
from migration_lsp.compare import CompareOptions, compare
from migration_lsp.graph import RevisionGraph
from migration_lsp.replay import Replay
from migration_lsp.scripts import parse_script

from conftest import migration_text, write_project
from test_schema_sharing import _described, describe_state, handmade_scripts

# `from models import User, Org`: the table names come from models.py next to the migrations
FROM_MODELS = """
    op.create_table(Org.__tablename__, sa.Column('id', sa.Integer(), primary_key=True))
    op.create_table(User.__tablename__, sa.Column('id', sa.Integer(), primary_key=True))
    op.add_column(User.__tablename__, sa.Column('org_id', sa.Integer(), sa.ForeignKey(Org.id)))
"""


def _service(root: Path, users: str, orgs: str) -> Path:
    """A service folder: models.py naming the tables, one revision reading the names from it."""
    text = migration_text("a1", None, upgrades=FROM_MODELS).replace(
        "import sqlalchemy as sa", "import sqlalchemy as sa\nfrom models import User, Org")
    write_project(root, {
        "alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\npath_separator = os\nsqlalchemy.url = sqlite://\n",
        "models.py": f"""
            import sqlalchemy as sa
            from sqlalchemy.orm import DeclarativeBase

            class Base(DeclarativeBase):
                pass

            class Org(Base):
                __tablename__ = {orgs!r}
                id = sa.Column(sa.Integer, primary_key=True)

            class User(Base):
                __tablename__ = {users!r}
                id = sa.Column(sa.Integer, primary_key=True)
                org_id = sa.Column(sa.Integer, sa.ForeignKey(Org.id))
        """,
        "migrations/env.py": "from alembic import context\nfrom models import Base\ntarget_metadata = Base.metadata\n",
        "migrations/versions/a1_.py": text,
    })
    return root / "migrations" / "versions" / "a1_.py"


ALIVE: list = []  # the states replayed so far: what they share stays alive for the next replay


def _replayed(path: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """table -> [(column, foreign key targets)] after the one revision at `path`."""
    graph = RevisionGraph([parse_script(path, path.read_text(encoding="utf-8"))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        after = Replay(graph).revision("a1").after
    ALIVE.append(after)
    return {key: [(c.name, sorted(fk.target_fullname for fk in c.column.foreign_keys)) for c in table.columns]
            for key, table in after.tables.items()}


def test_the_same_text_next_to_other_models_makes_its_own_tables(tmp_path):
    a = _service(tmp_path / "a", "people", "orgs")
    b = _service(tmp_path / "b", "members", "teams")
    assert a.read_text() == b.read_text()
    assert _replayed(a) == {"orgs": [("id", [])], "people": [("id", []), ("org_id", ["orgs.id"])]}
    # (before: orgs and people again, no org_id)
    assert _replayed(b) == {"teams": [("id", [])], "members": [("id", []), ("org_id", ["teams.id"])]}
    # and after an edit of models.py, the same file evaluated again reads the new names
    models = tmp_path / "a" / "models.py"
    models.write_text(models.read_text().replace("'people'", "'persons'").replace("'orgs'", "'groups'"))
    assert _replayed(a) == {"groups": [("id", [])], "persons": [("id", []), ("org_id", ["groups.id"])]}
    ALIVE.clear()


def test_two_services_with_the_same_revision_check_clean(tmp_path, monkeypatch, capsys):
    """What a user saw: `check --static` on the repository reported service b's history as
    making service a's tables (M002 orgs, people) and not its own (M001 teams)."""
    _service(tmp_path / "a", "people", "orgs")
    _service(tmp_path / "b", "members", "teams")
    monkeypatch.chdir(tmp_path)
    main(["check", "--static", "--no-cache", "--select", "M001,M002,M003", "."])
    out = capsys.readouterr().out
    assert "M00" not in out, out
    assert "2 environments" in out


# On top of a1 and b1 of test_schema_sharing.HISTORY (the same texts: their tables and added
# columns are shared), everything that could write into what is shared.
MUTATOR = """
    op.alter_column('users', 'name', new_column_name='handle', type_=sa.String(80), nullable=False,
                    server_default='x', comment='renamed')
    op.alter_column('users', 'org_id', type_=sa.BigInteger(), nullable=False)
    op.alter_column('users', 'email', type_=sa.Text(), nullable=False, server_default='')
    op.alter_column('tags', 'code', new_column_name='tag_code', type_=sa.String(9))
    op.create_primary_key('pk_tags', 'tags', ['id'])
    op.drop_constraint('ck_users_id', 'users', type_='check')
    op.create_unique_constraint('uq_users_email', 'users', ['email'])
    op.drop_index('ix_users_name', table_name='users')
    op.rename_table('organizations', 'orgs2')
    op.alter_column('orgs2', 'id', new_column_name='org_key')
    op.rename_table('posts', 'articles')
    op.alter_column('articles', 'user_id', new_column_name='author_id', type_=sa.BigInteger())
    op.create_table_comment('users', 'changed')
    op.drop_column('users', 'score')
    op.add_column('users', sa.Column('score', sa.Text(), nullable=False))
"""


def test_what_one_history_does_to_shared_tables_no_other_sees(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "q").mkdir()
    p_graph = RevisionGraph(handmade_scripts(tmp_path / "p"))
    p_replay = Replay(p_graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seen = {rev: (describe_state(r.before), describe_state(r.after))
                for rev in p_graph.by_id for r in [p_replay.revision(rev)]}
        q_scripts = [s for s in handmade_scripts(tmp_path / "q") if s.revision_id in ("a1", "b1")]
        text = migration_text("x1", "b1", upgrades=textwrap.dedent(MUTATOR).strip("\n").replace("\n", "\n    "))
        path = tmp_path / "q" / "x1_x.py"
        path.write_text(text, encoding="utf-8")
        q_graph = RevisionGraph([*q_scripts, parse_script(path, text)])
        q_replay = Replay(q_graph)
        q_head = q_replay.revision("x1").after
        p_head = p_replay.revision("g1").after
        # the test means something: the histories do share their first tables and columns
        p_users, q_users = p_replay.revision("a1").after.table("users"), q_replay.revision("a1").after.table("users")
        assert p_users.column("id").column is q_users.column("id").column
        p_email = p_replay.revision("b1").after.table("users").column("email").column
        assert p_email is q_replay.revision("b1").after.table("users").column("email").column
        # and the mutator changed what it should, in its own states only
        assert q_head.table("users").column("handle").column.type.length == 80
        assert q_head.table("users").column("email").column.nullable is False
        assert p_email.nullable is True and repr(p_email.type) == "String(length=100)"
        # comparing the two heads (each as the other's models) reads the shared objects twice
        found = [[(d.kind, d.what, d.detail) for d in compare(a, b.tables, CompareOptions(dialect="sqlite"))]
                 for a, b in ((p_head, q_head), (q_head, p_head))]
        assert found[0] and found[1]
        assert found == [[(d.kind, d.what, d.detail) for d in compare(a, b.tables, CompareOptions(dialect="sqlite"))]
                         for a, b in ((p_head, q_head), (q_head, p_head))]
        _described.clear()  # describe every table afresh
        for rev, (before, after) in seen.items():
            assert describe_state(p_replay.revision(rev).before) == before, rev
            assert describe_state(p_replay.revision(rev).after) == after, rev
        # a fresh replay of the same texts (sharing with both) says what the first one said
        fresh = Replay(RevisionGraph(handmade_scripts(tmp_path / "p")))
        for rev, (before, after) in seen.items():
            assert (describe_state(fresh.revision(rev).before), describe_state(fresh.revision(rev).after)) \
                == (before, after), rev
