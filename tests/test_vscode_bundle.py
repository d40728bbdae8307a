"""The server the VS Code extension bundles (editors/vscode/bundled): built from this repository's
source by editors/vscode/scripts/bundle_server.py, pure Python, started by the launcher
bundled/tool/server.py with `python -I` under the oldest and newest Python >= 3.10 found here, from a
folder that holds look-alike modules (they must not be imported). The real-VS-Code side is
tests/test_vscode_e2e.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from migration_lsp import __version__

# parallel runs (make test): never at the same time as test_vscode_e2e (tests/conftest.py); both
# build bundled/libs into the checkout
pytestmark = pytest.mark.xdist_group("vscode")

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "editors" / "vscode"
LIBS = EXTENSION / "bundled" / "libs"
LAUNCHER = EXTENSION / "bundled" / "tool" / "server.py"


def pythons() -> list[str]:
    """The oldest and the newest Python >= 3.10 found here (at least this one)."""
    found: dict[str, str] = {}
    candidates = [sys.executable] + [shutil.which(f"python3.{m}") for m in range(10, 16)]
    candidates += sorted(str(p) for p in Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob("versions/3.*/bin/python3"))
    for exe in filter(None, candidates):
        proc = subprocess.run([exe, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60)
        version = proc.stdout.strip()
        if proc.returncode == 0 and tuple(map(int, version.split("."))) >= (3, 10):
            found.setdefault(version, exe)
    ordered = [found[v] for v in sorted(found, key=lambda v: tuple(map(int, v.split("."))))]
    return list(dict.fromkeys([ordered[0], ordered[-1]]))  # the oldest and the newest


@pytest.fixture(scope="module")
def bundle() -> Path:
    """Built (or found up to date) by the same script `npm run package` runs."""
    subprocess.run([sys.executable, str(EXTENSION / "scripts" / "bundle_server.py")], check=True, timeout=600,
                   stdin=subprocess.DEVNULL)
    return LIBS


def test_bundle_is_this_repository_pure_python(bundle: Path):
    info = json.loads((bundle / ".bundle.json").read_text())
    assert info["migrationLsp"] == __version__
    # the bundled package is this repository's source, file for file
    for src in (ROOT / "migration_lsp").rglob("*.py"):
        copy = bundle / "migration_lsp" / src.relative_to(ROOT / "migration_lsp")
        assert copy.read_bytes() == src.read_bytes(), src
    assert {"pygls", "lsprotocol", "cattrs", "attrs", "sqlalchemy", "alembic", "mako", "markupsafe",
            "typing-extensions", "tomli"} <= set(info["packages"]), info["packages"]
    assert info["packages"]["sqlalchemy"].startswith("2.0."), "SQLAlchemy 2.1 needs Python 3.11"
    assert "greenlet" not in info["packages"] and not (bundle / "greenlet").exists()
    compiled = [p for pattern in ("*.so", "*.pyd", "*.dylib") for p in bundle.rglob(pattern)]
    assert compiled == []


@pytest.mark.parametrize("python", pythons())
def test_bundled_server_runs_isolated(python: str, bundle: Path, tmp_path: Path):
    # a working directory full of look-alikes, as a workspace could be: none may be imported
    sentinel = tmp_path / "imported.txt"
    code = f"open({str(sentinel)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("argparse", "sqlalchemy", "pygls", "json"):
        (tmp_path / f"{name}.py").write_text(code)
    (tmp_path / "migration_lsp").mkdir()
    (tmp_path / "migration_lsp" / "__init__.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # ignored under -I

    version = subprocess.run([python, "-I", str(LAUNCHER), "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == f"migration-lsp {__version__}", version

    # the whole pipeline on examples/blog: its down_revision typo (G002) and the second head it leaves
    project = tmp_path / "blog"
    shutil.copytree(ROOT / "examples" / "blog", project, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    check = subprocess.run([python, "-I", str(LAUNCHER), "check", "--no-import", "--no-cache", "--format", "json", str(project)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert check.returncode == 1, check.stderr
    codes = {d["code"] for d in json.loads(check.stdout)["diagnostics"]}
    assert "G002" in codes, codes
    assert not sentinel.exists(), sentinel.read_text()

    # and what it imported is the bundle, without compiled extensions
    where = subprocess.run(
        [python, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import migration_lsp.server, sqlalchemy, markupsafe;"
         "from sqlalchemy.util import has_compiled_ext; print(migration_lsp.__file__, sqlalchemy.__file__,"
         " has_compiled_ext(), markupsafe.escape.__module__)", str(bundle)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    mlsp, sa, compiled, escape = where.stdout.split()
    assert Path(mlsp).is_relative_to(bundle) and Path(sa).is_relative_to(bundle), where.stdout
    assert compiled == "False" and not re.search("speedups", escape), where.stdout
