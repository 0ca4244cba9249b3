"""The store's own connection: migrations, notifications, and checks that the database answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ...domain.ports import StoreIncompatibleError
from ._schema import MIGRATION_LOCK_KEY, MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

# Seconds between checks that the database answers, and the longest a check
# (or a reconnection) may take before the database counts as unreachable.
WATCH_INTERVAL = 1.0
_CHECK_TIMEOUT = 3.0


class Session:
    """One connection the server keeps for itself, beside its pool.

    It migrates the schema when the server starts, carries the LISTENs of
    the commit feed and of subscription changes, and every `WATCH_INTERVAL`
    checks that the database answers, reconnecting (and listening again)
    after an outage and reporting each change.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        writer: bool,
        location: str,
        on_change: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._connect = connect
        self._writer = writer
        self._listeners: list[tuple[str, Callable[[str], None]]] = []
        self._location = location
        self._on_change = on_change
        self._connection: asyncpg.Connection | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.available = True
        """False from the check that found the database unreachable until
        one finds it back."""

    async def open(self) -> None:
        """Connects; a writer migrates, a reader checks the schema."""
        connection = await self._connect()
        try:
            if self._writer:
                await migrate(connection)
            else:
                await check_schema(connection, self._location)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Calls `callback(payload)` for each NOTIFY on `channel`, from now on
        and again on every connection made after an outage."""
        self._listeners.append((channel, callback))
        if self._connection is not None:
            await self._add_listener(self._connection, channel, callback)

    async def _listen_on(self, connection: asyncpg.Connection) -> None:
        for channel, callback in self._listeners:
            await self._add_listener(connection, channel, callback)

    @staticmethod
    async def _add_listener(
        connection: asyncpg.Connection, channel: str, callback: Callable[[str], None]
    ) -> None:
        def heard(_connection: object, _pid: int, _channel: str, payload: str) -> None:
            callback(payload)

        await connection.add_listener(channel, heard)

    def watch(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="sssn-pg-watch")

    async def close(self) -> None:
        # Each wait is bounded: a check cut short leaves asyncpg waiting for
        # the server to acknowledge a cancel, which a busy or gone server
        # may never do, and a server must still stop.
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait({self._watcher}, timeout=_CHECK_TIMEOUT)
            self._watcher = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                await asyncio.wait_for(connection.close(timeout=_CHECK_TIMEOUT), _CHECK_TIMEOUT)
            except Exception:
                connection.terminate()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            available = await self._check()
            if available != self.available:
                self.available = available
                log.warning(
                    "database %s is %s", self._location, "back" if available else "unreachable"
                )
                await self._on_change(available)

    async def _check(self) -> bool:
        try:
            if self._connection is None or self._connection.is_closed():
                self._connection = None
                connection = await asyncio.wait_for(self._connect(), _CHECK_TIMEOUT)
                try:
                    await self._listen_on(connection)
                except BaseException:
                    await connection.close()
                    raise
                self._connection = connection
            await self._connection.fetchval("SELECT 1", timeout=_CHECK_TIMEOUT)
            return True
        except Exception:
            if self._connection is not None:
                self._connection.terminate()
                self._connection = None
            return False


async def migrate(connection: asyncpg.Connection) -> None:
    """Brings the schema up to date; a server starting at the same moment
    waits on the migration lock, then finds the schema current."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS sssn_schema (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        version = await connection.fetchval("SELECT coalesce(max(version), 0) FROM sssn_schema")
        if version > SCHEMA_VERSION:
            raise StoreIncompatibleError(
                f"store schema version {version} is newer than this server ({SCHEMA_VERSION})"
            )
        for number in range(version, SCHEMA_VERSION):
            log.info("migrating store schema to version %s", number + 1)
            await connection.execute(MIGRATIONS[number])
            await connection.execute("INSERT INTO sssn_schema (version) VALUES ($1)", number + 1)


async def check_schema(connection: asyncpg.Connection, location: str) -> None:
    """Refuses a database without the current schema (a read-only server
    neither creates nor migrates it)."""
    try:
        async with connection.transaction():
            # Waits for a migration that another server is running.
            await connection.execute("SELECT pg_advisory_xact_lock_shared($1)", MIGRATION_LOCK_KEY)
            version = await connection.fetchval("SELECT max(version) FROM sssn_schema")
    except asyncpg.UndefinedTableError:
        raise FileNotFoundError(f"no store at {location} to open read-only") from None
    if version != SCHEMA_VERSION:
        raise StoreIncompatibleError(
            f"store schema version {version}; this server needs {SCHEMA_VERSION}"
        )
