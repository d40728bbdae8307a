"""Go to definition, find references, document and workspace symbols."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from ..core import Span
from ..engine import Snapshot
from . import Locator, id_at, references_to


def definition(snapshot: Snapshot, path: Path, position: types.Position, locator: Locator) -> list[types.Location]:
    found = id_at(snapshot, path, position.line, locator.column(path, position))
    if found is None:
        return []
    out = []
    for rev in found.targets[:10]:
        script = found.state.graph.by_id.get(rev)
        if script and script.revision:
            span = script.revision.ids[0].span if script.revision.ids else script.revision.span
            out.append(locator.location(script.path, span))
    return out


def references(
    snapshot: Snapshot, path: Path, position: types.Position, include_declaration: bool, locator: Locator
) -> list[types.Location]:
    found = id_at(snapshot, path, position.line, locator.column(path, position))
    if found is None or len(found.targets) != 1:
        return []
    out = []
    for script, kind, ident in references_to(found.state, found.targets[0]):
        if not include_declaration and kind in ("revision", "doc_revision"):
            continue
        out.append(locator.location(script.path, ident.span))
    return out


def document_symbols(snapshot: Snapshot, path: Path, locator: Locator) -> list[types.DocumentSymbol]:
    script = snapshot.script(path)
    if script is None:
        return []
    symbols = []

    def symbol(name: str, detail: str, kind: types.SymbolKind, span: Span, selection: Span, children=None):
        return types.DocumentSymbol(
            name=name or "?", detail=detail, kind=kind,
            range=locator.range(path, span), selection_range=locator.range(path, selection),
            children=children or None,
        )

    if script.revision:
        sel = script.revision.ids[0].span if script.revision.ids else script.revision.span
        symbols.append(symbol(f"revision {script.revision_id or '?'}", script.message,
                              types.SymbolKind.Constant, script.revision.span, sel))
    for name in ("down_revision", "branch_labels", "depends_on"):
        value = getattr(script, name)
        if value is not None:
            detail = ", ".join(value.values + value.unknown) or "None"
            symbols.append(symbol(name, detail, types.SymbolKind.Variable, value.span, value.span))
    for function in (script.upgrade, script.downgrade):
        if function is None:
            continue
        ops = [symbol(f"{'batch_op' if op.batch_table is not None and op.name != 'batch_alter_table' else 'op'}.{op.name}",
                      "", types.SymbolKind.Method, op.span, op.span) for op in function.ops]
        detail = "empty" if function.is_empty else f"{len(function.ops)} operations"
        symbols.append(symbol(function.name, detail, types.SymbolKind.Function, function.span, function.def_span, ops))
    return symbols


def workspace_symbols(snapshot: Snapshot, query: str, locator: Locator, limit: int = 200) -> list[types.WorkspaceSymbol]:
    needle = query.lower().strip()
    out = []
    for state in snapshot.environments:
        for rev, script in state.graph.by_id.items():
            message = script.message
            if needle and needle not in rev.lower() and needle not in message.lower():
                continue
            span = script.revision.ids[0].span if script.revision and script.revision.ids else Span.point(0)
            out.append(types.WorkspaceSymbol(
                name=f"{rev} {message}".strip(), kind=types.SymbolKind.Constant,
                location=locator.location(script.path, span), container_name=state.env.name,
            ))
            if len(out) >= limit:
                return out
    return out
