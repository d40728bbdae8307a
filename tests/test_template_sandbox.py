"""The project's `script.py.mako` is project code (a `<% %>` block runs Python): it never
renders in the server process. Untrusted: Alembic's generic template, for every action,
listed, resolved or run as a command. Trusted: listing renders nothing; resolving renders
the project's template in a child process (another pid). A template that fails or never
ends falls back to the generic one; one failing fix leaves the others; ids that are not
plain ids are never pasted into a file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types as t
from pytest_lsp import client_capabilities

from conftest import migration_text
from lsp_helpers import HEAD_A, SERVER_COMMAND, TYPO_REV, client_factory, copy_example, file_of, versions

from migration_lsp import render
from migration_lsp.core import Span
from migration_lsp.engine import Engine
from migration_lsp.features import Locator
from migration_lsp.features import actions as actions_module
from migration_lsp.features.actions import EditSupport, code_actions, resolve_edit

MARK = "# rendered from the project's own template"
SUPPORT = EditSupport(document_changes=True, create=True, rename=True, resolve=True)


def hostile_template(project: Path, body: str) -> Path:
    """The project's template: Alembic's generic one, a marker line, and `body` (Mako)."""
    template = project / "migrations" / "script.py.mako"
    template.write_text(body + "\n" + MARK + "\n" + render.GENERIC_TEMPLATE.read_text())
    return template


def sentinel_template(project: Path) -> Path:
    sentinel = project.parent / "SENTINEL_template"
    hostile_template(project, f"<%\nimport os, pathlib\npathlib.Path({str(sentinel)!r}).write_text(str(os.getpid()))\n%>")
    return sentinel


def capabilities(resolve: bool) -> t.ClientCapabilities:
    caps = client_capabilities("visual-studio-code")
    if not resolve:
        caps.text_document.code_action.resolve_support = None
    return caps


async def start(project: Path, trusted: bool, resolve: bool = True):
    client = client_factory()
    await client.start_io(*SERVER_COMMAND)
    await client.initialize_session(t.InitializeParams(
        capabilities=capabilities(resolve), root_uri=project.as_uri(),
        initialization_options={"trusted": trusted}))
    return client


async def every_action(client, project: Path) -> list[t.CodeAction | t.Command]:
    """What an editor asks while the cursor moves over every line of every migration."""
    found = []
    for path in sorted(versions(project).glob("*.py")):
        client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
            uri=path.as_uri(), language_id="python", version=1, text=path.read_text())))
    typo = file_of(project, TYPO_REV)
    for _ in range(200):
        if any(d.code == "G002" for d in client.diagnostics.get(typo.as_uri(), [])):
            break
        await asyncio.sleep(0.05)
    for path in sorted(versions(project).glob("*.py")):
        for line in range(len(path.read_text().splitlines())):
            diags = [d for d in client.diagnostics.get(path.as_uri(), []) if d.range.start.line == line]
            found += await client.text_document_code_action_async(t.CodeActionParams(
                text_document=t.TextDocumentIdentifier(uri=path.as_uri()),
                range=t.Range(t.Position(line, 0), t.Position(line, 0)), context=t.CodeActionContext(diagnostics=diags)))
    return found


def created_texts(edit: t.WorkspaceEdit) -> list[str]:
    if edit.document_changes:
        created = {c.uri for c in edit.document_changes if isinstance(c, t.CreateFile)}
        return [e.new_text for c in edit.document_changes if isinstance(c, t.TextDocumentEdit)
                and c.text_document.uri in created for e in c.edits]
    return [e.new_text for uri, edits in (edit.changes or {}).items() for e in edits if e.range.end.line == 0
            and not Path(uri.removeprefix("file://")).exists()]


@pytest.mark.parametrize("resolve", [True, False], ids=["resolve", "command"])
async def test_untrusted_lists_resolves_and_runs_every_action_with_the_generic_template(tmp_path: Path, resolve):
    project = copy_example(tmp_path)
    sentinel = sentinel_template(project)
    client = await start(project, trusted=False, resolve=resolve)
    try:
        listed = await every_action(client, project)
        assert not sentinel.exists()  # listing rendered nothing
        texts = []
        for action in listed:
            if isinstance(action, t.CodeAction) and action.data is not None:
                texts += created_texts((await client.code_action_resolve_async(action)).edit)
            elif isinstance(action, t.Command):
                await client.workspace_execute_command_async(t.ExecuteCommandParams(
                    command=action.command, arguments=action.arguments))
        texts += [text for edit in client.applied_edits for text in created_texts(edit)]
    finally:
        await client.shutdown_session()
        await client.stop()
    titles = [a.title for a in listed]
    assert any(x.startswith("Merge heads") for x in titles) and any(x.startswith("Create next") for x in titles)
    assert not sentinel.exists()
    # every new file came out of Alembic's generic template, none from the project's
    assert len(texts) >= 2 and all("Revision ID:" in text and MARK not in text for text in texts)


async def test_trusted_lists_nothing_rendered_and_resolves_in_a_child_process(tmp_path: Path):
    project = copy_example(tmp_path)
    sentinel = sentinel_template(project)
    client = await start(project, trusted=True)
    try:
        listed = await every_action(client, project)
        assert not sentinel.exists()  # VS Code lists on every cursor move: nothing may render then
        create = next(a for a in listed if a.title.startswith(f"Create next revision on top of '{HEAD_A}'"))
        assert create.edit is None and create.data is not None
        edit = (await client.code_action_resolve_async(create)).edit
        server_pid = client._server.pid
    finally:
        await client.shutdown_session()
        await client.stop()
    (text,) = created_texts(edit)
    assert MARK in text and f"down_revision: Union[str, Sequence[str], None] = '{HEAD_A}'" in text
    assert sentinel.exists() and int(sentinel.read_text()) != server_pid  # rendered, but not by the server


# --------------------------------------------------------------------------- fallbacks (in process)


def _state(project: Path):
    snapshot = Engine([project], trusted=False, cache=False).snapshot()
    return snapshot, snapshot.environments[0]


@pytest.mark.parametrize("body, why, timeout", [
    ("<% while True: pass %>", "took longer than 2 s", 2.0),
    ("<% raise RuntimeError('template is broken') %>", "template is broken", 30.0),
    ("<% import os; os._exit(9) %>", "exited with code 9", 30.0),
    ("${undefined_name.attribute}", "AttributeError", 30.0),  # context Alembic does not pass
])
def test_a_failing_or_endless_template_falls_back_to_the_generic_one(tmp_path: Path, monkeypatch, body, why,
                                                                     timeout):
    monkeypatch.setattr(render, "RENDER_TIMEOUT", timeout)
    project = copy_example(tmp_path)
    hostile_template(project, body)
    snapshot, state = _state(project)
    new = render.render_revision(state.env, state.graph, "next", [HEAD_A], trusted=True)
    assert new.template == render.GENERIC_TEMPLATE and MARK not in new.text
    assert new.note and why in new.note and "generic template" in new.note
    assert f"down_revision: Union[str, Sequence[str], None] = '{HEAD_A}'" in new.text
    # the code actions: the fix is resolved (with the fallback), the other fixes are all there
    typo = file_of(project, TYPO_REV).resolve()
    line = next(n for n, x in enumerate(typo.read_text().splitlines()) if x.startswith("revision"))
    listed = code_actions(snapshot, typo, Span.point(line), None, Locator(snapshot), SUPPORT, trusted=True)
    assert [a.title.split(" ")[0] for a in listed] == ["Merge", "Rebase", "Create"]
    merge = asyncio.run(resolve_edit(snapshot, listed[0].data, Locator(snapshot), SUPPORT, trusted=True))
    (text,) = created_texts(merge)
    assert MARK not in text and TYPO_REV in text


def test_a_template_rendered_when_trusted_is_the_projects_own(tmp_path: Path):
    project = copy_example(tmp_path)
    hostile_template(project, "<%! import os %>")
    snapshot, state = _state(project)
    new = render.render_revision(state.env, state.graph, "next", [HEAD_A], trusted=True)
    assert new.note is None and MARK in new.text
    untrusted = render.render_revision(state.env, state.graph, "next", [HEAD_A], trusted=False)
    assert MARK not in untrusted.text and "not trusted" in untrusted.note


def test_one_failing_fix_leaves_the_others(tmp_path: Path, monkeypatch):
    project = copy_example(tmp_path)
    snapshot, _ = _state(project)
    typo = file_of(project, TYPO_REV).resolve()
    line = next(n for n, x in enumerate(typo.read_text().splitlines()) if x.startswith("revision"))

    def broken(*args):
        raise ValueError("a fix that fails")

    monkeypatch.setattr(actions_module, "_set_parent", broken)  # "Rebase onto ..." fails
    titles = [a.title for a in code_actions(snapshot, typo, Span.point(line), None, Locator(snapshot), SUPPORT)]
    assert titles[0].startswith("Merge heads") and titles[-1].startswith("Create next revision")
    assert not any(x.startswith("Rebase") for x in titles)


def test_ids_that_are_not_plain_ids_are_never_pasted(tmp_path: Path):
    """A revision id with quotes, a backslash or a newline (Alembic accepts any string):
    no quick fix offers to write it into a file."""
    root = tmp_path / "p"
    folder = root / "migrations" / "versions"
    folder.mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    bad = "ab'c\"d\\\nx"
    (folder / "base_x.py").write_text(migration_text("aaaa1111", None))
    (folder / "bad_x.py").write_text(migration_text("aaaa1112", "aaaa1111").replace(
        "revision: str = 'aaaa1112'", f"revision: str = {bad!r}"))
    (folder / "other_x.py").write_text(migration_text("bbbb2222", "aaaa1111"))
    (folder / "typo_x.py").write_text(migration_text("cccc3333", "ab'c\"d\\\ny"))  # close to the bad id
    snapshot = Engine([root], trusted=False, cache=False).snapshot()
    (state,) = snapshot.environments
    assert bad in state.graph.by_id
    offered = []
    for path in folder.glob("*.py"):
        lines = path.read_text().splitlines()
        for line in range(len(lines)):
            offered += code_actions(snapshot, path.resolve(), Span(line, 0, line, len(lines[line])), None,
                                    Locator(snapshot), SUPPORT)
    titles = [a.title for a in offered]
    assert any(x.startswith("Point to current head 'bbbb2222'") for x in titles)  # plain ids still offered
    assert any(x.startswith("Rebase onto 'bbbb2222'") or x.startswith("Create next") for x in titles)
    for action in offered:
        assert bad not in action.title and "ab'c" not in action.title
        for edits in ((action.edit.changes or {}).values() if action.edit else []):
            assert all("ab'c" not in e.new_text for e in edits)
        for change in (action.edit.document_changes or [] if action.edit else []):
            if isinstance(change, t.TextDocumentEdit):
                assert all("ab'c" not in e.new_text for e in change.edits)


def test_cli_revision_renders_the_projects_template_in_a_child_process(tmp_path: Path):
    """`migration-lsp revision` renders script.py.mako as `alembic revision` does (it is
    for trusted checkouts), but not in its own process; a broken template falls back."""
    import subprocess
    import sys

    project = copy_example(tmp_path)
    for path in versions(project).glob("*.py"):  # one head, so no --head is needed
        path.write_text(path.read_text().replace("bd474000086b", "bd474000068b"))
    (file_of(project, HEAD_A)).unlink()
    sentinel = sentinel_template(project)
    proc = subprocess.Popen([sys.executable, "-m", "migration_lsp", "revision", "-m", "next"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (new,) = [p for p in versions(project).glob("*_next.py")]
    assert MARK in new.read_text()
    assert sentinel.exists() and int(sentinel.read_text()) != proc.pid
    new.unlink()
    hostile_template(project, "<% raise RuntimeError('template is broken') %>")
    proc = subprocess.run([sys.executable, "-m", "migration_lsp", "revision", "-m", "next"], cwd=project,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "template is broken" in proc.stderr and "generic template" in proc.stderr
    (new,) = [p for p in versions(project).glob("*_next.py")]
    assert MARK not in new.read_text() and "Revision ID:" in new.read_text()
