"""The wheel and the sdist work where users install them: built once per session the way
`make dist` builds them (an sdist, then the wheel from the unpacked sdist, so the sdist
must hold everything the build needs), installed into a fresh virtualenv and with
`uv tool install`, then run from a temporary folder with no source tree on sys.path: the
demo's findings from `check`, and `serve` through initialize -> publishDiagnostics."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGE = ["pyproject.toml", "README.md", "migration_lsp"]
EXAMPLE = REPO_ROOT / "examples" / "blog"
TYPO = ("bd474000086b", "bd474000068b")  # the demo's typo'd down_revision (and docstring), fixed


def _clean_env(**extra: str) -> dict:
    """The environment without anything that would put this checkout on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def _run(cmd: list, cwd: Path, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", _clean_env())
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> dict[str, Path]:
    """{"sdist": ..., "wheel": ...}, built from a copy of this checkout's package files
    (uncommitted edits included) with the command `make dist` runs."""
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", *PACKAGE], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in listed:
        if (REPO_ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / rel, source / rel)
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source], cwd=source)
    assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = out.glob("migration_lsp-*.tar.gz")
    (wheel,) = out.glob("migration_lsp-*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="session")
def pip_venv(tmp_path_factory, dist) -> Path:
    """A fresh virtualenv with the wheel pip-installed in it: its bin folder."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent, check=True)
    # this venv's pip installs into the new one (no ensurepip: seconds saved)
    done = _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", dist["wheel"]],
                cwd=venv.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin"


@pytest.fixture(scope="session")
def uv_tool(tmp_path_factory, dist) -> Path:
    """`uv tool install <wheel>`, with the tool folders in the session's temp dir: the bin folder."""
    uv = Path(sys.executable).with_name("uv")
    base = tmp_path_factory.mktemp("uv")
    env = _clean_env(UV_TOOL_DIR=str(base / "tools"), UV_TOOL_BIN_DIR=str(base / "bin"),
                     UV_PYTHON_DOWNLOADS="never")
    done = _run([uv, "tool", "install", "--python", sys.executable, dist["wheel"]], cwd=base, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return base / "bin"


@pytest.fixture(params=["pip", "uv-tool"])
def installed(request) -> Path:
    """The bin folder holding an installed `migration-lsp` console script."""
    return request.getfixturevalue("pip_venv" if request.param == "pip" else "uv_tool")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A temporary current directory holding examples/blog."""
    shutil.copytree(EXAMPLE, tmp_path / "examples" / "blog", ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    return tmp_path


def test_the_sdist_and_the_wheel_hold_what_the_package_needs(dist) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_text = wheel.read(entry_points).decode()
    sources = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "migration_lsp").rglob("*.py")}
    assert sources <= names  # model_child.py too: the server runs it as a file
    assert "migration_lsp/model_child.py" in names
    assert "migration-lsp = migration_lsp.cli:run" in entry_text
    assert "[pytest11]" in entry_text and "migration_lsp = migration_lsp.pytest_plugin" in entry_text
    assert not any(n.startswith(("tests/", "examples/", "editors/")) for n in names)
    with tarfile.open(dist["sdist"]) as sdist:
        members = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "migration_lsp/model_child.py"} <= members


def test_installed_check_reports_the_demo_from_a_foreign_cwd(installed: Path, workdir: Path) -> None:
    where = _run([installed / "migration-lsp", "--version"], cwd=workdir)
    assert where.returncode == 0 and where.stdout.startswith("migration-lsp ")
    python = installed.parent / "bin" / "python"
    if python.exists():  # the pip venv: the package imported is the installed one
        origin = _run([python, "-c", "import migration_lsp; print(migration_lsp.__file__)"], cwd=workdir)
        assert "site-packages" in origin.stdout and str(REPO_ROOT) not in origin.stdout

    result = _run([installed / "migration-lsp", "check", "examples/blog", "--format", "json"], cwd=workdir)
    assert result.returncode == 1, result.stderr
    found = sorted((d["code"], Path(d["path"]).name) for d in json.loads(result.stdout)["diagnostics"]
                   if d["severity"] == "error")
    assert found == [("G001", "2d91aa861ea7_add_user_bio.py"), ("G001", "4327c6748b81_add_post_slug.py"),
                     ("G002", "4327c6748b81_add_post_slug.py")]

    if not python.exists():
        return  # the models run below is the same code in the uv tool's environment
    # the typo fixed: the models are loaded (model_child.py from the installed package) and
    # the demo's model drift appears
    script = next((workdir / "examples/blog/migrations/versions").glob("4327c6748b81_*.py"))
    script.write_text(script.read_text().replace(*TYPO))
    fixed = _run([installed / "migration-lsp", "check", "examples/blog"], cwd=workdir)
    assert "examples/blog/app/models.py:59:5: M001 column posts.published_at" in fixed.stdout, fixed.stdout


class _Client:
    """A minimal LSP client over stdio: Content-Length frames, requests answered with null
    (or one null per workspace/configuration item), notifications collected."""

    def __init__(self, command: list, cwd: Path) -> None:
        self.proc = subprocess.Popen([str(c) for c in command], cwd=cwd, env=_clean_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.messages: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    self.messages.put(None)
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            self.messages.put(json.loads(out.read(length)))

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.proc.stdin.flush()

    def request(self, method: str, params) -> int:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.next_id

    def wait(self, predicate, limit: int = 500) -> dict:
        """The first message matching predicate; answers the server's requests meanwhile."""
        for _ in range(limit):
            message = self.messages.get(timeout=60)
            assert message is not None, "the server exited: " + self.proc.stderr.read().decode()[-2000:]
            if "method" in message and "id" in message:  # a request from the server
                items = (message.get("params") or {}).get("items")
                self.send({"id": message["id"], "result": [None] * len(items) if items is not None else None})
            if predicate(message):
                return message
        raise AssertionError("no such message")

    def close(self) -> int:
        shutdown = self.request("shutdown", None)
        self.wait(lambda msg: msg.get("id") == shutdown and "result" in msg)
        self.send({"method": "exit"})
        return self.proc.wait(timeout=30)


def test_installed_server_publishes_the_demo_diagnostics(installed: Path, workdir: Path) -> None:
    project = workdir / "examples" / "blog"
    client = _Client([installed / "migration-lsp", "serve"], cwd=workdir)
    try:
        init = client.request("initialize", {
            "processId": os.getpid(), "rootUri": project.as_uri(), "capabilities": {},
            "workspaceFolders": [{"uri": project.as_uri(), "name": "blog"}],
            "initializationOptions": {"trusted": False}})
        reply = client.wait(lambda msg: msg.get("id") == init)
        assert reply["result"]["serverInfo"]["name"] == "migration-lsp"
        client.send({"method": "initialized", "params": {}})
        published: dict[str, list] = {}

        def all_three(message: dict) -> bool:
            if message.get("method") == "textDocument/publishDiagnostics":
                params = message["params"]
                published[params["uri"].rsplit("/", 1)[1]] = sorted(d["code"] for d in params["diagnostics"])
            return (published.get("2d91aa861ea7_add_user_bio.py") == ["G001"]
                    and published.get("4327c6748b81_add_post_slug.py") == ["G001", "G002"])

        client.wait(all_three)
        assert client.close() == 0
    finally:
        if client.proc.poll() is None:
            client.proc.kill()
            client.proc.wait()


PYTEST_ALEMBIC_ENV_PY = """\
from alembic import context
from sqlalchemy import Engine, engine_from_config, pool

target_metadata = None


def run(connection):
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


connectable = context.config.attributes.get("connection") or engine_from_config(
    context.config.get_section(context.config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool)
if isinstance(connectable, Engine):
    with connectable.connect() as connection:
        run(connection)
else:
    run(connectable)
"""


def test_the_pytest_plugin_next_to_pytest_alembic(pip_venv: Path, workdir: Path) -> None:
    """Both plugins load in one session and both add their items; on the demo with its typo
    fixed (Alembic cannot load a broken graph at all), so with its two heads only, they
    agree: pytest-alembic's single-head test fails, and so does our graph item.
    pytest-alembic 0.13.1 cannot collect under pytest 9.2 (it sets a node attribute that
    pytest 9.2 removed), hence pytest<9.2 in this virtualenv."""
    done = _run([sys.executable, "-m", "pip", "--python", pip_venv / "python", "install", "-q", "pytest<9.2",
                 "pytest-alembic"], cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    project = workdir / "examples" / "blog"
    (project / "migrations" / "env.py").write_text(PYTEST_ALEMBIC_ENV_PY)
    (project / "tests").mkdir()
    (project / "tests" / "conftest.py").write_text("")  # where pytest-alembic binds its tests
    (project / "tests" / "test_app.py").write_text("def test_app():\n    pass\n")
    script = next((project / "migrations" / "versions").glob("4327c6748b81_*.py"))
    script.write_text(script.read_text().replace(*TYPO))
    result = _run([pip_venv / "python", "-m", "pytest", "-rA", "-p", "no:cacheprovider", "--test-alembic",
                   "--migration-lsp"], cwd=project)
    output = result.stdout + result.stderr
    assert "plugins: " in output and "alembic-" in output and "migration-lsp-" in output, output
    assert "FAILED tests/conftest.py::pytest-alembic::test_single_head_revision" in output, output
    assert "FAILED alembic.ini::migration-lsp::graph[migrations]" in output, output
    assert "PASSED alembic.ini::migration-lsp::safety[migrations]" in output, output
    assert "PASSED tests/test_app.py::test_app" in output, output

    next((project / "migrations" / "versions").glob("2d91aa861ea7_*.py")).unlink()  # the teammate's head
    result = _run([pip_venv / "python", "-m", "pytest", "-rA", "-p", "no:cacheprovider", "--test-alembic",
                   "--migration-lsp"], cwd=project)
    output = result.stdout + result.stderr
    assert "PASSED tests/conftest.py::pytest-alembic::test_single_head_revision" in output, output
    assert "PASSED tests/conftest.py::pytest-alembic::test_upgrade" in output, output
    assert "PASSED alembic.ini::migration-lsp::graph[migrations]" in output, output
