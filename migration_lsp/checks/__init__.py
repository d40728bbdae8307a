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
from ..scripts import MigrationScript

# a trailing `# migration-lsp: ignore[CODE,...]` or bare `ignore` (the quick fix adds to it)
IGNORE_COMMENT = re.compile(r"#\s*migration-lsp:\s*ignore(?:\[(?P<codes>[^\]#]*)\])?\s*$")  # [^]#]: linear


def suppressed(script: MigrationScript | None, diagnostic: Diagnostic) -> bool:
    """A trailing `# migration-lsp: ignore[CODE,...]` (or bare `ignore`) on the line. A text
    without the marker has no such line: its lines are not split (a pass filters every
    revision's findings after its bodies, and so its lines, were released)."""
    if script is None or "migration-lsp:" not in script.text:
        return False
    if not script.lines or diagnostic.span.line >= len(script.lines):
        return False
    m = IGNORE_COMMENT.search(script.lines[diagnostic.span.line])
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
    (`scripts`: the parsed file of each diagnostic's path), each once, in the order found.

    Once: the static evaluation runs a loop's body once per item, so a rule sees an op in a
    loop as often as it would run, and one whose message does not name what changes (the
    table) says the same thing each time. Identical findings (code, severity, file, range,
    message, environment: Diagnostic's equality) are one fact, one squiggle, one count;
    findings that differ in message (each names its table) are distinct facts and stay.
    Every family's findings (graph, schema, models, the truth pass) come through here, so
    every front end (the CLI's formats, the server's diagnostics) sees them once."""
    return list(dict.fromkeys(  # (the first of equal findings is kept, with its fix data)
        d for d in diagnostics
        if settings.enabled(d.code) and not suppressed(scripts.get(d.path), d)
    ))



# family module -> every code it can report (tests/test_family_codes.py holds each module to
# its list): a family none of whose codes is enabled need not run at all.
FAMILY_CODES: dict[str, frozenset[str]] = {
    "downgrade": frozenset({"D001", "D002", "D003"}),
    "safety": frozenset({"S001", "S002", "S003", "S004", "S005"}),
    "pg_ddl": frozenset(f"S{n:03}" for n in range(6, 15)),
    "pg_transactions": frozenset({"S002", "S005", *(f"S{n:03}" for n in range(6, 12)), "S015", "S016", "S017",
                                  "S018"}),
    "portable": frozenset({"S017", "S019", "S020", "S021"}),
    "history": frozenset({"S022"}),
}


def families_off(settings: Settings) -> frozenset[str]:
    """The rule families whose every code `settings` leave out (`--ignore S006,...`,
    `select = ["G"]`): their work is skipped, not just their findings."""
    return frozenset(name for name, codes in FAMILY_CODES.items() if not any(settings.enabled(c) for c in codes))

