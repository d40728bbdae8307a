"""Where a model difference is reported: the line that declares it in the models, never
env.py's. The model child records where each Table, Column, Index and constraint is made;
what used to fall back to env.py's `target_metadata` line: a Table() no variable holds, a
table a function builds, a column of a mixin or of a declared_attr, an Index inside
__table_args__. The differences themselves are checked against real Alembic."""

from __future__ import annotations

import textwrap

from conftest import migration_text
from test_env_models import alembic_check, loaded, project
from test_models import INITIAL, indent, m_diags

MORE = '''\
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from app import util
from app.base import Base


def audit_table(name):
    return sa.Table(name, Base.metadata,
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("at", sa.Integer))


audit_table("audit_a")
audit_table("audit_b")
sa.Table("loose", Base.metadata, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("extra", sa.Integer))


class Stamped:
    created: Mapped[int] = mapped_column(sa.Integer, nullable=True)
    flag: Mapped[Optional[int]]  # made by SQLAlchemy when Doc is created

    @declared_attr
    def owner_id(cls) -> Mapped[int]:
        return mapped_column(sa.Integer, nullable=True)


class Doc(Stamped, Base):
    __tablename__ = "docs"
    __table_args__ = (
        sa.UniqueConstraint("title", name="uq_docs_title"),
        sa.Index("ix_docs_title", "title"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(20))


class Legacy:  # (buildbot: Table()s as class attributes, made through the project's wrapper)
    first = util.Table("first", Base.metadata, sa.Column("id", sa.Integer, primary_key=True))
    second = util.Table("second", Base.metadata, sa.Column("id", sa.Integer, primary_key=True))
'''

UTIL = '''\
import sqlalchemy as sa


def Table(*args, **kwargs):
    kwargs["mysql_character_set"] = "utf8"
    return sa.Table(*args, **kwargs)
'''

TABLES = """\
op.create_table('audit_a', sa.Column('id', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'))
op.create_table('loose', sa.Column('id', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'))
op.create_table('docs', sa.Column('id', sa.Integer(), nullable=False),
                sa.Column('title', sa.String(length=20), nullable=False), sa.PrimaryKeyConstraint('id'))"""


def line_of(text: str, needle: str) -> int:
    """0-based line of the one line containing `needle`."""
    (line,) = [n for n, ln in enumerate(text.splitlines()) if needle in ln]
    return line


def test_model_differences_are_located_where_the_models_declare_them(tmp_path):
    head = "from app.base import Base\nimport app.more  # noqa: F401\n\ntarget_metadata = Base.metadata"
    revisions = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL)),
                 "0002_more.py": migration_text("0002", "0001", upgrades=indent(TABLES))}
    root = project(tmp_path, head=head, files={"app/more.py": MORE, "app/util.py": UTIL}, revisions=revisions)
    truth = alembic_check(root)
    for item in ("'add_table'", "audit_b", "Table('first'", "Table('second'", "('add_column', None, 'audit_a'", "'at'", "'extra'", "'created'", "'flag'",
                 "'owner_id'", "ix_docs_title", "('add_constraint', UniqueConstraint"):
        assert item in truth, item  # real Alembic finds each of them
    _, state = loaded(root)
    more = (root / "app" / "more.py").resolve()
    found = {d.data.get("what"): (d.path.resolve(), d.span.line) for d in m_diags(state) if d.code == "M001"}
    assert found == {
        "table audit_b": (more, line_of(MORE, 'audit_table("audit_b")')),  # the call that builds it
        "table first": (more, line_of(MORE, "first = util.Table(")),  # not the wrapper's line
        "table second": (more, line_of(MORE, "second = util.Table(")),
        "column audit_a.at": (more, line_of(MORE, 'sa.Column("at"')),
        "column loose.extra": (more, line_of(MORE, 'sa.Column("extra"')),  # a Table() no variable holds
        "column docs.created": (more, line_of(MORE, "created: Mapped")),  # the mixin's column
        "column docs.flag": (more, line_of(MORE, "flag: Mapped")),  # the mixin's annotation
        "column docs.owner_id": (more, line_of(MORE, "return mapped_column")),  # the declared_attr's
        "index ix_docs_title on docs": (more, line_of(MORE, 'sa.Index("ix_docs_title"')),
        "unique constraint on docs(title)": (more, line_of(MORE, 'sa.UniqueConstraint("title"')),
    }
    assert not [d for d in m_diags(state) if d.code != "M001"]


def test_models_declared_in_env_py_itself_are_located_there(tmp_path):
    """A Table() in env.py (env.py is not an importable module: no class scan finds it)."""
    head = textwrap.dedent("""\
        import sqlalchemy as sa

        from app.base import Base

        extra = sa.MetaData()
        sa.Table("notes", extra, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("body", sa.Text))
        target_metadata = [Base.metadata, extra]""")
    create = "op.create_table('notes', sa.Column('id', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'))"
    revisions = {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL) + "\n    " + create)}
    root = project(tmp_path, head=head, revisions=revisions)
    assert "'body'" in alembic_check(root)
    _, state = loaded(root)
    env_py = (root / "migrations" / "env.py").resolve()
    (diag,) = m_diags(state)
    assert diag.data.get("what") == "column notes.body"
    assert (diag.path.resolve(), diag.span.line) == (env_py, line_of(env_py.read_text(), 'sa.Column("body"'))
