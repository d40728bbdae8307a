"""LSP features as plain functions of an immutable Snapshot (one module per feature).

They return lsprotocol types; `Locator` turns the engine's code-point spans into LSP ranges
in the encoding negotiated with the client (utf-16 unless it offered utf-8), and back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types

from ..core import Span, printable
from ..engine import EnvironmentState, Snapshot
from ..replay import RevisionSchema
from ..scripts import IdString, MigrationScript


def uri_to_path(uri: str, resolve: Callable[[Path], Path] = Path.resolve) -> Path | None:
    """file:// URIs only; anything else (untitled:, git:, http:) is not ours. `resolve`: a
    batch's `paths.Resolver` (each folder resolved once)."""
    try:
        parsed = urlparse(uri)
    except ValueError:
        return None
    if parsed.scheme != "file":
        return None
    path = unquote(parsed.path)
    if len(path) > 2 and path[0] == "/" and path[2] == ":":  # /C:/... on Windows
        path = path[1:]
    try:
        return resolve(Path(path))
    except (OSError, ValueError):
        return None


def path_to_uri(path: Path) -> str:
    return path.as_uri()


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&:])")
_PASTEABLE = re.compile(r"[\w.+\-]{1,200}")


def md_text(text: str) -> str:
    """Workspace text (a docstring, a file name, an id) inside Markdown shown by the editor:
    every character Markdown or HTML could act on is escaped, so a migration cannot put an
    image, a `command:` link or raw HTML into a hover; control characters become visible."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", printable(text))


def md_code(text: str) -> str:
    """`text` as inline code when it can be (no backtick, printable), else escaped text."""
    if text.isprintable() and "`" not in text and text.strip() == text and text:
        return f"`{text}`"
    return md_text(text)


def pasteable(rev: object) -> bool:
    """An id a feature may paste into the user's file (a quick fix, a completion): letters,
    digits and `_.+-` only, so no quote, backslash, newline or control character can close the
    string literal or the docstring it goes into."""
    return isinstance(rev, str) and _PASTEABLE.fullmatch(rev) is not None


class Locator:
    """Converts between code-point columns and the client's position encoding."""

    def __init__(self, snapshot: Snapshot, encoding: str = "utf-16") -> None:
        self.snapshot = snapshot
        self.encoding = str(encoding)
        self._files: dict[Path, tuple[str, ...]] = {}  # lines of files that are not migrations, read once

    def _line(self, path: Path, line: int) -> str:
        """The line's text as far as the units of its columns go ("" when they are code points)."""
        script = self.snapshot.script(path)
        if script is not None and script.text.isascii():
            return ""  # (O(1) on a str: every column is its own unit; the lines are not split)
        lines = script.lines if script else self._other_lines(path)
        return lines[line] if 0 <= line < len(lines) else ""

    def _other_lines(self, path: Path) -> tuple[str, ...]:
        """Lines of a file that is not a migration (a model file with an M diagnostic)."""
        cache = self._files
        if path not in cache:
            try:
                cache[path] = tuple(path.read_text(encoding="utf-8", errors="replace").split("\n"))
            except OSError:
                cache[path] = ()
        return cache[path]

    def _units(self, text: str) -> int:
        if self.encoding == "utf-8":
            return len(text.encode("utf-8"))
        if self.encoding == "utf-32":
            return len(text)
        return len(text.encode("utf-16-le")) // 2

    def position(self, path: Path, line: int, col: int) -> types.Position:
        text = self._line(path, line)
        if text.isascii():
            return types.Position(line=line, character=col)
        return types.Position(line=line, character=self._units(text[:col]))

    def range(self, path: Path, span: Span) -> types.Range:
        return types.Range(
            start=self.position(path, span.line, span.col),
            end=self.position(path, span.end_line, span.end_col),
        )

    def location(self, path: Path, span: Span) -> types.Location:
        return types.Location(uri=path_to_uri(path), range=self.range(path, span))

    def column(self, path: Path, position: types.Position) -> int:
        """Client units -> code-point column on that line."""
        text = self._line(path, position.line)
        if text.isascii():
            return position.character
        units = 0
        for index, ch in enumerate(text):
            if units >= position.character:
                return index
            units += self._units(ch)
        return len(text)


@dataclass(frozen=True)
class IdAtCursor:
    """An id string under the cursor, where it sits, and what it names."""

    script: MigrationScript
    state: EnvironmentState
    kind: str  # revision, down_revision, depends_on, branch_labels, doc_revision, doc_revises
    id_string: IdString
    targets: tuple[str, ...]  # revision ids it resolves to (exact, label or prefix)


def id_at(snapshot: Snapshot, path: Path, line: int, col: int) -> IdAtCursor | None:
    state = snapshot.environment_of(path)
    script = snapshot.script(path)
    if state is None or script is None:
        return None
    for kind, ident in script.id_strings():
        if ident.span.contains(line, col):
            targets: tuple[str, ...]
            if kind == "branch_labels":
                targets = (script.revision_id,) if script.revision_id else ()
            else:
                targets = state.graph.resolve(ident.value)
            return IdAtCursor(script, state, kind, ident, targets)
    return None


def references_to(state: EnvironmentState, rev: str) -> list[tuple[MigrationScript, str, IdString]]:
    """Every id string in the environment that names `rev` (declarations included)."""
    graph = state.graph
    out = []
    for script in state.scripts:
        for kind, ident in script.id_strings():
            if kind == "branch_labels":
                continue
            if kind in ("revision", "doc_revision"):
                if ident.value == rev and script.revision_id == rev:
                    out.append((script, kind, ident))
                continue
            if rev in graph.resolve(ident.value):
                out.append((script, kind, ident))
    return out


def replayed(state: EnvironmentState, rev: str | None) -> RevisionSchema | None:
    """One revision's replay (the schema before and after it, its evaluated ops); None without a
    replay, for a revision not in the graph, or when the replay cannot follow the history."""
    if state.replay is None or rev is None or rev not in state.graph.by_id:
        return None
    try:
        return state.replay.revision(rev)
    except Exception:  # noqa: BLE001 - the replay runs the workspace's revisions: the feature goes on without
        return None
