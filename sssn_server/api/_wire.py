"""Responses that carry events, encoded straight from the events' stored wire form.

An event is stored with `wire`, its serialized `Event` without the cursor
(`_convert.encode_event`). Serving it as a message would parse those bytes
into a message object and serialize them again, once per event: ~1.8 µs of
the ~4.5 µs a catch-up drain spent per event. Protobuf's encoding is a concatenation of fields, so
the response can be built from the stored bytes instead: the event's bytes
with the cursor field spliced in, framed as an entry of the repeated field.
The servicer returns such responses as `Serialized`, whose bytes the
registered serializer sends as they are (`_handlers.py`) and whose counts
the metrics read instead of the message (`_metrics.py`).

Tags and field numbers are read from the descriptors, so the contract stays
the one source of truth; tests check the bytes parse to the same message the
protobuf library would have built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor

from sssn_proto.v1 import event_pb2
from sssn_proto.v1 import store_service_pb2 as pb

from ..domain.models import Event
from ._convert import event_to_proto


@dataclass(slots=True)
class Serialized:
    """A response message already serialized, and what observers of the call
    need to know of it without parsing it."""

    data: bytes
    appended: int = 0
    """Events whose append it acknowledges (idempotent repeats included)."""
    delivered: int = 0
    """Events it delivers to a subscription's consumer."""
    last_cursor: int = 0
    """The cursor of the last event it delivers."""
    head_cursor: int = 0
    """The store's head as the message reports it."""


_VARINT = 0
_LENGTH_DELIMITED = 2


def varint(value: int) -> bytes:
    """The base-128 varint of a non-negative integer."""
    # Lengths and cursors mostly take 1 to 3 bytes: those skip the loop
    # (this runs twice per event served).
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0x200000:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: FieldDescriptor, wire_type: int) -> bytes:
    return varint(field.number << 3 | wire_type)


def _field(message: type, name: str) -> FieldDescriptor:
    field: FieldDescriptor = message.DESCRIPTOR.fields_by_name[name]  # type: ignore[attr-defined]
    return field


_ID_TAG = _tag(_field(event_pb2.Event, "id"), _LENGTH_DELIMITED)[0]
_CURSOR_TAG = _tag(_field(event_pb2.Event, "cursor"), _VARINT)
# `events` of every response that lists events, `event` of those that carry
# one, and the two levels of an AppendEventStreamResponse's results: the same
# field number and so the same tag in each, checked here at import.
_EVENTS_TAG = _tag(_field(pb.PullSubscriptionResponse, "events"), _LENGTH_DELIMITED)
for _message, _name in (
    (pb.QueryEventsResponse, "events"),
    (pb.AppendEventsResponse, "events"),
    (pb.AppendEventResponse, "event"),
    (pb.GetEventResponse, "event"),
    (pb.AppendEventStreamResponse, "results"),
    (pb.AppendResult, "event"),
):
    assert _tag(_field(_message, _name), _LENGTH_DELIMITED) == _EVENTS_TAG, _message
_HEAD_CURSOR_TAG = _tag(_field(pb.PullSubscriptionResponse, "head_cursor"), _VARINT)
_LEASE_EPOCH_TAG = _tag(_field(pb.PullSubscriptionResponse, "lease_epoch"), _VARINT)
_TRUNCATED_TRUE = _tag(_field(pb.QueryEventsResponse, "truncated"), _VARINT) + b"\x01"
# `abridged = true` of the append responses, the same field in each.
_ABRIDGED_TRUE = _tag(_field(pb.AppendEventsResponse, "abridged"), _VARINT) + b"\x01"
for _message in (pb.AppendEventResponse, pb.AppendEventStreamResponse):
    assert _tag(_field(_message, "abridged"), _VARINT) + b"\x01" == _ABRIDGED_TRUE, _message


def event_bytes(event: Event) -> bytes:
    """The serialized `Event` with its cursor, from the stored form if it has one.

    The cursor goes right after the id, where the protobuf library would
    write it, so the bytes are the canonical ones for the common case; where
    the id is longer than 127 bytes it goes at the end, which parses the same.
    """
    wire = event.wire
    if wire is None:  # stored before schema 3
        return event_to_proto(event).SerializeToString()
    cursor = _CURSOR_TAG + varint(event.cursor) if event.cursor else b""
    if len(wire) > 1 and wire[0] == _ID_TAG and wire[1] < 0x80:
        split = 2 + wire[1]
        return wire[:split] + cursor + wire[split:]
    return wire + cursor


def served_size(event: Event) -> int:
    """How many bytes `event_bytes` gives for an event, without building them
    when it has a stored form."""
    if event.wire is None:
        return len(event_bytes(event))
    return len(event.wire) + len(_CURSOR_TAG) + len(varint(event.cursor))


def framed(data: bytes) -> bytes:
    """One entry of the `events` field (or the single `event` field)."""
    return _EVENTS_TAG + varint(len(data)) + data


def events_message(events: list[Event], *, appended: bool = False) -> Serialized:
    """A response whose only field is its events (or event), in order;
    `appended`: it acknowledges their appends."""
    data = b"".join(framed(event_bytes(event)) for event in events)
    return Serialized(data, appended=len(events) if appended else 0)


def query_page(events: list[Event], max_bytes: int) -> Serialized:
    """A `QueryEventsResponse` holding the events in order while they fit in
    `max_bytes` (at least one), with `truncated` set when some were left out."""
    parts: list[bytes] = []
    size = 0
    for event in events:
        entry = framed(event_bytes(event))
        size += len(entry)
        if parts and size > max_bytes:
            return Serialized(b"".join(parts) + _TRUNCATED_TRUE)
        parts.append(entry)
    return Serialized(b"".join(parts))


def append_acknowledgement(
    events: list[Event], max_bytes: int, readable: Callable[[str], bool] | None
) -> Serialized:
    """An `AppendEvent(s)Response`: the stored events in full, or abridged
    (`abridged_event_bytes`) when they would take the response over
    `max_bytes` or `readable` says the caller may not read one of their
    channels, so a stock client can always read the acknowledgement and a
    caller without `read` never sees a stored payload."""
    if readable is None or all(readable(channel) for channel in {e.channel for e in events}):
        full = events_message(events, appended=True)
        if len(full.data) <= max_bytes:
            return full
    data = b"".join(framed(abridged_event_bytes(event)) for event in events)
    return Serialized(data + _ABRIDGED_TRUE, appended=len(events))


def abridged_event_bytes(event: Event) -> bytes:
    """An event's acknowledgement without its content: only its id, channel,
    cursor and timestamp, which is all an append's caller lacks."""
    message = event_pb2.Event(id=event.id, channel=event.channel, cursor=event.cursor)
    message.timestamp.FromNanoseconds(event.timestamp_ns)
    return message.SerializeToString()


def pull_messages(
    events: list[Event], head_cursor: int, max_bytes: int, lease_epoch: int = 0
) -> list[Serialized]:
    """`PullSubscriptionResponse`s holding the events in order, each under
    `max_bytes` unless a single event is larger; every message carries
    `head_cursor` and `lease_epoch` (an empty list gives one heartbeat
    message)."""
    head = _HEAD_CURSOR_TAG + varint(head_cursor) if head_cursor else b""
    if lease_epoch:
        head += _LEASE_EPOCH_TAG + varint(lease_epoch)
    messages: list[Serialized] = []
    parts: list[bytes] = []
    size = len(head)
    for index, event in enumerate(events):
        entry = framed(event_bytes(event))
        if parts and size + len(entry) > max_bytes:
            messages.append(_pull_message(parts, head, events[index - 1].cursor, head_cursor))
            parts, size = [], len(head)
        parts.append(entry)
        size += len(entry)
    last = events[-1].cursor if events else 0
    messages.append(_pull_message(parts, head, last, head_cursor))
    return messages


def _pull_message(
    parts: list[bytes], head: bytes, last_cursor: int, head_cursor: int
) -> Serialized:
    return Serialized(
        b"".join(parts) + head,
        delivered=len(parts),
        last_cursor=last_cursor,
        head_cursor=head_cursor,
    )


def append_results(
    results: list[Event | pb.AppendResult],
    max_bytes: int,
    readable: Callable[[str], bool] | None,
) -> Serialized:
    """An `AppendEventStreamResponse`: a stored event becomes an `AppendResult`
    holding it, a message (an error) is serialized as it is; the stored
    events are abridged as `append_acknowledgement` says."""
    stored = [result for result in results if isinstance(result, Event)]
    full = readable is None or all(readable(channel) for channel in {e.channel for e in stored})
    if full:
        response = _append_results(results, event_bytes)
        if len(response.data) <= max_bytes:
            return response
    response = _append_results(results, abridged_event_bytes)
    response.data += _ABRIDGED_TRUE
    return response


def _append_results(
    results: Iterable[Event | pb.AppendResult], encode: Callable[[Event], bytes]
) -> Serialized:
    parts = []
    stored = 0
    for result in results:
        if isinstance(result, Event):
            parts.append(framed(framed(encode(result))))
            stored += 1
        else:
            parts.append(framed(result.SerializeToString()))
    return Serialized(b"".join(parts), appended=stored)
