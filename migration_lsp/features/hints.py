"""Inlay hints after ids in `down_revision` / `depends_on`: the target's message."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from ..engine import Snapshot
from . import Locator

MAX_LABEL = 60


def inlay_hints(snapshot: Snapshot, path: Path, visible: types.Range, locator: Locator) -> list[types.InlayHint]:
    script = snapshot.script(path)
    state = snapshot.environment_of(path)
    if script is None or state is None:
        return []
    out = []
    for header in (script.down_revision, script.depends_on):
        if header is None:
            continue
        for ident in header.ids:
            if not visible.start.line <= ident.span.line <= visible.end.line:
                continue
            targets = state.graph.resolve(ident.value)
            if len(targets) != 1:
                continue
            message = state.graph.message(targets[0]) or targets[0]
            if len(message) > MAX_LABEL:
                message = message[: MAX_LABEL - 1] + "…"
            # after the closing quote
            end = locator.position(path, ident.span.end_line, ident.span.end_col + 1)
            out.append(types.InlayHint(position=end, label=message, padding_left=True,
                                       tooltip=f"{targets[0]} ({state.graph.by_id[targets[0]].path.name})"))
    return out
