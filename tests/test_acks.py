"""Manual acknowledgements: the cursor moves on AckSubscription; unacked events come again."""

from __future__ import annotations

import grpc
import pytest

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from .helpers import DEADLINE, failure
from .streams import AUTO, MANUAL, ack, open_stream
from .test_subscriptions import (
    append_many,
    cursor_of,
    pull,
    read_events,
    subscribe,
    wait_until,
)


async def test_manual_stream_moves_the_cursor_only_on_ack(server, stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    stored = await append_many(stub, "events", 5)
    call = open_stream(stub, "w", ack_mode=MANUAL)
    try:
        assert [e.id for e in await read_events(call, 5)] == [e.id for e in stored]
        await wait_until(lambda: server.service.parked_followers == 1)
        assert await cursor_of(stub, "w") == 0
        acked = await ack(stub, "w", stored[2].cursor)
        assert acked.cursor == stored[2].cursor
        assert await cursor_of(stub, "w") == stored[2].cursor
        assert (await ack(stub, "w", stored[4].cursor)).cursor == stored[4].cursor
        assert server.service.stream_status("w").unacked == 0
    finally:
        call.cancel()


async def test_worker_cancelled_before_acking_gets_the_events_again(
    server, stub, make_channel
) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w", batch_size=2)
    stored = await append_many(stub, "events", 5)
    first = open_stream(stub, "w", ack_mode=MANUAL)
    received = await read_events(first, 5)
    assert [e.id for e in received] == [e.id for e in stored]
    await ack(stub, "w", stored[1].cursor)  # processed two, then the worker dies
    first.cancel()
    await wait_until(lambda: server.service.open_streams == 0)
    second = open_stream(stub, "w", ack_mode=MANUAL)
    try:
        again = await read_events(second, 3)
        assert [e.id for e in again] == [e.id for e in stored[2:]]
    finally:
        second.cancel()
    # A non-following manual pull redelivers too, until the events are acked.
    await wait_until(lambda: server.service.open_streams == 0)
    assert [e.id for e in await pull(stub, "w", ack_mode=MANUAL, limit=10)] == [
        e.id for e in stored[2:]
    ]
    await ack(stub, "w", stored[4].cursor)
    assert await pull(stub, "w", ack_mode=MANUAL) == []


async def test_auto_mode_keeps_the_reference_semantics(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    stored = await append_many(stub, "events", 3)
    delivered = await pull(stub, "w", ack_mode=AUTO)
    assert [e.id for e in delivered] == [e.id for e in stored]
    assert await cursor_of(stub, "w") == stored[-1].cursor
    assert await pull(stub, "w") == []
    # Acknowledging the current cursor again is a harmless no-op.
    assert (await ack(stub, "w", stored[-1].cursor)).cursor == stored[-1].cursor


async def test_acking_backwards_is_invalid_and_repeating_is_not(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    stored = await append_many(stub, "events", 4)
    await pull(stub, "w", ack_mode=MANUAL)
    await ack(stub, "w", stored[2].cursor)
    assert (await ack(stub, "w", stored[2].cursor)).cursor == stored[2].cursor
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ack(stub, "w", stored[0].cursor)
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD")
    assert error.fields == ["cursor"]
    assert await cursor_of(stub, "w") == stored[2].cursor


async def test_acking_beyond_what_was_delivered_is_invalid(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    stored = await append_many(stub, "events", 5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ack(stub, "w", stored[0].cursor)  # nothing delivered yet
    assert failure(caught.value).fields == ["cursor"]
    await pull(stub, "w", ack_mode=MANUAL, limit=2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ack(stub, "w", stored[4].cursor)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.metadata == {"subscription_id": "w"}
    assert await cursor_of(stub, "w") == 0
    assert (await ack(stub, "w", stored[1].cursor)).cursor == stored[1].cursor


@pytest.mark.parametrize(
    ("subscription_id", "cursor", "code", "reason"),
    [
        ("nope", 1, grpc.StatusCode.NOT_FOUND, "SUBSCRIPTION_NOT_FOUND"),
        ("w", -1, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD"),
        ("a/b", 1, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD"),
    ],
)
async def test_ack_errors(stub, make_channel, subscription_id, cursor, code, reason) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ack(stub, subscription_id, cursor)
    error = failure(caught.value)
    assert (error.code, error.reason) == (code, reason)


async def test_unknown_ack_mode_is_invalid(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pull(stub, "w", ack_mode=7)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["ack_mode"]


async def test_acks_survive_a_shutdown_during_the_stream(start_server) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel={"name": "events"}), timeout=DEADLINE
        )
        await subscribe(stub, subscription_id="w")
        stored = await append_many(stub, "events", 5)
        call = open_stream(stub, "w", ack_mode=MANUAL)
        await read_events(call, 5)
        await ack(stub, "w", stored[2].cursor)
        await server.stop(grace=30)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read_events(call, 1)
        assert failure(caught.value).reason == "SHUTTING_DOWN"
    restarted = await start_server()
    async with grpc.aio.insecure_channel(restarted.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        assert await cursor_of(stub, "w") == stored[2].cursor
        again = await pull(stub, "w", ack_mode=MANUAL)
        assert [e.id for e in again] == [e.id for e in stored[3:]]


async def test_auto_followers_lose_nothing_across_a_shutdown(start_server) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel={"name": "events"}), timeout=DEADLINE
        )
        await subscribe(stub, subscription_id="w", batch_size=3)
        stored = await append_many(stub, "events", 10)
        call = open_stream(stub, "w")
        received = await read_events(call, 4)  # two messages of three
        await server.stop(grace=30)
        received.extend(await _read_until_end(call))
    restarted = await start_server()
    async with grpc.aio.insecure_channel(restarted.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        received.extend(await pull(stub, "w", limit=100))
    ids = [e.id for e in received]
    # At least once: every event arrives, in order; only an in-flight
    # message at the cut may come twice.
    assert sorted(set(ids), key=ids.index) == [e.id for e in stored]


async def _read_until_end(call) -> list:
    events: list = []
    try:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return events
            events.extend(message.events)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    return events
