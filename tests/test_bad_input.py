"""Requests that cannot be decoded or held get INVALID_ARGUMENT, one log line and no traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_server.app import SSSNServer

from .backends import stored_digests, unfinished_uploads
from .conftest import ServerFactory
from .helpers import DEADLINE, event, failure

SERVICE = pb.DESCRIPTOR.services_by_name["StoreService"]
# A tag whose varint never ends: no message parses from these bytes.
GARBAGE = b"\xff\xff\xff\xff"
TOKEN = "root-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


async def raw_call(
    channel: grpc.aio.Channel,
    method: str,
    messages: list[bytes],
    metadata: Any = None,
) -> list[bytes]:
    """Calls `method` with request bytes sent as they are; returns the
    response bytes (or raises the call's error)."""
    descriptor = SERVICE.methods_by_name[method]
    path = f"/{SERVICE.full_name}/{method}"
    kwargs: dict[str, Any] = {"timeout": DEADLINE, "metadata": metadata}
    if descriptor.client_streaming:

        async def requests() -> AsyncIterator[bytes]:
            for message in messages:
                yield message

        if descriptor.server_streaming:
            return [r async for r in channel.stream_stream(path)(requests(), **kwargs)]
        return [await channel.stream_unary(path)(requests(), **kwargs)]
    (request,) = messages
    if descriptor.server_streaming:
        return [r async for r in channel.unary_stream(path)(request, **kwargs)]
    return [await channel.unary_unary(path)(request, **kwargs)]


def call_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name != "sssn_server.access"]


def assert_one_quiet_line(caplog: pytest.LogCaptureFixture) -> None:
    records = call_logs(caplog)
    assert len(records) <= 1, [record.getMessage() for record in records]
    for record in records:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.WARNING, record.getMessage()


@pytest.mark.parametrize("method", [method.name for method in SERVICE.methods])
async def test_undecodable_bytes_are_invalid_argument_on_every_method(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_call(channel, method, [GARBAGE])
    error = failure(caught.value)
    assert (error.code, error.reason, error.domain) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAYLOAD",
        "sssn.dev",
    )
    assert error.fields == ["request"]
    input_type = SERVICE.methods_by_name[method].input_type.full_name
    assert error.message == f"request: could not be decoded as a {input_type} message"
    assert_one_quiet_line(caplog)


async def test_an_undecodable_message_ends_an_append_stream_after_the_answers_before_it(
    channel: grpc.aio.Channel, stub: Any, make_channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = await make_channel()
    good = pb.AppendEventStreamRequest(events=[event(name, {"n": 1}, id="kept")])
    caplog.set_level(logging.INFO)
    caplog.clear()
    path = f"/{SERVICE.full_name}/AppendEventStream"

    async def requests() -> AsyncIterator[bytes]:
        yield good.SerializeToString()
        yield GARBAGE

    call = channel.stream_stream(path)(requests(), timeout=DEADLINE)
    answer = pb.AppendEventStreamResponse.FromString(await call.read())
    assert [result.event.id for result in answer.results] == ["kept"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD")
    assert_one_quiet_line(caplog)
    stored = await stub.QueryEvents(pb.QueryEventsRequest(channel=name), timeout=DEADLINE)
    assert [e.id for e in stored.events] == ["kept"]


async def test_an_undecodable_chunk_ends_an_upload_and_stores_nothing(
    channel: grpc.aio.Channel,
    server: SSSNServer,
    store_location: Path | str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    header = pb.UploadArtifactRequest(header=pb.UploadArtifactHeader(media_type="text/plain"))
    chunk = pb.UploadArtifactRequest(data=b"some bytes")
    caplog.set_level(logging.INFO)
    caplog.clear()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_call(
            channel,
            "UploadArtifact",
            [header.SerializeToString(), chunk.SerializeToString(), GARBAGE],
        )
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD")
    assert_one_quiet_line(caplog)
    assert await stored_digests(store_location) == set()
    assert await unfinished_uploads(store_location) == 0


@pytest.fixture
async def auth_channel(
    start_server: ServerFactory, tmp_path: Path
) -> AsyncIterator[grpc.aio.Channel]:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        f'[[tokens]]\nprincipal = "root"\ntoken = "{TOKEN}"\n'
        'read = ["*"]\nwrite = ["*"]\nadmin = ["*"]\n',
        encoding="utf-8",
    )
    server = await start_server(auth_tokens=tokens)
    async with grpc.aio.insecure_channel(server.address) as connection:
        yield connection


@pytest.mark.parametrize(
    "method",
    ["GetChannel", "AppendEvent", "PullSubscription", "UploadArtifact", "AppendEventStream"],
)
async def test_with_auth_undecodable_bytes_are_invalid_argument_after_authentication(
    auth_channel: grpc.aio.Channel, method: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_call(auth_channel, method, [GARBAGE], metadata=AUTH)
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD")
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await raw_call(auth_channel, method, [GARBAGE])
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def nest(target: struct_pb2.Value, depth: int) -> None:
    """Fills `target` with `depth` nested arrays, in place: building the
    message from a value would parse it, which stops at the depth tested."""
    for _ in range(depth):
        target = target.list_value.values.add()
    target.string_value = "bottom"


TOO_DEEP_TO_PARSE = 200


async def test_json_nested_deeper_than_the_parser_reads_is_payload_too_deep(
    stub: Any, make_channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = await make_channel()
    one = pb.AppendEventRequest()
    one.event.channel = name
    nest(one.event.payload, TOO_DEEP_TO_PARSE)
    batch = pb.AppendEventsRequest()
    batch.events.add().channel = name
    nest(batch.events[0].metadata.fields["deep"], TOO_DEEP_TO_PARSE)
    snapshot = pb.PutSnapshotRequest()
    snapshot.snapshot.name = "deep"
    nest(snapshot.snapshot.value, TOO_DEEP_TO_PARSE)
    caplog.set_level(logging.INFO)
    for method, request in (
        (stub.AppendEvent, one),
        (stub.AppendEvents, batch),
        (stub.PutSnapshot, snapshot),
    ):
        caplog.clear()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(request, timeout=DEADLINE)
        error = failure(caught.value)
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAYLOAD_TOO_DEEP")
        assert error.message == "request: nests objects and arrays deeper than 24 levels"
        assert_one_quiet_line(caplog)
    stored = await stub.QueryEvents(pb.QueryEventsRequest(channel=name), timeout=DEADLINE)
    assert list(stored.events) == []
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetSnapshot(pb.GetSnapshotRequest(name="deep"), timeout=DEADLINE)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


# One nanosecond past each end of what 64-bit nanoseconds hold, and far beyond.
OUT_OF_RANGE = [
    (9_223_372_036, 854_775_808),
    (-9_223_372_037, 145_224_191),
    (10**11, 0),
    (-(10**11), 0),
    (2**63 - 1, 0),
    (-(2**63), 0),
]


@pytest.mark.parametrize(("seconds", "nanos"), OUT_OF_RANGE)
async def test_seeking_to_a_timestamp_the_store_cannot_hold_is_invalid_and_moves_nothing(
    stub: Any, make_channel: Any, seconds: int, nanos: int, caplog: pytest.LogCaptureFixture
) -> None:
    name = await make_channel()
    await stub.AppendEvent(pb.AppendEventRequest(event=event(name, 1)), timeout=DEADLINE)
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=name, subscription_id="sub"), timeout=DEADLINE
    )
    await stub.SeekSubscription(
        pb.SeekSubscriptionRequest(subscription_id="sub", cursor=1), timeout=DEADLINE
    )
    caplog.set_level(logging.INFO)
    caplog.clear()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SeekSubscription(
            pb.SeekSubscriptionRequest(
                subscription_id="sub",
                timestamp=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
            ),
            timeout=DEADLINE,
        )
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD")
    assert error.fields == ["timestamp"]
    assert_one_quiet_line(caplog)
    got = await stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id="sub"), timeout=DEADLINE
    )
    assert got.subscription.cursor == 1
