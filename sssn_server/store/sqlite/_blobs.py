"""Content-addressed payload files: staged in a temp file, fsynced, renamed into place."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

from ...domain.errors import ArtifactNotFoundError, StorageFullError
from ...domain.ports import ArtifactUpload

_STAGING = ".staging"

# What a write fails with when the file system (or the user's quota) is full.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def _storage_full_as_domain_error() -> Iterator[None]:
    """Raises StorageFullError for a full disk, so nothing above the store
    sees the OSError; the caller may retry once space is freed."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise StorageFullError() from exc
        raise


class BlobUpload(ArtifactUpload):
    """A payload written to a private temp file while its digest is computed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._digest = hashlib.sha256()
        self._file: BinaryIO | None = open(path, "xb")  # noqa: SIM115 - closed in seal/discard

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    async def write(self, chunk: bytes) -> None:
        # Hashing and writing large chunks would stall the event loop.
        await asyncio.to_thread(self._absorb, chunk)

    def _absorb(self, chunk: bytes) -> None:
        assert self._file is not None, "upload already sealed"
        self._digest.update(chunk)
        with _storage_full_as_domain_error():
            self._file.write(chunk)
        self.size += len(chunk)

    def seal(self) -> None:
        """Flushes and fsyncs the temp file so its bytes survive a crash."""
        assert self._file is not None, "upload already sealed"
        with _storage_full_as_domain_error():
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

    async def discard(self) -> None:
        await asyncio.to_thread(self._discard)

    def _discard(self) -> None:
        if self._file is not None:
            # Closing flushes what is buffered, which fails again on a full
            # disk; the file is deleted anyway.
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)


class BlobDirectory:
    """The `artifacts/` folder: one file per distinct payload, named by sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / _STAGING

    def prepare(self) -> None:
        """Creates the folders and removes uploads a crash left half-written."""
        self.staging.mkdir(parents=True, exist_ok=True)
        for leftover in self.staging.iterdir():
            leftover.unlink(missing_ok=True)

    def begin(self) -> BlobUpload:
        with _storage_full_as_domain_error():
            return BlobUpload(self.staging / f"{uuid.uuid4().hex}.part")

    async def commit(self, upload: BlobUpload) -> str:
        """Makes the upload durable under its digest and returns the digest."""
        return await asyncio.to_thread(self._commit, upload)

    def _commit(self, upload: BlobUpload) -> str:
        upload.seal()
        digest = upload.sha256
        with _storage_full_as_domain_error():
            # rename is atomic: readers see either no file or the whole payload.
            os.replace(upload.path, self.root / digest)
            _fsync_directory(self.root)
        return digest

    async def read(self, digest: str, chunk_size: int) -> AsyncIterator[bytes]:
        """Yields the payload stored under `digest` in chunks."""
        path = self.root / digest
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(
                f"Artifact payload is missing: {digest}", sha256=digest
            ) from exc
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
