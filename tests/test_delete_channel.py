"""DeleteChannel: a channel goes with its events, subscriptions, snapshots and artifact records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sssn_proto.v1 import channel_pb2, snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from .conftest import ServerFactory
from .helpers import DEADLINE, event, failure, value
from .streams import AUTO, MANUAL, open_stream, read_message, stream_error

NOT_FOUND = grpc.StatusCode.NOT_FOUND


async def _delete(stub: Any, name: str, **options: Any) -> int:
    response = await stub.DeleteChannel(
        pb.DeleteChannelRequest(name=name), timeout=DEADLINE, **options
    )
    return int(response.deleted_events)


async def _fails(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = failure(caught.value)
    return error.code, error.reason


async def _append(stub: Any, channel: str, *payloads: Any, **fields: Any) -> list[Any]:
    response = await stub.AppendEvents(
        pb.AppendEventsRequest(events=[event(channel, p, **fields) for p in payloads]),
        timeout=DEADLINE,
    )
    return list(response.events)


async def _subscribe(stub: Any, channel: str, subscription_id: str) -> None:
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=channel, subscription_id=subscription_id),
        timeout=DEADLINE,
    )


async def _pull(stub: Any, subscription_id: str) -> list[Any]:
    events: list[Any] = []
    async for message in stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id=subscription_id), timeout=DEADLINE
    ):
        events.extend(message.events)
    return events


async def _head(stub: Any, subscription_id: str) -> int:
    response = await stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id=subscription_id), timeout=DEADLINE
    )
    return int(response.head_cursor)


async def _snapshot(stub: Any, name: str, **fields: Any) -> None:
    await stub.PutSnapshot(
        pb.PutSnapshotRequest(snapshot=snapshot_pb2.Snapshot(name=name, value=value(1), **fields)),
        timeout=DEADLINE,
    )


async def _artifact(stub: Any, data: bytes, **fields: Any) -> str:
    response = await stub.WriteArtifact(
        pb.WriteArtifactRequest(data=data, **fields), timeout=DEADLINE
    )
    return str(response.artifact.id)


async def test_deletes_events_subscriptions_snapshots_and_artifact_records(
    stub, make_channel
) -> None:
    await make_channel("doomed")
    await make_channel("kept")
    doomed = await _append(stub, "doomed", 1, 2, 3)
    (child,) = await _append(stub, "kept", 4, parent_ids=[doomed[0].id])
    for subscription_id in ("d1", "d2"):
        await _subscribe(stub, "doomed", subscription_id)
    await _subscribe(stub, "kept", "k")
    await _snapshot(stub, "doomed-state", channel="doomed", source_event_id=doomed[-1].id)
    await _snapshot(stub, "kept-state", channel="kept", source_event_id=doomed[-1].id)
    await _snapshot(stub, "global-state")
    doomed_artifact = await _artifact(stub, b"shared bytes", channel="doomed")
    kept_artifact = await _artifact(stub, b"shared bytes", channel="kept", event_ids=[doomed[1].id])

    assert await _delete(stub, "doomed") == 3

    gone = [
        stub.GetChannel(pb.GetChannelRequest(name="doomed"), timeout=DEADLINE),
        stub.QueryEvents(pb.QueryEventsRequest(channel="doomed"), timeout=DEADLINE),
        stub.DeleteChannel(pb.DeleteChannelRequest(name="doomed"), timeout=DEADLINE),
    ]
    for call in gone:
        assert await _fails(call) == (NOT_FOUND, "CHANNEL_NOT_FOUND")
    for stored in doomed:
        call = stub.GetEvent(pb.GetEventRequest(id=stored.id), timeout=DEADLINE)
        assert await _fails(call) == (NOT_FOUND, "EVENT_NOT_FOUND")
    for subscription_id in ("d1", "d2"):
        call = stub.GetSubscription(
            pb.GetSubscriptionRequest(subscription_id=subscription_id), timeout=DEADLINE
        )
        assert await _fails(call) == (NOT_FOUND, "SUBSCRIPTION_NOT_FOUND")
    call = stub.GetSnapshot(pb.GetSnapshotRequest(name="doomed-state"), timeout=DEADLINE)
    assert await _fails(call) == (NOT_FOUND, "SNAPSHOT_NOT_FOUND")
    call = stub.GetArtifact(pb.GetArtifactRequest(id=doomed_artifact), timeout=DEADLINE)
    assert await _fails(call) == (NOT_FOUND, "ARTIFACT_NOT_FOUND")

    # Other channels keep everything, including the ids that named deleted events.
    kept = await stub.GetEvent(pb.GetEventRequest(id=child.id), timeout=DEADLINE)
    assert list(kept.event.parent_ids) == [doomed[0].id]
    listed = await stub.ListSubscriptions(pb.ListSubscriptionsRequest(), timeout=DEADLINE)
    assert [s.id for s in listed.subscriptions] == ["k"]
    for name in ("kept-state", "global-state"):
        await stub.GetSnapshot(pb.GetSnapshotRequest(name=name), timeout=DEADLINE)
    artifact = await stub.GetArtifact(pb.GetArtifactRequest(id=kept_artifact), timeout=DEADLINE)
    assert list(artifact.artifact.event_ids) == [doomed[1].id]
    # A payload file shared with a deleted record is still read whole.
    chunks = stub.ReadArtifact(pb.ReadArtifactRequest(id=kept_artifact), timeout=DEADLINE)
    assert b"".join([message.data async for message in chunks]) == b"shared bytes"
    channels = await stub.ListChannels(pb.ListChannelsRequest(), timeout=DEADLINE)
    assert [c.name for c in channels.channels] == ["kept"]


async def test_a_channel_created_again_starts_empty(stub, make_channel) -> None:
    await make_channel("events")
    await _subscribe(stub, "events", "w")
    old = await _append(stub, "events", 1, 2, 3)
    assert [e.id for e in await _pull(stub, "w")] == [e.id for e in old]

    assert await _delete(stub, "events") == 3
    await make_channel("events", description="second life")
    await _subscribe(stub, "events", "w")

    queried = await stub.QueryEvents(pb.QueryEventsRequest(channel="events"), timeout=DEADLINE)
    assert list(queried.events) == []
    # Pulls read recent events from memory: none of the old ones may come back.
    assert await _pull(stub, "w") == []
    # Nothing was delivered on the new subscription, so nothing can be acked.
    code, reason = await _fails(
        stub.AckSubscription(
            pb.AckSubscriptionRequest(subscription_id="w", cursor=old[1].cursor),
            timeout=DEADLINE,
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD")
    new = await _append(stub, "events", 4)
    assert [e.id for e in await _pull(stub, "w")] == [new[0].id]
    # A deleted event's id is free again.
    (again,) = await _append(stub, "events", 5, id=old[0].id)
    assert again.cursor > new[0].cursor


async def test_cursors_are_never_reused_and_the_head_never_goes_back(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        for name in ("a", "b"):
            await stub.CreateChannel(
                pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)), timeout=DEADLINE
            )
        await _subscribe(stub, "a", "wa")
        await _append(stub, "a", 1)
        newest = await _append(stub, "b", 2, 3)
        head = newest[-1].cursor
        assert await _delete(stub, "b") == 2
        # PostgreSQL's deletion holds a cursor of its own (the commit feed
        # orders it among the appends): the head stays, or moves past it.
        after_deletion = await _head(stub, "wa")
        assert after_deletion in (head, head + 1)
    await server.stop(grace=0)

    server = await start_server()  # nothing kept in memory: all from the store
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        assert await _head(stub, "wa") == after_deletion
        (appended,) = await _append(stub, "a", 4)
        assert appended.cursor == after_deletion + 1


@pytest.mark.parametrize("ack_mode", [AUTO, MANUAL], ids=["auto", "manual"])
async def test_open_followers_end_with_subscription_not_found(
    server: SSSNServer, stub, make_channel, ack_mode: int
) -> None:
    await make_channel("events")
    await _subscribe(stub, "events", "w")
    call = open_stream(stub, "w", ack_mode=ack_mode)
    try:
        await _append(stub, "events", 1)
        assert len((await read_message(call)).events) == 1
        assert await _delete(stub, "events") == 1
        error = failure(await stream_error(call))
        assert (error.code, error.reason) == (NOT_FOUND, "SUBSCRIPTION_NOT_FOUND")
        assert server.service.stream_status("w") is None
    finally:
        call.cancel()


async def test_missing_and_malformed_names(stub) -> None:
    assert await _fails(_delete(stub, "ghost")) == (NOT_FOUND, "CHANNEL_NOT_FOUND")
    for name in ("", "a/b", ".."):
        code, reason = await _fails(_delete(stub, name))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD")


async def test_refused_on_a_read_only_store(start_server: ServerFactory) -> None:
    writable = await start_server()
    async with grpc.aio.insecure_channel(writable.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")), timeout=DEADLINE
        )
        await _append(stub, "events", 1)
    await writable.stop(grace=0)

    server = await start_server(read_only=True)
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        code, reason = await _fails(_delete(stub, "events"))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "STORE_READ_ONLY")
        queried = await stub.QueryEvents(pb.QueryEventsRequest(channel="events"), timeout=DEADLINE)
        assert len(queried.events) == 1


# Tokens generated for these tests only; they guard nothing.
TOKENS_TOML = """
[[tokens]]
principal = "root"
token = "root-token"
read = ["*"]
write = ["*"]
admin = ["*"]

[[tokens]]
principal = "ops"
token = "ops-token"
read = ["orders-*"]
admin = ["orders-*"]

[[tokens]]
principal = "writer"
token = "writer-token"
read = ["*"]
write = ["*"]
"""


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


ROOT, OPS, WRITER = _auth("root-token"), _auth("ops-token"), _auth("writer-token")


@pytest.fixture
async def auth_stub(
    start_server: ServerFactory, tmp_path: Path
) -> AsyncIterator[pb_grpc.StoreServiceStub]:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS_TOML, encoding="utf-8")
    server = await start_server(auth_tokens=tokens)
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        for name in ("orders-eu", "billing"):
            await stub.CreateChannel(
                pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)),
                metadata=ROOT,
                timeout=DEADLINE,
            )
        yield stub


async def test_needs_the_admin_grant_on_the_channel(auth_stub) -> None:
    denied = (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert await _fails(_delete(auth_stub, "orders-eu")) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "UNAUTHENTICATED",
    )
    # Read and write on every channel are not enough.
    assert await _fails(_delete(auth_stub, "orders-eu", metadata=WRITER)) == denied
    # Admin on `orders-*` covers orders-eu, and only that.
    assert await _fails(_delete(auth_stub, "billing", metadata=OPS)) == denied
    assert await _delete(auth_stub, "orders-eu", metadata=OPS) == 0
    gone = auth_stub.GetChannel(
        pb.GetChannelRequest(name="orders-eu"), metadata=OPS, timeout=DEADLINE
    )
    assert await _fails(gone) == (NOT_FOUND, "CHANNEL_NOT_FOUND")
    kept = await auth_stub.GetChannel(
        pb.GetChannelRequest(name="billing"), metadata=ROOT, timeout=DEADLINE
    )
    assert kept.channel.name == "billing"
