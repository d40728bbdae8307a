"""The server side of the VS Code extension's settings in a multi-root workspace: the real
server (stdio) asks `workspace/configuration` once per workspace folder (scopeUri), as the
extension answers it with that folder's own settings and the interpreter the Python extension
selected for that folder; each folder's models are imported with its own interpreter.

Fixture: two copies of examples/blog (two heads), `alpha` and `beta`, in one session. Globally the models
are imported with this repository's interpreter (it has SQLAlchemy); `beta`'s own answer names
an interpreter that does not exist and ignores the G codes. One interpreter for the whole
workspace (the server before this test) would load beta's models and report its G findings.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from lsprotocol import types as t
from pytest_lsp import client_capabilities, make_test_lsp_client

from lsp_helpers import SERVER_COMMAND, TYPO_REV, copy_example, file_of

PARENT = "bd474000068b"


def fixture_project(dest: Path) -> Path:
    """examples/blog with the down_revision typo fixed: two heads (G001), models ahead (M001)."""
    project = copy_example(dest)
    head = file_of(project, TYPO_REV)
    head.write_text(head.read_text().replace("bd474000086b", PARENT))
    return project


async def wait_for(predicate, timeout: float) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_each_workspace_folder_gets_its_own_settings_and_interpreter(tmp_path: Path):
    alpha, beta = (fixture_project(tmp_path / name) for name in ("alpha", "beta"))
    missing_python = tmp_path / "beta-env" / "bin" / "python"  # never created
    folders = [t.WorkspaceFolder(uri=p.as_uri(), name=p.parent.name) for p in (alpha, beta)]
    workspace = {"python": sys.executable, "verify": "off"}  # (no scratch-database pass: not what this tests)
    client = make_test_lsp_client()
    client.set_configuration(workspace, section="migrationLsp")
    client.set_configuration({**workspace, "ignore": ["G"], "python": str(missing_python)},
                             section="migrationLsp", scope_uri=beta.as_uri())
    await client.start_io(*SERVER_COMMAND)
    try:
        await client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"), workspace_folders=folders,
            initialization_options={"trusted": True, "settings": workspace}))

        def codes(project: Path) -> set[str]:
            return {str(d.code) for uri, ds in client.diagnostics.items() if uri.startswith(project.as_uri() + "/")
                    for d in ds}

        def cannot_start() -> list[str]:
            return [m.message for m in client.log_messages if "cannot start" in m.message]

        # alpha: its graph findings, and its models imported with the workspace's interpreter
        await wait_for(lambda: "M001" in codes(alpha) and cannot_start(), timeout=90)
        assert {"G001"} <= codes(alpha), codes(alpha)
        # beta: its own interpreter was used (and does not exist), its own ignore applies
        (message,) = cannot_start()
        assert str(missing_python) in message, message
        assert not any(c.startswith("G") for c in codes(beta)), codes(beta)
        assert "M001" not in codes(beta) and "M004" in codes(beta), codes(beta)

        # beta's interpreter changes (as when another one is selected for that folder): the
        # extension pushes the settings, the server asks each folder again and reloads beta's models
        client.set_configuration({**workspace, "ignore": ["G"]}, section="migrationLsp", scope_uri=beta.as_uri())
        client.workspace_did_change_configuration(t.DidChangeConfigurationParams(settings={"migrationLsp": workspace}))
        await wait_for(lambda: "M001" in codes(beta), timeout=90)
        assert not any(c.startswith("G") for c in codes(beta)), codes(beta)
        assert {"G001"} <= codes(alpha)
    finally:
        await client.shutdown_session()
        await client.stop()
