"""Events over gRPC: append (single, batch, idempotent), get, query paging and errors."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2

from sssn_proto.v1 import store_service_pb2 as pb

from .helpers import DEADLINE, event, failure, struct


async def append(stub, message) -> pb.AppendEventResponse:
    return (await stub.AppendEvent(pb.AppendEventRequest(event=message), timeout=DEADLINE)).event


async def query(stub, channel="events", **fields) -> list:
    response = await stub.QueryEvents(
        pb.QueryEventsRequest(channel=channel, **fields), timeout=DEADLINE
    )
    return list(response.events)


async def test_append_mints_a_uuid7_id_cursor_and_timestamp(stub, make_channel) -> None:
    await make_channel()
    stored = await append(stub, event("events", {"text": "hello"}, source="demo", kind="raw"))
    assert uuid.UUID(stored.id).version == 7
    assert stored.cursor > 0
    assert stored.timestamp.seconds > 0
    assert stored.kind == "raw"
    assert stored.source == "demo"
    assert stored.payload.struct_value["text"] == "hello"


async def test_append_keeps_every_field_and_get_event_returns_it(stub, make_channel) -> None:
    await make_channel()
    parent = await append(stub, event("events", 1))
    when = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=123_456_789)
    stored = await append(
        stub,
        event(
            "events",
            {"nested": {"list": [1, 2.5, None, True, "x"]}},
            id="evt-1",
            timestamp=when,
            source="producer",
            kind="order.created",
            schema="demo.Order",
            metadata=struct({"trace": "abc"}),
            correlation_id="req-7",
            parent_ids=[parent.id],
        ),
    )
    fetched = (await stub.GetEvent(pb.GetEventRequest(id="evt-1"), timeout=DEADLINE)).event
    assert fetched == stored
    assert fetched.timestamp == when
    assert fetched.schema == "demo.Order"
    assert fetched.correlation_id == "req-7"
    assert list(fetched.parent_ids) == [parent.id]
    assert dict(fetched.metadata) == {"trace": "abc"}
    nested = fetched.payload.struct_value["nested"]["list"]
    assert list(nested) == [1, 2.5, None, True, "x"]


@pytest.mark.parametrize("payload", [None, 0, -3.5, "text", True, [], {}, [1, {"a": [None]}]])
async def test_every_json_payload_shape_round_trips(stub, make_channel, payload) -> None:
    await make_channel()
    stored = await append(stub, event("events", payload))
    fetched = (await stub.GetEvent(pb.GetEventRequest(id=stored.id), timeout=DEADLINE)).event
    assert json_format.MessageToDict(fetched.payload) == payload
    assert fetched.payload == stored.payload


async def test_cursors_increase_across_channels(stub, make_channel) -> None:
    await make_channel("a")
    await make_channel("b")
    cursors = [(await append(stub, event(name, index))).cursor for index, name in enumerate("abab")]
    assert cursors == sorted(cursors)
    assert len(set(cursors)) == 4


async def test_reappending_an_id_in_the_same_channel_returns_the_stored_event(
    stub, make_channel
) -> None:
    await make_channel()
    first = await append(stub, event("events", {"v": 1}, id="same"))
    again = await append(stub, event("events", {"v": 2}, id="same"))
    assert again == first
    assert [e.id for e in await query(stub)] == ["same"]


async def test_an_id_used_in_another_channel_is_already_exists(stub, make_channel) -> None:
    await make_channel("a")
    await make_channel("b")
    await append(stub, event("a", 1, id="shared"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await append(stub, event("b", 2, id="shared"))
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "EVENT_EXISTS"
    assert error.metadata["event_id"] == "shared"
    assert await query(stub, "b") == []


async def test_append_to_a_missing_channel_is_not_found(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await append(stub, event("ghost", 1))
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "CHANNEL_NOT_FOUND"


async def test_a_missing_parent_is_event_not_found_and_stores_nothing(stub, make_channel) -> None:
    await make_channel()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await append(stub, event("events", 1, parent_ids=["no-such-event"]))
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "EVENT_NOT_FOUND"
    assert error.metadata == {"event_id": "no-such-event"}
    assert await query(stub) == []


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"id": "a/b"}, "event.id"),
        ({"channel": "bad name"}, "event.channel"),
        ({"kind": "has space"}, "event.kind"),
        ({"correlation_id": "x:y"}, "event.correlation_id"),
        ({"parent_ids": ["ok", ".."]}, "event.parent_ids[1]"),
    ],
)
async def test_malformed_event_fields_are_invalid(stub, make_channel, fields, bad_field) -> None:
    await make_channel()
    message = event("events", 1)
    for key, item in fields.items():
        if key == "parent_ids":
            message.parent_ids.extend(item)
        else:
            setattr(message, key, item)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await append(stub, message)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_PAYLOAD"
    assert error.fields == [bad_field]
    assert await query(stub) == []


async def test_a_nan_payload_is_invalid(stub, make_channel) -> None:
    await make_channel()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await append(stub, event("events", {"x": float("nan")}))
    assert failure(caught.value).fields == ["event.payload"]


async def test_append_events_is_atomic_and_ordered(stub, make_channel) -> None:
    await make_channel("a")
    await make_channel("b")
    response = await stub.AppendEvents(
        pb.AppendEventsRequest(
            events=[
                event("a", 1, id="first"),
                event("b", 2, parent_ids=["first"]),  # parent earlier in the same batch
                event("a", 3),
            ]
        ),
        timeout=DEADLINE,
    )
    cursors = [stored.cursor for stored in response.events]
    assert cursors == sorted(cursors) and len(set(cursors)) == 3
    assert [e.payload.number_value for e in await query(stub, "a")] == [1, 3]


@pytest.mark.parametrize(
    ("bad_event", "code", "reason"),
    [
        (event("events", 1, kind="bad kind"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD"),
        (event("ghost", 1), grpc.StatusCode.NOT_FOUND, "CHANNEL_NOT_FOUND"),
        (event("events", 1, parent_ids=["missing"]), grpc.StatusCode.NOT_FOUND, "EVENT_NOT_FOUND"),
    ],
)
async def test_append_events_stores_nothing_when_one_event_fails(
    stub, make_channel, bad_event, code, reason
) -> None:
    await make_channel()
    batch = [event("events", 1), event("events", 2), bad_event, event("events", 4)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendEvents(pb.AppendEventsRequest(events=batch), timeout=DEADLINE)
    error = failure(caught.value)
    assert (error.code, error.reason) == (code, reason)
    assert await query(stub) == []
    later = await append(stub, event("events", 5))
    assert [e.id for e in await query(stub)] == [later.id]


async def test_append_events_names_the_bad_index(stub, make_channel) -> None:
    await make_channel()
    batch = [event("events", 1), event("events", 2, kind="no good")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendEvents(pb.AppendEventsRequest(events=batch), timeout=DEADLINE)
    assert failure(caught.value).fields == ["events[1].kind"]


async def test_too_many_events_in_one_call_is_resource_exhausted(stub, make_channel) -> None:
    await make_channel()
    batch = [event("events") for _ in range(10_001)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendEvents(pb.AppendEventsRequest(events=batch), timeout=DEADLINE)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "TOO_MANY_ITEMS"
    assert await query(stub) == []


async def test_get_missing_event_is_not_found(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetEvent(pb.GetEventRequest(id="nope"), timeout=DEADLINE)
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "EVENT_NOT_FOUND")


async def test_query_pages_with_after_cursor_and_limit(stub, make_channel) -> None:
    await make_channel()
    await make_channel("other")
    stored = []
    for index in range(10):
        stored.append(await append(stub, event("events", index)))
        await append(stub, event("other", index))
    pages, after = [], 0
    while page := await query(stub, after_cursor=after, limit=4):
        pages.append([e.payload.number_value for e in page])
        after = page[-1].cursor
    assert pages == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [e.id for e in await query(stub)] == [e.id for e in stored]
    assert [e.id for e in await query(stub, after_cursor=stored[6].cursor)] == [
        e.id for e in stored[7:]
    ]


async def test_query_defaults_to_100_events(stub, make_channel) -> None:
    await make_channel()
    await stub.AppendEvents(
        pb.AppendEventsRequest(events=[event("events", i) for i in range(120)]), timeout=DEADLINE
    )
    assert len(await query(stub)) == 100


async def test_query_filters_by_kind(stub, make_channel) -> None:
    await make_channel()
    for kind in ["raw", "clean", "raw", "", "raw"]:
        await append(stub, event("events", kind, kind=kind))
    raw = await query(stub, kind="raw")
    assert [e.kind for e in raw] == ["raw"] * 3
    assert [e.kind for e in await query(stub, kind="event")] == ["event"]
    assert [e.kind for e in await query(stub, kind="raw", limit=2)] == ["raw", "raw"]


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"after_cursor": -1}, "after_cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": -5}, "limit"),
        ({"kind": "a b"}, "kind"),
        ({"channel": "x/y"}, "channel"),
    ],
)
async def test_query_rejects_bad_arguments(stub, make_channel, fields, bad_field) -> None:
    await make_channel()
    request = {"channel": "events", **fields}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.QueryEvents(pb.QueryEventsRequest(**request), timeout=DEADLINE)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [bad_field]


async def test_query_of_a_missing_channel_is_not_found(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.QueryEvents(pb.QueryEventsRequest(channel="ghost"), timeout=DEADLINE)
    assert failure(caught.value).reason == "CHANNEL_NOT_FOUND"
