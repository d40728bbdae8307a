"""Completion of revision ids inside `down_revision` / `depends_on` strings."""

from __future__ import annotations

import re
from pathlib import Path

from lsprotocol import types

from ..core import Span
from ..engine import Snapshot
from . import Locator, md_text, pasteable

_HEADER = re.compile(r"^(down_revision|depends_on)\s*(?::[^=]*)?=")
_ID_CHARS = re.compile(r"[^'\"\s,()\[\]]*")
MAX_ITEMS = 500


def _string_prefix(lines: tuple[str, ...], line: int, col: int) -> tuple[str, str, int] | None:
    """(header name, typed prefix, column where the prefix starts) when the cursor is inside
    a string literal of a down_revision / depends_on assignment (possibly spanning lines)."""
    start = line
    while start > 0 and (not lines[start] or lines[start][0] in " \t)]"):
        start -= 1
    m = _HEADER.match(lines[start]) if start < len(lines) else None
    if not m:
        return None
    open_quote: str | None = None
    prefix_start = 0
    for n in range(start, line + 1):
        text = lines[n] if n < line else lines[n][:col]
        i = m.end() if n == start else 0
        while i < len(text):
            ch = text[i]
            if open_quote:
                if ch == open_quote:
                    open_quote = None
            elif ch in "'\"":
                open_quote, prefix_start = ch, i + 1
            elif ch == "#":
                break
            i += 1
        if open_quote and n < line:
            return None  # an unclosed string never spans lines
    if not open_quote:
        return None
    return m.group(1), lines[line][prefix_start:col], prefix_start


def completion(snapshot: Snapshot, path: Path, position: types.Position, locator: Locator) -> types.CompletionList | None:
    script = snapshot.script(path)
    state = snapshot.environment_of(path)
    if script is None or state is None or position.line >= len(script.lines):
        return None
    col = locator.column(path, position)
    found = _string_prefix(script.lines, position.line, col)
    if found is None:
        return None
    header, prefix, start = found
    graph = state.graph
    line_text = script.lines[position.line]
    ident = _ID_CHARS.match(line_text, col)  # (matches the empty string too)
    end = ident.end() if ident is not None else col
    replace = locator.range(path, Span(position.line, start, position.line, end))

    own = script.revision_id
    excluded = {own} if own else set()
    if own is not None and own in graph.by_id:
        excluded |= graph.descendants(own)  # would make a cycle
    candidates = [r for r in graph.by_id if r not in excluded and r.lower().startswith(prefix.lower()) and pasteable(r)]
    heads = set(graph.heads)
    depth = graph.depth
    candidates.sort(key=lambda r: (r not in heads, -depth.get(r, 0), r))
    items = []
    for rank, rev in enumerate(candidates[:MAX_ITEMS]):
        target = graph.by_id[rev]
        detail = target.message + ("  (head)" if rev in heads else "")
        doc = md_text(target.path.name) + (f"\n\nCreated {md_text(target.doc.create_date)}"
                                           if target.doc and target.doc.create_date else "")
        items.append(types.CompletionItem(
            label=rev, kind=types.CompletionItemKind.Reference, detail=detail,
            documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=doc),
            sort_text=f"{rank:06d}", filter_text=rev,
            text_edit=types.TextEdit(range=replace, new_text=rev),
        ))
    if header == "depends_on":
        for label, owner in sorted(graph.labels.items()):
            if label.lower().startswith(prefix.lower()) and pasteable(label):
                items.append(types.CompletionItem(
                    label=label, kind=types.CompletionItemKind.Module,
                    detail=f"branch label of {owner}", sort_text=f"z{label}", filter_text=label,
                    text_edit=types.TextEdit(range=replace, new_text=label),
                ))
    return types.CompletionList(is_incomplete=len(candidates) > MAX_ITEMS, items=items)
