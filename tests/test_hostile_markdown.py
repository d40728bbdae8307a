"""Workspace text shown by the editor as Markdown cannot carry images, `command:` links or raw
HTML (a hover is rendered by VS Code with links enabled), and ids the editor would paste into a
file are pasted only when they are plain."""

from __future__ import annotations

import re
from pathlib import Path

from lsprotocol import types

from conftest import alembic_project, migration_text as m
from migration_lsp.engine import Engine
from migration_lsp.features import Locator
from migration_lsp.features.completion import completion
from migration_lsp.features.hover import hover

HOSTILE = "![x](http://evil.example/x.png) <img src=x onerror=alert(1)> [run](command:workbench.action.terminal.new)"


def _hover_text(root: Path, name: str, line_start: str, needle: str) -> str:
    snapshot = Engine([root], trusted=False, cache=False).snapshot()
    path = (root / "migrations" / "versions" / name).resolve()
    script = snapshot.script(path)
    line = next(n for n, text in enumerate(script.lines) if text.startswith(line_start))
    col = script.lines[line].index(needle) + 1
    found = hover(snapshot, path, types.Position(line, col), Locator(snapshot))
    assert found is not None
    return found.contents.value


def test_hover_escapes_markdown_from_the_workspace(tmp_path: Path):
    alembic_project(tmp_path, {
        "aaaa1111_init.py": m("aaaa1111", message=HOSTILE),
        "bbbb2222_next.py": m("bbbb2222", "aaaa1111", message="next"),
    })
    text = _hover_text(tmp_path, "bbbb2222_next.py", "down_revision", "aaaa1111")
    assert "evil" in text  # the message is shown...
    active = re.sub(r"\\.", "", text)  # ...as text: what Markdown acts on is what is not escaped
    assert "![" not in active and "<img" not in active and "(command:" not in active and "(http:" not in active


def test_completion_never_offers_ids_that_cannot_be_pasted(tmp_path: Path):
    bad = m("aaaa'1111", message="quote").replace("Revision ID: aaaa'1111", "Revision ID: x")
    alembic_project(tmp_path, {
        "aaaa1111_quote.py": bad,
        "aaaa2222_fine.py": m("aaaa2222", message="fine"),
        "bbbb3333_next.py": m("bbbb3333", "aaaa", message="next"),
    })
    snapshot = Engine([tmp_path], trusted=False, cache=False).snapshot()
    path = (tmp_path / "migrations" / "versions" / "bbbb3333_next.py").resolve()
    script = snapshot.script(path)
    line = next(n for n, text in enumerate(script.lines) if text.startswith("down_revision"))
    col = script.lines[line].index("'aaaa") + 5
    result = completion(snapshot, path, types.Position(line, col), Locator(snapshot))
    labels = [item.label for item in result.items]
    assert "aaaa2222" in labels
    assert "aaaa'1111" not in labels
    assert all(item.text_edit.new_text == item.label for item in result.items)
