"""The subscription delivery engine below the API: the channel service over each real store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sssn_server.domain.errors import SubscriptionTakenOverError
from sssn_server.domain.models import Channel, Event
from sssn_server.domain.service import ChannelService, Delivery, Limits
from sssn_server.domain.streams import AUTO, MANUAL

from .backends import open_store

WAIT = 10


@pytest.fixture
async def service(store_location: Path | str) -> AsyncIterator[ChannelService]:
    """A channel service over a fresh store of the test's backend, with no API above it."""
    async with open_store(store_location) as store:
        service = ChannelService(store, Limits(heartbeat_interval=60))
        for name in ("events", "other"):
            await service.create_channel(Channel(name=name))
        yield service


async def _append(service: ChannelService, channel: str, *payloads: Any) -> list[Event]:
    return await service.append_events(
        [Event(id="", channel=channel, timestamp_ns=1, payload=payload) for payload in payloads]
    )


async def _subscribe(
    service: ChannelService, subscription_id: str, channel: str = "events"
) -> None:
    await service.create_subscription(
        channel,
        subscription_id=subscription_id,
        consumer=None,
        batch_size=None,
        kind=None,
        metadata={},
    )


async def _next(stream: AsyncIterator[Delivery]) -> Delivery:
    return await asyncio.wait_for(anext(stream), WAIT)


async def test_a_follower_gets_the_backlog_then_live_commits_of_its_channel_in_order(
    service: ChannelService,
) -> None:
    backlog = await _append(service, "events", 1, 2)
    await _subscribe(service, "s")
    stream = service.pull("s", limit=100, follow=True)
    first = await _next(stream)
    assert [event.cursor for event in first.events] == [event.cursor for event in backlog]
    await _append(service, "other", "not mine")
    live = await _append(service, "events", 3)
    second = await _next(stream)
    assert [event.cursor for event in second.events] == [live[0].cursor]
    assert second.head_cursor == live[0].cursor
    # Auto mode: asking for the next batch persisted the cursor past the last sent.
    waiting = asyncio.ensure_future(_next(stream))
    await asyncio.sleep(0.2)
    assert (await service.store.get_subscription("s")).cursor == live[0].cursor
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await stream.aclose()


async def test_manual_mode_pauses_at_the_window_and_resumes_on_ack(
    service: ChannelService,
) -> None:
    stored = await _append(service, "events", *range(5))
    await _subscribe(service, "m")
    stream = service.pull("m", limit=2, follow=True, ack_mode=MANUAL, max_unacked=2)
    first = await _next(stream)
    assert [event.cursor for event in first.events] == [stored[0].cursor, stored[1].cursor]
    paused = asyncio.ensure_future(_next(stream))
    await asyncio.sleep(0.3)
    assert not paused.done()  # two unacknowledged: the window is full
    await service.ack("m", stored[1].cursor)
    second = await asyncio.wait_for(paused, WAIT)
    assert [event.cursor for event in second.events] == [stored[2].cursor, stored[3].cursor]
    assert (await service.store.get_subscription("m")).cursor == stored[1].cursor
    await stream.aclose()


async def test_a_second_stream_takes_the_subscription_over(service: ChannelService) -> None:
    await _append(service, "events", 1)
    await _subscribe(service, "t")
    old = service.pull("t", limit=10, follow=True, ack_mode=MANUAL)
    await _next(old)
    new = service.pull("t", limit=10, follow=True, ack_mode=MANUAL)
    again = await _next(new)
    assert [event.payload for event in again.events] == [1]
    with pytest.raises(SubscriptionTakenOverError):
        await _next(old)
    await new.aclose()


@pytest.mark.parametrize("ack_mode", [AUTO, MANUAL])
async def test_a_stream_catching_up_reads_small_chunks_while_another_stream_is_open(
    service: ChannelService, ack_mode: str
) -> None:
    await _append(service, "events", *range(30))
    await _append(service, "other", "live")
    await _subscribe(service, "behind")
    await _subscribe(service, "live", "other")
    # A second service over the store: nothing in its memory of recent
    # commits, so every batch below is read from the store.
    fresh = ChannelService(service.store, Limits(heartbeat_interval=60, catch_up_chunk=4))
    live = fresh.pull("live", limit=100, follow=True)
    assert [event.payload for event in (await _next(live)).events] == ["live"]
    # Open but busy (suspended where it hands its batch over), not parked: it
    # still counts, since it may be between two live events.
    assert fresh.parked_followers == 0
    behind = fresh.pull("behind", limit=100, follow=True, ack_mode=ack_mode)
    chunks = [[event.payload for event in (await _next(behind)).events] for _ in range(3)]
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    await live.aclose()
    # Alone, a batch is as large as the stream's limit.
    rest = await _next(behind)
    assert [event.payload for event in rest.events] == list(range(12, 30))
    await behind.aclose()


@pytest.mark.parametrize("ack_mode", [AUTO, MANUAL])
async def test_a_pull_that_ends_reads_small_chunks_while_another_stream_is_open(
    service: ChannelService, ack_mode: str
) -> None:
    await _append(service, "events", *range(10))
    await _append(service, "other", "live")
    for subscription_id in ("whole", "limited", "alone"):
        await _subscribe(service, subscription_id)
    await _subscribe(service, "live", "other")
    fresh = ChannelService(
        service.store, Limits(heartbeat_interval=60, catch_up_chunk=4, pull_chunk=8)
    )
    live = fresh.pull("live", limit=100, follow=True)
    assert [event.payload for event in (await _next(live)).events] == ["live"]

    async def pulled(subscription_id: str, limit: int) -> list[list[Any]]:
        stream = fresh.pull(subscription_id, limit=limit, follow=False, ack_mode=ack_mode)
        return [[event.payload for event in delivery.events] async for delivery in stream]

    # A chunk as long as asked for is not taken for the end of the backlog.
    assert await pulled("whole", 100) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert await pulled("limited", 6) == [[0, 1, 2, 3], [4, 5]]
    await live.aclose()
    # Alone, a pull reads chunks of `pull_chunk` again.
    assert await pulled("alone", 100) == [list(range(8)), [8, 9]]
