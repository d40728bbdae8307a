"""What the rules read from env.py, statically (env.py is never run here): whether it sets
`lock_timeout`, `transaction_per_migration`, where `context.configure(` is, and the modules
`target_metadata` comes from. Shared by the PostgreSQL transaction rules (S015, S018) and the
portable ones (S020)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..core import Span


@dataclass(frozen=True)
class EnvPy:
    """What the rules read from env.py (statically: env.py is never run here)."""

    path: Path | None = None
    lock_timeout: bool = False  # env.py mentions lock_timeout in code (SET, connect options...)
    per_migration: bool | None = False  # transaction_per_migration; None: not a literal
    configure: Span | None = None  # the context.configure( that gets the connection
    models: tuple[str, ...] = ()  # the modules env.py takes target_metadata from ("app.models")


_PER_MIGRATION = re.compile(r"\btransaction_per_migration\s*=\s*(\w+)")
_CONFIGURE = re.compile(r"\bcontext\.configure\s*\(")
_TARGET = re.compile(r"^[ \t]*target_metadata[ \t]*(?::[^=\n]*)?=[ \t]*\[?[ \t]*([A-Za-z_]\w*)", re.MULTILINE)
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import[ \t]+(?:\(([\w\s,]{0,2000})\)|([\w \t,]{1,2000}))", re.MULTILINE)
_PLAIN_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w.]+)(?:[ \t]+as[ \t]+(\w+))?", re.MULTILINE)


@lru_cache(maxsize=32)
def env_py_facts(path: Path | None, text: str) -> EnvPy:
    """(Called per revision with the same text: remembered.)"""
    if path is None:
        return EnvPy()
    lines = text.splitlines()
    code = ["" if line.lstrip().startswith("#") else line.partition("#")[0] for line in lines]
    joined = "\n".join(code)
    per_migration: bool | None = False
    m = _PER_MIGRATION.search(joined)
    if m:
        per_migration = {"True": True, "False": False}.get(m.group(1))
    spans = []
    for n, line in enumerate(code):
        for found in _CONFIGURE.finditer(line):
            spans.append((n, Span(n, found.start(), n, found.end() - 1)))
    configure = None
    if spans:  # the online one: the configure call followed by `connection=`
        online = [s for n, s in spans if "connection" in "\n".join(code[n:n + 6])]
        configure = (online or [s for _, s in spans])[-1]
    return EnvPy(path, "lock_timeout" in joined, per_migration, configure, _metadata_modules(joined))


def _metadata_modules(code: str) -> tuple[str, ...]:
    """Where the names `target_metadata = ...` starts with are imported from: `from app.db
    import Base` -> app.db.Base; `import app.models as m` -> app.models."""
    roots = set(_TARGET.findall(code))
    found: list[str] = []
    for m in _FROM_IMPORT.finditer(code):
        for part in (m.group(2) or m.group(3)).split(","):
            words = part.split()
            if words and words[-1] in roots:
                found.append(f"{m.group(1)}.{words[0]}")  # (not the package: `from app import models`)
    for m in _PLAIN_IMPORT.finditer(code):
        if (m.group(2) or m.group(1).split(".")[0]) in roots:
            found.append(m.group(1))
    return tuple(dict.fromkeys(found))
