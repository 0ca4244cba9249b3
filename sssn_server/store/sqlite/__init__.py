"""The embedded backend: one SQLite database and a blob folder under one store folder."""

from .store import ARTIFACTS_DIR, DATABASE_FILE, SQLiteStore

__all__ = ["ARTIFACTS_DIR", "DATABASE_FILE", "SQLiteStore"]
