"""The engine's one memo by revision key (engine/memo.py): an edit and its undo compute
nothing twice, and however many different texts a session goes through, the memo stays
within its one bound (twice the live keys, plus SPARE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_lsp.engine import Engine
from migration_lsp.engine import memo as memo_module

REVISIONS = 12


def _revision(n: int, extra: str = "") -> str:
    parent = repr(f"{n - 1:012d}") if n else "None"
    return (f'"""table {n}"""\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
            f"revision = '{n:012d}'\ndown_revision = {parent}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    op.create_table('t{n}', sa.Column('id', sa.Integer(), primary_key=True))\n{extra}\n\n"
            f"def downgrade():\n    op.drop_table('t{n}')\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    (tmp_path / "migrations" / "env.py").write_text("target_metadata = None\n")
    for n in range(REVISIONS):
        (versions / f"{n:012d}_t{n}.py").write_text(_revision(n))
    return tmp_path


def test_an_edit_and_its_undo_compute_nothing_twice(project: Path):
    engine = Engine([project], trusted=False, cache=False)
    engine.snapshot()
    first = (project / "migrations" / "versions" / f"{0:012d}_t0.py").resolve()
    edited = _revision(0, "    op.add_column('t0', sa.Column('x', sa.Text()))\n")
    engine.set_buffer(first, edited)
    before = engine.computed_revisions
    engine.snapshot()
    assert engine.computed_revisions - before == REVISIONS  # the file and everything above it
    engine.set_buffer(first, _revision(0))  # undo
    before = engine.computed_revisions
    engine.snapshot()
    engine.set_buffer(first, edited)  # redo
    engine.snapshot()
    assert engine.computed_revisions == before


def test_the_memo_stays_within_its_bound_over_many_texts(project: Path, monkeypatch):
    monkeypatch.setattr(memo_module, "SPARE", 0)
    engine = Engine([project], trusted=False, cache=False)
    engine.snapshot()
    first = (project / "migrations" / "versions" / f"{0:012d}_t0.py").resolve()
    live = REVISIONS + 1  # every revision's key and the heads' key (the models' entry)
    sizes = []
    for i in range(30):  # texts never seen before: every pass adds REVISIONS new keys
        engine.set_buffer(first, _revision(0, f"    # edit {i}\n"))
        engine.snapshot()
        sizes.append(len(engine.revisions))
    assert max(sizes) <= 2 * live  # evicted after the pass that crossed the bound
    assert sizes[-1] >= live  # the current texts' entries are kept
    before = engine.computed_revisions
    engine.snapshot()  # nothing changed: all from the memo
    assert engine.computed_revisions == before


def test_passes_that_an_edit_abandons_keep_the_memo_within_its_bound(project: Path, monkeypatch):
    """The server's full pass is abandoned by the next edit, and at 5,000 revisions a pass
    after a mid-history edit outlasts the pause between edits: a pass may never complete.
    Eviction used to run only when one did, so each abandoned pass's entries, schemas
    included, stayed for good (the server benchmark's 40 request edits: 18,868 entries, 268
    MiB). Now the keys of the pass under way are live from its start, and what only an
    abandoned pass used is evicted when the next one begins: here 20 passes, each abandoned
    after computing 8 of the 12 revisions (old code: 173 entries, every one with its schema)."""
    monkeypatch.setattr(memo_module, "SPARE", 0)
    monkeypatch.setattr(memo_module, "REPLAY_SPARE", 0)
    engine = Engine([project], trusted=False, cache=False)
    engine.snapshot()
    first = (project / "migrations" / "versions" / f"{0:012d}_t0.py").resolve()
    live = REVISIONS + 1  # the complete pass's keys (every revision's and the heads' one)
    sizes, schemas = [], []
    for i in range(20):
        engine.set_buffer(first, _revision(0, f"    # edit {i}\n"))  # (abandons the pass before)
        engine.snapshot(quick=True)
        start = engine.computed_revisions
        for _ in engine.snapshot_steps():
            if engine.computed_revisions - start == 8:
                break  # (the next edit comes)
        assert engine.computed_revisions - start == 8
        entries = engine.revisions._entries.values()
        sizes.append(len(entries))
        schemas.append(sum(e.replay is not None for e in entries))
    # the complete pass's entries and what the pass under way computed: what the abandoned
    # ones computed went when the next pass began (a text the editor has left)
    assert max(sizes) <= live + 8
    assert max(schemas) <= live + 8
    engine.set_buffer(first, _revision(0))  # undo: the complete pass's entries are all there
    before = engine.computed_revisions
    engine.snapshot()
    assert engine.computed_revisions == before


def _generated_scripts(tmp_path: Path, n: int) -> list:
    """The header-only scripts of a benchmarks/generate.py project of `n` revisions, as the index reads them."""
    import importlib.util
    import sys

    from migration_lsp.scripts import parse_script

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("bench_generate", REPO_ROOT / "benchmarks" / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_generate", generate)
    spec.loader.exec_module(generate)
    generate.generate(tmp_path / "gen", n, 1)
    paths = sorted((tmp_path / "gen").rglob("versions/*.py"))
    return [parse_script(p, p.read_text(encoding="utf-8")) for p in paths]


def test_releasing_bodies_adds_nothing_to_an_index(tmp_path: Path):
    """release_bodies() runs for every revision a pass computes. Writing `_module = None` on
    a script that never had it set made each instance's dict 768 bytes larger (3.7 MiB at
    5,000 revisions, for nothing). On benchmarks/generate.py's files, as the pass sees them."""
    import tracemalloc

    scripts = _generated_scripts(tmp_path, 40)
    for script in scripts:
        assert script.upgrade is not None  # (the bodies parsed, as the pass does)
    tracemalloc.start()
    try:
        for script in scripts:
            script.release_bodies()
        grown, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(scripts) == 40 and all(s.functions is None for s in scripts)
    assert grown < 100 * len(scripts)  # (old code: 768 bytes a script)


def test_a_released_script_keeps_no_lines(tmp_path: Path):
    """The parse of the bodies splits the text into lines; release_bodies() forgets them with
    the syntax trees (split again on first use). Kept, they were 12 MiB of the server's
    steady state at 5,000 revisions (~2.4 KB a generated file, traced)."""
    import gc
    import tracemalloc

    scripts = _generated_scripts(tmp_path, 40)
    tracemalloc.start()
    try:
        for script in scripts:
            assert script.upgrade is not None  # (the bodies parsed, as the pass does: the lines split)
            script.release_bodies()
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(s._lines is None for s in scripts)
    assert kept < 500 * len(scripts)  # (old code: 2,869 bytes a script; now 14)
    again = scripts[0]
    assert again.lines == tuple(again.text.split("\n")[:-1])  # split again, to the same lines
    assert again.upgrade is not None and again.upgrade.span.line > 0


def test_a_full_pass_leaves_lines_only_to_open_files_and_splits_each_text_once(project: Path, monkeypatch):
    """After a full pass no revision but the open one holds its lines: the findings are filtered
    without them (no ignore comment in the text) once the bodies are released. A keystroke
    (set_buffer + quick snapshot) splits only its own text (the header reader's lines, kept
    with the open file); the full pass after it splits each revision it computes once."""
    from migration_lsp import scripts as scripts_module

    splits = []
    split_lines = scripts_module.split_lines
    monkeypatch.setattr(scripts_module, "split_lines", lambda text: splits.append(text) or split_lines(text))
    engine = Engine([project], trusted=False, cache=False)
    first = (project / "migrations" / "versions" / f"{0:012d}_t0.py").resolve()
    engine.set_buffer(first, _revision(0))
    snap = engine.snapshot()
    held = {path for state in snap.environments for path, s in state.script_by_path.items() if s._lines is not None}
    assert held == {first}
    splits.clear()
    for i in range(5):
        engine.set_buffer(first, _revision(0, f"    # edit {i}\n"))
        engine.snapshot(quick=True)
    assert splits == [_revision(0, f"    # edit {i}\n") for i in range(5)]  # (as before this change)
    splits.clear()
    before = engine.computed_revisions
    snap = engine.snapshot()
    assert engine.computed_revisions - before == REVISIONS
    assert len(splits) <= REVISIONS  # (each computed revision's text once)
    held = {path for state in snap.environments for path, s in state.script_by_path.items() if s._lines is not None}
    assert held == {first}


def test_an_ignore_comment_still_silences_after_the_bodies_are_released(project: Path):
    """The filter splits a text's lines only when it holds the ignore marker, after the pass
    released them: a closed file's ignore comment still silences its finding."""
    (project / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n"
                                         "sqlalchemy.url = postgresql://user:pass@localhost/app\n")
    path = project / "migrations" / "versions" / f"{5:012d}_t5.py"
    add = "    op.add_column('t4', sa.Column('x', sa.Integer(), nullable=False))"  # (t4: a table with rows)
    path.write_text(_revision(5, add + "\n"))
    found = Engine([project], trusted=False, cache=False).snapshot().diagnostics_by_path().get(path.resolve(), ())
    on_line = [d for d in found if d.span.line == _revision(5, add).split("\n").index(add)]
    assert on_line
    code = on_line[0].code
    path.write_text(_revision(5, f"{add}  # migration-lsp: ignore[{code}]\n"))
    engine = Engine([project], trusted=False, cache=False)
    found = engine.snapshot().diagnostics_by_path().get(path.resolve(), ())
    assert code not in {d.code for d in found if d.span.line == on_line[0].span.line}
    script = engine.snapshot().script(path.resolve())
    assert script is not None and script._lines is not None  # (split by the filter, for the marker)


def test_converting_positions_splits_no_ascii_script(project: Path):
    """The server converts every published diagnostic's columns to the client's units. An
    ASCII text's columns are its units: its lines are not split (they were, and kept, for
    every file with a finding); a non-ASCII one still counts UTF-16 units."""
    from migration_lsp.core import Span
    from migration_lsp.features import Locator

    path = project / "migrations" / "versions" / f"{3:012d}_t3.py"
    path.write_text(_revision(3).replace('"""table 3"""', '"""table 3 \U0001d11e x"""'))
    snap = Engine([project], trusted=False, cache=False).snapshot()
    locator = Locator(snap)
    ascii_path = (project / "migrations" / "versions" / f"{5:012d}_t5.py").resolve()
    start = locator.range(ascii_path, Span(4, 2, 4, 9)).start
    assert (start.line, start.character) == (4, 2) and locator.column(ascii_path, start) == 2
    script = snap.script(ascii_path)
    assert script is not None and script._lines is None
    line0 = path.read_text().split("\n")[0]
    col = line0.index("x")
    found = locator.position(path.resolve(), 0, col)
    assert found.character == col + 1  # (the clef is two UTF-16 units)
    assert locator.column(path.resolve(), found) == col
