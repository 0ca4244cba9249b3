"""Lag counts, seeks by time and listings by channel: exact, and costs that do not grow."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sssn_server.domain.errors import SSSNError
from sssn_server.domain.models import Channel, Event, Subscription
from sssn_server.store import SQLiteStore
from sssn_server.store.sqlite._schema import MIGRATIONS, SCHEMA_VERSION


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "store") as opened:
        for name in ("a", "b", "c"):
            await opened.create_channel(Channel(name=name))
        yield opened


def brute_count(events: list[Event], channel: str, after: int, kind: str | None) -> int:
    return sum(
        1
        for event in events
        if event.channel == channel and event.cursor > after and kind in (None, event.kind)
    )


def brute_first_at(events: list[Event], channel: str, instant: int) -> int | None:
    cursors = [e.cursor for e in events if e.channel == channel and e.timestamp_ns >= instant]
    return min(cursors) if cursors else None


async def test_counts_and_seeks_match_a_full_scan_whatever_the_interleaving(
    store: SQLiteStore,
) -> None:
    rng = random.Random(7)
    stored: list[Event] = []
    serial = 0
    for _round in range(60):
        batch = []
        for _ in range(rng.randint(1, 12)):
            serial += 1
            batch.append(
                Event(
                    id=f"e{serial}",
                    channel=rng.choice("abc"),
                    # Timestamps go back and forth: a producer may set them.
                    timestamp_ns=rng.randint(1, 1_000),
                    kind=rng.choice(("created", "updated", "event")),
                )
            )
        if rng.random() < 0.3:  # a retry and a refused event among independent appends
            batch.append(stored[0] if stored else batch[0])
            batch.append(Event(id=f"x{serial}", channel="a", timestamp_ns=1, parent_ids=("no",)))
            results = await store.append_each(batch)
            stored.extend(
                r for r in results if isinstance(r, Event) and r.id not in {e.id for e in stored}
            )
        elif len(batch) == 1:
            stored.extend(await store.append_events(batch))
        else:
            stored.extend(await store.append_events(batch))
    assert [e.cursor for e in stored] == sorted(e.cursor for e in stored)
    head = stored[-1].cursor
    for channel in "abc":
        for kind in (None, "created", "updated", "event", "missing"):
            for after in (0, 1, head // 3, head // 2, head - 1, head, head + 5):
                expected = brute_count(stored, channel, after, kind)
                got = await store.count_events(channel, after_cursor=after, kind=kind)
                assert got == expected, (channel, kind, after)
        for instant in (0, 1, 250, 500, 999, 1_000, 1_001):
            assert await store.first_cursor_at(channel, instant) == brute_first_at(
                stored, channel, instant
            ), (channel, instant)


async def work_of(store: SQLiteStore, size: int) -> dict[str, int]:
    """The SQLite VM steps each lagging read takes on a store of `size`
    events in channel `a` (and as many subscriptions of channel `b`): a
    count of operations, as repeatable as the statements themselves."""
    await store.append_events(
        [Event(id=f"e{n}", channel="a", timestamp_ns=n, kind="k") for n in range(size)]
    )
    for n in range(size // 10):
        await store.create_subscription(Subscription(id=f"s{n}", channel="b"))
    await store.create_subscription(Subscription(id="mine", channel="a"))
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    for reader in store._readers:
        await reader.set_progress_handler(count, 1)
    work = {}
    for name, read in (
        ("lag", store.count_events("a", after_cursor=0, kind=None)),
        ("kind lag", store.count_events("a", after_cursor=0, kind="k")),
        ("seek", store.first_cursor_at("a", 1)),
        ("subscriptions of a", store.list_subscriptions(channel="a", after=None, limit=10)),
    ):
        steps = 0
        await read
        work[name] = steps
    return work


async def test_lag_seek_and_listing_by_channel_do_not_grow_with_the_store(
    tmp_path: Path,
) -> None:
    async with SQLiteStore(tmp_path / "small") as small, SQLiteStore(tmp_path / "large") as large:
        for opened in (small, large):
            for name in "ab":
                await opened.create_channel(Channel(name=name))
        few = await work_of(small, 200)
        many = await work_of(large, 4_000)
    # Twenty times the events: a scan would take twenty times the steps; an
    # index lookup a few more for a deeper tree.
    for name, steps in many.items():
        assert steps <= 2 * few[name] + 20, (name, few[name], steps)


async def test_a_store_of_schema_3_is_migrated_with_its_positions(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    with sqlite3.connect(root / "sssn.sqlite") as db:
        for migration in MIGRATIONS[:3]:
            for statement in migration.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("PRAGMA user_version=3")
        db.execute(
            "INSERT INTO channels (name, form, description, metadata) VALUES"
            " ('a', 'log', '', '{}'), ('b', 'log', '', '{}')"
        )
        rows = [
            # Served from `wire` (payload stored twice before schema 4), and as JSON text.
            (f"e{n}", "ab"[n % 3 == 0], 100 - n, "k" if n % 2 else "j", b"\x01" if n % 4 else "1")
            for n in range(12)
        ]
        for event_id, channel, timestamp, kind, payload in rows:
            db.execute(
                "INSERT INTO events (id, channel, timestamp_ns, kind, payload, metadata,"
                " parent_ids, wire) VALUES (?, ?, ?, ?, ?, '{}', '[]', ?)",
                (
                    event_id,
                    channel,
                    timestamp,
                    kind,
                    payload,
                    b"w" if isinstance(payload, bytes) else None,
                ),
            )
    async with SQLiteStore(root) as store:
        with sqlite3.connect(store.database_path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            lengths = db.execute(
                "SELECT length(payload) FROM events WHERE wire IS NOT NULL"
            ).fetchall()
            assert lengths and all(length == (0,) for length in lengths)
        events = [
            event
            for channel in "ab"
            for event in await store.query_events(channel, after_cursor=0, limit=100, kind=None)
        ]
        for channel in "ab":
            for kind in (None, "k", "j"):
                for after in range(0, 13):
                    assert await store.count_events(
                        channel, after_cursor=after, kind=kind
                    ) == brute_count(events, channel, after, kind)
            for instant in (0, 89, 95, 100, 101):
                assert await store.first_cursor_at(channel, instant) == brute_first_at(
                    events, channel, instant
                )
        # New events continue the migrated positions.
        await store.append_events([Event(id="new", channel="a", timestamp_ns=1, kind="k")])
        assert await store.count_events("a", after_cursor=0, kind="k") == 1 + sum(
            1 for e in events if e.channel == "a" and e.kind == "k"
        )


async def test_positions_of_a_failed_batch_leave_no_hole(store: SQLiteStore) -> None:
    await store.append_events([Event(id="first", channel="a", timestamp_ns=5)])
    with pytest.raises(SSSNError):
        await store.append_events(
            [
                Event(id="second", channel="a", timestamp_ns=9),
                Event(id="orphan", channel="a", timestamp_ns=9, parent_ids=("missing",)),
            ]
        )
    await store.append_events([Event(id="third", channel="a", timestamp_ns=7)])
    assert await store.count_events("a", after_cursor=0, kind=None) == 2
    third = await store.get_event("third")
    assert await store.count_events("a", after_cursor=third.cursor - 1, kind=None) == 1
    # The refused event's later timestamp left no trace in the seek index either.
    assert await store.first_cursor_at("a", 8) is None
