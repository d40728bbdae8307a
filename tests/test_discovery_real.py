"""Stage `project` on layouts real projects ship (benchmarks/realworld/FINDINGS.md): the
package-resource form of script_location, template inis, per-dialect histories, settings
per environment and unique environment names. Alembic's own ScriptDirectory is the referee
for where the revisions are and what the heads are."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from conftest import MINIMAL_ENV_PY, migration_text as m, write_project
from migration_lsp.cli import main
from migration_lsp.project import discover


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- script_location


def resource_project(root):
    """prefect's layout: `script_location = pkg:sub:dir` (FINDINGS 1)."""
    return write_project(root, {
        "mypkg/__init__.py": "",
        "mypkg/db/__init__.py": "",
        "mypkg/db/migrations/env.py": MINIMAL_ENV_PY,
        "mypkg/db/migrations/versions/a1_x.py": m("a1"),
        "mypkg/db/migrations/versions/b2_x.py": m("b2", "a1"),
        "mypkg/db/alembic.ini": "[alembic]\nscript_location = mypkg:db:migrations\n",
    })


def test_resource_form_with_several_colons_is_resolved_as_alembic_does(tmp_path, monkeypatch):
    root = resource_project(tmp_path).resolve()
    monkeypatch.syspath_prepend(str(root))
    alembic_dir = ScriptDirectory.from_config(Config(str(root / "mypkg/db/alembic.ini"))).dir
    d = discover(root)
    assert d.problems == ()
    [env] = d.environments
    assert env.script_location == Path(alembic_dir).resolve() == root / "mypkg/db/migrations"
    assert [p.name for p in env.files] == ["a1_x.py", "b2_x.py"]


def test_resource_form_check_exits_zero(tmp_path, monkeypatch, capsys):
    resource_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "check", ".", "--no-import")
    assert (code, err) == (0, "")
    assert out == "All checks passed in 1 environment, 2 revisions.\n"


def test_a_configuration_problem_is_never_all_checks_passed(tmp_path, monkeypatch, capsys):
    write_project(tmp_path, {"alembic.ini": "[alembic]\nscript_location = nowhere\n"})
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "check", ".", "--no-import")
    assert code == 2
    assert "script_location nowhere does not exist" in err
    assert "All checks passed" not in out
    assert out.startswith("No findings, but 1 configuration problem (on stderr)")


def test_template_ini_is_not_an_environment_nor_a_failure(tmp_path, monkeypatch, capsys, caplog):
    """jupyterhub ships alembic.ini as a str.format template (FINDINGS 2): next to a usable
    ini, check exits 0 and the log says why the template is not an environment."""
    write_project(tmp_path, {
        "alembic.ini": "[alembic]\nscript_location = %(here)s/pkg/alembic\n",
        "pkg/alembic.ini": "[alembic]\nscript_location = {alembic_dir}\nsqlalchemy.url = {db_url}\n",
        "pkg/alembic/env.py": MINIMAL_ENV_PY,
        "pkg/alembic/versions/a1_x.py": m("a1"),
    })
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="migration_lsp"):
        code, out, _ = cli(capsys, "check", ".", "--no-import")
    assert code == 0
    assert out == "All checks passed in 1 environment, 1 revision.\n"
    assert any("pkg/alembic.ini: not an environment" in r.getMessage() and "template placeholder" in r.getMessage()
               for r in caplog.records)


# --------------------------------------------------------------------------- per-dialect histories


def dialect_histories(root):
    """One history per dialect, chosen in env.py (prefect): each has its own base and head."""
    return write_project(root, {
        "alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\nsqlalchemy.url = sqlite:///x.db\n",
        "migrations/env.py": MINIMAL_ENV_PY,
        "migrations/versions/sqlite/s1_init.py": m("s1"),
        "migrations/versions/sqlite/s2_more.py": m("s2", "s1"),
        "migrations/versions/postgresql/p1_init.py": m("p1"),
        "migrations/versions/postgresql/p2_more.py": m("p2", "p1"),
        "migrations/versions/postgresql/p3_more.py": m("p3", "p2"),
    })


def test_dialect_histories_are_separate_environments(tmp_path):
    root = dialect_histories(tmp_path).resolve()
    d = discover(root)
    assert d.problems == ()
    by_name = {e.name: e for e in d.environments}
    assert sorted(by_name) == ["migrations/versions/postgresql", "migrations/versions/sqlite"]
    pg, lite = by_name["migrations/versions/postgresql"], by_name["migrations/versions/sqlite"]
    assert (pg.dialect, lite.dialect) == ("postgresql", "sqlite")  # the folder wins over sqlalchemy.url
    for env in (pg, lite):
        script = ScriptDirectory(str(root / "migrations"), version_locations=[str(env.version_locations[0])])
        assert {p.stem.split("_")[0] for p in env.files} == {s.revision for s in script.walk_revisions()}
        assert env.config_path == root / "alembic.ini"
        assert env.script_location == root / "migrations"


def test_dialect_histories_give_no_graph_errors(tmp_path, monkeypatch, capsys):
    dialect_histories(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "check", ".", "--no-import", "--format", "json")
    data = json.loads(out)
    assert code == 0
    assert [d["code"] for d in data["diagnostics"]] == []  # was 2 x G001 + G008
    assert {e["name"]: e["heads"] for e in data["environments"]} == {
        "migrations/versions/postgresql": ["p3"], "migrations/versions/sqlite": ["s2"]}


def test_one_history_spread_over_dialect_folders_stays_one(tmp_path):
    """A revision in postgresql/ that follows one in sqlite/ ties them: one environment."""
    write_project(tmp_path, {
        "alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\n",
        "migrations/env.py": MINIMAL_ENV_PY,
        "migrations/versions/sqlite/s1_init.py": m("s1"),
        "migrations/versions/postgresql/p1_more.py": m("p1", "s1"),
    })
    [env] = discover(tmp_path).environments
    assert env.name == "migrations" and len(env.files) == 2 and env.dialect is None


def test_new_revision_of_a_dialect_history_belongs_to_it(tmp_path):
    root = dialect_histories(tmp_path).resolve()
    d = discover(root)
    new = root / "migrations/versions/sqlite/s3_new.py"
    assert d.environment_of(new).name == "migrations/versions/sqlite"


# --------------------------------------------------------------------------- settings per environment


def two_environments(root, pyproject: str):
    return write_project(root, {
        "pyproject.toml": pyproject,
        "a/alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\n",
        "a/migrations/env.py": MINIMAL_ENV_PY,
        "a/migrations/versions/a1_x.py": m("a1"),
        "b/alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\n",
        "b/migrations/env.py": MINIMAL_ENV_PY,
        "b/migrations/versions/b1_x.py": m("b1"),
    })


def test_root_models_with_several_environments_applies_to_none(tmp_path, caplog):
    root = two_environments(tmp_path, '[tool.migration-lsp]\nmodels = "app.models:metadata"\nselect = ["G"]\n')
    with caplog.at_level(logging.WARNING, logger="migration_lsp"):
        d = discover(root)
    assert d.problems == ()
    assert [(e.name, e.settings.models, e.settings.select) for e in d.environments] == [
        ("a/migrations", None, ("G",)), ("b/migrations", None, ("G",))]  # shared keys still shared
    assert any("[[tool.migration-lsp.environments]]" in r.getMessage() for r in caplog.records)


def test_environments_entries_are_keyed_by_path(tmp_path):
    root = two_environments(tmp_path, """
        [tool.migration-lsp]
        dialect = "postgresql"

        [[tool.migration-lsp.environments]]
        path = "a"
        models = "app.a:metadata"

        [[tool.migration-lsp.environments]]
        path = "b/migrations"
        models = "app.b:metadata"
        dialect = "mysql"
        exclude-tables = ["spatial_ref_sys"]
    """)
    d = discover(root)
    assert d.problems == ()
    got = {e.name: (e.settings.models, e.dialect, e.settings.exclude_tables) for e in d.environments}
    assert got == {"a/migrations": ("app.a:metadata", "postgresql", ()),
                   "b/migrations": ("app.b:metadata", "mysql", ("spatial_ref_sys",))}


def test_environments_entry_naming_the_ini_file(tmp_path):
    root = two_environments(tmp_path, '[[tool.migration-lsp.environments]]\npath = "b/alembic.ini"\nmodels = "m:x"\n')
    assert {e.name: e.settings.models for e in discover(root).environments} == {"a/migrations": None,
                                                                                 "b/migrations": "m:x"}


def test_root_models_with_one_environment_still_applies(tmp_path):
    write_project(tmp_path, {
        "pyproject.toml": '[tool.migration-lsp]\nmodels = "app.models:metadata"\n',
        "alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\n",
        "migrations/env.py": MINIMAL_ENV_PY,
        "migrations/versions/a1_x.py": m("a1"),
        "tests/fixtures/old/versions/z1_x.py": m("z1"),  # an orphan folder of revisions
    })
    d = discover(tmp_path)
    assert {e.name: e.settings.models for e in d.environments} == {
        "migrations": "app.models:metadata", "tests/fixtures/old/versions": None}


def test_malformed_environments_entry_is_a_problem(tmp_path):
    root = two_environments(tmp_path, '[[tool.migration-lsp.environments]]\nmodels = "m:x"\n')
    d = discover(root)
    assert len(d.problems) == 1 and "`path`" in d.problems[0].message


# --------------------------------------------------------------------------- unique names


def test_environment_names_are_unique(tmp_path, monkeypatch, capsys):
    """Two inis with one script_location and their own version locations (a test ini next
    to the real one): two environments, two names, both in the JSON."""
    write_project(tmp_path, {
        "alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\n",
        "alembic_extra.ini": "[alembic]\nscript_location = %(here)s/migrations\n"
                             "version_locations = %(here)s/extra_versions\n",
        "migrations/env.py": MINIMAL_ENV_PY,
        "migrations/versions/a1_x.py": m("a1"),
        "extra_versions/x1_x.py": m("x1"),
    })
    d = discover(tmp_path)
    names = [e.name for e in d.environments]
    assert len(names) == 2 and len(set(names)) == 2, names
    assert set(names) == {"alembic.ini", "alembic_extra.ini"}
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "check", ".", "--no-import", "--format", "json")
    data = json.loads(out)
    assert sorted(e["name"] for e in data["environments"]) == ["alembic.ini", "alembic_extra.ini"]
    assert sorted(e["revisions"] for e in data["environments"]) == [1, 1]
