"""SeekSubscription: replay from a cursor or an instant, skip ahead, reposition open streams."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2

from sssn_proto.v1 import store_service_pb2 as pb

from .helpers import DEADLINE, event, failure
from .streams import MANUAL, open_stream
from .test_subscriptions import append_many, cursor_of, pull, read_events, subscribe


async def seek(stub, subscription_id: str, **position) -> int:
    response = await stub.SeekSubscription(
        pb.SeekSubscriptionRequest(subscription_id=subscription_id, **position), timeout=DEADLINE
    )
    return response.subscription.cursor


def at(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


async def test_seek_to_a_cursor_replays_and_skips(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w", batch_size=100)
    stored = await append_many(stub, "events", 5)
    assert len(await pull(stub, "w")) == 5
    assert await seek(stub, "w", cursor=0) == 0
    assert [e.id for e in await pull(stub, "w")] == [e.id for e in stored]
    assert await seek(stub, "w", cursor=stored[1].cursor) == stored[1].cursor
    assert [e.id for e in await pull(stub, "w")] == [e.id for e in stored[2:]]
    await seek(stub, "w", cursor=stored[3].cursor)
    assert [e.id for e in await pull(stub, "w", ack_mode=MANUAL)] == [stored[4].id]


async def test_seek_to_a_timestamp(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    stored = [
        (
            await stub.AppendEvent(
                pb.AppendEventRequest(event=event("events", index, timestamp=at(1000 * index))),
                timeout=DEADLINE,
            )
        ).event
        for index in (1, 2, 3)
    ]
    await seek(stub, "w", timestamp=at(2000))
    assert [e.id for e in await pull(stub, "w")] == [e.id for e in stored[1:]]
    await seek(stub, "w", timestamp=at(1500))
    assert [e.id for e in await pull(stub, "w")] == [e.id for e in stored[1:]]
    # Later than every event: only what is appended from now on.
    await seek(stub, "w", timestamp=at(4_000_000_000))
    assert await pull(stub, "w") == []
    fresh = (
        await stub.AppendEvent(pb.AppendEventRequest(event=event("events", 9)), timeout=DEADLINE)
    ).event
    assert [e.id for e in await pull(stub, "w")] == [fresh.id]


async def test_seek_repositions_an_open_stream(server, stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    stored = await append_many(stub, "events", 3)
    call = open_stream(stub, "w", ack_mode=MANUAL)
    try:
        assert [e.id for e in await read_events(call, 3)] == [e.id for e in stored]
        await seek(stub, "w", cursor=0)
        assert [e.id for e in await read_events(call, 3)] == [e.id for e in stored]
    finally:
        call.cancel()
    assert await cursor_of(stub, "w") == 0  # nothing was acknowledged


@pytest.mark.parametrize(
    ("subscription_id", "position", "code", "fields"),
    [
        ("w", {}, grpc.StatusCode.INVALID_ARGUMENT, ["position"]),
        ("w", {"cursor": -1}, grpc.StatusCode.INVALID_ARGUMENT, ["cursor"]),
        ("nope", {"cursor": 0}, grpc.StatusCode.NOT_FOUND, []),
    ],
)
async def test_seek_errors(stub, make_channel, subscription_id, position, code, fields) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await seek(stub, subscription_id, **position)
    error = failure(caught.value)
    assert error.code == code
    assert error.fields == fields
