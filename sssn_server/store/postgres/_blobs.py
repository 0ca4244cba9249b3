"""Artifact payloads in the database: chunked `bytea` rows, each distinct content kept once."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import asyncpg

from ...domain.errors import ArtifactNotFoundError
from ...domain.ports import ArtifactUpload
from ._errors import database_errors

# Bytes per stored chunk: small enough that reading one never holds much
# memory, large enough that a 1 GiB payload is a thousand rows.
CHUNK_BYTES = 1 << 20
# Hashing a chunk this large would stall the event loop; it goes to a thread.
_HASH_IN_THREAD = 256 << 10


class DatabaseUpload(ArtifactUpload):
    """A payload written as chunk rows of its own upload id while its digest
    is computed; the rows become the content only when a `blobs` row names
    the upload (`record`), and are deleted otherwise (`discard`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.upload = uuid.uuid4().hex
        self.size = 0
        self._pool = pool
        self._digest = hashlib.sha256()
        self._pending = bytearray()
        self._chunks = 0

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    async def write(self, chunk: bytes) -> None:
        if len(chunk) >= _HASH_IN_THREAD:
            await asyncio.to_thread(self._digest.update, chunk)
        else:
            self._digest.update(chunk)
        self.size += len(chunk)
        self._pending += chunk
        while len(self._pending) >= CHUNK_BYTES:
            await self._store(bytes(self._pending[:CHUNK_BYTES]))
            del self._pending[:CHUNK_BYTES]

    async def finish(self) -> str:
        """Stores what is still buffered and returns the payload's digest."""
        if self._pending:
            await self._store(bytes(self._pending))
            self._pending.clear()
        return self.sha256

    async def _store(self, data: bytes) -> None:
        with database_errors():
            if not self._chunks:
                await self._pool.execute("INSERT INTO uploads (upload) VALUES ($1)", self.upload)
            await self._pool.execute(
                "INSERT INTO blob_chunks (upload, number, data) VALUES ($1, $2, $3)",
                self.upload,
                self._chunks,
                data,
            )
        self._chunks += 1

    async def discard(self) -> None:
        self._pending.clear()
        if not self._chunks:
            return
        # Kept when a blob row names this upload: its chunks are the content.
        with database_errors():
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute(
                    "DELETE FROM blob_chunks WHERE upload = $1"
                    " AND NOT EXISTS (SELECT 1 FROM blobs WHERE upload = $1)",
                    self.upload,
                )
                await connection.execute("DELETE FROM uploads WHERE upload = $1", self.upload)


async def record(connection: asyncpg.Connection, upload: DatabaseUpload, digest: str) -> None:
    """Makes the upload's chunks the content of `digest`, unless that
    content is stored already (the upload's chunks are then discarded)."""
    await connection.execute(
        "INSERT INTO blobs (sha256, upload, size) VALUES ($1, $2, $3)"
        " ON CONFLICT (sha256) DO NOTHING",
        digest,
        upload.upload,
        upload.size,
    )


async def remove_abandoned(pool: asyncpg.Pool) -> None:
    """Deletes chunks of uploads that a killed server left unfinished. Only
    old ones: an upload of a server still running is younger."""
    with database_errors():
        await pool.execute(
            "WITH abandoned AS (DELETE FROM uploads"
            " WHERE started_at < now() - interval '1 day' RETURNING upload)"
            " DELETE FROM blob_chunks c USING abandoned a WHERE c.upload = a.upload"
            " AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.upload = c.upload)"
        )


async def read(pool: asyncpg.Pool, digest: str, chunk_size: int) -> AsyncIterator[bytes]:
    """Yields the content stored under `digest` in chunks of `chunk_size`."""
    with database_errors():
        upload = await pool.fetchval("SELECT upload FROM blobs WHERE sha256 = $1", digest)
    if upload is None:
        raise ArtifactNotFoundError(f"Artifact payload is missing: {digest}", sha256=digest)
    pending = b""
    number = 0
    while True:
        with database_errors():
            data = await pool.fetchval(
                "SELECT data FROM blob_chunks WHERE upload = $1 AND number = $2", upload, number
            )
        if data is None:
            break
        number += 1
        pending = pending + data if pending else data
        while len(pending) >= chunk_size:
            yield pending[:chunk_size]
            pending = pending[chunk_size:]
    if pending:
        yield pending
