"""Raw SQL in migrations (`op.execute("...")`): which tables a DDL statement may touch.

Raw SQL can be any length (a 100 KB op.execute): it is read in linear time. Patterns run
on the whole text only when their matches have a bounded length (a bounded number of
steps at each position); what follows a keyword is read from a bounded window after it,
in text whose whitespace runs are squeezed to one space. (`^\\s*(CREATE|...)` took minutes
on 40,000 newlines: each line start scanned all the whitespace after it.)
"""

from __future__ import annotations

import re
from collections.abc import Callable

SQL_WINDOW = 512
_DDL_WORD = re.compile(r"(?:CREATE|ALTER|DROP|RENAME|COMMENT)\b", re.I)
_DDL_KEYWORD = re.compile(r"\b(?:(INDEX)|TABLE|INTO|UPDATE)", re.I)
_DDL_NAME = re.compile(r"\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)", re.I)
_DDL_INDEX_NAME = re.compile(r"\s+\S+\s+ON\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)", re.I)


def squeeze_sql(sql: str) -> str:
    """The SQL with every run of whitespace one space (and none at the ends)."""
    return " ".join(sql.split())


def is_ddl(sql: str) -> bool:
    """Does a line of the SQL start with CREATE / ALTER / DROP / RENAME / COMMENT?"""
    return any(_DDL_WORD.match(line.lstrip()[:8]) for line in sql.split("\n"))


def find_after_keywords(sql: str, keyword: re.Pattern, rest: Callable[[re.Match], re.Pattern]) -> list[str]:
    """`findall` of keyword + rest(keyword's match) on the squeezed SQL (group 1 of `rest`),
    with `rest` matched in a window of SQL_WINDOW characters after each keyword."""
    text = squeeze_sql(sql)
    out = []
    pos = 0
    while (m := keyword.search(text, pos)) is not None:
        found = rest(m).match(text, m.end(), m.end() + SQL_WINDOW)
        if found is None:
            pos = m.start() + 1
        else:
            out.append(found.group(1))
            pos = found.end()
    return out


def ddl_tables(sql: str) -> list[str]:
    """Names after TABLE / INDEX x ON / INTO / UPDATE (tables raw DDL may change)."""
    return find_after_keywords(sql, _DDL_KEYWORD, lambda m: _DDL_INDEX_NAME if m.group(1) else _DDL_NAME)
