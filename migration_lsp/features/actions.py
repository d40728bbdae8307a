"""Code actions: quick fixes for graph diagnostics and "Create next revision".

Every fix is a WorkspaceEdit the editor applies (and can undo); nothing is written here.
A new file is a CreateFile (never overwriting) plus a TextDocumentEdit when the client
supports resource operations; otherwise the action carries a command that makes the
server send the same edit with workspace/applyEdit.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alembic.util import rev_id
from lsprotocol import converters, types

from ..core import Diagnostic, Span
from ..engine import EnvironmentState, Snapshot
from ..render import render_migration, render_ops, render_revision
from ..schema import reversed_upgrade
from ..scripts import MigrationScript
from . import Locator, path_to_uri
from .safety_fixes import SAFETY_CODES, safety_fixes
from .git_fixes import GIT_FIX_CODES, git_fixes
from .diagnostics import to_lsp

APPLY_EDIT = "migrationLsp.applyEdit"
CREATE_NEXT_KIND = "source.migrationLsp.createNextRevision"
GENERATE_KIND = "source.migrationLsp.generateRevision"
MAX_CHOICES = 3


@dataclass(frozen=True)
class EditSupport:
    """What the client said it can apply (workspace.workspaceEdit capabilities)."""

    document_changes: bool = False
    create: bool = False
    rename: bool = False

    @classmethod
    def from_capabilities(cls, caps: types.ClientCapabilities | None) -> EditSupport:
        edit = caps.workspace.workspace_edit if caps and caps.workspace else None
        if edit is None:
            return cls()
        ops = {str(op.value if hasattr(op, "value") else op) for op in (edit.resource_operations or [])}
        # resource operations only exist inside documentChanges: declaring them implies it
        # (Neovim 0.11 declares resourceOperations but not documentChanges)
        return cls(bool(edit.document_changes) or bool(ops), "create" in ops, "rename" in ops)


@dataclass
class _Change:
    """Edits of one action before they become a WorkspaceEdit."""

    edits: dict[Path, list[tuple[Span, str]]] = field(default_factory=dict)
    create: tuple[Path, str] | None = None
    rename: tuple[Path, Path] | None = None

    def replace(self, path: Path, span: Span, text: str) -> _Change:
        self.edits.setdefault(path, []).append((span, text))
        return self


def _workspace_edit(change: _Change, locator: Locator, support: EditSupport) -> types.WorkspaceEdit:
    def text_edits(path: Path) -> list[types.TextEdit]:
        return [types.TextEdit(range=locator.range(path, span), new_text=text) for span, text in change.edits[path]]

    if change.create is not None:
        path, text = change.create
        uri = path_to_uri(path)
        edit = types.TextEdit(range=types.Range(types.Position(0, 0), types.Position(0, 0)), new_text=text)
        if support.document_changes and support.create:
            return types.WorkspaceEdit(document_changes=[
                types.CreateFile(uri=uri, options=types.CreateFileOptions(overwrite=False, ignore_if_exists=False)),
                types.TextDocumentEdit(
                    text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None), edits=[edit]),
            ])
        return types.WorkspaceEdit(changes={uri: [edit]})
    if support.document_changes:
        doc_changes: list = [
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(uri=path_to_uri(p), version=None),
                edits=text_edits(p))
            for p in change.edits
        ]
        if change.rename and support.rename:
            old, new = change.rename
            doc_changes.append(types.RenameFile(
                old_uri=path_to_uri(old), new_uri=path_to_uri(new),
                options=types.RenameFileOptions(overwrite=False, ignore_if_exists=False)))
        return types.WorkspaceEdit(document_changes=doc_changes)
    return types.WorkspaceEdit(changes={path_to_uri(p): text_edits(p) for p in change.edits})


def _action(
    title: str, kind: str, change: _Change, locator: Locator, support: EditSupport,
    diagnostic: types.Diagnostic | None = None, preferred: bool = False,
) -> types.CodeAction | types.Command:
    edit = _workspace_edit(change, locator, support)
    if change.create is not None and not (support.document_changes and support.create):
        # The client cannot create files through an edit: a bare Command (understood by
        # every client) makes the server ask it to apply the edit with workspace/applyEdit.
        payload = converters.get_converter().unstructure(edit)
        return types.Command(title=title, command=APPLY_EDIT, arguments=[payload])
    return types.CodeAction(title=title, kind=kind, diagnostics=[diagnostic] if diagnostic else None,
                            is_preferred=preferred or None, edit=edit)


def _label(state: EnvironmentState, rev: str) -> str:
    message = state.graph.message(rev)
    return f"'{rev}' ({message})" if message else f"'{rev}'"


# --------------------------------------------------------------------------- fixes


def _merge_heads(state: EnvironmentState, heads: list[str], exists: Callable[[Path], bool]) -> _Change:
    new = render_revision(state.env, state.graph, "merge heads", heads, exists=exists)
    return _Change(create=(new.path, new.text))


def _set_parent(script: MigrationScript, parent: str) -> _Change:
    change = _Change()
    assert script.down_revision is not None
    change.replace(script.path, script.down_revision.ids[0].span, parent)
    if script.doc and script.doc.revises_line:
        change.replace(script.path, script.doc.revises_line, parent)
    return change


def _fixes_for(
    d: Diagnostic, script: MigrationScript, state: EnvironmentState, locator: Locator,
    support: EditSupport, exists: Callable[[Path], bool],
) -> list[types.CodeAction | types.Command]:
    graph = state.graph
    lsp = to_lsp(d, locator)
    out: list[types.CodeAction | types.Command] = []
    rev = script.revision_id

    if d.code == "G001":
        heads = list(d.data.get("heads", []))
        out.append(_action(f"Merge heads {', '.join(heads)}", types.CodeActionKind.QuickFix,
                           _merge_heads(state, heads, exists), locator, support, lsp, preferred=True))
        down = script.down_revision
        if rev and down and len(down.ids) == 1 and not down.unknown and not graph.children.get(rev):
            for other in [h for h in heads if h != rev][:MAX_CHOICES]:
                out.append(_action(f"Rebase onto {_label(state, other)}", types.CodeActionKind.QuickFix,
                                   _set_parent(script, other), locator, support, lsp))

    elif d.code in ("G002", "G003", "G007"):
        def retarget(new_id: str) -> _Change:
            change = _Change().replace(script.path, d.span, new_id)
            # keep the docstring's Revises: line in step (else G009 follows the fix)
            if d.code != "G003" and script.doc:
                for ident in script.doc.revises:
                    if ident.value == d.data.get("ref"):
                        change.replace(script.path, ident.span, new_id)
            return change

        candidates = d.data.get("candidates", [])
        for candidate in candidates[:MAX_CHOICES]:
            out.append(_action(f"Change to {_label(state, candidate)}", types.CodeActionKind.QuickFix,
                               retarget(candidate), locator, support, lsp, preferred=len(candidates) == 1))
        excluded = ({rev} | graph.descendants(rev)) if rev in graph.by_id else set()
        for head in [h for h in graph.heads if h not in excluded][:MAX_CHOICES]:
            out.append(_action(f"Point to current head {_label(state, head)}", types.CodeActionKind.QuickFix,
                               retarget(head), locator, support, lsp))

    elif d.code == "G005" and script.revision and script.revision.ids:
        new_id = rev_id()
        while new_id in graph.by_id:
            new_id = rev_id()
        old = script.revision.ids[0].value
        change = _Change().replace(script.path, script.revision.ids[0].span, new_id)
        if script.doc and script.doc.revision_id and script.doc.revision_id.value == old:
            change.replace(script.path, script.doc.revision_id.span, new_id)
        if old in script.path.name:
            new_path = script.path.with_name(script.path.name.replace(old, new_id, 1))
            if not exists(new_path):
                change.rename = (script.path, new_path)
        out.append(_action(f"Give this revision a new id ({new_id})", types.CodeActionKind.QuickFix,
                           change, locator, support, lsp))

    elif d.code in SAFETY_CODES or d.code in GIT_FIX_CODES:
        for title, edits in safety_fixes(d, script) + git_fixes(d, script):
            change = _Change()
            for span, text in edits:
                change.replace(script.path, span, text)
            out.append(_action(title, types.CodeActionKind.QuickFix, change, locator, support, lsp,
                               preferred=not title.startswith("Ignore") and not out))

    elif d.code == "D001" and rev:
        change = _fill_downgrade(state, script)
        if change is not None:
            out.append(_action("Fill downgrade() by reversing upgrade()", types.CodeActionKind.QuickFix,
                               change, locator, support, lsp, preferred=True))

    elif d.code == "G009" and rev and script.doc:
        change = _Change()
        if script.doc.revision_id_line and (not script.doc.revision_id or script.doc.revision_id.value != rev):
            change.replace(script.path, script.doc.revision_id_line, rev)
        if script.doc.revises_line and script.down_revision is not None:
            change.replace(script.path, script.doc.revises_line, ", ".join(script.down_revision.values))
        if change.edits:
            out.append(_action("Update docstring header", types.CodeActionKind.QuickFix,
                               change, locator, support, lsp, preferred=True))
    return out


def _fill_downgrade(state: EnvironmentState, script: MigrationScript) -> _Change | None:
    """downgrade() body = Alembic's `.reverse()` of the upgrade ops, completed with the
    schema history (what a dropped column or an altered type was before)."""
    rev, down = script.revision_id, script.downgrade
    if state.replay is None or rev not in state.graph.by_id or down is None or down.node is None:
        return None
    schema = state.replay.revision(rev)
    ops, irreversible = reversed_upgrade(schema.upgrade, schema.before)
    if not ops:
        return None
    # batch blocks when env.py renders them, or when the upgrade itself needed them (SQLite)
    batch = state.compare_options.render_as_batch or any(ev.call.batch_table for ev in schema.upgrade)
    text, imports = render_ops(ops, batch, state.compare_options.dialect)
    body = "    " + text
    for ev in irreversible:
        body += f"\n    # TODO migration-lsp: reverse by hand: line {ev.span.line + 1}: op.{ev.call.name}(...)"
    nodes = down.node.body
    keep_doc = bool(nodes) and isinstance(nodes[0], ast.Expr) and isinstance(getattr(nodes[0], "value", None), ast.Constant) \
        and isinstance(nodes[0].value.value, str)
    offset = down.span.line - (down.node.lineno - 1)
    first = nodes[1] if keep_doc and len(nodes) > 1 else (None if keep_doc else nodes[0])
    last = nodes[-1]
    end_line = (last.end_lineno or last.lineno) - 1 + offset
    change = _Change()
    if first is None:  # only a docstring: add the body after it
        line = end_line
        change.replace(script.path, Span(line, len(script.lines[line]), line, len(script.lines[line])), "\n" + body)
    else:
        start = first.lineno - 1 + offset
        change.replace(script.path, Span(start, 0, end_line, len(script.lines[end_line])), body)
    _add_imports(change, script, imports)
    return change


def _add_imports(change: _Change, script: MigrationScript, imports: set[str]) -> None:
    """Imports the rendered code needs that the file does not have yet (after its last import)."""
    present = "\n".join(script.lines)
    missing = sorted(i for i in imports if i not in present)
    if not missing:
        return
    last = max((n for n, line in enumerate(script.lines) if line.startswith(("import ", "from "))), default=None)
    at = (last + 1) if last is not None else 0
    change.replace(script.path, Span(at, 0, at, 0), "".join(f"{i}\n" for i in missing))


def _generate(state: EnvironmentState, locator: Locator, support: EditSupport, exists: Callable[[Path], bool],
              diagnostic: types.Diagnostic | None = None) -> list[types.CodeAction | types.Command]:
    """A new revision with the operations autogenerate would write for the models."""
    if not state.differences:
        return []
    ops = [d.op for d in state.differences]
    # as `alembic revision --autogenerate` would write it, batch blocks included when env.py asks
    upgrades, downgrades, imports = render_migration(ops, state.compare_options.render_as_batch,
                                                     state.compare_options.dialect)
    heads = [h for h in state.graph.heads if h not in state.graph.uncertain]
    out: list[types.CodeAction | types.Command] = []
    for head in heads[:MAX_CHOICES]:
        verb = {"missing": "add", "extra": "drop", "changed": "alter"}
        message = "; ".join(f"{verb[d.kind]} {d.what}" for d in state.differences[:2]) + (
            " and more" if len(state.differences) > 2 else "")
        new = render_revision(state.env, state.graph, message, [head], upgrades=upgrades, downgrades=downgrades,
                              imports=imports, exists=exists)
        title = "Generate revision from model changes" + (f" on top of '{head}'" if len(heads) > 1 else "")
        kind = types.CodeActionKind.QuickFix if diagnostic else GENERATE_KIND
        out.append(_action(title, kind, _Change(create=(new.path, new.text)), locator, support, diagnostic))
    return out


def _create_next(
    state: EnvironmentState, script: MigrationScript, locator: Locator, support: EditSupport,
    exists: Callable[[Path], bool],
) -> list[types.CodeAction | types.Command]:
    graph, rev = state.graph, script.revision_id
    if rev not in graph.by_id:
        return []
    tips = [h for h in graph.heads if h == rev or h in graph.descendants(rev, include_dependencies=False)]
    out: list[types.CodeAction | types.Command] = []
    for head in tips[:MAX_CHOICES]:
        new = render_revision(state.env, graph, "empty message", [head], exists=exists)
        title = f"Create next revision on top of {_label(state, head)}"
        out.append(_action(title, CREATE_NEXT_KIND, _Change(create=(new.path, new.text)), locator, support))
    return out


def _wanted(kind: str, only: list[str] | None) -> bool:
    return not only or any(kind == o or kind.startswith(o + ".") for o in only)


def code_actions(
    snapshot: Snapshot, path: Path, span: Span, only: list[str] | None, locator: Locator,
    support: EditSupport, exists: Callable[[Path], bool] = Path.exists,
) -> list[types.CodeAction | types.Command]:
    script = snapshot.script(path)
    if script is not None:
        states = [snapshot.environment_of(path)]
    else:  # a model file: the environments whose diagnostics point into it
        states = [s for s in snapshot.environments if any(d.path == path for d in s.diagnostics)]
    out: list[types.CodeAction | types.Command] = []
    for state in states:
        if state is None:
            continue
        here = [d for d in state.diagnostics
                if d.path == path and d.span.line <= span.end_line and span.line <= d.span.end_line]
        if _wanted(types.CodeActionKind.QuickFix, only):
            generated = False
            for d in here:
                if d.code in ("M001", "M002", "M003"):
                    if not generated:  # one revision covers every difference
                        generated = True
                        out.extend(_generate(state, locator, support, exists, to_lsp(d, locator)))
                elif script is not None:
                    out.extend(_fixes_for(d, script, state, locator, support, exists))
        if script is None:
            continue
        if _wanted(CREATE_NEXT_KIND, only):
            out.extend(_create_next(state, script, locator, support, exists))
        if _wanted(GENERATE_KIND, only) and not any(d.code in ("M001", "M002", "M003") for d in here):
            out.extend(_generate(state, locator, support, exists))
    return out
