"""An op inside a loop is evaluated once per item (interpret.py unrolls loops over known
sequences), so a rule sees it once per iteration. Identical findings (same code, file,
range, message, severity) are one fact: reported once, by every front end (the CLI's
JSON, text, SARIF and GitHub output, the server's diagnostics). Findings that differ in
message (each names its own table) are distinct facts and all stay, on the same line.
Found on zenml 10a907dad202: 15 identical S005 on one `op.drop_table(table)`; S005 now names
each iteration's table as the evaluation knows it, 15 distinct findings."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest_lsp
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from conftest import alembic_project, line_of, migration_text as m
from lsp_helpers import SERVER_COMMAND, client_factory
from migration_lsp.cli import main

BASE = """\
op.create_table("alpha", sa.Column("id", sa.Integer, primary_key=True))
    op.create_table("beta", sa.Column("id", sa.Integer, primary_key=True))
    op.create_table("gamma", sa.Column("id", sa.Integer, primary_key=True))
    op.create_table(
        "child",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a_id", sa.Integer, sa.ForeignKey("alpha.id", name="fk_child_alpha")),
        sa.Column("b_id", sa.Integer, sa.ForeignKey("beta.id", name="fk_child_beta")),
    )"""

# three iterations: S005 and S022 name the iteration's table: three and two different facts
# (gamma is referenced by nothing); D003 on the raw SQL says the same thing three times
LOOP = """\
for name in ("alpha", "beta", "gamma"):
        op.drop_column(name, "id")
        op.execute(f"UPDATE {name} SET id = id")"""


def loop_project(root: Path) -> Path:
    """A SQLite project (no env.py-wide finding, so the revision's findings are all in its
    own file: the path where nothing merged them before). Returns the looping revision."""
    alembic_project(root, {
        "aaaa_base.py": m("aaaa", None, message="base", upgrades=BASE, downgrades='op.drop_table("child")'),
        "bbbb_loop.py": m("bbbb", "aaaa", message="loop", upgrades=LOOP),
    })
    return (root / "migrations" / "versions" / "bbbb_loop.py").resolve()


def expected_lines(path: Path) -> tuple[int, int]:
    """0-based lines of the drop_column and the execute in the loop."""
    text = path.read_text()
    return line_of(text, "op.drop_column(name"), line_of(text, "op.execute(f")


def test_the_cli_reports_identical_findings_of_a_loop_once(tmp_path, monkeypatch, capsys):
    path = loop_project(tmp_path)
    drop, execute = expected_lines(path)
    monkeypatch.chdir(tmp_path)
    main(["check", "--static", "--format", "json"])
    found = [d for d in json.loads(capsys.readouterr().out)["diagnostics"] if d["path"].endswith("bbbb_loop.py")]
    assert Counter((d["code"], d["line"]) for d in found) == {
        ("S005", drop + 1): 3, ("D003", execute + 1): 1, ("S022", drop + 1): 2, ("D001", line_of(
            path.read_text(), "def downgrade") + 1): 1}
    assert sorted(d["message"].split(" and its data")[0] for d in found if d["code"] == "S005") == [
        f"drop_column deletes column '{name}.id'" for name in ("alpha", "beta", "gamma")]
    s022 = sorted(d["message"] for d in found if d["code"] == "S022")
    assert s022[0].startswith("drops alpha.id, which the foreign key fk_child_alpha")
    assert s022[1].startswith("drops beta.id, which the foreign key fk_child_beta")
    assert len({json.dumps(d, sort_keys=True) for d in found}) == len(found)  # no two alike

    # the other formats count the same findings
    main(["check", "--static"])
    text = capsys.readouterr().out
    assert sum(1 for line in text.splitlines() if ":" in line and " S005 " in line) == 3
    assert sum(1 for line in text.splitlines() if ":" in line and " D003 " in line) == 1
    total = sum(1 for line in text.splitlines() if line.startswith("migrations/"))
    assert f"Found {total} problems" in text
    main(["check", "--static", "--format", "sarif"])
    results = json.loads(capsys.readouterr().out)["runs"][0]["results"]
    assert len(results) == total
    assert Counter(r["ruleId"] for r in results if r["locations"][0]["physicalLocation"]["artifactLocation"][
        "uri"].endswith("bbbb_loop.py")) == {"S005": 3, "D003": 1, "S022": 2, "D001": 1}
    main(["check", "--static", "--format", "github"])
    assert len(capsys.readouterr().out.splitlines()) == total


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=client_factory))
async def client(lsp_client: LanguageClient, tmp_path: Path):
    lsp_client.loop_file = loop_project(tmp_path)
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        root_uri=tmp_path.as_uri(),
        workspace_folders=[t.WorkspaceFolder(uri=tmp_path.as_uri(), name="loop")],
        initialization_options={"trusted": False},
    ))
    yield
    await lsp_client.shutdown_session()


async def test_the_server_publishes_identical_findings_of_a_loop_once(client: LanguageClient):
    path = client.loop_file
    drop, execute = expected_lines(path)
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=path.as_uri(), language_id="python", version=1, text=path.read_text())))

    def counts() -> Counter:
        return Counter((d.code, d.range.start.line) for d in client.diagnostics.get(path.as_uri(), []))

    for _ in range(400):  # the schema rules arrive with the full pass, after the graph's
        if counts()[("S022", drop)] >= 2:
            break
        await asyncio.sleep(0.05)
    found = client.diagnostics[path.as_uri()]
    assert counts() == {("S005", drop): 3, ("D003", execute): 1, ("S022", drop): 2,
                        ("D001", line_of(path.read_text(), "def downgrade")): 1}
    assert len({(d.code, d.message, d.range.start.line, d.range.start.character) for d in found}) == len(found)
