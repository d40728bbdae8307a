"""The collector policy of a long session (engine.collector, issue 13): when the permanent
generation is swept is decided by counting frozen objects; a sweep frees what was frozen
alive and later died in a cycle (what gc.freeze() alone never frees). Counts, not times."""

from __future__ import annotations

import gc
import weakref

import pytest

from migration_lsp.engine.collector import FrozenGrowth


@pytest.fixture
def collector_state():
    """The test freezes and unfreezes: leave the interpreter's collector as it was found."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_no_sweep_before_a_baseline():
    policy = FrozenGrowth(growth=2.0, min_objects=10)
    policy.added(10**9)
    assert not policy.may_be_due() and not policy.due(10**9)


def test_the_bound_says_when_to_count_and_the_count_when_to_sweep():
    policy = FrozenGrowth(growth=2.0, min_objects=10)
    policy.frozen(1_000)  # the first complete pass: the baseline
    policy.frozen(1_500)  # later passes do not move it
    assert policy.baseline == 1_000 and not policy.may_be_due()
    policy.added(600)
    assert not policy.may_be_due()
    policy.added(400)  # at most 2,000 frozen: an exact count may find a sweep due
    assert policy.may_be_due()
    assert not policy.due(1_300)  # the bound overstated (frees of older objects)
    assert policy.bound == 1_300 and not policy.may_be_due()  # counted from the exact count on
    policy.added(700)
    assert policy.may_be_due() and policy.due(2_000)
    policy.swept(1_200, 0.05)  # what is alive after the sweep is the new baseline
    assert policy.baseline == policy.bound == 1_200 and policy.sweeps == 1
    assert not policy.due(2_399) and policy.due(2_400)


def test_a_small_index_needs_min_objects_more_before_a_sweep():
    policy = FrozenGrowth(growth=2.0, min_objects=100_000)
    policy.frozen(1_000)
    assert not policy.due(2_000)  # doubled, but a sweep would free next to nothing
    assert policy.due(101_000)


def test_the_bound_never_undercounts_what_a_pass_freezes(collector_state):
    """paused() adds to the bound at least what joins the permanent generation."""
    policy = FrozenGrowth()
    with policy.paused():
        pass
    policy.frozen(gc.get_freeze_count())
    kept = []
    with policy.paused():
        kept.extend([n] for n in range(5_000))  # 5,000 new lists and the list holding them
        del kept[:1_000]
    assert gc.get_freeze_count() <= policy.bound
    assert policy.bound >= policy.baseline + 4_000
    assert gc.isenabled()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_a_sweep_frees_what_died_in_a_cycle_after_it_was_frozen(collector_state):
    gc.disable()
    nodes = [_Node() for _ in range(100)]
    refs = [weakref.ref(n) for n in nodes]
    gc.freeze()  # frozen while alive (a pass's replay) ...
    del nodes  # ... then dead in a cycle (the replay replaced)
    gc.collect()
    assert sum(r() is not None for r in refs) == 100  # a plain collection never frees them
    policy = FrozenGrowth()
    policy.frozen(gc.get_freeze_count())
    policy.sweep()
    assert sum(r() is not None for r in refs) == 0
    assert policy.sweeps == 1 and policy.baseline == gc.get_freeze_count()
