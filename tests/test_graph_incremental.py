"""RevisionGraph.replacing (the per-keystroke patch) must equal a graph built from scratch,
after any sequence of edits: random graphs, random header edits, every query compared."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from migration_lsp.graph import RevisionGraph
from migration_lsp.scripts import parse_script

from conftest import migration_text

SEQUENCES = 150
EDITS = 25


def _script(path: Path, rev: str, down, depends=None, labels=None, message="m", body=""):
    text = migration_text(rev, down, message=message, depends_on=depends, branch_labels=labels,
                          upgrades=body or None)
    return parse_script(path, text)


def _view(g: RevisionGraph) -> dict:
    """Everything a caller can ask a graph, in comparable form."""
    broken = [(b.script.path, b.kind, b.ref.value, b.ref.span, b.prefix_matches) for b in g.broken]
    return {
        "scripts": [id(s) for s in g.scripts],
        "by_id": {r: id(s) for r, s in g.by_id.items()},
        "duplicates": {r: [id(s) for s in ss] for r, ss in g.duplicates.items()},
        "unreadable": [id(s) for s in g.unreadable],
        "labels": g.labels,
        "clashes": [(id(c.script), c.label.value, c.other, c.is_revision_id) for c in g.label_clashes],
        "own": g.own_labels,
        "unknown": g.unknown_labels,
        "parents": g.parents,
        "dependencies": g.dependencies,
        "children": g.children,
        "dependents": g.dependents,
        "broken": broken,
        "uncertain": g.uncertain,
        "heads": g.heads,
        "bases": g.bases,
        "merge_points": g.merge_points,
        "branch_points": g.branch_points,
        "inherited": g.inherited_labels,
        "topo": g.topological_order,
        "depth": g.depth,
        "cycles": (g.cycles(False), g.cycles(True)),
        "head_groups": g.head_groups(),
        "effective": {r: g.effective_labels(r) for r in g.bases},
    }


def _random_edit(rnd: random.Random, old, ids: list[str]):
    rev = old.revision_id or "x"
    choice = rnd.random()
    others = [i for i in ids if i != rev] or [rev]
    down = old.down_revision.values if old.down_revision else ()
    down = down[0] if len(down) == 1 else (list(down) or None)
    depends = list(old.depends_on.values) if old.depends_on and old.depends_on.values else None
    labels = list(old.branch_labels.values) if old.branch_labels and old.branch_labels.values else None
    if choice < 0.25:  # break / repair / retarget down_revision (typos, loops, merges, none)
        down = rnd.choice([rnd.choice(others), rnd.choice(others)[:-1] + "z", None,
                           rnd.sample(others, min(2, len(others))), rnd.choice(others)[:5], rev])
    elif choice < 0.4:
        depends = rnd.choice([None, [rnd.choice(others)], ["nolabel"], [rnd.choice(others) + "q"], ["lbl"]])
    elif choice < 0.5:
        labels = rnd.choice([None, ["lbl"], ["other"], [rnd.choice(others)]])
    elif choice < 0.6:
        rev = rnd.choice([rev, rnd.choice(others), rev + "n"])
    return _script(old.path, rev, down, depends, labels, message=f"m{rnd.random()}",
                   body=rnd.choice(["", "op.drop_table('t')"]))


@pytest.mark.parametrize("seed", range(SEQUENCES))
def test_patched_graph_equals_scratch_after_random_edits(tmp_path, seed):
    rnd = random.Random(seed)
    n = rnd.randint(2, 14)
    ids = [f"{rnd.getrandbits(48):012x}" for _ in range(n)]
    scripts = []
    for i, rev in enumerate(ids):
        down = None if i == 0 else (ids[rnd.randrange(i)] if rnd.random() < 0.85 else
                                    [ids[rnd.randrange(i)], ids[rnd.randrange(i)]])
        labels = ["lbl"] if rnd.random() < 0.1 else None
        scripts.append(_script(tmp_path / f"{i:02d}_{rev}.py", rev, down, labels=labels))
    graph = RevisionGraph(scripts)
    patched_some = False
    for _ in range(EDITS):
        index = rnd.randrange(len(scripts))
        old = scripts[index]
        new = _random_edit(rnd, old, ids)
        scripts[index] = new
        patched = graph.replacing(old, new)
        scratch = RevisionGraph(scripts)
        if patched is not None:
            patched_some = True
            assert _view(patched) == _view(scratch)
        graph = patched if patched is not None else scratch
    assert patched_some or seed % 7  # most sequences exercise the patch


def test_body_edit_is_patched_not_rebuilt(tmp_path):
    a = _script(tmp_path / "a.py", "aaaaaaaaaaaa", None)
    b = _script(tmp_path / "b.py", "bbbbbbbbbbbb", "aaaaaaaaaaaa")
    graph = RevisionGraph([a, b])
    b2 = _script(tmp_path / "b.py", "bbbbbbbbbbbb", "aaaaaaaaaaaz", body="op.drop_table('t')")
    patched = graph.replacing(b, b2)
    assert patched is not None and patched.by_id["bbbbbbbbbbbb"] is b2
    assert [x.ref.value for x in patched.broken] == ["aaaaaaaaaaaz"]
    assert set(patched.heads) == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}
    # a loop made by the edit is found even though the old graph was loop-free
    a2 = _script(tmp_path / "a.py", "aaaaaaaaaaaa", "bbbbbbbbbbbb")
    fixed = patched.replacing(b2, b)
    looped = fixed.replacing(a, a2)
    assert looped is not None and looped.cycles()
    # an id change is not patched
    assert graph.replacing(b, _script(tmp_path / "b.py", "cccccccccccc", "aaaaaaaaaaaa")) is None
