"""RevisionGraph.replacing (the per-keystroke patch) must equal a graph built from scratch,
after any sequence of edits: random graphs, random header edits, every query compared."""

from __future__ import annotations

import cProfile
import hashlib
import pstats
import random
from pathlib import Path

import pytest

from migration_lsp.graph import RevisionGraph
from migration_lsp.scripts import parse_script

from conftest import alembic_project, migration_text

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


def _chain_project(root: Path, n: int) -> tuple[Path, str, str, str]:
    """A linear history of n revisions; (root, the middle file, its text, the same with a
    typo in its down_revision)."""
    ids = [hashlib.sha1(str(i).encode()).hexdigest()[:12] for i in range(n)]  # (ids as Alembic makes them)
    files = {f"{rev}_x.py": migration_text(rev, ids[i - 1] if i else None) for i, rev in enumerate(ids)}
    alembic_project(root, files)
    name = f"{ids[n // 2]}_x.py"
    text = files[name]
    broken = text.replace(f"down_revision: Union[str, Sequence[str], None] = '{ids[n // 2 - 1]}'",
                          f"down_revision: Union[str, Sequence[str], None] = '{ids[n // 2 - 1][:-1]}x'")
    assert broken != text
    return root, name, text, broken


def _calls_per_edit(root: Path, name: str, text: str, broken: str) -> tuple[float, list]:
    """Python and builtin calls (cProfile's count: every step of a generator, every dict.get
    of a walk) of the per-keystroke path — set_buffer + snapshot(quick=True) — averaged over
    edits that break and repair the middle file's down_revision and edit its body."""
    from migration_lsp.engine import Engine

    engine = Engine([root], trusted=False, cache=False)
    engine.snapshot(quick=True)
    engine.warm_up()
    path = (root / "migrations" / "versions" / name).resolve()
    edits = [broken, text, broken, text, text + "\n# typing\n", text]
    found = []
    profile = cProfile.Profile()
    for new in edits:
        profile.enable()
        engine.set_buffer(path, new)
        snapshot = engine.snapshot(quick=True)
        profile.disable()
        found.append(sorted(d.code for d in snapshot.diagnostics))
    return pstats.Stats(profile).total_calls / len(edits), found


def test_an_edit_costs_the_same_at_any_history_length(tmp_path: Path):
    """Issue 13 (didChange at 20,000 revisions): a keystroke that relinks a revision, or
    types in its body, does a bounded number of steps however long the history is. Before:
    the heads were rescanned (one generator step per revision), the repair's loop check
    walked every revision above the edited one, and every file was compared with its
    previous parse — calls per edit grew about as the history (ratio near 4 here)."""
    _calls_per_edit(*_chain_project(tmp_path / "warm", 40))  # module caches filled
    small, found_small = _calls_per_edit(*_chain_project(tmp_path / "small", 200))
    large, found_large = _calls_per_edit(*_chain_project(tmp_path / "large", 800))
    # the edits did what they should: a typo'd down_revision is G002 (and detaches a head), repaired it is gone
    assert found_small == found_large
    assert "G002" in found_small[0] and found_small[1] == [] and found_small[4] == []
    assert large / small < 1.3, (small, large)


def test_a_body_edit_shares_the_link_maps_and_a_relink_copies_only_its_own(tmp_path: Path):
    """The per-keystroke patch copies only the maps the edit changes (each copy is a pass
    over every revision)."""
    a = _script(tmp_path / "a.py", "aaaaaaaaaaaa", None)
    b = _script(tmp_path / "b.py", "bbbbbbbbbbbb", "aaaaaaaaaaaa")
    graph = RevisionGraph([a, b])
    body = graph.replacing(b, _script(tmp_path / "b.py", "bbbbbbbbbbbb", "aaaaaaaaaaaa", body="pass  # typed"))
    assert body is not None
    assert all(getattr(body, m) is getattr(graph, m) for m in ("parents", "children", "dependencies", "dependents"))
    relinked = graph.replacing(b, _script(tmp_path / "b.py", "bbbbbbbbbbbb", "aaaaaaaaaaaz"))
    assert relinked is not None and relinked.parents is not graph.parents and relinked.children is not graph.children
    assert relinked.dependencies is graph.dependencies and relinked.dependents is graph.dependents
    assert relinked.heads == ("aaaaaaaaaaaa", "bbbbbbbbbbbb") and graph.heads == ("bbbbbbbbbbbb",)


def test_a_patched_graph_shares_what_its_edit_cannot_change(tmp_path: Path):
    """What a graph computes on first use (graph._Lazy) is shared by a patch that leaves the
    down_revision links alone, and computed again, from the patched links, after one that
    changes them."""
    a = _script(tmp_path / "a.py", "aaaaaaaaaaaa", None)
    b = _script(tmp_path / "b.py", "bbbbbbbbbbbb", "aaaaaaaaaaaa")
    c = _script(tmp_path / "c.py", "cccccccccccc", "bbbbbbbbbbbb")
    graph = RevisionGraph([a, b, c])
    order, depth = graph.topological_order, graph.depth
    body = graph.replacing(c, _script(tmp_path / "c.py", "cccccccccccc", "bbbbbbbbbbbb", body="pass  # typed"))
    assert body is not None and body.topological_order is order and body.depth is depth
    relinked = body.replacing(body.by_id["cccccccccccc"], _script(tmp_path / "c.py", "cccccccccccc", "aaaaaaaaaaaa"))
    assert relinked is not None and relinked.depth == {"aaaaaaaaaaaa": 1, "bbbbbbbbbbbb": 2, "cccccccccccc": 2}
    assert graph.depth is depth and depth["cccccccccccc"] == 3  # (the source graph is unchanged)
