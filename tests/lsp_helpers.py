"""Helpers for driving the real server through pytest-lsp: a client that answers the
server's requests, and a tiny applier of WorkspaceEdits (what an editor does)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from lsprotocol import types as t
from pytest_lsp import LanguageClient, make_test_lsp_client

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "blog"
SERVER_COMMAND = [sys.executable, "-m", "migration_lsp", "serve"]

HEAD_A = "2d91aa861ea7"  # add user bio (teammate's branch)
HEAD_B = "bd474000068b"  # add display name and post date index
TYPO_REV = "4327c6748b81"  # down_revision typo'd as bd474000086b
BASE = "cbdb87983bfd"


async def wait_for(predicate, timeout: float = 10.0):
    """Poll until the server's notifications make predicate() true."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def codes(client: LanguageClient, path: Path) -> list[tuple[str, int]]:
    """(code, line) of the diagnostics the client holds for `path`, sorted."""
    return sorted((d.code, d.range.start.line) for d in client.diagnostics.get(path.as_uri(), []))


def client_factory() -> LanguageClient:
    """pytest-lsp's default client answers neither client/registerCapability nor
    workspace/applyEdit; a real editor does both."""
    client = make_test_lsp_client()
    client.registrations = []
    client.applied_edits = []

    @client.feature(t.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: t.RegistrationParams):
        client.registrations.extend(params.registrations)

    @client.feature(t.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: t.ApplyWorkspaceEditParams):
        client.applied_edits.append(params.edit)
        return t.ApplyWorkspaceEditResult(applied=True)

    return client


async def resolved(client: LanguageClient, action: t.CodeAction) -> t.CodeAction:
    """What an editor does before applying an action listed without an edit (one that
    creates a file: the server renders it only now): codeAction/resolve."""
    if action.edit is None and action.data is not None:
        action = await client.code_action_resolve_async(action)
    return action


def copy_example(dest: Path) -> Path:
    target = dest / "blog"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    return target


def versions(project: Path) -> Path:
    return project / "migrations" / "versions"


def file_of(project: Path, rev: str) -> Path:
    (path,) = versions(project).glob(f"{rev}_*.py")
    return path


def _offset(text: str, pos: t.Position) -> int:
    lines = text.splitlines(keepends=True)
    before = sum(len(line) for line in lines[: pos.line])
    return before + pos.character  # tests use ASCII files: all encodings agree


def apply_text_edits(text: str, edits: list[t.TextEdit]) -> str:
    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        start, end = _offset(text, edit.range.start), _offset(text, edit.range.end)
        text = text[:start] + edit.new_text + text[end:]
    return text


def uri_path(uri: str) -> Path:
    from migration_lsp.features import uri_to_path

    path = uri_to_path(uri)
    assert path is not None
    return path


def apply_workspace_edit(edit: t.WorkspaceEdit, buffers: dict[Path, str] | None = None) -> dict[Path, str]:
    """Apply to disk the way an editor would (then saves); returns the new texts by path.
    CreateFile must not overwrite (the server asked for overwrite=False)."""
    buffers = buffers if buffers is not None else {}
    written: dict[Path, str] = {}

    def text_of(path: Path) -> str:
        if path in written:
            return written[path]
        return buffers.get(path, path.read_text() if path.exists() else "")

    for change in edit.document_changes or []:
        if isinstance(change, t.CreateFile):
            path = uri_path(change.uri)
            assert not path.exists(), f"CreateFile would overwrite {path}"
            assert change.options is None or not change.options.overwrite
            written[path] = ""
        elif isinstance(change, t.TextDocumentEdit):
            path = uri_path(change.text_document.uri)
            written[path] = apply_text_edits(text_of(path), list(change.edits))
        elif isinstance(change, t.RenameFile):
            old, new = uri_path(change.old_uri), uri_path(change.new_uri)
            assert not new.exists()
            written[new] = text_of(old)
            written.pop(old, None)
            old.unlink()
    for uri, edits in (edit.changes or {}).items():
        path = uri_path(uri)
        written[path] = apply_text_edits(text_of(path), list(edits))
    for path, text in written.items():
        path.write_text(text)
    return written
