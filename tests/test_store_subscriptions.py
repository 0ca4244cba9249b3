"""Storage of subscription administration: seek, list, delete, lag counts, the timestamp index."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sssn_server.domain.errors import SubscriptionNotFoundError
from sssn_server.domain.models import Channel, Subscription
from sssn_server.domain.ports import Store
from sssn_server.store import SQLiteStore
from sssn_server.store.sqlite._schema import MIGRATIONS, SCHEMA_VERSION

from .backends import open_store
from .test_store import new_event


@pytest.fixture
async def opened(store_location: Path | str) -> AsyncIterator[Store]:
    """A store of each backend with the channel `events`."""
    async with open_store(store_location) as store:
        await store.create_channel(Channel(name="events"))
        yield store


async def test_count_and_first_cursor_at(opened: Store) -> None:
    store = opened
    stored = await store.append_events(
        [new_event(1, kind="a"), new_event(2, kind="b"), new_event(3, kind="a")]
    )
    assert await store.count_events("events", after_cursor=0, kind=None) == 3
    assert await store.count_events("events", after_cursor=stored[0].cursor, kind="a") == 1
    # new_event(i) has timestamp_ns i + 1.
    assert await store.first_cursor_at("events", 3) == stored[1].cursor
    assert await store.first_cursor_at("events", 100) is None


async def test_seek_list_and_delete_subscriptions(opened: Store) -> None:
    store = opened
    await store.create_channel(Channel(name="other"))
    for name, channel in (("b", "events"), ("a", "events"), ("c", "other")):
        await store.create_subscription(Subscription(id=name, channel=channel))
    assert (await store.seek_subscription("a", 7)).cursor == 7
    assert (await store.seek_subscription("a", 2)).cursor == 2  # backward too
    listed = await store.list_subscriptions(channel=None, after=None, limit=10)
    assert [s.id for s in listed] == ["a", "b", "c"]
    page = await store.list_subscriptions(channel="events", after="a", limit=10)
    assert [s.id for s in page] == ["b"]
    await store.delete_subscription("a")
    for missing in (store.get_subscription("a"), store.delete_subscription("a")):
        with pytest.raises(SubscriptionNotFoundError):
            await missing
    with pytest.raises(SubscriptionNotFoundError):
        await store.seek_subscription("a", 0)


async def test_a_version_1_store_gains_the_seek_index(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    with sqlite3.connect(root / "sssn.sqlite") as db:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version=1")
    db.close()
    async with SQLiteStore(root) as store:
        await store.create_channel(Channel(name="events"))
    with sqlite3.connect(root / "sssn.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT cursor FROM events"
            " WHERE channel = 'events' AND ts_high >= 5 ORDER BY ts_high, cursor LIMIT 1"
        ).fetchall()
    db.close()
    assert "events_by_channel_time" in str(plan)
