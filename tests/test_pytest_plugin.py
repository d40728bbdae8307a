"""The pytest plugin (migration_lsp/pytest_plugin.py), driven through pytester: real pytest
sessions in a temporary project, with the plugin loaded from its installed entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import MINIMAL_INI, migration_text as m, write_project

pytest_plugins = ["pytester"]

BASE, SECOND, OTHER = "1a2b3c4d5e6f", "2b3c4d5e6f7a", "3c4d5e6f7a8b"


def _outcomes(reprec) -> dict[str, str]:
    """node id -> outcome of the call phase (or of setup when it did not get that far)."""
    found = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        if report.when == "call" or report.outcome != "passed":
            found[report.nodeid] = report.outcome
    return found


def _ours(outcomes: dict[str, str]) -> dict[str, str]:
    """{family[env]: outcome} of migration-lsp's items."""
    return {k.split("::migration-lsp::")[1]: v for k, v in outcomes.items() if "::migration-lsp::" in k}


def _project(root: Path, *, two_heads: bool = False, env_py: str | None = None, extra: dict | None = None) -> None:
    files = {
        "alembic.ini": MINIMAL_INI,
        "migrations/env.py": env_py or "from alembic import context\n\ntarget_metadata = None\n",
        f"migrations/versions/{BASE}_create_users.py": m(
            BASE, message="create users",
            upgrades="op.create_table('users', sa.Column('id', sa.Integer(), primary_key=True))",
            downgrades="op.drop_table('users')"),
        f"migrations/versions/{SECOND}_add_name.py": m(
            SECOND, BASE, message="add name",
            upgrades="op.add_column('users', sa.Column('name', sa.String(50), nullable=True))",
            downgrades="op.drop_column('users', 'name')"),
    }
    if two_heads:
        files[f"migrations/versions/{OTHER}_add_email.py"] = m(
            OTHER, BASE, message="add email",
            upgrades="op.add_column('users', sa.Column('email', sa.String(50), nullable=True))",
            downgrades="op.drop_column('users', 'email')")
    files.update(extra or {})
    write_project(root, files)


def test_installed_but_off_by_default(pytester: pytest.Pytester) -> None:
    _project(pytester.path, two_heads=True)
    pytester.makepyfile(test_app="def test_app():\n    assert True\n")
    help_text = pytester.runpytest("--help").stdout.str()
    assert "--migration-lsp" in help_text  # the entry point loaded the plugin...
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)  # ...and it added nothing to the run
    assert "migration-lsp" not in result.stdout.str()


def test_flag_adds_one_item_per_family_failing_with_the_findings(pytester: pytest.Pytester) -> None:
    _project(pytester.path, two_heads=True)
    reprec = pytester.inline_run("--migration-lsp")
    assert _ours(_outcomes(reprec)) == {
        "graph[migrations]": "failed", "models[migrations]": "passed",
        "downgrade[migrations]": "passed", "safety[migrations]": "passed",
    }
    result = pytester.runpytest("--migration-lsp")
    result.stdout.fnmatch_lines([
        f"migrations/versions/{SECOND}_add_name.py:*:1: G001 multiple heads: '{SECOND}' and '{OTHER}'*",
        f"migrations/versions/{OTHER}_add_email.py:*:1: G001 multiple heads: '{OTHER}' and '{SECOND}'*",
    ])
    result.stdout.fnmatch_lines(["FAILED alembic.ini::migration-lsp::graph[[]migrations[]]*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_ini_option_enables_it_and_a_clean_project_passes(pytester: pytest.Pytester) -> None:
    _project(pytester.path)
    pytester.makeini("[pytest]\nmigration_lsp = true\n")
    reprec = pytester.inline_run()
    ours = _ours(_outcomes(reprec))
    assert set(ours) == {"graph[migrations]", "models[migrations]", "downgrade[migrations]", "safety[migrations]"}
    assert set(ours.values()) == {"passed"}


def test_families_and_the_fail_on_threshold(pytester: pytest.Pytester) -> None:
    """An S004 error (SQLite ALTER outside batch) fails `safety`, a D001 warning (empty
    downgrade) fails `downgrade` unless the threshold is `error`."""
    _project(pytester.path, extra={
        f"migrations/versions/{OTHER}_alter.py": m(
            OTHER, SECOND, message="alter",
            upgrades="op.alter_column('users', 'name', type_=sa.String(100))\n"
                     "    op.add_column('users', sa.Column('age', sa.Integer(), nullable=True))",
            downgrades="pass"),
    })
    result = pytester.runpytest("--migration-lsp")
    ours = _ours(_outcomes(pytester.inline_run("--migration-lsp")))
    assert ours == {"graph[migrations]": "passed", "models[migrations]": "passed",
                    "downgrade[migrations]": "failed", "safety[migrations]": "failed"}
    result.stdout.fnmatch_lines([f"migrations/versions/{OTHER}_alter.py:*: S004 *"])
    result.stdout.fnmatch_lines([f"migrations/versions/{OTHER}_alter.py:*: D001 *"])

    pytester.makeini("[pytest]\nmigration_lsp_fail_on = error\n")
    ours = _ours(_outcomes(pytester.inline_run("--migration-lsp")))
    assert ours["downgrade[migrations]"] == "passed" and ours["safety[migrations]"] == "failed"


MODELS = """\
import pathlib
import sqlalchemy as sa

pathlib.Path("models-were-imported").write_text("yes")
metadata = sa.MetaData()
users = sa.Table("users", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("name", sa.String(50)), sa.Column("email", sa.String(50)))
"""

MODELS_ENV_PY = """\
from alembic import context
from app.models import metadata

target_metadata = metadata
"""


def test_runs_no_project_code_unless_asked_to_load_the_models(pytester: pytest.Pytester) -> None:
    ini = MINIMAL_INI.replace("[alembic]\n", "[alembic]\nprepend_sys_path = .\n")
    _project(pytester.path, env_py=MODELS_ENV_PY, extra={"alembic.ini": ini, "app/__init__.py": "",
                                                           "app/models.py": MODELS})
    marker = pytester.path / "models-were-imported"

    ours = _ours(_outcomes(pytester.inline_run("--migration-lsp")))
    assert ours["models[migrations]"] == "passed"
    assert not marker.exists()

    result = pytester.runpytest("--migration-lsp", "--migration-lsp-import")
    assert marker.exists()
    result.stdout.fnmatch_lines(["app/models.py:*: M001 column users.email is in the models but no migration creates it*"])
    result.stdout.fnmatch_lines(["FAILED alembic.ini::migration-lsp::models[[]migrations[]]*"])
    marker.unlink()

    pytester.makeini("[pytest]\nmigration_lsp = true\nmigration_lsp_import = true\n")
    ours = _ours(_outcomes(pytester.inline_run()))
    assert ours["models[migrations]"] == "failed" and marker.exists()


def test_k_selects_among_its_items_and_no_environment_is_a_failure(pytester: pytest.Pytester) -> None:
    _project(pytester.path / "service", two_heads=True)
    ours = _ours(_outcomes(pytester.inline_run("--migration-lsp", "-k", "safety")))
    assert ours == {"safety[service/migrations]": "passed"}

    pytester.makeini("[pytest]\nmigration_lsp_paths = empty\n")
    (pytester.path / "empty").mkdir()
    result = pytester.runpytest("--migration-lsp")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no Alembic environment found under empty*"])


def test_a_configuration_problem_is_one_failing_item(pytester: pytest.Pytester) -> None:
    """What `check` reports with exit 2 (here a script_location that does not exist)."""
    (pytester.path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/nowhere\n")
    result = pytester.runpytest("--migration-lsp")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["alembic.ini: script_location */nowhere does not exist",
                                 "FAILED migration-lsp::configuration*"])


def test_one_set_of_items_per_environment(pytester: pytest.Pytester) -> None:
    _project(pytester.path / "billing")
    _project(pytester.path / "users", two_heads=True)
    ours = _ours(_outcomes(pytester.inline_run("--migration-lsp")))
    assert ours == {
        **{f"{family}[billing/migrations]": "passed" for family in ("graph", "models", "downgrade", "safety")},
        **{f"{family}[users/migrations]": "passed" for family in ("models", "downgrade", "safety")},
        "graph[users/migrations]": "failed",
    }
    result = pytester.runpytest("--migration-lsp", "-k", "graph")
    result.stdout.fnmatch_lines([f"users/migrations/versions/{SECOND}_add_name.py:*: G001 *"])
    assert "billing/migrations/versions" not in result.stdout.str()
