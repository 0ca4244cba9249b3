"""The commit feed: every server on a database hears of every commit, in cursor order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from ...domain.models import Event

log = logging.getLogger(__name__)

# The NOTIFY channel every commit that takes cursors signals on, with the
# head cursor as payload: a hint that there is something new, never the data.
COMMITS_CHANNEL = "sssn_commits"
# Seconds between reads that do not wait for a notification: a lost one, or
# a LISTEN connection that died unnoticed, delays followers by at most this.
RECHECK_INTERVAL = 2.0
# Events one read of the feed takes at a time.
_PAGE = 1000
# Seconds `stop` waits for a read in progress to end.
_STOP_TIMEOUT = 3.0

EventsListener = Callable[[Sequence[Event]], None]
# (channel name, ids of its subscriptions), for a deletion the feed read.
DeletionListener = Callable[[str, Sequence[str]], None]
EventFromRow = Callable[[asyncpg.Record], Event]


class CommitFeed:
    """Announces every committed cursor exactly once, in cursor order.

    Cursors become visible in cursor order (the counter row), so everything
    after the last cursor announced is read with `cursor > last`, whichever
    server committed it. A server's own commit that continues right after
    the last announced cursor is announced from memory, without a read;
    anything else (another server's commits, or its own that overtook a
    read in progress) is read back from the database when a notification,
    the server's own commit or the periodic re-check says there is more.
    A channel deletion holds a cursor of its own, so it is announced at its
    place among the events: a channel created again under the same name is
    never mixed with the old one's events.
    """

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        event_from_row: EventFromRow,
        select_events: str,
        on_events: Sequence[EventsListener],
        on_deletion: Sequence[DeletionListener],
        *,
        recheck_interval: float = RECHECK_INTERVAL,
    ) -> None:
        self._pool = pool
        self._event_from_row = event_from_row
        self._select_events = select_events
        self._on_events = on_events
        self._on_deletion = on_deletion
        self._recheck_interval = recheck_interval
        self._last = 0
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def last(self) -> int:
        """The last cursor announced."""
        return self._last

    def start(self, head: int) -> None:
        """Announces everything committed after `head` from now on."""
        self._last = head
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sssn-pg-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # Bounded: a read cut short may wait for the server to acknowledge
            # its cancel; closing the pool ends it anyway.
            await asyncio.wait({self._task}, timeout=_STOP_TIMEOUT)
            self._task = None

    def notified(self, payload: str) -> None:
        """A commit somewhere moved the head to `payload`."""
        try:
            head = int(payload)
        except ValueError:
            head = self._last + 1  # not ours to parse: look anyway
        if head > self._last:
            self._wanted.set()

    def poke(self) -> None:
        """Reads the database soon (after an outage, notifications may be lost)."""
        self._wanted.set()

    def committed(self, before: int, after: int, events: Sequence[Event]) -> None:
        """This server committed the cursors after `before` up to `after`,
        with these new events among them (the rest are its deletions, which
        the domain already knows of)."""
        if after <= before:
            return
        if before != self._last:
            self._wanted.set()  # others' cursors come first: read them back
            return
        self._last = after
        if events:
            self._announce(events)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), self._recheck_interval)
            self._wanted.clear()
            try:
                while await self._read_page():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: the re-check tries again
                log.debug("commit feed read failed: %s", exc)

    async def _read_page(self) -> bool:
        """Announces one page of what follows the last cursor; True when
        there may be more."""
        after = self._last
        async with (
            self._pool().acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            # One snapshot for both: a deletion and the events around it.
            rows = await connection.fetch(self._select_events, after, _PAGE)
            deletions = await connection.fetch(
                "SELECT cursor, channel, subscriptions FROM channel_deletions"
                " WHERE cursor > $1 ORDER BY cursor",
                after,
            )
        full = len(rows) == _PAGE
        end = rows[-1]["cursor"] if full else None
        # (cursor, the deletion or None, the event row or None), in cursor order.
        marks: list[tuple[int, Any, Any]] = [(row["cursor"], None, row) for row in rows]
        marks += [(row[0], row, None) for row in deletions if end is None or row[0] < end]
        marks.sort(key=lambda mark: mark[0])
        run: list[Event] = []
        for cursor, deletion, row in marks:
            if cursor <= self._last:  # our own commit, announced meanwhile
                continue
            self._last = cursor
            if deletion is None:
                run.append(self._event_from_row(row))
                continue
            if run:
                self._announce(run)
                run = []
            self._deleted(deletion[1], deletion[2])
        if run:
            self._announce(run)
        return full

    def _announce(self, events: Sequence[Event]) -> None:
        for listener in self._on_events:
            try:
                listener(events)
            except Exception:  # a listener's bug must not stop the feed
                log.exception("commit listener failed")

    def _deleted(self, channel: str, subscriptions: Sequence[str]) -> None:
        for listener in self._on_deletion:
            try:
                listener(channel, list(subscriptions))
            except Exception:
                log.exception("deletion listener failed")
