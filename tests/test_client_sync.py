"""The synchronous client against a real server: every method, shapes in and out."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest

from sssn_client import (
    CHANNEL_FORMS,
    Artifact,
    Channel,
    ChannelExistsError,
    ClientClosedError,
    Event,
    Snapshot,
    SSSNClient,
    Subscription,
)

from . import client_fixtures
from .client_fixtures import ServerThread, wait_until
from .helpers import DEADLINE

# Fixtures shared with the other client test modules (conftest.py belongs to the server tests).
client = client_fixtures.client
server_thread = client_fixtures.server_thread

# Channels


def test_create_channel_with_every_field_and_read_it_back(client: SSSNClient) -> None:
    created = client.create_channel(
        Channel(
            name="orders",
            schema="order.v1",
            form="time-series",
            description="all orders",
            metadata={"owner": "ops", "n": 1, "nested": {"ok": True}},
        )
    )
    assert created == Channel(
        name="orders",
        schema="order.v1",
        form="time-series",
        description="all orders",
        metadata={"owner": "ops", "n": 1, "nested": {"ok": True}},
    )
    assert client.get_channel("orders") == created
    assert isinstance(created.metadata["n"], int)


def test_create_channel_accepts_a_plain_dict_and_defaults_to_log(client: SSSNClient) -> None:
    created = client.create_channel({"name": "events"})
    assert (created.name, created.form, created.schema, created.metadata) == (
        "events",
        "log",
        None,
        {},
    )


@pytest.mark.parametrize("form", CHANNEL_FORMS)
def test_every_channel_form_round_trips(client: SSSNClient, form: str) -> None:
    assert client.create_channel({"name": "c", "form": form}).form == form


def test_list_channels_returns_every_channel_in_name_order(client: SSSNClient) -> None:
    assert client.list_channels() == []
    for name in ("b", "c", "a"):
        client.create_channel({"name": name})
    assert [channel.name for channel in client.list_channels()] == ["a", "b", "c"]


def test_list_channels_follows_the_server_pages(server_thread: ServerThread) -> None:
    server_thread.stop()
    server_thread.start(durability="normal")  # 1001 commits; no need to sync each
    with SSSNClient(server_thread.address, timeout=DEADLINE) as fresh:
        names = sorted(f"c{index:04}" for index in range(1001))
        for name in names:
            fresh.create_channel({"name": name})
        assert [channel.name for channel in fresh.list_channels()] == names


# Events


def test_append_event_returns_the_stored_event_with_plain_values(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    parent = client.append_event(Event(channel="events", payload="first"))
    stored = client.append_event(
        Event(
            id="evt-1",
            channel="events",
            timestamp=1_700_000_000.25,
            source="tests",
            kind="raw",
            payload={"text": "hello", "n": 3, "ratio": 0.5, "tags": ["a", None, True]},
            schema="raw.v1",
            metadata={"trace": "x"},
            correlation_id="req-9",
            parent_ids=(parent.id or "",),
        )
    )
    assert stored.id == "evt-1"
    assert stored.cursor is not None and parent.cursor is not None
    assert stored.cursor > parent.cursor
    assert stored.timestamp == 1_700_000_000.25
    assert stored.payload["text"] == "hello"
    assert stored.payload == {"text": "hello", "n": 3, "ratio": 0.5, "tags": ["a", None, True]}
    assert isinstance(stored.payload["n"], int)
    assert (stored.source, stored.kind, stored.schema) == ("tests", "raw", "raw.v1")
    assert (stored.metadata, stored.correlation_id) == ({"trace": "x"}, "req-9")
    assert stored.parent_ids == (parent.id,)
    assert client.get_event("evt-1") == stored


def test_append_event_accepts_a_dict_and_the_server_fills_the_rest(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    stored = client.append_event({"channel": "events", "payload": [1, 2]})
    assert stored.id and stored.cursor and stored.timestamp
    assert (stored.kind, stored.payload, stored.parent_ids) == ("event", [1, 2], ())


def test_reappending_an_id_returns_the_stored_event(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    first = client.append_event({"id": "once", "channel": "events", "payload": 1})
    again = client.append_event({"id": "once", "channel": "events", "payload": 2})
    assert again == first
    assert len(client.query_events("events")) == 1


def test_append_events_stores_all_in_order(client: SSSNClient) -> None:
    client.create_channel({"name": "a"})
    client.create_channel({"name": "b"})
    stored = client.append_events(
        [
            {"channel": "a", "payload": 0},
            Event(channel="b", payload=1),
            {"channel": "a", "payload": 2, "kind": "odd"},
        ]
    )
    assert [event.payload for event in stored] == [0, 1, 2]
    assert [event.channel for event in stored] == ["a", "b", "a"]
    cursors = [event.cursor or 0 for event in stored]
    assert cursors == sorted(cursors) and len(set(cursors)) == 3


def test_query_events_pages_by_cursor_limit_and_kind(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    stored = client.append_events(
        [
            {"channel": "events", "payload": i, "kind": "even" if i % 2 == 0 else "odd"}
            for i in range(7)
        ]
    )
    assert client.query_events("events") == stored
    assert client.query_events("events", limit=3) == stored[:3]
    assert client.query_events("events", after_cursor=stored[2].cursor or 0, limit=2) == stored[3:5]
    assert [e.payload for e in client.query_events("events", kind="odd")] == [1, 3, 5]


# Subscriptions


def test_create_subscription_with_every_field(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    created = client.create_subscription(
        "events",
        subscription_id="worker",
        consumer="pool-1",
        batch_size=25,
        filters={"kind": "raw"},
        metadata={"owner": "ops"},
    )
    assert created == Subscription(
        id="worker",
        channel="events",
        cursor=0,
        consumer="pool-1",
        batch_size=25,
        filters={"kind": "raw"},
        metadata={"owner": "ops"},
    )
    assert client.get_subscription("worker") == created


def test_create_subscription_defaults_and_reuse(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    minted = client.create_subscription("events")
    assert minted.id and minted.batch_size == 100 and minted.filters == {}
    again = client.create_subscription("events", subscription_id=minted.id, consumer="other")
    assert again == minted


def test_pull_subscription_returns_one_batch_and_moves_the_cursor(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    client.create_subscription("events", subscription_id="w", batch_size=3)
    stored = client.append_events([{"channel": "events", "payload": i} for i in range(8)])
    assert client.pull_subscription("w") == stored[:3]
    assert client.get_subscription("w").cursor == stored[2].cursor
    assert client.pull_subscription("w", limit=4) == stored[3:7]
    assert client.pull_subscription("w", limit=100) == stored[7:]
    assert client.pull_subscription("w") == []


def test_pull_subscription_applies_the_kind_filter(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    client.create_subscription("events", subscription_id="w", filters={"kind": "raw"})
    client.append_event({"channel": "events", "kind": "other"})
    raw = client.append_event({"channel": "events", "kind": "raw", "payload": "x"})
    assert client.pull_subscription("w") == [raw]


def test_subscribe_delivers_backlog_then_live_events(
    client: SSSNClient, server_thread: ServerThread
) -> None:
    client.create_channel({"name": "events"})
    client.create_subscription("events", subscription_id="w", batch_size=2)
    expected = client.append_events([{"channel": "events", "payload": i} for i in range(3)])
    received: list[Event] = []
    with client.subscribe("w") as stream:
        for event in stream:
            received.append(event)
            if len(received) == 3:
                wait_until(lambda: server_thread.parked_followers == 1)
                expected += client.append_events(
                    [{"channel": "events", "payload": 10 + i} for i in range(2)]
                )
            if len(received) == 5:
                # The server records delivery once the message is sent; a stream
                # cut before that would get the message again (at least once).
                wait_until(lambda: client.get_subscription("w").cursor == received[-1].cursor)
                break
    assert received == expected
    wait_until(lambda: server_thread.parked_followers == 0)  # the stream was cancelled


def test_breaking_out_of_subscribe_ends_the_server_stream(
    client: SSSNClient, server_thread: ServerThread
) -> None:
    client.create_channel({"name": "events"})
    client.create_subscription("events", subscription_id="w")
    client.append_event({"channel": "events"})
    for event in client.subscribe("w"):
        wait_until(lambda cursor=event.cursor: client.get_subscription("w").cursor == cursor)
        break  # the dropped stream is cancelled without an explicit close()
    wait_until(lambda: server_thread.parked_followers == 0)
    later = client.append_event({"channel": "events", "payload": "later"})
    assert client.pull_subscription("w") == [later]


def test_closing_the_client_ends_a_stream_blocked_in_another_thread(
    server_thread: ServerThread,
) -> None:
    owner = SSSNClient(server_thread.address, timeout=DEADLINE)
    owner.create_channel({"name": "events"})
    owner.create_subscription("events", subscription_id="w")
    stream = owner.subscribe("w")
    received: list[Event] = []
    reader = threading.Thread(target=lambda: received.extend(stream))
    reader.start()
    wait_until(lambda: server_thread.parked_followers == 1)
    owner.close()
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert received == [] and stream.closed


# Artifacts


def test_small_artifact_round_trips_with_its_metadata(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    event = client.append_event({"channel": "events"})
    data = b"\x00\x01binary\xff"
    artifact = client.write_artifact(
        data,
        channel="events",
        media_type="application/x-test",
        metadata={"name": "blob"},
        event_ids=(event.id or "",),
    )
    assert artifact == Artifact(
        id=artifact.id,
        channel="events",
        media_type="application/x-test",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        metadata={"name": "blob"},
        event_ids=(event.id or "",),
    )
    assert client.get_artifact(artifact.id) == artifact
    assert client.read_artifact(artifact.id) == data


def test_text_is_stored_as_utf8(client: SSSNClient) -> None:
    artifact = client.write_artifact("héllo")
    assert client.read_artifact(artifact.id) == "héllo".encode()
    assert artifact.media_type == "application/octet-stream"


def test_large_artifacts_are_streamed_both_ways(client: SSSNClient) -> None:
    data = bytes(range(256)) * (5 * 4096 + 7)  # ~5 MiB, not a multiple of the chunk size
    artifact = client.write_artifact(data)  # above the unary threshold: UploadArtifact
    assert (artifact.size, artifact.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert client.read_artifact(artifact.id) == data


def test_binary_files_are_streamed(client: SSSNClient) -> None:
    data = b"file payload " * 1000
    artifact = client.write_artifact(io.BytesIO(data), media_type="text/plain")
    assert artifact.size == len(data)
    assert client.read_artifact(artifact.id) == data


def test_empty_artifact(client: SSSNClient) -> None:
    artifact = client.write_artifact(b"")
    assert artifact.size == 0
    assert client.read_artifact(artifact.id) == b""


# Snapshots


def test_put_snapshot_stores_and_replaces_a_value(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    event = client.append_event({"channel": "events"})
    first = client.put_snapshot(
        "latest",
        {"count": 1},
        channel="events",
        schema="state.v1",
        source_event_id=event.id,
        metadata={"by": "tests"},
    )
    assert first.value["count"] == 1
    assert (first.channel, first.schema, first.source_event_id, first.metadata) == (
        "events",
        "state.v1",
        event.id,
        {"by": "tests"},
    )
    assert first.timestamp
    assert client.get_snapshot("latest") == first
    second = client.put_snapshot("latest", [1, "two"], timestamp=1_700_000_000.5)
    assert (second.value, second.channel, second.timestamp) == ([1, "two"], None, 1_700_000_000.5)
    assert client.get_snapshot("latest") == second


def test_put_snapshot_takes_a_snapshot_object(client: SSSNClient) -> None:
    stored = client.put_snapshot("ignored", Snapshot(name="x", value=None, schema="s"))
    assert (stored.name, stored.value, stored.schema) == ("ignored", None, "s")
    assert client.put_snapshot("plain", None).value is None


# Models and lifecycle


def test_models_convert_to_and_from_the_reference_json_shape(client: SSSNClient) -> None:
    client.create_channel({"name": "events"})
    stored = client.append_event({"channel": "events", "payload": {"a": 1}, "parent_ids": []})
    data = stored.to_dict()
    assert list(data) == [
        "id",
        "cursor",
        "channel",
        "timestamp",
        "source",
        "kind",
        "payload",
        "schema",
        "metadata",
        "correlation_id",
        "parent_ids",
    ]
    assert data["parent_ids"] == []
    assert Event.from_dict(data) == stored
    assert Event.from_dict({**data, "schema_ref": None, "schema": None}).schema is None


def test_a_closed_client_refuses_calls(server_thread: ServerThread) -> None:
    with SSSNClient(server_thread.address) as closing:
        closing.create_channel({"name": "events"})
        with pytest.raises(ChannelExistsError):
            closing.create_channel({"name": "events"})
    assert closing.closed
    with pytest.raises(ClientClosedError):
        closing.get_channel("events")
    with pytest.raises(ClientClosedError):
        closing.subscribe("w")
    closing.close()  # idempotent
