"""Build bundled/libs: migration-lsp from this repository's own source plus its pure-Python
dependencies, for any CPython >= 3.10 on any platform (the Python-tools extension template's
`bundled/libs` approach). The extension starts it with `python -I bundled/tool/server.py`.

Why this way:
- one bundle for every interpreter >= 3.10: requirements are resolved for Python 3.10 (so
  tomli and exceptiongroup are in; SQLAlchemy is the newest 2.0.x, 2.1 needs 3.11);
- pure wheels only (`--platform any`); a package without one (MarkupSafe) comes from the
  host's wheel with its compiled modules removed: it, like SQLAlchemy, falls back to Python;
- greenlet is left out: SQLAlchemy needs it only for asyncio, which the server never uses;
- cached: nothing is rebuilt while the sources (pyproject.toml, migration_lsp/**) and this
  script are unchanged (their hash is in bundled/libs/.bundle.json).

usage: python bundle_server.py [--force]     (run from anywhere; uses this interpreter's pip)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXTENSION = HERE.parent
REPO = EXTENSION.parent.parent
LIBS = EXTENSION / "bundled" / "libs"
INFO = LIBS / ".bundle.json"
TARGET_PYTHON = "3.10"
EXCLUDE = {"greenlet"}  # SQLAlchemy's asyncio support only
MARKER_ENV = {"python_version": TARGET_PYTHON, "python_full_version": TARGET_PYTHON + ".0",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def source_hash() -> str:
    h = hashlib.sha256()
    files = [REPO / "pyproject.toml", Path(__file__).resolve()]
    files += sorted(p for p in (REPO / "migration_lsp").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def pip(*args: str, quiet_failure: bool = False) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
           "--no-warn-script-location", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode:
        if not quiet_failure:
            sys.stderr.write(proc.stdout + proc.stderr)
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(target: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, Requires-Dist lines) for every distribution in `target`."""
    out = {}
    for meta in target.glob("*.dist-info/METADATA"):
        text = meta.read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
        fields = [line.split(": ", 1) for line in text.splitlines() if ": " in line]
        name = next(v for k, v in fields if k == "Name")
        version = next(v for k, v in fields if k == "Version")
        out[norm(name)] = (version, [v for k, v in fields if k == "Requires-Dist"])
    return out


def wanted(requirement: str) -> tuple[str, str] | None:
    """A Requires-Dist line -> (name, specifier) to install for Python 3.10, or None."""
    from pip._vendor.packaging.requirements import Requirement  # pip's own copy: always there

    req = Requirement(requirement)
    if norm(req.name) in EXCLUDE or (req.marker is not None and not req.marker.evaluate(MARKER_ENV)):
        return None
    return norm(req.name), str(req.specifier)


def build(target: Path) -> dict[str, str]:
    pip("--target", str(target), "--no-deps", str(REPO))  # this repository, as it is now
    tried: set[str] = set()
    while True:
        have = installed(target)
        missing: dict[str, list[str]] = {}
        for _, requires in have.values():
            for name, spec in filter(None, map(wanted, requires)):
                if name not in have:
                    missing.setdefault(name, []).append(spec)
        if not missing:
            break
        if set(missing) <= tried:
            raise SystemExit(f"bundle_server: could not install {sorted(missing)}")
        tried |= set(missing)
        for name, specs in sorted(missing.items()):
            requirement = name + ",".join(s for s in specs if s)
            try:
                pip("--target", str(target), "--no-deps", "--only-binary=:all:", "--platform", "any",
                    "--python-version", TARGET_PYTHON, "--implementation", "py", requirement, quiet_failure=True)
            except subprocess.CalledProcessError:  # no pure wheel: the host's, compiled modules removed below
                print(f"bundle_server: {requirement} has no pure wheel: the host's, without its compiled modules")
                pip("--target", str(target), "--no-deps", "--only-binary=:all:", requirement)
    for pattern in ("*.so", "*.pyd", "*.dylib"):
        for f in target.rglob(pattern):
            f.unlink()
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts with this machine's shebang
    for url in target.glob("*.dist-info/direct_url.json"):  # the build machine's checkout path
        url.unlink()
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    return {name: version for name, (version, _) in sorted(installed(target).items())}


def check(target: Path) -> None:
    """The bundle imports the whole server in isolated mode, without compiled extensions."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import migration_lsp.server, sqlalchemy, alembic, mako.template;"
            "from sqlalchemy.util import has_compiled_ext; assert not has_compiled_ext(), 'compiled SQLAlchemy'")
    subprocess.run([sys.executable, "-I", "-B", "-c", code, str(target)], check=True, stdin=subprocess.DEVNULL)


def main() -> int:
    digest = source_hash()
    if "--force" not in sys.argv and INFO.is_file():
        try:
            if json.loads(INFO.read_text())["sourceHash"] == digest:
                return 0
        except (ValueError, KeyError):
            pass
    LIBS.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=LIBS.parent, prefix=".libs-") as tmp:
        target = Path(tmp) / "libs"
        versions = build(target)
        check(target)
        info = {"migrationLsp": versions.get("migration-lsp"), "packages": versions, "sourceHash": digest,
                "pythonRequires": ">=" + TARGET_PYTHON}
        (target / ".bundle.json").write_text(json.dumps(info, indent=2) + "\n")
        if LIBS.exists():
            shutil.rmtree(LIBS)
        os.replace(target, LIBS)
    print(f"bundle_server: {LIBS.relative_to(REPO)}: migration-lsp {info['migrationLsp']} with "
          + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "migration-lsp"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
