"""Stage `checks`: rule families turning the engine's picture into Diagnostic records.

Each family is a module with functions `(...) -> list[Diagnostic]`; this module applies
what every family shares: the project's select/ignore and `# migration-lsp: ignore[...]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..core import Diagnostic
from ..project import Settings
from ..rules import RULES as REGISTRY
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
    diagnostics: Iterable[Diagnostic], settings: Settings, scripts: Mapping[Path, MigrationScript]
) -> list[Diagnostic]:
    """The diagnostics the project's select/ignore enables and no ignore comment silences
    (`scripts`: the parsed file of each diagnostic's path)."""
    return [
        d for d in diagnostics
        if settings.enabled(d.code) and not suppressed(scripts.get(d.path), d)
    ]


# code -> (default severity label, one-line summary): a view of the rule registry
# (migration_lsp/rules.py), where rules are added.
RULES: dict[str, tuple[str, str]] = {code: (rule.severity.label, rule.summary) for code, rule in REGISTRY.items()}
