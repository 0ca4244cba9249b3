"""The embedded store: SQLite (WAL; one writer thread, aiosqlite readers) and a blob folder."""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ...domain.errors import (
    SSSNError,
    StoreClosedError,
    StoreReadOnlyError,
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
from ...domain.ports import ArtifactUpload, ChannelDeletion, Store, StoreIncompatibleError
from .._rows import (
    ARTIFACT_COLUMNS,
    CHANNEL_COLUMNS,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_UPDATE,
    SUBSCRIPTION_COLUMNS,
    Appended,
    announce,
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
from ._blobs import BlobDirectory, BlobUpload
from ._lock import WriterLock
from ._schema import MIGRATIONS, SCHEMA_VERSION
from ._wal import reserve_wal
from ._writer import Outcome, Request, WriterThread

log = logging.getLogger(__name__)

T = TypeVar("T")


DATABASE_FILE = "sssn.sqlite"
ARTIFACTS_DIR = "artifacts"

# Bound variables per statement; SQLite's own limit is 32,766 (3.32+).
_MAX_VARIABLES = 10_000

_STORED_EVENT_COLUMNS = (
    "cursor, id, channel, timestamp_ns, source, kind, payload, schema, "
    "metadata, correlation_id, parent_ids, wire"
)
# The columns read: payload and metadata only where there is no wire form to
# hold them (an event that has one stores them only there, as an empty BLOB;
# NULL, which the NOT NULL columns never hold, means "in the wire form").
_EVENT_COLUMNS = _STORED_EVENT_COLUMNS.replace(
    "payload", "CASE WHEN wire IS NULL THEN payload END"
).replace("metadata", "CASE WHEN wire IS NULL THEN metadata END")
# The values of one event row (`_event_row`). Binding None or bytes costs
# Python's sqlite3 module an adapter lookup (~0.2-0.3 us a value, against
# ~0.07 for an int), so an absent source, schema or correlation id is bound
# as 0, which no text equals, and blobs as bytearray: a batch of 100 binds
# in ~130 us less. The last three are the event's positions (`_Positions`).
_EVENT_ROW = "(?, ?, ?, NULLIF(?, 0), ?, ?, NULLIF(?, 0), ?, NULLIF(?, 0), ?, ?, ?, ?, ?)"
_INSERT_EVENT = (
    f"INSERT INTO events ({_STORED_EVENT_COLUMNS.removeprefix('cursor, ')},"
    f" seq, kind_seq, ts_high) VALUES {_EVENT_ROW}"
)
# One event, its positions found by the statement itself from its channel's
# last event, so that a single append stays a single statement.
_LAST_IN_CHANNEL = "FROM events WHERE channel = ?2 ORDER BY cursor DESC LIMIT 1"
_INSERT_ONE_EVENT = (
    _INSERT_EVENT.split(" VALUES ")[0]
    + " VALUES (?1, ?2, ?3, NULLIF(?4, 0), ?5, ?6, NULLIF(?7, 0), ?8, NULLIF(?9, 0), ?10, ?11,"
    f" coalesce((SELECT seq {_LAST_IN_CHANNEL}), 0) + 1,"
    " coalesce((SELECT kind_seq FROM events WHERE channel = ?2 AND kind = ?5"
    " ORDER BY cursor DESC LIMIT 1), 0) + 1,"
    f" max(?3, coalesce((SELECT ts_high {_LAST_IN_CHANNEL}), ?3)))"
)
# Events copied from another store, with their cursors (`restore_events`).
_RESTORE_EVENT = _INSERT_EVENT.replace(
    "INSERT INTO events (", "INSERT INTO events (cursor, ", 1
).replace(" VALUES (", " VALUES (?, ", 1)
# The greatest cursor ever assigned: AUTOINCREMENT's counter, not only
# max(cursor), since deleting a channel may remove the newest events and the
# head must not go back.
_HEAD = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
    " coalesce((SELECT max(cursor) FROM events), 0))"
)
# A zero-length BLOB: the payload and metadata of an event whose wire form holds them.
_IN_WIRE = bytearray()


class SQLiteStore(Store):
    """A store under one folder: `<root>/sssn.sqlite` and `<root>/artifacts/`.

    All writes go through one writer thread that owns the write connection
    (`WriterThread`): requests queued while a transaction runs are committed
    together (group commit), each in its own savepoint so one failure fails
    only its caller. Reads use a small pool of separate connections and never
    wait for it. One process at a time opens a folder for writing
    (`WriterLock`): a second would keep its own commit feed and cursors in
    memory, and its followers would miss the other's appends.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        read_only: bool = False,
        synchronous: str = "FULL",
        readers: int = 4,
    ) -> None:
        """Describes the store; nothing touches the disk before `open()`.

        Args:
            root: folder holding the database and the artifacts.
            read_only: refuse every write with StoreReadOnlyError; the store
                must already exist and is neither created nor migrated.
            synchronous: SQLite `synchronous` level; FULL survives power loss.
            readers: number of read connections.
        """
        self.root = Path(root).expanduser().resolve()
        self.location = str(self.root)
        self.read_only = read_only
        self._synchronous = synchronous
        self._reader_count = max(1, readers)
        self._blobs = BlobDirectory(self.root / ARTIFACTS_DIR)
        self._lock = WriterLock(self.root)
        self._writer: WriterThread | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader: itertools.cycle[aiosqlite.Connection] | None = None
        # Reads in flight on each reader connection.
        self._busy: collections.Counter[aiosqlite.Connection] = collections.Counter()
        self._closed = True
        self._commit_listeners: list[Callable[[Sequence[Event]], None]] = []

    @property
    def database_path(self) -> Path:
        return self.root / DATABASE_FILE

    # Lifecycle

    async def open(self) -> None:
        try:
            await self._open()
        except BaseException:
            # Close what was opened: aiosqlite threads would keep the
            # process alive after a failed start.
            await self._close_connections()
            raise
        self._closed = False

    async def _open(self) -> None:
        _refuse_foreign(self.database_path, self.location)
        if self.read_only:
            if not self.database_path.is_file():
                raise FileNotFoundError(f"no store at {self.root} to open read-only")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            # Before anything else in the folder: a refused second writer
            # must not migrate, clean up uploads or touch the WAL.
            self._lock.acquire()
            self._blobs.prepare()
            self._writer = WriterThread(self._open_writer, self._committed, _append_together)
            await self._writer.start()
        # A read-only server must not write a byte. SQLite reads a WAL store
        # through its -shm/-wal files and creates them if missing; when they
        # are missing no writer is running, so the file is opened as immutable
        # (a snapshot). With a live writer they exist and its commits show.
        immutable = self.read_only and not _wal_files_exist(self.database_path)
        for _ in range(self._reader_count):
            reader = await self._connect(read_only=True, immutable=immutable)
            self._readers.append(reader)
        self._next_reader = itertools.cycle(self._readers)
        await self._check_schema()

    async def close(self) -> None:
        if self._closed and self._writer is None and not self._readers:
            return
        self._closed = True
        await self._close_connections()

    async def _close_connections(self) -> None:
        # Readers first: the last connection to close checkpoints the WAL and
        # removes its files, and only the writer may.
        for reader in self._readers:
            await reader.close()
        self._readers.clear()
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        # Last: the next writer may start once this one has closed its files.
        self._lock.release()

    def _uri(self, *, read_only: bool = False, immutable: bool = False) -> str:
        mode = "ro" if read_only else "rwc"
        options = f"mode={mode}&immutable=1" if immutable else f"mode={mode}"
        return f"{self.database_path.as_uri()}?{options}"

    async def _connect(self, *, read_only: bool, immutable: bool) -> aiosqlite.Connection:
        # isolation_level=None: transactions are begun and ended explicitly.
        connection = await aiosqlite.connect(
            self._uri(read_only=read_only, immutable=immutable),
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        await connection.execute("PRAGMA busy_timeout=10000")
        await connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def _open_writer(self) -> sqlite3.Connection:
        """Opens and migrates the write connection (in the writer's thread)."""
        db = sqlite3.connect(self._uri(), uri=True, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            _migrate(db, self.location)
            reserve_wal(db, _companion(self.database_path, "-wal"))
        except BaseException:
            db.close()
            raise
        return db

    async def _check_schema(self) -> None:
        version = await _scalar(self._reader(), "PRAGMA user_version")
        if version != SCHEMA_VERSION:
            raise StoreIncompatibleError(
                f"store schema version {version}; this server needs {SCHEMA_VERSION}"
            )

    # The writer

    def _reader(self) -> aiosqlite.Connection:
        assert self._next_reader is not None, "store not opened"
        return next(self._next_reader)

    async def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        if self._closed:
            raise StoreClosedError()
        # The least busy connection: a long read (a large page) holds one,
        # and the reads behind it go to the others instead of queueing.
        reader = min(self._readers, key=self._busy.__getitem__)
        self._busy[reader] += 1
        try:
            return list(await reader.execute_fetchall(sql, parameters))
        finally:
            self._busy[reader] -= 1

    async def _write(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        one_statement: bool = False,
        batch: Sequence[Event] | None = None,
    ) -> T:
        """Runs `work` inside a write transaction and returns its result.

        The work runs in the writer thread and is carried out even if the
        caller is cancelled while it waits (its future is then cancelled and
        its outcome dropped): a cancelled caller can never interrupt a
        transaction, and a write once queued is not dropped. `one_statement`:
        the work changes the store in at most one statement, which SQLite
        undoes by itself if it fails, so it needs no savepoint of its own.
        `batch`: the events of an independent append, which the writer may
        store together with its neighbours' (`_append_together`).
        """
        if self.read_only:
            raise StoreReadOnlyError()
        if self._closed:
            raise StoreClosedError()
        assert self._writer is not None
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.submit(work, future, savepoint=not one_statement, batch=batch)
        return await future

    def _committed(self, requests: list[Request], outcomes: list[Outcome]) -> None:
        """A group committed (on the event loop, in commit order): tell the
        commit listeners, then the callers."""
        self._announce(outcomes)
        _settle([request.future for request in requests], outcomes)

    def add_commit_listener(self, listener: Callable[[Sequence[Event]], None]) -> None:
        self._commit_listeners.append(listener)

    def _announce(self, outcomes: list[Outcome]) -> None:
        """Tells the commit listeners about the group's new events, in order."""
        announce([r for error, r in outcomes if error is None], self._commit_listeners)

    # Channels

    async def create_channel(self, channel: Channel) -> Channel:
        def work(db: sqlite3.Connection) -> Channel:
            try:
                db.execute(
                    f"INSERT INTO channels ({CHANNEL_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                    channel_values(channel),
                )
            except sqlite3.IntegrityError as exc:
                raise channel_exists(channel.name) from exc
            return channel

        return await self._write(work)

    async def get_channel(self, name: str) -> Channel:
        rows = await self._read(f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE name = ?", (name,))
        if not rows:
            raise channel_not_found(name)
        return channel_from(rows[0])

    async def list_channels(self, *, after: str | None, limit: int) -> list[Channel]:
        rows = await self._read(
            f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE name > ? ORDER BY name LIMIT ?",
            (after or "", limit),
        )
        return [channel_from(row) for row in rows]

    async def delete_channel(self, name: str) -> ChannelDeletion:
        def work(db: sqlite3.Connection) -> ChannelDeletion:
            _require_channel(db, name)
            events = db.execute("DELETE FROM events WHERE channel = ?", (name,)).rowcount
            subscriptions = db.execute(
                "DELETE FROM subscriptions WHERE channel = ? RETURNING id", (name,)
            ).fetchall()
            artifacts = db.execute(
                "DELETE FROM artifacts WHERE channel = ? RETURNING id", (name,)
            ).fetchall()
            db.execute("DELETE FROM snapshots WHERE channel = ?", (name,))
            db.execute("DELETE FROM channels WHERE name = ?", (name,))
            # Payload files stay: another record, or an upload whose record
            # is not written yet, may have the same content.
            return ChannelDeletion(
                events=events,
                subscriptions=tuple(sorted(row[0] for row in subscriptions)),
                artifacts=tuple(sorted(row[0] for row in artifacts)),
            )

        return await self._write(work)

    # Events

    async def append_events(self, events: Sequence[Event]) -> list[Event]:
        appended = await self._write(
            lambda db: _append(db, events, atomic=True), one_statement=appends_one(events)
        )
        return appended.results

    async def append_each(self, events: Sequence[Event]) -> list[Event | SSSNError]:
        appended = await self._write(
            lambda db: _append(db, events, atomic=False),
            one_statement=appends_one(events),
            batch=events,
        )
        return appended.results

    async def restore_events(self, events: Sequence[Event], *, head: int) -> None:
        def work(db: sqlite3.Connection) -> None:
            last = int(db.execute(_HEAD).fetchone()[0])
            positions = _Positions(db)
            rows = []
            for event in events:
                if event.cursor <= last:
                    raise ValueError(f"cursor {event.cursor} is not above {last}")
                last = event.cursor
                rows.append((event.cursor, *_event_row(event), *positions.next(event)))
            db.executemany(_RESTORE_EVENT, rows)
            # The AUTOINCREMENT counter: the next append goes above the head.
            db.execute(
                "INSERT OR IGNORE INTO sqlite_sequence (name, seq) SELECT 'events', 0"
                " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events')"
            )
            db.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'events'",
                (max(head, last),),
            )

        await self._write(work)

    async def get_event(self, event_id: str) -> Event:
        rows = await self._read(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,))
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
        columns = _EVENT_COLUMNS
        if kind is None:
            sql = (
                f"SELECT {columns} FROM events WHERE channel = ? AND cursor > ?"
                " ORDER BY cursor LIMIT ?"
            )
            parameters: tuple[Any, ...] = (channel, after_cursor, limit)
        else:
            sql = (
                f"SELECT {columns} FROM events"
                " WHERE channel = ? AND kind = ? AND cursor > ? ORDER BY cursor LIMIT ?"
            )
            parameters = (channel, kind, after_cursor, limit)
        return [_event(row) for row in await self._read(sql, parameters)]

    async def head_cursor(self) -> int:
        rows = await self._read(_HEAD)
        return int(rows[0][0])

    async def count_events(self, channel: str, *, after_cursor: int, kind: str | None) -> int:
        # The channel's (or kind's) last position minus the position of its
        # last event at or before the cursor: two index lookups, whatever
        # the count.
        if kind is None:
            rows = await self._read(
                "SELECT coalesce((SELECT seq FROM events WHERE channel = ?1"
                " ORDER BY cursor DESC LIMIT 1), 0) - coalesce((SELECT seq FROM events"
                " WHERE channel = ?1 AND cursor <= ?2 ORDER BY cursor DESC LIMIT 1), 0)",
                (channel, after_cursor),
            )
        else:
            rows = await self._read(
                "SELECT coalesce((SELECT kind_seq FROM events WHERE channel = ?1 AND kind = ?2"
                " ORDER BY cursor DESC LIMIT 1), 0) - coalesce((SELECT kind_seq FROM events"
                " WHERE channel = ?1 AND kind = ?2 AND cursor <= ?3"
                " ORDER BY cursor DESC LIMIT 1), 0)",
                (channel, kind, after_cursor),
            )
        return int(rows[0][0])

    async def first_cursor_at(self, channel: str, timestamp_ns: int) -> int | None:
        # `ts_high` never decreases along a channel, so the first index entry
        # at or after the instant is the first event (in cursor order) whose
        # own timestamp is at or after it.
        rows = await self._read(
            "SELECT cursor FROM events WHERE channel = ? AND ts_high >= ?"
            " ORDER BY ts_high, cursor LIMIT 1",
            (channel, timestamp_ns),
        )
        return int(rows[0][0]) if rows else None

    # Subscriptions

    async def create_subscription(self, subscription: Subscription) -> Subscription:
        def work(db: sqlite3.Connection) -> Subscription:
            _require_channel(db, subscription.channel)
            rows = db.execute(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?",
                (subscription.id,),
            ).fetchall()
            for row in rows:
                existing = subscription_from(row)
                if existing.channel != subscription.channel:
                    raise subscription_exists(subscription.id, existing.channel)
                return existing
            db.execute(
                f"INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                subscription_values(subscription),
            )
            return subscription

        return await self._write(work)

    async def get_subscription(self, subscription_id: str) -> Subscription:
        rows = await self._read(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?", (subscription_id,)
        )
        if not rows:
            raise subscription_not_found(subscription_id)
        return subscription_from(rows[0])

    async def advance_subscription(self, subscription_id: str, cursor: int) -> None:
        def work(db: sqlite3.Connection) -> None:
            changed = db.execute(
                "UPDATE subscriptions SET cursor = max(cursor, ?) WHERE id = ?",
                (cursor, subscription_id),
            )
            if changed.rowcount == 0:
                raise subscription_not_found(subscription_id)

        await self._write(work)

    async def seek_subscription(self, subscription_id: str, cursor: int) -> Subscription:
        def work(db: sqlite3.Connection) -> Subscription:
            rows = db.execute(
                f"UPDATE subscriptions SET cursor = ? WHERE id = ?"
                f" RETURNING {SUBSCRIPTION_COLUMNS}",
                (cursor, subscription_id),
            ).fetchall()
            for row in rows:
                return subscription_from(row)
            raise subscription_not_found(subscription_id)

        return await self._write(work)

    async def list_subscriptions(
        self, *, channel: str | None, after: str | None, limit: int
    ) -> list[Subscription]:
        if channel is None:
            sql = (
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id > ? ORDER BY id LIMIT ?"
            )
            parameters: tuple[Any, ...] = (after or "", limit)
        else:
            sql = (
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions"
                " WHERE channel = ? AND id > ? ORDER BY id LIMIT ?"
            )
            parameters = (channel, after or "", limit)
        return [subscription_from(row) for row in await self._read(sql, parameters)]

    async def delete_subscription(self, subscription_id: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            deleted = db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))
            if deleted.rowcount == 0:
                raise subscription_not_found(subscription_id)

        await self._write(work)

    # Artifacts

    async def begin_artifact(self) -> ArtifactUpload:
        if self.read_only:
            raise StoreReadOnlyError()
        return await asyncio.to_thread(self._blobs.begin)

    async def save_artifact(
        self,
        upload: ArtifactUpload,
        spec: ArtifactSpec,
        *,
        artifact_id: str,
        check_events: bool = True,
    ) -> Artifact:
        assert isinstance(upload, BlobUpload), "upload from another store"
        try:
            # Check links before the payload lands, so a rejected write leaves
            # no file; the transaction checks again before it records the row.
            if spec.channel is not None:
                await self.get_channel(spec.channel)
            for event_id in spec.event_ids if check_events else ():
                await self.get_event(event_id)
            digest = await self._blobs.commit(upload)
        finally:
            await upload.discard()
        artifact = Artifact(
            id=artifact_id,
            size=upload.size,
            sha256=digest,
            channel=spec.channel,
            media_type=spec.media_type,
            metadata=spec.metadata,
            event_ids=spec.event_ids,
        )

        def work(db: sqlite3.Connection) -> Artifact:
            if artifact.channel is not None:
                _require_channel(db, artifact.channel)
            if check_events:
                _require_events(db, artifact.event_ids)
            db.execute(
                f"INSERT INTO artifacts ({ARTIFACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    artifact.id,
                    artifact.channel,
                    artifact.media_type,
                    artifact.size,
                    artifact.sha256,
                    dumps(artifact.metadata),
                    dumps(list(artifact.event_ids)),
                ),
            )
            return artifact

        return await self._write(work)

    async def get_artifact(self, artifact_id: str) -> Artifact:
        rows = await self._read(
            f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id = ?", (artifact_id,)
        )
        if not rows:
            raise artifact_not_found(artifact_id)
        return _artifact(rows[0])

    async def list_artifacts(self, *, after: str | None, limit: int) -> list[Artifact]:
        rows = await self._read(
            f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id > ? ORDER BY id LIMIT ?",
            (after or "", limit),
        )
        return [_artifact(row) for row in rows]

    def read_artifact(self, artifact: Artifact, chunk_size: int) -> AsyncIterator[bytes]:
        return self._blobs.read(artifact.sha256, chunk_size)

    # Snapshots

    async def put_snapshot(self, snapshot: Snapshot, *, check_events: bool = True) -> Snapshot:
        def work(db: sqlite3.Connection) -> Snapshot:
            if snapshot.channel is not None:
                _require_channel(db, snapshot.channel)
            if snapshot.source_event_id is not None and check_events:
                _require_events(db, (snapshot.source_event_id,))
            db.execute(
                f"INSERT INTO snapshots ({SNAPSHOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                + SNAPSHOT_UPDATE,
                snapshot_values(snapshot),
            )
            return snapshot

        return await self._write(work)

    async def list_snapshots(self, *, after: str | None, limit: int) -> list[Snapshot]:
        rows = await self._read(
            f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE name > ? ORDER BY name LIMIT ?",
            (after or "", limit),
        )
        return [snapshot_from(row) for row in rows]

    async def get_snapshot(self, name: str) -> Snapshot:
        rows = await self._read(f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE name = ?", (name,))
        if not rows:
            raise snapshot_not_found(name)
        return snapshot_from(rows[0])


def _companion(database: Path, suffix: str) -> Path:
    """One of the files SQLite keeps beside a database in WAL mode (-wal, -shm)."""
    return database.with_name(database.name + suffix)


def _wal_files_exist(database: Path) -> bool:
    return any(_companion(database, suffix).exists() for suffix in ("-wal", "-shm"))


def _settle(futures: list[asyncio.Future[Any]], outcomes: list[Outcome]) -> None:
    for future, (error, result) in zip(futures, outcomes, strict=True):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _refuse_foreign(path: Path, location: str) -> None:
    """Refuses, before anything in the folder is touched, a database file
    that holds tables but no schema of ours: the reference's LocalStore uses
    the same folder and file names (`.sssn/sssn.sqlite`).

    Read as an immutable snapshot, which writes nothing; skipped while a
    write-ahead log exists (a store of ours in use, or not cleanly closed),
    whose pages the snapshot would not see: the migration checks again.
    """
    if not path.is_file() or _wal_files_exist(path):
        return
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        _check_not_foreign(db, location)
    except sqlite3.DatabaseError as exc:  # not a database file at all
        raise StoreIncompatibleError(f"{path} is not an SQLite database: {exc}") from None
    finally:
        db.close()


def _check_not_foreign(db: sqlite3.Connection, location: str) -> None:
    if int(db.execute("PRAGMA user_version").fetchone()[0]):
        return
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return
    reference = {"channels", "events", "subscriptions", "artifacts", "snapshots"} <= tables
    what = "a reference sssn 0.1.1 store" if reference else "tables of another program"
    raise StoreIncompatibleError(
        f"{location} holds {what}, not a store of this server; nothing was changed."
        f" Import it into a new store: sssn-server import-reference --from {location}"
        " --to NEW_FOLDER"
    )


def _migrate(db: sqlite3.Connection, location: str) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreIncompatibleError(
            f"store schema version {version} is newer than this server ({SCHEMA_VERSION})"
        )
    _check_not_foreign(db, location)
    for number in range(version, SCHEMA_VERSION):
        log.info("migrating store schema to version %s", number + 1)
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={number + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


async def _scalar(db: aiosqlite.Connection, sql: str) -> int:
    rows = await db.execute_fetchall(sql)
    return int(next(iter(rows))[0])


def _require_channel(db: sqlite3.Connection, name: str) -> None:
    if db.execute("SELECT 1 FROM channels WHERE name = ?", (name,)).fetchone() is None:
        raise channel_not_found(name)


def _require_events(db: sqlite3.Connection, event_ids: Sequence[str]) -> None:
    """Raises EventNotFoundError naming the first id that is not stored."""
    unique = list(dict.fromkeys(event_ids))
    found = {row[0] for row in _select_in(db, "SELECT id FROM events WHERE id IN", unique)}
    for event_id in unique:
        if event_id not in found:
            raise event_not_found(event_id)


def _select_in(db: sqlite3.Connection, sql: str, values: Sequence[str]) -> list[Any]:
    """Runs `sql (?, ?, ...)` for `values`, in chunks below SQLite's limit of bound
    variables; no statement at all when there are none."""
    rows: list[Any] = []
    for start in range(0, len(values), _MAX_VARIABLES):
        chunk = values[start : start + _MAX_VARIABLES]
        placeholders = ", ".join("?" * len(chunk))
        rows.extend(db.execute(f"{sql} ({placeholders})", chunk).fetchall())
    return rows


def _append(db: sqlite3.Connection, events: Sequence[Event], *, atomic: bool) -> Appended:
    """Stores events in a handful of statements, not several per event.

    Atomic: the first bad event raises and nothing is stored. Otherwise each
    bad event's place in the result holds its error and the rest are stored.
    """
    if appends_one(events):
        try:
            return _append_one(db, events[0])
        except SSSNError as error:
            if atomic:
                raise
            return Appended([error], [])
    fast = _append_new(db, events)
    if fast is not None:
        return fast
    ids = list(dict.fromkeys(event.id for event in events))
    known: dict[str, str] = dict(_select_in(db, "SELECT id, channel FROM events WHERE id IN", ids))
    channels = {
        row[0]
        for row in _select_in(
            db, "SELECT name FROM channels WHERE name IN", list({e.channel for e in events})
        )
    }
    parents = list({p for event in events for p in event.parent_ids if p not in known})
    stored_parents = {
        row[0] for row in _select_in(db, "SELECT id FROM events WHERE id IN", parents)
    }
    results: list[Any] = []
    fresh: list[Event] = []
    for event in events:  # in order, so the first bad event is the one reported
        try:
            is_new = check_append(event, known, channels, stored_parents)
        except SSSNError as error:
            if atomic:
                raise
            results.append(error)
            continue
        if is_new:
            known[event.id] = event.channel  # parents may name it from here on
            fresh.append(event)
        results.append(event.id)
    inserted, last = _insert(db, fresh)  # all checked new: every row goes in
    assert inserted == len(fresh), (inserted, len(fresh))
    fresh = _with_cursors(fresh, last)
    stored = {event.id: event for event in fresh}
    # Retries are answered with the event as first stored, not as re-sent.
    retried = [r for r in dict.fromkeys(results) if isinstance(r, str) and r not in stored]
    stored.update(
        (row[1], _event(row))
        for row in _select_in(db, f"SELECT {_EVENT_COLUMNS} FROM events WHERE id IN", retried)
    )
    return Appended(
        [stored[result] if isinstance(result, str) else result for result in results], fresh
    )


# Rows per multi-row INSERT: within the bound variables allowed per statement.
_EVENT_ROW_VARIABLES = _INSERT_EVENT.count("?")
_ROWS_PER_INSERT = _MAX_VARIABLES // _EVENT_ROW_VARIABLES


@functools.lru_cache(maxsize=64)
def _insert_rows(count: int) -> str:
    """One INSERT of `count` events that skips ids already stored. One
    statement is one step of SQLite's, where `executemany` takes one per
    row; each step releases the GIL and must take it back from a busy event
    loop, which costs more than the row."""
    head = _INSERT_EVENT.split(" VALUES ")[0]
    return f"{head} VALUES {', '.join([_EVENT_ROW] * count)} ON CONFLICT(id) DO NOTHING"


def _append_new(db: sqlite3.Connection, events: Sequence[Event]) -> Appended | None:
    """The common case of a batch: every event new, in a channel that exists,
    naming no parents. Each id is checked by the unique index as it is
    inserted rather than looked up first; if any event is not the common
    case (a retry, a clash, a repeated id, a missing channel), the insert is
    undone and None returned, and `_append` checks each event.
    """
    if any(event.parent_ids for event in events):
        return None
    db.execute("SAVEPOINT new_events")
    try:
        inserted, last = _insert(db, events)
    except sqlite3.IntegrityError:  # the channel's foreign key
        inserted = -1
    if inserted != len(events):  # an id was there already: not the common case
        db.execute("ROLLBACK TO new_events")
        db.execute("RELEASE new_events")
        return None
    db.execute("RELEASE new_events")
    fresh = _with_cursors(events, last)
    return Appended(list(fresh), fresh)


def _insert(db: sqlite3.Connection, events: Sequence[Event]) -> tuple[int, int]:
    """Inserts events in order, skipping an id already stored; returns how
    many rows went in and the last one's cursor (read from the cursor
    object, not with another statement). A skipped id leaves a hole in its
    channel's positions: callers undo such an insert (`_append_new`) or
    insert only events checked new (`_append`)."""
    before = db.total_changes
    last = 0
    positions = _Positions(db)
    for start in range(0, len(events), _ROWS_PER_INSERT):
        chunk = events[start : start + _ROWS_PER_INSERT]
        rows = [
            value
            for event in chunk
            for values in (_event_row(event), positions.next(event))
            for value in values
        ]
        last = db.execute(_insert_rows(len(chunk)), rows).lastrowid or 0
    return db.total_changes - before, last


class _Positions:
    """Where each new event stands in its channel (`seq`, `kind_seq`,
    `ts_high`; see schema 4), from its channel's last stored event, read
    once per channel and kind by each insert of the transaction."""

    __slots__ = ("_channels", "_db", "_kinds")

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._channels: dict[str, list[int]] = {}
        self._kinds: dict[tuple[str, str], int] = {}

    def next(self, event: Event) -> tuple[int, int, int]:
        """The positions of `event`, taken: call once per event, in insert order."""
        channel = self._channels.get(event.channel)
        if channel is None:
            row = self._db.execute(
                "SELECT seq, ts_high FROM events WHERE channel = ? ORDER BY cursor DESC LIMIT 1",
                (event.channel,),
            ).fetchone()
            channel = self._channels[event.channel] = [row[0], row[1]] if row else [0, -(2**63)]
        key = (event.channel, event.kind)
        kind_seq = self._kinds.get(key)
        if kind_seq is None:
            row = self._db.execute(
                "SELECT kind_seq FROM events WHERE channel = ? AND kind = ?"
                " ORDER BY cursor DESC LIMIT 1",
                key,
            ).fetchone()
            kind_seq = row[0] if row else 0
        channel[0] += 1
        channel[1] = max(channel[1], event.timestamp_ns)
        self._kinds[key] = kind_seq + 1
        return channel[0], kind_seq + 1, channel[1]


def _with_cursors(events: Sequence[Event], last: int) -> list[Event]:
    """The events just inserted in one go, with their cursors: AUTOINCREMENT
    gave each row the next one, in order (this connection is the only
    writer), so they are consecutive up to `last`."""
    first = last - len(events) + 1
    return [with_cursor(event, first + index) for index, event in enumerate(events)]


def _append_together(db: sqlite3.Connection, batches: list[Sequence[Event]]) -> list[Appended]:
    """Independent appends of several callers as one: what each gets back is
    what it would have got alone, in turn (an id or parent may name an event
    of an earlier caller's batch)."""
    appended = _append(db, [event for batch in batches for event in batch], atomic=False)
    results = iter(appended.results)
    # The new events are announced once, in cursor order, with the first caller.
    fresh = appended.fresh
    split = []
    for batch in batches:
        split.append(Appended([next(results) for _event in batch], fresh))
        fresh = []
    return split


def _append_one(db: sqlite3.Connection, event: Event) -> Appended:
    """The common case, one event without parents, in one statement: the
    channel's foreign key and the id's unique index do the checking."""
    try:
        row = db.execute(
            f"{_INSERT_ONE_EVENT} ON CONFLICT(id) DO NOTHING RETURNING cursor", _event_row(event)
        ).fetchone()
    except sqlite3.IntegrityError:  # the only foreign key: the channel
        raise channel_not_found(event.channel) from None
    if row is not None:
        stored = with_cursor(event, row[0])
        return Appended([stored], [stored])
    # The id exists: a retry, or a clash with another channel's event.
    existing = _event(
        db.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event.id,)).fetchone()
    )
    if existing.channel != event.channel:
        _require_channel(db, event.channel)  # a missing channel is reported first
        raise event_exists(event.id, existing.channel)
    return Appended([existing], [])


def _event_row(event: Event) -> tuple[Any, ...]:
    """The values `_EVENT_ROW` binds before the event's positions, in the
    forms that bind fastest."""
    wire = event.wire
    return (
        event.id,
        event.channel,
        event.timestamp_ns,
        0 if event.source is None else event.source,
        event.kind,
        _json_column(event.payload) if wire is None else _IN_WIRE,
        0 if event.schema is None else event.schema,
        _json_column(event.metadata) if wire is None else _IN_WIRE,
        0 if event.correlation_id is None else event.correlation_id,
        dumps(list(event.parent_ids)) if event.parent_ids else "[]",
        None if wire is None else bytearray(wire),
    )


def _json_column(value: Any) -> str | bytearray:
    """JSON text, or an `Encoded` value's bytes kept as they are (a BLOB;
    bytearray binds faster, see `_EVENT_ROW`)."""
    return bytearray(value.data) if isinstance(value, Encoded) else dumps(value)


def _column_value(column: str | bytes | None, left_out: Any) -> Any:
    """A payload or metadata column's value: a BLOB is the value in the wire
    form the API received it in (schema 3), TEXT is JSON, and NULL means
    the event's wire form holds it (`_EVENT_COLUMNS`)."""
    if column is None:
        return left_out
    return Encoded(column) if type(column) is bytes else json.loads(column)


def _event(row: sqlite3.Row) -> Event:
    # Positional, in Event's field order: built for every event read, and
    # matching twelve keywords costs a call twice as much (~0.6 against
    # ~0.3 us). The store tests check each field.
    return Event(
        row[1],  # id
        row[2],  # channel
        row[3],  # timestamp_ns
        row[5],  # kind
        _column_value(row[6], None),  # payload
        row[4],  # source
        row[7],  # schema
        _column_value(row[8], {}),  # metadata
        row[9],  # correlation_id
        () if row[10] == "[]" else tuple(json.loads(row[10])),  # parent_ids
        row[0],  # cursor
        row[11],  # wire
    )


def _artifact(row: sqlite3.Row) -> Artifact:
    return Artifact(
        id=row[0],
        channel=row[1],
        media_type=row[2],
        size=row[3],
        sha256=row[4],
        metadata=json.loads(row[5]),
        event_ids=tuple(json.loads(row[6])),
    )
