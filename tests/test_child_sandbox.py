"""The sandboxed child that imports the project's models (child.py): what it prints costs
the parent nothing, a grandchild neither outlives the load nor holds it up, no child
outlives the server, and a trusted load writes no `__pycache__` into the workspace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types as t
from pytest_lsp import client_capabilities, make_test_lsp_client

from conftest import migration_text
from lsp_helpers import SERVER_COMMAND
from migration_lsp.engine import Engine
from migration_lsp.models import load_models, metadata_source
from test_filesystem import MODELS_OK as MODELS  # one users table



def models_project(root: Path, prelude: str) -> Path:
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    (versions / "aaaa_x.py").write_text(migration_text("aaaa", None))
    (root / "migrations" / "env.py").write_text("from app.models import Base\ntarget_metadata = Base.metadata\n")
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "helpers.py").write_text("VALUE = 1\n")
    (root / "app" / "models.py").write_text(prelude + "\nfrom app import helpers\n" + MODELS)
    return root


def load(root: Path, timeout: float = 30.0):
    env = Engine([root], cache=False).snapshot().environments[0].env
    return load_models(env, metadata_source(env), timeout=timeout)


def gone(pid: int, within: float = 10.0) -> bool:
    """The process ended (a zombie has ended too) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_gigabytes_of_output_stay_out_of_the_parents_memory(tmp_path: Path):
    """200 MB on stdout and 200 MB on stderr while importing: the parent's peak memory
    grows by far less than that (it used to keep all of it, three times over)."""
    root = models_project(tmp_path, "import os\nchunk = b'x' * 1_000_000 + b'\\n'\n"
                                    "for _ in range(200):\n    os.write(1, chunk)\n    os.write(2, chunk)\n")
    script = (
        "import json, resource, sys\nfrom pathlib import Path\n"
        "from migration_lsp.engine import Engine\nfrom migration_lsp.models import load_models, metadata_source\n"
        f"env = Engine([Path({str(root)!r})], cache=False).snapshot().environments[0].env\n"
        "source = metadata_source(env)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "result = load_models(env, source, timeout=120)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'grown_kb': after - before, 'tables': sorted(result.tables), 'error': result.error}))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout.splitlines()[-1])
    assert measured["error"] is None and measured["tables"] == ["users"]
    assert measured["grown_kb"] < 50 * 1024, measured  # 400 MB were printed


def test_a_grandchild_holding_the_output_neither_delays_the_load_nor_survives_it(tmp_path: Path):
    pid_file = tmp_path / "grandchild.pid"
    root = models_project(tmp_path, (
        "import subprocess\n"
        "p = subprocess.Popen(['sleep', '60'])  # inherits stdout and stderr\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"))
    result = load(root, timeout=15)
    assert result.error is None and list(result.tables) == ["users"]  # not a false timeout
    assert gone(int(pid_file.read_text()))  # the whole process group was killed


def test_a_timed_out_load_kills_the_whole_group(tmp_path: Path):
    pid_file = tmp_path / "pids"
    root = models_project(tmp_path, (
        "import os, subprocess, time\n"
        "p = subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}')\n"
        "time.sleep(60)\n"))
    result = load(root, timeout=3)
    assert result.error and "longer than 3 s" in result.error
    assert all(gone(int(pid)) for pid in pid_file.read_text().split())


def test_a_trusted_load_writes_no_bytecode_into_the_workspace(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    root = models_project(tmp_path, "")
    result = load(root)
    assert result.error is None and list(result.tables) == ["users"]
    assert list(root.rglob("__pycache__")) == [] and list(root.rglob("*.pyc")) == []


@pytest.mark.parametrize("how", ["exit", "SIGKILL"])
async def test_no_loader_outlives_the_server(tmp_path: Path, how: str):
    """The server ends in the middle of a load: by the protocol's exit (os._exit, after
    killing its children), or killed outright (the child's parent-death signal)."""
    pid_file = tmp_path / "child.pid"
    root = models_project(tmp_path, f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                    "time.sleep(60)\n")
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND)
    await client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities("neovim@v0.11.0"), root_uri=root.as_uri(),
        initialization_options={"trusted": True}))
    for _ in range(600):
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.05)
    child = int(pid_file.read_text())
    assert not gone(child, within=0)  # loading
    if how == "exit":
        client.protocol.notify(t.EXIT, None)
    else:
        os.kill(client._server.pid, signal.SIGKILL)
    await asyncio.wait_for(client._server.wait(), 30)
    await client.stop()
    assert gone(child)
