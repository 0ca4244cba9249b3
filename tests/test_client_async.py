"""The asyncio client against a real in-process server: every method, as coroutines."""

from __future__ import annotations

import asyncio
import hashlib
import io

import pytest

from sssn_client import (
    Artifact,
    AsyncSSSNClient,
    Channel,
    ChannelNotFoundError,
    ClientClosedError,
    Event,
    Snapshot,
    Subscription,
)
from sssn_server.app import SSSNServer

from . import client_fixtures
from .helpers import DEADLINE

aclient = client_fixtures.aclient


async def wait_until(predicate, timeout: float = DEADLINE) -> None:
    """Waits for a condition of the server's state (not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def test_channels(aclient: AsyncSSSNClient) -> None:
    created = await aclient.create_channel(
        Channel(name="b", schema="s", form="feed", description="d", metadata={"k": [1]})
    )
    assert created == Channel(
        name="b", schema="s", form="feed", description="d", metadata={"k": [1]}
    )
    await aclient.create_channel({"name": "a"})
    assert await aclient.get_channel("b") == created
    assert [channel.name for channel in await aclient.list_channels()] == ["a", "b"]


async def test_events(aclient: AsyncSSSNClient) -> None:
    await aclient.create_channel({"name": "events"})
    first = await aclient.append_event(Event(channel="events", kind="raw", payload={"text": "hi"}))
    assert first.payload["text"] == "hi" and first.cursor and first.id
    more = await aclient.append_events(
        [
            {"channel": "events", "payload": 1, "parent_ids": [first.id]},
            Event(channel="events", payload=2.5, kind="raw", correlation_id="c"),
        ]
    )
    assert [event.payload for event in more] == [1, 2.5]
    assert more[0].parent_ids == (first.id,)
    assert await aclient.get_event(first.id or "") == first
    assert await aclient.query_events("events") == [first, *more]
    assert await aclient.query_events("events", after_cursor=first.cursor or 0, limit=1) == more[:1]
    assert await aclient.query_events("events", kind="raw") == [first, more[1]]


async def test_subscriptions_and_pull(aclient: AsyncSSSNClient) -> None:
    await aclient.create_channel({"name": "events"})
    created = await aclient.create_subscription(
        "events",
        subscription_id="w",
        consumer="c1",
        batch_size=2,
        filters={"kind": "raw"},
        metadata={"m": True},
    )
    assert created == Subscription(
        id="w",
        channel="events",
        consumer="c1",
        batch_size=2,
        filters={"kind": "raw"},
        metadata={"m": True},
    )
    stored = await aclient.append_events(
        [{"channel": "events", "kind": "raw", "payload": index} for index in range(3)]
    )
    assert await aclient.pull_subscription("w") == stored[:2]
    assert await aclient.pull_subscription("w", limit=5) == stored[2:]
    assert (await aclient.get_subscription("w")).cursor == stored[-1].cursor


async def test_subscribe_follows_live_events(server: SSSNServer, aclient: AsyncSSSNClient) -> None:
    await aclient.create_channel({"name": "events"})
    await aclient.create_subscription("events", subscription_id="w")
    expected = [await aclient.append_event({"channel": "events", "payload": 0})]
    received: list[Event] = []
    async with aclient.subscribe("w") as stream:
        async for event in stream:
            received.append(event)
            if len(received) == len(expected) == 1:
                await wait_until(_parked(server, 1))
                expected += await aclient.append_events(
                    [{"channel": "events", "payload": index} for index in (1, 2)]
                )
            if len(received) == 3:
                break
    assert received == expected
    assert stream.closed
    await wait_until(_parked(server, 0))


async def test_a_dropped_stream_ends_its_server_stream(
    server: SSSNServer, aclient: AsyncSSSNClient
) -> None:
    await aclient.create_channel({"name": "events"})
    await aclient.create_subscription("events", subscription_id="w")
    stream = aclient.subscribe("w")
    reader = asyncio.create_task(anext(stream))
    await wait_until(_parked(server, 1))
    await aclient.append_event({"channel": "events"})
    await reader
    del stream, reader  # `break` out of `async for` leaves the stream to the collector
    await wait_until(_parked(server, 0))


async def test_closing_the_client_ends_a_waiting_stream(server: SSSNServer) -> None:
    owner = AsyncSSSNClient(server.address, timeout=DEADLINE)
    await owner.create_channel({"name": "events"})
    await owner.create_subscription("events", subscription_id="w")
    stream = owner.subscribe("w")

    async def drain() -> list[Event]:
        return [event async for event in stream]

    reader = asyncio.create_task(drain())
    await wait_until(_parked(server, 1))
    await owner.close()
    assert await asyncio.wait_for(reader, DEADLINE) == []
    with pytest.raises(ClientClosedError):
        await owner.get_channel("events")


async def test_cancelling_the_reading_task_cancels_it(
    server: SSSNServer, aclient: AsyncSSSNClient
) -> None:
    await aclient.create_channel({"name": "events"})
    await aclient.create_subscription("events", subscription_id="w")
    async with aclient.subscribe("w") as stream:
        reader = asyncio.create_task(anext(stream))
        await wait_until(_parked(server, 1))
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader


async def test_artifacts(aclient: AsyncSSSNClient) -> None:
    await aclient.create_channel({"name": "events"})
    small = await aclient.write_artifact(b"abc", channel="events", metadata={"a": 1})
    assert small == Artifact(
        id=small.id,
        channel="events",
        size=3,
        sha256=hashlib.sha256(b"abc").hexdigest(),
        metadata={"a": 1},
    )
    assert await aclient.get_artifact(small.id) == small
    assert await aclient.read_artifact(small.id) == b"abc"
    large = bytes(range(256)) * 12_000  # ~3 MiB: streamed
    streamed = await aclient.write_artifact(large, media_type="application/x-big")
    assert (streamed.size, streamed.media_type) == (len(large), "application/x-big")
    assert await aclient.read_artifact(streamed.id) == large
    from_file = await aclient.write_artifact(io.BytesIO(b"file"))
    assert await aclient.read_artifact(from_file.id) == b"file"


async def test_snapshots(aclient: AsyncSSSNClient) -> None:
    await aclient.create_channel({"name": "events"})
    event = await aclient.append_event({"channel": "events"})
    stored = await aclient.put_snapshot(
        "latest", {"n": 1}, channel="events", source_event_id=event.id, schema="s", metadata={}
    )
    assert stored.value == {"n": 1} and stored.source_event_id == event.id
    assert await aclient.get_snapshot("latest") == stored
    replaced = await aclient.put_snapshot("latest", Snapshot(name="latest", value=[2]))
    assert (await aclient.get_snapshot("latest")).value == [2] == replaced.value


async def test_errors_are_the_same_classes(aclient: AsyncSSSNClient) -> None:
    with pytest.raises(ChannelNotFoundError) as caught:
        await aclient.get_channel("ghost")
    assert (caught.value.status_code, caught.value.error_type) == (404, "ChannelNotFoundError")
    assert caught.value.reason == "CHANNEL_NOT_FOUND"
    assert caught.value.resource == {"channel": "ghost"}


def _parked(server: SSSNServer, count: int):
    async def check() -> bool:
        return server.service.parked_followers == count

    return check
