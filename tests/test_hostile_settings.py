"""The newest settings, from an attacker's workspace: `[tool.migration-lsp]` (and the editor's
settings) naming `initial-metadata = "evil:thing"`, `models`, an interpreter of the workspace's
(`python`, and a planted `.venv/bin/python`), a `dialect` and an alembic.ini URL naming an
entry point a package of the venv registers, plus a hostile `script.py.mako` and env.py.
Untrusted, neither the real server (hover, code actions listed and resolved, the graph) nor
`check --no-import` runs any of it: every piece writes a marker file when it runs, and none
appears. The trusted CLI on the same workspace is the control: the same markers do appear
(the setting is imported, the interpreter runs), so the markers prove what they claim.
(test_protocol_faults and test_template_sandbox attack env.py, the models and the template
with the default settings; this adds the settings that name code.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from lsprotocol import types as t
from pytest_lsp import client_capabilities, make_test_lsp_client

from lsp_helpers import SERVER_COMMAND, TYPO_REV, file_of
from test_protocol_faults import _sentinel_project, sentinels, tree_state
from test_template_sandbox import sentinel_template

REAL_PYTHON = sys.executable


def marker_code(project: Path, name: str) -> str:
    return f"import pathlib\npathlib.Path({str(project / name)!r}).write_text('ran')\n"


def hostile_workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The example project armed (env.py, models, a migration, the template: the existing
    sentinels), plus the settings that name code; and the environment of a venv where the
    project's package registered a `sqlalchemy.dialects` entry point `evil`."""
    project = _sentinel_project(tmp_path)
    template_sentinel = sentinel_template(project)
    (project / "evil.py").write_text(marker_code(project, "SENTINEL_initial_metadata") + (
        "from sqlalchemy import Column, Integer, MetaData, Table\n"
        "thing = MetaData()\nTable('legacy', thing, Column('id', Integer, primary_key=True))\n"))
    (project / "evil_models.py").write_text(marker_code(project, "SENTINEL_models_setting") + (
        "from sqlalchemy import MetaData\nmetadata = MetaData()\n"))
    for path, name in ((project / "evilpy", "SENTINEL_python"), (project / ".venv" / "bin" / "python", "SENTINEL_venv")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\necho ran > {str(project / name)!r}\nexec {REAL_PYTHON!r} \"$@\"\n")
        path.chmod(0o755)
    (project / "pyproject.toml").write_text(
        "[tool.migration-lsp]\n"
        'initial-metadata = "evil:thing"\n'
        'models = "evil_models:metadata"\n'
        'python = "./evilpy"\n'
        'dialect = "evil"\n')
    ini = project / "alembic.ini"
    ini.write_text(ini.read_text().replace("sqlalchemy.url = sqlite:///blog.db", "sqlalchemy.url = evil://x/y"))
    # a history Alembic can load (two heads, no typo): trusted, the truth pass would run on it
    typo = file_of(project, TYPO_REV)
    typo.write_text(typo.read_text().replace("bd474000086b", "bd474000068b"))
    # the venv's site-packages, where `pip install -e .` of the project put an entry point
    site = tmp_path / "site"
    info = site / "evil_dialect-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-dialect\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sqlalchemy.dialects]\nevil = evil_dialect:Dialect\n")
    (site / "evil_dialect.py").write_text(marker_code(project, "SENTINEL_dialect") + (
        "from sqlalchemy.engine.default import DefaultDialect as Dialect\n"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    assert not template_sentinel.exists()
    return project, env


ARMED = ["SENTINEL_dialect", "SENTINEL_env", "SENTINEL_initial_metadata", "SENTINEL_migration",
         "SENTINEL_models", "SENTINEL_models_setting", "SENTINEL_python", "SENTINEL_venv"]


async def untrusted_session(project: Path, env: dict[str, str]) -> list[str]:
    """Every request an editor makes over the workspace; the server's log messages."""
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND, env=env)
    settings = {"initialMetadata": "evil:thing", "models": "evil_models:metadata", "python": "./evilpy",
                "dialect": "evil"}  # (an attacker's .vscode/settings.json, too)
    try:
        await client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"), root_uri=project.as_uri(),
            initialization_options={"trusted": False, "settings": settings}))
        typo = file_of(project, TYPO_REV)
        client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
            uri=typo.as_uri(), language_id="python", version=1, text=typo.read_text())))
        env_py = (project / "migrations" / "env.py").as_uri()
        for _ in range(400):  # the graph pass, then the schema pass
            if any(d.code == "G001" for d in client.diagnostics.get(typo.as_uri(), [])) and \
                    any(d.code == "M004" for d in client.diagnostics.get(env_py, [])):
                break
            await asyncio.sleep(0.05)
        assert any(d.code == "G001" for d in client.diagnostics[typo.as_uri()])
        assert any(d.code == "M004" and "not trusted" in d.message for d in client.diagnostics[env_py])
        doc = t.TextDocumentIdentifier(uri=typo.as_uri())
        resolved = 0
        for line in range(len(typo.read_text().splitlines())):
            diagnostics = [d for d in client.diagnostics.get(typo.as_uri(), []) if d.range.start.line == line]
            actions = await client.text_document_code_action_async(t.CodeActionParams(
                text_document=doc, range=t.Range(t.Position(line, 0), t.Position(line, 0)),
                context=t.CodeActionContext(diagnostics=diagnostics)))
            for action in actions or []:
                if isinstance(action, t.CodeAction) and action.data is not None:
                    await client.code_action_resolve_async(action)  # (renders a new revision: the template)
                    resolved += 1
            await client.text_document_hover_async(t.HoverParams(text_document=doc, position=t.Position(line, 20)))
        assert resolved >= 2  # merge heads, create next revision...
        await client.workspace_execute_command_async(t.ExecuteCommandParams(command="migrationLsp.showGraph"))
        await asyncio.sleep(1.0)
        return [m.message for m in client.log_messages]
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_untrusted_settings_that_name_code_run_none_of_it(tmp_path: Path):
    project, env = hostile_workspace(tmp_path)
    template_sentinel = project.parent / "SENTINEL_template"
    before = tree_state(project)
    await untrusted_session(project, env)
    out = subprocess.run([REAL_PYTHON, "-m", "migration_lsp", "check", "--no-import", "--format", "json"],
                         cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert sentinels(project) == [] and not template_sentinel.exists(), f"ran: {sentinels(project)}"
    assert out.returncode in (0, 1), out.stderr
    codes = {d["code"] for d in json.loads(out.stdout)["diagnostics"]}
    assert {"G001", "M004"} <= codes
    assert tree_state(project) == before  # nothing written into the workspace

    # the control: the entry point is real (SQLAlchemy's registry would import it by that name)...
    subprocess.run([REAL_PYTHON, "-c", "from sqlalchemy.dialects import registry; registry.load('evil')"],
                   env=env, check=True, timeout=60)
    assert sentinels(project) == ["SENTINEL_dialect"]
    # ... and trusted, the CLI runs the interpreter the settings name and imports the
    # initial metadata, the models setting and the project's env.py (the truth pass too)
    ini = project / "alembic.ini"
    ini.write_text(ini.read_text().replace("evil://x/y", "sqlite:///blog.db"))  # (a URL the scratch database can take)
    (project / "SENTINEL_dialect").unlink()
    subprocess.run([REAL_PYTHON, "-m", "migration_lsp", "check", "--format", "json"],
                   cwd=project, env=env, capture_output=True, text=True, timeout=300)
    ran = sentinels(project)
    assert {"SENTINEL_initial_metadata", "SENTINEL_python", "SENTINEL_env"} <= set(ran), ran
    assert "SENTINEL_dialect" not in ran  # (trusted or not, a dialect name never reaches the entry points)
    assert set(ran) <= set(ARMED)
