"""Engine diagnostics as LSP diagnostics, and result ids for pull diagnostics."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from lsprotocol import types

from ..core import Diagnostic
from ..rules import doc_url
from . import Locator

SOURCE = "migration-lsp"


def to_lsp(diagnostic: Diagnostic, locator: Locator) -> types.Diagnostic:
    return types.Diagnostic(
        range=locator.range(diagnostic.path, diagnostic.span),
        severity=types.DiagnosticSeverity(int(diagnostic.severity)),
        code=diagnostic.code,
        code_description=types.CodeDescription(href=doc_url(diagnostic.code)),
        source=SOURCE,
        message=diagnostic.message,
        data={"code": diagnostic.code, **diagnostic.data},
    )


def file_diagnostics(by_path: Mapping[Path, Sequence[Diagnostic]], path: Path, locator: Locator) -> list[types.Diagnostic]:
    return [to_lsp(d, locator) for d in by_path.get(path, ())]


def result_id(items: list[types.Diagnostic]) -> str:
    """Same diagnostics, same id: lets a pulling client skip unchanged reports."""
    digest = hashlib.sha1()
    for item in items:
        digest.update(json.dumps([item.code, item.message, item.range.start.line, item.range.start.character,
                                  item.range.end.line, item.range.end.character, int(item.severity or 0)]).encode())
    return digest.hexdigest()[:16]
