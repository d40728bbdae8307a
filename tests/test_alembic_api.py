"""migration_lsp/alembic_api.py: the private Alembic names the tool relies on still exist with
the same signatures and behaviour in the installed Alembic (this test fails loudly when an
Alembic release changes them), and pyproject.toml keeps Alembic below its next major."""

from __future__ import annotations

import ast
import datetime
import re
from pathlib import Path

import alembic
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.operations import ops
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from packaging.requirements import Requirement

from conftest import REPO_ROOT
from migration_lsp import alembic_api


def test_the_installed_alembic_has_what_we_use():
    assert alembic_api.problems() == [], f"Alembic {alembic.__version__} changed: {alembic_api.problems()}"


def test_a_changed_alembic_is_reported(monkeypatch):
    """The check looks at the real objects: a renamed or re-signed helper is named."""
    monkeypatch.delattr(ScriptDirectory, "_generate_create_date")
    monkeypatch.setattr(ScriptDirectory, "_rev_path", lambda self, path, rev_id, message: path)
    found = alembic_api.problems()
    assert any("_generate_create_date" in p for p in found) and any("_rev_path takes" in p for p in found)
    with pytest.raises(alembic_api.AlembicChanged, match="_generate_create_date"):
        alembic_api.generate_create_date(ScriptDirectory("."))


def alembic_init(tmp_path: Path, **options: str) -> Config:
    cfg = Config(str(tmp_path / "alembic.ini"))
    command.init(cfg, str(tmp_path / "migrations"))
    cfg = Config(str(tmp_path / "alembic.ini"))
    for key, value in options.items():
        cfg.set_main_option(key, value)
    return cfg


@pytest.mark.parametrize("message, options", [
    ("add the users table", {}),
    ("a very long message that Alembic truncates at the slug length", {"truncate_slug_length": "12"}),
    ("Ünïcode & punctuation!", {"file_template": "%%(rev)s_x_%%(slug)s"}),
])
def test_rev_path_names_the_file_as_alembic_revision_does(tmp_path: Path, message: str, options: dict):
    cfg = alembic_init(tmp_path, **options)
    script = command.revision(cfg, message=message, rev_id="abc123def456")
    directory = ScriptDirectory.from_config(cfg)
    versions = Path(directory.versions)
    ours = alembic_api.rev_path(directory, versions, "abc123def456", message, datetime.datetime.now())
    assert ours == Path(script.path)


def test_generate_create_date_follows_the_timezone(tmp_path: Path):
    directory = ScriptDirectory(str(tmp_path), timezone="UTC")
    date = alembic_api.generate_create_date(directory)
    assert date.tzinfo is not None and date.utcoffset() == datetime.timedelta(0)
    assert alembic_api.generate_create_date(ScriptDirectory(str(tmp_path))).tzinfo is None
    with pytest.raises(CommandError):
        alembic_api.generate_create_date(ScriptDirectory(str(tmp_path), timezone="Not/AZone"))


def test_reverse_of_a_drop_keeps_what_was_dropped():
    table = sa.Table("users", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("tags", sa.JSON))
    created = ops.CreateTableOp.from_table(table)
    dropped = created.reverse()
    assert isinstance(alembic_api.reverse_of(dropped), ops.CreateTableOp)
    assert [c.name for c in alembic_api.reverse_of(dropped).columns if isinstance(c, sa.Column)] == ["id", "tags"]
    column = ops.AddColumnOp("users", sa.Column("age", sa.Integer)).reverse()
    assert alembic_api.reverse_of(column).column.name == "age"
    assert alembic_api.reverse_of(ops.ExecuteSQLOp("select 1")) is None


def test_no_private_alembic_name_outside_the_adapter():
    """`_rev_path`, `_generate_create_date`, `_reverse`... appear in alembic_api.py only."""
    private = {"_rev_path", "_generate_create_date", "_reverse"}
    offenders = []
    for path in (REPO_ROOT / "migration_lsp").rglob("*.py"):
        if path.name == "alembic_api.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else node.value if isinstance(node, ast.Constant) else None
            if name in private:
                offenders.append(f"{path.name}:{node.lineno} {name}")
    assert offenders == []


def test_alembic_is_bounded_below_its_next_major():
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (line,) = [m for m in re.findall(r'"(alembic[^"]*)"', text)]
    requirement = Requirement(line)
    major = int(alembic.__version__.split(".")[0])
    assert requirement.specifier.contains(alembic.__version__)
    assert not requirement.specifier.contains(f"{major + 1}.0"), line
