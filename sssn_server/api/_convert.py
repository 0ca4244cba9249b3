"""Conversions between `sssn.v1` messages and domain models (one place, both directions)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from sssn_proto.v1 import (
    artifact_pb2,
    channel_pb2,
    event_pb2,
    snapshot_pb2,
    subscription_pb2,
)

from ..domain.errors import InvalidPayloadError
from ..domain.models import (
    CHANNEL_FORMS,
    DEFAULT_FORM,
    MAX_JSON_DEPTH,
    Artifact,
    ArtifactSpec,
    Channel,
    Encoded,
    Event,
    Snapshot,
    Subscription,
)
from ..domain.streams import AUTO, MANUAL
from ..domain.validation import is_finite_json, nests_deeper, require_timestamp

# Doubles beyond 2**53 are not exact integers, so they stay floats.
_MAX_EXACT_INT = 2**53

# Event payloads and metadata are kept as the bytes received (see `Encoded`)
# unless these bytes might hold what must be refused or normalized: the last
# two bytes of a NaN or infinite double (exponent bits all ones), or an empty
# `Value` inside a Struct or list (served as null), i.e. [\xf0-\xff][\x7f\xff]
# or [\x0a\x12]\x00. One pair of classes that covers both is scanned in less
# than half the time of the two alternatives (~0.26 against ~0.59 us for a
# small payload). What it also matches is rare: a length of 127 or one
# whose varint starts 0xff, a double's byte of 0xf0 or more before a zero,
# a newline before DEL in text. Of random objects holding a float, an int
# and text it flags 1.9%, against 0.4%; a false alarm only costs a decode.
_MAYBE_IRREGULAR = re.compile(rb"[\x0a\x12\xf0-\xff][\x00\x7f\xff]")

_FORM_TO_ENUM: dict[str, int] = {
    form: channel_pb2.ChannelForm.Value("CHANNEL_FORM_" + form.upper().replace("-", "_"))
    for form in CHANNEL_FORMS
}
_ENUM_TO_FORM: dict[int, str] = {number: form for form, number in _FORM_TO_ENUM.items()}
_ENUM_TO_FORM[channel_pb2.CHANNEL_FORM_UNSPECIFIED] = DEFAULT_FORM


# JSON values


def from_value(value: struct_pb2.Value) -> Any:
    """Returns the plain Python value of a `google.protobuf.Value`.

    Integral numbers come back as `int` so that JSON written by the reference
    (`{"n": 1}`) reads the same through either server.
    """
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) < _MAX_EXACT_INT:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return None


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Returns a `google.protobuf.Struct` as a dict."""
    return {key: from_value(item) for key, item in struct.fields.items()}


def fill_value(target: struct_pb2.Value, value: Any) -> None:
    """Writes a plain JSON value into `target`."""
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, (int, float)):
        target.number_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, dict):
        fill_struct(target.struct_value, value)
    elif isinstance(value, (list, tuple)):
        items = target.list_value
        items.SetInParent()
        for item in value:
            fill_value(items.values.add(), item)
    else:  # the store only holds JSON, so this is a programming error
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def fill_struct(target: struct_pb2.Struct, value: dict[str, Any]) -> None:
    """Writes a dict into `target` (which is marked present even when empty)."""
    target.SetInParent()
    for key, item in value.items():
        fill_value(target.fields[key], item)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    fill_struct(message, value)
    return message


def _value(value: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    fill_value(message, value)
    return message


def _timestamp_ns(message: timestamp_pb2.Timestamp, present: bool) -> int:
    return message.seconds * 1_000_000_000 + message.nanos if present else 0


def _timestamp(nanoseconds: int) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(nanoseconds)
    return message


# Channels


def channel_from_proto(message: channel_pb2.Channel) -> Channel:
    form = _ENUM_TO_FORM.get(message.form)
    if form is None:
        raise InvalidPayloadError("channel.form", f"unknown channel form {message.form}")
    return Channel(
        name=message.name,
        schema=message.schema or None,
        form=form,
        description=message.description,
        metadata=from_struct(message.metadata),
    )


def channel_to_proto(channel: Channel) -> channel_pb2.Channel:
    return channel_pb2.Channel(
        name=channel.name,
        schema=channel.schema or "",
        form=_FORM_TO_ENUM[channel.form],  # type: ignore[arg-type]
        description=channel.description,
        metadata=_struct(channel.metadata),
    )


# Events


def event_from_proto(message: event_pb2.Event) -> Event:
    """The domain's event for a message received; the message is kept as the
    event's `origin` (see `encode_event`) unless its payload or metadata had
    to be normalized, and is changed by that encoder: pass one you own."""
    # Fields this server does not know would be served back from the wire
    # form and not be in the columns: dropped, as a fresh message would.
    message.DiscardUnknownFields()
    payload, payload_as_received = (
        _encoded_value(message.payload) if message.HasField("payload") else (None, True)
    )
    metadata, metadata_as_received = (
        # Unset, it is the empty Struct, whose encoding is empty.
        _encoded_struct(message.metadata) if message.HasField("metadata") else (Encoded(b""), True)
    )
    # Positionally, in Event's field order: done for every event received,
    # where matching keywords would double the constructor's cost.
    event = Event(
        message.id,
        message.channel,
        _timestamp_ns(message.timestamp, message.HasField("timestamp")),
        message.kind,
        payload,
        message.source or None,
        message.schema or None,
        metadata,
        message.correlation_id or None,
        tuple(message.parent_ids) if message.parent_ids else (),
    )
    if payload_as_received and metadata_as_received:
        event.origin = message
    return event


def plain_json(value: Encoded, *, is_object: bool) -> Any:
    """An `Encoded` value as plain JSON: a payload (a `Value`), or metadata
    (`is_object`: a `Struct`), for a store that keeps values readable."""
    if is_object:
        return from_struct(struct_pb2.Struct.FromString(value.data))
    return from_value(struct_pb2.Value.FromString(value.data)) if value.data else None


def with_content_from_wire(event: Event) -> Event:
    """The event with its payload and metadata taken back out of its wire
    form (as `Encoded`), for a store that keeps them readable beside it."""
    if event.wire is None:
        return event
    message = event_pb2.Event.FromString(event.wire)
    return dataclasses.replace(
        event,
        payload=Encoded(message.payload.SerializeToString()),
        metadata=Encoded(message.metadata.SerializeToString()),
    )


# Each returns the value and whether it is the bytes as received.


def _encoded_value(message: struct_pb2.Value) -> tuple[Encoded | None, bool]:
    data = message.SerializeToString()
    if not data:  # a Value with no kind set reads as null
        return None, True
    if _MAYBE_IRREGULAR.search(data) is None:
        deep = len(data) > _SHALLOW_BYTES and _value_nests_deeper(message, MAX_JSON_DEPTH)
        return Encoded(data, deep=deep), True
    value = from_value(message)
    return _encoded_plain(_value(value), value), False


def _encoded_struct(message: struct_pb2.Struct) -> tuple[Encoded, bool]:
    data = message.SerializeToString()
    if _MAYBE_IRREGULAR.search(data) is None:
        deep = len(data) > _SHALLOW_BYTES and _struct_nests_deeper(message, MAX_JSON_DEPTH)
        return Encoded(data, deep=deep), True
    value = from_struct(message)
    return _encoded_plain(_struct(value), value), False


def _encoded_plain(message: struct_pb2.Value | struct_pb2.Struct, value: Any) -> Encoded:
    return Encoded(
        message.SerializeToString(),
        finite=is_finite_json(value),
        deep=nests_deeper(value, MAX_JSON_DEPTH),
    )


# Each level of objects or arrays takes at least four bytes of the encoding,
# so a value this short cannot nest deeper than MAX_JSON_DEPTH: most payloads
# are never walked.
_SHALLOW_BYTES = 4 * MAX_JSON_DEPTH


def _value_nests_deeper(value: struct_pb2.Value, depth: int) -> bool:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _struct_nests_deeper(value.struct_value, depth)
    if kind == "list_value":
        return depth <= 0 or any(
            _value_nests_deeper(item, depth - 1) for item in value.list_value.values
        )
    return False


def _struct_nests_deeper(struct: struct_pb2.Struct, depth: int) -> bool:
    return depth <= 0 or any(
        _value_nests_deeper(item, depth - 1) for item in struct.fields.values()
    )


def _fill_encoded(target: Any, value: Any, fill: Any) -> None:
    """Writes an `Encoded` value as received, or a plain one through `fill`."""
    if isinstance(value, Encoded):
        target.SetInParent()
        target.MergeFromString(value.data)
    else:
        fill(target, value)


def encode_event(event: Event, received: Event | None = None) -> bytes:
    """The wire form of a new event, without its cursor: stored beside it and
    served as is (`_wire.event_bytes`), so serving an event never re-encodes it.

    When the event was `received` from a message (its `origin`), that message
    already holds every field as it will be served but the ones the rules
    fill in, so those are set on it and it is serialized: a third of the cost
    of building a message anew. The result parses to the same event (tested);
    only the entries of a Struct may come in another order, as with any two
    messages protobuf writes.
    """
    message: event_pb2.Event | None = received.origin if received is not None else None
    if message is None:
        message = event_pb2.Event()
        _fill_fields(message, event)
        return message.SerializeToString()
    message.id = event.id
    timestamp = message.timestamp
    # As Timestamp.FromNanoseconds does; the rules checked the range.
    timestamp.seconds, timestamp.nanos = divmod(event.timestamp_ns, 1_000_000_000)
    message.kind = event.kind
    message.cursor = 0
    if event.payload is None:
        message.payload.null_value = struct_pb2.NULL_VALUE
    message.metadata.SetInParent()  # present even when empty, as _fill_fields has it
    return message.SerializeToString()


def fill_event(target: event_pb2.Event, event: Event) -> None:
    """Writes an event into an existing message (avoids a copy in batches)."""
    if event.wire is not None:
        target.MergeFromString(event.wire)
    else:
        _fill_fields(target, event)
    target.cursor = event.cursor


def _fill_fields(target: event_pb2.Event, event: Event) -> None:
    target.id = event.id
    target.channel = event.channel
    target.timestamp.FromNanoseconds(event.timestamp_ns)
    target.kind = event.kind
    _fill_encoded(target.payload, event.payload, fill_value)
    if event.source:
        target.source = event.source
    if event.schema:
        target.schema = event.schema
    _fill_encoded(target.metadata, event.metadata, fill_struct)
    if event.correlation_id:
        target.correlation_id = event.correlation_id
    target.parent_ids.extend(event.parent_ids)


def event_to_proto(event: Event) -> event_pb2.Event:
    message = event_pb2.Event()
    fill_event(message, event)
    return message


# Subscriptions

_ACK_MODES: dict[int, str] = {
    subscription_pb2.ACK_MODE_UNSPECIFIED: AUTO,
    subscription_pb2.ACK_MODE_AUTO: AUTO,
    subscription_pb2.ACK_MODE_MANUAL: MANUAL,
}


def ack_mode_from_proto(value: int) -> str:
    """The domain's ack mode; an enum number this server does not know is invalid."""
    mode = _ACK_MODES.get(value)
    if mode is None:
        raise InvalidPayloadError("ack_mode", f"unknown ack mode {value}")
    return mode


def seconds_from_duration(message: duration_pb2.Duration, present: bool) -> float | None:
    """A Duration in seconds; None when unset or zero (the server default)."""
    if not present:
        return None
    seconds = message.seconds + message.nanos / 1e9
    return seconds or None


def timestamp_ns_from_proto(message: timestamp_pb2.Timestamp, field: str = "timestamp") -> int:
    """A Timestamp as nanoseconds since the epoch.

    Raises:
        InvalidPayloadError: 64-bit nanoseconds (what the store holds) cannot
            hold the instant.
    """
    return require_timestamp(field, _timestamp_ns(message, True))


def subscription_to_proto(subscription: Subscription) -> subscription_pb2.Subscription:
    return subscription_pb2.Subscription(
        id=subscription.id,
        channel=subscription.channel,
        cursor=subscription.cursor,
        consumer=subscription.consumer or "",
        batch_size=subscription.batch_size,
        filter=subscription_pb2.SubscriptionFilter(kind=subscription.kind or ""),
        metadata=_struct(subscription.metadata),
    )


# Artifacts


def artifact_spec_from_proto(message: Any) -> ArtifactSpec:
    """Reads `WriteArtifactRequest` or `UploadArtifactHeader` (same field names)."""
    return ArtifactSpec(
        channel=message.channel or None,
        media_type=message.media_type,
        metadata=from_struct(message.metadata),
        event_ids=tuple(message.event_ids),
    )


def artifact_to_proto(artifact: Artifact) -> artifact_pb2.Artifact:
    return artifact_pb2.Artifact(
        id=artifact.id,
        channel=artifact.channel or "",
        media_type=artifact.media_type,
        size=artifact.size,
        sha256=artifact.sha256,
        metadata=_struct(artifact.metadata),
        event_ids=artifact.event_ids,
    )


# Snapshots


def snapshot_from_proto(message: snapshot_pb2.Snapshot) -> Snapshot:
    return Snapshot(
        name=message.name,
        timestamp_ns=_timestamp_ns(message.timestamp, message.HasField("timestamp")),
        value=from_value(message.value) if message.HasField("value") else None,
        channel=message.channel or None,
        schema=message.schema or None,
        source_event_id=message.source_event_id or None,
        metadata=from_struct(message.metadata),
    )


def snapshot_to_proto(snapshot: Snapshot) -> snapshot_pb2.Snapshot:
    return snapshot_pb2.Snapshot(
        name=snapshot.name,
        channel=snapshot.channel or "",
        timestamp=_timestamp(snapshot.timestamp_ns),
        value=_value(snapshot.value),
        schema=snapshot.schema or "",
        source_event_id=snapshot.source_event_id or "",
        metadata=_struct(snapshot.metadata),
    )


def json_size(value: Any) -> int:
    """A plain JSON value's size as a `google.protobuf.Value`: the measure of
    the limits on metadata and snapshot values."""
    return _value(value).ByteSize()
