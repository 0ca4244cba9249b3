"""What PostgreSQL and the connection can fail with, as domain errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg

from ...domain.errors import (
    InvalidPayloadError,
    SSSNError,
    StorageFullError,
    StoreReadOnlyError,
    StoreUnavailableError,
)

# SQLSTATE classes: 08 connection exception, 57 operator intervention (the
# server shutting down or starting up), 53 insufficient resources, 22 data
# exception (a value the database cannot hold, such as a NUL character).
_UNAVAILABLE_CLASSES = ("08", "57")
_DISK_FULL = "53100"
_READ_ONLY = "25006"
_DATA_CLASS = "22"


def as_domain_error(exc: BaseException) -> SSSNError | None:
    """The domain error a database failure means, or None for a bug of ours."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state.startswith(_UNAVAILABLE_CLASSES):
            return StoreUnavailableError()
        if state == _DISK_FULL:
            return StorageFullError()
        if state == _READ_ONLY:
            return StoreReadOnlyError()
        if state.startswith(_DATA_CLASS):
            return InvalidPayloadError("value", f"the database cannot store it: {exc}")
        return None
    # A connection that broke, could not be made, or timed out being made.
    if isinstance(
        exc,
        asyncpg.ConnectionDoesNotExistError
        | asyncpg.InterfaceError
        | OSError
        | asyncio.TimeoutError
        | ConnectionError,
    ):
        if isinstance(exc, asyncpg.InterfaceError) and not _lost_connection(exc):
            return None
        return StoreUnavailableError()
    return None


def _lost_connection(exc: asyncpg.InterfaceError) -> bool:
    # InterfaceError also reports misuse of a connection (a bug); only the
    # ones about a closed or lost connection mean the database went away.
    return isinstance(exc, asyncpg.ConnectionDoesNotExistError) or "closed" in str(exc)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Raises the domain error a database failure means, so nothing above
    the store sees asyncpg's exceptions; other failures pass unchanged."""
    try:
        yield
    except SSSNError:
        raise
    except Exception as exc:
        error = as_domain_error(exc)
        if error is None:
            raise
        raise error from exc
