"""Gives a new write-ahead log its working size up front, so commits overwrite it."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

# Bytes of the WAL's own header and of each frame's header (SQLite's format).
_WAL_HEADER = 32
_FRAME_HEADER = 24
# Pages the reservation's page cache may hold: past that, SQLite writes the
# transaction's pages to the WAL as it goes.
_SPILL_CACHE_PAGES = 16


def reserve_wal(db: sqlite3.Connection, wal: Path) -> int:
    """Writes the WAL out to the size it reaches before a checkpoint restarts
    it, and returns its size in bytes (0: it was that large already, or the
    reservation failed, which is logged and changes nothing).

    SQLite deletes the WAL when a store closes cleanly, so every start begins
    with an empty one, and until it reaches `wal_autocheckpoint` pages each
    commit makes the file longer. On ext4 the fsync of such a commit must
    also record the new length: a commit took ~0.26 ms while the file grew
    against ~0.15 ms once a checkpoint had restarted the log and commits
    overwrote it (SQLite alone, `synchronous=FULL`, docs/performance.md), so
    the first ~170 single-event commits after every start paid that much more.

    The pages are those of a transaction that is rolled back: with a tiny page
    cache SQLite writes them to the WAL as uncommitted frames, and a rollback
    leaves the file's length but nothing in the store. Recovery only ever
    applies frames up to a commit frame, so these are never read back.
    """
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    frames = int(db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) or 1000
    target = _WAL_HEADER + frames * (_FRAME_HEADER + page_size)
    if wal.exists() and wal.stat().st_size >= target:
        return 0
    cache_size = int(db.execute("PRAGMA cache_size").fetchone()[0])
    db.execute(f"PRAGMA cache_size={_SPILL_CACHE_PAGES}")
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE sssn_wal_reserve(filler BLOB)")
        # One row per page: a blob that fits a leaf page without overflow.
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO sssn_wal_reserve SELECT zeroblob(?) FROM n",
            (frames + _SPILL_CACHE_PAGES, page_size - 128),
        )
    except sqlite3.Error as error:
        # Only a speed-up: a disk too full for it is the writes' problem to report.
        log.warning("write-ahead log not reserved: %s", error)
        return 0
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.execute(f"PRAGMA cache_size={cache_size}")
    size = wal.stat().st_size
    log.info("write-ahead log reserved: %d bytes (%d frames)", size, frames)
    return size
