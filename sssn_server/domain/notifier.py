"""Wakes followers of a channel the moment an append to it commits, without polling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class CommitNotifier:
    """One `asyncio.Event` per watched channel, set and replaced on each commit.

    A follower takes the channel's event *before* it reads the store, so a
    commit that lands between its read and its wait still wakes it.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._closed = False
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """How many followers are parked waiting for a commit right now."""
        return self._waiting

    def watch(self, channel: str) -> asyncio.Event:
        """Returns an event that is set by the next commit to `channel`."""
        event = self._events.get(channel)
        if event is None:
            event = asyncio.Event()
            if self._closed:
                event.set()
            else:
                self._events[channel] = event
        return event

    async def wait(
        self, event: asyncio.Event, *others: asyncio.Event, timeout: float | None = None
    ) -> bool:
        """Parks until `event` (from `watch`) or one of `others` is set, or
        `timeout` seconds pass; returns False on timeout. Cancellation leaves
        nothing behind."""
        self._waiting += 1
        try:
            if not others:
                try:
                    await asyncio.wait_for(event.wait(), timeout)
                except TimeoutError:
                    return False
                return True
            waiters = [asyncio.ensure_future(each.wait()) for each in (event, *others)]
            try:
                done, _pending = await asyncio.wait(
                    waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
            return bool(done)
        finally:
            self._waiting -= 1

    def notify(self, channels: Iterable[str]) -> None:
        """Wakes everyone watching these channels."""
        for channel in channels:
            event = self._events.pop(channel, None)
            if event is not None:
                event.set()

    def close(self) -> None:
        """Wakes every watcher now and every later one at once (shutdown)."""
        self._closed = True
        self.notify(list(self._events))
