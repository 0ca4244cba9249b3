"""Storage behind one async interface; SQLite is the embedded implementation."""

from .base import ArtifactUpload, Store
from .sqlite import SQLiteStore

__all__ = ["ArtifactUpload", "SQLiteStore", "Store"]
