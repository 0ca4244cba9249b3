"""Live followers read recent commits from memory; what memory no longer holds comes from disk."""

from __future__ import annotations

import asyncio

from sssn_proto.v1 import event_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_server.domain.models import Event
from sssn_server.domain.recent import DEFAULT_EVENTS_PER_CHANNEL, RecentEvents

from .helpers import DEADLINE, value


def _events(channel: str, cursors: range, kind: str = "event", size: int = 10) -> list[Event]:
    return [
        Event(id=f"{channel}-{c}", channel=channel, timestamp_ns=1, kind=kind, cursor=c,
              wire=b"x" * size)
        for c in cursors
    ]  # fmt: skip


def test_a_channel_is_answered_only_after_its_first_commit() -> None:
    recent = RecentEvents()
    assert recent.after("a", 0, limit=10, kind=None) is None
    recent.add(_events("b", range(5, 7)) + _events("a", range(7, 9)))
    # Everything of "a" above cursor 4 is known: its first commit started at 5.
    assert [e.cursor for e in recent.after("a", 4, limit=10, kind=None) or []] == [7, 8]
    assert [e.cursor for e in recent.after("a", 7, limit=10, kind=None) or []] == [8]
    assert recent.after("a", 8, limit=10, kind=None) == []
    assert recent.after("a", 3, limit=10, kind=None) is None  # older: ask the store


def test_limit_and_kind_filter() -> None:
    recent = RecentEvents()
    recent.add(_events("a", range(1, 4), kind="x") + _events("a", range(4, 8), kind="y"))
    assert [e.cursor for e in recent.after("a", 0, limit=2, kind=None) or []] == [1, 2]
    assert [e.cursor for e in recent.after("a", 1, limit=3, kind="y") or []] == [4, 5, 6]
    assert recent.after("a", 0, limit=5, kind="z") == []


def test_dropping_old_events_raises_the_floor() -> None:
    recent = RecentEvents(events_per_channel=3, bytes_per_channel=10_000)
    for cursor in range(1, 11):
        recent.add(_events("a", range(cursor, cursor + 1)))
    assert recent.after("a", 6, limit=10, kind=None) is None
    assert [e.cursor for e in recent.after("a", 7, limit=10, kind=None) or []] == [8, 9, 10]


def test_a_byte_budget_bounds_a_channel_even_for_one_huge_event() -> None:
    recent = RecentEvents(events_per_channel=100, bytes_per_channel=100)
    recent.add(_events("a", range(1, 6), size=30))
    assert [e.cursor for e in recent.after("a", 2, limit=10, kind=None) or []] == [3, 4, 5]
    assert recent.after("a", 1, limit=10, kind=None) is None
    recent.add(_events("a", range(6, 7), size=1000))
    assert recent.after("a", 6, limit=10, kind=None) == []  # nothing kept, floor at 6
    assert recent.after("a", 5, limit=10, kind=None) is None


def test_a_commit_interleaving_channels_keeps_each_in_order_and_bounded() -> None:
    recent = RecentEvents(events_per_channel=4, bytes_per_channel=10_000)
    recent.add(
        _events("a", range(1, 4))
        + _events("b", range(4, 6))
        + _events("a", range(6, 9))
        + _events("b", range(9, 10))
    )
    # "a" got 6 events in two runs and keeps its newest 4; the floor is the
    # last one dropped (2), so reads after cursor 2 or later come from memory.
    assert [e.cursor for e in recent.after("a", 2, limit=10, kind=None) or []] == [3, 6, 7, 8]
    assert recent.after("a", 1, limit=10, kind=None) is None
    assert [e.cursor for e in recent.after("b", 0, limit=10, kind=None) or []] == [4, 5, 9]


def test_least_recently_written_channels_are_forgotten() -> None:
    recent = RecentEvents(channels=2)
    recent.add(_events("a", range(1, 2)))
    recent.add(_events("b", range(2, 3)))
    recent.add(_events("a", range(3, 4)))
    recent.add(_events("c", range(4, 5)))  # "b" is the least recent
    assert recent.after("b", 0, limit=10, kind=None) is None
    assert [e.cursor for e in recent.after("a", 0, limit=10, kind=None) or []] == [1, 3]


async def test_a_follower_behind_more_than_memory_holds_gets_every_event_once(
    stub, make_channel
) -> None:
    """A burst larger than the in-memory tail: the follower's first reads
    miss memory and go to the store, the later ones hit memory; either way
    every event arrives once, in order."""
    channel = await make_channel()
    created = await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=channel), timeout=DEADLINE
    )
    total = DEFAULT_EVENTS_PER_CHANNEL + 1500
    for start in range(0, total, 500):
        await stub.AppendEvents(
            pb.AppendEventsRequest(
                events=[
                    event_pb2.Event(channel=channel, id=f"e{n}", payload=value({"n": n}))
                    for n in range(start, min(total, start + 500))
                ]
            ),
            timeout=DEADLINE,
        )
    call = stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id=created.subscription.id, limit=300, follow=True)
    )
    seen: list[str] = []
    cursors: list[int] = []

    async def read() -> None:
        async for message in call:
            seen.extend(event.id for event in message.events)
            cursors.extend(event.cursor for event in message.events)
            if len(seen) >= total + 10:
                return

    reader = asyncio.create_task(read())
    await stub.AppendEvents(  # live, while the follower drains the backlog
        pb.AppendEventsRequest(
            events=[event_pb2.Event(channel=channel, id=f"live{n}") for n in range(10)]
        ),
        timeout=DEADLINE,
    )
    await asyncio.wait_for(reader, DEADLINE)
    call.cancel()
    assert seen == [f"e{n}" for n in range(total)] + [f"live{n}" for n in range(10)]
    assert cursors == sorted(set(cursors))
