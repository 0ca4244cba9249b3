"""Events are stored in the form they are served in, and older JSON rows still read the same."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from sssn_proto.v1 import event_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.store.sqlite._schema import MIGRATIONS

from .helpers import DEADLINE, failure, struct, value

TRICKY_PAYLOADS: list[Any] = [
    -1.0,
    65535.0,
    1e308,
    2**53 + 2,
    "ünï😀 \x7f",
    [[], {}, [1, [2, [3]]], None, True],
    {"a": {"b": {"c": [0.5, -0.25, "x"]}}, "": ""},
]


def _database(store_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(store_dir / "sssn.sqlite")


@pytest.mark.parametrize("payload", TRICKY_PAYLOADS)
async def test_payloads_are_served_exactly_as_sent_from_the_stored_form(
    stub, make_channel, store_dir: Path, payload: Any
) -> None:
    channel = await make_channel()
    sent = event_pb2.Event(channel=channel, payload=value(payload), metadata=struct({"k": 1}))
    appended = await stub.AppendEvent(pb.AppendEventRequest(event=sent), timeout=DEADLINE)
    got = await stub.GetEvent(pb.GetEventRequest(id=appended.event.id), timeout=DEADLINE)
    assert got.event == appended.event
    assert json_format.MessageToDict(got.event.payload) == json_format.MessageToDict(sent.payload)
    with _database(store_dir) as db:
        wire, stored_payload = db.execute(
            "SELECT wire, payload FROM events WHERE id = ?", (appended.event.id,)
        ).fetchone()
    db.close()
    # What is served was stored: the row's wire form is the event minus its cursor.
    assert isinstance(wire, bytes) and isinstance(stored_payload, bytes)
    served = event_pb2.Event.FromString(wire)
    served.cursor = appended.event.cursor
    assert served == appended.event


async def test_an_empty_value_inside_a_payload_is_served_as_null(stub, make_channel) -> None:
    channel = await make_channel()
    payload = struct_pb2.Value()
    payload.struct_value.fields["empty"].CopyFrom(struct_pb2.Value())
    payload.struct_value.fields["list"].list_value.values.add()
    appended = await stub.AppendEvent(
        pb.AppendEventRequest(event=event_pb2.Event(channel=channel, payload=payload)),
        timeout=DEADLINE,
    )
    fields = appended.event.payload.struct_value.fields
    assert fields["empty"].WhichOneof("kind") == "null_value"
    assert fields["list"].list_value.values[0].WhichOneof("kind") == "null_value"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
async def test_a_non_finite_number_deep_in_payload_or_metadata_is_invalid(
    stub, make_channel, bad: float
) -> None:
    channel = await make_channel()
    payload = struct_pb2.Value()
    payload.list_value.values.add().struct_value.fields["x"].number_value = bad
    metadata = struct_pb2.Struct()
    metadata.fields["deep"].list_value.values.add().number_value = bad
    for event, field in (
        (event_pb2.Event(channel=channel, payload=payload), "event.payload"),
        (event_pb2.Event(channel=channel, metadata=metadata), "event.metadata"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.AppendEvent(pb.AppendEventRequest(event=event), timeout=DEADLINE)
        assert failure(raised.value).code == grpc.StatusCode.INVALID_ARGUMENT
        assert failure(raised.value).fields == [field]
    page = await stub.QueryEvents(pb.QueryEventsRequest(channel=channel), timeout=DEADLINE)
    assert not page.events


async def test_a_version_2_store_with_json_rows_serves_old_and_new_events_alike(
    start_server, store_dir: Path
) -> None:
    store_dir.mkdir(parents=True)
    with _database(store_dir) as db:
        for migration in MIGRATIONS[:2]:
            db.executescript(migration)
        db.execute("PRAGMA user_version=2")
        db.execute(
            "INSERT INTO channels VALUES ('old', NULL, 'log', '', '{}')",
        )
        db.execute(
            "INSERT INTO events (id, channel, timestamp_ns, source, kind, payload, schema,"
            " metadata, correlation_id, parent_ids) VALUES ('e1', 'old', 1000000000, 'src',"
            " 'note', '{\"n\":1,\"s\":\"é\"}', NULL, '{\"m\":[true]}', NULL, '[]')"
        )
    db.close()
    server = await start_server()
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.StoreServiceStub(channel)
        await stub.AppendEvent(
            pb.AppendEventRequest(
                event=event_pb2.Event(
                    channel="old", kind="note", payload=value({"n": 2}), parent_ids=["e1"]
                )
            ),
            timeout=DEADLINE,
        )
        page = await stub.QueryEvents(pb.QueryEventsRequest(channel="old"), timeout=DEADLINE)
    old, new = page.events
    assert (old.id, old.cursor, old.source, old.kind) == ("e1", 1, "src", "note")
    assert json_format.MessageToDict(old.payload) == {"n": 1, "s": "é"}
    assert json_format.MessageToDict(old.metadata) == {"m": [True]}
    assert old.timestamp.ToNanoseconds() == 1_000_000_000
    assert new.cursor == 2 and list(new.parent_ids) == ["e1"]
    assert json_format.MessageToDict(new.payload) == {"n": 2}


def _received_events() -> list[event_pb2.Event]:
    """Messages as clients send them, one per way the rules complete an event."""
    from google.protobuf import timestamp_pb2

    base = {"channel": "c", "payload": value({"text": "hello", "n": 1})}
    with_unknown = event_pb2.Event(**base)
    with_unknown.MergeFromString(b"\xf8\x06\x07")  # field 111, a varint: unknown here
    return [
        event_pb2.Event(**base),
        event_pb2.Event(channel="c"),  # no payload: served as null
        event_pb2.Event(channel="c", payload=struct_pb2.Value()),  # an empty Value, also null
        event_pb2.Event(**base, id="mine", kind="k", cursor=99),  # a cursor is never kept
        event_pb2.Event(**base, timestamp=timestamp_pb2.Timestamp(seconds=-5, nanos=7)),
        event_pb2.Event(**base, timestamp=timestamp_pb2.Timestamp(seconds=5, nanos=-1)),
        event_pb2.Event(**base, timestamp=timestamp_pb2.Timestamp()),  # zero: the server's time
        event_pb2.Event(
            **base,
            source="s",
            schema="v1",
            correlation_id="x",
            parent_ids=["a", "b"],
            metadata=struct({"k": [1, "two"]}),
        ),
        event_pb2.Event(**{**base, "payload": value({"inner": [{"a": None}, []]})}),
        with_unknown,
    ]


@pytest.mark.parametrize("index", range(len(_received_events())))
def test_completing_the_received_message_encodes_what_a_new_message_would(index: int) -> None:
    # The encoder's fast path sets the missing fields on the request's own
    # message; the slow path builds a message from the domain event. A
    # difference would be served to every reader of that event.
    from sssn_server.api._convert import encode_event, event_from_proto
    from sssn_server.domain.service import Limits, _prepare_events

    received = event_from_proto(_received_events()[index])
    assert received.origin is not None
    (prepared,) = _prepare_events([received], "event", None, Limits())
    fresh, completed = encode_event(prepared), encode_event(prepared, received)
    # Not compared byte for byte: protobuf writes the entries of a map (a
    # Struct's fields) in an order of its own, which differs between two
    # messages holding the same entries (and between runs).
    assert len(completed) == len(fresh)
    assert event_pb2.Event.FromString(completed) == event_pb2.Event.FromString(fresh)
    assert event_pb2.Event.FromString(fresh).id == prepared.id


def test_the_rules_complete_the_received_message_itself() -> None:
    # The equivalence above holds for either path; this shows the cheap one
    # is the one taken: the request's own message now carries the minted id.
    from sssn_server.api._convert import encode_event, event_from_proto
    from sssn_server.domain.service import Limits, _prepare_events

    message = _received_events()[0]
    (prepared,) = _prepare_events([event_from_proto(message)], "event", encode_event, Limits())
    assert message.id == prepared.id and message.timestamp.ToNanoseconds() == prepared.timestamp_ns
    assert prepared.wire == message.SerializeToString()


def test_a_payload_that_must_be_normalized_is_encoded_anew() -> None:
    from sssn_server.api._convert import event_from_proto

    payload = struct_pb2.Value()
    payload.list_value.values.add()  # an empty Value inside a list: served as null
    received = event_from_proto(event_pb2.Event(channel="c", payload=payload))
    assert received.origin is None


def test_the_quick_scan_flags_every_byte_pair_that_may_need_normalizing() -> None:
    """Payloads the scan passes are stored as received, so it must flag every
    pair a NaN or infinity (exponent bytes) or an empty Value can leave;
    flagging more only costs a decode. Every pair of bytes is checked."""
    from sssn_server.api._convert import _MAYBE_IRREGULAR

    for first in range(256):
        for second in range(256):
            non_finite = first >= 0xF0 and second in (0x7F, 0xFF)
            empty_value = first in (0x0A, 0x12) and second == 0x00
            if non_finite or empty_value:
                assert _MAYBE_IRREGULAR.search(bytes((first, second))), (first, second)


# Instants are kept as signed 64-bit nanoseconds: 1677-09-21 to 2262-04-11.
EARLIEST = (-9_223_372_037, 145_224_192)
LATEST = (9_223_372_036, 854_775_807)


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(LATEST[0], LATEST[1] + 1), (EARLIEST[0], EARLIEST[1] - 1), (10**15, 0)]
)
async def test_a_timestamp_beyond_64_bit_nanoseconds_is_invalid_and_nothing_is_stored(
    stub, make_channel, seconds: int, nanos: int
) -> None:
    from google.protobuf import timestamp_pb2

    from sssn_proto.v1 import snapshot_pb2

    channel = await make_channel()
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    calls = [
        (
            stub.AppendEvent(
                pb.AppendEventRequest(event=event_pb2.Event(channel=channel, timestamp=stamp)),
                timeout=DEADLINE,
            ),
            "event.timestamp",
        ),
        (
            stub.PutSnapshot(
                pb.PutSnapshotRequest(
                    snapshot=snapshot_pb2.Snapshot(name="s", value=value(1), timestamp=stamp)
                ),
                timeout=DEADLINE,
            ),
            "snapshot.timestamp",
        ),
    ]
    for call, field in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        error = failure(caught.value)
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD")
        assert error.fields == [field]
    listed = await stub.QueryEvents(pb.QueryEventsRequest(channel=channel), timeout=DEADLINE)
    assert list(listed.events) == []
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetSnapshot(pb.GetSnapshotRequest(name="s"), timeout=DEADLINE)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_first_and_last_instants_of_the_range_are_kept(stub, make_channel) -> None:
    from google.protobuf import timestamp_pb2

    channel = await make_channel()
    for seconds, nanos in (EARLIEST, LATEST):
        stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
        sent = event_pb2.Event(channel=channel, timestamp=stamp)
        appended = await stub.AppendEvent(pb.AppendEventRequest(event=sent), timeout=DEADLINE)
        assert appended.event.timestamp == stamp
        got = await stub.GetEvent(pb.GetEventRequest(id=appended.event.id), timeout=DEADLINE)
        assert got.event.timestamp == stamp
