"""Code lens on the `revision =` line: where this revision sits in the graph."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from ..engine import Snapshot
from . import Locator

SHOW_GRAPH = "migrationLsp.showGraph"


def lens_title(snapshot: Snapshot, path: Path) -> str | None:
    script = snapshot.script(path)
    state = snapshot.environment_of(path)
    if script is None or state is None:
        return None
    graph, rev = state.graph, script.revision_id
    if rev is None or rev not in graph.by_id:
        return None
    parts = []
    children = graph.children[rev]
    if rev in graph.heads:
        parts.append("head")
    else:
        parts.append(f"{len(children)} child{'ren' if len(children) != 1 else ''}")
    if rev in graph.merge_points:
        parts.append("merge of " + ", ".join(graph.parents[rev]))
    if rev in graph.bases:
        parts.append("base")
    if rev in graph.branch_points:
        parts.append("branch point")
    labels = sorted(graph.inherited_labels.get(rev, ()))
    if labels:
        parts.append("branch " + ", ".join(labels))
    return " · ".join(parts)


def code_lenses(snapshot: Snapshot, path: Path, locator: Locator) -> list[types.CodeLens]:
    title = lens_title(snapshot, path)
    script = snapshot.script(path)
    if title is None or script is None or script.revision is None:
        return []
    return [types.CodeLens(
        range=locator.range(path, script.revision.span),
        command=types.Command(title=title, command=SHOW_GRAPH, arguments=[path.as_uri()]),
    )]
