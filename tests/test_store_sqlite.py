"""What the SQLite store does its own way: its files, its pragmas, its statements."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from sssn_server.domain.models import Channel, Event
from sssn_server.domain.ports import Store
from sssn_server.store import SQLiteStore
from sssn_server.store.sqlite import store as sqlite_store
from sssn_server.store.sqlite._schema import SCHEMA_VERSION

from .test_store import append_many_callers, new_event


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Store]:
    return lambda **options: SQLiteStore(tmp_path / "store", **options)


@pytest.fixture
async def store(make_store) -> Any:
    async with make_store() as opened:
        await opened.create_channel(Channel(name="events"))
        yield opened


async def test_independent_appends_of_many_callers_are_stored_as_if_one_by_one(
    make_store, monkeypatch
) -> None:
    """Concurrent append_each calls are stored together; each caller still
    gets what it would have got alone, in call order."""
    combined: list[int] = []
    together = sqlite_store._append_together

    def counted(db: sqlite3.Connection, batches: list[Sequence[Event]]) -> list[Any]:
        combined.append(len(batches))
        return together(db, batches)

    monkeypatch.setattr(sqlite_store, "_append_together", counted)
    async with make_store() as store:
        await store.create_channel(Channel(name="events"))
        await append_many_callers(store)
    assert combined and max(combined) > 1  # the calls really were stored together


async def test_a_store_from_a_newer_server_is_refused(make_store) -> None:
    async with make_store() as store:
        pass
    assert isinstance(store, SQLiteStore)
    with sqlite3.connect(store.database_path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        await make_store().open()


async def test_half_written_uploads_are_removed_on_open(make_store) -> None:
    async with make_store() as store:
        pass
    assert isinstance(store, SQLiteStore)
    # What a process killed in the middle of an upload leaves behind:
    leftover = store.root / "artifacts" / ".staging" / "killed.part"
    leftover.write_bytes(b"partial")
    async with make_store():
        assert not leftover.exists()


async def test_an_event_with_a_wire_form_keeps_its_content_only_there(store: SQLiteStore) -> None:
    await store.append_events([new_event(1, wire=b"the whole event"), new_event(2)])
    with sqlite3.connect(store.database_path) as db:
        rows = db.execute("SELECT length(payload), length(metadata) FROM events").fetchall()
    db.close()
    assert rows[0] == (0, 0)
    assert rows[1][0] > 0


async def test_a_batch_larger_than_one_insert_is_split_and_stored_in_order(
    store: SQLiteStore,
) -> None:
    count = 2 * sqlite_store._ROWS_PER_INSERT + 7
    stored = await store.append_events([new_event(index) for index in range(count)])
    assert [event.cursor for event in stored] == list(range(1, count + 1))


async def test_the_schema_version_and_wal_mode_are_recorded(make_store) -> None:
    async with make_store() as store:
        pass
    with sqlite3.connect(store.database_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_discarded_uploads_leave_no_staging_file(store: SQLiteStore) -> None:
    upload = await store.begin_artifact()
    await upload.write(b"partial")
    await upload.discard()
    assert list((store.root / "artifacts" / ".staging").iterdir()) == []
