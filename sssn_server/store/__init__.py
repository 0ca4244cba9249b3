"""Storage backends behind the domain's port (`domain/ports.py`), and the one `--store` names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..domain.ports import Store
from .sqlite import SQLiteStore

__all__ = ["DATABASE_SCHEMES", "SQLiteStore", "build_store", "is_database_url"]

# URL schemes of the PostgreSQL backend, as libpq spells them.
DATABASE_SCHEMES = ("postgresql", "postgres")

# --durability as each backend says it: SQLite's `synchronous` pragma, and
# PostgreSQL's `synchronous_commit` (off loses at most the last commits of a
# crashed database server, never its consistency).
_SQLITE_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
_POSTGRES_SYNCHRONOUS_COMMIT = {"full": "on", "normal": "off"}


def is_database_url(location: str | Path) -> bool:
    """Whether `--store` names a PostgreSQL database rather than a folder."""
    if isinstance(location, Path):
        return False
    scheme, separator, _rest = location.partition("://")
    return bool(separator) and scheme.lower() in DATABASE_SCHEMES


def build_store(
    location: str | Path,
    *,
    read_only: bool,
    durability: str,
    pool_size: int,
    plain_json: Any,
    lease_ttl: float = 10.0,
) -> Store:
    """The store `--store` names: a PostgreSQL URL, or else a SQLite folder."""
    if is_database_url(location):
        # Imported here: a SQLite server needs neither asyncpg nor its import time.
        from .postgres import PostgresStore

        return PostgresStore(
            str(location),
            read_only=read_only,
            synchronous_commit=_POSTGRES_SYNCHRONOUS_COMMIT[durability],
            pool_size=pool_size,
            plain_json=plain_json,
            lease_ttl=lease_ttl,
        )
    return SQLiteStore(location, read_only=read_only, synchronous=_SQLITE_SYNCHRONOUS[durability])
