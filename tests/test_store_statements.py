"""The SQLite store's fast paths are the ones taken: the statements its writer runs, counted."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sssn_server.domain.models import Channel, Event
from sssn_server.store import SQLiteStore


class TracedStore(SQLiteStore):
    """The SQLite store, with every statement of its write connection recorded."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.statements: list[str] = []

    def _open_writer(self) -> sqlite3.Connection:
        db = super()._open_writer()
        db.set_trace_callback(self.statements.append)  # called in the writer thread
        return db

    def verbs(self) -> list[str]:
        """The first word of each statement run since the last call."""
        verbs = [statement.split(None, 1)[0].upper() for statement in self.statements]
        self.statements.clear()
        return verbs


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[TracedStore]:
    async with TracedStore(tmp_path / "store") as opened:
        await opened.create_channel(Channel(name="events"))
        opened.verbs()
        yield opened


def new_event(index: int) -> Event:
    return Event(id=f"e{index}", channel="events", timestamp_ns=index + 1, payload=index)


async def test_a_batch_of_new_events_is_one_insert_in_one_transaction(store: TracedStore) -> None:
    stored = await store.append_events([new_event(index) for index in range(100)])
    assert [event.cursor for event in stored] == list(range(1, 101))
    # No lookup per event: the unique index checks the ids as they go in, and
    # the events' positions come from one lookup of the channel's last event
    # and one of its kind's.
    assert store.verbs() == [
        "BEGIN",
        "SAVEPOINT",
        "SELECT",
        "SELECT",
        "INSERT",
        "RELEASE",
        "COMMIT",
    ]


async def test_a_batch_holding_a_retry_is_undone_and_checked_event_by_event(
    store: TracedStore,
) -> None:
    first = await store.append_events([new_event(0)])
    store.verbs()
    stored = await store.append_events([new_event(1), new_event(0), new_event(2)])
    assert stored[1] == first[0]
    assert [stored[0].cursor, stored[2].cursor] == [2, 3]
    verbs = store.verbs()
    assert verbs[:7] == ["BEGIN", "SAVEPOINT", "SELECT", "SELECT", "INSERT", "ROLLBACK", "RELEASE"]
    assert "SELECT" in verbs  # the checked path looks the ids up


async def test_one_event_is_one_statement_without_a_savepoint(store: TracedStore) -> None:
    await store.append_events([new_event(0)])
    assert store.verbs() == ["BEGIN", "INSERT", "COMMIT"]
