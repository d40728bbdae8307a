"""The static evaluator imports only the installed sqlalchemy / alembic (issue 12).

Attacks: a migration that imports a look-alike module of the project (`alembic_helpers`,
`sqlalchemy_utils`), a module planted in a workspace folder on a package's search path,
the `alembic init` templates' env.py, `python -m alembic`'s `__main__`; a callable whose
`__module__` merely starts with "sqlalchemy"; a dialect name that would be looked up among
the entry points of installed distributions. Each one ran code before the fix."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.dialects
from sqlalchemy.types import TypeEngine

from migration_lsp import evaluate
from migration_lsp.compare import _impl
from migration_lsp.evaluate import (Evaluator, OpaqueType, callable_ok, import_safe_module, in_safe_package,
                                    type_from_repr)
from migration_lsp.interpret import evaluate_function
from migration_lsp.scripts import parse_script

from conftest import VENV_BIN, alembic_project, migration_text

PLANTED = """\
import os
open(os.environ["MIGRATION_LSP_TEST_MARKER"], "a").write(__name__ + "\\n")
Type = None
"""


@pytest.fixture
def planted(tmp_path: Path, monkeypatch):
    """A workspace on sys.path (as with `pip install -e .` or PYTHONPATH=.) holding modules
    whose import writes their name to a marker file."""
    root = tmp_path / "ws"
    for rel in ("alembic_helpers.py", "sqlalchemy_utils/__init__.py", "sqlalchemy_utils/types.py",
                "alembicx.py", "sqlalchemy_/__init__.py"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PLANTED, encoding="utf-8")
    marker = tmp_path / "marker"
    monkeypatch.setenv("MIGRATION_LSP_TEST_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(root))
    yield root, marker
    for name in ("alembic_helpers", "sqlalchemy_utils", "sqlalchemy_utils.types", "alembicx", "sqlalchemy_"):
        sys.modules.pop(name, None)


def script_with(tmp_path: Path, imports: str, upgrade: str):
    text = migration_text("a1", upgrades=textwrap.dedent(upgrade).strip().replace("\n", "\n    "))
    text = text.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\n" + textwrap.dedent(imports), 1)
    path = tmp_path / "a1_x.py"
    path.write_text(text, encoding="utf-8")
    return parse_script(path, text)


def test_look_alike_modules_of_the_workspace_are_never_imported(tmp_path: Path, planted):
    _, marker = planted
    script = script_with(tmp_path, """\
        from alembic_helpers import Type
        import sqlalchemy_utils
        import sqlalchemy_utils.types as sut
        from sqlalchemy_utils.types import Type as T2
        import alembicx
        import sqlalchemy_
    """, """
        op.add_column('t', sa.Column('a', Type()))
        op.add_column('t', sa.Column('b', sqlalchemy_utils.Type()))
        op.add_column('t', sa.Column('c', sut.Type()))
        op.add_column('t', sa.Column('d', T2()))
        op.add_column('t', sa.Column('e', alembicx.Type))
        op.add_column('t', sa.Column('f', sqlalchemy_.Type))
        op.add_column('t', sa.Column('g', sa.Integer()))
    """)
    ops = evaluate_function(script, script.upgrade)
    assert not marker.exists(), marker.read_text()
    assert [type(ev.op.column.type) for ev in ops] == [OpaqueType] * 6 + [sa.Integer]
    assert not {"alembic_helpers", "sqlalchemy_utils", "alembicx", "sqlalchemy_"} & set(sys.modules)


def test_the_package_rule_is_an_exact_match():
    assert in_safe_package("sqlalchemy") and in_safe_package("sqlalchemy.dialects.postgresql")
    assert in_safe_package("alembic") and in_safe_package("alembic.op")
    for name in ("sqlalchemy_utils", "sqlalchemy_utils.types", "alembic_helpers", "alembicx", "sqlalchemyx.y", ""):
        assert not in_safe_package(name)
        assert import_safe_module(name) is None


def test_a_planted_module_on_a_package_search_path_is_not_imported(tmp_path: Path, planted, monkeypatch):
    """A folder `sqlalchemy/dialects/` of the workspace on the search path of SQLAlchemy's
    own package (the way a shadowing package gets in): the module is found there, and
    refused because it is not a file of the installed distribution."""
    _, marker = planted
    shadow = tmp_path / "ws" / "sqlalchemy" / "dialects"
    shadow.mkdir(parents=True)
    (shadow / "evil.py").write_text(PLANTED, encoding="utf-8")
    monkeypatch.setattr(sqlalchemy.dialects, "__path__", [*sqlalchemy.dialects.__path__, str(shadow)])
    script = script_with(tmp_path, "from sqlalchemy.dialects import evil\nimport sqlalchemy.dialects.evil as ev2\n", """
        op.add_column('t', sa.Column('a', evil.Type()))
        op.add_column('t', sa.Column('b', ev2.Type()))
        op.add_column('t', sa.Column('c', sa.dialects.evil.Type()))
    """)
    try:
        ops = evaluate_function(script, script.upgrade)
        assert not marker.exists(), marker.read_text()
        assert "sqlalchemy.dialects.evil" not in sys.modules
        assert all(isinstance(ev.op.column.type, OpaqueType) for ev in ops)
    finally:
        sys.modules.pop("sqlalchemy.dialects.evil", None)


def test_installed_files_that_run_things_on_import_are_refused(tmp_path: Path):
    """`alembic/__main__.py` runs Alembic's command line (SystemExit in the server), the
    templates' env.py is a namespace-package module, the test suites install plugins."""
    for name in ("alembic.__main__", "alembic.templates.generic.env", "alembic.testing", "sqlalchemy.testing",
                 "sqlalchemy.dialects.postgresql.provision", "sqlalchemy.sql._typing"):
        assert import_safe_module(name) is None, name
    script = script_with(tmp_path, "import alembic.__main__ as m\nfrom alembic.templates.generic import env\n", """
        op.add_column('t', sa.Column('a', m.Type()))
        op.add_column('t', sa.Column('b', env.Type()))
    """)
    ops = evaluate_function(script, script.upgrade)  # (before the fix: SystemExit)
    assert all(isinstance(ev.op.column.type, OpaqueType) for ev in ops)
    assert "alembic.__main__" not in sys.modules


def test_public_modules_of_the_installed_packages_still_resolve(tmp_path: Path):
    assert import_safe_module("sqlalchemy.dialects.postgresql") is sys.modules["sqlalchemy.dialects.postgresql"]
    assert import_safe_module("alembic.operations") is not None
    script = script_with(tmp_path, "from sqlalchemy.dialects import mysql\nfrom sqlalchemy.dialects.postgresql import JSONB\n", """
        op.add_column('t', sa.Column('a', mysql.TINYINT()))
        op.add_column('t', sa.Column('b', JSONB(astext_type=sa.Text())))
        op.add_column('t', sa.Column('c', sa.types.Numeric(10, 2), server_default=sa.text('0')))
    """)
    types_ = [ev.op.column.type for ev in evaluate_function(script, script.upgrade)]
    assert type(types_[0]).__name__ == "TINYINT" and type(types_[1]).__name__ == "JSONB"
    assert isinstance(types_[2], sa.Numeric) and types_[2].precision == 10


def test_a_callable_is_constructed_only_when_sqlalchemy_defined_it(monkeypatch):
    """A type class of a look-alike package already in memory (imported by someone else)
    is not SQLAlchemy's, though its module name starts with "sqlalchemy"."""
    built = []

    class Evil(TypeEngine):
        def __init__(self):
            built.append(1)

    Evil.__module__ = "sqlalchemy_utils.types"
    fake = type(sys)("sqlalchemy_utils.types")
    fake.Evil = Evil
    monkeypatch.setitem(sys.modules, "sqlalchemy_utils.types", fake)
    evaluate._CALLABLE_OK.pop(Evil, None)
    assert not callable_ok(Evil)
    import ast
    evaluator = Evaluator([("sut", "sqlalchemy_utils.types")])
    evaluator.names["E"] = Evil  # even when reached: not constructed
    for source in ("sut.Evil()", "E()"):
        assert not isinstance(evaluator.value(ast.parse(source, mode="eval").body), TypeEngine)
    assert built == []
    assert callable_ok(sa.Integer) and callable_ok(sa.text)


def test_type_from_repr_needs_an_exact_sqlalchemy_module(planted):
    """The module name comes from the models child's output."""
    _, marker = planted
    assert isinstance(type_from_repr("Type()", "sqlalchemy_utils.types"), OpaqueType)
    assert isinstance(type_from_repr("Type()", "sqlalchemy_"), OpaqueType)
    assert not marker.exists()
    assert isinstance(type_from_repr("JSONB(astext_type=Text())", "sqlalchemy.dialects.postgresql.json"), sa.JSON)


def test_a_dialect_name_never_reaches_the_entry_points(monkeypatch):
    """`dialect = "x"` in [tool.migration-lsp]: only SQLAlchemy's own dialects are loaded;
    SQLAlchemy's registry would otherwise load a matching `sqlalchemy.dialects` entry point
    of any installed distribution (the project, `pip install -e .`)."""
    from sqlalchemy.dialects import registry

    looked_up = []
    monkeypatch.setattr("sqlalchemy.util.compat.importlib_metadata_get",
                        lambda group: looked_up.append(group) or [])
    _impl.cache_clear()
    try:
        for name in ("evil", "postgresql.evil", "sqlite.evil"):
            assert type(_impl(name).dialect).__name__ == "DefaultDialect"
        assert looked_up == []
        assert _impl("postgresql").dialect.name == "postgresql"
        assert registry is not None
    finally:
        _impl.cache_clear()


def test_check_no_import_runs_no_look_alike_module(tmp_path: Path):
    """The whole attack: an importable project (PYTHONPATH=.) whose migration imports its
    `alembic_helpers`; `check --no-import` must not import it."""
    root = tmp_path / "proj"
    text = migration_text("a1", upgrades="op.create_table('t', sa.Column('id', Type()))")
    text = text.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\nfrom alembic_helpers import Type\n"
                        "import sqlalchemy_utils\n", 1)
    alembic_project(root, {"a1_x.py": text})
    marker = tmp_path / "marker"
    (root / "alembic_helpers.py").write_text(PLANTED, encoding="utf-8")
    (root / "sqlalchemy_utils.py").write_text(PLANTED, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(root), "MIGRATION_LSP_TEST_MARKER": str(marker)}
    proc = subprocess.run([str(VENV_BIN / "migration-lsp"), "check", "--no-import", str(root)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    assert not marker.exists(), marker.read_text()
