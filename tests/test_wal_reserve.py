"""A new write-ahead log gets its working size at start: commits overwrite it, nothing else."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_server.store.sqlite import DATABASE_FILE
from sssn_server.store.sqlite._schema import SCHEMA_VERSION
from sssn_server.store.sqlite._wal import reserve_wal

from .helpers import DEADLINE, event


def _wal(database: Path) -> Path:
    return database.with_name(database.name + "-wal")


def _reservable(database: Path) -> tuple[sqlite3.Connection, int]:
    """A WAL-mode database with one committed row, and the WAL size to expect."""
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE rows(value TEXT)")
    db.execute("INSERT INTO rows VALUES ('before')")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    frames = db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    return db, 32 + frames * (24 + page_size)


def _tables(db: sqlite3.Connection) -> list[str]:
    return [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


async def test_a_started_server_has_a_full_wal_that_appends_do_not_grow(
    server, store_dir: Path, stub, make_channel
) -> None:
    wal = _wal(store_dir / DATABASE_FILE)
    reserved = wal.stat().st_size
    assert reserved >= 4_000_000  # 1,000 frames of 4 KiB pages

    name = await make_channel()
    for index in range(50):
        await stub.AppendEvent(pb.AppendEventRequest(event=event(name, index)), timeout=DEADLINE)

    assert wal.stat().st_size == reserved  # overwritten, not extended
    uri = f"{(store_dir / DATABASE_FILE).as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        assert "sssn_wal_reserve" not in _tables(db)
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 50


def test_reserving_leaves_the_data_as_it_was_and_is_done_once(tmp_path: Path) -> None:
    db, expected = _reservable(tmp_path / "store.db")
    cache_size = db.execute("PRAGMA cache_size").fetchone()[0]

    assert reserve_wal(db, _wal(tmp_path / "store.db")) >= expected
    assert reserve_wal(db, _wal(tmp_path / "store.db")) == 0  # already that large

    assert _tables(db) == ["rows"]
    assert db.execute("SELECT value FROM rows").fetchall() == [("before",)]
    assert not db.in_transaction
    assert db.execute("PRAGMA cache_size").fetchone()[0] == cache_size  # restored
    db.close()


def test_a_crash_after_reserving_recovers_exactly_the_commits(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    db, _ = _reservable(database)
    reserve_wal(db, _wal(database))
    for index in range(20):
        db.execute("INSERT INTO rows VALUES (?)", (f"after {index}",))
    # The files as a crash leaves them: copied while the connection is open,
    # before any checkpoint or clean close.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(database, crashed / database.name)
    shutil.copy(_wal(database), _wal(crashed / database.name))
    db.close()

    with closing(sqlite3.connect(crashed / database.name)) as recovered:
        assert recovered.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert _tables(recovered) == ["rows"]
        assert [row[0] for row in recovered.execute("SELECT value FROM rows")] == [
            "before",
            *(f"after {index}" for index in range(20)),
        ]


def test_a_disk_too_full_to_reserve_changes_nothing(tmp_path: Path, caplog) -> None:
    database = tmp_path / "store.db"
    db, _ = _reservable(database)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages + 8}")  # the reservation needs ~1,000

    assert reserve_wal(db, _wal(database)) == 0

    assert "write-ahead log not reserved" in caplog.text
    assert not db.in_transaction
    assert _tables(db) == ["rows"]
    db.execute("INSERT INTO rows VALUES ('still writable')")
    assert db.execute("SELECT count(*) FROM rows").fetchone() == (2,)
    db.close()
