"""Real Emacs (Debian's emacs-nox 28 + elpa-eglot 1.9) in batch mode, with exactly the shipped
editors/emacs/migration-lsp.el loaded as an init file would, and `migration-lsp` on PATH.

tests/emacs/driver.el plays one session on a copy of examples/blog through Eglot's own entry
points (M-x eglot, Flymake, M-x eglot-code-actions with the user's pick, ElDoc's hover
function, M-. via xref) and writes what the editor saw as JSON; this test asserts on it.
`make test` installs Emacs first (`make editors-deps`), so this test is never skipped there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from lsp_helpers import HEAD_A, HEAD_B, ROOT, TYPO_REV, copy_example, file_of

DRIVER = ROOT / "tests" / "emacs" / "driver.el"
SHIPPED = ROOT / "editors" / "emacs" / "migration-lsp.el"
ELPA_EGLOT = Path("/usr/share/emacs/site-lisp/elpa")


def emacs_binary() -> str:
    emacs = shutil.which("emacs")
    if emacs is None or not any(ELPA_EGLOT.glob("eglot-*")):
        pytest.fail("Emacs with Eglot is not installed: run `make editors-deps` "
                    "(apt-get install emacs-nox elpa-eglot)")
    return emacs


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("emacs")
    project = copy_example(tmp)
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMACS")}
    # -Q reads no init file; HOME in tmp keeps ~/.emacs.d (eln cache, eglot state) out of the user's
    env["HOME"] = str(home)
    # the shipped contact ("migration-lsp" "serve") resolves through exec-path, i.e. PATH
    env["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")])
    out = tmp / "result.json"
    env.update(MLSP_OUT=str(out), MLSP_EL=str(SHIPPED), MLSP_HOVER_FILE=str(file_of(project, HEAD_A)))
    typo = file_of(project, TYPO_REV)
    proc = subprocess.run(
        [emacs_binary(), "--batch", "-Q", "-l", str(DRIVER), str(typo.relative_to(project))],
        cwd=project, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert out.exists(), f"driver wrote nothing (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())
    assert result["exit_code"] == 0 and proc.returncode == 0, (
        f"driver failed after steps {result.get('steps')}: {result.get('error')}\n"
        f"{proc.stderr}\nEGLOT events (tail):\n{result.get('events_buffer')}")
    return result, project


def diag(result: dict, key: str = "diagnostics") -> list[tuple[str, int]]:
    return sorted((d["text"].split("[")[1].split("]")[0], d["line"]) for d in result[key])


def test_shipped_snippet_starts_the_server(session):
    result, project = session
    assert result["major_mode"] == "python-mode"
    assert result["server_command"] == ["migration-lsp", "serve"]
    assert ":initializationOptions (:trusted t)" in result["contact"]
    assert result["server_name"] == "migration-lsp"
    # no VCS in the copy: the snippet's project-find-functions entry finds alembic.ini
    assert Path(result["project_root"]) == project.resolve()


def test_flymake_shows_diagnostics(session):
    result, _ = session
    assert diag(result) == [("G001", 15), ("G002", 16)]  # 1-based lines
    g002 = next(d for d in result["diagnostics"] if "[G002]" in d["text"])
    assert g002["type"] == "eglot-error"
    assert g002["text"].startswith("migration-lsp [G002]: down_revision 'bd474000086b' does not exist")
    assert (g002["column"], g002["end_column"]) == (50, 62)  # exactly the id


def test_code_action_picked_and_applied(session):
    result, _ = session
    offered = result["actions_g002"]
    assert offered["titles"][0].startswith(f"Change to '{HEAD_B}'")
    assert f"(default Change to '{HEAD_B}'" in offered["prompt"]  # isPreferred -> Eglot's default
    assert any(t.startswith("Point to current head") for t in offered["titles"])
    assert result["line_after_fix"] == f"down_revision: Union[str, Sequence[str], None] = '{HEAD_B}'"
    assert result["docstring_after_fix"] == f"Revises: {HEAD_B}"
    assert result["modified_after_fix"] is True  # an edit in the buffer, not a disk write
    assert diag(result, "diagnostics_after_fix") == [("G001", 15)]


def test_merge_heads_through_workspace_apply_edit(session):
    result, project = session
    offered = result["actions_g001"]
    assert offered["titles"][0] == f"Merge heads {HEAD_A}, {TYPO_REV}"
    assert any(t.startswith("Rebase onto") for t in offered["titles"])
    # Eglot 1.9 declares no resourceOperations: the server asks for the new file with
    # workspace/applyEdit, which Eglot confirms with the user
    (confirm,) = result["actions_g001_confirm"]
    new = Path(result["merge_file"])
    assert str(new) in confirm
    assert new.parent == file_of(project, TYPO_REV).parent.resolve()
    assert new.read_text() == result["merge_text"]
    assert f"down_revision: Union[str, Sequence[str], None] = ('{HEAD_A}', '{TYPO_REV}')" in result["merge_text"]
    assert result["merge_managed"] is True
    assert result["diagnostics_after_merge"] == []
    heads = subprocess.run([sys.executable, "-m", "alembic", "heads"], cwd=project, capture_output=True,
                           text=True, timeout=120)
    assert heads.returncode == 0, heads.stderr
    assert heads.stdout.split() == [new.name[:12], "(head)"]


def test_hover_through_eldoc(session):
    result, _ = session
    assert result["hover_line"] == 16
    hover = result["hover"]
    assert "add comments table" in hover and "6a4961b6b2ca" in hover
    assert "branch point" in hover


def test_xref_definition_jumps_to_parent(session):
    result, project = session
    assert Path(result["definition_file"]) == file_of(project, "6a4961b6b2ca").resolve()
    assert result["definition_line"] == 15
    assert result["definition_text"] == "6a4961b6b2ca"
