"""Closing a buffer, in the engine (every front end alike): a file the editor created and saved
stays in the graph after didClose until discovery has taken it in from the disk. Closed at
once, its revision vanished until the next rescan: the heads came back, a hover right after
the close saw no child (the server's e2e test_did_you_mean_then_merge_heads_gives_alembic_one_head
drives the same through an editor session)."""

from __future__ import annotations

from pathlib import Path

from conftest import alembic_project, migration_text

from migration_lsp.engine import Engine

BASE, HEAD_A, HEAD_B, MERGE = "aaaa00000001", "bbbb00000002", "cccc00000003", "dddd00000004"


def two_heads(root: Path) -> tuple[Engine, Path, str]:
    """A project with two heads, and a merge revision created in the editor and saved (on the
    disk, open, not yet discovered)."""
    alembic_project(root, {f"{BASE}_base.py": migration_text(BASE),
                           f"{HEAD_A}_a.py": migration_text(HEAD_A, BASE),
                           f"{HEAD_B}_b.py": migration_text(HEAD_B, BASE)})
    engine = Engine([root], trusted=False, cache=False)
    assert sorted(engine.snapshot().environments[0].graph.heads) == [HEAD_A, HEAD_B]
    merge = root / "migrations" / "versions" / f"{MERGE}_merge.py"
    text = migration_text(MERGE, (HEAD_A, HEAD_B), message="merge")
    engine.set_buffer(merge, text)  # created by the editor (a code action), open
    merge.write_text(text, encoding="utf-8")  # saved
    assert engine.snapshot().environments[0].graph.heads == (MERGE,)
    assert not engine.tracks(merge)  # (no rescan yet: only its buffer puts it in the graph)
    return engine, merge, text


def heads(engine: Engine) -> tuple[str, ...]:
    return engine.snapshot().environments[0].graph.heads


def test_a_saved_new_file_stays_in_the_graph_until_discovery_has_it(tmp_path: Path):
    engine, merge, _ = two_heads(tmp_path)
    assert engine.close_buffer(merge) is False  # kept: the front end runs the rescan asked for
    assert engine.rescan_pending and merge.resolve() in engine.buffers
    assert heads(engine) == (MERGE,)
    plan = engine.plan_rescan()
    assert plan.walk == frozenset({tmp_path.resolve()})
    engine.adopt(plan, plan.run())
    assert not engine.rescan_pending and engine.tracks(merge)
    assert merge.resolve() not in engine.buffers  # closed now: the disk's text counts
    assert heads(engine) == (MERGE,)


def test_a_buffer_opened_again_before_the_rescan_stays_open(tmp_path: Path):
    engine, merge, text = two_heads(tmp_path)
    assert engine.close_buffer(merge) is False
    engine.set_buffer(merge, text + "\n# typing again\n")
    plan = engine.plan_rescan()
    engine.adopt(plan, plan.run())
    assert engine.buffers[merge.resolve()].endswith("# typing again\n")


def test_a_superseded_rescan_closes_nothing_yet(tmp_path: Path):
    engine, merge, _ = two_heads(tmp_path)
    engine.close_buffer(merge)
    old = engine.plan_rescan()
    engine.want_rescan()  # (a config changed meanwhile)
    assert engine.adopt(old, old.run()) is None
    assert merge.resolve() in engine.buffers and heads(engine) == (MERGE,)
    engine.rescan()
    assert merge.resolve() not in engine.buffers and heads(engine) == (MERGE,)


def test_other_buffers_close_at_once(tmp_path: Path):
    """A discovered file, and one never saved (not on the disk): closed at once, no rescan."""
    engine, merge, text = two_heads(tmp_path)
    engine.rescan()
    head_a = tmp_path / "migrations" / "versions" / f"{HEAD_A}_a.py"
    engine.set_buffer(head_a, head_a.read_text(encoding="utf-8") + "\n# edited, unsaved\n")
    assert engine.close_buffer(head_a) is True and not engine.rescan_pending
    assert head_a.resolve() not in engine.buffers
    unsaved = merge.with_name("eeee00000005_unsaved.py")
    engine.set_buffer(unsaved, migration_text("eeee00000005", MERGE))
    assert heads(engine) == ("eeee00000005",)
    assert engine.close_buffer(unsaved) is True and not engine.rescan_pending
    assert heads(engine) == (MERGE,)
