"""Storage backends behind the domain's port (`domain/ports.py`)."""

from .sqlite import SQLiteStore

__all__ = ["SQLiteStore"]
