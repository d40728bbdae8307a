"""Zero-config discovery on fixtures that mirror real public projects (see
tests/fixtures/realworld/README.md): every revision found, heads and bases equal to what
Alembic reports (expected.json, computed with Alembic by compute_truth.py), and no
error-severity diagnostic on these healthy projects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migration_lsp.core import Severity
from migration_lsp.engine import Engine

FIXTURES = Path(__file__).parent / "fixtures" / "realworld"
PROJECTS = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").is_file())


@pytest.mark.parametrize("name", PROJECTS)
def test_matches_alembic_with_zero_config(name: str):
    expected = json.loads((FIXTURES / name / "expected.json").read_text())["environments"]
    snapshot = Engine([FIXTURES / name]).snapshot()
    assert snapshot.problems == ()
    ours = sorted(
        ({"revision_ids": sorted(s.graph.by_id), "heads": sorted(s.graph.heads), "bases": sorted(s.graph.bases)}
         for s in snapshot.environments),
        key=lambda e: e["revision_ids"][0],
    )
    theirs = sorted(
        ({k: sorted(e[k]) for k in ("revision_ids", "heads", "bases")} for e in expected),
        key=lambda e: e["revision_ids"][0],
    )
    assert ours == theirs
    errors = [d for d in snapshot.diagnostics if d.severity == Severity.ERROR]
    assert errors == []


def test_fixtures_are_present():
    assert len(PROJECTS) >= 5
