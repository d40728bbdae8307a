"""The fast header path finds the end of a module docstring that starts on the first line by
one search in the text (not line by line): the same script as the reference parser for
docstrings of every shape, and the fast path is really taken for the usual one."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_scripts_fast import assert_same

from migration_lsp import scripts

REST = ("from alembic import op\n\nrevision = 'b2'\ndown_revision = 'a1'\n\n\n"
        "def upgrade():\n    op.drop_table('t')\n\n\ndef downgrade():\n    pass\n")

DOCS = [
    '"""Add t\n\nRevision ID: b2\nRevises: a1\nCreate Date: 2024-01-01\n\n"""\n',
    "'''Add t\n\nRevision ID: b2\nRevises: a1\n'''\n",
    '"""one line"""\n',
    '"""\n"""\n',
    '"""a\n  Revision ID: b2  \n\tRevises: a1, c3\n"""  # trailing comment\n',
    '"""a\nb""" + "c"\n',  # not a docstring statement the fast path accepts
    '"""a\nb"""x\n',
    '"""a\n\'\'\' inside\n"""\n',
    '"""a\n""\n"\n"""\n',
    '"""never closed\n',
    '"""a\nRevision ID: b2\n"""\n"""second string"""\n',
    '"""a\r\nRevision ID: b2\r\n"""\r\n',
    '"""é\nRevision ID: b2 — ü\n"""\n',
    '"""a\ndef upgrade():\n"""\n',
]


@pytest.mark.parametrize("doc", DOCS)
def test_docstring_shapes_give_the_reference_script(doc):
    assert_same(doc + REST)
    assert_same(doc + "\n" + REST)
    assert_same("\n" + doc + REST)  # not on the first line: the line loop


def test_the_usual_docstring_takes_the_fast_path():
    before = dict(scripts.STATS)
    script = scripts.parse_script(Path("versions/b2.py"), DOCS[0] + REST)
    assert scripts.STATS["header_fast"] == before["header_fast"] + 1
    assert script.doc is not None and script.doc.revision_id is not None
    assert (script.doc.message, script.doc.revision_id.value, script.doc.revision_id.span.line) == ("Add t", "b2", 2)
    assert [i.value for i in script.doc.revises] == ["a1"] and script.doc.span.end_line == 6
