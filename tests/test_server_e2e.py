"""The real server over stdio, driven by pytest-lsp with recorded capabilities of real
editors (VS Code 1.65, Neovim 0.11), on a copy of the demo project (two heads + a typo)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsp_helpers import (
    BASE,
    HEAD_A,
    HEAD_B,
    SERVER_COMMAND,
    TYPO_REV,
    apply_text_edits,
    apply_workspace_edit,
    client_factory,
    codes,
    copy_example,
    file_of,
    resolved,
    uri_path,
    wait_for,
)
from lsprotocol import types as t
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

EDITORS = ["visual-studio-code", "neovim@v0.11.0"]


@pytest_lsp.fixture(
    params=EDITORS,
    config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=client_factory),
)
async def client(request, lsp_client: LanguageClient, tmp_path: Path):
    project = copy_example(tmp_path)
    lsp_client.project = project
    lsp_client.editor = request.param
    await lsp_client.initialize_session(t.InitializeParams(
        capabilities=client_capabilities(request.param),
        root_uri=project.as_uri(),
        workspace_folders=[t.WorkspaceFolder(uri=project.as_uri(), name="blog")],
        initialization_options={"trusted": False},
    ))
    yield
    await lsp_client.shutdown_session()


def doc(path: Path) -> t.TextDocumentIdentifier:
    return t.TextDocumentIdentifier(uri=path.as_uri())


def open_file(client: LanguageClient, path: Path, text: str | None = None) -> None:
    client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
        uri=path.as_uri(), language_id="python", version=1, text=text if text is not None else path.read_text())))




def change_whole(client: LanguageClient, path: Path, text: str, version: int) -> None:
    client.text_document_did_change(t.DidChangeTextDocumentParams(
        text_document=t.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=version),
        content_changes=[t.TextDocumentContentChangeWholeDocument(text=text)]))


def position_of(path: Path, needle: str, offset: int = 0, occurrence: int = 0) -> t.Position:
    lines = path.read_text().splitlines()
    seen = 0
    for n, line in enumerate(lines):
        col = line.find(needle)
        if col >= 0:
            if seen == occurrence:
                return t.Position(line=n, character=col + offset)
            seen += 1
    raise AssertionError(f"{needle!r} not in {path.name}")


# --------------------------------------------------------------------------- diagnostics


async def test_diagnostics_pushed_for_every_affected_file(client: LanguageClient):
    project = client.project
    typo = file_of(project, TYPO_REV)
    open_file(client, typo)
    head_a, head_b = file_of(project, HEAD_A), file_of(project, HEAD_B)
    # the other heads' files are not open, yet they get their G001 too
    await wait_for(lambda: codes(client, head_a) and codes(client, typo))
    assert codes(client, head_a) == [("G001", 14)]
    # the typo'd parent looks like a head only because of the typo: not reported
    assert codes(client, head_b) == []
    assert codes(client, typo) == [("G001", 14), ("G002", 15)]
    g002 = next(d for d in client.diagnostics[typo.as_uri()] if d.code == "G002")
    assert g002.severity == t.DiagnosticSeverity.Error
    assert "did you mean 'bd474000068b'" in g002.message
    line = typo.read_text().splitlines()[15]
    assert line[g002.range.start.character:g002.range.end.character] == "bd474000086b"


async def test_unsaved_edits_update_diagnostics_and_clear_them(client: LanguageClient):
    project = client.project
    typo = file_of(project, TYPO_REV)
    text = typo.read_text()
    open_file(client, typo, text)
    await wait_for(lambda: ("G002", 15) in codes(client, typo))
    fixed = text.replace("bd474000086b", HEAD_B)
    change_whole(client, typo, fixed, 2)
    await wait_for(lambda: ("G002", 15) not in codes(client, typo))
    assert codes(client, typo) == [("G001", 14)]
    assert codes(client, file_of(project, HEAD_A)) == [("G001", 14)]
    # break it again without saving: the error comes back
    change_whole(client, typo, text.replace("bd474000086b", "nope"), 3)
    await wait_for(lambda: ("G002", 15) in codes(client, typo))
    assert typo.read_text() == text  # the server never writes


async def test_half_typed_file_keeps_its_header(client: LanguageClient):
    typo = file_of(client.project, TYPO_REV)
    text = typo.read_text().replace("def upgrade() -> None:", "def upgrade( -> None:\n    op.add_column(")
    open_file(client, typo, text)
    await wait_for(lambda: ("G002", 15) in codes(client, typo))
    hover = await client.text_document_hover_async(t.HoverParams(
        text_document=doc(typo), position=position_of(typo, "4327c6748b81'", 1)))
    assert hover is not None and "add post slug" in hover.contents.value


# --------------------------------------------------------------------------- hover & navigation


async def test_hover_on_down_revision_shows_parent(client: LanguageClient):
    head_a = file_of(client.project, HEAD_A)
    open_file(client, head_a)
    pos = position_of(head_a, "'6a4961b6b2ca'", 3, occurrence=0)
    hover = await client.text_document_hover_async(t.HoverParams(text_document=doc(head_a), position=pos))
    assert hover is not None
    text = hover.contents.value
    assert "add comments table" in text and "6a4961b6b2ca" in text
    assert "branch point" in text and HEAD_A in text  # its children include this head
    # the docstring's Revises: line works too
    hover2 = await client.text_document_hover_async(t.HoverParams(
        text_document=doc(head_a), position=position_of(head_a, "Revises: 6a49", 10)))
    assert hover2 is not None and "add comments table" in hover2.contents.value


async def test_definition_and_references(client: LanguageClient):
    project = client.project
    head_a = file_of(project, HEAD_A)
    open_file(client, head_a)
    pos = position_of(head_a, "'6a4961b6b2ca'", 2)
    result = await client.text_document_definition_async(t.DefinitionParams(text_document=doc(head_a), position=pos))
    (location,) = result
    parent = file_of(project, "6a4961b6b2ca")
    assert uri_path(location.uri) == parent.resolve()
    assert location.range.start.line == 14  # its `revision = ` line
    refs = await client.text_document_references_async(t.ReferenceParams(
        text_document=doc(head_a), position=pos, context=t.ReferenceContext(include_declaration=False)))
    files = sorted(uri_path(r.uri).name[:12] for r in refs)
    # down_revision + Revises: in both children
    assert files == sorted(["17b2b3743e17", "17b2b3743e17", HEAD_A, HEAD_A])


async def test_completion_in_down_revision(client: LanguageClient):
    typo = file_of(client.project, TYPO_REV)
    text = typo.read_text().replace("'bd474000086b'", "'bd4")
    open_file(client, typo, text)
    line = text.splitlines().index(next(line for line in text.splitlines() if line.startswith("down_revision")))
    col = text.splitlines()[line].index("'bd4") + 4
    result = await client.text_document_completion_async(t.CompletionParams(
        text_document=doc(typo), position=t.Position(line=line, character=col)))
    labels = [item.label for item in result.items]
    assert labels == [HEAD_B]
    assert "add display name" in result.items[0].detail
    applied = apply_text_edits(text, [result.items[0].text_edit])
    assert f"'{HEAD_B}" in applied.splitlines()[line]
    # empty prefix: heads first, never this revision itself
    text2 = typo.read_text().replace("'bd474000086b'", "''")
    change_whole(client, typo, text2, 2)
    col2 = text2.splitlines()[line].index("''") + 1
    result2 = await client.text_document_completion_async(t.CompletionParams(
        text_document=doc(typo), position=t.Position(line=line, character=col2)))
    labels2 = [item.label for item in result2.items]
    assert TYPO_REV not in labels2 and len(labels2) == 6
    assert set(labels2[:2]) == {HEAD_A, HEAD_B}


async def test_symbols_lens_and_hints(client: LanguageClient):
    project = client.project
    head_a = file_of(project, HEAD_A)
    open_file(client, head_a)
    symbols = await client.text_document_document_symbol_async(t.DocumentSymbolParams(text_document=doc(head_a)))
    names = [s.name for s in symbols]
    assert names[0] == f"revision {HEAD_A}" and "upgrade" in names and "downgrade" in names
    upgrade = next(s for s in symbols if s.name == "upgrade")
    assert [c.name for c in upgrade.children] == ["op.batch_alter_table", "batch_op.add_column"] or \
        any("add_column" in c.name for c in upgrade.children)
    found = await client.workspace_symbol_async(t.WorkspaceSymbolParams(query="user bio"))
    assert [s.name for s in found] == [f"{HEAD_A} add user bio"]
    lenses = await client.text_document_code_lens_async(t.CodeLensParams(text_document=doc(head_a)))
    assert [lens.command.title for lens in lenses] == ["head"]
    parent = file_of(project, "6a4961b6b2ca")
    open_file(client, parent)
    lenses = await client.text_document_code_lens_async(t.CodeLensParams(text_document=doc(parent)))
    assert lenses[0].command.title == "2 children · branch point"
    hints = await client.text_document_inlay_hint_async(t.InlayHintParams(
        text_document=doc(head_a), range=t.Range(t.Position(0, 0), t.Position(40, 0))))
    assert [h.label for h in hints] == ["add comments table"]
    assert hints[0].position.line == 15


# --------------------------------------------------------------------------- quick fixes


async def actions_at(client: LanguageClient, path: Path, line: int, only=None) -> list[t.CodeAction]:
    diags = [d for d in client.diagnostics.get(path.as_uri(), []) if d.range.start.line == line]
    return await client.text_document_code_action_async(t.CodeActionParams(
        text_document=doc(path), range=t.Range(t.Position(line, 0), t.Position(line, 0)),
        context=t.CodeActionContext(diagnostics=diags, only=only)))


def alembic(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=project, capture_output=True, text=True,
                          timeout=120)


async def test_did_you_mean_then_merge_heads_gives_alembic_one_head(client: LanguageClient):
    project = client.project
    typo = file_of(project, TYPO_REV)
    open_file(client, typo)
    await wait_for(lambda: ("G002", 15) in codes(client, typo))
    actions = await actions_at(client, typo, 15)
    titles = [a.title for a in actions]
    fix = next(a for a in actions if a.title.startswith("Change to 'bd474000068b'"))
    assert fix.kind == t.CodeActionKind.QuickFix and fix.is_preferred
    assert any(title.startswith("Point to current head") for title in titles)
    written = apply_workspace_edit(fix.edit)
    assert f"'{HEAD_B}'" in written[typo.resolve()].splitlines()[15]
    change_whole(client, typo, written[typo.resolve()], 2)
    await wait_for(lambda: ("G002", 15) not in codes(client, typo))
    await wait_for(lambda: codes(client, file_of(project, HEAD_B)) == [])

    # two heads remain: HEAD_A and TYPO_REV. Merge them.
    await wait_for(lambda: codes(client, typo) == [("G001", 14)])
    actions = await actions_at(client, typo, 14)
    merge = next(a for a in actions if a.title.startswith("Merge heads"))
    assert any(a.title.startswith("Rebase onto") for a in actions)
    assert merge.edit is None  # listed without rendering anything: resolved when picked
    merge = await resolved(client, merge)
    changes = merge.edit.document_changes
    assert isinstance(changes[0], t.CreateFile) and isinstance(changes[1], t.TextDocumentEdit)
    created = apply_workspace_edit(merge.edit)
    (new_path,) = created
    assert new_path.parent == typo.parent.resolve()
    text = created[new_path]
    assert "Revises:" in text and "from alembic import op" in text  # Alembic's generic template (untrusted)
    assert "down_revision" in text and HEAD_A in text and TYPO_REV in text

    heads = alembic(project, "heads")
    assert heads.returncode == 0, heads.stderr
    assert len(heads.stdout.strip().splitlines()) == 1, heads.stdout
    new_id = new_path.name.split("_")[0]
    assert heads.stdout.startswith(new_id)

    # the server notices the new file on open and the G001s go away
    open_file(client, new_path)
    await wait_for(lambda: codes(client, typo) == [] and codes(client, file_of(project, HEAD_A)) == [])
    # saved and closed, before any file watcher spoke: it stays part of the graph
    client.text_document_did_save(t.DidSaveTextDocumentParams(text_document=doc(new_path)))
    client.text_document_did_close(t.DidCloseTextDocumentParams(text_document=doc(new_path)))
    hover = await client.text_document_hover_async(t.HoverParams(
        text_document=doc(typo), position=position_of(typo, f"= '{TYPO_REV}'", 4)))
    assert hover is not None and f"Children: `{new_id}`" in hover.contents.value
    assert codes(client, typo) == [] and codes(client, file_of(project, HEAD_A)) == []


async def test_rebase_onto_other_head(client: LanguageClient):
    project = client.project
    typo = file_of(project, TYPO_REV)
    open_file(client, typo, typo.read_text().replace("bd474000086b", HEAD_B))  # typo fixed, unsaved
    head_a = file_of(project, HEAD_A)
    open_file(client, head_a)
    await wait_for(lambda: ("G001", 14) in codes(client, head_a) and ("G002", 15) not in codes(client, typo))
    actions = await actions_at(client, head_a, 14)
    rebase = next(a for a in actions if a.title.startswith(f"Rebase onto '{TYPO_REV}'"))
    written = apply_workspace_edit(rebase.edit)
    text = written[head_a.resolve()]
    assert f"down_revision: Union[str, Sequence[str], None] = '{TYPO_REV}'" in text
    assert f"Revises: {TYPO_REV}" in text
    change_whole(client, head_a, text, 2)
    # one line of history again: no head is reported any more
    await wait_for(lambda: codes(client, head_a) == [] and codes(client, typo) == [])


async def test_create_next_revision_source_action(client: LanguageClient):
    project = client.project
    head_a = file_of(project, HEAD_A)
    open_file(client, head_a)
    actions = await actions_at(client, head_a, 0, only=["source"])
    (create,) = actions
    assert create.title == f"Create next revision on top of '{HEAD_A}' (add user bio)"
    written = apply_workspace_edit((await resolved(client, create)).edit)
    (path,) = written
    assert f"down_revision: Union[str, Sequence[str], None] = '{HEAD_A}'" in written[path]


async def test_no_crash_on_foreign_documents(client: LanguageClient):
    for uri in ("untitled:Untitled-1", "file:///does/not/exist.py", "git:/x/y.py?ref=HEAD"):
        hover = await client.text_document_hover_async(t.HoverParams(
            text_document=t.TextDocumentIdentifier(uri=uri), position=t.Position(0, 0)))
        assert hover is None
        symbols = await client.text_document_document_symbol_async(t.DocumentSymbolParams(
            text_document=t.TextDocumentIdentifier(uri=uri)))
        assert not symbols
    # still serving
    head_a = file_of(client.project, HEAD_A)
    open_file(client, head_a)
    await wait_for(lambda: codes(client, head_a) == [("G001", 14)])


async def test_watched_files_and_progress(client: LanguageClient):
    if client.editor == "visual-studio-code":  # VS Code allows dynamic registration and shows progress
        await wait_for(lambda: client.registrations)
        assert [r.method for r in client.registrations] == [t.WORKSPACE_DID_CHANGE_WATCHED_FILES]
        # the progress ends once the client has answered its creation and indexing is done:
        # it may arrive after the registration
        await wait_for(lambda: any(r.kind == "end" for reports in client.progress_reports.values() for r in reports))
        kinds = [r.kind for reports in client.progress_reports.values() for r in reports]
        assert kinds[0] == "begin" and kinds[-1] == "end"
    else:
        assert client.registrations == []
    # a file created outside the editor is picked up through the watcher notification
    project = client.project
    head_a = file_of(project, HEAD_A)
    open_file(client, head_a)
    await wait_for(lambda: ("G001", 14) in codes(client, head_a))
    new = head_a.parent / "aaaaaaaaaaaa_merge.py"
    new.write_text(f'"""merge\n\nRevision ID: aaaaaaaaaaaa\nRevises: {HEAD_A}, {TYPO_REV}\n"""\n'
                   f"revision = 'aaaaaaaaaaaa'\ndown_revision = ('{HEAD_A}', '{TYPO_REV}')\n"
                   "branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n")
    client.workspace_did_change_watched_files(t.DidChangeWatchedFilesParams(changes=[
        t.FileEvent(uri=new.as_uri(), type=t.FileChangeType.Created)]))
    await wait_for(lambda: codes(client, head_a) == [])
    assert codes(client, file_of(project, BASE)) == []


# --------------------------------------------------------------------------- clients without file creation / with pull


def _capabilities_without_resource_operations() -> t.ClientCapabilities:
    caps = client_capabilities("visual-studio-code")
    caps.workspace.workspace_edit.resource_operations = []
    return caps


def _capabilities_with_pull() -> t.ClientCapabilities:
    caps = client_capabilities("visual-studio-code")
    caps.text_document.diagnostic = t.DiagnosticClientCapabilities(dynamic_registration=False)
    caps.workspace.diagnostics = t.DiagnosticWorkspaceClientCapabilities(refresh_support=True)
    return caps


@pytest_lsp.fixture(
    params=["no-resource-operations", "pull"],
    config=ClientServerConfig(server_command=SERVER_COMMAND, client_factory=client_factory),
)
async def custom_client(request, lsp_client: LanguageClient, tmp_path: Path):
    project = copy_example(tmp_path)
    lsp_client.project = project
    lsp_client.kind = request.param
    caps = _capabilities_with_pull() if request.param == "pull" else _capabilities_without_resource_operations()
    result = await lsp_client.initialize_session(t.InitializeParams(capabilities=caps, root_uri=project.as_uri()))
    lsp_client.server_capabilities = result.capabilities
    yield
    await lsp_client.shutdown_session()


async def test_fallbacks(custom_client: LanguageClient):
    client = custom_client
    project = client.project
    typo = file_of(project, TYPO_REV)
    if client.kind == "pull":
        assert client.server_capabilities.diagnostic_provider is not None
        open_file(client, typo)
        report = await client.text_document_diagnostic_async(t.DocumentDiagnosticParams(text_document=doc(typo)))
        assert sorted(d.code for d in report.items) == ["G001", "G002"]
        again = await client.text_document_diagnostic_async(t.DocumentDiagnosticParams(
            text_document=doc(typo), previous_result_id=report.result_id))
        assert again.kind == "unchanged"
        ws = await client.workspace_diagnostic_async(t.WorkspaceDiagnosticParams(previous_result_ids=[]))
        assert {uri_path(i.uri).name[:12] for i in ws.items} == {HEAD_A, TYPO_REV}
        change_whole(client, typo, typo.read_text().replace("bd474000086b", HEAD_B), 2)
        await wait_for(lambda: client.diagnostic_refresh_count > 0)
        report = await client.text_document_diagnostic_async(t.DocumentDiagnosticParams(text_document=doc(typo)))
        assert [d.code for d in report.items] == ["G001"]
        assert client.diagnostics == {}  # never pushed to a pulling client
    else:
        assert client.server_capabilities.diagnostic_provider is None
        open_file(client, typo)
        await wait_for(lambda: ("G001", 14) in codes(client, typo))
        actions = await actions_at(client, typo, 14)
        merge = next(a for a in actions if a.title.startswith("Merge heads"))
        assert isinstance(merge, t.Command) and merge.command == "migrationLsp.applyEdit"
        await client.workspace_execute_command_async(t.ExecuteCommandParams(
            command=merge.command, arguments=merge.arguments))
        (edit,) = client.applied_edits
        (uri,) = edit.changes
        assert uri_path(uri).parent == typo.parent.resolve() and not uri_path(uri).exists()
        assert "Revises:" in edit.changes[uri][0].new_text


async def test_trusted_workspace_models_and_downgrades(tmp_path: Path):
    """Trusted: the models are loaded in the background; M001 lands on the model line and
    its fix generates a revision; an emptied downgrade() gets D001 and is filled."""
    from pytest_lsp import make_test_lsp_client

    project = copy_example(tmp_path)
    typo = file_of(project, TYPO_REV)
    typo.write_text(typo.read_text().replace("bd474000086b", HEAD_B))
    target = file_of(project, HEAD_B)
    text = target.read_text()
    target.write_text(text[: text.index("def downgrade")] + 'def downgrade() -> None:\n    """Downgrade schema."""\n    pass\n')
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND)
    try:
        await client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"), root_uri=project.as_uri(),
            initialization_options={"trusted": True}))
        models = project / "app" / "models.py"
        await wait_for(lambda: client.diagnostics.get(models.as_uri()), timeout=60)
        (m001,) = client.diagnostics[models.as_uri()]
        assert m001.code == "M001" and "posts.published_at" in m001.message
        assert "published_at" in models.read_text().splitlines()[m001.range.start.line]
        actions = await client.text_document_code_action_async(t.CodeActionParams(
            text_document=doc(models), range=m001.range, context=t.CodeActionContext(diagnostics=[m001])))
        generate = [a for a in actions if a.title.startswith("Generate revision from model changes")]
        assert generate, [a.title for a in actions]
        assert generate[0].edit is None  # the project's template renders only when resolved
        created = apply_workspace_edit((await resolved(client, generate[0])).edit)
        (new_file,) = created
        assert "op.add_column('posts', sa.Column('published_at'" in created[new_file]
        assert "op.drop_column('posts', 'published_at')" in created[new_file]

        await wait_for(lambda: any(d.code == "D001" for d in client.diagnostics.get(target.as_uri(), [])))
        d001 = next(d for d in client.diagnostics[target.as_uri()] if d.code == "D001")
        actions = await client.text_document_code_action_async(t.CodeActionParams(
            text_document=doc(target), range=d001.range, context=t.CodeActionContext(diagnostics=[d001])))
        fill = next(a for a in actions if a.title.startswith("Fill downgrade()"))
        assert fill.edit is None  # built from the replayed schema only when resolved
        written = apply_workspace_edit((await resolved(client, fill)).edit)
        body = written[target.resolve()].split("def downgrade")[1]
        assert "op.drop_column('users', 'display_name')" in body
        assert "op.drop_index(op.f('ix_posts_created_at'), table_name='posts')" in body
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_same_settings_again_change_nothing_and_problems_are_said_once(tmp_path: Path):
    """Neovim sends its settings at start, and clients repeat them: the same settings neither
    rescan nor reload the models (a child process importing the project), and a models
    problem is logged once, not at every reload."""
    from pytest_lsp import make_test_lsp_client

    project = copy_example(tmp_path)
    env_py = project / "migrations" / "env.py"
    env_py.write_text(re.sub(r"(?m)^target_metadata = .*$", "target_metadata = None", env_py.read_text()))
    client = make_test_lsp_client()
    await client.start_io(*SERVER_COMMAND)
    try:
        await client.initialize_session(t.InitializeParams(
            capabilities=client_capabilities("neovim"), root_uri=project.as_uri(),
            initialization_options={"trusted": True}))

        def said() -> list[str]:
            return [m.message for m in client.log_messages if m.message.startswith("models of")]

        await wait_for(lambda: said(), timeout=60)
        for _ in range(3):
            client.workspace_did_change_configuration(t.DidChangeConfigurationParams(settings={"migrationLsp": {}}))
        await asyncio.sleep(3)  # time for a (needless) reload to run and say it again
        (message,) = said()
        assert "target_metadata = None" in message
        # different settings still apply
        settings = {"ignore": ["G001"]}
        client.set_configuration(settings, section="migrationLsp")  # what workspace/configuration answers
        client.workspace_did_change_configuration(t.DidChangeConfigurationParams(settings={"migrationLsp": settings}))
        typo = file_of(project, TYPO_REV)
        open_file(client, typo)
        await wait_for(lambda: client.diagnostics.get(typo.as_uri()) is not None)
        await asyncio.sleep(1)
        assert "G001" not in {d.code for d in client.diagnostics[typo.as_uri()]}
        assert "G002" in {d.code for d in client.diagnostics[typo.as_uri()]}
    finally:
        await client.shutdown_session()
        await client.stop()
