"""Adversarial input, property-tested: whatever is typed, the parser never raises, the
engine never fails, and after any sequence of edits the live diagnostics equal a fresh
check of the final text (what `migration-lsp check` would say)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_lsp.checks import apply_filters
from migration_lsp.checks.graph import check_graph
from migration_lsp.core import Diagnostic
from migration_lsp.engine import Engine
from migration_lsp.graph import RevisionGraph
from migration_lsp.scripts import parse_script

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "blog"
VERSIONS = EXAMPLE / "migrations" / "versions"
REAL_FILES = sorted(VERSIONS.glob("*.py"))
SEQUENCES = int(os.environ.get("ADVERSARIAL_SEQUENCES", "1000"))

# Fragments an editor session produces: ids, quotes, brackets, keywords, junk.
FRAGMENTS = [
    "'", '"', '"""', "(", ")", "[", "]", ",", "\n", "\r\n", "\r", " ", "    ", "#", "\\", "\x00", "\t",
    "revision = ", "down_revision = ", "depends_on = ", "branch_labels = ", "None", "= ", ":",
    "'bd474000068b'", "'2d91aa861ea7'", "'cbdb87983bfd'", "bd47", "6a4961b6b2ca", "'nope'",
    "def upgrade():\n", "def downgrade():\n    pass\n", "op.add_column('users', sa.Column('x', sa.Integer()))",
    "op.drop_table('posts')", "op.execute(", "sa.Column(", "Revises: ", "Revision ID: ",
    "é", "修改", "🎉", "\u2028", "\ufeff", "\x0c", "x" * 300,
]
fragment = st.sampled_from(FRAGMENTS) | st.text(max_size=12)


@st.composite
def edits(draw, text: str):
    """One edit: replace [start, end) of the current text by a fragment (possibly nothing)."""
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + draw(st.sampled_from([0, 1, 5, 40])))))
    insert = draw(st.one_of(st.just(""), fragment, st.lists(fragment, max_size=4).map("".join)))
    return start, end, insert


def apply(text: str, edit: tuple[int, int, str]) -> str:
    start, end, insert = edit
    return text[:start] + insert + text[end:]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adversarial") / "blog"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    return root


@settings(max_examples=SEQUENCES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_live_diagnostics_equal_fresh_check(workspace: Path, data):
    """A session: one engine (like the server's) sees every intermediate text of one or two
    files, with quick (graph-only, patched graph) and full passes as the server mixes them;
    after each edit its graph diagnostics equal a graph built from scratch, and at the end
    its diagnostics equal those of a fresh engine reading the final texts from disk, with
    the persistent cache and without it."""
    files = data.draw(st.lists(st.sampled_from(REAL_FILES), min_size=1, max_size=2, unique=True))
    live = Engine([workspace])
    live.snapshot()
    texts = {}
    for original in files:
        path = (workspace / "migrations" / "versions" / original.name).resolve()
        text = original.read_text()
        for _ in range(data.draw(st.integers(1, 6))):
            text = apply(text, data.draw(edits(text)))
            live.set_buffer(path, text)
            quick = data.draw(st.booleans())
            snapshot = live.snapshot(quick=quick)  # as after every didChange / pause
            for state in snapshot.environments:
                scripts = {s.path: s for s in state.scripts}
                scratch = apply_filters(check_graph(RevisionGraph(state.scripts), state.env.name),
                                        state.env.settings, scripts)
                live_graph = [d for d in state.diagnostics if d.code.startswith("G")]
                assert live_graph == sorted(scratch, key=Diagnostic.sort_key)
        texts[path] = text
    try:
        for path, text in texts.items():
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        fresh = Engine([workspace]).snapshot().diagnostics
        assert live.snapshot().diagnostics == fresh
        assert Engine([workspace], cache=False).snapshot().diagnostics == fresh
    finally:
        for original in files:
            (workspace / "migrations" / "versions" / original.name).write_text(original.read_text())


@pytest.mark.parametrize("before, after", [
    ("op.create_table('posts',", "op.create_table(#'posts',"),  # the first column becomes the name
    ("sa.Column('id', sa.Integer(), nullable=False),\n    sa.Column('author_id'",
     "sa.Column(sa.Integer(), nullable=False),\n    sa.Column('author_id'"),  # a column without a name
])
def test_half_typed_names_found_by_hypothesis(workspace: Path, before: str, after: str):
    """Regressions: a name argument that is not a string made the replay raise."""
    original = VERSIONS / "dad0a46d0394_add_posts_table.py"
    path = (workspace / "migrations" / "versions" / original.name).resolve()
    text = original.read_text()
    assert before in text
    live = Engine([workspace])
    live.snapshot()
    live.set_buffer(path, text.replace(before, after, 1))
    for quick in (True, False):
        assert live.snapshot(quick=quick) is not None
    try:
        path.write_text(text.replace(before, after, 1))
        assert live.snapshot().diagnostics == Engine([workspace], cache=False).snapshot().diagnostics
    finally:
        path.write_text(text)


@settings(max_examples=300, deadline=None)
@given(text=st.sampled_from(REAL_FILES).map(lambda p: p.read_text()), cut=st.data())
def test_parser_never_raises_on_mutations(text: str, cut):
    """Truncation, junk, unbalanced brackets and quotes, NUL bytes, mixed line endings."""
    for _ in range(cut.draw(st.integers(1, 5))):
        text = apply(text, cut.draw(edits(text)))
    script = parse_script(Path("x.py"), text)
    for _, ident in script.id_strings():  # every span points inside the text
        assert 0 <= ident.span.line < max(1, len(script.lines))


@pytest.mark.parametrize("text", [
    "revision = 'a' * 10_000_000",
    "revision = 'abc'\n" + "x = (" * 5000 + ")" * 5000,
    "revision = 'abc'\ndown_revision = None\n" + "# " + "y" * 100_000 + "\n",
    "revision = 'abc'\ndown_revision = None\n" + "def upgrade():\n" + "    op.execute('x')\n" * 50_000,
    "\x00" * 1000,
    "revision = 'ab\udc80c'\n",
])
def test_pathological_files(text: str):
    script = parse_script(Path("x.py"), text)
    assert script is not None  # and nothing raised


def test_ten_megabyte_file_and_invalid_utf8_on_disk(tmp_path: Path):
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    (versions / "a.py").write_bytes(b"revision = 'aaa'\ndown_revision = None\n# \xff\xfe bad bytes\n")
    (versions / "big.py").write_text("revision = 'bbb'\ndown_revision = 'aaa'\n" + "# filler\n" * 1_300_000)
    (versions / "latin.py").write_bytes(b"# -*- coding: latin-1 -*-\nrevision = 'ccc'\ndown_revision = 'bbb'\n"
                                        b"'''caf\xe9'''\n")
    snapshot = Engine([tmp_path]).snapshot()
    (state,) = snapshot.environments
    assert set(state.graph.by_id) == {"aaa", "bbb", "ccc"}
    assert [d.code for d in snapshot.diagnostics] == []
