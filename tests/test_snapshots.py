"""Snapshots over gRPC: put, replace, get, links and errors."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2

from sssn_proto.v1 import snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb

from .helpers import DEADLINE, event, failure, struct, value


async def put(stub, **fields) -> snapshot_pb2.Snapshot:
    response = await stub.PutSnapshot(
        pb.PutSnapshotRequest(snapshot=snapshot_pb2.Snapshot(**fields)), timeout=DEADLINE
    )
    return response.snapshot


async def get(stub, name: str) -> snapshot_pb2.Snapshot:
    return (await stub.GetSnapshot(pb.GetSnapshotRequest(name=name), timeout=DEADLINE)).snapshot


async def test_put_and_get_snapshot_with_every_field(stub, make_channel) -> None:
    await make_channel()
    source = await stub.AppendEvent(pb.AppendEventRequest(event=event("events", 1)))
    stored = await put(
        stub,
        name="latest",
        channel="events",
        value=value({"status": "ok", "count": 3}),
        schema="demo.State",
        source_event_id=source.event.id,
        metadata=struct({"by": "worker"}),
    )
    assert stored.timestamp.seconds > 0
    fetched = await get(stub, "latest")
    assert fetched == stored
    assert json_format.MessageToDict(fetched.value) == {"status": "ok", "count": 3}


async def test_put_replaces_the_previous_snapshot(stub, make_channel) -> None:
    await make_channel()
    await put(stub, name="latest", channel="events", value=value({"v": 1}), schema="old")
    when = timestamp_pb2.Timestamp(seconds=1_600_000_000)
    await put(stub, name="latest", value=value([1, 2]), timestamp=when)
    fetched = await get(stub, "latest")
    assert json_format.MessageToDict(fetched.value) == [1, 2]
    assert fetched.channel == ""
    assert fetched.schema == ""
    assert fetched.timestamp == when


async def test_missing_snapshot_is_not_found(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get(stub, "nope")
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "SNAPSHOT_NOT_FOUND")
    assert error.metadata == {"snapshot": "nope"}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"channel": "ghost"}, "CHANNEL_NOT_FOUND"), ({"source_event_id": "nope"}, "EVENT_NOT_FOUND")],
)
async def test_links_to_missing_resources_are_not_found(stub, fields, reason) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await put(stub, name="s", **fields)
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, reason)
    with pytest.raises(grpc.aio.AioRpcError):
        await get(stub, "s")


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"name": ""}, "snapshot.name"),
        ({"name": "a/b"}, "snapshot.name"),
        ({"name": "s", "channel": "a b"}, "snapshot.channel"),
        ({"name": "s", "source_event_id": ".."}, "snapshot.source_event_id"),
    ],
)
async def test_malformed_snapshot_fields_are_invalid(stub, fields, bad_field) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await put(stub, **fields)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [bad_field]
