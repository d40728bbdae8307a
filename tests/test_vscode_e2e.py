"""The VS Code extension in real VS Code: code-server 4.100.3 (VS Code 1.100.3) in headless
Debian Chromium, the extension installed from its packaged .vsix with --install-extension,
and a test-only probe extension (tests/vscode/probe) that drives the VS Code API.

Fixture: a copy of examples/blog with the down_revision typo fixed, so exactly two heads
(2d91aa861ea7 and 4327c6748b81) remain, each with G001. code-server's PATH never holds this
repository's .venv: `migration-lsp` is installed nowhere it can find, and `python3` there has
neither migration_lsp nor SQLAlchemy (checked). Modes:
- bundled: trusted, only the .vsix: the extension runs the server it bundles with python3 on
  PATH; the project's own .venv (SQLAlchemy) imports the models, so M001 appears;
- untrusted-bundled: Restricted Mode; the workspace's settings ask for /bin/false as server,
  importStrategy fromEnvironment and its own .venv python, whose bin directory is first on PATH
  (as after `source .venv/bin/activate; code .`): none of it may run, the bundled server does;
- environment: trusted, importStrategy fromEnvironment; a stand-in for the Python extension
  (tests/vscode/fake-python) selects this repository's .venv, which has migration-lsp: the server
  is `python -I -m migration_lsp serve`, and is told to import the models with that interpreter;
  the probe then restarts it by setting `migrationLsp.server.command` to that bare interpreter.
  (In untrusted-bundled the stand-in selects the workspace's .venv: it must not run.)
Every workspace holds look-alike modules (`argparse.py`, a `migration_lsp/` package) that write a
sentinel when imported: with the workspace as working directory, `python -m migration_lsp`
imported them (issue 12); no mode may. With no server to find, or no Python 3.10+ to run the bundled
one, the extension says how to fix it.

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
import sys
from pathlib import Path

import pytest

# parallel runs (make test): never at the same time as test_vscode_bundle (tests/conftest.py); both
# build bundled/libs into the checkout, and this module the .vsix
pytestmark = pytest.mark.xdist_group("vscode")

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
    # the package step builds bundled/libs from this repository's source (cached while unchanged)
    subprocess.run(["npm", "run", "--silent", "package"], cwd=EXTENSION, check=True, env={**os.environ, "PYTHON": sys.executable},
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=400)
    path = EXTENSION / "migration-lsp.vsix"
    assert path.is_file()
    return path


def fixture_project(dest: Path) -> Path:
    project = dest / "blog"
    shutil.copytree(ROOT / "examples" / "blog", project, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    head = project / "migrations" / "versions" / f"{HEAD_B}_add_post_slug.py"
    head.write_text(head.read_text().replace(TYPO, PARENT))
    return project


def plant_look_alikes(project: Path, sentinel: Path) -> None:
    """Workspace modules named like what the server imports: each writes `sentinel` when imported."""
    code = (f"import os, sys\nwith open({str(sentinel)!r}, 'a') as f:\n"
            f"    f.write('%s imported in pid %d: %r\\n' % (__file__, os.getpid(), sys.argv))\n")
    (project / "argparse.py").write_text(code)
    (project / "migration_lsp").mkdir()
    (project / "migration_lsp" / "__init__.py").write_text(code)
    (project / "migration_lsp" / "__main__.py").write_text(code)


def project_venv(project: Path) -> Path:
    """The project's own .venv: SQLAlchemy (this repository's copy, through a .pth file: fast and
    offline) but no migration_lsp. Returns its site-packages."""
    subprocess.run([str(VENV_BIN / "python"), "-m", "venv", "--without-pip", str(project / ".venv")], check=True, timeout=60)
    (site,) = (project / ".venv" / "lib").glob("python3*/site-packages")
    import sqlalchemy  # noqa: PLC0415  (the test's own interpreter is this repository's .venv)

    (site / "repo_sqlalchemy.pth").write_text(str(Path(sqlalchemy.__file__).parent.parent) + "\n")
    python = project / ".venv" / "bin" / "python"
    probe = subprocess.run([str(python), "-I", "-c", "import sqlalchemy; import migration_lsp"], cwd=project.parent,
                           capture_output=True, text=True, timeout=60)
    assert "No module named 'migration_lsp'" in probe.stderr, probe.stderr
    return site


def run_vscode(project: Path, vsix: Path, out: Path, server: str, screenshot: Path | None = None,
               untrusted: bool = False, path_prepend: Path | None = None, python_ext: Path | None = None,
               restart_command: list[str] | None = None, user_settings: dict | None = None) -> dict:
    head = project / "migrations" / "versions" / f"{HEAD_B}_add_post_slug.py"
    cmd = ["node", str(DRIVER), "--workspace", str(project), "--file", str(head), "--out", str(out),
           "--vsix", str(vsix), "--server", server]
    if user_settings:
        cmd += ["--user-settings", json.dumps(user_settings)]
    if screenshot:
        cmd += ["--screenshot", str(screenshot)]
    if untrusted:
        cmd += ["--untrusted", "1"]
    if path_prepend:
        cmd += ["--path-prepend", str(path_prepend)]
    if python_ext:
        cmd += ["--python-ext", str(python_ext)]
    if restart_command:
        cmd += ["--restart-command", json.dumps(restart_command)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=330, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"e2e driver failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return json.loads(out.read_text())


def heads_by_alembic(project: Path) -> list[str]:
    """Real Alembic is the referee for the result on disk (`heads` needs no database)."""
    proc = subprocess.run([str(VENV_BIN / "alembic"), "heads"], cwd=project, capture_output=True, text=True,
                          timeout=60, check=True)
    return re.findall(r"^([0-9a-f]+) \(head\)", proc.stdout, re.M)


def git_base(project: Path) -> None:
    """The project as a git checkout whose remote's main branch is at its current state."""
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=project,
                       check=True, capture_output=True, timeout=60)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "base")
    git("update-ref", "refs/remotes/origin/main", "HEAD")


def bare_path(ext_host_path: str, project: Path) -> dict[str, str]:
    """The environment of code-server's extension host without the project's own directories
    (what an untrusted workspace may run from), for commands run from outside any project."""
    dirs = [d for d in ext_host_path.split(os.pathsep) if d and not Path(d).resolve().is_relative_to(project.resolve())]
    return {"PATH": os.pathsep.join(dirs), "HOME": os.environ.get("HOME", "/root")}


@pytest.mark.parametrize("mode", ["bundled", "untrusted-bundled", "environment"])
def test_vscode_extension_in_real_vscode(mode: str, vsix: Path, tmp_path: Path):
    project = fixture_project(tmp_path)
    sentinel = tmp_path / "look-alike-imported.txt"
    plant_look_alikes(project, sentinel)
    untrusted = mode == "untrusted-bundled"
    path_prepend = None
    site = project_venv(project)  # trusted: it imports the models
    venv_python = project / ".venv" / "bin" / "python"
    # a stand-in for the Python extension: its selected interpreter (see the module docstring)
    python_ext = {"bundled": None, "untrusted-bundled": venv_python, "environment": VENV_BIN / "python"}[mode]
    restart_command = [str(VENV_BIN / "python")] if mode == "environment" else None
    # a setting the server starts with and the probe then removes: pushed like any other (no restart)
    user_settings = {"migrationLsp.ignore": ["S005"]} if mode == "environment" else None
    if mode == "bundled":  # a git checkout whose base branch (origin/main) has the fixture's revisions
        git_base(project)
    if untrusted:
        # the workspace's own interpreter must not run at all: its site-packages run code at start
        (site / "evil.pth").write_text(f"import os; open({str(sentinel)!r}, 'a').write('workspace .venv ran\\n')\n")
        path_prepend = project / ".venv" / "bin"
        # a workspace must not choose what runs: these restricted settings are ignored until trusted
        (project / ".vscode").mkdir()
        (project / ".vscode" / "settings.json").write_text(json.dumps({
            "migrationLsp.server.command": ["/bin/false"], "migrationLsp.importStrategy": "fromEnvironment",
            "migrationLsp.python": str(project / ".venv" / "bin" / "python")}))
    wanted = os.environ.get("MIGRATION_LSP_VSCODE_SCREENSHOT")
    screenshot = None
    if mode == "bundled":  # one screenshot of the session: the head's G001 with its hover
        screenshot = Path(wanted).resolve() if wanted else tmp_path / "hover.png"
    try:
        res = run_vscode(project, vsix, tmp_path / "result.json", "environment" if mode == "environment" else "bundled",
                         screenshot, untrusted=untrusted, path_prepend=path_prepend, python_ext=python_ext,
                         restart_command=restart_command, user_settings=user_settings)
    finally:
        # no workspace module was imported, no workspace interpreter ran: not by the server, not by a probe
        # (checked first: a server replaced by a look-alike also makes the session fail)
        assert not sentinel.exists(), sentinel.read_text()
    assert "error" not in res, res["error"]
    log = res["outputLog"]
    from migration_lsp import __version__

    if mode == "environment":
        python = VENV_BIN / "python"
        assert f"starting {python} -I -m migration_lsp serve ({python})" in log, log
        assert f"server: migration-lsp {__version__} (from {python})" in log, log
        assert f"starting {python} -I -m migration_lsp serve (setting migrationLsp.server.command)" in log, log
        # the Python extension's interpreter imports the models (the server is told so)
        assert f"models of blog are imported with {python}" in log, log
    else:
        # migration-lsp is installed nowhere code-server can see: only the .vsix brings it
        env = bare_path(res["extensionHostPath"], project)
        assert shutil.which("migration-lsp", path=env["PATH"]) is None
        for module in ("migration_lsp", "sqlalchemy"):
            probe = subprocess.run(["python3", "-c", f"import {module}"], env=env, cwd=tmp_path,
                                   capture_output=True, text=True, timeout=60)
            assert probe.returncode != 0 and f"No module named '{module}'" in probe.stderr, (module, probe)
        assert re.search(rf"server: migration-lsp {re.escape(__version__)} \(bundled\) on Python 3\.\d+", log), log
        assert "bundled/tool/server.py serve" in log and " -I " in log, log
        # the server runs on python3 from PATH, not the project's interpreter (untrusted: not even
        # when the Python extension selected it, or its bin directory is first on PATH)
        assert str(project / ".venv") not in log.split("starting", 1)[1].split("\n", 1)[0], log
        if untrusted:
            assert "models are imported with" not in log, log
        assert f"migration-lsp {__version__} (bundled)" in res["statusBar"]["tooltip"], res["statusBar"]

    # installed from the .vsix and activated by its own activation events
    assert res["extensionInstalled"] and res["extensionActive"], res
    # no error pop-ups from the server or the extension
    errors = [n for n in res["notifications"] if n.startswith("Error in server") or "Migration LSP" in n]
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

    # settings reach the running server (workspace/didChangeConfiguration, no restart): ignoring
    # "M" removes the model diagnostics, clearing it restores them
    assert res["modelCodesIgnored"] == [], res["modelCodesIgnored"]
    assert res["modelCodesRestored"], res
    # started at activation and by the restart only (environment: also after removing the
    # `ignore` it started with)
    assert len(re.findall(r"\[info\] starting ", log)) == 2, log
    assert "settings changed" in log, log
    # "Migration LSP: Restart server" brings every feature back
    assert any(PARENT_MESSAGE in h for h in res["hoverAfterRestart"]), res["hoverAfterRestart"]

    # status bar: two heads while the fixture had them, the new head at the end
    assert any("2 heads" in s for s in res["statusBar"]["hover"]), res["statusBar"]
    assert any(next_id[:12] in s for s in res["statusBar"]["end"]), res["statusBar"]
    if mode == "bundled":  # and the base branch: the merge and the next revision are this branch's own
        assert any(s.endswith("· main +2") for s in res["statusBar"]["end"]), res["statusBar"]
        assert "Base branch `origin/main`" in res["statusBar"]["tooltip"] or "Base branch origin/main" in \
            res["statusBar"]["tooltip"], res["statusBar"]
    if screenshot:
        assert screenshot.is_file() and screenshot.stat().st_size > 10_000


def test_vscode_without_a_server_says_how_to_fix_it(vsix: Path, tmp_path: Path):
    project = fixture_project(tmp_path)
    res = run_vscode(project, vsix, tmp_path / "result.json", "none")  # importStrategy fromEnvironment
    assert "error" not in res, res["error"]
    assert res["extensionActive"]
    (message,) = [n for n in res["notifications"] if "language server was not found" in n]
    assert "pip install migration-lsp" in message and "migrationLsp.server.command" in message
    assert "useBundled" in message
    assert any("server not found" in s for s in res["statusBar"]["end"]), res["statusBar"]


def test_vscode_without_python_says_so(vsix: Path, tmp_path: Path):
    """The bundled server needs a Python >= 3.10: on a machine without any, the extension says so."""
    project = fixture_project(tmp_path)
    res = run_vscode(project, vsix, tmp_path / "result.json", "nopython")  # PATH: an empty folder
    assert "error" not in res, res["error"]
    assert res["extensionActive"]
    assert all(shutil.which(name, path=res["extensionHostPath"]) is None for name in ("python3", "python"))
    (message,) = [n for n in res["notifications"] if "Python 3.10" in n]
    assert "no Python 3.10 or newer found" in message and "Python extension" in message, message
    assert any("Python 3.10+ not found" in s for s in res["statusBar"]["end"]), res["statusBar"]
    assert "no python3 on PATH" in res["outputLog"], res["outputLog"]


def test_vscode_stays_idle_without_alembic(vsix: Path, tmp_path: Path):
    """A Python project with a pyproject.toml but no Alembic environment of its own: it used to
    activate the extension on any pyproject.toml. Its .venv holds Alembic (a dependency's
    dependency), whose templates include a script.py.mako, which VS Code's activation event
    `workspaceContains:**/script.py.mako` matches: the extension activates, but runs no
    server, shows no status item and no notification."""
    project = tmp_path / "plain"
    (project / "pkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "plain"\nversion = "1.0"\n\n[tool.ruff]\nline-length = 100\n')
    (project / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    import alembic  # noqa: PLC0415  (the real package's templates, as pip installs them)

    site = project / ".venv" / "lib" / "python3.11" / "site-packages"
    shutil.copytree(Path(alembic.__file__).parent / "templates", site / "alembic" / "templates")
    assert list(site.glob("alembic/templates/*/script.py.mako"))
    # only these two events activate it: no pyproject.toml, no Python file
    manifest = json.loads((EXTENSION / "package.json").read_text())
    assert manifest["activationEvents"] == ["workspaceContains:**/alembic.ini", "workspaceContains:**/script.py.mako"]
    out = tmp_path / "result.json"
    cmd = ["node", str(DRIVER), "--workspace", str(project), "--file", str(project / "pkg" / "__init__.py"),
           "--out", str(out), "--vsix", str(vsix), "--server", "bundled", "--expect", "no-server"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=330, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-6000:]
    res = json.loads(out.read_text())
    # activated by the template in .venv (the premise), and nothing started
    assert res["extensionInstalled"] and res["extensionActive"], res
    log = res["outputLog"]
    assert "starting" not in log, log
    assert "the server starts when one appears" in log, log
    assert not [n for n in res["notifications"] if "Migration LSP" in n], res["notifications"]
    assert not any("Alembic" in s or "head" in s for s in res["statusBar"]["end"]), res["statusBar"]


def interpreter(dest: Path, module: str) -> Path:
    """A virtualenv outside every workspace folder with SQLAlchemy (this repository's copy,
    through a .pth file) and a module `module` that only it has."""
    subprocess.run([str(VENV_BIN / "python"), "-m", "venv", "--without-pip", str(dest)], check=True, timeout=60)
    (site,) = (dest / "lib").glob("python3*/site-packages")
    import sqlalchemy  # noqa: PLC0415  (the test's own interpreter is this repository's .venv)

    (site / "repo_sqlalchemy.pth").write_text(str(Path(sqlalchemy.__file__).parent.parent) + "\n")
    (site / f"{module}.py").write_text("MARK = 1\n")
    return dest / "bin" / "python"


def test_vscode_multi_root_imports_each_folders_models_with_its_interpreter(vsix: Path, tmp_path: Path):
    """A multi-root workspace of two Alembic projects whose models import a module only their
    own interpreter has (the one the Python extension selected for that folder): both folders'
    models load, each with its interpreter (one interpreter for the workspace cannot import both).
    Then another interpreter is selected for the second folder: its models are imported anew with
    it (and fail: M004), without restarting the server, whose own interpreter is the first folder's.
    Then the second folder is removed from the workspace: its diagnostics go, still no restart."""
    projects, pythons = [], {}
    for name in ("alpha", "beta"):
        project = fixture_project(tmp_path / name)
        models = project / "app" / "models.py"
        models.write_text(models.read_text() + f"\nimport {name}_only  # noqa: E402,F401  (only this folder's interpreter has it)\n")
        pythons[str(project)] = str(interpreter(tmp_path / f"{name}-env", f"{name}_only"))
        projects.append(project)
    workspace = tmp_path / "two.code-workspace"
    workspace.write_text(json.dumps({"folders": [{"path": str(p), "name": p.parent.name} for p in projects]}))
    out = tmp_path / "result.json"
    head = projects[0] / "migrations" / "versions" / f"{HEAD_B}_add_post_slug.py"
    cmd = ["node", str(DRIVER), "--workspace", str(workspace), "--file", str(head), "--out", str(out),
           "--vsix", str(vsix), "--server", "bundled", "--python-ext", json.dumps(pythons), "--expect", "multi-root",
           "--switch-python", pythons[str(projects[0])]]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=330, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"e2e driver failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    res = json.loads(out.read_text())
    assert "error" not in res, res["error"]
    assert res["extensionActive"] and res["folders"] == ["alpha", "beta"], res
    log = res["outputLog"]
    for project in projects:
        assert f"models of {project.parent.name} are imported with {pythons[str(project)]}" in log, log
    # the server runs on the first folder's interpreter (the bundled server, useBundled)
    assert f"starting {pythons[str(projects[0])]} -I " in log, log
    for name in ("alpha", "beta"):
        before = res["before"][name]
        assert any("app/models.py: M001" in line and "posts.published_at" in line for line in before), res["before"]
        assert not any(": M004 " in line for line in before), res["before"]
    # beta's models, now imported with alpha's interpreter, cannot find beta_only
    after = res["after"]["beta"]
    assert any(": M004 " in line and "beta_only" in line for line in after), res["after"]
    assert any("app/models.py: M001" in line for line in res["after"]["alpha"]), res["after"]
    assert "Python interpreter of beta changed" in log, log
    # beta removed from the workspace: the server was told (didChangeWorkspaceFolders) and cleared
    # beta's diagnostics; alpha's stand
    assert res["foldersAfterRemoval"] == ["alpha"] and res["afterRemoval"]["beta"] == [], res
    assert any("app/models.py: M001" in line for line in res["afterRemoval"]["alpha"]), res["afterRemoval"]
    # started once: neither the new interpreter nor the folder removal restarted the server
    assert len(re.findall(r"\[info\] starting ", log)) == 1, log
