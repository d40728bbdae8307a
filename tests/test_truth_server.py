"""The truth pass in the real language server (stdio, pytest-lsp): static findings first,
the pass after the models load and after each save, its findings in place of the static M
ones; `verify: "off"` and untrusted workspaces run nothing; the embedded PostgreSQL goes
with the server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest
from lsprotocol import types as t
from pytest_lsp import client_capabilities, make_test_lsp_client

from conftest import MINIMAL_INI, migration_text
from lsp_helpers import SERVER_COMMAND, wait_for
from test_models import ENV_PY, make_project
from test_truth import PARITY_MODELS, PARITY_REVISIONS


async def start(project: Path, trusted: bool = True, settings: dict | None = None):
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND)
    await client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=project.as_uri(),
        initialization_options={"trusted": trusted, "settings": settings or {}}))
    return client


def said(client, text: str) -> list[str]:
    return [m.message for m in client.log_messages if text in m.message]


def messages(client, path: Path) -> list[str]:
    return sorted(f"{d.code} {d.message}" for d in client.diagnostics.get(path.as_uri(), []))


async def test_truth_replaces_static_findings_and_reruns_after_a_save(tmp_path):
    make_project(tmp_path, models=PARITY_MODELS, revisions=PARITY_REVISIONS)
    models = tmp_path / "app" / "models.py"
    client = await start(tmp_path)
    try:
        await wait_for(lambda: said(client, "truth pass on SQLite"), timeout=90)
        await wait_for(lambda: any("(alembic check)" in m for m in messages(client, models)), timeout=90)
        everywhere = [m for ds in client.diagnostics.values() for m in ds if m.code in ("M001", "M002", "M003")]
        assert len(everywhere) == 9 and all("(alembic check)" in d.message for d in everywhere)  # never both
        assert "M001 column users.nickname is in the models but not in the database at head (alembic check)" \
            in messages(client, models)
        # the migrations gain the column: after the save, the pass runs again and it is gone
        path = tmp_path / "migrations" / "versions" / "0003_nickname.py"
        path.write_text(migration_text("0003", "0002", upgrades="op.add_column('users', sa.Column('nickname', "
                                       "sa.String(length=20), nullable=True))"))
        client.text_document_did_save(t.DidSaveTextDocumentParams(text_document=t.TextDocumentIdentifier(
            uri=path.as_uri())))
        await wait_for(lambda: len(said(client, "truth pass on SQLite")) >= 2, timeout=90)
        # (the save's static picture, without nickname and without the truth's findings, can be
        # what the client holds when the log line arrives: wait for the rerun's findings)
        await wait_for(lambda: not any("nickname" in m for m in messages(client, models))
                       and any("(alembic check)" in m for m in messages(client, models)), timeout=90)
        assert all("(alembic check)" in m for m in messages(client, models) if m.startswith(("M001", "M002", "M003")))
        assert "1 revision upgraded (2 from snapshots)" in said(client, "truth pass on SQLite")[-1]
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_verify_off_and_untrusted_run_nothing(tmp_path):
    marker = tmp_path / "env_py_ran"
    # written when migrations run (loading the models runs env.py only up to configure())
    env = ENV_PY.replace("            context.run_migrations()",
                         f"            open({str(marker)!r}, 'a').write('x')\n            context.run_migrations()")
    assert env != ENV_PY
    make_project(tmp_path, env_py=env.replace("{options}", ""),
                 extra_user="nickname: Mapped[str] = mapped_column(String(20))\n")
    models = tmp_path / "app" / "models.py"
    for trusted, settings in ((True, {"verify": "off"}), (False, {})):
        client = await start(tmp_path, trusted, settings)
        try:
            if trusted:  # the static M001 arrives: the models were loaded, and that is all
                await wait_for(lambda: messages(client, models), timeout=90)
                assert messages(client, models) == [
                    "M001 column users.nickname is in the models but no migration creates it"]
            await asyncio.sleep(3)
            assert not said(client, "truth pass")
            assert not marker.exists()
        finally:
            await client.shutdown_session()
            await client.stop()


def _our_postgres() -> set[int]:
    found = set()
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "postgres" and any("migration-lsp-pg-" in a for a in proc.info["cmdline"] or ()):
                found.add(proc.pid)
        except (psutil.Error, TypeError):
            pass
    return found


@pytest.mark.alone  # counts every PostgreSQL of ours on the machine: no other test may start one meanwhile
async def test_postgres_cluster_goes_with_the_server(tmp_path):
    before = _our_postgres()
    make_project(tmp_path, files={"alembic.ini": MINIMAL_INI.replace("sqlite:///app.db", "postgresql://prod/app")})
    client = await start(tmp_path)
    try:
        await wait_for(lambda: said(client, "truth pass on PostgreSQL"), timeout=90)
        assert "1 revision upgraded, alembic check: 0 differences" in said(client, "truth pass on PostgreSQL")[0]
        started = _our_postgres() - before
        assert started  # the server's own cluster is running
    finally:
        await client.shutdown_session()
        await client.stop()
    for _ in range(200):
        if not (_our_postgres() & started):
            break
        await asyncio.sleep(0.1)
    assert not (_our_postgres() & started)
    assert not [p for p in started if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
