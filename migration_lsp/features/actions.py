"""Code actions: quick fixes for graph diagnostics and "Create next revision".

Every fix is a WorkspaceEdit the editor applies (and can undo); nothing is written here.
A new file is a CreateFile (never overwriting) plus a TextDocumentEdit when the client
supports resource operations; otherwise the server sends the edit with workspace/applyEdit.

Listing is cheap and reads only the snapshot it is given (the server's latest, whose
schema part may be a pass behind): VS Code asks on every cursor move. Two kinds of fix are
*deferred* — listed with `data` and no edit, built by `codeAction/resolve` (or, for clients
that cannot resolve an edit, as a command the server runs the same way):

- those that create a file: they render a template, and the project's `script.py.mako` is
  project code;
- those that need the schema history (Fill downgrade()): the server builds them from a
  complete snapshot, replaying what they need in slices, never while listing.

Each fix is built on its own: one that fails is logged once and the others stay.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from alembic.util import rev_id
from lsprotocol import types

from ..core import Diagnostic, Span, say_once
from ..engine import EnvironmentState, Snapshot
from ..render import render_migration, render_ops, render_revision
from ..replay import reversed_upgrade
from ..scripts import MigrationScript
from . import Locator, pasteable, path_to_uri, uri_to_path
from .diagnostics import to_lsp
from .git_fixes import GIT_FIX_CODES, git_fixes
from .pg_ddl_fixes import PG_DDL_CODES, pg_ddl_fixes
from .safety_fixes import SAFETY_CODES, safety_fixes
from .txn_fixes import txn_fixes
from .txn_fixes import wants as txn_wants

APPLY_EDIT = "migrationLsp.applyEdit"  # arguments: [data of an action that creates a file]
CREATE_NEXT_KIND = "source.migrationLsp.createNextRevision"
GENERATE_KIND = "source.migrationLsp.generateRevision"
MAX_CHOICES = 3


@dataclass(frozen=True)
class EditSupport:
    """What the client said it can apply (workspace.workspaceEdit capabilities)."""

    document_changes: bool = False
    create: bool = False
    rename: bool = False
    resolve: bool = False  # codeAction/resolve may fill in `edit`

    @classmethod
    def from_capabilities(cls, caps: types.ClientCapabilities | None) -> EditSupport:
        action = caps.text_document.code_action if caps and caps.text_document else None
        resolve_support = action.resolve_support if action else None
        resolve = bool(resolve_support and "edit" in (resolve_support.properties or []))
        edit = caps.workspace.workspace_edit if caps and caps.workspace else None
        if edit is None:
            return cls(resolve=resolve)
        ops = {str(op.value if hasattr(op, "value") else op) for op in (edit.resource_operations or [])}
        # resource operations only exist inside documentChanges: declaring them implies it
        # (Neovim 0.11 declares resourceOperations but not documentChanges)
        return cls(bool(edit.document_changes) or bool(ops), "create" in ops, "rename" in ops, resolve)


@dataclass
class _Change:
    """Edits of one action before they become a WorkspaceEdit."""

    edits: dict[Path, list[tuple[Span, str]]] = field(default_factory=dict)
    create: tuple[Path, str] | None = None
    rename: tuple[Path, Path] | None = None
    note: str | None = None  # why the project's template was not used

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


@dataclass
class _Fix:
    """One action before it becomes LSP: `build` makes its edits, only when needed. An
    action that creates a file (`creates`) is built only when resolved or run."""

    title: str
    kind: str
    build: Callable[[], _Change | None]
    diagnostic: types.Diagnostic | None = None
    preferred: bool = False
    creates: bool = False
    schema: bool = False  # reads the replayed schema: built from a complete snapshot only

    @property
    def deferred(self) -> bool:
        """Built when resolved or run, never when listed."""
        return self.creates or self.schema


def _listed(fix: _Fix, data: dict, locator: Locator, support: EditSupport) -> types.CodeAction | types.Command | None:
    """The action as listed. A file-creating one carries `data` instead of an edit: a
    CodeAction to resolve, or (clients that cannot resolve an edit, or create files) a
    Command the server runs. Any other fix is built now; None when there is nothing to do."""
    diagnostics = [fix.diagnostic] if fix.diagnostic else None
    if fix.deferred:
        if support.resolve and (not fix.creates or (support.document_changes and support.create)):
            return types.CodeAction(title=fix.title, kind=fix.kind, diagnostics=diagnostics,
                                    is_preferred=fix.preferred or None, data=data)
        return types.Command(title=fix.title, command=APPLY_EDIT, arguments=[data])
    change = fix.build()
    if change is None:
        return None
    return types.CodeAction(title=fix.title, kind=fix.kind, diagnostics=diagnostics,
                            is_preferred=fix.preferred or None, edit=_workspace_edit(change, locator, support))


def _label(state: EnvironmentState, rev: str) -> str:
    message = state.graph.message(rev)
    return f"'{rev}' ({message})" if message else f"'{rev}'"


# --------------------------------------------------------------------------- fixes


def _new_file(state: EnvironmentState, message: str, parents: list[str], exists: Callable[[Path], bool],
              trusted: bool, **bodies: str) -> _Change:
    new = render_revision(state.env, state.graph, message, parents, exists=exists, trusted=trusted, **bodies)
    return _Change(create=(new.path, new.text), note=new.note)


def _set_parent(script: MigrationScript, parent: str) -> _Change:
    change = _Change()
    assert script.down_revision is not None
    change.replace(script.path, script.down_revision.ids[0].span, parent)
    if script.doc and script.doc.revises_line:
        change.replace(script.path, script.doc.revises_line, parent)
    return change


def _fixes_for(
    d: Diagnostic, script: MigrationScript, state: EnvironmentState, locator: Locator,
    exists: Callable[[Path], bool], trusted: bool,
) -> Iterator[_Fix]:
    """The fixes of one diagnostic: titles now, edits when built. Ids a fix would paste
    into the file must be plain ids (pasteable): others are not offered."""
    graph = state.graph
    lsp = to_lsp(d, locator)
    rev = script.revision_id
    quick = types.CodeActionKind.QuickFix

    if d.code == "G001":
        heads = list(d.data.get("heads", []))
        if heads and all(pasteable(h) for h in heads):
            yield _Fix(f"Merge heads {', '.join(heads)}", quick,
                       lambda: _new_file(state, "merge heads", heads, exists, trusted), lsp, True, creates=True)
        down = script.down_revision
        if rev and down and len(down.ids) == 1 and not down.unknown and not graph.children.get(rev):
            for other in [h for h in heads if h != rev and pasteable(h)][:MAX_CHOICES]:
                yield _Fix(f"Rebase onto {_label(state, other)}", quick, partial(_set_parent, script, other), lsp)

    elif d.code in ("G002", "G003", "G007"):
        def retarget(new_id: str) -> _Change:
            change = _Change().replace(script.path, d.span, new_id)
            # keep the docstring's Revises: line in step (else G009 follows the fix)
            if d.code != "G003" and script.doc:
                for ident in script.doc.revises:
                    if ident.value == d.data.get("ref"):
                        change.replace(script.path, ident.span, new_id)
            return change

        candidates = [c for c in d.data.get("candidates", []) if pasteable(c)]
        for candidate in candidates[:MAX_CHOICES]:
            yield _Fix(f"Change to {_label(state, candidate)}", quick, partial(retarget, candidate), lsp,
                       preferred=len(candidates) == 1)
        excluded = ({rev} | graph.descendants(rev)) if rev in graph.by_id else set()
        for head in [h for h in graph.heads if h not in excluded and pasteable(h)][:MAX_CHOICES]:
            yield _Fix(f"Point to current head {_label(state, head)}", quick, partial(retarget, head), lsp)

    elif d.code == "G005" and script.revision and script.revision.ids:
        new_id = rev_id()
        while new_id in graph.by_id:
            new_id = rev_id()

        first = script.revision.ids[0]

        def new_identity() -> _Change:
            old = first.value
            change = _Change().replace(script.path, first.span, new_id)
            if script.doc and script.doc.revision_id and script.doc.revision_id.value == old:
                change.replace(script.path, script.doc.revision_id.span, new_id)
            if old and old in script.path.name:
                new_path = script.path.with_name(script.path.name.replace(old, new_id, 1))
                if not exists(new_path):
                    change.rename = (script.path, new_path)
            return change

        yield _Fix(f"Give this revision a new id ({new_id})", quick, new_identity, lsp)

    elif d.code in SAFETY_CODES or d.code in GIT_FIX_CODES or d.code in PG_DDL_CODES or txn_wants(d):
        found = txn_fixes(d, script) if txn_wants(d) else (
            safety_fixes(d, script) + git_fixes(d, script) + pg_ddl_fixes(d, script))
        for n, (title, edits) in enumerate(found):
            def change(edits=edits) -> _Change:
                out = _Change()
                for span, text in edits:
                    out.replace(script.path, span, text)
                return out

            yield _Fix(title, quick, change, lsp, preferred=not title.startswith("Ignore") and n == 0)

    elif d.code == "D001" and rev:
        yield _Fix("Fill downgrade() by reversing upgrade()", quick, lambda: _fill_downgrade(state, script), lsp,
                   preferred=True, schema=True)

    elif d.code == "G009" and rev and script.doc:
        doc = script.doc

        def header() -> _Change | None:
            change = _Change()
            if doc.revision_id_line and (not doc.revision_id or doc.revision_id.value != rev) and pasteable(rev):
                change.replace(script.path, doc.revision_id_line, rev)
            if doc.revises_line and script.down_revision is not None \
                    and all(pasteable(v) for v in script.down_revision.values):
                change.replace(script.path, doc.revises_line, ", ".join(script.down_revision.values))
            return change if change.edits else None

        yield _Fix("Update docstring header", quick, header, lsp, preferred=True)


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
    opening = nodes[0] if nodes else None
    keep_doc = isinstance(opening, ast.Expr) and isinstance(opening.value, ast.Constant) \
        and isinstance(opening.value.value, str)
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


def _generate(state: EnvironmentState, exists: Callable[[Path], bool], trusted: bool,
              diagnostic: types.Diagnostic | None = None) -> Iterator[_Fix]:
    """A new revision with the operations autogenerate would write for the models."""
    if not state.differences:
        return
    heads = [h for h in state.graph.heads if h not in state.graph.uncertain and pasteable(h)]
    verb = {"missing": "add", "extra": "drop", "changed": "alter"}
    message = "; ".join(f"{verb[d.kind]} {d.what}" for d in state.differences[:2]) + (
        " and more" if len(state.differences) > 2 else "")

    def build(head: str) -> _Change:
        # as `alembic revision --autogenerate` would write it, batch blocks included when env.py asks
        upgrades, downgrades, imports = render_migration([d.op for d in state.differences],
                                                         state.compare_options.render_as_batch,
                                                         state.compare_options.dialect)
        return _new_file(state, message, [head], exists, trusted, upgrades=upgrades, downgrades=downgrades,
                         imports=imports)

    for head in heads[:MAX_CHOICES]:
        title = "Generate revision from model changes" + (f" on top of '{head}'" if len(heads) > 1 else "")
        kind = types.CodeActionKind.QuickFix if diagnostic else GENERATE_KIND
        yield _Fix(title, kind, partial(build, head), diagnostic, creates=True)


def _generate_for(d: Diagnostic, state: EnvironmentState, locator: Locator, exists: Callable[[Path], bool],
                  trusted: bool) -> Iterator[_Fix]:
    """_generate as the fix of the model diagnostic `d`."""
    yield from _generate(state, exists, trusted, to_lsp(d, locator))


def _create_next(state: EnvironmentState, script: MigrationScript, exists: Callable[[Path], bool],
                 trusted: bool) -> Iterator[_Fix]:
    graph, rev = state.graph, script.revision_id
    if rev not in graph.by_id:
        return
    above = graph.descendants(rev, include_dependencies=False)  # (once, not once per head: every cursor move)
    tips = [h for h in graph.heads if h == rev or h in above]
    for head in [h for h in tips if pasteable(h)][:MAX_CHOICES]:
        yield _Fix(f"Create next revision on top of {_label(state, head)}", CREATE_NEXT_KIND,
                   partial(_new_file, state, "empty message", [head], exists, trusted), creates=True)


def _wanted(kind: str, only: list[str] | None) -> bool:
    return not only or any(kind == o or kind.startswith(o + ".") for o in only)


def _guarded(what: str, produce: Callable[..., Iterator[_Fix]], *args: Any) -> Iterator[_Fix]:
    """Items of `produce(*args)`; if it fails part-way, the ones so far, and the failure logged once."""
    try:
        yield from produce(*args)
    except Exception as exc:  # noqa: BLE001 - fixes read workspace-shaped text: one failing family, the others stay
        say_once(f"code actions: {what} failed: {type(exc).__name__}: {exc}")


def _fixes(snapshot: Snapshot, path: Path, span: Span, only: list[str] | None, locator: Locator,
           exists: Callable[[Path], bool], trusted: bool) -> Iterator[_Fix]:
    script = snapshot.script(path)
    if script is not None:
        states = [snapshot.environment_of(path)]
    else:  # a model file: the environments whose diagnostics point into it
        states = [s for s in snapshot.environments if s.by_path.get(path)]
    for state in states:
        if state is None:
            continue
        here = [d for d in state.by_path.get(path, ())  # (this file's only: every cursor move)
                if d.span.line <= span.end_line and span.line <= d.span.end_line]
        if _wanted(types.CodeActionKind.QuickFix, only):
            generated = False
            for d in here:
                if d.code in ("M001", "M002", "M003"):
                    if not generated:  # one revision covers every difference
                        generated = True
                        yield from _guarded(f"{d.code} fixes", _generate_for, d, state, locator, exists, trusted)
                elif script is not None:
                    yield from _guarded(f"{d.code} fixes", _fixes_for, d, script, state, locator, exists, trusted)
        if script is None:
            continue
        if _wanted(CREATE_NEXT_KIND, only):
            yield from _guarded("create next revision", _create_next, state, script, exists, trusted)
        if _wanted(GENERATE_KIND, only) and not any(d.code in ("M001", "M002", "M003") for d in here):
            yield from _guarded("generate revision", _generate, state, exists, trusted)


def code_actions(
    snapshot: Snapshot, path: Path, span: Span, only: list[str] | None, locator: Locator,
    support: EditSupport, exists: Callable[[Path], bool] = Path.exists, trusted: bool = False,
) -> list[types.CodeAction | types.Command]:
    """The actions at `span`. Nothing is rendered here: see the module's docstring."""
    out: list[types.CodeAction | types.Command] = []
    for fix in _fixes(snapshot, path, span, only, locator, exists, trusted):
        data = {"uri": path_to_uri(path), "span": [span.line, span.col, span.end_line, span.end_col], "title": fix.title}
        try:
            action = _listed(fix, data, locator, support)
        except Exception as exc:  # noqa: BLE001 - building one fix (workspace text, Alembic's renderer): it alone is lost
            say_once(f"code action {fix.title!r} failed: {type(exc).__name__}: {exc}")
            continue
        if action is not None:
            out.append(action)
    return out


def deferred_fix(
    snapshot: Snapshot, data: object, locator: Locator,
    exists: Callable[[Path], bool] = Path.exists, trusted: bool = False,
) -> _Fix | None:
    """The listed deferred action that `data` names, found again in `snapshot` (cheap: its
    edit is not built). None when the action no longer exists (the graph changed)."""
    if not isinstance(data, dict) or not isinstance(data.get("uri"), str) or not isinstance(data.get("title"), str):
        return None
    path = uri_to_path(data["uri"])
    raw = data.get("span")
    if path is None or not (isinstance(raw, list) and len(raw) == 4 and all(isinstance(n, int) for n in raw)):
        return None
    fix = next((f for f in _fixes(snapshot, path, Span(*raw), None, locator, exists, trusted)
                if f.title == data["title"] and f.deferred), None)
    if fix is None:
        say_once(f"code action {data['title']!r} is out of date: the revisions changed")
    return fix


def schema_target(snapshot: Snapshot, data: object) -> tuple[EnvironmentState, str] | None:
    """(environment, revision) whose replayed schema the action `data` names needs, if any:
    the server replays it in slices before building the edit."""
    path = uri_to_path(data["uri"]) if isinstance(data, dict) and isinstance(data.get("uri"), str) else None
    script = snapshot.script(path) if path is not None else None
    state = snapshot.environment_of(path) if path is not None else None
    if script is None or state is None or script.revision_id not in state.graph.by_id:
        return None
    return state, script.revision_id


def build_edit(fix: _Fix, locator: Locator, support: EditSupport) -> types.WorkspaceEdit | None:
    """The edit of a deferred action (None when there is nothing to do, or it failed: logged once)."""
    try:
        change = fix.build()
    except Exception as exc:  # noqa: BLE001 - a fix renders workspace-shaped ops with Alembic: logged, no edit
        say_once(f"code action {fix.title!r} failed: {type(exc).__name__}: {exc}")
        return None
    if change is None:
        return None
    if change.note:
        say_once(change.note)
    return _workspace_edit(change, locator, support)


async def resolve_edit(
    snapshot: Snapshot, data: object, locator: Locator, support: EditSupport,
    exists: Callable[[Path], bool] = Path.exists, trusted: bool = False,
    replay: Callable[[EnvironmentState, str], Awaitable[None]] | None = None,
) -> types.WorkspaceEdit | None:
    """The edit of a listed deferred action (its `data`), built now from `snapshot` (which
    must be complete: a full pass's): on codeAction/resolve, or when the client runs the
    action's command. None when the action no longer exists or cannot be built.

    A fix that needs the schema first has `replay` bring its revision's schema up (the server
    replays in slices between requests), then is built on the loop (one revision's ops); a
    file is rendered off the loop (a trusted workspace renders its own template in a child)."""
    fix = deferred_fix(snapshot, data, locator, exists, trusted)
    if fix is None:
        return None
    if fix.schema:
        target = schema_target(snapshot, data)
        if target is not None and replay is not None:
            await replay(*target)
        return build_edit(fix, locator, support)
    return await asyncio.to_thread(build_edit, fix, locator, support)
