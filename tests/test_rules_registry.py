"""The rule registry (migration_lsp/rules.py): every emitted code is in it, the README's
tables are generated from it (and fail here when they drift), SARIF and the editor's
"Show documentation" links come from it, and the checks take their severities from it."""

from __future__ import annotations

import ast
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy.dialects

from conftest import REPO_ROOT, alembic_project, migration_text as m
from migration_lsp import rules
from migration_lsp.cli import main
from migration_lsp.core import Diagnostic, Severity, Span
from migration_lsp.rules import RULES
from test_cli import sarif_validator

README = REPO_ROOT / "README.md"
PACKAGE = REPO_ROOT / "migration_lsp"
CODE = re.compile(r"[GMDSR]\d{3}")


def emitted_codes() -> dict[str, set[str]]:
    """Every string literal in the package that is a diagnostic code, by file (the registry
    itself left out)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "rules.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
                found.setdefault(node.value, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def test_every_code_in_the_source_is_registered_and_every_rule_is_used():
    emitted = emitted_codes()
    unregistered = {code: sorted(where) for code, where in emitted.items() if code not in RULES}
    assert unregistered == {}, "codes used in the source but missing from migration_lsp/rules.py"
    assert sorted(set(RULES) - set(emitted)) == [], "rules no code emits"
    # the families of today, all of them (issue 13: M and D were missing from RULES)
    assert {c[0] for c in RULES} >= {"G", "M", "D", "S"}
    assert [c for c in RULES if c[0] in "MD"] == ["M001", "M002", "M003", "M004", "D001", "D002", "D003"]


def test_entries_are_complete():
    names = [r.name for r in RULES.values()]
    assert len(set(names)) == len(names), "rule names must be unique"
    known_dialects = set(sqlalchemy.dialects.__all__)
    for code, r in RULES.items():
        assert r.code == code and CODE.fullmatch(code)
        assert r.family in rules.FAMILIES, code
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.name), (code, r.name)
        assert r.summary and "\n" not in r.summary and not r.summary.endswith("."), code
        assert r.rationale.strip() and r.fix.strip() and r.where.strip(), code
        assert isinstance(r.severity, Severity)
        assert set(r.dialects) <= known_dialects, (code, r.dialects)
    assert RULES["S002"].dialects == RULES["S003"].dialects == ("postgresql",)
    assert RULES["S004"].dialects == ("sqlite",)


# --------------------------------------------------------------------------- README


ROW = re.compile(r"^\| \[(?P<code>[A-Z]\d{3})\]\(#(?P<anchor>[a-z]\d{3})\) \| `(?P<name>[^`]*)` \| (?P<severity>\w+(?: or \w+)*) \| "
                 r"(?P<dialects>[^|]*) \| (?P<summary>.*) \|$")


def readme_rows() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if (match := ROW.match(line)):
            assert match["code"] not in rows, f"{match['code']} twice in the README's tables"
            rows[match["code"]] = match.groupdict()
    return rows


def test_readme_tables_agree_with_the_registry():
    rows = readme_rows()
    assert sorted(rows) == sorted(RULES), "README tables and registry list different codes"
    disagree = {
        code: {key: (row[key], want) for key, want in (
            ("severity", RULES[code].severity_label), ("summary", RULES[code].summary.replace("|", "\\|")),
            ("name", RULES[code].name), ("anchor", code.lower()),
            ("dialects", ", ".join(RULES[code].dialects) or "any")) if row[key] != want}
        for code, row in rows.items()
    }
    assert {c: d for c, d in disagree.items() if d} == {}


def test_readme_block_is_exactly_the_generated_one():
    block = rules.readme_block(README.read_text(encoding="utf-8"))
    assert block is not None, "README lost its generated rules block"
    assert block == rules.markdown(), "run `python -m migration_lsp.rules --update README.md`"


def test_a_drifted_readme_is_caught(tmp_path):
    """The comparison really reads the file: a changed severity or summary is reported,
    and --update puts the generated block back without touching the rest."""
    text = README.read_text(encoding="utf-8")
    drifted = text.replace("| [S003](#s003) | `concurrently-in-transaction` | error |",
                           "| [S003](#s003) | `concurrently-in-transaction` | warning |")
    assert drifted != text
    copy = tmp_path / "README.md"
    copy.write_text(drifted + "\nhand-written tail\n", encoding="utf-8")
    assert rules.readme_block(drifted) != rules.markdown()
    assert rules.main(["--update", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == text + "\nhand-written tail\n"
    unmarked = tmp_path / "other.md"
    unmarked.write_text("no markers\n", encoding="utf-8")
    assert rules.main(["--update", str(unmarked)]) == 2
    assert unmarked.read_text(encoding="utf-8") == "no markers\n"


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings (lower case, punctuation dropped, spaces to dashes)."""
    anchors = set()
    for line in markdown.splitlines():
        if (match := re.match(r"^#{1,6} (.*)$", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-"))
    return anchors


def test_documentation_links_land_on_a_readme_heading():
    anchors = github_anchors(README.read_text(encoding="utf-8"))
    for code, r in RULES.items():
        assert r.doc_url.startswith(rules.HOME + "#")
        assert r.doc_url.split("#", 1)[1] in anchors, f"{code}: no README heading for {r.doc_url}"
    for _, more in rules.FAMILIES.values():
        assert not more or more[1:] in anchors, more


def test_lsp_diagnostics_link_to_the_rule():
    from migration_lsp.features import Locator
    from migration_lsp.features.diagnostics import to_lsp

    class NoSnapshot:
        def script(self, path):
            return None

    d = Diagnostic("S003", Severity.ERROR, Path("/x/a.py"), Span(1, 0, 1, 4), "m")
    lsp = to_lsp(d, Locator(NoSnapshot(), "utf-16"))  # type: ignore[arg-type]
    assert lsp.code_description.href == RULES["S003"].doc_url == rules.HOME + "#s003"


# --------------------------------------------------------------------------- SARIF and severities


def test_sarif_describes_every_rule(tmp_path, monkeypatch, capsys):
    alembic_project(tmp_path, {"a.py": m("aaaa1111"), "b.py": m("bbbb2222", "aaaa1112")})
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--format", "sarif", "--no-cache"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert list(sarif_validator().iter_errors(sarif)) == []
    (run,) = sarif["runs"]
    descriptors = run["tool"]["driver"]["rules"]
    assert [d["id"] for d in descriptors] == list(RULES)
    level = {"error": "error", "warning": "warning", "info": "note"}
    for d in descriptors:
        r = RULES[d["id"]]
        assert d["name"] == r.name
        assert d["shortDescription"]["text"] == r.summary
        assert d["fullDescription"]["text"] == r.rationale
        assert r.fix in d["help"]["text"] and r.fix in d["help"]["markdown"]
        assert d["helpUri"] == r.doc_url
        assert d["defaultConfiguration"]["level"] == level[r.severity.label]
    for result in run["results"]:
        assert descriptors[result["ruleIndex"]]["id"] == result["ruleId"]


def test_checks_take_their_severity_from_the_registry(tmp_path, monkeypatch, capsys):
    """G009 (a warning) made an error in the registry alone: the finding is an error and
    the check fails."""
    a = m("aaaa1111").replace("Revision ID: aaaa1111", "Revision ID: aaaa1112")
    alembic_project(tmp_path, {"a.py": a})
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--format", "json", "--no-cache"]) == 0
    assert [d["severity"] for d in json.loads(capsys.readouterr().out)["diagnostics"]] == ["warning"]
    monkeypatch.setitem(RULES, "G009", replace(RULES["G009"], severity=Severity.ERROR))
    assert main(["check", "--format", "json", "--no-cache"]) == 1
    assert [d["severity"] for d in json.loads(capsys.readouterr().out)["diagnostics"]] == ["error"]


def test_a_finding_takes_only_a_severity_its_rule_declares():
    """M004 and S021 vary (declared in the registry: `also`); any other level is refused."""
    assert rules.severity("M004") == Severity.WARNING and rules.severity("M004", Severity.INFO) == Severity.INFO
    assert rules.severity("S021", Severity.WARNING) == Severity.WARNING
    assert RULES["S021"].severity_label == "error or warning"
    assert [c for c, r in RULES.items() if r.also] == ["M004", "S021"]
    for code, level in (("G001", Severity.WARNING), ("M004", Severity.ERROR), ("S021", Severity.INFO)):
        with pytest.raises(ValueError, match=f"{code} is a"):
            rules.severity(code, level)
    with pytest.raises(KeyError, match="not in the rule registry"):
        rules.severity("S999")


def hard_coded_severities(path: Path) -> list[int]:
    """Lines of `Diagnostic(...)` calls whose severity is written as `Severity.X` rather than
    taken from the registry (`severity(code)` / `severity(code, level)`, which checks `level`)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Diagnostic"):
            continue
        given = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "severity"), None)
        if given is None:
            continue
        inside_severity = {id(n) for call in ast.walk(given) if isinstance(call, ast.Call)
                           and isinstance(call.func, ast.Name) and call.func.id == "severity" for n in ast.walk(call)}
        if any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "Severity"
               and id(n) not in inside_severity for n in ast.walk(given)):
            lines.append(node.lineno)
    return lines


def test_no_check_hard_codes_a_severity(tmp_path):
    offenders = {str(p.relative_to(REPO_ROOT)): lines for p in sorted(PACKAGE.rglob("*.py"))
                 if (lines := hard_coded_severities(p))}
    assert offenders == {}, "take the severity from the registry: rules.severity(code[, declared level])"
    sample = tmp_path / "x.py"
    sample.write_text("a = Diagnostic('M004', Severity.INFO, p, s, 'm')\n"
                      "b = Diagnostic(code, Severity.ERROR if sure else Severity.WARNING, p, s, 'm')\n"
                      "c = Diagnostic('M004', severity('M004', Severity.INFO), p, s, 'm')\n")
    assert hard_coded_severities(sample) == [1, 2]


S021_BOTH = m("aaaa1111", upgrades='op.drop_constraint(None, "users", type_="foreignkey")',
              downgrades='op.drop_constraint(None, "users", type_="unique")')
ENV_BROKEN_MODELS = "from alembic import context\nfrom nosuchapp.models import Base\n\ntarget_metadata = Base.metadata\n"


@pytest.mark.parametrize("where", [
    "examples/blog", *sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "tests/fixtures/realworld").iterdir()
                             if p.is_dir()), "S021 in upgrade and downgrade", "models that fail to load"])
def test_every_finding_has_a_severity_its_rule_declares(where, tmp_path, monkeypatch, capsys):
    """The checks over the tests' projects (and two made to vary M004 and S021): each finding's
    severity is one the registry declares for its code, so SARIF and the README tell the truth."""
    argv = ["check", "--format", "json", "--no-cache", "--exit-zero"]
    if where == "S021 in upgrade and downgrade":
        alembic_project(tmp_path, {"a.py": S021_BOTH})
        argv.append("--no-import")
    elif where == "models that fail to load":
        alembic_project(tmp_path, {"a.py": m("aaaa1111")})
        (tmp_path / "migrations/env.py").write_text(ENV_BROKEN_MODELS)
    else:
        shutil.copytree(REPO_ROOT / where, tmp_path / "p")  # nothing is written next to the sources
        tmp_path = tmp_path / "p"
        argv.append("--no-import")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    found = [(d["code"], d["severity"]) for d in json.loads(capsys.readouterr().out)["diagnostics"]]
    assert found, "each project has findings"
    assert [(code, level) for code, level in found
            if level not in [s.label for s in RULES[code].severities]] == []
    if where == "S021 in upgrade and downgrade":
        assert sorted(level for code, level in found if code == "S021") == ["error", "warning"]
    elif where == "models that fail to load":
        assert ("M004", "warning") in found
    elif where == "examples/blog":
        assert ("M004", "info") in found  # --no-import
