"""Quick fixes for the base-branch rules (G011), as plain text edits.

`git_fixes(diagnostic, script)` returns `(title, edits)` pairs like `safety_fixes`: each
edit a `(Span, new text)` in 0-based lines and code-point columns of `script.text`, in
document order, never overlapping. *Rebase onto Z* moves the lowest new revision of the
branch (the one G011 is on) onto the base's head: its `down_revision` and the docstring's
`Revises:` line; the revisions above it keep their parents, so the chain moves whole.
"""

from __future__ import annotations

from ..core import Diagnostic, Span
from ..scripts import MigrationScript
from . import pasteable

Edit = tuple[Span, str]
Fix = tuple[str, list[Edit]]

GIT_FIX_CODES = ("G011",)
MAX_CHOICES = 3


def rebase_edits(script: MigrationScript, onto: str) -> list[Edit] | None:
    """down_revision (and Revises:) set to `onto`; None when the header is not a plain
    single id or None (a merge revision, an expression: no certain rewrite)."""
    down = script.down_revision
    if down is None or down.unknown or len(down.ids) > 1:
        return None
    edits: list[Edit] = []
    if down.ids:
        edits.append((down.ids[0].span, onto))
    elif script.lines and script.lines[down.value_span.line][down.value_span.col:down.value_span.end_col] == "None":
        edits.append((down.value_span, repr(onto)))
    else:
        return None
    if script.doc and script.doc.revises_line:
        edits.append((script.doc.revises_line, onto))
    return sorted(edits, key=lambda e: e[0])


def git_fixes(diagnostic: Diagnostic, script: MigrationScript) -> list[Fix]:
    if diagnostic.code != "G011":
        return []
    messages = diagnostic.data.get("messages", {})
    out: list[Fix] = []
    for head in [h for h in diagnostic.data.get("heads", []) if pasteable(h)][:MAX_CHOICES]:
        edits = rebase_edits(script, head)
        if edits:
            message = messages.get(head)
            out.append((f"Rebase onto {head}" + (f" ({message})" if message else ""), edits))
    return out
