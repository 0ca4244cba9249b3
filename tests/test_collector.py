"""The server process's garbage collector settings: startup frozen, cycles still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from sssn_server.collector import YOUNG_THRESHOLD, tune_for_serving


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """The tuning is process-wide: undo it for the tests that follow."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_freezes_what_exists_and_raises_only_the_young_threshold(collector_restored) -> None:
    older = gc.get_threshold()[1:]
    survivor = _Node()

    frozen = tune_for_serving()

    assert frozen == gc.get_freeze_count() > 1000  # at least this test's imports
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *older)
    # Frozen objects are in no generation the collector scans.
    assert gc.is_tracked(survivor)
    assert all(item is not survivor for item in gc.get_objects())


def test_garbage_made_before_tuning_is_collected_not_frozen(collector_restored) -> None:
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second

    tune_for_serving()

    assert gone() is None


def test_cycles_made_after_tuning_are_still_collected_on_their_own(collector_restored) -> None:
    tune_for_serving(young_threshold=5_000)
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    assert gone() is not None  # a cycle: reference counting alone never frees it

    # No explicit gc.collect(): allocating past the threshold starts a collection.
    held = [[] for _ in range(6_000)]

    assert gone() is None
    assert len(held) == 6_000
