"""Plain records shared by every stage: source spans and diagnostics.

Positions are 0-based lines and 0-based columns counted in Unicode code points;
front ends convert (the CLI to 1-based, the server to the negotiated encoding).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging


@dataclass(frozen=True, order=True)
class Span:
    line: int
    col: int
    end_line: int
    end_col: int

    @classmethod
    def point(cls, line: int, col: int = 0) -> Span:
        return cls(line, col, line, col)

    def contains(self, line: int, col: int) -> bool:
        """Is (line, col) inside, the end included (a cursor just after a word touches it)."""
        return (self.line, self.col) <= (line, col) <= (self.end_line, self.end_col)


class Severity(IntEnum):
    """Same numbering as LSP's DiagnosticSeverity."""

    ERROR = 1
    WARNING = 2
    INFO = 3
    HINT = 4

    @property
    def label(self) -> str:
        return {1: "error", 2: "warning", 3: "info", 4: "hint"}[self.value]


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    path: Path
    span: Span
    message: str
    environment: str = ""
    # What a quick fix needs (e.g. the bad reference and the candidate ids).
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def sort_key(self) -> tuple:
        return (str(self.path), self.span, self.code, self.message)



@contextmanager
def paused_gc(freeze: bool = False) -> Iterator[None]:
    """Around building an index: it creates millions of small long-lived objects and no
    cyclic garbage to speak of, and Python's collector would rescan them again and again
    (two thirds of a cold check, pauses near a second in the server). `freeze`: afterwards
    move what exists to the permanent generation (gc.freeze), so later collections (the
    server runs for hours) only look at what is new; reference counting still frees it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


def printable(text: str) -> str:
    """Text from the workspace (messages quote ids, docstrings, paths) made safe for a
    terminal, a CI log or an editor's Markdown: control and other non-printable characters
    are shown escaped, so a file cannot move the cursor, recolour the log or start a line of
    its own (a forged `::error` workflow command)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


_said: set[str] = set()


class _PackageLogger:
    """The package's logger ("migration_lsp"), with `logging` imported on first use: a check
    that says nothing does not pay for it (~12 M instructions, 3 % of a graph-only check)."""

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger("migration_lsp"), name)


log = _PackageLogger()


def say_once(message: str, logger: logging.Logger | None = None) -> None:
    """A warning for the log (stderr for the CLI, the editor's log for the server), once per
    process: the server rescans and re-lists code actions on every cursor move. What was said
    is forgotten past a thousand messages (a long session must not grow without bound)."""
    if message in _said:
        return
    if len(_said) >= 1000:
        _said.clear()
    _said.add(message)
    (logger or log).warning("migration-lsp: %s", message)
