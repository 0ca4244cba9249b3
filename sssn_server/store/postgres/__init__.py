"""The PostgreSQL backend: one database holds events, subscriptions, snapshots and artifacts."""

from .store import PostgresStore, redacted

__all__ = ["PostgresStore", "redacted"]
