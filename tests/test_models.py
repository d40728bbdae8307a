"""Stage `models` + rule family M: real projects on disk, models loaded in a child process."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path


from migration_lsp import models as models_module
from migration_lsp.engine import Engine
from migration_lsp.models import metadata_source

from conftest import MINIMAL_INI, line_of, migration_text

ENV_PY = """\
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

from app.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online():
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}),
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata{options})
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
"""

MODELS = """\
from sqlalchemy import ForeignKey, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    email: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), server_default="new")
{extra_user}
{extra_classes}
"""

INITIAL = """\
op.create_table('users',
    sa.Column('id', sa.INTEGER(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('email', sa.VARCHAR(length=100), nullable=True),
    sa.Column('status', sa.String(length=10), server_default='new', nullable=False),
    sa.PrimaryKeyConstraint('id'),
)"""


def indent(code: str) -> str:
    return textwrap.dedent(code).strip("\n").replace("\n", "\n    ")


def make_project(root: Path, *, extra_user: str = "", extra_classes: str = "", models: str | None = None,
                 env_py: str | None = None, options: str = "", revisions: dict[str, str] | None = None,
                 pyproject: str | None = None, files: dict[str, str] | None = None) -> Path:
    revs = revisions if revisions is not None else {"0001_initial.py": migration_text("0001", upgrades=indent(INITIAL))}
    tree = {
        "alembic.ini": MINIMAL_INI,
        "migrations/env.py": env_py if env_py is not None else ENV_PY.replace("{options}", options),
        "app/__init__.py": "",
        "app/models.py": models if models is not None else MODELS.format(
            extra_user=textwrap.indent(textwrap.dedent(extra_user), "    "), extra_classes=extra_classes),
    }
    tree.update({f"migrations/versions/{n}": t for n, t in revs.items()})
    if pyproject is not None:
        tree["pyproject.toml"] = pyproject
    tree.update(files or {})
    for rel, text in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def loaded(root: Path, trusted: bool = True):
    engine = Engine([root], trusted=trusted)
    engine.load_models()
    snapshot = engine.snapshot()
    assert len(snapshot.environments) == 1
    return engine, snapshot.environments[0]


def m_diags(state, codes=("M001", "M002", "M003", "M004")):
    return [d for d in state.diagnostics if d.code in codes]


def models_py(root: Path) -> Path:
    return (root / "app" / "models.py").resolve()


def env_py(root: Path) -> Path:
    return (root / "migrations" / "env.py").resolve()


# --------------------------------------------------------------------------- clean project


def test_models_matching_the_migrations_give_no_diagnostics(tmp_path):
    """INTEGER vs Integer, VARCHAR(100) vs String(100): not differences."""
    engine, state = loaded(make_project(tmp_path))
    assert m_diags(state) == []
    assert state.differences == ()
    # what to watch for a reload: the project's own modules, nothing installed, not env.py
    assert engine.model_files() == {(tmp_path / "app" / "__init__.py").resolve(), models_py(tmp_path)}


def test_the_server_process_never_imports_project_code(tmp_path):
    make_project(tmp_path, extra_classes="import sys\nsys.modules['migration_lsp_marker'] = sys\n")
    before = set(sys.modules)
    _, state = loaded(tmp_path)
    assert m_diags(state) == []
    assert "migration_lsp_marker" not in sys.modules  # the models module sets it when imported
    assert not [m for m in set(sys.modules) - before if m == "app" or m.startswith("app.")]


# --------------------------------------------------------------------------- M001 / M002 / M003


def test_m001_for_a_model_column_lands_on_the_attribute_line(tmp_path):
    root = make_project(tmp_path, extra_user="nickname: Mapped[str | None] = mapped_column(String(30))\n")
    _, state = loaded(root)
    diags = m_diags(state)
    assert [d.code for d in diags] == ["M001"]
    d = diags[0]
    text = models_py(root).read_text()
    assert d.path == models_py(root)
    assert d.span.line == line_of(text, "nickname: Mapped")
    assert "users.nickname" in d.message
    assert [type(x.op).__name__ for x in state.differences] == ["AddColumnOp"]


def test_m001_for_a_whole_model_table_lands_on_the_class_line(tmp_path):
    root = make_project(tmp_path, extra_classes=textwrap.dedent("""

        class Post(Base):
            __tablename__ = "posts"

            id: Mapped[int] = mapped_column(primary_key=True)
            user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
            body: Mapped[str] = mapped_column(Text)
    """))
    _, state = loaded(root)
    diags = m_diags(state)
    assert {d.code for d in diags} == {"M001"}
    text = models_py(root).read_text()
    table_diags = [d for d in diags if "table posts" in d.message]
    assert len(table_diags) == 1
    assert table_diags[0].span.line == line_of(text, "class Post(Base)")
    kinds = [type(x.op).__name__ for x in state.differences]
    assert kinds[0] == "CreateTableOp" and "CreateIndexOp" in kinds


def test_m002_for_a_migrated_column_absent_from_the_models_lands_on_its_op(tmp_path):
    second = migration_text("0002", "0001", upgrades=indent("""
        op.add_column('users', sa.Column('legacy', sa.Integer(), nullable=True))
    """))
    root = make_project(tmp_path, revisions={
        "0001_initial.py": migration_text("0001", upgrades=indent(INITIAL)), "0002_legacy.py": second})
    _, state = loaded(root)
    diags = m_diags(state)
    assert [d.code for d in diags] == ["M002"]
    path = (root / "migrations" / "versions" / "0002_legacy.py").resolve()
    assert diags[0].path == path
    assert diags[0].span.line == line_of(second, "op.add_column('users'")
    assert "users.legacy" in diags[0].message


def test_m002_for_a_migrated_table_lands_on_create_table(tmp_path):
    first = migration_text("0001", upgrades=indent(INITIAL + """
op.create_table('audit', sa.Column('id', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'))"""))
    root = make_project(tmp_path, revisions={"0001_initial.py": first})
    _, state = loaded(root)
    diags = m_diags(state)
    assert [d.code for d in diags] == ["M002"]
    assert diags[0].span.line == line_of(first, "op.create_table('audit'")
    assert "table audit" in diags[0].message


def test_m003_type_and_nullability_on_the_model_line(tmp_path):
    models = MODELS.format(extra_user="", extra_classes="").replace(
        'name: Mapped[str] = mapped_column(String(50))', 'name: Mapped[str] = mapped_column(String(100))').replace(
        'email: Mapped[str | None] = mapped_column(String(100))', 'email: Mapped[str] = mapped_column(String(100))')
    root = make_project(tmp_path, models=models)
    _, state = loaded(root)
    diags = sorted(m_diags(state), key=lambda d: d.span.line)
    assert [d.code for d in diags] == ["M003", "M003"]
    assert diags[0].span.line == line_of(models, "name: Mapped")
    assert "String(length=50)" in diags[0].message and "String(length=100)" in diags[0].message
    assert diags[1].span.line == line_of(models, "email: Mapped")
    assert "NOT NULL in the model" in diags[1].message
    ops = {x.op.column_name: x.op for x in state.differences}
    assert ops["name"].modify_type.length == 100
    assert ops["email"].modify_nullable is False


def test_alembic_version_and_excluded_tables_are_ignored(tmp_path):
    root = make_project(tmp_path, extra_classes=textwrap.dedent("""

        class Version(Base):
            __tablename__ = "alembic_version"
            version_num: Mapped[str] = mapped_column(String(32), primary_key=True)


        class Spatial(Base):
            __tablename__ = "spatial_ref_sys"
            srid: Mapped[int] = mapped_column(primary_key=True)
    """), pyproject='[tool.migration-lsp]\nexclude-tables = ["spatial_ref_sys"]\n')
    _, state = loaded(root)
    assert m_diags(state) == []
    # without the setting the excluded table is reported, alembic_version still is not
    (root / "pyproject.toml").unlink()
    _, state = loaded(root)
    assert [(d.code, "spatial_ref_sys" in d.message) for d in m_diags(state)] == [("M001", True)]


def test_server_default_compared_only_when_env_py_asks(tmp_path):
    models = MODELS.format(extra_user="", extra_classes="").replace('server_default="new"', 'server_default="fresh"')
    root = make_project(tmp_path, models=models)
    _, state = loaded(root)
    assert m_diags(state) == []
    make_project(tmp_path, models=models, options=", compare_server_default=True")
    _, state = loaded(root)
    diags = m_diags(state)
    assert [d.code for d in diags] == ["M003"]
    assert diags[0].span.line == line_of(models, "status: Mapped")
    assert "fresh" in diags[0].message and "new" in diags[0].message
    # the same default on both sides: nothing
    make_project(tmp_path, options=", compare_server_default=True")
    _, state = loaded(root)
    assert m_diags(state) == []


# --------------------------------------------------------------------------- M004


def _only_m004(state, root):
    diags = m_diags(state)
    assert [d.code for d in diags] == ["M004"], diags
    d = diags[0]
    assert d.path == env_py(root)
    return d


def test_m004_when_untrusted_and_nothing_is_run(tmp_path):
    root = make_project(tmp_path, extra_classes=f"open({str(tmp_path / 'RAN')!r}, 'w').write('x')\n")
    _, state = loaded(root, trusted=False)
    d = _only_m004(state, root)
    assert "not trusted" in d.message
    assert d.span.line == line_of(ENV_PY, "target_metadata = Base.metadata")
    assert not (tmp_path / "RAN").exists()


def test_m004_when_the_models_fail_to_import(tmp_path):
    root = make_project(tmp_path, extra_classes="import no_such_dependency_xyz\n")
    _, state = loaded(root)
    d = _only_m004(state, root)
    assert "no_such_dependency_xyz" in d.message and "ModuleNotFoundError" in d.message
    assert d.span.line == line_of(ENV_PY, "target_metadata = Base.metadata")


def test_m004_when_env_py_has_no_target_metadata(tmp_path):
    root = make_project(tmp_path, env_py="from alembic import context\n\ncontext.configure()\n")
    _, state = loaded(root)
    d = _only_m004(state, root)
    assert "target_metadata" in d.message


def test_no_m004_when_target_metadata_is_none(tmp_path):
    root = make_project(tmp_path, env_py="from alembic import context\n\ntarget_metadata = None\n")
    _, state = loaded(root)
    assert m_diags(state) == []
    _, state = loaded(root, trusted=False)  # not even the untrusted note: nothing to compare
    assert m_diags(state) == []


def test_m004_when_loading_times_out(tmp_path, monkeypatch):
    root = make_project(tmp_path, extra_classes="import time\ntime.sleep(30)\n")
    monkeypatch.setattr(models_module, "TIMEOUT", 1.0)  # the engine uses the module's TIMEOUT
    engine = Engine([root])
    engine.load_models()
    (result,) = engine.models.values()
    assert result.error and result.tables == {}
    d = _only_m004(engine.snapshot().environments[0], root)
    assert "took longer than 1 s (killed)" in d.message


def test_noise_on_stdout_while_importing_still_works(tmp_path):
    root = make_project(tmp_path, extra_classes=textwrap.dedent("""
        print("@@MIGRATION_LSP_MODELS@@{not json")
        print('{"tables": []}')
        import os, sys
        os.write(1, b"@@MIGRATION_LSP_MODELS@@{\\"tables\\": [], \\"error\\": \\"fake\\"}\\nraw fd noise\\n")
        sys.stderr.write("warning: something\\n")
    """), extra_user="nickname: Mapped[str | None] = mapped_column(String(30))\n")
    _, state = loaded(root)
    assert [d.code for d in m_diags(state)] == ["M001"]


def test_models_setting_overrides_env_py(tmp_path):
    other = textwrap.dedent("""\
        from sqlalchemy import Integer, MetaData, Table, Column

        metadata = MetaData()
        users = Table("users", metadata, Column("id", Integer, primary_key=True))
        widgets = Table("widgets", metadata, Column("id", Integer, primary_key=True))
    """)
    root = make_project(tmp_path, env_py=ENV_PY.replace("{options}", "").replace(
        "from app.models import Base", "from app.broken import Base"),
        pyproject='[tool.migration-lsp]\nmodels = "app.other:metadata"\n', files={"app/other.py": other})
    _, state = loaded(root)
    by_code = {}
    for d in m_diags(state):
        by_code.setdefault(d.code, []).append(d)
    assert set(by_code) == {"M001", "M002"}, m_diags(state)
    assert [d.span.line for d in by_code["M001"]] == [line_of(other, "widgets = Table(")]
    assert by_code["M001"][0].path == (root / "app" / "other.py").resolve()
    assert {d.message.split(" exists")[0] for d in by_code["M002"]} == {
        "column users.name", "column users.email", "column users.status"}


def test_a_list_of_metadatas_in_env_py(tmp_path):
    extra = textwrap.dedent("""\
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


        class Other(DeclarativeBase):
            pass


        class Thing(Other):
            __tablename__ = "things"
            id: Mapped[int] = mapped_column(primary_key=True)
    """)
    env = ENV_PY.replace("{options}", "").replace(
        "from app.models import Base", "from app.models import Base\nfrom app import extra").replace(
        "target_metadata = Base.metadata", "target_metadata = [Base.metadata, extra.Other.metadata]")
    root = make_project(tmp_path, env_py=env, files={"app/extra.py": extra})
    source = metadata_source(Engine([root]).workspace.discoveries[0].environments[0])
    assert source.specs == ("app.models.Base.metadata", "app.extra.Other.metadata")
    _, state = loaded(root)
    diags = m_diags(state)
    assert [d.code for d in diags] == ["M001"]
    assert diags[0].path == (root / "app" / "extra.py").resolve()
    assert diags[0].span.line == line_of(extra, "class Thing(Other)")


def test_m001_lands_on_the_attribute_even_when_its_key_differs_from_the_column_name(tmp_path):
    root = make_project(tmp_path, extra_user=textwrap.dedent("""\
        nick_name: Mapped[str | None] = mapped_column(
            "nickname",
            String(30),
        )
    """))
    _, state = loaded(root)
    diags = m_diags(state)
    assert [d.code for d in diags] == ["M001"]
    assert "users.nickname" in diags[0].message
    assert diags[0].span.line == line_of(models_py(root).read_text(), "nick_name: Mapped")


def test_missing_index_lands_on_the_indexed_attribute_or_table_args(tmp_path):
    models = MODELS.format(extra_user="", extra_classes="").replace(
        'email: Mapped[str | None] = mapped_column(String(100))',
        'email: Mapped[str | None] = mapped_column(String(100), index=True)').replace(
        '    __tablename__ = "users"\n',
        '    __tablename__ = "users"\n    __table_args__ = (Index("ix_users_name_status", "name", "status"),)\n').replace(
        "from sqlalchemy import ", "from sqlalchemy import Index, ")
    root = make_project(tmp_path, models=models)
    _, state = loaded(root)
    diags = sorted(m_diags(state), key=lambda d: d.span.line)
    assert [d.code for d in diags] == ["M001", "M001"], diags
    assert "ix_users_name_status" in diags[0].message
    assert diags[0].span.line == line_of(models, "__table_args__")
    assert "ix_users_email" in diags[1].message
    assert diags[1].span.line == line_of(models, "email: Mapped")


def test_generated_revision_for_dialect_types_and_custom_types(tmp_path):
    """PostgreSQL types render the way Alembic's PostgreSQL renderer writes them (with the
    import they need), a TypeDecorator as its implementation; the file, once written, is
    read back by the engine as matching the models."""
    from migration_lsp.core import Span
    from migration_lsp.features import Locator
    from migration_lsp.features.actions import GENERATE_KIND, EditSupport, code_actions, resolve_edit

    models = MODELS.format(extra_user=textwrap.indent(textwrap.dedent("""\
        data: Mapped[dict] = mapped_column(postgresql.JSONB)
        tags: Mapped[list] = mapped_column(postgresql.ARRAY(String(5)))
        guid: Mapped[str | None] = mapped_column(GUID)
    """), "    "), extra_classes="").replace(
        "from sqlalchemy.orm", "from sqlalchemy.dialects import postgresql\nfrom app.types import GUID\nfrom sqlalchemy.orm")
    types_py = "import sqlalchemy as sa\n\n\nclass GUID(sa.types.TypeDecorator):\n    impl = sa.CHAR(32)\n    cache_ok = True\n"
    for url in ("postgresql://u@localhost/db", "driver://user:pass@localhost/dbname"):  # named, or not
        root = make_project(tmp_path / url.split(":")[0], models=models, files={"app/types.py": types_py})
        (root / "alembic.ini").write_text(MINIMAL_INI.replace("sqlite:///app.db", url))
        engine, state = loaded(root)
        assert sorted(d.message.split()[1] for d in m_diags(state)) == ["users.data", "users.guid", "users.tags"]
        snapshot = engine.snapshot()
        migration = state.scripts[0].path
        support = EditSupport(True, True, True, resolve=True)
        (action,) = code_actions(snapshot, migration, Span.point(0), [GENERATE_KIND], Locator(snapshot), support)
        assert action.edit is None  # rendered only when resolved
        edit = asyncio.run(resolve_edit(snapshot, action.data, Locator(snapshot), support, trusted=True))
        create, edit = edit.document_changes
        text = edit.edits[0].new_text
        assert "from sqlalchemy.dialects import postgresql\n" in text
        assert "sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False)" in text
        assert "sa.Column('tags', postgresql.ARRAY(sa.String(length=5)), nullable=False)" in text
        assert "sa.Column('guid', sa.CHAR(length=32), nullable=True)" in text
        compile(text, "generated.py", "exec")
        if url.startswith("postgresql"):
            path = Path(create.uri.removeprefix("file://"))
            path.write_text(text)
            _, state = loaded(root)
            assert m_diags(state) == [], state.diagnostics


def test_the_workspace_venv_interpreter_loads_the_models(tmp_path):
    root = make_project(tmp_path, extra_user="nickname: Mapped[str | None] = mapped_column(String(30))\n")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho used > {tmp_path / 'USED'}\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    _, state = loaded(root)
    assert [d.code for d in m_diags(state)] == ["M001"]
    assert (tmp_path / "USED").exists()
    # an interpreter that dies: one M004 saying so
    python.write_text("#!/bin/sh\necho 'boom: no such thing' >&2\nexit 3\n")
    _, state = loaded(root)
    d = _only_m004(state, root)
    assert "exited with code 3" in d.message and "boom" in d.message


def test_m004_when_env_py_builds_target_metadata_dynamically(tmp_path):
    env = ENV_PY.replace("{options}", "").replace("target_metadata = Base.metadata",
                                                  "target_metadata = build_metadata(None)")
    root = make_project(tmp_path, env_py=env)
    _, state = loaded(root)
    d = _only_m004(state, root)
    assert "cannot tell statically" in d.message and "build_metadata(None)" in d.message
    assert d.span.line == line_of(env, "target_metadata = build_metadata(None)")


def test_target_metadata_imported_under_that_name(tmp_path):
    env = ENV_PY.replace("{options}", "").replace("from app.models import Base\n", "").replace(
        "target_metadata = Base.metadata", "from app.db import metadata as target_metadata")
    db = "from app.models import Base\n\nmetadata = Base.metadata\n"
    root = make_project(tmp_path, env_py=env, files={"app/db.py": db},
                        extra_user="nickname: Mapped[str | None] = mapped_column(String(30))\n")
    source = metadata_source(Engine([root]).workspace.discoveries[0].environments[0])
    assert source.specs == ("app.db.metadata",)
    _, state = loaded(root)
    assert [d.code for d in m_diags(state)] == ["M001"]


def test_a_check_constraint_only_one_dialect_can_render_costs_nothing(tmp_path):
    """A custom SQL construct compiled only for PostgreSQL inside a CHECK (arize-phoenix's
    `matches_uuid_format`) made the model loader fail, and every table was lost."""
    extra = '''
from sqlalchemy import CheckConstraint
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class matches_uuid(FunctionElement):
    inherit_cache = True


@compiles(matches_uuid, "postgresql")
def _pg(element, compiler, **kw):
    return "x ~ 'uuid'"


class Token(Base):
    __tablename__ = "tokens"
    __table_args__ = (CheckConstraint(matches_uuid(), name="ck_uuid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
'''
    make_project(tmp_path, extra_classes=extra)
    _, state = loaded(tmp_path)
    found = m_diags(state)
    assert [d.code for d in found] == ["M001"]  # the tokens table, and nothing lost
    assert "table tokens" in found[0].message
