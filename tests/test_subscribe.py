"""`subscribe()` across server restarts: reconnect with backoff, resume, lose and repeat nothing."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sssn_client import AsyncSSSNClient, Event, SSSNClient, UnavailableError
from sssn_client._subscribe import Backoff, SubscribeOptions
from sssn_server.app import SSSNServer

from . import client_fixtures
from .client_fixtures import ServerThread, wait_until
from .helpers import DEADLINE

server_thread = client_fixtures.server_thread


def _batch(channel: str, first: int, count: int) -> list[dict[str, object]]:
    return [{"channel": channel, "payload": first + index} for index in range(count)]


def test_sync_subscribe_survives_a_server_restart(server_thread: ServerThread) -> None:
    client = SSSNClient(server_thread.address, timeout=DEADLINE)
    client.create_channel({"name": "events"})
    client.create_subscription("events", subscription_id="w", batch_size=2)
    expected = client.append_events(_batch("events", 0, 3))
    received: list[Event] = []
    sentinel: Event | None = None
    with client, client.subscribe("w", max_backoff=0.5) as stream:
        for event in stream:
            received.append(event)
            if len(received) == 3:
                # Everything sent so far is recorded (the stream is parked), then
                # the server goes away in the middle of the open stream.
                wait_until(lambda: server_thread.parked_followers == 1)
                server_thread.stop()
                # Events appended during the outage, through another server on
                # the same store: the subscriber cannot be connected meanwhile.
                other = ServerThread(server_thread.store)
                try:
                    with SSSNClient(other.start(), timeout=DEADLINE) as writer:
                        expected += writer.append_events(_batch("events", 10, 5))
                finally:
                    other.close()
                server_thread.start()  # same port, same store
            if len(received) == len(expected) and sentinel is None:
                sentinel = client.append_event({"channel": "events", "payload": "end"})
                expected.append(sentinel)
            if event == sentinel:
                break
    # In order, none lost, and no repeat before the sentinel that follows them.
    assert [event.payload for event in received] == [0, 1, 2, 10, 11, 12, 13, 14, "end"]
    assert received == expected


async def test_async_subscribe_survives_a_server_restart(start_server) -> None:
    server: SSSNServer = await start_server()
    port = server.port
    client = AsyncSSSNClient(server.address, timeout=DEADLINE)
    await client.create_channel({"name": "events"})
    await client.create_subscription("events", subscription_id="w", batch_size=2)
    expected = await client.append_events(_batch("events", 0, 3))
    received: list[Event] = []
    sentinel: Event | None = None
    async with client, client.subscribe("w", max_backoff=0.5) as stream:
        async for event in stream:
            received.append(event)
            if len(received) == 3:
                await _until_parked(server)
                await server.stop(grace=0)
                other: SSSNServer = await start_server()  # another port, the same store
                async with AsyncSSSNClient(other.address, timeout=DEADLINE) as writer:
                    expected += await writer.append_events(_batch("events", 10, 5))
                await other.stop(grace=0)
                server = await start_server(port=port)
            if len(received) == len(expected) and sentinel is None:
                sentinel = await client.append_event({"channel": "events", "payload": "end"})
                expected.append(sentinel)
            if event == sentinel:
                break
    assert [event.payload for event in received] == [0, 1, 2, 10, 11, 12, 13, 14, "end"]
    assert received == expected


async def test_async_subscribe_survives_several_restarts_with_live_appends(
    start_server,
) -> None:
    server: SSSNServer = await start_server()
    port = server.port
    async with AsyncSSSNClient(server.address, timeout=DEADLINE) as client:
        await client.create_channel({"name": "events"})
        await client.create_subscription("events", subscription_id="w", batch_size=3)
        expected: list[Event] = []
        received: list[Event] = []
        async with client.subscribe("w", max_backoff=0.3) as stream:
            for round_number in range(3):
                expected += await client.append_events(_batch("events", 10 * round_number, 4))
                while len(received) < len(expected):
                    received.append(await asyncio.wait_for(anext(stream), DEADLINE))
                await _until_parked(server)
                await server.stop(grace=0)
                server = await start_server(port=port)
            expected.append(await client.append_event({"channel": "events", "payload": "end"}))
            received.append(await asyncio.wait_for(anext(stream), DEADLINE))
    assert received == expected


def test_a_new_stream_resumes_from_the_persisted_cursor(server_thread: ServerThread) -> None:
    with SSSNClient(server_thread.address, timeout=DEADLINE) as client:
        client.create_channel({"name": "events"})
        client.create_subscription("events", subscription_id="w")
        first = client.append_events(_batch("events", 0, 2))
        with client.subscribe("w") as stream:
            assert [next(stream), next(stream)] == first
            wait_until(lambda: client.get_subscription("w").cursor == first[-1].cursor)
        wait_until(lambda: server_thread.parked_followers == 0)
        later = client.append_events(_batch("events", 2, 2))
        with client.subscribe("w") as stream:
            assert [next(stream), next(stream)] == later


def test_retries_are_bounded_when_asked(server_thread: ServerThread) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with SSSNClient(f"127.0.0.1:{port}", timeout=DEADLINE) as client:
        stream = client.subscribe("w", max_retries=2, initial_backoff=0.01, max_backoff=0.02)
        with pytest.raises(UnavailableError):
            next(stream)
        assert stream.closed
        with pytest.raises(StopIteration):
            next(stream)


async def test_async_retries_are_bounded_when_asked() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AsyncSSSNClient(f"127.0.0.1:{port}", timeout=DEADLINE) as client:
        stream = client.subscribe("w", max_retries=1, initial_backoff=0.01, max_backoff=0.02)
        with pytest.raises(UnavailableError):
            await anext(stream)
        assert stream.closed


# The backoff policy itself (pure logic: bounds, not durations)


def test_backoff_is_exponential_with_full_jitter_under_the_cap() -> None:
    backoff = Backoff(SubscribeOptions(subscription_id="w", initial_backoff=0.1, max_backoff=1.0))
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert delay is not None and 0.0 <= delay <= ceiling
    for _ in range(2000):  # far past the point where 2**attempt would overflow a float
        delay = backoff.next_delay()
        assert delay is not None and delay <= 1.0


def test_backoff_default_cap_is_30_seconds_and_resets_on_a_message() -> None:
    options = SubscribeOptions(subscription_id="w")
    assert options.max_backoff == 30.0
    backoff = Backoff(options)
    delays = [backoff.next_delay() or 0.0 for _ in range(20)]
    assert max(delays) <= 30.0
    backoff.received()
    first = backoff.next_delay()
    assert first is not None and first <= options.initial_backoff


def test_backoff_gives_up_after_max_retries() -> None:
    backoff = Backoff(SubscribeOptions(subscription_id="w", max_retries=2))
    assert backoff.next_delay() is not None
    assert backoff.next_delay() is not None
    assert backoff.next_delay() is None


async def _until_parked(server: SSSNServer) -> None:
    """Waits until the stream is idle on `server`: everything sent is recorded."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while server.service.parked_followers != 1:
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)
