"""Text from the workspace cannot take over a terminal or a CI log, and a `revision` that
cannot be written says why in one line (exit 2) instead of a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import alembic_project, migration_text as m, write_project
from migration_lsp.cli import main, printable

FORGED = "zz\n::error file=app.py,line=1::forged\x1b[31m\x07"


@pytest.fixture
def hostile(tmp_path, monkeypatch) -> Path:
    """A down_revision holding a newline, a forged workflow command, an ANSI colour and a bell
    (G002 quotes it), and a message with control characters (G001 quotes the other head's)."""
    text = m("bbbb2222", "aaaa1111", message="left").replace("down_revision: Union[str, Sequence[str], None] = 'aaaa1111'",
                                                             f"down_revision: Union[str, Sequence[str], None] = {FORGED!r}")
    assert FORGED[:2] in text
    alembic_project(tmp_path, {
        "aaaa1111_init.py": m("aaaa1111", message="init \x1b]0;pwned\x07title"),
        "bbbb2222_left.py": text,
        "cccc3333_right.py": m("cccc3333", "aaaa1111", message="right\x1b[2J"),
        "dddd4444_more.py": m("dddd4444", "aaaa1111", message="more"),
    })
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def test_text_output_escapes_control_characters(hostile, capsys):
    code, out = _run(capsys, "check", "--no-import")
    assert code == 1
    assert "G002" in out and "G001" in out
    assert "\x1b" not in out and "\x07" not in out
    assert not any(line.startswith("::") for line in out.splitlines())  # no forged workflow command
    assert "\\n::error" in out  # shown, escaped


def test_github_output_has_one_command_per_finding(hostile, capsys):
    _, out = _run(capsys, "check", "--no-import", "--format", "github")
    _, as_json = _run(capsys, "check", "--no-import", "--format", "json")
    findings = json.loads(as_json)["diagnostics"]
    lines = out.splitlines()
    assert len(lines) == len(findings)
    assert all(re.match(r"^::(error|warning|notice) file=", line) for line in lines)
    assert not any("\x1b" in line or "\x07" in line for line in lines)
    assert "forged" in out  # the text is kept, escaped, inside the legitimate annotation


def test_graph_output_escapes_control_characters(hostile, capsys):
    _, out = _run(capsys, "graph")
    assert "\x1b" not in out and "\x07" not in out


def test_printable_keeps_ordinary_text():
    assert printable("add user bio: ünïcode ✓") == "add user bio: ünïcode ✓"
    assert printable("a\tb\nc\x00") == "a\\tb\\nc\\x00"


def test_revision_with_unusable_file_template_is_one_line(tmp_path, monkeypatch, capsys):
    ini = "[alembic]\nscript_location = %(here)s/migrations\nfile_template = %%(nope)s_%%(rev)s\n"
    alembic_project(tmp_path, {"aaaa1111_init.py": m("aaaa1111")}, ini=ini)
    monkeypatch.chdir(tmp_path)
    code, out = _run(capsys, "revision", "-m", "next")
    assert code == 2
    assert out.strip().count("\n") == 0 and "file_template" in out and "nope" in out
    assert "Traceback" not in out
    assert len(list((tmp_path / "migrations" / "versions").iterdir())) == 1


def test_revision_whose_file_name_is_too_long_is_one_line(tmp_path, monkeypatch, capsys):
    ini = "[alembic]\nscript_location = %(here)s/migrations\ntruncate_slug_length = 10000\n"
    alembic_project(tmp_path, {"aaaa1111_init.py": m("aaaa1111")}, ini=ini)
    monkeypatch.chdir(tmp_path)
    code, out = _run(capsys, "revision", "-m", "word " * 2000)
    assert code == 2
    assert out.strip().count("\n") == 0 and "cannot write the new revision" in out


def test_revision_into_a_versions_path_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    write_project(tmp_path, {"alembic.ini": "[alembic]\nscript_location = %(here)s/migrations\n"
                                            "version_locations = %(here)s/migrations/versions\n",
                             "migrations/env.py": "target_metadata = None\n"})
    (tmp_path / "migrations" / "versions").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    code, out = _run(capsys, "revision", "-m", "first")
    assert code == 2
    assert "Traceback" not in out and out.strip().count("\n") == 0
