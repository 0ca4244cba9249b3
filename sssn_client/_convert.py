"""Conversions between the client's models and `sssn.v1` messages, in both directions."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from sssn_proto.v1 import artifact_pb2, channel_pb2, event_pb2, snapshot_pb2, subscription_pb2

from ._errors import invalid
from ._models import CHANNEL_FORMS, Artifact, Channel, Event, Snapshot, Subscription

# Doubles beyond 2**53 are not exact integers, so they stay floats.
_MAX_EXACT_INT = 2**53

_FORM_TO_ENUM: dict[str, int] = {
    form: channel_pb2.ChannelForm.Value("CHANNEL_FORM_" + form.upper().replace("-", "_"))
    for form in CHANNEL_FORMS
}
_ENUM_TO_FORM: dict[int, str] = {number: form for form, number in _FORM_TO_ENUM.items()}


@contextmanager
def encoding(field: str) -> Iterator[None]:
    """Reports input that protobuf cannot encode as INVALID_PAYLOAD, before any call."""
    try:
        yield
    except (TypeError, ValueError, OverflowError, json_format.ParseError) as exc:
        raise invalid(field, str(exc)) from exc


# JSON values


def to_value(value: Any, field: str) -> struct_pb2.Value:
    """A `google.protobuf.Value` holding a plain JSON value."""
    with encoding(field):
        return json_format.ParseDict(value, struct_pb2.Value())


def to_struct(value: Mapping[str, Any] | None, field: str) -> struct_pb2.Struct:
    """A `google.protobuf.Struct` holding a JSON object (None is empty)."""
    if value is None:
        return struct_pb2.Struct()
    if not isinstance(value, Mapping):
        raise invalid(field, "must be a JSON object")
    with encoding(field):
        return json_format.ParseDict(dict(value), struct_pb2.Struct())


def from_value(value: struct_pb2.Value) -> Any:
    """The plain Python value of a `google.protobuf.Value`.

    Integral numbers come back as `int` (`json_format` would give floats), so
    `{"n": 1}` reads back as it was written, as with the reference.
    """
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) < _MAX_EXACT_INT:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return None


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {key: from_value(item) for key, item in struct.fields.items()}


def to_timestamp(seconds: float, field: str) -> timestamp_pb2.Timestamp:
    # Whole seconds and the fraction apart: multiplying the float by 1e9 first
    # would round away the fraction (1700000000.25 would come back as ...0.2499998).
    with encoding(field):
        whole = math.floor(seconds)
        nanos = round((seconds - whole) * 1_000_000_000)
    if nanos == 1_000_000_000:
        whole, nanos = whole + 1, 0
    return timestamp_pb2.Timestamp(seconds=whole, nanos=nanos)


def from_timestamp(message: timestamp_pb2.Timestamp) -> float:
    return message.seconds + message.nanos / 1_000_000_000


# Resources


def channel_to_proto(channel: Channel) -> channel_pb2.Channel:
    form = _FORM_TO_ENUM.get(channel.form)
    if form is None:
        raise invalid("channel.form", f"must be one of {', '.join(CHANNEL_FORMS)}")
    with encoding("channel"):
        return channel_pb2.Channel(
            name=channel.name,
            schema=channel.schema or "",
            form=form,  # type: ignore[arg-type]
            description=channel.description or "",
            metadata=to_struct(channel.metadata, "channel.metadata"),
        )


def channel_from_proto(message: channel_pb2.Channel) -> Channel:
    return Channel(
        name=message.name,
        schema=message.schema or None,
        form=_ENUM_TO_FORM.get(message.form, "log"),
        description=message.description,
        metadata=from_struct(message.metadata),
    )


def event_to_proto(event: Event, field: str = "event") -> event_pb2.Event:
    with encoding(field):
        message = event_pb2.Event(
            id=event.id or "",
            channel=event.channel,
            source=event.source or "",
            kind=event.kind or "",
            schema=event.schema or "",
            correlation_id=event.correlation_id or "",
            parent_ids=list(event.parent_ids),
            metadata=to_struct(event.metadata, f"{field}.metadata"),
            payload=to_value(event.payload, f"{field}.payload"),
        )
    if event.timestamp is not None:
        message.timestamp.CopyFrom(to_timestamp(event.timestamp, f"{field}.timestamp"))
    return message


def event_from_proto(message: event_pb2.Event) -> Event:
    return Event(
        id=message.id,
        cursor=message.cursor,
        channel=message.channel,
        timestamp=from_timestamp(message.timestamp),
        source=message.source or None,
        kind=message.kind,
        payload=from_value(message.payload),
        schema=message.schema or None,
        metadata=from_struct(message.metadata),
        correlation_id=message.correlation_id or None,
        parent_ids=tuple(message.parent_ids),
    )


def subscription_from_proto(message: subscription_pb2.Subscription) -> Subscription:
    return Subscription(
        id=message.id,
        channel=message.channel,
        cursor=message.cursor,
        consumer=message.consumer or None,
        batch_size=message.batch_size,
        filters={"kind": message.filter.kind} if message.filter.kind else {},
        metadata=from_struct(message.metadata),
    )


def filter_to_proto(filters: Mapping[str, Any] | None) -> subscription_pb2.SubscriptionFilter:
    """The typed filter of the reference's `filters` dict; only `kind` exists."""
    if filters is None:
        return subscription_pb2.SubscriptionFilter()
    if not isinstance(filters, Mapping):
        raise invalid("filters", "must be a dict such as {'kind': 'raw'}")
    unknown = sorted(set(filters) - {"kind"})
    if unknown:
        raise invalid(f"filters.{unknown[0]}", "is not supported; the only filter is 'kind'")
    kind = filters.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise invalid("filters.kind", "must be a string")
    return subscription_pb2.SubscriptionFilter(kind=kind or "")


def artifact_from_proto(message: artifact_pb2.Artifact) -> Artifact:
    return Artifact(
        id=message.id,
        channel=message.channel or None,
        media_type=message.media_type,
        size=message.size,
        sha256=message.sha256,
        metadata=from_struct(message.metadata),
        event_ids=tuple(message.event_ids),
    )


def snapshot_to_proto(snapshot: Snapshot) -> snapshot_pb2.Snapshot:
    with encoding("snapshot"):
        message = snapshot_pb2.Snapshot(
            name=snapshot.name,
            channel=snapshot.channel or "",
            value=to_value(snapshot.value, "snapshot.value"),
            schema=snapshot.schema or "",
            source_event_id=snapshot.source_event_id or "",
            metadata=to_struct(snapshot.metadata, "snapshot.metadata"),
        )
    if snapshot.timestamp is not None:
        message.timestamp.CopyFrom(to_timestamp(snapshot.timestamp, "snapshot.timestamp"))
    return message


def snapshot_from_proto(message: snapshot_pb2.Snapshot) -> Snapshot:
    return Snapshot(
        name=message.name,
        channel=message.channel or None,
        timestamp=from_timestamp(message.timestamp),
        value=from_value(message.value),
        schema=message.schema or None,
        source_event_id=message.source_event_id or None,
        metadata=from_struct(message.metadata),
    )
