"""Trust fails closed: only `initializationOptions.trusted` being the JSON boolean `true`
lets the server run project code. Every other shape a client (or an attacker's editor
config) may send — nothing, null, "true", 1, a nested object — is untrusted, and the
reason is logged once. Against the real server over stdio, with models that write a
sentinel file when imported."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types as t
from pytest_lsp import client_capabilities, make_test_lsp_client

from lsp_helpers import SERVER_COMMAND
from migration_lsp.server import trust_of
from test_protocol_faults import _sentinel_project, sentinels

class _Missing:
    """No "trusted" key at all; its repr is the test id, the same in every xdist worker."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
NOT_TRUE = [_MISSING, None, "true", "True", 1, 1.0, [True], {"value": True}, {"trusted": True}, False, 0, "false"]


@pytest.mark.parametrize("value", NOT_TRUE, ids=repr)
def test_only_json_true_is_trusted(value):
    options = {} if value is _MISSING else {"trusted": value}
    trusted, why = trust_of(options)
    assert trusted is False
    assert "not trusted" in why
    assert trust_of({"trusted": True}) == (True, "")
    # options that are not an object at all, or trust nested where it does not belong
    for options in (None, "trusted", [{"trusted": True}], {"settings": {"trusted": True}},
                    {"migrationLsp": {"trusted": True}}):
        assert trust_of(options)[0] is False


async def _session(project: Path, options) -> tuple[list[str], list[t.Diagnostic]]:
    """(log messages, diagnostics of env.py) once the schema pass has answered."""
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND)
    try:
        params = t.InitializeParams(capabilities=client_capabilities("visual-studio-code"), root_uri=project.as_uri())
        if options is not _MISSING:
            params.initialization_options = options
        await client.initialize_session(params)
        env_py = (project / "migrations" / "env.py").as_uri()
        models = (project / "app" / "models.py").as_uri()
        for _ in range(600):
            found = [*client.diagnostics.get(env_py, []), *client.diagnostics.get(models, [])]
            if any(d.code in ("M001", "M002", "M003", "M004") for d in found):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        return [m.message for m in client.log_messages], list(client.diagnostics.get(env_py, []))
    finally:
        await client.shutdown_session()
        await client.stop()


@pytest.mark.parametrize("options", [_MISSING, None, {"trusted": None}, {"trusted": "true"}, {"trusted": 1},
                                     {"settings": {"trusted": True}}], ids=repr)
async def test_server_without_json_true_runs_no_project_code(tmp_path: Path, options):
    project = _sentinel_project(tmp_path)
    logs, env_diagnostics = await _session(project, options)
    assert sentinels(project) == []
    assert any(d.code == "M004" and "not trusted" in d.message for d in env_diagnostics)
    assert sum("not trusted" in m for m in logs) == 1  # said once, with the reason


async def test_server_with_json_true_loads_the_models(tmp_path: Path):
    project = _sentinel_project(tmp_path)
    logs, _ = await _session(project, {"trusted": True})
    # as Alembic's autogenerate: env.py runs (stopped at context.configure, in the sandboxed child) and
    # the revision modules are imported (their module-level code runs); no upgrade() runs, no database
    assert sentinels(project) == ["SENTINEL_env", "SENTINEL_migration", "SENTINEL_models"]
    assert not any("not trusted" in m for m in logs)
