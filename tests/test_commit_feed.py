"""The PostgreSQL commit feed: stores sharing a database each hear every commit in cursor order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from sssn_server.domain.models import Channel, Event, Subscription
from sssn_server.domain.ports import Store
from sssn_server.store.postgres import PostgresStore

from .backends import open_store, query

pytestmark = pytest.mark.postgres_only


class Heard:
    """What one store's listeners were told, in the order they were told it."""

    def __init__(self, store: Store) -> None:
        self.cursors: list[int] = []
        self.events: list[Event] = []
        self.deletions: list[tuple[str, list[str]]] = []
        self.changed = asyncio.Event()
        store.add_commit_listener(self._events)
        store.add_channel_deleted_listener(self._deleted)

    def _events(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        self.cursors.extend(event.cursor for event in events)
        self.changed.set()

    def _deleted(self, channel: str, subscriptions: Sequence[str]) -> None:
        self.deletions.append((channel, list(subscriptions)))
        self.changed.set()

    async def until(self, done: object, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not done():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


@asynccontextmanager
async def shared(url: str, count: int, **options: object) -> AsyncIterator[list[Store]]:
    """`count` writable stores on one database, as replicas would open it."""
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(open_store(url, **options)) for _ in range(count)]
        yield stores


def _event(channel: str, number: int) -> Event:
    event = Event(
        id=f"{channel}-{number}", channel=channel, timestamp_ns=number + 1, payload={"n": number}
    )
    event.wire = f"served form of {number}".encode()
    return event


async def test_each_store_hears_every_commit_of_every_store_in_cursor_order(
    store_location: str,
) -> None:
    async with shared(store_location, 3) as stores:
        heard = [Heard(store) for store in stores]
        await stores[0].create_channel(Channel(name="a"))
        await stores[0].create_channel(Channel(name="b"))

        async def write(store: Store, writer: int) -> None:
            for number in range(40):
                channel = "a" if number % 2 else "b"
                if number % 5 == 0:
                    await store.append_events(
                        [_event(channel, writer * 1000 + number * 10 + k) for k in range(3)]
                    )
                else:
                    await store.append_events([_event(channel, writer * 1000 + number * 10)])

        # 16 writers spread over the three stores, committing interleaved.
        await asyncio.gather(*(write(stores[w % 3], w) for w in range(16)))
        head = await stores[0].head_cursor()
        rows = await query(store_location, "SELECT cursor, id FROM events ORDER BY cursor")
        assert [row[0] for row in rows] == list(range(1, head + 1))
        for each in heard:
            await each.until(lambda each=each: len(each.cursors) >= head)
            # Exactly the database's list: nothing skipped, repeated or reordered.
            assert each.cursors == [row[0] for row in rows]
            assert [event.id for event in each.events] == [row[1] for row in rows]


async def test_a_commit_elsewhere_is_heard_without_waiting_for_the_recheck(
    store_location: str,
) -> None:
    # No re-check within the test: only the notification can wake the follower.
    async with shared(store_location, 2, recheck_interval=3600) as (writer, follower):
        heard = Heard(follower)
        await writer.create_channel(Channel(name="a"))
        (stored,) = await writer.append_events([_event("a", 1)])
        await heard.until(lambda: heard.cursors == [stored.cursor])
        assert heard.events[0].wire == stored.wire


async def test_a_lost_notification_is_made_good_by_the_recheck(store_location: str) -> None:
    async with shared(store_location, 1) as (follower,):
        heard = Heard(follower)
        # Another server's commit whose notification never arrives.
        async with open_store(store_location) as writer:
            assert isinstance(writer, PostgresStore)
            await writer.create_channel(Channel(name="a"))
            assert isinstance(follower, PostgresStore) and follower._session is not None
            connection = follower._session._connection
            assert connection is not None
            await connection.execute("UNLISTEN *")
            (stored,) = await writer.append_events([_event("a", 1)])
        await heard.until(lambda: heard.cursors == [stored.cursor], timeout=10)


async def test_a_deletion_is_heard_at_its_place_among_the_events(store_location: str) -> None:
    async with shared(store_location, 2) as (deleter, follower):
        heard = Heard(follower)
        await deleter.create_channel(Channel(name="a"))
        (old,) = await deleter.append_events([_event("a", 1)])
        subscription = await _subscribe(deleter, "a", "s1")
        await deleter.delete_channel("a")
        await deleter.create_channel(Channel(name="a"))
        (new,) = await follower.append_events([_event("a", 2)])
        await heard.until(lambda: new.cursor in heard.cursors)
        assert heard.deletions == [("a", [subscription])]
        # The deletion holds the cursor between the two channels' events.
        assert new.cursor == old.cursor + 2
        rows = await query(store_location, "SELECT cursor, channel FROM channel_deletions")
        assert [tuple(row) for row in rows] == [(old.cursor + 1, "a")]


async def test_own_commits_are_heard_before_the_appender_and_once(store_location: str) -> None:
    async with shared(store_location, 1) as (store,):
        order: list[str] = []
        store.add_commit_listener(lambda events: order.append(f"heard {events[0].id}"))
        await store.create_channel(Channel(name="a"))
        for number in range(3):
            (stored,) = await store.append_events([_event("a", number)])
            order.append(f"appended {stored.id}")
        await asyncio.sleep(0.3)  # the notifications of those commits come back too
        assert order == [
            f"{what} a-{number}" for number in range(3) for what in ("heard", "appended")
        ]


async def _subscribe(store: Store, channel: str, subscription_id: str) -> str:
    created = await store.create_subscription(
        Subscription(id=subscription_id, channel=channel, batch_size=10)
    )
    return created.id
