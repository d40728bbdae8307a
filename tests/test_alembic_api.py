"""migration_lsp/alembic_api.py: the private Alembic names the tool relies on still exist with
the same signatures and behaviour in the installed Alembic (this test fails loudly when an
Alembic release changes them), and pyproject.toml keeps Alembic below its next major."""

from __future__ import annotations

import ast
import configparser
import datetime
import importlib.util
import re
from pathlib import Path

import alembic
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
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
    # a new optional parameter changes nothing; a new required one does
    monkeypatch.setattr(ScriptDirectory, "_upgrade_revs", lambda self, destination, current_rev, x=None: [])
    monkeypatch.setattr(ScriptDirectory, "_stamp_revs", lambda self, revision, heads, x: [])
    found = alembic_api.problems(alembic_api.CHILD_NAMES)
    assert [p for p in found if "_stamp_revs takes" in p] and not [p for p in found if "_upgrade_revs" in p]


def test_memoized_properties_filled_in_ahead_are_what_alembic_reads(tmp_path: Path):
    """The config files as the tool read them, and the static inspector, are what Alembic's
    own code then reads: it never computes them itself."""
    ini, toml = tmp_path / "alembic.ini", tmp_path / "pyproject.toml"
    ini.write_text("[alembic]\nscript_location = alembics_read\n", encoding="utf-8")
    toml.write_text('[tool.alembic]\nversion_locations = "alembics_read"\n', encoding="utf-8")
    config = Config(str(ini), toml_file=str(toml))
    parser = configparser.ConfigParser()
    parser.read_string("[alembic]\nscript_location = ours\n")
    alembic_api.fill_file_config(config, parser)
    alembic_api.fill_toml_config(config, {"version_locations": "ours too"})
    assert config.get_alembic_option("script_location") == "ours"
    assert config.get_alembic_option("version_locations") == "ours too"
    autogen = AutogenContext(MigrationContext.configure(dialect_name="sqlite"), sa.MetaData())
    with pytest.raises(TypeError, match="no database connection"):  # (what Alembic computes)
        autogen.inspector  # noqa: B018
    inspector = object()
    alembic_api.fill_inspector(autogen, inspector)
    assert autogen.inspector is inspector


def test_a_memoized_property_that_changed_is_reported(monkeypatch, tmp_path: Path):
    """Were one of them a plain property (or gone), a value filled in ahead would be silently
    ignored: the check and the fill both say so instead."""
    monkeypatch.setattr(Config, "file_config", property(lambda self: None))
    monkeypatch.delattr(AutogenContext, "inspector")
    found = alembic_api.problems()
    assert [p for p in found if "Config.file_config is no longer a memoized property" in p]
    assert [p for p in found if "no AutogenContext.inspector" in p]
    assert not [p for p in found if "toml_alembic_config" in p]
    with pytest.raises(alembic_api.AlembicChanged, match="file_config"):
        alembic_api.fill_file_config(Config(), configparser.ConfigParser())
    with pytest.raises(alembic_api.AlembicChanged, match="inspector"):
        alembic_api.fill_inspector(AutogenContext(MigrationContext.configure(dialect_name="sqlite")), object())
    assert alembic_api.problems(alembic_api.CHILD_NAMES) == []  # (the children fill in none of them)


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


# SQLAlchemy's `Column._copy` / `ForeignKey._copy` (Alembic happens to define a `_copy` too)
NOT_ALEMBICS = {"_copy"}


def alembic_private_names() -> set[str]:
    """Every `_name` the installed Alembic defines: functions, classes, attributes it sets,
    parameters (`_reverse=`)."""
    names = set()
    for path in Path(alembic.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {n for n in names if n.startswith("_") and not n.startswith("__")} - NOT_ALEMBICS


def private_alembic_uses(text: str, private: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each attribute (`x._name`), string (`getattr(x, "_name")`) or keyword
    argument (`_name=`) that is one of Alembic's private names."""
    found = []
    for node in ast.walk(ast.parse(text)):
        name = node.attr if isinstance(node, ast.Attribute) else node.arg if isinstance(node, ast.keyword) \
            else node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
        if name in private:
            found.append((node.lineno, name))
    return found


def test_no_private_alembic_name_outside_the_adapter():
    """Alembic's `_`-names appear in alembic_api.py only: the server's modules and the children
    alike (these load alembic_api.py by its path)."""
    private = alembic_private_names()
    assert {"_rev_path", "_upgrade_revs", "_list_py_dir", "_reverse", "_in_external_transaction"} <= private
    sample = "d = ops.DropConstraintOp('c', 't', _reverse=x)\ns._upgrade_revs('head', ())\ngetattr(c, '_in_external_transaction')\n"
    assert private_alembic_uses(sample, private) == [(1, "_reverse"), (2, "_upgrade_revs"), (3, "_in_external_transaction")]
    offenders = [f"{path.name}:{line} {name}"
                 for path in sorted((REPO_ROOT / "migration_lsp").rglob("*.py")) if path.name != "alembic_api.py"
                 for line, name in private_alembic_uses(path.read_text(encoding="utf-8"), private)]
    assert offenders == []


def test_the_adapter_stands_alone_for_the_children(tmp_path: Path):
    """The children run with the project's interpreter, without migration_lsp: alembic_api.py
    imports the standard library and Alembic only, and model_child loads it by its path."""
    tree = ast.parse((REPO_ROOT / "migration_lsp" / "alembic_api.py").read_text(encoding="utf-8"))
    imported = {n.module.split(".")[0] if isinstance(n, ast.ImportFrom) and n.module else None
                for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert None not in imported and imported <= {"__future__", "alembic", "collections", "datetime", "inspect",
                                                 "os", "pathlib", "typing"}
    child = load_model_child()
    api = child.alembic_api()
    assert api.__file__ == str(REPO_ROOT / "migration_lsp" / "alembic_api.py") and api is child.alembic_api()
    assert api.problems(api.CHILD_NAMES) == []


def test_the_children_share_one_loader_and_one_check(monkeypatch):
    """child.py (every child's entry point) is the one loader of the sibling files: the truth
    child's model_child and both children's alembic_api are its modules, loaded once. The check
    against the project's Alembic is model_child.alembic_api's: one error naming the project's
    Alembic and what it lacks, before anything of it is used."""
    from migration_lsp import child as bootstrap
    from migration_lsp import truth_child

    shared = truth_child.model_child()
    assert shared is bootstrap.sibling("model_child") and shared.sibling is bootstrap.sibling
    assert shared.alembic_api() is bootstrap.sibling("alembic_api")
    assert load_model_child().alembic_api() is shared.alembic_api()  # (the module, loaded once)
    monkeypatch.delattr(ScriptDirectory, "_stamp_revs")
    fresh = load_model_child()  # (its check not yet made)
    with pytest.raises(RuntimeError, match=r"the project's Alembic [0-9.]+\S*: the installed Alembic has no "
                                           r"ScriptDirectory\._stamp_revs") as raised:
        fresh.alembic_api()
    assert type(raised.value).__name__ == "AlembicChanged"
    with pytest.raises(RuntimeError, match="_stamp_revs"):  # (a failed check is not remembered as passed)
        fresh.alembic_api()


def load_model_child():
    spec = importlib.util.spec_from_file_location("model_child_under_test", REPO_ROOT / "migration_lsp" / "model_child.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def two_revisions(tmp_path: Path) -> tuple[Config, ScriptDirectory, list[str]]:
    cfg = alembic_init(tmp_path)
    first = command.revision(cfg, "first", rev_id="aaa1")
    second = command.revision(cfg, "second", rev_id="bbb2")
    return cfg, ScriptDirectory.from_config(cfg), [first.path, second.path]


def test_the_children_steps_are_alembics_own(tmp_path: Path):
    """What truth_child hands env.py (upgrade, downgrade, stamp one revision) and what model_child
    imports (every revision file) are what Alembic's commands use."""
    _, script, paths = two_revisions(tmp_path)
    assert sorted(alembic_api.revision_files(script)) == sorted(paths)
    loaded = alembic_api.load_revision(script, paths[1])
    assert (loaded.revision, loaded.down_revision) == ("bbb2", "aaa1")
    def moves(steps):
        return [(s.is_downgrade, s.from_revisions, s.to_revisions) for s in steps]

    assert moves(alembic_api.upgrade_steps(script, "aaa1", ())) == [(False, (), ("aaa1",))]
    assert moves(alembic_api.upgrade_steps(script, "bbb2", ("aaa1",))) == [(False, ("aaa1",), ("bbb2",))]
    assert moves(alembic_api.downgrade_steps(script, "aaa1", ("bbb2",))) == [(True, ("bbb2",), ("aaa1",))]
    assert moves(alembic_api.stamp_steps(script, "bbb2", ("aaa1",))) == [(False, ("aaa1",), ("bbb2",))]
    with sa.create_engine("sqlite://").connect() as connection:
        assert not alembic_api.in_external_transaction(MigrationContext.configure(connection))
        connection.begin()
        assert alembic_api.in_external_transaction(MigrationContext.configure(connection))


def test_a_changed_alembic_in_a_child_is_said_not_guessed(tmp_path: Path, monkeypatch):
    """The project's own Alembic (no version bound holds there) without a name the children use:
    the truth child says so before any revision (not a failing upgrade per revision), and the
    model child imports the files the parent found instead."""
    _, script, paths = two_revisions(tmp_path)
    monkeypatch.delattr(ScriptDirectory, "_upgrade_revs")
    monkeypatch.delattr(Script, "_list_py_dir")
    found = alembic_api.problems(alembic_api.CHILD_NAMES)
    assert [p for p in found if "_upgrade_revs" in p] and [p for p in found if "_list_py_dir" in p]
    assert not [p for p in found if "_rev_path" in p or "_reverse" in p]  # the server's names: not the child's
    with pytest.raises(alembic_api.AlembicChanged, match="_upgrade_revs"):
        alembic_api.upgrade_steps(script, "head", ())
    child = load_model_child()
    monkeypatch.setattr(child, "alembic_api", lambda: alembic_api)
    imported = []
    monkeypatch.setattr("alembic.util.load_python_file", lambda folder, name: imported.append(name))
    assert child.import_revisions(script, paths) == 0
    assert imported == [Path(p).name for p in paths]


def test_alembic_is_bounded_below_its_next_major():
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (line,) = [m for m in re.findall(r'"(alembic[^"]*)"', text)]
    requirement = Requirement(line)
    major = int(alembic.__version__.split(".")[0])
    assert requirement.specifier.contains(alembic.__version__)
    assert not requirement.specifier.contains(f"{major + 1}.0"), line
