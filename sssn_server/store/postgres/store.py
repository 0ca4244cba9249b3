"""The PostgreSQL store: a pool for reads, one writer task with group commit, JSONB payloads."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from ...domain.errors import (
    InvalidPayloadError,
    SSSNError,
    StoreClosedError,
    StoreReadOnlyError,
    StoreUnavailableError,
)
from ...domain.models import (
    Artifact,
    ArtifactSpec,
    Channel,
    Encoded,
    Event,
    Snapshot,
    Subscription,
)
from ...domain.ports import ArtifactUpload, ChannelDeletion, Store, StoreUnreachableError
from .._rows import (
    ARTIFACT_COLUMNS,
    CHANNEL_COLUMNS,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_UPDATE,
    SUBSCRIPTION_COLUMNS,
    Appended,
    appends_one,
    channel_from,
    channel_values,
    snapshot_from,
    snapshot_values,
    subscription_from,
    subscription_values,
)
from .._rules import (
    artifact_not_found,
    channel_exists,
    channel_not_found,
    check_append,
    dumps,
    event_exists,
    event_not_found,
    snapshot_not_found,
    subscription_exists,
    subscription_not_found,
    with_cursor,
)
from . import _blobs
from ._errors import database_errors
from ._feed import COMMITS_CHANNEL, RECHECK_INTERVAL, CommitFeed, DeletionListener
from ._leases import CHANGES_CHANNEL, PostgresSubscriptions
from ._session import Session
from ._writer import Cursors, Outcome, Request, Span, WriterTask

log = logging.getLogger(__name__)

T = TypeVar("T")

# Turns an `Encoded` value into plain JSON (`is_object`: metadata, else a
# payload); given by the layer that knows the encoding.
PlainJSON = Callable[..., Any]

_STORED_EVENT_COLUMNS = (
    "cursor, id, channel, timestamp_ns, source, kind, payload, schema, "
    "metadata, correlation_id, parent_ids, wire"
)
# Payload and metadata are read only for an event without a wire form: one
# that has it is served from it, and reading both would move them twice.
_EVENT_COLUMNS = _STORED_EVENT_COLUMNS.replace(
    "payload", "CASE WHEN wire IS NULL THEN payload END"
).replace("metadata", "CASE WHEN wire IS NULL THEN metadata END")
# Rows of a batch, one array per column: one statement, whatever its size.
# Parents go as JSON text, since arrays of arrays cannot be ragged.
_INSERT_EVENTS = (
    f"INSERT INTO events ({_STORED_EVENT_COLUMNS}, seq, kind_seq, ts_high)"
    " SELECT c, i, ch, ts, s, k, p, sc, m, co,"
    " ARRAY(SELECT jsonb_array_elements_text(pa)), w, q, kq, th"
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],"
    " $7::jsonb[], $8::text[], $9::jsonb[], $10::text[], $11::jsonb[], $12::bytea[],"
    " $13::bigint[], $14::bigint[], $15::bigint[])"
    " AS r(c, i, ch, ts, s, k, p, sc, m, co, pa, w, q, kq, th)"
)
# One event without parents in one statement, its positions found from its
# channel's last event. No row back: the channel is missing or the id taken.
_LAST_IN_CHANNEL = "FROM events WHERE channel = $3 ORDER BY cursor DESC LIMIT 1"
_INSERT_ONE_EVENT = (
    f"INSERT INTO events ({_STORED_EVENT_COLUMNS}, seq, kind_seq, ts_high)"
    " SELECT $1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10, '{}', $11,"
    f" coalesce((SELECT seq {_LAST_IN_CHANNEL}), 0) + 1,"
    " coalesce((SELECT kind_seq FROM events WHERE channel = $3 AND kind = $6"
    " ORDER BY cursor DESC LIMIT 1), 0) + 1,"
    f" greatest($4, coalesce((SELECT ts_high {_LAST_IN_CHANNEL}), $4))"
    " WHERE EXISTS (SELECT 1 FROM channels WHERE name = $3)"
    " ON CONFLICT (id) DO NOTHING RETURNING cursor"
)
# Each (channel, kind)'s last positions, for a batch's new events.
_POSITIONS = (
    "SELECT k.channel, k.kind,"
    " coalesce((SELECT seq FROM events e WHERE e.channel = k.channel"
    " ORDER BY e.cursor DESC LIMIT 1), 0),"
    " (SELECT ts_high FROM events e WHERE e.channel = k.channel"
    " ORDER BY e.cursor DESC LIMIT 1),"
    " coalesce((SELECT kind_seq FROM events e WHERE e.channel = k.channel AND e.kind = k.kind"
    " ORDER BY e.cursor DESC LIMIT 1), 0)"
    " FROM unnest($1::text[], $2::text[]) AS k(channel, kind)"
)
# A JSON escape of U+0000: `\u0000` after an even number of backslashes.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
# Seconds a stream's lease lasts unless its server renews it: how long a
# killed server's leases stay held (a new stream takes over at once anyway).
DEFAULT_LEASE_TTL = 10.0
# Seconds to wait for a new connection before the call fails with
# STORE_UNAVAILABLE (asyncpg's default of 60 would hang callers instead).
_CONNECT_TIMEOUT = 5.0


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class PostgresStore(Store):
    """A store in one PostgreSQL database, migrated on first start.

    Every write goes through one writer task (`WriterTask`): requests queued
    while a transaction runs are committed together, each in a savepoint so
    one failure fails only its caller. Cursors come from a counter row locked
    by each write transaction, so they become visible in cursor order.
    Reads use the pool and never wait for the writer. Commit listeners
    hear of every commit in cursor order through the commit feed
    (`CommitFeed`), which also reads back what other servers on the database
    commit; which stream owns each subscription is kept in the database
    too (`PostgresSubscriptions`), so any number of servers can serve one
    database at once.
    """

    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        synchronous_commit: str = "on",
        pool_size: int = 10,
        plain_json: PlainJSON | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        recheck_interval: float = RECHECK_INTERVAL,
    ) -> None:
        """Describes the store; nothing connects before `open()`.

        Args:
            url: `postgresql://` (or `postgres://`) URL; libpq query options
                such as `sslmode` pass through.
            read_only: refuse every write with StoreReadOnlyError; every
                connection is also opened read-only, and the database must
                already hold a store.
            synchronous_commit: PostgreSQL's `synchronous_commit` for this
                server's sessions; `on` waits for each commit to be flushed.
            pool_size: most connections the pool opens.
            plain_json: decodes an `Encoded` payload or metadata to plain
                JSON, which the store keeps in JSONB columns.
            lease_ttl: seconds a stream's lease on its subscription lasts
                unless its server renews it.
            recheck_interval: seconds between reads of the commit feed that
                no notification asked for.
        """
        self.url = url
        self.location = redacted(url)
        self.read_only = read_only
        self._pool_size = max(2, pool_size)
        self._plain_json = plain_json or _no_encoded
        settings = {
            "application_name": f"sssn-server pid {os.getpid()} on {socket.gethostname()}"[:63],
            "synchronous_commit": synchronous_commit,
        }
        if read_only:
            settings["default_transaction_read_only"] = "on"
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._writer: WriterTask | None = None
        self._session: Session | None = None
        self._closed = True
        self._commit_listeners: list[Callable[[Sequence[Event]], None]] = []
        self._deletion_listeners: list[DeletionListener] = []
        self._availability_listeners: list[Callable[[bool], None]] = []
        self._feed: CommitFeed | None = None
        self._recheck_interval = recheck_interval
        self._subscriptions = PostgresSubscriptions(
            self._write,
            self._fetch,
            owner=f"{socket.gethostname()} pid {os.getpid()} {secrets.token_hex(3)}",
            lease_ttl=lease_ttl,
        )

    # Lifecycle

    async def open(self) -> None:
        self._session = Session(
            self._connect,
            writer=not self.read_only,
            location=self.location,
            on_change=self._availability_changed,
        )
        try:
            try:
                await self._session.open()
            except FileNotFoundError:  # an OSError, but no store to open read-only
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StoreUnreachableError(
                    f"cannot open the store at {self.location}: {exc or type(exc).__name__}"
                ) from exc
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                server_settings=self._settings,
                timeout=_CONNECT_TIMEOUT,
            )
            if not self.read_only:
                await _blobs.remove_abandoned(self._pool)
                await self._start_feed(self._pool, self._session)
                await self._session.listen(CHANGES_CHANNEL, self._subscriptions.changed)
                self._writer = WriterTask(self._pool, self._committed)
                self._writer.start()
        except BaseException:
            await self._close_connections()
            raise
        self._session.watch()
        self._closed = False

    def _connect(self) -> Awaitable[asyncpg.Connection]:
        connection: Awaitable[asyncpg.Connection] = asyncpg.connect(
            self.url, server_settings=self._settings, timeout=_CONNECT_TIMEOUT
        )
        return connection

    async def close(self) -> None:
        if self._closed and self._pool is None and self._session is None:
            return
        self._closed = True
        await self._close_connections()

    async def _start_feed(self, pool: asyncpg.Pool, session: Session) -> None:
        """Followers hear of every commit to the database, this server's or another's."""
        feed = self._feed = CommitFeed(
            lambda: pool,
            _event,
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE cursor > $1 ORDER BY cursor LIMIT $2",
            self._commit_listeners,
            self._deletion_listeners,
            recheck_interval=self._recheck_interval,
        )
        # Listening first: a commit between reading the head and listening
        # would otherwise wait for the re-check.
        await session.listen(COMMITS_CHANNEL, feed.notified)
        feed.start(int(await pool.fetchval("SELECT head FROM cursor_head")))

    async def _close_connections(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        if self._feed is not None:
            await self._feed.stop()
            self._feed = None
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 10)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                self._pool.terminate()
            self._pool = None
        # Last: it carries the LISTENs the feed and the leases hear through.
        if self._session is not None:
            await self._session.close()
            self._session = None

    def add_availability_listener(self, listener: Callable[[bool], None]) -> None:
        self._availability_listeners.append(listener)

    async def _availability_changed(self, available: bool) -> None:
        if available and self._pool is not None:
            # Connections made before the outage are dead: replace them
            # now, rather than fail the first call on each.
            await self._pool.expire_connections()
        if available and self._feed is not None:
            self._feed.poke()  # notifications sent meanwhile are lost
        for listener in self._availability_listeners:
            try:
                listener(available)
            except Exception:
                log.exception("availability listener failed")

    # Reads and writes

    def _readable_pool(self) -> asyncpg.Pool:
        if self._closed or self._pool is None:
            raise StoreClosedError()
        return self._pool

    async def _fetch(self, sql: str, *parameters: Any) -> list[asyncpg.Record]:
        pool = self._readable_pool()
        if self._session is not None and not self._session.available:
            raise StoreUnavailableError()  # at once, not after a connect timeout
        with database_errors():
            return list(await pool.fetch(sql, *parameters))

    async def _write(
        self,
        work: Callable[[asyncpg.Connection, Cursors], Awaitable[T]],
        *,
        one_statement: bool = False,
    ) -> T:
        """Runs `work` inside a write transaction and returns its result.

        The work runs in the writer task and is carried out even if the
        caller is cancelled while it waits. `one_statement`: the work
        changes the store in at most one statement and raises a domain
        error only when nothing changed, so it needs no savepoint.
        """
        if self.read_only:
            raise StoreReadOnlyError()
        if self._closed or self._writer is None or self._session is None:
            raise StoreClosedError()
        if not self._session.available:
            # Cut off from the database: refused at once rather than after a
            # connect timeout.
            raise StoreUnavailableError()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.submit(work, future, savepoint=not one_statement)
        return await future

    def _committed(self, requests: list[Request], outcomes: list[Outcome], span: Span) -> None:
        """A group committed (on the event loop, in commit order): tell the
        commit feed, then the callers."""
        if self._feed is not None:
            fresh = [
                event
                for error, result in outcomes
                if error is None and isinstance(result, Appended)
                for event in result.fresh
            ]
            self._feed.committed(span[0], span[1], fresh)
        for request, (error, result) in zip(requests, outcomes, strict=True):
            if request.future.done():
                continue
            if error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(result)

    def add_commit_listener(self, listener: Callable[[Sequence[Event]], None]) -> None:
        self._commit_listeners.append(listener)

    def add_channel_deleted_listener(self, listener: DeletionListener) -> None:
        self._deletion_listeners.append(listener)

    # Channels

    async def create_channel(self, channel: Channel) -> Channel:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> Channel:
            status = await db.execute(
                f"INSERT INTO channels ({CHANNEL_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (name) DO NOTHING",
                *channel_values(channel),
            )
            if status.endswith(" 0"):
                raise channel_exists(channel.name)
            return channel

        return await self._write(work, one_statement=True)

    async def get_channel(self, name: str) -> Channel:
        rows = await self._fetch(f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE name = $1", name)
        if not rows:
            raise channel_not_found(name)
        return channel_from(rows[0])

    async def list_channels(self, *, after: str | None, limit: int) -> list[Channel]:
        rows = await self._fetch(
            f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE name > $1 ORDER BY name LIMIT $2",
            after or "",
            limit,
        )
        return [channel_from(row) for row in rows]

    async def delete_channel(self, name: str) -> ChannelDeletion:
        async def work(db: asyncpg.Connection, cursors: Cursors) -> ChannelDeletion:
            await _require_channel(db, name)
            events = _count(await db.execute("DELETE FROM events WHERE channel = $1", name))
            subscriptions = await db.fetch(
                "DELETE FROM subscriptions WHERE channel = $1 RETURNING id", name
            )
            # A cursor of its own: every server's commit feed announces the
            # deletion between the old channel's events and any new one's.
            await db.execute(
                "INSERT INTO channel_deletions (cursor, channel, subscriptions)"
                " VALUES ($1, $2, $3)",
                cursors.take(1),
                name,
                sorted(row[0] for row in subscriptions),
            )
            artifacts = await db.fetch(
                "DELETE FROM artifacts WHERE channel = $1 RETURNING id", name
            )
            await db.execute("DELETE FROM snapshots WHERE channel = $1", name)
            await db.execute("DELETE FROM channels WHERE name = $1", name)
            # Blobs stay: another record, or an upload whose record is not
            # written yet, may have the same content.
            return ChannelDeletion(
                events=events,
                subscriptions=tuple(sorted(row[0] for row in subscriptions)),
                artifacts=tuple(sorted(row[0] for row in artifacts)),
            )

        return await self._write(work)

    # Events

    async def append_events(self, events: Sequence[Event]) -> list[Event]:
        single = appends_one(events)

        async def work(db: asyncpg.Connection, cursors: Cursors) -> Appended:
            return await self._append(db, cursors, events, atomic=True)

        appended = await self._write(work, one_statement=single)
        return list(appended.results)

    async def append_each(self, events: Sequence[Event]) -> list[Event | SSSNError]:
        async def work(db: asyncpg.Connection, cursors: Cursors) -> Appended:
            return await self._append(db, cursors, events, atomic=False)

        appended = await self._write(work, one_statement=appends_one(events))
        return list(appended.results)

    async def _append(
        self, db: asyncpg.Connection, cursors: Cursors, events: Sequence[Event], *, atomic: bool
    ) -> Appended:
        """Stores events in a handful of statements, not several per event.

        Atomic: the first bad event raises and nothing is stored. Otherwise
        each bad event's place in the result holds its error and the rest
        are stored.
        """
        if appends_one(events):
            try:
                return await self._append_one(db, cursors, events[0])
            except SSSNError as error:
                if atomic:
                    raise
                return Appended([error], [])
        named = list(
            dict.fromkeys([e.id for e in events] + [p for e in events for p in e.parent_ids])
        )
        # Stored events among the ids and parents: a parent found here is known.
        known: dict[str, str] = {
            row[0]: row[1]
            for row in await db.fetch(
                "SELECT id, channel FROM events WHERE id = ANY($1::text[])", named
            )
        }
        channels = {
            row[0]
            for row in await db.fetch(
                "SELECT name FROM channels WHERE name = ANY($1::text[])",
                list({e.channel for e in events}),
            )
        }
        retried_ids = {event.id for event in events if event.id in known}
        results: list[Any] = []
        fresh: list[Event] = []
        for event in events:  # in order, so the first bad event is the one reported
            try:
                _require_storable_text(event)
                is_new = check_append(event, known, channels, set())
            except SSSNError as error:
                if atomic:
                    raise
                results.append(error)
                continue
            if is_new:
                known[event.id] = event.channel  # parents may name it from here on
                fresh.append(event)
            results.append(event.id)
        fresh = await self._insert(db, cursors, fresh)
        stored = {event.id: event for event in fresh}
        # Retries are answered with the event as first stored, not as re-sent.
        retried = [event_id for event_id in retried_ids if event_id not in stored]
        if retried:
            rows = await db.fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ANY($1::text[])", retried
            )
            stored.update((row[1], _event(row)) for row in rows)
        return Appended(
            [stored[result] if isinstance(result, str) else result for result in results], fresh
        )

    async def restore_events(self, events: Sequence[Event], *, head: int) -> None:
        async def work(db: asyncpg.Connection, cursors: Cursors) -> None:
            last = cursors.head
            for event in events:
                if event.cursor <= last:
                    raise ValueError(f"cursor {event.cursor} is not above {last}")
                last = event.cursor
            await self._insert(db, cursors, list(events), restoring=True)
            cursors.head = max(cursors.head, head)

        await self._write(work)

    async def _insert(
        self,
        db: asyncpg.Connection,
        cursors: Cursors,
        events: list[Event],
        *,
        restoring: bool = False,
    ) -> list[Event]:
        """Inserts events checked new, in order; returns them with their
        cursors: new ones, or (`restoring`) the ones they carry."""
        if not events:
            return []
        keys = list(dict.fromkeys((event.channel, event.kind) for event in events))
        rows = await db.fetch(_POSITIONS, [k[0] for k in keys], [k[1] for k in keys])
        seqs = {row[0]: row[2] for row in rows}
        highs = {row[0]: row[3] for row in rows}
        kind_seqs = {(row[0], row[1]): row[4] for row in rows}
        if restoring:
            cursor_of = [event.cursor for event in events]
            cursors.head = max(cursors.head, cursor_of[-1])
        else:
            first = cursors.take(len(events))
            cursor_of = list(range(first, first + len(events)))
        columns: list[list[Any]] = [[] for _ in range(15)]
        stored = []
        for event, cursor in zip(events, cursor_of, strict=True):
            seqs[event.channel] += 1
            high = highs.get(event.channel)
            highs[event.channel] = (
                event.timestamp_ns if high is None else max(high, event.timestamp_ns)
            )
            kind_seqs[(event.channel, event.kind)] += 1
            values = (
                cursor,
                *self._event_values(event),
                seqs[event.channel],
                kind_seqs[(event.channel, event.kind)],
                highs[event.channel],
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
            stored.append(with_cursor(event, cursor))
        await db.execute(_INSERT_EVENTS, *columns)
        return stored

    def _event_values(self, event: Event) -> tuple[Any, ...]:
        """An event's stored columns between its cursor and its positions."""
        return (
            event.id,
            event.channel,
            event.timestamp_ns,
            event.source,
            event.kind,
            self._json(event.payload, is_object=False, copy=event.wire is not None),
            event.schema,
            self._json(event.metadata, is_object=True, copy=event.wire is not None),
            event.correlation_id,
            dumps(list(event.parent_ids)),
            event.wire,
        )

    def _json(self, value: Any, *, is_object: bool, copy: bool) -> str:
        """JSON text for a JSONB column: a value received in its wire form is
        decoded, so that an operator reads it with plain SQL.

        `copy`: the event's wire form holds the value, and the column is a
        readable copy. JSONB cannot hold the character U+0000, so there the
        copy spells it as the six characters `\\u0000`; without a wire form
        the database refuses the value (INVALID_PAYLOAD).
        """
        if isinstance(value, Encoded):
            value = self._plain_json(value, is_object=is_object)
        text = dumps(value)
        if copy and "\\u0000" in text:
            text = _NUL_ESCAPE.sub(r"\1\\\\u0000", text)
        return text

    async def _append_one(self, db: asyncpg.Connection, cursors: Cursors, event: Event) -> Appended:
        """The common case, one event without parents, in one statement."""
        _require_storable_text(event)
        values = self._event_values(event)
        cursor = await db.fetchval(_INSERT_ONE_EVENT, cursors.head + 1, *values[:9], values[10])
        if cursor is not None:
            cursors.take(1)
            stored = with_cursor(event, cursor)
            return Appended([stored], [stored])
        rows = await db.fetch(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = $1", event.id)
        if not rows:
            raise channel_not_found(event.channel)
        existing = _event(rows[0])
        if existing.channel != event.channel:
            await _require_channel(db, event.channel)  # a missing channel is reported first
            raise event_exists(event.id, existing.channel)
        return Appended([existing], [])

    async def get_event(self, event_id: str) -> Event:
        rows = await self._fetch(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = $1", event_id)
        if not rows:
            raise event_not_found(event_id)
        return _event(rows[0])

    async def query_events(
        self,
        channel: str,
        *,
        after_cursor: int,
        limit: int,
        kind: str | None,
    ) -> list[Event]:
        if kind is None:
            rows = await self._fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE channel = $1 AND cursor > $2"
                " ORDER BY cursor LIMIT $3",
                channel,
                after_cursor,
                limit,
            )
        else:
            rows = await self._fetch(
                f"SELECT {_EVENT_COLUMNS} FROM events"
                " WHERE channel = $1 AND kind = $2 AND cursor > $3 ORDER BY cursor LIMIT $4",
                channel,
                kind,
                after_cursor,
                limit,
            )
        return [_event(row) for row in rows]

    async def head_cursor(self) -> int:
        # The counter, not max(cursor): deleting a channel may remove the
        # newest events, and the head must not go back.
        rows = await self._fetch("SELECT head FROM cursor_head")
        return int(rows[0][0])

    async def count_events(self, channel: str, *, after_cursor: int, kind: str | None) -> int:
        # The channel's (or kind's) last position minus the position of its
        # last event at or before the cursor: two index lookups.
        if kind is None:
            rows = await self._fetch(
                "SELECT coalesce((SELECT seq FROM events WHERE channel = $1"
                " ORDER BY cursor DESC LIMIT 1), 0) - coalesce((SELECT seq FROM events"
                " WHERE channel = $1 AND cursor <= $2 ORDER BY cursor DESC LIMIT 1), 0)",
                channel,
                after_cursor,
            )
        else:
            rows = await self._fetch(
                "SELECT coalesce((SELECT kind_seq FROM events WHERE channel = $1 AND kind = $2"
                " ORDER BY cursor DESC LIMIT 1), 0) - coalesce((SELECT kind_seq FROM events"
                " WHERE channel = $1 AND kind = $2 AND cursor <= $3"
                " ORDER BY cursor DESC LIMIT 1), 0)",
                channel,
                kind,
                after_cursor,
            )
        return int(rows[0][0])

    async def first_cursor_at(self, channel: str, timestamp_ns: int) -> int | None:
        # `ts_high` never decreases along a channel: the first index entry at
        # or after the instant is the first event whose timestamp is.
        rows = await self._fetch(
            "SELECT cursor FROM events WHERE channel = $1 AND ts_high >= $2"
            " ORDER BY ts_high, cursor LIMIT 1",
            channel,
            timestamp_ns,
        )
        return int(rows[0][0]) if rows else None

    # Subscriptions

    async def create_subscription(self, subscription: Subscription) -> Subscription:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> Subscription:
            await _require_channel(db, subscription.channel)
            rows = await db.fetch(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1",
                subscription.id,
            )
            for row in rows:
                existing = subscription_from(row)
                if existing.channel != subscription.channel:
                    raise subscription_exists(subscription.id, existing.channel)
                return existing
            await db.execute(
                f"INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                *subscription_values(subscription),
            )
            return subscription

        return await self._write(work, one_statement=True)

    async def get_subscription(self, subscription_id: str) -> Subscription:
        rows = await self._fetch(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1", subscription_id
        )
        if not rows:
            raise subscription_not_found(subscription_id)
        return subscription_from(rows[0])

    async def advance_subscription(self, subscription_id: str, cursor: int) -> None:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> None:
            status = await db.execute(
                "UPDATE subscriptions SET cursor = greatest(cursor, $1) WHERE id = $2",
                cursor,
                subscription_id,
            )
            if _count(status) == 0:
                raise subscription_not_found(subscription_id)

        await self._write(work, one_statement=True)

    async def seek_subscription(self, subscription_id: str, cursor: int) -> Subscription:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> Subscription:
            rows = await db.fetch(
                f"UPDATE subscriptions SET cursor = $1 WHERE id = $2"
                f" RETURNING {SUBSCRIPTION_COLUMNS}",
                cursor,
                subscription_id,
            )
            for row in rows:
                return subscription_from(row)
            raise subscription_not_found(subscription_id)

        return await self._write(work, one_statement=True)

    async def list_subscriptions(
        self, *, channel: str | None, after: str | None, limit: int
    ) -> list[Subscription]:
        if channel is None:
            rows = await self._fetch(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id > $1"
                " ORDER BY id LIMIT $2",
                after or "",
                limit,
            )
        else:
            rows = await self._fetch(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions"
                " WHERE channel = $1 AND id > $2 ORDER BY id LIMIT $3",
                channel,
                after or "",
                limit,
            )
        return [subscription_from(row) for row in rows]

    async def delete_subscription(self, subscription_id: str) -> None:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> None:
            # Other servers end the subscription's stream when they hear of it.
            rows = await db.fetch(
                "DELETE FROM subscriptions WHERE id = $1"
                f" RETURNING pg_notify('{CHANGES_CHANNEL}', id)",
                subscription_id,
            )
            if not rows:
                raise subscription_not_found(subscription_id)

        await self._write(work, one_statement=True)

    def shared_subscriptions(self) -> PostgresSubscriptions | None:
        return None if self.read_only else self._subscriptions

    # Artifacts

    async def begin_artifact(self) -> ArtifactUpload:
        if self.read_only:
            raise StoreReadOnlyError()
        return _blobs.DatabaseUpload(self._readable_pool())

    async def save_artifact(
        self,
        upload: ArtifactUpload,
        spec: ArtifactSpec,
        *,
        artifact_id: str,
        check_events: bool = True,
    ) -> Artifact:
        assert isinstance(upload, _blobs.DatabaseUpload), "upload from another store"
        try:
            # Check links before the payload is kept, so a rejected write
            # keeps nothing; the transaction checks again before it records.
            if spec.channel is not None:
                await self.get_channel(spec.channel)
            if check_events:
                await self._require_events_now(spec.event_ids)
            digest = await upload.finish()
            artifact = Artifact(
                id=artifact_id,
                size=upload.size,
                sha256=digest,
                channel=spec.channel,
                media_type=spec.media_type,
                metadata=spec.metadata,
                event_ids=spec.event_ids,
            )

            async def work(db: asyncpg.Connection, _cursors: Cursors) -> Artifact:
                if artifact.channel is not None:
                    await _require_channel(db, artifact.channel)
                if check_events:
                    await _require_events(db, artifact.event_ids)
                await _blobs.record(db, upload, digest)
                await db.execute(
                    f"INSERT INTO artifacts ({ARTIFACT_COLUMNS})"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    artifact.id,
                    artifact.channel,
                    artifact.media_type,
                    artifact.size,
                    artifact.sha256,
                    dumps(artifact.metadata),
                    list(artifact.event_ids),
                )
                return artifact

            return await self._write(work)
        finally:
            await upload.discard()

    async def _require_events_now(self, event_ids: Sequence[str]) -> None:
        unique = list(dict.fromkeys(event_ids))
        if not unique:
            return
        rows = await self._fetch("SELECT id FROM events WHERE id = ANY($1::text[])", unique)
        _first_missing(unique, {row[0] for row in rows})

    async def get_artifact(self, artifact_id: str) -> Artifact:
        rows = await self._fetch(
            f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id = $1", artifact_id
        )
        if not rows:
            raise artifact_not_found(artifact_id)
        return _artifact(rows[0])

    async def list_artifacts(self, *, after: str | None, limit: int) -> list[Artifact]:
        rows = await self._fetch(
            f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id > $1 ORDER BY id LIMIT $2",
            after or "",
            limit,
        )
        return [_artifact(row) for row in rows]

    def read_artifact(self, artifact: Artifact, chunk_size: int) -> AsyncIterator[bytes]:
        return _blobs.read(self._readable_pool(), artifact.sha256, chunk_size)

    # Snapshots

    async def put_snapshot(self, snapshot: Snapshot, *, check_events: bool = True) -> Snapshot:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> Snapshot:
            if snapshot.channel is not None:
                await _require_channel(db, snapshot.channel)
            if snapshot.source_event_id is not None and check_events:
                await _require_events(db, (snapshot.source_event_id,))
            await db.execute(
                f"INSERT INTO snapshots ({SNAPSHOT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                + SNAPSHOT_UPDATE,
                *snapshot_values(snapshot),
            )
            return snapshot

        return await self._write(work, one_statement=True)

    async def list_snapshots(self, *, after: str | None, limit: int) -> list[Snapshot]:
        rows = await self._fetch(
            f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE name > $1 ORDER BY name LIMIT $2",
            after or "",
            limit,
        )
        return [snapshot_from(row) for row in rows]

    async def get_snapshot(self, name: str) -> Snapshot:
        rows = await self._fetch(f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE name = $1", name)
        if not rows:
            raise snapshot_not_found(name)
        return snapshot_from(rows[0])


def _no_encoded(value: Encoded, *, is_object: bool) -> Any:
    raise TypeError("this store was given no decoder for values in their wire form")


def _require_storable_text(event: Event) -> None:
    """Refuses, for this event alone, text that PostgreSQL cannot hold
    (U+0000), rather than let the database fail the whole request."""
    for field, text in (("source", event.source), ("schema", event.schema)):
        if text is not None and "\x00" in text:
            raise InvalidPayloadError(field, "holds U+0000, which the database cannot store")


def _count(status: str) -> int:
    """The row count of a command's status, such as `DELETE 3`."""
    return int(status.rsplit(" ", 1)[1])


async def _require_channel(db: asyncpg.Connection, name: str) -> None:
    if await db.fetchval("SELECT 1 FROM channels WHERE name = $1", name) is None:
        raise channel_not_found(name)


async def _require_events(db: asyncpg.Connection, event_ids: Sequence[str]) -> None:
    """Raises EventNotFoundError naming the first id that is not stored."""
    unique = list(dict.fromkeys(event_ids))
    if not unique:
        return
    rows = await db.fetch("SELECT id FROM events WHERE id = ANY($1::text[])", unique)
    _first_missing(unique, {row[0] for row in rows})


def _first_missing(wanted: Sequence[str], found: set[str]) -> None:
    for event_id in wanted:
        if event_id not in found:
            raise event_not_found(event_id)


def _json_value(text: str | None, left_out: Any) -> Any:
    """A JSONB column's value; NULL means the event's wire form holds it."""
    return left_out if text is None else json.loads(text)


def _event(row: asyncpg.Record) -> Event:
    # Positional, in Event's field order (see the SQLite store's `_event`).
    return Event(
        row[1],  # id
        row[2],  # channel
        row[3],  # timestamp_ns
        row[5],  # kind
        _json_value(row[6], None),  # payload
        row[4],  # source
        row[7],  # schema
        _json_value(row[8], {}),  # metadata
        row[9],  # correlation_id
        tuple(row[10]),  # parent_ids
        row[0],  # cursor
        row[11],  # wire
    )


def _artifact(row: asyncpg.Record) -> Artifact:
    return Artifact(
        id=row[0],
        channel=row[1],
        media_type=row[2],
        size=row[3],
        sha256=row[4],
        metadata=json.loads(row[5]),
        event_ids=tuple(row[6]),
    )
