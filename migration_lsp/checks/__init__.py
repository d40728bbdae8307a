"""Stage `checks`: rule families turning the engine's picture into Diagnostic records.

Each family is a module with functions `(...) -> list[Diagnostic]`; this module applies
what every family shares: the project's select/ignore and `# migration-lsp: ignore[...]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..core import Diagnostic
from ..project import Settings
from ..scripts import MigrationScript

_IGNORE = re.compile(r"#\s*migration-lsp:\s*ignore(?:\[(?P<codes>[^\]#]*)\])?\s*$")  # [^]#]: linear


def suppressed(script: MigrationScript | None, diagnostic: Diagnostic) -> bool:
    """A trailing `# migration-lsp: ignore[CODE,...]` (or bare `ignore`) on the line."""
    if script is None or not script.lines or diagnostic.span.line >= len(script.lines):
        return False
    m = _IGNORE.search(script.lines[diagnostic.span.line])
    if not m:
        return False
    codes = m.group("codes")
    if codes is None:
        return True
    return any(diagnostic.code.startswith(c.strip().upper()) for c in codes.split(",") if c.strip())


def apply_filters(
    diagnostics: Iterable[Diagnostic], settings: Settings, scripts: dict
) -> list[Diagnostic]:
    return [
        d for d in diagnostics
        if settings.enabled(d.code) and not suppressed(scripts.get(d.path), d)
    ]


# code -> (default severity label, one-line description); README and SARIF use these.
RULES: dict[str, tuple[str, str]] = {
    "G001": ("error", "multiple heads in one branch"),
    "G002": ("error", "down_revision points to a revision that does not exist"),
    "G003": ("error", "depends_on names a revision or branch label that does not exist"),
    "G004": ("error", "revision cycle"),
    "G005": ("error", "the same revision id in two files"),
    "G006": ("error", "branch label used twice, or equal to a revision id"),
    "G007": ("error", "partial revision id that matches several revisions"),
    "G008": ("warning", "a second base in an unlabelled branch"),
    "G009": ("warning", "docstring Revision ID / Revises disagree with the variables"),
    "G010": ("warning", "file in a versions directory whose revision header cannot be read"),
    "G011": ("warning", "the base branch has moved: after the merge there will be two heads"),
    "G012": ("error", "a revision the base branch has is gone (databases stamped at it cannot upgrade)"),
    "G013": ("warning", "a revision already on the base branch was edited (databases that ran it will not see it)"),
    "S001": ("warning", "NOT NULL column added to an existing table without server_default"),
    "S002": ("warning", "PostgreSQL: index created on an existing table without CONCURRENTLY"),
    "S003": ("error", "PostgreSQL: CONCURRENTLY outside autocommit_block()"),
    "S004": ("error", "SQLite: ALTER of a column/constraint outside batch_alter_table"),
    "S005": ("info", "destructive: drop_table / drop_column (data loss)"),
    "R001": ("error", "upgrade fails on a real database of the environment's dialect (truth pass)"),
    "R002": ("error", "downgrade fails on a real database (truth pass)"),
}
