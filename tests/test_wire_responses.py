"""Responses built from the stored wire form are the bytes the protobuf library would write."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from sssn_proto.v1 import event_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_server.api import _wire as wire
from sssn_server.api._convert import encode_event, event_to_proto
from sssn_server.domain.models import Encoded, Event

from .helpers import DEADLINE, struct, value

SERVICE = "/sssn.v1.StoreService/"


@pytest.mark.parametrize(
    "number", [0, 1, 127, 128, 300, 16383, 16384, 2**21 - 1, 2**21, 2**28, 2**35 + 7, 2**63 - 1]
)
def test_varint_is_protobufs_encoding(number: int) -> None:
    # head_cursor is field 2, a varint: its tag is 0x10.
    encoded = pb.PullSubscriptionResponse(head_cursor=number).SerializeToString()
    assert (b"\x10" + wire.varint(number) if number else b"") == encoded


def _stored(event_id: str = "0190f3b2-7c1e-7000-8000-000000000001", cursor: int = 4242) -> Event:
    event = Event(
        id=event_id,
        channel="orders",
        timestamp_ns=1_700_000_000_123_456_789,
        kind="created",
        # One key per map: maps have no canonical order to compare bytes by.
        payload=Encoded(value({"tags": ["a", 1, True]}).SerializeToString()),
        source="checkout",
        metadata=Encoded(struct({"trace": "t-1"}).SerializeToString()),
        correlation_id="c-9",
        parent_ids=("p-1", "p-2"),
    )
    event.wire = encode_event(event)
    event.cursor = cursor
    return event


def test_an_event_with_a_stored_form_is_served_as_the_canonical_bytes() -> None:
    event = _stored()
    assert wire.event_bytes(event) == event_to_proto(event).SerializeToString()


@pytest.mark.parametrize("event_id", ["x" * 128, "y" * 5000])
def test_a_long_id_moves_the_cursor_to_the_end_and_parses_the_same(event_id: str) -> None:
    event = _stored(event_id)
    served = event_pb2.Event.FromString(wire.event_bytes(event))
    assert served == event_to_proto(event)
    assert served.cursor == 4242 and served.id == event_id


def test_an_event_stored_without_wire_form_is_encoded_from_its_fields() -> None:
    event = _stored()
    event.wire = None
    event.payload, event.metadata = {"n": 1}, {"m": True}
    served = event_pb2.Event.FromString(wire.event_bytes(event))
    assert served.cursor == 4242 and served.payload.struct_value.fields["n"].number_value == 1
    assert served.id == event.id and list(served.parent_ids) == ["p-1", "p-2"]
    assert served.metadata.fields["m"].bool_value is True


def test_pull_messages_keep_order_and_the_head_and_stay_under_the_budget() -> None:
    events = [_stored(f"id-{index:04d}", cursor=index + 1) for index in range(300)]
    one = len(wire.framed(wire.event_bytes(events[0])))
    budget = 40 * one  # about 40 events per message
    serialized = wire.pull_messages(events, head_cursor=9000, max_bytes=budget)
    messages = [pb.PullSubscriptionResponse.FromString(each.data) for each in serialized]
    assert len(messages) > 5
    # What the metrics read instead of parsing the message.
    assert [each.delivered for each in serialized] == [len(m.events) for m in messages]
    assert [each.last_cursor for each in serialized] == [m.events[-1].cursor for m in messages]
    assert all(message.head_cursor == 9000 for message in messages)
    assert all(message.ByteSize() <= budget for message in messages)
    served = [event for message in messages for event in message.events]
    assert served == [event_to_proto(event) for event in events]


def test_a_heartbeat_is_one_message_with_only_the_head() -> None:
    (heartbeat,) = wire.pull_messages([], head_cursor=77, max_bytes=1 << 20)
    assert heartbeat.data == pb.PullSubscriptionResponse(head_cursor=77).SerializeToString()
    assert heartbeat.delivered == 0
    (empty,) = wire.pull_messages([], head_cursor=0, max_bytes=1 << 20)
    assert empty.data == b""


def _raw(channel: grpc.aio.Channel, method: str, request: Any) -> Any:
    """Calls a unary method and returns the response's bytes as the server sent them."""
    call = channel.unary_unary(
        SERVICE + method,
        request_serializer=type(request).SerializeToString,
        response_deserializer=lambda data: data,
    )
    return call(request, timeout=DEADLINE)


async def test_served_events_are_canonical_protobuf_over_the_wire(channel, make_channel) -> None:
    name = await make_channel()
    sent = event_pb2.Event(
        channel=name,
        kind="k",
        payload=value({"items": ["hello", 3]}),  # one key per map, as above
        metadata=struct({"m": [1, "x"]}),
        parent_ids=[],
    )
    responses = {
        "AppendEvent": await _raw(channel, "AppendEvent", pb.AppendEventRequest(event=sent)),
        "AppendEvents": await _raw(
            channel, "AppendEvents", pb.AppendEventsRequest(events=[sent, sent])
        ),
    }
    first = pb.AppendEventResponse.FromString(responses["AppendEvent"]).event
    responses["GetEvent"] = await _raw(channel, "GetEvent", pb.GetEventRequest(id=first.id))
    responses["QueryEvents"] = await _raw(
        channel, "QueryEvents", pb.QueryEventsRequest(channel=name)
    )
    classes = {
        "AppendEvent": pb.AppendEventResponse,
        "AppendEvents": pb.AppendEventsResponse,
        "GetEvent": pb.GetEventResponse,
        "QueryEvents": pb.QueryEventsResponse,
    }
    for method, data in responses.items():
        message = classes[method].FromString(data)
        # What the library writes for the same message, byte for byte.
        assert message.SerializeToString() == data, method
    assert pb.GetEventResponse.FromString(responses["GetEvent"]).event == first
    page = pb.QueryEventsResponse.FromString(responses["QueryEvents"])
    assert [event.cursor for event in page.events] == [1, 2, 3]
    assert page.events[0] == first
