"""Heartbeats: idle following streams send empty messages carrying the head cursor."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2

from sssn_server.__main__ import build_parser

from .helpers import failure
from .streams import open_stream, read_message
from .test_subscriptions import append_many, pull, read_events, subscribe


def interval(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


async def test_idle_stream_sends_heartbeats_with_the_head_cursor(stub, make_channel) -> None:
    await make_channel()
    await make_channel("other")
    await subscribe(stub, subscription_id="w")
    elsewhere = await append_many(stub, "other", 2)
    call = open_stream(stub, "w", heartbeat_interval=interval(0.05))
    try:
        for _ in range(3):
            message = await read_message(call)
            assert list(message.events) == []
            assert message.head_cursor == elsewhere[-1].cursor
    finally:
        call.cancel()


async def test_event_messages_carry_the_head_cursor(stub, make_channel) -> None:
    await make_channel()
    await make_channel("other")
    await subscribe(stub, subscription_id="w")
    mine = await append_many(stub, "events", 2)
    later = await append_many(stub, "other", 1)
    call = open_stream(stub, "w")
    try:
        message = await read_message(call)
        assert [e.id for e in message.events] == [e.id for e in mine]
        assert message.head_cursor == later[0].cursor
    finally:
        call.cancel()


async def test_server_default_heartbeat_interval_applies(start_server) -> None:
    from sssn_proto.v1 import store_service_pb2 as pb
    from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

    from .helpers import DEADLINE

    server = await start_server(heartbeat_interval=0.05)
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel={"name": "events"}), timeout=DEADLINE
        )
        await subscribe(stub, subscription_id="w")
        stored = await append_many(stub, "events", 1)
        call = open_stream(stub, "w")
        try:
            assert [e.id for e in await read_events(call, 1)] == [stored[0].id]
            heartbeat = await read_message(call)
            assert list(heartbeat.events) == []
            assert heartbeat.head_cursor == stored[0].cursor
        finally:
            call.cancel()


async def test_negative_heartbeat_interval_is_invalid(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pull(stub, "w", follow=True, heartbeat_interval=interval(-1))
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["heartbeat_interval"]


def test_heartbeat_interval_flag_and_environment(monkeypatch) -> None:
    assert build_parser().parse_args([]).heartbeat_interval == 15.0
    assert build_parser().parse_args(["--heartbeat-interval", "2.5"]).heartbeat_interval == 2.5
    monkeypatch.setenv("SSSN_HEARTBEAT_INTERVAL", "4")
    assert build_parser().parse_args([]).heartbeat_interval == 4.0
