"""The VS Code extension in real VS Code: code-server 4.100.3 (VS Code 1.100.3) in headless
Debian Chromium, the extension installed from its packaged .vsix with --install-extension,
and a test-only probe extension (tests/vscode/probe) that drives the VS Code API.

Fixture: a copy of examples/blog with the down_revision typo fixed, so exactly two heads
(2d91aa861ea7 and 4327c6748b81) remain, each with G001. Run in a trusted workspace with the
server given by the `migrationLsp.server.command` setting, in an untrusted one (Restricted Mode)
with the server found on PATH, and with no server at all (the extension must say how to fix that).

Needs `make vscode-deps` (Debian chromium, libkrb5-dev, ripgrep; npm packages; code-server in
.cache/code-server). Set MIGRATION_LSP_VSCODE_SCREENSHOT=editors/vscode/screenshot.png to
refresh the README's screenshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "editors" / "vscode"
DRIVER = ROOT / "tests" / "vscode" / "e2e.js"
CODE_SERVER = Path(os.environ.get("CODE_SERVER", ROOT / ".cache/code-server/node_modules/.bin/code-server"))
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
VENV_BIN = ROOT / ".venv" / "bin"

HEAD_A, HEAD_B = "2d91aa861ea7", "4327c6748b81"
TYPO, PARENT = "bd474000086b", "bd474000068b"
PARENT_MESSAGE = "add display name and post date index"

missing = [str(p) for p in (CODE_SERVER, CHROMIUM, EXTENSION / "node_modules", ROOT / "tests/vscode/node_modules")
           if not p.exists()] + [n for n in ("node", "npm") if shutil.which(n) is None]


@pytest.fixture(scope="module")
def vsix() -> Path:
    """The extension packaged exactly as a user gets it (`npm run package`). Missing tools
    fail the test (never skip it): `make test` installs them through `make vscode-deps`."""
    if missing:
        pytest.fail(f"run `make vscode-deps` first; missing: {', '.join(missing)}")
    subprocess.run(["npm", "run", "--silent", "package"], cwd=EXTENSION, check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=180)
    path = EXTENSION / "migration-lsp.vsix"
    assert path.is_file()
    return path


def fixture_project(dest: Path) -> Path:
    project = dest / "blog"
    shutil.copytree(ROOT / "examples" / "blog", project, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    head = project / "migrations" / "versions" / f"{HEAD_B}_add_post_slug.py"
    head.write_text(head.read_text().replace(TYPO, PARENT))
    return project


def run_vscode(project: Path, vsix: Path, out: Path, server: str, screenshot: Path | None = None,
               untrusted: bool = False) -> dict:
    head = project / "migrations" / "versions" / f"{HEAD_B}_add_post_slug.py"
    cmd = ["node", str(DRIVER), "--workspace", str(project), "--file", str(head), "--out", str(out),
           "--vsix", str(vsix), "--server", server]
    if screenshot:
        cmd += ["--screenshot", str(screenshot)]
    if untrusted:
        cmd += ["--untrusted", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"e2e driver failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return json.loads(out.read_text())


def heads_by_alembic(project: Path) -> list[str]:
    """Real Alembic is the referee for the result on disk (`heads` needs no database)."""
    proc = subprocess.run([str(VENV_BIN / "alembic"), "heads"], cwd=project, capture_output=True, text=True,
                          timeout=60, check=True)
    return re.findall(r"^([0-9a-f]+) \(head\)", proc.stdout, re.M)


@pytest.mark.parametrize("mode", ["setting", "untrusted-path"])
def test_vscode_extension_in_real_vscode(mode: str, vsix: Path, tmp_path: Path):
    """setting: trusted workspace, server from migrationLsp.server.command (machine settings).
    untrusted-path: Restricted Mode, the workspace's own server.command is ignored, the server
    is the one on PATH."""
    project = fixture_project(tmp_path)
    untrusted = mode == "untrusted-path"
    if untrusted:
        # a workspace must not choose what runs: this restricted setting is ignored until trusted
        (project / ".vscode").mkdir()
        (project / ".vscode" / "settings.json").write_text(json.dumps({"migrationLsp.server.command": ["/bin/false"]}))
    wanted = os.environ.get("MIGRATION_LSP_VSCODE_SCREENSHOT")
    screenshot = None
    if mode == "setting":  # one screenshot of the session: the head's G001 with its hover
        screenshot = Path(wanted).resolve() if wanted else tmp_path / "hover.png"
    res = run_vscode(project, vsix, tmp_path / "result.json", "path" if untrusted else "setting", screenshot,
                     untrusted=untrusted)
    assert "error" not in res, res["error"]

    # installed from the .vsix and activated by its own activation events
    assert res["extensionInstalled"] and res["extensionActive"], res
    # no error pop-ups from the server
    errors = [n for n in res["notifications"] if n.startswith("Error in server")]
    assert not errors, res["notifications"]

    # workspace trust reaches the server: models are imported only when trusted
    assert res["trusted"] is not untrusted
    diagnostics = dict((path, lines) for path, lines in res["allDiagnostics"])
    if untrusted:
        assert any("M004" in line and "not trusted" in line for line in diagnostics.get("migrations/env.py", [])), diagnostics
        assert "app/models.py" not in diagnostics
    else:
        assert any("M001" in line and "posts.published_at" in line for line in diagnostics["app/models.py"]), diagnostics

    # diagnostics: G001 on the head's `revision =` line (line 15, 0-based 14)
    g001 = [d for d in res["diagnostics"] if d["code"] == "G001"]
    assert g001 and g001[0]["line"] == 14 and g001[0]["source"] == "migration-lsp", res["diagnostics"]
    assert HEAD_A in g001[0]["message"]

    # hover on the id inside down_revision describes the parent revision
    assert res["downRevisionId"] == PARENT
    assert any(PARENT_MESSAGE in h and PARENT in h for h in res["hover"]), res["hover"]

    # the Merge heads quick fix is offered on the `revision =` line and applying it creates the file
    merge_title = f"Merge heads {HEAD_A}, {HEAD_B}"
    assert merge_title in res["codeActions"], res["codeActions"]
    assert res["mergeApplied"] is True
    (merge_name,) = res["mergeFiles"]
    merge_file = project / "migrations" / "versions" / merge_name
    assert merge_file.is_file()
    merge_text = merge_file.read_text()
    assert merge_text == res["mergeOnDisk"][0]
    assert f"('{HEAD_A}', '{HEAD_B}')" in merge_text
    merge_id = re.search(r"^revision: str = '([0-9a-f]+)'", merge_text, re.M).group(1)
    assert res["diagnosticsAfterMerge"] is not None and "G001" not in res["diagnosticsAfterMerge"]

    # "Migration LSP: Create next revision" puts a new revision on top of the merge
    (next_name,) = res["createdNext"]
    next_text = (project / "migrations" / "versions" / next_name).read_text()
    assert re.search(rf"^down_revision: .* = '{merge_id}'$", next_text, re.M), next_text
    next_id = re.search(r"^revision: str = '([0-9a-f]+)'", next_text, re.M).group(1)
    assert heads_by_alembic(project) == [next_id]

    # the graph opens from the command and from the code lens on `revision =`
    assert res["graphTabsAfterCommand"] == 1 and res["graphTabsAfterLens"] == 1, res
    assert res["codeLenses"] and res["codeLenses"][0], res["codeLenses"]

    # settings restart the server: ignoring "M" removes the model diagnostics, clearing it restores them
    assert res["modelCodesIgnored"] == [], res["modelCodesIgnored"]
    assert res["modelCodesRestored"], res
    # "Migration LSP: Restart server" brings every feature back
    assert any(PARENT_MESSAGE in h for h in res["hoverAfterRestart"]), res["hoverAfterRestart"]

    # status bar: two heads while the fixture had them, the new head at the end
    assert any("2 heads" in s for s in res["statusBar"]["hover"]), res["statusBar"]
    assert any(next_id[:12] in s for s in res["statusBar"]["end"]), res["statusBar"]
    if screenshot:
        assert screenshot.is_file() and screenshot.stat().st_size > 10_000


def test_vscode_without_a_server_says_how_to_fix_it(vsix: Path, tmp_path: Path):
    project = fixture_project(tmp_path)
    res = run_vscode(project, vsix, tmp_path / "result.json", "none")
    assert "error" not in res, res["error"]
    assert res["extensionActive"]
    (message,) = [n for n in res["notifications"] if "language server was not found" in n]
    assert "pip install migration-lsp" in message and "migrationLsp.server.command" in message
    assert any("server not found" in s for s in res["statusBar"]["end"]), res["statusBar"]
