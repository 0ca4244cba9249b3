"""Documented limits: every accepted write stays readable by a stock client at default limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from sssn_proto.v1 import artifact_pb2, channel_pb2, event_pb2, snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.domain.models import MAX_JSON_DEPTH
from sssn_server.domain.validation import MAX_NAME_BYTES

from .helpers import DEADLINE, event, failure, struct, value

# What a stock gRPC client accepts in one message when nobody raises it.
STOCK_RECEIVE_LIMIT = 4 * 1024 * 1024
MiB = 1 << 20


def nested(depth: int, *, objects: bool = True) -> Any:
    """A JSON value with `depth` levels of objects (or arrays) around a number."""
    data: Any = 1
    for _ in range(depth):
        data = {"a": data} if objects else [data]
    return data


async def pull_all(stub: pb_grpc.StoreServiceStub, subscription_id: str) -> list[event_pb2.Event]:
    delivered: list[event_pb2.Event] = []
    async for message in stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id=subscription_id, limit=10_000),
        timeout=DEADLINE,
    ):
        assert message.ByteSize() < STOCK_RECEIVE_LIMIT
        delivered.extend(message.events)
    return delivered


async def query_count(stub: pb_grpc.StoreServiceStub, channel: str) -> int:
    response = await stub.QueryEvents(
        pb.QueryEventsRequest(channel=channel, limit=10_000), timeout=DEADLINE
    )
    return len(response.events)


async def test_an_event_over_the_size_limit_is_refused_and_not_stored(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    name = await make_channel("big")
    # Just under the 4 MiB a request may carry: accepted by the transport,
    # but its stored form could not be delivered to a stock client.
    for size in (MiB + 1, STOCK_RECEIVE_LIMIT - 200):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.AppendEvent(
                pb.AppendEventRequest(event=event(name, "x" * size)), timeout=DEADLINE
            )
        refused = failure(caught.value)
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.reason == "EVENT_TOO_LARGE"
        assert refused.fields == ["event"]
        assert refused.metadata["max_bytes"] == str(MiB)
    assert await query_count(stub, name) == 0


async def test_the_largest_event_accepted_is_delivered_to_a_stock_client(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    name = await make_channel("edge")
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=name, subscription_id="reader"), timeout=DEADLINE
    )
    # Three near-limit events: their pull must be split into messages that fit.
    stored = []
    for index in range(3):
        response = await stub.AppendEvent(
            pb.AppendEventRequest(event=event(name, "y" * (MiB - 100), id=f"e{index}")),
            timeout=DEADLINE,
        )
        stored.append(response.event.cursor)
    delivered = await pull_all(stub, "reader")
    assert [each.cursor for each in delivered] == stored
    got = await stub.GetEvent(pb.GetEventRequest(id="e1"), timeout=DEADLINE)
    assert got.event.payload.string_value == "y" * (MiB - 100)
    page = await stub.QueryEvents(pb.QueryEventsRequest(channel=name, limit=3), timeout=DEADLINE)
    assert [each.cursor for each in page.events] == stored
    assert not page.truncated


async def test_a_query_page_is_cut_to_fit_and_says_so(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    name = await make_channel("pages")
    cursors = []
    for index in range(6):
        response = await stub.AppendEvent(
            pb.AppendEventRequest(event=event(name, "z" * (900 * 1024), id=f"q{index}")),
            timeout=DEADLINE,
        )
        cursors.append(response.event.cursor)
    seen: list[int] = []
    after = 0
    while True:
        page = await stub.QueryEvents(
            pb.QueryEventsRequest(channel=name, after_cursor=after, limit=100), timeout=DEADLINE
        )
        assert page.ByteSize() < STOCK_RECEIVE_LIMIT
        seen.extend(each.cursor for each in page.events)
        if not page.truncated:
            break
        assert len(page.events) < 6
        after = page.events[-1].cursor
    assert seen == cursors


async def test_a_batch_whose_full_acknowledgement_would_not_fit_is_acknowledged_abridged(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    name = await make_channel("batch")
    events = [
        event(name, "p" * 300, source="producer", metadata=struct({"n": index}))
        for index in range(10_000)
    ]
    request = pb.AppendEventsRequest(events=events)
    assert request.ByteSize() < STOCK_RECEIVE_LIMIT
    response = await stub.AppendEvents(request, timeout=DEADLINE)  # a stock client reads it
    assert response.abridged
    assert len(response.events) == 10_000
    first = response.events[0]
    assert first.id and first.channel == name and first.cursor and first.HasField("timestamp")
    assert not first.HasField("payload") and not first.source
    page = await stub.QueryEvents(
        pb.QueryEventsRequest(channel=name, limit=10_000), timeout=DEADLINE
    )
    stored = list(page.events)
    while page.truncated:
        page = await stub.QueryEvents(
            pb.QueryEventsRequest(channel=name, after_cursor=stored[-1].cursor, limit=10_000),
            timeout=DEADLINE,
        )
        stored.extend(page.events)
    assert [(e.id, e.cursor) for e in stored] == [(e.id, e.cursor) for e in response.events]
    assert stored[0].payload.string_value == "p" * 300


async def test_a_small_batch_is_acknowledged_in_full(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    name = await make_channel("small")
    response = await stub.AppendEvents(
        pb.AppendEventsRequest(events=[event(name, {"n": 1}), event(name, {"n": 2})]),
        timeout=DEADLINE,
    )
    assert not response.abridged
    assert [each.payload.struct_value["n"] for each in response.events] == [1, 2]


@pytest.mark.parametrize("objects", [True, False], ids=["objects", "arrays"])
async def test_json_nested_past_the_limit_is_refused(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any], objects: bool
) -> None:
    name = await make_channel("deep")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendEvent(
            pb.AppendEventRequest(event=event(name, nested(MAX_JSON_DEPTH + 1, objects=objects))),
            timeout=DEADLINE,
        )
    refused = failure(caught.value)
    assert (refused.code, refused.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAYLOAD_TOO_DEEP")
    assert refused.fields == ["event.payload"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendEvent(
            pb.AppendEventRequest(
                event=event(name, metadata=struct({"a": nested(MAX_JSON_DEPTH, objects=objects)}))
            ),
            timeout=DEADLINE,
        )
    assert failure(caught.value).fields == ["event.metadata"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PutSnapshot(
            pb.PutSnapshotRequest(
                snapshot=snapshot_pb2.Snapshot(
                    name="deep", value=value(nested(MAX_JSON_DEPTH + 1, objects=objects))
                )
            ),
            timeout=DEADLINE,
        )
    assert failure(caught.value).reason == "PAYLOAD_TOO_DEEP"
    assert await query_count(stub, name) == 0


async def test_json_at_the_depth_limit_reads_back_through_every_response(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    name = await make_channel("deepest")
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=name, subscription_id="deep-reader"),
        timeout=DEADLINE,
    )
    payload = nested(MAX_JSON_DEPTH)
    # The deepest response that carries an event: a result inside a stream answer.
    responses = stub.AppendEventStream(
        iter([pb.AppendEventStreamRequest(events=[event(name, payload, id="deep-1")])]),
        timeout=DEADLINE,
    )
    answers = [answer async for answer in responses]
    assert answers[0].results[0].event.id == "deep-1"
    await stub.AppendEvent(pb.AppendEventRequest(event=event(name, payload)), timeout=DEADLINE)
    delivered = await pull_all(stub, "deep-reader")
    assert len(delivered) == 2
    got = await stub.GetEvent(pb.GetEventRequest(id="deep-1"), timeout=DEADLINE)
    assert got.event.payload == value(payload)


async def test_names_and_texts_longer_than_the_limit_are_refused(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    longest = "n" * MAX_NAME_BYTES
    assert await make_channel(longest) == longest
    too_long = "n" * (MAX_NAME_BYTES + 1)
    # Multi-byte characters count as their UTF-8 bytes.
    wide = "é" * (MAX_NAME_BYTES // 2 + 1)
    for name in (too_long, wide):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await make_channel(name)
        refused = failure(caught.value)
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "LIMIT_EXCEEDED",
        )
        assert refused.metadata == {"limit": "max_name_bytes", "max": str(MAX_NAME_BYTES)}
    for field in ("id", "kind", "source", "schema", "correlation_id"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.AppendEvent(
                pb.AppendEventRequest(event=event(longest, **{field: too_long})),
                timeout=DEADLINE,
            )
        assert failure(caught.value).fields == [f"event.{field}"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel=longest, consumer=too_long), timeout=DEADLINE
        )
    assert failure(caught.value).fields == ["consumer"]
    assert await query_count(stub, longest) == 0


async def test_metadata_over_its_limit_is_refused(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    big = struct({"blob": "m" * (64 * 1024)})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="meta", metadata=big)),
            timeout=DEADLINE,
        )
    refused = failure(caught.value)
    assert refused.reason == "LIMIT_EXCEEDED"
    assert refused.metadata["limit"] == "max_metadata_bytes"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetChannel(pb.GetChannelRequest(name="meta"), timeout=DEADLINE)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    name = await make_channel("meta", metadata=struct({"blob": "m" * 60_000}))
    for request in (
        pb.CreateSubscriptionRequest(channel=name, metadata=big),
        pb.WriteArtifactRequest(data=b"x", channel=name, metadata=big),
        pb.PutSnapshotRequest(snapshot=snapshot_pb2.Snapshot(name="s", metadata=big)),
    ):
        method = {
            pb.CreateSubscriptionRequest: stub.CreateSubscription,
            pb.WriteArtifactRequest: stub.WriteArtifact,
            pb.PutSnapshotRequest: stub.PutSnapshot,
        }[type(request)]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(request, timeout=DEADLINE)
        assert failure(caught.value).reason == "LIMIT_EXCEEDED", type(request)


async def test_a_snapshot_value_over_the_event_limit_is_refused(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    # A list of small numbers takes far more bytes as protobuf than as JSON
    # text: the limit measures what a reader receives.
    numbers = list(range(120_000))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PutSnapshot(
            pb.PutSnapshotRequest(snapshot=snapshot_pb2.Snapshot(name="s", value=value(numbers))),
            timeout=DEADLINE,
        )
    assert failure(caught.value).reason == "EVENT_TOO_LARGE"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSnapshot(pb.GetSnapshotRequest(name="s"), timeout=DEADLINE)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_linked_ids_are_bounded(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    name = await make_channel("links")
    await stub.AppendEvent(pb.AppendEventRequest(event=event(name, id="root")), timeout=DEADLINE)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendEvent(
            pb.AppendEventRequest(event=event(name, parent_ids=["root"] * 1_001)),
            timeout=DEADLINE,
        )
    refused = failure(caught.value)
    assert (refused.reason, refused.fields) == ("LIMIT_EXCEEDED", ["event.parent_ids"])
    assert refused.metadata == {"limit": "max_links", "max": "1000"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendEvents(
            pb.AppendEventsRequest(
                events=[event(name, parent_ids=["root"] * 1_000) for _ in range(11)]
            ),
            timeout=DEADLINE,
        )
    assert failure(caught.value).metadata["limit"] == "max_request_links"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.WriteArtifact(
            pb.WriteArtifactRequest(data=b"x", event_ids=[f"id{n}" for n in range(1_001)]),
            timeout=DEADLINE,
        )
    refused = failure(caught.value)
    assert (refused.reason, refused.fields) == ("LIMIT_EXCEEDED", ["event_ids"])
    assert await query_count(stub, name) == 1
    accepted = await stub.WriteArtifact(
        pb.WriteArtifactRequest(data=b"x", event_ids=["root"] * 1_000), timeout=DEADLINE
    )
    assert isinstance(accepted.artifact, artifact_pb2.Artifact)


async def test_a_pull_limit_above_the_maximum_is_lowered(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    name = await make_channel("lots")
    for _ in range(3):
        await stub.AppendEvents(
            pb.AppendEventsRequest(events=[event(name, n) for n in range(4_000)]),
            timeout=DEADLINE,
        )
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=name, subscription_id="greedy"), timeout=DEADLINE
    )
    delivered = 0
    async for message in stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id="greedy", limit=2**31 - 1), timeout=DEADLINE
    ):
        delivered += len(message.events)
    assert delivered == 10_000


async def test_list_pages_are_cut_to_fit(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    blob = struct({"blob": "c" * 60_000})
    names = [await make_channel(f"wide-{index:03d}", metadata=blob) for index in range(70)]
    listed: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stub.ListChannels(
            pb.ListChannelsRequest(page_size=1_000, page_token=token), timeout=DEADLINE
        )
        assert page.ByteSize() < STOCK_RECEIVE_LIMIT
        listed.extend(each.name for each in page.channels)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert listed == names
    assert pages > 1
    for name in names[:60]:
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel=name, subscription_id=f"s-{name}", metadata=blob),
            timeout=DEADLINE,
        )
    subscriptions: list[str] = []
    token = ""
    while True:
        listing = await stub.ListSubscriptions(
            pb.ListSubscriptionsRequest(page_size=1_000, page_token=token), timeout=DEADLINE
        )
        assert listing.ByteSize() < STOCK_RECEIVE_LIMIT
        subscriptions.extend(each.id for each in listing.subscriptions)
        token = listing.next_page_token
        if not token:
            break
    assert subscriptions == [f"s-{name}" for name in names[:60]]
