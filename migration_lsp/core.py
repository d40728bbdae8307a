"""Plain records shared by every stage: source spans and diagnostics.

Positions are 0-based lines and 0-based columns counted in Unicode code points;
front ends convert (the CLI to 1-based, the server to the negotiated encoding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any


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


def tune_gc() -> None:
    """For the entry points (check, serve): the index holds millions of small long-lived
    objects, and Python's default thresholds rescan them all again and again (two thirds of
    a cold check's time, pauses of a second in the server). Collect young objects less often;
    reference counting still frees almost everything at once."""
    import gc

    gc.set_threshold(100_000, 50, 100)
