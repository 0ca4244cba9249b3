"""The latest committed events of recently written channels, so live followers read memory."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Sequence

from .models import Event

# Bounds on what is kept: a channel's newest events up to both limits, for
# the most recently written channels. Older reads go to the store.
DEFAULT_EVENTS_PER_CHANNEL = 2048
DEFAULT_BYTES_PER_CHANNEL = 4 * 1024 * 1024
DEFAULT_CHANNELS = 64
# Counted for an event with no stored wire form (only the store tests make those).
_NOMINAL_EVENT_BYTES = 256


class _Tail:
    """One channel's newest events: every event with a cursor above `floor`."""

    __slots__ = ("bytes", "cursors", "events", "floor", "start")

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.cursors: list[int] = []
        self.events: list[Event] = []
        self.start = 0  # entries before it were dropped (compacted in bulk)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.events) - self.start

    def extend(self, events: Sequence[Event]) -> None:
        self.cursors.extend([event.cursor for event in events])
        self.events.extend(events)
        self.bytes += sum(map(_size, events))

    def trim(self, max_events: int, max_bytes: int) -> None:
        """Drops the oldest events until both bounds hold (a lone event may
        exceed `max_bytes`: it is dropped too, leaving the tail empty)."""
        drop = max(0, len(self) - max_events)
        end = self.start + drop
        self.bytes -= sum(map(_size, self.events[self.start : end]))
        while self.bytes > max_bytes and end < len(self.events):
            self.bytes -= _size(self.events[end])
            end += 1
        if end == self.start:
            return
        self.floor = self.events[end - 1].cursor
        self.start = end
        if self.start > len(self.events) // 2:  # amortized: lists shift rarely
            del self.events[: self.start]
            del self.cursors[: self.start]
            self.start = 0


class RecentEvents:
    """Keeps the newest events of each recently written channel, fed with every
    commit in commit order.

    A channel's tail is complete above its `floor`: it starts at the commit
    that first wrote the channel (no event of that channel can have a cursor
    between the previous commit and it, since cursors grow with commits) and
    the floor rises as old events are dropped. So a read after a cursor at or
    above the floor is answered exactly from memory; anything older is not
    answered (None) and goes to the store.
    """

    def __init__(
        self,
        *,
        events_per_channel: int = DEFAULT_EVENTS_PER_CHANNEL,
        bytes_per_channel: int = DEFAULT_BYTES_PER_CHANNEL,
        channels: int = DEFAULT_CHANNELS,
    ) -> None:
        self._events_per_channel = events_per_channel
        self._bytes_per_channel = bytes_per_channel
        self._max_channels = channels
        self._tails: OrderedDict[str, _Tail] = OrderedDict()

    def add(self, events: Sequence[Event]) -> None:
        """Records the new events of one commit, in cursor order."""
        if not events:
            return
        floor = events[0].cursor - 1
        # A commit mostly holds runs of one channel's events: each run is
        # added, and its tail trimmed, at once.
        start = 0
        while start < len(events):
            channel = events[start].channel
            end = start + 1
            while end < len(events) and events[end].channel == channel:
                end += 1
            tail = self._tails.get(channel)
            if tail is None:
                tail = self._tails[channel] = _Tail(floor)
                if len(self._tails) > self._max_channels:
                    self._tails.popitem(last=False)
            else:
                self._tails.move_to_end(channel)
            tail.extend(events[start:end])
            tail.trim(self._events_per_channel, self._bytes_per_channel)
            start = end

    def forget(self, channel: str) -> None:
        """Drops a channel's events (it was deleted); its next commit starts
        a new tail, complete from that commit on."""
        self._tails.pop(channel, None)

    def after(
        self, channel: str, cursor: int, *, limit: int, kind: str | None
    ) -> list[Event] | None:
        """The channel's events after `cursor` (of `kind` if given), at most
        `limit`, or None when memory does not hold all of them."""
        tail = self._tails.get(channel)
        if tail is None or cursor < tail.floor:
            return None
        first = bisect.bisect_right(tail.cursors, cursor, lo=tail.start)
        if kind is None:
            return tail.events[first : first + limit]
        matching = []
        for event in tail.events[first:]:
            if event.kind == kind:
                matching.append(event)
                if len(matching) == limit:
                    break
        return matching


def _size(event: Event) -> int:
    return len(event.wire) if event.wire is not None else _NOMINAL_EVENT_BYTES
