"""Stage `project`: zero-config discovery of Alembic environments under a workspace root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from conftest import MINIMAL_ENV_PY, migration_text, write_project
from migration_lsp.project import Settings, discover, load_settings, looks_like_revision_file


def rel(root: Path, paths) -> list[str]:
    return sorted(Path(p).relative_to(root.resolve()).as_posix() for p in paths)


def only_env(discovery):
    assert discovery.problems == ()
    assert len(discovery.environments) == 1, [e.name for e in discovery.environments]
    return discovery.environments[0]


def add_chain(versions: Path, *ids: str) -> None:
    """Revision files `<id>_step.py` forming a line: ids[0] <- ids[1] <- ..."""
    versions.mkdir(parents=True, exist_ok=True)
    parent = None
    for rev in ids:
        (versions / f"{rev}_step.py").write_text(migration_text(rev, parent), encoding="utf-8")
        parent = rev


# --------------------------------------------------------------------------- real `alembic init`


def test_standard_alembic_init(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command.init(Config("alembic.ini"), "migrations")
    assert "%(here)s/migrations" in (tmp_path / "alembic.ini").read_text()
    add_chain(tmp_path / "migrations" / "versions", "aaa111", "bbb222")
    root = tmp_path.resolve()
    env = only_env(discover(tmp_path))
    assert env.name == "migrations"
    assert env.config_path == root / "alembic.ini"
    assert env.script_location == root / "migrations"
    assert env.version_locations == (root / "migrations" / "versions",)
    assert rel(tmp_path, env.files) == ["migrations/versions/aaa111_step.py", "migrations/versions/bbb222_step.py"]
    assert env.env_py == root / "migrations" / "env.py"
    assert env.template_path == root / "migrations" / "script.py.mako"
    assert env.file_template == "%(rev)s_%(slug)s"
    # the generic template's placeholder url driver://user:pass@localhost/dbname
    assert env.dialect is None  # the `alembic init` placeholder driver:// names no dialect


def test_alembic_init_with_file_template_and_real_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command.init(Config("alembic.ini"), "db")
    ini = (tmp_path / "alembic.ini").read_text()
    ini = ini.replace("# file_template = ", "file_template = ", 1)
    ini = ini.replace("driver://user:pass@localhost/dbname", "postgresql+psycopg://u:p@localhost/app")
    ini = ini.replace("# truncate_slug_length = 40", "truncate_slug_length = 20")
    (tmp_path / "alembic.ini").write_text(ini)
    add_chain(tmp_path / "db" / "versions", "aaa111")
    env = only_env(discover(tmp_path))
    assert env.name == "db"
    assert env.dialect == "postgresql"
    assert env.truncate_slug_length == 20
    assert "%(rev)s" in env.file_template and "%(year)d" in env.file_template


def test_alembic_init_pyproject_template(tmp_path, monkeypatch):
    templates = sorted(p.name for p in (Path(command.__file__).parent / "templates").iterdir() if p.is_dir())
    assert "pyproject" in templates  # Alembic >= 1.16
    monkeypatch.chdir(tmp_path)
    command.init(Config("alembic.ini", toml_file="pyproject.toml"), "migrations", template="pyproject")
    toml = (tmp_path / "pyproject.toml").read_text()
    assert "[tool.alembic]" in toml and "script_location" in toml
    assert "script_location" not in (tmp_path / "alembic.ini").read_text()
    add_chain(tmp_path / "migrations" / "versions", "aaa111", "bbb222")
    root = tmp_path.resolve()
    env = only_env(discover(tmp_path))
    assert env.script_location == root / "migrations"
    assert env.version_locations == (root / "migrations" / "versions",)
    assert rel(tmp_path, env.files) == ["migrations/versions/aaa111_step.py", "migrations/versions/bbb222_step.py"]

    # and with pyproject.toml alone (alembic.ini only holds logging; a user may delete it)
    (tmp_path / "alembic.ini").unlink()
    env = only_env(discover(tmp_path))
    assert env.config_path == root / "pyproject.toml"
    assert env.script_location == root / "migrations"
    assert len(env.files) == 2


def test_tool_alembic_with_version_locations_list(tmp_path):
    write_project(tmp_path, {
        "pyproject.toml": """
            [project]
            name = "app"

            [tool.alembic]
            script_location = "%(here)s/alembic"
            version_locations = ["%(here)s/alembic/versions", "%(here)s/plugins/billing/versions"]
        """,
        "alembic/env.py": MINIMAL_ENV_PY,
        "alembic/versions/a1_init.py": migration_text("a1"),
        "plugins/billing/versions/b1_billing.py": migration_text("b1", None, branch_labels="billing"),
    })
    root = tmp_path.resolve()
    env = only_env(discover(tmp_path))
    assert env.config_path == root / "pyproject.toml"
    assert env.version_locations == (root / "alembic" / "versions", root / "plugins" / "billing" / "versions")
    assert rel(tmp_path, env.files) == ["alembic/versions/a1_init.py", "plugins/billing/versions/b1_billing.py"]


def test_flask_migrate_layout_ini_inside_migrations(tmp_path):
    # what `flask db init` writes: alembic.ini inside migrations/, no script_location
    write_project(tmp_path, {
        "app.py": "from flask import Flask\n",
        "migrations/alembic.ini": """
            # A generic, single database configuration.

            [alembic]
            # template used to generate migration files
            # file_template = %%(rev)s_%%(slug)s

            # set to 'true' to run the environment during
            # the 'revision' command, regardless of autogenerate
            # revision_environment = false

            [loggers]
            keys = root,sqlalchemy,alembic,flask_migrate
        """,
        "migrations/env.py": "from flask import current_app\n",
        "migrations/script.py.mako": "${message}\n",
        "migrations/versions/aaa111_init.py": migration_text("aaa111"),
        "migrations/versions/bbb222_more.py": migration_text("bbb222", "aaa111"),
    })
    root = tmp_path.resolve()
    env = only_env(discover(tmp_path))
    assert env.config_path == root / "migrations" / "alembic.ini"
    assert env.script_location == root / "migrations"
    assert env.version_locations == (root / "migrations" / "versions",)
    assert len(env.files) == 2
    assert env.template_path == root / "migrations" / "script.py.mako"


def test_here_interpolation_and_relative_locations(tmp_path):
    write_project(tmp_path, {
        "backend/alembic.ini": "[alembic]\nscript_location = %(here)s/db/migrations\nversion_locations = %(here)s/db/migrations/versions %(here)s/extra\npath_separator = space\n",
        "backend/db/migrations/env.py": MINIMAL_ENV_PY,
        "backend/db/migrations/versions/a1_x.py": migration_text("a1"),
        "backend/extra/b1_x.py": migration_text("b1", "a1"),
        # a second project whose script_location is relative: relative to its ini's folder
        "tools/alembic.ini": "[alembic]\nscript_location = mig\n",
        "tools/mig/env.py": MINIMAL_ENV_PY,
        "tools/mig/versions/c1_x.py": migration_text("c1"),
    })
    d = discover(tmp_path)
    assert d.problems == ()
    root = tmp_path.resolve()
    by_name = {e.name: e for e in d.environments}
    assert set(by_name) == {"backend/db/migrations", "tools/mig"}
    backend = by_name["backend/db/migrations"]
    assert backend.script_location == root / "backend" / "db" / "migrations"
    assert backend.version_locations == (root / "backend/db/migrations/versions", root / "backend/extra")
    assert rel(tmp_path, backend.files) == ["backend/db/migrations/versions/a1_x.py", "backend/extra/b1_x.py"]
    assert rel(tmp_path, by_name["tools/mig"].files) == ["tools/mig/versions/c1_x.py"]


@pytest.mark.parametrize("separator", ["space", "os", ";", "newline", None])
def test_version_locations_path_separator(tmp_path, separator):
    # Folder names with a space tell whether the right separator was used.
    names = ["versions", "more"] if separator in ("space", None) else ["version files", "more files"]
    joiner = {"space": " ", "os": os.pathsep, ";": ";", "newline": "\n    ", None: ", "}[separator]
    value = joiner.join(f"%(here)s/db/{n}" for n in names)
    ini = "[alembic]\nscript_location = %(here)s/db\n"
    if separator:
        ini += f"path_separator = {separator}\n"
    ini += f"version_locations = {value}\n"
    write_project(tmp_path, {
        "alembic.ini": ini,
        "db/env.py": MINIMAL_ENV_PY,
        f"db/{names[0]}/a1_x.py": migration_text("a1"),
        f"db/{names[1]}/b1_y.py": migration_text("b1", "a1"),
    })
    root = tmp_path.resolve()
    env = only_env(discover(tmp_path))
    assert env.config_path == root / "alembic.ini"
    assert env.version_locations == tuple(root / "db" / n for n in names)
    assert rel(tmp_path, env.files) == sorted([f"db/{names[0]}/a1_x.py", f"db/{names[1]}/b1_y.py"])


def test_invalid_path_separator_is_a_config_problem(tmp_path):
    write_project(tmp_path, {
        "alembic.ini": "[alembic]\nscript_location = db\npath_separator = pipe\nversion_locations = db/a|db/b\n",
        "db/env.py": MINIMAL_ENV_PY,
    })
    d = discover(tmp_path)
    assert len(d.problems) == 1
    assert "pipe" in d.problems[0].message
    assert "\n" not in d.problems[0].message


def test_recursive_version_locations(tmp_path):
    write_project(tmp_path, {
        "alembic.ini": "[alembic]\nscript_location = db\nrecursive_version_locations = true\n",
        "db/env.py": MINIMAL_ENV_PY,
        "db/versions/a1_x.py": migration_text("a1"),
        "db/versions/2024/06/b1_x.py": migration_text("b1", "a1"),
        "db/versions/2025/c1_x.py": migration_text("c1", "b1"),
        "db/versions/__init__.py": "",
        "db/versions/2025/__init__.py": "",
    })
    env = only_env(discover(tmp_path))
    assert rel(tmp_path, env.files) == ["db/versions/2024/06/b1_x.py", "db/versions/2025/c1_x.py", "db/versions/a1_x.py"]


def test_nested_release_folders_without_recursive_flag(tmp_path):
    """OpenStack style: versions/<release>/{expand,contract}/, version_locations set in code."""
    base = "pkg/db/migration/alembic_migrations"
    write_project(tmp_path, {
        "pkg/db/migration/alembic.ini": "[alembic]\nscript_location = %(here)s/alembic_migrations\n",
        f"{base}/env.py": MINIMAL_ENV_PY,
        f"{base}/versions/kilo_initial.py": migration_text("kilo"),
        f"{base}/versions/liberty/expand/1c844d1677f7_expand.py": migration_text("1c844d1677f7", "kilo", branch_labels="expand"),
        f"{base}/versions/liberty/contract/30018084ec99_contract.py": migration_text("30018084ec99", "kilo", branch_labels="contract"),
        f"{base}/versions/mitaka/expand/0e66c5227a8a_more.py": migration_text("0e66c5227a8a", "1c844d1677f7"),
        f"{base}/versions/mitaka/contract/4ffceebfada_drop.py": migration_text("4ffceebfada", "30018084ec99"),
        f"{base}/versions/EXPAND_HEAD": "0e66c5227a8a\n",
        f"{base}/versions/README": "not python\n",
    })
    env = only_env(discover(tmp_path))
    assert env.script_location == (tmp_path / base).resolve()
    assert rel(tmp_path, env.files) == sorted([
        f"{base}/versions/kilo_initial.py",
        f"{base}/versions/liberty/expand/1c844d1677f7_expand.py",
        f"{base}/versions/liberty/contract/30018084ec99_contract.py",
        f"{base}/versions/mitaka/expand/0e66c5227a8a_more.py",
        f"{base}/versions/mitaka/contract/4ffceebfada_drop.py",
    ])


def test_nested_release_folders_with_no_config_at_all(tmp_path):
    write_project(tmp_path, {
        "svc/migrations/versions/a1_init.py": migration_text("a1"),
        "svc/migrations/versions/2024/expand/b1_x.py": migration_text("b1", "a1", branch_labels="expand"),
        "svc/migrations/versions/2024/contract/c1_x.py": migration_text("c1", "a1", branch_labels="contract"),
    })
    env = only_env(discover(tmp_path))
    assert env.config_path is None
    assert len(env.files) == 3
    assert env.version_locations == ((tmp_path / "svc/migrations/versions").resolve(),)
    assert env.script_location == (tmp_path / "svc/migrations").resolve()


# --------------------------------------------------------------------------- no config at all


def plugin_ecosystem() -> dict[str, str]:
    """Invenio-style: each package ships alembic/ with revision files, no alembic.ini."""
    return {
        "invenio-db/setup.cfg": "[metadata]\nname = invenio-db\n",
        "invenio-db/invenio_db/__init__.py": "",
        "invenio-db/invenio_db/utils.py": "def helper():\n    return 1\n",
        "invenio-db/invenio_db/alembic/96e796392533_create_db.py": migration_text("96e796392533", None, branch_labels="invenio_db"),
        "invenio-db/invenio_db/alembic/35c1075e6360_naming.py": migration_text("35c1075e6360", "96e796392533"),
        "invenio-accounts/invenio_accounts/__init__.py": "",
        "invenio-accounts/invenio_accounts/alembic/843bc79c426f_branch.py": migration_text(
            "843bc79c426f", None, branch_labels="invenio_accounts", depends_on="invenio_db"),
        "invenio-accounts/invenio_accounts/alembic/9848d0149abd_tables.py": migration_text(
            "9848d0149abd", "843bc79c426f", depends_on="35c1075e6360"),
        "invenio-records/invenio_records/alembic/07fb52561c5c_jsonb.py": migration_text(
            "07fb52561c5c", None, branch_labels="invenio_records", depends_on="invenio_db"),
    }


def test_plugin_packages_form_one_environment(tmp_path):
    write_project(tmp_path, plugin_ecosystem())
    env = only_env(discover(tmp_path))
    assert env.config_path is None
    assert len(env.files) == 5
    assert {p.parent.name for p in env.files} == {"alembic"}
    assert {p.parents[1].name for p in env.files} == {"invenio_db", "invenio_accounts", "invenio_records"}
    assert len(env.version_locations) == 3
    # helpers and __init__ files outside are not revision files
    assert not any(p.name in ("utils.py", "__init__.py") for p in env.files)


def test_unrelated_orphan_folder_is_a_separate_environment(tmp_path):
    files = plugin_ecosystem()
    files["scripts/oneoff/ffff0000aaaa_unrelated.py"] = migration_text("ffff0000aaaa")
    files["scripts/oneoff/ffff0000bbbb_more.py"] = migration_text("ffff0000bbbb", "ffff0000aaaa")
    write_project(tmp_path, files)
    d = discover(tmp_path)
    assert d.problems == ()
    assert len(d.environments) == 2
    sizes = sorted(len(e.files) for e in d.environments)
    assert sizes == [2, 5]
    orphan = next(e for e in d.environments if len(e.files) == 2)
    assert orphan.name == "scripts/oneoff"
    assert orphan.version_locations == ((tmp_path / "scripts/oneoff").resolve(),)
    assert d.environment_of(orphan.files[0]) is orphan


def test_orphan_folder_joins_a_configured_environment_it_references(tmp_path):
    write_project(tmp_path, {
        "alembic.ini": "[alembic]\nscript_location = migrations\n",
        "migrations/env.py": MINIMAL_ENV_PY,
        "migrations/versions/a1_init.py": migration_text("a1"),
        "plugin/alembic/p1_plugin.py": migration_text("p1", None, branch_labels="plugin", depends_on="a1"),
    })
    env = only_env(discover(tmp_path))
    assert env.config_path == (tmp_path / "alembic.ini").resolve()
    assert rel(tmp_path, env.files) == ["migrations/versions/a1_init.py", "plugin/alembic/p1_plugin.py"]
    assert (tmp_path / "plugin/alembic").resolve() in env.version_locations


def test_two_independent_configured_environments(tmp_path):
    write_project(tmp_path, {
        "services/users/alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\n",
        "services/users/migrations/env.py": MINIMAL_ENV_PY,
        "services/users/migrations/versions/u1_init.py": migration_text("u1"),
        "services/users/migrations/versions/u2_more.py": migration_text("u2", "u1"),
        "services/billing/alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\n",
        "services/billing/migrations/env.py": MINIMAL_ENV_PY,
        # same id in both: separate environments, so no clash
        "services/billing/migrations/versions/u1_init.py": migration_text("u1"),
    })
    d = discover(tmp_path)
    assert d.problems == ()
    by_name = {e.name: e for e in d.environments}
    assert set(by_name) == {"services/users/migrations", "services/billing/migrations"}
    assert len(by_name["services/users/migrations"].files) == 2
    assert len(by_name["services/billing/migrations"].files) == 1
    f = (tmp_path / "services/billing/migrations/versions/u1_init.py").resolve()
    assert d.environment_of(f) is by_name["services/billing/migrations"]


def test_skipped_directories(tmp_path):
    files = {"app/migrations/versions/a1_real.py": migration_text("a1")}
    for n, skip in enumerate([".git", ".venv", "venv", "node_modules", "build", "pkg.egg-info", "myenv"]):
        files[f"{skip}/lib/alembic/versions/x{n}_vendored.py"] = migration_text(f"x{n}")
        files[f"{skip}/alembic.ini"] = "[alembic]\nscript_location = nowhere\n"
    files["myenv/pyvenv.cfg"] = "home = /usr/bin\n"  # a virtualenv with any name
    write_project(tmp_path, files)
    d = discover(tmp_path)
    assert d.problems == ()  # the broken inis inside skipped folders are never read
    env = only_env(d)
    assert rel(tmp_path, env.files) == ["app/migrations/versions/a1_real.py"]


def test_non_revision_python_files_outside_versions_are_ignored(tmp_path):
    write_project(tmp_path, {
        "app/models.py": "revision = 'not a migration'\n",
        "app/util.py": "down_revision = None\n",
        "app/env.py": "revision = 'x'\ndown_revision = None\n",
    })
    d = discover(tmp_path)
    assert d.environments == ()


# --------------------------------------------------------------------------- problems


@pytest.mark.parametrize("ini,needle", [
    ("[alembic]\nscript_location\n", "line 2"),  # a key without a value: configparser parse error
    ("[alembic]\nscript_location = migrations\n[alembic]\nx = 1\n", "already exists"),
    ("[alembic]\nscript_location = %(nothere)s/migrations\n", "nothere"),
])
def test_broken_alembic_ini_is_a_one_line_problem(tmp_path, ini, needle):
    write_project(tmp_path, {"alembic.ini": ini, "migrations/versions/a1_x.py": migration_text("a1")})
    d = discover(tmp_path)  # never raises
    assert len(d.problems) == 1
    problem = d.problems[0]
    assert problem.path == (tmp_path / "alembic.ini").resolve()
    assert "\n" not in problem.message
    assert "alembic.ini" in problem.message
    assert needle in problem.message


def test_script_location_that_does_not_exist(tmp_path):
    write_project(tmp_path, {"alembic.ini": "[alembic]\nscript_location = %(here)s/nowhere\n"})
    d = discover(tmp_path)
    assert d.environments == ()
    assert len(d.problems) == 1
    assert "does not exist" in d.problems[0].message
    assert "nowhere" in d.problems[0].message
    assert "\n" not in d.problems[0].message


def test_ini_without_script_location_is_not_an_environment(tmp_path):
    # e.g. the alembic.ini of the `pyproject` template moved elsewhere: only logging + url
    write_project(tmp_path, {"sub/alembic.ini": "[alembic]\nsqlalchemy.url = sqlite://\n"})
    d = discover(tmp_path)
    assert d.environments == ()
    assert d.problems == ()


def test_ini_files_without_alembic_section_are_not_configs(tmp_path):
    write_project(tmp_path, {"tox.ini": "[tox]\nenvlist = py3\n", "setup.cfg": "[metadata]\n", "pytest.ini": "[pytest\n"})
    d = discover(tmp_path)
    assert d.problems == () and d.environments == ()


def test_broken_pyproject_is_a_problem_not_an_exception(tmp_path):
    write_project(tmp_path, {
        "pyproject.toml": "[tool.migration-lsp\nselect = ['G']\n",
        "migrations/versions/a1_x.py": migration_text("a1"),
    })
    d = discover(tmp_path)
    assert len(d.problems) == 1
    assert "pyproject.toml" in d.problems[0].message
    assert d.settings == Settings()
    assert len(d.environments) == 1  # the revision files are still found


# --------------------------------------------------------------------------- settings


def test_tool_migration_lsp_settings(tmp_path):
    write_project(tmp_path, {
        "pyproject.toml": """
            [tool.migration-lsp]
            select = ["G", "S001"]
            ignore = ["G008"]
            dialect = "postgresql"
            models = "app.models:Base.metadata"
            exclude-tables = ["spatial_ref_sys"]
        """,
        "alembic.ini": "[alembic]\nscript_location = migrations\nsqlalchemy.url = sqlite:///x.db\n",
        "migrations/versions/a1_x.py": migration_text("a1"),
    })
    d = discover(tmp_path)
    assert d.settings.select == ("G", "S001")
    assert d.settings.ignore == ("G008",)
    assert d.settings.models == "app.models:Base.metadata"
    assert d.settings.exclude_tables == ("spatial_ref_sys",)
    env = only_env(d)
    assert env.settings == d.settings
    assert env.dialect == "postgresql"  # the setting wins over sqlalchemy.url


def test_dialect_from_sqlalchemy_url(tmp_path):
    write_project(tmp_path, {
        "alembic.ini": "[alembic]\nscript_location = migrations\nsqlalchemy.url = mysql+pymysql://u@h/db\n",
        "migrations/versions/a1_x.py": migration_text("a1"),
    })
    assert only_env(discover(tmp_path)).dialect == "mysql"


def test_overrides_win_over_pyproject(tmp_path):
    write_project(tmp_path, {"pyproject.toml": "[tool.migration-lsp]\nselect = ['G']\nignore = 'G008, G009'\n"})
    d = discover(tmp_path, {"ignore": ["G001"]})
    assert d.settings.select == ("G",)
    assert d.settings.ignore == ("G001",)
    s, problem = load_settings(tmp_path / "pyproject.toml")
    assert problem is None
    assert s.ignore == ("G008", "G009")  # a comma-separated string is split


def test_settings_enabled():
    s = Settings(select=("G",), ignore=("G008",))
    assert s.enabled("G001")
    assert not s.enabled("G008")
    assert not s.enabled("S001")
    assert Settings().enabled("S005")
    assert Settings(select=("ALL",), ignore=("S",)).enabled("G002")
    assert not Settings(select=("ALL",), ignore=("s",)).enabled("S002")
    assert Settings(select=("g002",)).enabled("G002")
    assert Settings().merged({"select": "G001,G002", "unknown-key": 1}).select == ("G001", "G002")


def test_tool_migration_lsp_must_be_a_table(tmp_path):
    write_project(tmp_path, {"pyproject.toml": 'tool = { migration-lsp = "G" }\n'})
    s, problem = load_settings(tmp_path / "pyproject.toml")
    assert problem is not None and "table" in problem.message
    assert s == Settings()


def test_looks_like_revision_file():
    """Discovery's cheap test for a revision file outside configured version locations."""
    assert looks_like_revision_file(migration_text("a1", None))
    assert looks_like_revision_file("revision = 'a'\ndown_revision = None\n")
    assert looks_like_revision_file("revision: str = 'a'\ndown_revision: Union[str, None] = None\n")
    assert not looks_like_revision_file("revision = 'a'\n")
    assert not looks_like_revision_file("def f():\n    revision = 'a'\n    down_revision = None\n")
    assert not looks_like_revision_file("if revision == 'a':\n    pass\ndown_revision = 1\n")


def test_a_dialect_name_never_loads_an_installed_entry_point(tmp_path, monkeypatch):
    """Every reader that turns a dialect name into a SQLAlchemy Dialect (the comparison, the
    rendered SQL, the hover's table card) goes through project.sqlalchemy_dialect, which
    loads SQLAlchemy's own dialects only: SQLAlchemy's registry would import whatever an
    installed distribution registers under an unknown name (here a module that leaves a mark)."""
    import sqlalchemy as sa
    from alembic.operations import ops as alembic_ops
    from sqlalchemy.dialects import registry

    from migration_lsp import compare, pglocks
    from migration_lsp.features.op_hover import describe_table
    from migration_lsp.project import KNOWN_DIALECTS, sqlalchemy_dialect
    from migration_lsp.schema import TableState

    mark = tmp_path / "imported"
    (tmp_path / "evil_dialect_mod.py").write_text(
        f"import pathlib\npathlib.Path({str(mark)!r}).write_text('ran')\n"
        "from sqlalchemy.engine.default import DefaultDialect\nclass D(DefaultDialect):\n    name = 'evil'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.impls, "evildialect", registry.impls.get("evildialect"))
    registry.register("evildialect", "evil_dialect_mod", "D")

    with pytest.raises(sa.exc.NoSuchModuleError):
        sqlalchemy_dialect("evildialect")
    with pytest.raises(sa.exc.NoSuchModuleError):
        pglocks.render_sql(alembic_ops.DropTableOp("t"), "evildialect")
    table = TableState.from_table(sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer)))
    assert any("INTEGER" in line for line in describe_table(table, "evildialect"))  # compiled without a dialect
    assert type(compare._impl("evildialect").dialect).__name__ == "DefaultDialect"
    assert not mark.exists()
    assert {type(sqlalchemy_dialect(n)).name for n in KNOWN_DIALECTS} == KNOWN_DIALECTS
    # the registry itself would have run it: what the helper guards against
    assert sa.engine.make_url("evildialect://").get_dialect().name == "evil" and mark.exists()
