"""The fast paths of stage `scripts` against the reference parser.

`parse_script` reads the common Alembic header by string scanning (no `ast.parse`) and,
on first access to upgrade()/downgrade(), compiles only the text from the first `def` on.
`parse_script(..., _legacy=True)` is the reference: the header through `ast.parse` and the
lazy body parse compiling the whole file again. Both must give exactly the same script:
header values, docstring fields, imports, lines, functions, ops (with their ast nodes,
line numbers included) and syntax errors, for any text.
"""

from __future__ import annotations

import ast
import random
import re
import sys
from pathlib import Path

import pytest

from conftest import migration_text
from migration_lsp import scripts
from migration_lsp.scripts import parse_script

P = Path("versions/x.py")
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REPO = Path(__file__).resolve().parent.parent

STANDARD = migration_text("ab12cd34ef56", "0123456789ab", message="add users",
                          upgrades="op.add_column('users', sa.Column('x', sa.Integer()))",
                          downgrades="op.drop_column('users', 'x')")


# --------------------------------------------------------------------------- comparison


def _dump(node: ast.AST | None) -> str | None:
    return None if node is None else ast.dump(node, include_attributes=True)


def _function(f: scripts.Function) -> tuple:
    return (
        f.name, f.def_span, f.span, f.is_empty, _dump(f.node),
        [(o.name, o.span, o.batch_table, o.in_autocommit, o.conditional, _dump(o.node)) for o in f.ops],
        [(c.name, c.span, _dump(c.node)) for c in f.other_calls],
    )


def snapshot(s: scripts.MigrationScript) -> dict:
    """Every field, the lazily parsed ones included (MigrationScript compares by identity)."""
    out = {
        "path": s.path, "text": s.text, "revision": s.revision, "down_revision": s.down_revision,
        "branch_labels": s.branch_labels, "depends_on": s.depends_on, "doc": s.doc, "lines": s.lines,
        "imports": s.imports, "lazy": s.functions is None, "error_before_bodies": s.error,
        "revision_id": s.revision_id, "message": s.message, "id_strings": s.id_strings(),
    }
    out["syntax_error"] = s.syntax_error
    out["upgrade"] = None if s.upgrade is None else _function(s.upgrade)
    out["downgrade"] = None if s.downgrade is None else _function(s.downgrade)
    out["functions"] = sorted(s.functions or {})
    return out


def assert_same(text: str, path: Path = P) -> None:
    new = snapshot(parse_script(path, text))
    old = snapshot(parse_script(path, text, _legacy=True))
    if new != old:
        diff = {k: (new[k], old[k]) for k in new if new[k] != old[k]}
        raise AssertionError(f"fast parser differs for {text!r}:\n{diff}")


def stats() -> dict[str, int]:
    return dict(scripts.STATS)


def delta(before: dict[str, int]) -> dict[str, int]:
    return {k: v - before[k] for k, v in scripts.STATS.items()}


def counts(**taken: int) -> dict[str, int]:
    """What `delta` must be: these paths taken that often, the others never."""
    return {k: taken.get(k, 0) for k in scripts.STATS}


def parsed(text: str, read: str, **taken: int) -> scripts.MigrationScript:
    """`text` parsed and its attribute `read` read (the bodies are parsed on first use of
    upgrade(), syntax_error, ...), having taken exactly these paths; the reference parser
    reads the same script."""
    before = stats()
    script = parse_script(P, text)
    getattr(script, read)
    assert delta(before) == counts(**taken)
    assert_same(text)
    return script


@pytest.fixture(autouse=True)
def _fast_path_never_crashes():
    """The fast header path swallows its own exceptions (the ast path then decides): in
    these tests it must never have had one."""
    before = scripts.STATS["header_fast_failed"]
    yield
    assert scripts.STATS["header_fast_failed"] == before


# --------------------------------------------------------------------------- the fast path is taken


def test_standard_alembic_file_takes_both_fast_paths():
    before = stats()
    s = parse_script(P, STANDARD)
    assert delta(before) == counts(header_fast=1, header_template=1)
    assert s.functions is None  # bodies not parsed yet
    assert s.revision_id == "ab12cd34ef56" and s.down_revision.values == ("0123456789ab",)
    assert s.upgrade.ops[0].name == "add_column"
    assert delta(before) == counts(header_fast=1, header_template=1, body_piece=1)
    assert_same(STANDARD)


def test_fast_header_does_not_call_ast(monkeypatch):
    def no_parse(*args, **kwargs):
        raise AssertionError("ast.parse called")

    monkeypatch.setattr(ast, "parse", no_parse)
    s = parse_script(P, STANDARD)
    assert s.revision_id == "ab12cd34ef56"
    assert s.doc.revision_id.value == "ab12cd34ef56"


@pytest.mark.parametrize("down", [None, "0123456789ab", ("aaa111", "bbb222")])
@pytest.mark.parametrize("labels", [None, "feature", ("a", "b")])
def test_template_variants_take_the_fast_path(down, labels):
    text = migration_text("ab12cd34ef56", down, branch_labels=labels, depends_on=labels, message="é 修改")
    before = stats()
    parse_script(P, text)
    assert delta(before)["header_fast"] == 1
    assert_same(text)
    assert_same(text.replace("\n", "\r\n"))


def test_untyped_double_quoted_header_takes_the_fast_path():
    text = '''"""Add RBAC tables

Revision ID: c3d4e5f6a7b8
Revises: 2ed73881770d
Create Date: 2026-04-20 12:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c3d4e5f6a7b8"
down_revision = "2ed73881770d"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("roles", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade():
    op.drop_table("roles")
'''
    assert parsed(text, "upgrade", header_fast=1, header_template=1, body_piece=1).upgrade is not None


def test_broken_body_falls_back_to_the_whole_file():
    text = STANDARD.replace("op.drop_column('users', 'x')", "op.drop_column('users', 'x'")
    s = parsed(text, "syntax_error", header_fast=1, header_template=1, body_full=1)
    assert s.revision_id == "ab12cd34ef56"
    assert s.syntax_error is not None and "line" in s.syntax_error


def test_unusual_header_uses_ast_then_the_body_piece():
    text = STANDARD.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\nNAME = sa.Enum('a', name='n')\n")
    parsed(text, "upgrade", header_ast=1, body_piece=1)


# --------------------------------------------------------------------------- the template's exact shape

MERGE = migration_text("ab12cd34ef56", ("a1b2c3", "d4e5f6"), message="merge", branch_labels=("x",),
                       depends_on="d4e5f6", upgrades="pass", downgrades="pass")
# (old, new) replacements in STANDARD or MERGE: each text must be read as the ast path reads
# it, by the template's reader while it keeps the template's shape, else by the scanner / ast
TEMPLATE_VARIANTS = [
    # the message
    ('"""add users', '"""'), ('"""add users', '"""   '), ('"""add users', '"""  spaced  '),
    ('"""add users', '"""Revision ID: x'), ('"""add users', '"""Revises: a'), ('"""add users', '"""é 修改 🎉'),
    ('"""add users', '"""a\x0cb'), ('"""add users', '"""a\u2028b'), ('"""add users', '"""a\x85b'),
    ('"""add users', '"""\x1cx'), ('"""add users', '"""say "hi"'), ('"""add users', '"""tab\\tescape'),
    ('"""add users', '"""x\udc80'), ('"""add users', '"""a\x00'), ('"""add users', '"""#hash'),
    ('"""add users', "'''add users"), ('"""add users\n', '"""add users"""\n'),
    # the fields
    ("Revision ID: ab12cd34ef56", "Revision ID: a_b"), ("Revision ID: ab12cd34ef56", "Revision ID: é1"),
    ("Revision ID: ab12cd34ef56", "Revision ID: a-b"), ("Revision ID: ab12cd34ef56", "Revision ID: "),
    ("Revision ID: ab12cd34ef56", "Revision ID:  ab"), ("Revision ID: ab12cd34ef56", "Revision ID: ab "),
    ("Revises: 0123456789ab", "Revises: "), ("Revises: 0123456789ab", "Revises:"),
    ("Revises: 0123456789ab", "Revises: <base>"), ("Revises: 0123456789ab", "Revises: a, b"),
    ("Revises: 0123456789ab", "Revises: a,b"), ("Revises: 0123456789ab", "Revises: a, b, "),
    ("Revises: 0123456789ab", "Revises: (a, b)"), ("Revises: 0123456789ab", "Revises: a_1, b_2"),
    ("Create Date: 2024", "Create Date:  2024"), ("Create Date: 2024", "Create Date:\t2024"),
    ("Create Date: 2024-05-17 10:11:12.123456", "Create Date: "),
    ("Create Date: 2024-05-17 10:11:12.123456", "Create Date: now  "),
    ("Create Date: 2024-05-17 10:11:12.123456", "Create Date: now\x0c"),
    ("Create Date: 2024", 'Create Date: "2024'), ("\nCreate Date", "\nRevises: x\nCreate Date"),
    ('123456\n\n"""', '123456\n"""'), ('123456\n\n"""', '123456\n\n""" # c'),
    # the import block
    ("import sqlalchemy as sa\n", "import sqlalchemy as sa  # c \\\n"), ("import sqlalchemy as sa\n", ""),
    ("import sqlalchemy as sa\n", "import sqlalchemy as sa\n  # indented\n\t\n"),
    ("import sqlalchemy as sa\n", "import sqlalchemy \\\n    as sa\n"), ("import sqlalchemy as sa\n", "x = 1\n"),
    ("import sqlalchemy as sa\n", "  import os\n"), ("import sqlalchemy as sa\n", "from __future__ import barry_as_FLUFL\n"),
    ("import sqlalchemy as sa\n", "from __future__ import annotations\n"), ("import sqlalchemy as sa\n", "\x0c\n"),
    ("import sqlalchemy as sa\n", "import sqlalchemy as sa\ndef upgrade():\n    pass\n"),
    ("import sqlalchemy as sa\n", "import a as if\n"), ("import sqlalchemy as sa\n", "# \x00\n"),
    ("import sqlalchemy as sa\n", "importx\n"), ("import sqlalchemy as sa\n", 'import sqlalchemy as sa\n"""two"""\n'),
    # the assignments
    ("revision: str = 'ab12cd34ef56'", 'revision: str = "ab12cd34ef56"'),
    ("revision: str = 'ab12cd34ef56'", "revision = 'ab12cd34ef56'"),
    ("revision: str = 'ab12cd34ef56'", "revision:str='ab12cd34ef56'  # c"),
    ("revision: str = 'ab12cd34ef56'", "revision : str\t=\t'ab12cd34ef56'\t"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = ''"), ("revision: str = 'ab12cd34ef56'", "revision: str = None"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = ('ab12cd34ef56',)"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = 'ab12' 'cd34'"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = u'ab12cd34ef56'"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = 'it\"s'"),
    ("revision: str = 'ab12cd34ef56'", "revision: 'str' = 'ab12cd34ef56'"),
    ("revision: str = 'ab12cd34ef56'", "revision: Literal['a=b'] = 'ab12cd34ef56'"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = 'ab12cd34ef56';"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = 'ab12cd34ef56' = 'x'"),
    ("revision: str = 'ab12cd34ef56'", "revision: str == 'ab12cd34ef56'"),
    ("revision: str = 'ab12cd34ef56'", "revisions: str = 'ab12cd34ef56'"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = 'é修改'"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = 'ab12cd34ef56'\nrevision = 'x'"),
    ("down_revision: Union[str, Sequence[str], None] = '0123456789ab'", "down_revision = ['0123456789ab', None]"),
    ("down_revision: Union[str, Sequence[str], None] = '0123456789ab'", "down_revision = Nonee"),
    ("down_revision: Union[str, Sequence[str], None] = '0123456789ab'", "down_revision = None  # base"),
    ("down_revision: Union[str, Sequence[str], None] = '0123456789ab'", "down_revision = X"),
    ("depends_on: Union[str, Sequence[str], None] = None", "depends_on: Union[str, Sequence[str], None] = 'x', 'y'"),
    ("depends_on: Union[str, Sequence[str], None] = None", "depends_on = (\n    'x',\n)"),
    ("depends_on: Union[str, Sequence[str], None] = None\n", ""),
    ("branch_labels: Union[str, Sequence[str], None] = None\n", ""),
    ("branch_labels: Union[str, Sequence[str], None] = None\ndepends_on: Union[str, Sequence[str], None] = None",
     "depends_on: Union[str, Sequence[str], None] = None\nbranch_labels: Union[str, Sequence[str], None] = None"),
    # up to the first def, and after it
    ("None\n\n\ndef upgrade", "None\n# c\n  # d\n\t\n\ndef upgrade"), ("None\n\n\ndef upgrade", "None\nx = 1\n\ndef upgrade"),
    ("None\n\n\ndef upgrade", "None\n\ndef helper():\n    pass\n\ndef upgrade"),
    ("None\n\n\ndef upgrade", "None\n\n@dec\ndef upgrade"), ("None\n\n\ndef upgrade", "None\n\ndef  upgrade"),
    ("None\n\n\ndef upgrade", "None\n\ndef\tupgrade"), ("None\n\n\ndef upgrade", "None\n\n\x0cdef upgrade"),
    ("None\n\n\ndef upgrade", "None\n\nasync def upgrade"),
    ("None\n\n\ndef upgrade", "None\n\ndef upgrade_x():\n    pass\ndef upgrade"),
    ("\ndef downgrade", "\nrevision = 'late'\ndef downgrade"), ("\ndef downgrade", "\ndepends_on = 'late'\ndef downgrade"),
    ("\ndef downgrade", "\nif True:\n    revision = 'late'\ndef downgrade"),
    ("\ndef downgrade", "\nrevisions = 'late'\ndef downgrade"), ("\ndef downgrade", "\nrevision == 'late'\ndef downgrade"),
    ("\ndef downgrade", "\ndown_revision: str = 'late'\ndef downgrade"),
]


@pytest.mark.parametrize("base", [STANDARD, MERGE], ids=["standard", "merge"])
@pytest.mark.parametrize("old, new", TEMPLATE_VARIANTS)
def test_template_variants_read_as_the_ast_reads_them(base, old, new):
    text = base.replace(old, new, 1)
    for variant in (text, text.replace("\n", "\r\n"), text.replace("\n", "\r")):
        assert_same(variant)


def _template_taken(text: str) -> bool:
    before = stats()
    parse_script(P, text)
    return delta(before)["header_template"] == 1


@pytest.mark.parametrize("new", [
    '"""', '"""Revision ID: x', '"""é 修改 🎉', '"""a\x0cb', "Revision ID: a_b", "Revises: ", "Revises: a, b",
    "Create Date: ", "Create Date: now  ", "revision: str = None", "revision = 'ab12cd34ef56'", "revision: str = ''",
    "revision:str='ab12cd34ef56'  # c", "down_revision = None  # base", "down_revision = ['0123456789ab', None]",
    "None\n# c\n  # d\n\t\n\ndef upgrade", "import sqlalchemy as sa\n  # indented\n\t\n",
    "from __future__ import annotations\n", "revision: str = 'é修改'",
    "\nrevisions = 'late'\ndef downgrade",  # (not an assignment to a header name)
])
def test_the_template_reader_takes_the_template_shapes(new):
    old = next(o for o, n in TEMPLATE_VARIANTS if n == new)
    assert _template_taken(STANDARD.replace(old, new, 1))


@pytest.mark.parametrize("new", [
    '"""say "hi"', '"""tab\\tescape', '"""x\udc80', '"""a\x00', "Revision ID: a-b", "Revises: <base>",
    "Create Date:  2024", "import sqlalchemy \\\n    as sa\n", "x = 1\n", "revision: str = 'ab12' 'cd34'",
    "revision: str = 'ab12cd34ef56'\nrevision = 'x'", "None\nx = 1\n\ndef upgrade",
    "\nrevision = 'late'\ndef downgrade", "\ndepends_on = 'late'\ndef downgrade",
    "\ndown_revision: str = 'late'\ndef downgrade", "from __future__ import barry_as_FLUFL\n",
])
def test_the_template_reader_leaves_everything_else(new):
    old = next(o for o, n in TEMPLATE_VARIANTS if n == new)
    assert not _template_taken(STANDARD.replace(old, new, 1))


@pytest.mark.parametrize("old, new", [
    ('"""add users', '"""' + "m" * 3000),  # the header is longer than the pattern's window
    ("revision: str = 'ab12cd34ef56'", "revision: str = 'ab12cd34ef56'" + " " * 2100 + "# c"),
    ("revision: str = 'ab12cd34ef56'", "revision: str = 'ab12cd34ef56'" + " " * 1500 + "x"),  # within it
    ("revision: str = 'ab12cd34ef56'", "revision =" + " " * 1500 + "\x00"),
])
def test_long_header_lines_go_to_the_scanner(old, new):
    text = STANDARD.replace(old, new, 1)
    assert not _template_taken(text)
    assert_same(text)


def test_the_template_reader_takes_a_merge_and_crlf_goes_to_the_scanner():
    assert _template_taken(MERGE)
    assert not _template_taken(STANDARD.replace("\n", "\r\n"))


# --------------------------------------------------------------------------- hand-picked edge cases

HEADER = "revision = 'aaa'\ndown_revision = 'bbb'\n"
BODY = "\n\ndef upgrade():\n    op.drop_table('t')\n\n\ndef downgrade():\n    pass\n"
UPGRADE_ONLY = "\n\ndef upgrade():\n    op.drop_table('t')\n"

EDGE_CASES = [
    # values
    "revision = ('a')\n", "revision = ('a',)\n", "revision = ( 'a' , )\n", "revision = ()\n", "revision = []\n",
    "revision = (None,)\n", "revision = [None]\n", "revision = (None, 'a')\n", "revision = [None, None]\n",
    "revision = ('a', None, '', \"b\")\n", "revision = 'a' 'b'\n", "revision = 'a''b'\n", "revision = u'a'\n",
    "revision = r'a'\n", "revision = b'a'\n", "revision = f'a'\n", "revision = '''a'''\n", 'revision = """a"""\n',
    "revision = ''\n", 'revision = ""\n', "revision = 'a', 'b'\n", "revision = 'a',\n", "revision = 'a' # c\n",
    "revision = 'a'#c\n", "revision = 'a';\n", "revision = 'a'; x = 1\n", "revision = None\n", "revision = Nonee\n",
    "revision = None.x\n", "revision = None#c\n", "revision = (None)\n", "revision = 'a\\'b'\n", "revision = 'a\\nb'\n",
    "revision = 'it\"s'\n", "revision = \"it's\"\n", "revision = 'a' + 'b'\n", "revision = X\nX = 'c'\n",
    "X = 'c'\nrevision = X\n", "revision = ('a', X)\nX = 'q'\n", "revision = ('a'\n  , 'b')\n", "revision = (\n'a',)\n",
    "revision = ('a', # c\n 'b')\n", "revision = 'é'\n", "revision = '修改'  # ü\n", "revision = '🎉x'\n",
    "revision = 'a\x0cb'\n", "revision =\x0c'a'\n", "revision = 'a\u2028b'\n", "revision = 'a\udc80'\n",
    "revision = 'a\x00'\n", "revision = 1\n", "revision = -1\n", "revision = ...\n", "revision = ['a', 'b',]\n",
    "revision = ['a',, 'b']\n", "revision = (,)\n", "revision = ('a' 'b',)\n", "revision = ['a'] ['b']\n",
    # assignment shapes
    "revision: str = 'a'\n", "revision : str = 'a'\n", "revision:str='a'\n", "revision\t=\t'a'\n",
    "revision: str\n", "revision = down_revision = 'a'\n", "revision == 'a'\n", "revision := 'a'\n",
    "(revision) = 'a'\n", "(revision): str = 'a'\n", "revision, x = 'a', 'b'\n", "revision += 'a'\n",
    "revision: Union[str, Sequence[str], None] = 'a'\n", "revision: str | None = 'a'\n",
    "revision: Optional[str] = None\n", "revision: tuple[str, ...] | None = ('a',)\n", "revision: Union[] = 'a'\n",
    "revision: Union[str,] = 'a'\n", "revision: Union[str,,] = 'a'\n", "revision: a.b.c[d] = 'a'\n",
    "revision: a. b = 'a'\n", "revision: a..b = 'a'\n", "revision: None = 'a'\n", "revision: True = 'a'\n",
    "revision: if = 'a'\n", "revision: str | = 'a'\n", "revision: | str = 'a'\n", "revision: 'str' = 'a'\n",
    "revision: Literal['a=b'] = 'a'\n", "revision: str # c\n= 'a'\n", "revision: ... = 'a'\n",
    "revision: é = 'a'\n", "revision: __debug__ = 'a'\n", "revision: match = 'a'\n", "revision: str = 'a' = 'b'\n",
    "revision: str str = 'a'\n", "revision: Union[str] None = 'a'\n", "revision: a[b][c] = 'a'\n",
    "revision_id = 'x'\nrevision = 'a'\n", "revisions = 'x'\n", " revision = 'a'\n", "\trevision = 'a'\n",
    "revision = 'a'\nrevision = 'b'\n", "if True:\n    revision = 'a'\n", "revision = 'a' \\\n\n",
    # imports
    "import sqlalchemy as sa\n", "import a.b.c\n", "import a.b as c, d\n", "import a,\n", "import a as\n",
    "from a import b\n", "from a.b import c as d, e\n", "from a import (b, c as d,)\n", "from a import (b)\n",
    "from a import ()\n", "from a import (b,,)\n", "from a import (,)\n", "from a import (b c)\n",
    "from a import (b) c\n", "from a import b c\n", "from a import b as c as d\n", "import a.b as c.d\n",
    "from a import b,\n", "from a import *\n", "from a import *, b\n", "from a import (*)\n",
    "from . import a\n", "from .a import b\n", "from a import b  # c\n", "from a import(b)\n", "from a importb\n",
    "importx\n", "import_x = 1\n", "fromx import y\n", "from x importy\n", "import a as __debug__\n",
    "from a import None\n", "import if\n", "import match, case, type, _\n",
    "from __future__ import annotations\n", "from __future__ import barry_as_FLUFL\n",
    "from __future__ import nonexistent\n", "from __future__ import *\n", "import a . b\n", "import é\n",
    "from a import (b,\n  c)\n", "import a; import b\n", "import a \\\n  as b\n",
    # docstrings
    '"""doc"""\n', '"""doc""" # c\n', '"""doc""";\n', '"""doc""" x\n', '"""doc"""\n"""two"""\n',
    "'''doc\nRevision ID: abc\nRevises: def, ghi\nCreate Date: now\n'''\n", '"""\n\nRevision ID: abc\n"""\n',
    '"""Revision ID: abc"""\n', '"""doc\\nmore"""\n', '"""doc\n', '""""doc"""\n', '"""doc""""\n', '""""""\n',
    '"""""""\n', '"doc"\n', "'doc'\n", 'r"""doc"""\n', 'u"""doc"""\n', 'b"""doc"""\n', 'f"""doc"""\n',
    '"""doc""".strip()\n', '"""doc""" "more"\n', '"""é 修改 🎉\n\nRevision ID: aé\n"""\n', '"""a\x0cb"""\n',
    '"""a\u2028b\u2029c\x85d\x1ce"""\n', '"""a\rb\r\nc"""\n', '"""  \n  message  \n"""\n', '"""\t\n"""\n',
    'import a\n"""not doc"""\n', '# c\n"""doc"""\n', '\n\n  # c\n"""doc"""\n', '"""a\x00"""\n', '"""a\udc80"""\n',
    '\ufeff"""doc"""\n', '"""\ufeffdoc"""\n', '"""doc"""\n\x0c\n', '# -*- coding: latin-1 -*-\n"""café"""\n',
    "#!/usr/bin/env python\n# coding: nonexistent\n'''x'''\n", '"""Revises: <base>\nRevision ID:\n"""\n',
    # the template's docstring lines read without _doc_field (scripts._doc_header), next to
    # their repeats, empty values and odd characters after the colon
    '"""doc\n\nRevision ID: \nRevision ID: abc\nRevises: abc\nRevises: def\nCreate Date: 1\nCreate Date: 2\n"""\n',
    '"""doc\n\nRevision ID: abc\nRevision ID: def\nRevises: \u00b2\nCreate Date: \x0c\n"""\n',
    '"""doc\n\nRevision ID: a_b\nRevises:  abc\nCreate Date:\t1 \nCreate Date: \n"""\n',
    '"""Revision ID: abc\nRevises: abc \nCreate Date: \n"""\n', '"""\n  Revision ID: abc\n\nmsg\n"""\n',
    # other statements in the header
    "x = 1\n", "X = 'abc'\n", "def helper():\n    pass\n", "class A:\n    pass\n", "@dec\n", "if x:\n    pass\n",
    "try:\n    import a\nexcept ImportError:\n    pass\n", "pass\n", "...\n", "x = (\n", "x = '''\n",
    "def upgrade \\\n():\n    op.drop_table('h')\n", "def downgrade \\\n():\n    op.drop_table('h')\n",
    "async def upgrade():\n    op.drop_table('h')\n",
    "def\tupgrade():\n    pass\n", "def upgrade[T]():\n    pass\n", "def upgrade(x=1):\n    pass\n",
    "\x0c\n", "\x0c# c\n", "  \t \n", "\t# c\n", "# c \\\n", "x = 1 \\\n", "\\\n",
    # long lines
    "revision: " + "a[" * 2000 + "str" + "]" * 2000 + " = 'a'\n", "revision: " + "a[" * 90 + "b" + "]" * 90 + " = 'a'\n",
    "revision: " + "a | " * 3000 + "b = 'a'\n", "import " + "a." * 3000 + "b\n", "from a import " + "b, " * 3000 + "c\n",
    "revision = ('" + "a" * 10000 + "', " + "None, " * 3000 + "'b')\n", "# " + "y" * 100_000 + "\n",
]


@pytest.mark.parametrize("piece", EDGE_CASES)
def test_edge_cases(piece):
    for text in (piece + HEADER + BODY, HEADER + piece + BODY, piece + BODY, HEADER + BODY + piece,
                 piece, piece.replace("\n", "\r\n") + HEADER + BODY, piece.replace("\n", "\r") + BODY,
                 piece + HEADER + UPGRADE_ONLY):
        assert_same(text)


BODY_CASES = [
    "def upgrade():\n    op.drop_table('a')\n",
    "@dec\ndef upgrade():\n    op.drop_table('a')\n",
    "def upgrade():\n    op.drop_table('a')\n@dec\ndef downgrade():\n    pass\n",
    "def upgrade():\n    op.drop_table('a')\nif x:\n    def downgrade():\n        op.drop_table('b')\n",
    "def upgrade():\n    op.drop_table('a')\nx = 1\ndef upgrade():\n    op.drop_table('b')\n",
    "def upgrade():\n    op.drop_table('a')\nclass A:\n    def downgrade(self):\n        pass\n",
    "def upgrade():\n    op.drop_table('a')\nasync def downgrade():\n    pass\n",
    "def upgrade():\n    op.drop_table('a')\nrevision = 'late'\n",
    "def upgrade():\n    op.drop_table('a')\nif True:\n    revision = 'late'\n",
    "def upgrade():\n    op.drop_table('a')\n1 <> 2\n",
    "def upgrade():\n    op.drop_table('a'\n",
    "def upgrade():\n    op.drop_table('a')\ndef downgrade():\n    with op.batch_alter_table('t') as b:\n        b.drop_column('c')\n",
    "def upgrade():\n    '''doc'''\n    ...\ndef downgrade():\n    pass\n",
    "def upgrade():\n    op.execute('\\x00')\n",
    "def upgrade():\n    op.execute('\x00')\n",
    "def upgrade():\n    op.execute('\udc80')\n",
    "def upgrade():\n    op.execute('é'); op.execute('修改')\n",
    "def upgrade():\n    op.execute('\\d')\n",
    "def upgrade():\n    x = " + "(" * 300 + ")" * 300 + "\n",
    "def upgrade():\n    op.f()" + "()" * 3000 + "\n",
    "def upgrade():\n    return\n    yield\ndef downgrade():\n    await x\n",
    "def upgrade():\n\tif x:\n        pass\n",
    "def upgrade():\n    pass\n  x = 1\n",
    "def upgrade(): op.drop_table('a'); op.drop_table('b')\n",
    "def upgrade():\n    op.drop_table('a')\n\x0cdef downgrade():\n    pass\n",
    "def upgrade():\n    op.drop_table('a')\n" + "# tail\n" * 3,
    "def upgrade():\n    op.drop_table('a')",
]


@pytest.mark.parametrize("body", BODY_CASES)
@pytest.mark.parametrize("head", ["", HEADER, STANDARD.split("\ndef upgrade")[0] + "\n",
                                  "from __future__ import barry_as_FLUFL\n" + HEADER,
                                  "X = 1\n" + HEADER, "x = (1,\n" + HEADER])
def test_body_cases(head, body):
    for text in (head + body, (head + body).replace("\n", "\r\n"), (head + body).replace("\n", "\r")):
        assert_same(text)


# --------------------------------------------------------------------------- corpora


def _corpus_files() -> list[Path]:
    return sorted(FIXTURES.rglob("*.py")) + sorted(EXAMPLES.rglob("*.py"))


def test_every_fixture_file():
    files = _corpus_files()
    assert len(files) > 50
    for path in files:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        assert_same(text, path)
        assert_same(text.replace("\n", "\r\n"), path)


def test_every_fixture_file_truncated_at_every_line():
    for path in _corpus_files():
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        if "versions" not in path.parts:
            continue
        starts = [m.end() for m in re.finditer("\n", text)]
        for cut in starts:
            assert_same(text[:cut], path)
            assert_same(text[: max(0, cut - 3)], path)  # inside the line


@pytest.fixture(scope="module")
def bench_versions(tmp_path_factory) -> Path:
    """A 600-revision project from the benchmark generator (Alembic's own rendering)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    out = tmp_path_factory.mktemp("bench")
    generate.generate(out, 600, seed=3)
    return out / "migrations" / "versions"


def test_generated_benchmark_project(bench_versions):
    files = sorted(bench_versions.glob("*.py"))
    assert len(files) == 600
    before = stats()
    for path in files:
        assert_same(path.read_text(), path)
    taken = delta(before)
    assert taken["header_fast"] == taken["header_template"] == len(files)  # the generator writes the template's shape


# --------------------------------------------------------------------------- generated variants

MESSAGES = ["add users", "", "  spaced  ", "café crème", "修改表结构", "🎉 party", "a\tb", "Revision ID: x",
            "x\u2028y", "multi\nline message", "quote ' and \" inside", 'ends with "', "#hash", "é\x0cf"]
ANNOTATIONS = ["", ": str", ": Union[str, Sequence[str], None]", ": Union[str, None]", ": str | None",
               ": Optional[str]", ": tuple[str, ...] | None", ":Sequence[str]|None", " : str", ":\tstr",
               ": Union[str,]", ": None", ": typing.Union[str, None]"]
ODD_ANNOTATIONS = [": 'str'", ": List[", ": Literal[1]", ": str =", ": if"]
IMPORTS = ["from typing import Sequence, Union", "from alembic import op", "import sqlalchemy as sa",
           "from sqlalchemy.dialects import postgresql", "import a.b.c", "from x import (a, b as c,)",
           "from __future__ import annotations", "from x import *", "import os, sys",
           "from typing import Optional  # typing", "import sqlmodel", "from app.models import Base as B"]
ODD_IMPORTS = ["from . import x", "from x import (\n    a,\n)", "import a as if", "from __future__ import braces",
               "import a \\\n    as b", "from x import a,"]
IDS = ["ab12cd34ef56", "0123456789ab", "feature", "x", "é1", "a-b", "a b", "a.b", "12", "<base>"]
COMMENTS = ["", "  # comment", "# c", "\t# tab", "  # é ' \" ( )"]


def _quote(rng: random.Random, s: str) -> str:
    q = rng.choice(["'", '"'])
    if q in s:
        q = "'" if q == '"' else '"'
    return f"{q}{s}{q}"


def _value(rng: random.Random, odd: bool) -> str:
    kind = rng.randrange(12 if odd else 8)
    if kind == 0:
        return "None"
    if kind == 1:
        return rng.choice(["''", '""'])
    if kind in (2, 3, 4, 5):
        return _quote(rng, rng.choice(IDS))
    if kind in (6, 7):
        others = ["None", "''", "X"] if odd else ["None", "''"]
        items = [_quote(rng, rng.choice(IDS)) if rng.random() < 0.8 else rng.choice(others)
                 for _ in range(rng.randrange(0, 4))]
        sep = rng.choice([", ", ",", " , ", ",\t"])
        trailing = "," if (len(items) == 1 or rng.random() < 0.3) and items else ""
        open_, close = rng.choice([("(", ")"), ("[", "]"), ("( ", " )")])
        return open_ + sep.join(items) + trailing + close
    return rng.choice(["X", "u'abc'", "r'abc'", "f'{x}'", "'a' 'b'", "('a')", "'a\\'b'", "'''abc'''",
                       "'abc'.strip()", "1", "('a',\n    'b')", "'a' \\\n"])


def _header_line(rng: random.Random, name: str, odd: bool) -> str:
    eq = rng.choice([" = ", "=", "\t=\t", " =  "])
    annotation = rng.choice(ODD_ANNOTATIONS if odd and rng.random() < 0.2 else ANNOTATIONS)
    return f"{name}{annotation}{eq}{_value(rng, odd)}{rng.choice(COMMENTS)}"


def _docstring(rng: random.Random, rev: str, odd: bool) -> list[str]:
    q = rng.choice(['"""', "'''"])
    fields = []
    if rng.random() < 0.8:
        fields.append(f"Revision ID: {rev}")
    if rng.random() < 0.8:
        fields.append("Revises: " + rng.choice(["", "abc", "abc, def", "<base>", "(a, b)"]))
    if rng.random() < 0.7:
        fields.append("Create Date: 2024-05-17 10:11:12.123456" + rng.choice(["", "  "]))
    message = rng.choice(MESSAGES)
    if rng.random() < 0.1:
        return [f"{q}{message}{q}"]
    body = [f"{q}{message}", ""] + fields + [""]
    if rng.random() < 0.1:
        body = [f"{q}"] + body[0:1] + fields  # odd layouts
    return body + [f"{q}" + rng.choice(["", "  # c", " x"] if odd else ["", "  # c"])]


def generate(rng: random.Random) -> str:
    rev = rng.choice(IDS)
    odd = rng.random() < 0.5  # else only shapes the fast path reads
    out: list[str] = []
    if rng.random() < 0.1:
        out.append(rng.choice(["# -*- coding: utf-8 -*-", "#!/usr/bin/env python", "", "  # indented"]))
    if rng.random() < 0.9:
        out += _docstring(rng, rev, odd)
    for line in rng.sample(IMPORTS + ODD_IMPORTS if odd else IMPORTS, rng.randrange(0, 5)):
        out.append(line)
        if rng.random() < 0.3:
            out.append("")
    if rng.random() < 0.7:
        out += ["", "", "# revision identifiers, used by Alembic."]
    names = ["revision", "down_revision", "branch_labels", "depends_on"]
    if rng.random() < 0.2:
        rng.shuffle(names)
    for name in names:
        if rng.random() < 0.9:
            out.append(_header_line(rng, name, odd))
        if rng.random() < 0.05:
            out.append(_header_line(rng, name, odd))  # assigned twice: the last one wins
    if odd and rng.random() < 0.2:
        out.append(rng.choice(["X = 'const'", "def helper():\n    return 1", "if x:\n    y = 1", "\t", "\x0c"]))
    out += ["", ""]
    for name in rng.sample(["upgrade", "downgrade"], rng.choice([0, 1, 2, 2, 2])):
        ann = rng.choice(["", " -> None"])
        ops = rng.sample(["op.add_column('t', sa.Column('c', sa.Integer()))", "op.drop_table('t')",
                          "pass", '"""Upgrade schema."""', "op.execute('select 1')", "helper()",
                          "with op.batch_alter_table('t') as b:\n        b.drop_column('c')",
                          "if x:\n        op.drop_index('i')", "op.execute('é 修改')"], rng.randrange(1, 4))
        out.append(f"def {name}(){ann}:")
        out += ["    " + op for op in ops]
        out += ["", ""]
    if rng.random() < 0.05:
        out.append(rng.choice(["revision = 'late'", "x = 1", "@dec\ndef downgrade():\n    pass"]))
    text = "\n".join(out) + rng.choice(["\n", "", "\n\n"])
    return text.replace("\n", rng.choice(["\n"] * 6 + ["\r\n", "\r\n", "\r"]))


FRAGMENTS = ["'", '"', '"""', "'''", "(", ")", "[", "]", ",", "\n", "\r\n", "\r", " ", "\t", "    ", "#",
             "\\", "\\n", "\x00", "\x0c", "\ufeff", "\u2028", "\udc80", "é", "修改", "🎉", "None", "=", ":",
             "= ", ": str", "def upgrade():\n", "def downgrade():\n    pass\n", "@dec\n", "if x:\n",
             "revision = 'zz'\n", "down_revision = ", "import ", "from ", " as ", "u", "r", "f", "b", "X",
             "barry_as_FLUFL", "Revision ID: ", "Revises: ", "op.drop_table('q')", "    op.execute(", "..."]


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(9)
        pos = rng.randrange(len(text) + 1)
        if kind <= 2:
            text = text[:pos] + rng.choice(FRAGMENTS) + text[pos:]
        elif kind == 3:
            text = text[:pos] + text[pos + rng.choice([1, 2, 5, 20]):]
        elif kind == 4:
            text = text[:pos]
        elif kind == 5:
            a, b = rng.sample(["'", '"'], 2)
            text = text.replace(a, b) if rng.random() < 0.5 else text.replace(a, b, 1)
        elif kind == 6:
            text = text.replace("\n", rng.choice(["\r\n", "\r", "\n\n"]), rng.choice([1, 3, -1]))
        elif kind == 7:
            text = text.replace("    ", "\t", rng.choice([1, -1]))
        else:
            lines = text.split("\n")
            if lines:
                del lines[rng.randrange(len(lines))]
            text = "\n".join(lines)
    return text


@pytest.mark.parametrize("seed", range(8))
def test_generated_files(seed):
    rng = random.Random(seed)
    before = stats()
    for _ in range(250):
        assert_same(generate(rng))
    assert delta(before)["header_fast"] > 50  # the common shapes do go the fast way


@pytest.mark.parametrize("seed", range(8))
def test_mutated_files(seed):
    rng = random.Random(1000 + seed)
    bases = [STANDARD, STANDARD.replace("\n", "\r\n")] + [
        p.read_text() for p in sorted(EXAMPLES.rglob("versions/*.py"))
    ]
    for _ in range(250):
        base = generate(rng) if rng.random() < 0.6 else rng.choice(bases)
        assert_same(mutate(rng, base))


def test_generated_files_truncated_at_every_line():
    rng = random.Random(7)
    for _ in range(40):
        text = generate(rng)
        for m in re.finditer("\n", text):
            assert_same(text[: m.end()])
            assert_same(text[: m.start()])


# --------------------------------------------------------------------------- helpers


def test_split_lines_is_the_regex_split():
    rng = random.Random(3)
    alphabet = ["a", "\n", "\r", "\r\n", "\x0c", "\u2028", "\x85", " "]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        expected = scripts._LINE_BREAK.split(text) if text else []
        if expected and expected[-1] == "":
            expected.pop()
        assert scripts.split_lines(text) == expected, repr(text)


def test_def_and_header_searches_are_the_regex_searches():
    rng = random.Random(5)
    alphabet = ["def upgrade(", "def downgrade (", "def  x(", "def", "\n", "\r", " ", "x", "revision = 1",
                "down_revision: str = 'a'", "revision == 1", "depends_on\n=", "branch_labels:x=", "\t"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(10)))
        expected = scripts._DEF_START.search(text)
        found = scripts._first_def(text)
        assert (found and found.span()) == (expected and expected.span()), repr(text)
        if found:
            start = found.start()
            after = scripts._HEADER_AFTER.search(text, max(start - 1, 0))
            assert bool(after) == bool(scripts._HEADER_START.search(text, start)), repr(text)


def test_call_finder_matches_ast_walk():
    """scripts._calls replaces `[n for n in ast.walk(x) if isinstance(n, ast.Call)]` for speed:
    same nodes, same order, on every file we have and on nested, odd constructs."""
    sources = [p.read_text(encoding="utf-8", errors="replace") for p in _corpus_files()]
    sources.append("f(g(h(1), k=[op.x(y(z)) for y in w]), *a(b), **c(d))\nwith a(b) as c: d(e(f))\n"
                   "x = lambda: op.drop_table(t(1)) if q(2) else r(3)\nasync def g():\n    await op.run_async(f)\n")
    checked = 0
    for text in sources:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            expected = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
            assert scripts._calls(node) == expected
            checked += bool(expected)
    assert checked > 100


def test_call_scan_finds_what_ast_walk_finds():
    """The body scan's call walk skips leaves (ctx, Name, Constant) for speed: on every
    statement of real Python (this package, the examples' migrations: comprehensions,
    lambdas, f-strings, match, nested calls) it finds the same calls, in ast.walk's order."""
    from migration_lsp.scripts import _SIMPLE_STATEMENTS, _calls

    root = Path(__file__).resolve().parent.parent
    files = [*sorted((root / "migration_lsp").rglob("*.py")), *sorted((root / "examples").rglob("*.py"))]
    checked = 0
    for path in files:
        for stmt in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(stmt, ast.stmt):
                assert _calls(stmt) == [n for n in ast.walk(stmt) if isinstance(n, ast.Call)], (path, stmt.lineno)
                checked += 1
                if type(stmt) in _SIMPLE_STATEMENTS:  # the scan's shortcut: they hold no statements
                    assert not any(isinstance(n, ast.stmt) for n in ast.walk(stmt) if n is not stmt)
    assert checked > 5000


# --------------------------------------------------------------------------- docstring fields


def _reference_doc_header(src, first_line: int, last_line: int, message_text: str | None):
    """scripts._doc_header before its shortcut for the template's lines: every line through
    _doc_field / _rev_tokens, the message from splitlines() of the whole text."""
    from migration_lsp.core import Span
    from migration_lsp.scripts import DocHeader, IdString, _doc_field, _rev_tokens

    revision_id = revision_id_line = revises_line = create_date = None
    revises = []
    found = False
    for n in range(first_line, min(last_line, len(src.lines) - 1) + 1):
        line = src.lines[n]
        fields = _doc_field(line)
        if fields is None:
            continue
        found = True
        key, start, end = fields
        value = line[start:end]
        if key == "Revision ID" and revision_id is None:
            revision_id_line = Span(n, start, n, end)
            for a, b in _rev_tokens(value):
                revision_id = IdString(value[a:b], Span(n, start + a, n, start + b))
                break
        elif key == "Revises" and revises_line is None:
            revises_line = Span(n, start, n, end)
            revises += [IdString(value[a:b], Span(n, start + a, n, start + b)) for a, b in _rev_tokens(value)
                        if value[a:b] != "<base>"]
        elif key == "Create Date" and create_date is None:
            create_date = value
    if message_text is None and not found:
        return None
    message = ""
    for line in (message_text or "").strip().splitlines():
        if _doc_field(line) is None:
            message = line.strip()
        break
    return DocHeader(message, Span(first_line, 0, last_line, len(src.lines[last_line]) if last_line < len(src.lines)
                                   else 0), revision_id, revision_id_line, tuple(revises), revises_line, create_date)


DOC_LINES = ["Revision ID: abc", "Revision ID: ", "Revision ID:", "Revision ID: a_b", "Revision ID: abc ",
             "Revision ID:  abc", "Revision ID:\tabc", "  Revision ID: abc", "Revision ID: \u00b2", "Revision ID: a b",
             "Revision ID: é1", "Revision ID : abc", "Revises: abc", "Revises: ", "Revises: <base>", "Revises: a, b",
             "Revises: (a, b)", "Revises: abc\t", "Revises:  abc", "Revises: a\x0cb", "Create Date: 2024-05-17 10:11",
             "Create Date: ", "Create Date:", "Create Date:  x", "Create Date: \x0c", "Create Date: x \t",
             "Create Date:\tx", "Create Date: \u2028x", "message", "", "Revision IDs: x", "Revises abc"]


@pytest.mark.parametrize("seed", range(40))
def test_doc_header_shortcut_is_the_general_reading(seed):
    """The template's `Revision ID: <id>` / `Revises: <id>` / `Create Date: ...` lines are read
    without the general field parser: the same fields, values and spans, repeats included."""
    rng = random.Random(seed)
    for _ in range(50):
        lines = [rng.choice(MESSAGES).replace("\n", " ")] + [rng.choice(DOC_LINES) for _ in range(rng.randrange(1, 7))]
        text = "\n".join(lines)
        src = scripts._Source(text)
        last = len(src.lines) - 1
        for message in (text, None, "\n" + text, " \u2028" + text):
            expected = _reference_doc_header(src, 0, last, message)
            assert scripts._doc_header(src, 0, last, message) == expected, (text, message)
            assert scripts._doc_header(src, 0, last, message, scripts._span) == expected, (text, message)


def test_released_bodies_are_parsed_again_to_the_same_result():
    """What a script parses on first use (upgrade()/downgrade(), the whole module) is
    forgotten by release_bodies and parsed again when asked for; a script whose functions
    were parsed with the header keeps them (nothing to parse again from)."""
    script = parse_script(P, STANDARD)
    assert script.functions is None  # (header only so far)
    ops = [op.name for op in script.upgrade.ops]
    module = scripts.module_body(script)
    assert scripts.module_body(script) is module  # (kept until released)
    script.release_bodies()
    assert script.functions is None
    again = scripts.module_body(script)
    assert again is not module and [ast.dump(s) for s in again] == [ast.dump(s) for s in module]
    assert [op.name for op in script.upgrade.ops] == ops == ["add_column"]
    whole = parse_script(P, STANDARD, header_only=False)
    whole.release_bodies()
    assert whole.functions is not None and [op.name for op in whole.upgrade.ops] == ops
