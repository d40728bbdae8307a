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
