"""`check --format gitlab`: GitLab's Code Quality report (the `codequality` artifact of a CI
job), checked against the report format GitLab documents and against `--format json`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO_ROOT
from migration_lsp.cli import main

# https://docs.gitlab.com/ci/testing/code_quality/#code-quality-report-format: the fields
# GitLab requires, and its five severities
ISSUE_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["description", "check_name", "fingerprint", "severity", "location"],
        "properties": {
            "description": {"type": "string", "minLength": 1},
            "check_name": {"type": "string", "minLength": 1},
            "fingerprint": {"type": "string", "minLength": 1},
            "severity": {"enum": ["info", "minor", "major", "critical", "blocker"]},
            "location": {
                "type": "object",
                "required": ["path", "lines"],
                "properties": {
                    "path": {"type": "string", "minLength": 1},
                    "lines": {"type": "object", "required": ["begin"],
                              "properties": {"begin": {"type": "integer", "minimum": 1}}},
                },
            },
        },
    },
}


@pytest.fixture
def blog(tmp_path: Path, monkeypatch) -> Path:
    target = tmp_path / "blog"
    shutil.copytree(REPO_ROOT / "examples" / "blog", target, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    monkeypatch.chdir(target)
    return target


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main(["check", "--no-import", *args])
    return code, capsys.readouterr().out


def test_the_demo_as_a_code_quality_report(blog: Path, capsys) -> None:
    code, out = _run(capsys, "--format", "gitlab")
    report = json.loads(out)
    jsonschema.validate(report, ISSUE_SCHEMA)
    assert code == 1  # the exit code does not depend on the format
    _, out = _run(capsys, "--format", "json")
    diagnostics = json.loads(out)["diagnostics"]
    assert [(i["check_name"], i["location"]["path"], i["location"]["lines"]["begin"], i["severity"])
            for i in report] == [
        (f"migration-lsp/{d['code']}", d["path"], d["line"],
         {"error": "major", "warning": "minor", "info": "info"}[d["severity"]]) for d in diagnostics]
    assert [i["description"] for i in report] == [f"{d['code']} {d['message']}" for d in diagnostics]
    assert len({i["fingerprint"] for i in report}) == len(report) == 4  # G001 x2, G002, M004 (--no-import)


def test_fingerprints_survive_a_moved_line_and_tell_twins_apart(blog: Path, capsys) -> None:
    before = {i["description"]: i for i in json.loads(_run(capsys, "--format", "gitlab")[1])}
    script = next((blog / "migrations" / "versions").glob("4327c6748b81_*.py"))
    script.write_text("# a comment above the header\n" + script.read_text())
    after = {i["description"]: i for i in json.loads(_run(capsys, "--format", "gitlab")[1])}
    assert before.keys() == after.keys()
    for description, issue in after.items():
        assert issue["fingerprint"] == before[description]["fingerprint"]
        if issue["location"]["path"].endswith(script.name):
            assert issue["location"]["lines"]["begin"] == before[description]["location"]["lines"]["begin"] + 1

    # the same finding twice in one file (two ops dropping tables): two fingerprints
    script = next((blog / "migrations" / "versions").glob("17b2b3743e17_*.py"))
    text = script.read_text()
    script.write_text(text.replace("def upgrade() -> None:\n",
                                   "def upgrade() -> None:\n    op.drop_table('x')\n    op.drop_table('x')\n", 1))
    twins = [i for i in json.loads(_run(capsys, "--format", "gitlab")[1]) if i["check_name"] == "migration-lsp/S005"]
    assert len(twins) == 2 and twins[0]["description"] == twins[1]["description"]
    assert twins[0]["fingerprint"] != twins[1]["fingerprint"]
