"""Hover on any revision id: what the revision is and where it sits in the graph."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from lsprotocol import types

from ..engine import EnvironmentState
from . import IdAtCursor, Locator, id_at, md_code, md_text, path_to_uri
from .op_hover import op_hover


def _name(state: EnvironmentState, rev: str) -> str:
    message = state.graph.message(rev)
    return f"{md_code(rev)} {md_text(message)}" if message else md_code(rev)


def describe_revision(state: EnvironmentState, rev: str) -> str:
    """Markdown card for one revision."""
    graph = state.graph
    script = graph.by_id[rev]
    title = md_text(script.message) if script.message else "(no message)"
    lines = [f"**{title}**", "", f"Revision {md_code(rev)}"]
    lines.append(f"- File: [{md_text(script.path.name)}]({path_to_uri(script.path)})")
    if script.doc and script.doc.create_date:
        lines.append(f"- Created: {md_text(script.doc.create_date)}")
    written = script.down_revision.values if script.down_revision else ()
    parents = [_name(state, found) if (found := graph.resolve_exact(p)) else f"{md_code(p)} (missing)" for p in written]
    lines.append("- Parents: " + (", ".join(parents) if parents else "none (base)"))
    if graph.dependencies.get(rev):
        lines.append("- Depends on: " + ", ".join(_name(state, d) for d in graph.dependencies[rev]))
    children = graph.children.get(rev, [])
    lines.append("- Children: " + (", ".join(_name(state, c) for c in children) if children else "none"))
    status = []
    if rev in graph.heads:
        status.append("head")
    if rev in graph.bases:
        status.append("base")
    if rev in graph.merge_points:
        status.append("merge point")
    if rev in graph.branch_points:
        status.append("branch point")
    if status:
        lines.append("- Status: " + ", ".join(status))
    labels = sorted(graph.inherited_labels.get(rev, ()))
    if labels:
        lines.append("- Branch labels: " + ", ".join(md_code(label) for label in labels))
    if rev in graph.depth and len(graph.parents.get(rev, ())) == len(written):
        lines.append(f"- Distance from base: {graph.depth[rev] - 1}")
    if script.upgrade is not None:
        ops = Counter(op.name for op in script.upgrade.ops if op.name != "batch_alter_table")
        summary = ", ".join(f"{md_text(name)} ×{n}" if n > 1 else md_text(name) for name, n in ops.items())
        lines.append("- Upgrade: " + (summary if summary else "no operations"))
    return "\n".join(lines)


def hover_text(found: IdAtCursor) -> str:
    state, ident = found.state, found.id_string
    if len(found.targets) == 1:
        text = describe_revision(state, found.targets[0])
        if ident.value != found.targets[0] and found.kind != "branch_labels":
            how = "branch label" if ident.value in state.graph.labels else "partial id"
            text = f"*{how}* {md_code(ident.value)} →\n\n" + text
        return text
    if len(found.targets) > 1:
        shown = "\n".join(f"- {_name(state, t)}" for t in found.targets[:10])
        return f"{md_code(ident.value)} is ambiguous: it is a prefix of {len(found.targets)} revisions\n\n{shown}"
    return f"{md_code(ident.value)}: no revision or branch label has this id in environment {md_code(state.env.name)}"


def hover(snapshot, path: Path, position: types.Position, locator: Locator) -> types.Hover | None:
    found = id_at(snapshot, path, position.line, locator.column(path, position))
    if found is None:  # an op call: its SQL, locks and table (op_hover.py)
        return op_hover(snapshot, path, position, locator)
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=hover_text(found)),
        range=locator.range(path, found.id_string.span),
    )
