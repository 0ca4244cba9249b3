"""Tunes Python's cyclic garbage collector for a long-running server process."""

from __future__ import annotations

import gc

# Net new container objects that start a young-generation collection
# (CPython's default is 700). Converting and checking one AppendEvents call
# of 100 events holds ~500 such objects at once, so with the default a
# collection ran about every other call, scanning objects that reference
# counting was about to free, and every tenth one moved on to scan the older
# generations too (docs/performance.md has the figures). 16 such calls in
# flight hold ~8,000; this many keeps the collector for garbage that
# outlives a burst of calls, a few MB at most.
YOUNG_THRESHOLD = 20_000


def tune_for_serving(young_threshold: int = YOUNG_THRESHOLD) -> int:
    """Freezes what exists now and raises the young threshold; returns the
    number of objects frozen.

    Call it once the server has started. What startup built (modules,
    descriptors, the open store) lives as long as the process, so the
    collector stops scanning it: full collections then cost what the
    objects created since do, not the whole heap. Garbage is collected
    first so that none of it is frozen; the older generations keep
    CPython's multipliers.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
    return gc.get_freeze_count()
