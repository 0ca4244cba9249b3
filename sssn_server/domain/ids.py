"""Time-ordered ids (UUIDv7), minted from OS randomness read in blocks."""

from __future__ import annotations

import os
import threading
import time

# Bytes of randomness per id: 74 random bits, rounded up.
_ID_BYTES = 10


class _RandomPool:
    """OS randomness read a block at a time and handed out in slices.

    `os.urandom` releases the GIL around its system call. On the event loop
    of a loaded server, where the writer thread is waiting for the GIL, that
    can cost a thread switch each time (cProfile put it at ~12 µs per append
    under 16 concurrent calls, against 0.3 µs alone, though the rate moved
    within noise); one read per block of ids pays it once per few hundred.
    """

    def __init__(self, block: int = 4096) -> None:
        self._block = block
        self._data = b""
        self._offset = 0
        self._lock = threading.Lock()
        # A forked child must not hand out the parent's bytes again.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._data, self._offset = b"", 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._offset + size > len(self._data):
                self._data, self._offset = os.urandom(max(self._block, size)), 0
            start = self._offset
            self._offset = start + size
            return self._data[start : start + size]


_pool = _RandomPool()


def new_id() -> str:
    """Mints a time-ordered UUIDv7, so ids sort roughly by creation time."""
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """Mints `count` UUIDv7 ids (RFC 9562: 48-bit Unix milliseconds, version,
    variant, 74 random bits).

    Written here rather than taken from a library because appends are the
    hot path: minting a batch's ids takes one slice of the random pool.
    """
    if count <= 0:
        return []
    milliseconds = time.time_ns() // 1_000_000
    randomness = _pool.take(_ID_BYTES * count)
    ids = []
    for index in range(count):
        bits = int.from_bytes(randomness[_ID_BYTES * index : _ID_BYTES * (index + 1)], "big")
        value = (
            milliseconds << 80
            | 0x7 << 76  # version 7
            | ((bits >> 62) & 0xFFF) << 64
            | 0b10 << 62  # the RFC 4122 variant
            | bits & ((1 << 62) - 1)
        )
        text = f"{value:032x}"
        ids.append(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}")
    return ids
