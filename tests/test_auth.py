"""Bearer-token auth with read/write/admin channel globs, enforced by a server interceptor."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sssn_proto.v1 import channel_pb2, snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from .conftest import ServerFactory
from .helpers import DEADLINE, event, failure, value

# Tokens generated for these tests only; they guard nothing.
TOKENS_TOML = """
[[tokens]]
principal = "root"
token = "root-token"
read = ["*"]
write = ["*"]
admin = ["*"]

[[tokens]]
principal = "reader"
token = "reader-token"
read = ["orders-*"]

[[tokens]]
principal = "writer"
token_sha256 = "{writer_sha256}"
read = ["orders-eu"]
write = ["orders-*"]
"""
WRITER_TOKEN = "writer-token"


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


ROOT, READER, WRITER = _auth("root-token"), _auth("reader-token"), _auth(WRITER_TOKEN)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    digest = hashlib.sha256(WRITER_TOKEN.encode()).hexdigest()
    path.write_text(TOKENS_TOML.format(writer_sha256=digest), encoding="utf-8")
    return path


@pytest.fixture
async def auth_server(start_server: ServerFactory, tokens_file: Path) -> SSSNServer:
    return await start_server(auth_tokens=tokens_file)  # type: ignore[no-any-return]


@pytest.fixture
async def stub(auth_server: SSSNServer) -> AsyncIterator[pb_grpc.StoreServiceStub]:
    async with grpc.aio.insecure_channel(auth_server.address) as channel:
        stub = pb_grpc.StoreServiceStub(channel)
        for name in ("orders-eu", "orders-us", "billing"):
            await stub.CreateChannel(
                pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)),
                metadata=ROOT,
                timeout=DEADLINE,
            )
        yield stub


async def _fails(call: Any, code: grpc.StatusCode, reason: str) -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    result = failure(caught.value)
    assert (result.code, result.reason, result.domain) == (code, reason, "sssn.dev")
    return result.metadata


DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "metadata",
    [None, _auth("wrong-token"), (("authorization", "root-token"),), _auth("")],
    ids=["no-token", "unknown-token", "no-bearer-scheme", "empty-token"],
)
async def test_calls_without_a_valid_token_are_unauthenticated(
    stub: pb_grpc.StoreServiceStub, metadata: Any
) -> None:
    call = stub.GetChannel(
        pb.GetChannelRequest(name="billing"), metadata=metadata, timeout=DEADLINE
    )
    await _fails(call, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_unauthenticated_streams_are_refused(stub: pb_grpc.StoreServiceStub) -> None:
    stream = stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id="x"), timeout=DEADLINE
    )
    await _fails(stream.read(), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_read_grant_reads_by_glob(stub: pb_grpc.StoreServiceStub) -> None:
    for name in ("orders-eu", "orders-us"):
        reply = await stub.GetChannel(
            pb.GetChannelRequest(name=name), metadata=READER, timeout=DEADLINE
        )
        assert reply.channel.name == name
    metadata = await _fails(
        stub.GetChannel(pb.GetChannelRequest(name="billing"), metadata=READER, timeout=DEADLINE),
        DENIED,
        "PERMISSION_DENIED",
    )
    assert metadata == {"channel": "billing", "permission": "read"}


async def test_read_only_grant_cannot_write(stub: pb_grpc.StoreServiceStub) -> None:
    call = stub.AppendEvent(
        pb.AppendEventRequest(event=event("orders-eu", {"n": 1})), metadata=READER, timeout=DEADLINE
    )
    metadata = await _fails(call, DENIED, "PERMISSION_DENIED")
    assert metadata["permission"] == "write"
    query = await stub.QueryEvents(
        pb.QueryEventsRequest(channel="orders-eu"), metadata=ROOT, timeout=DEADLINE
    )
    assert list(query.events) == []  # the refused call changed nothing


async def test_write_grant_appends_by_glob_and_only_there(stub: pb_grpc.StoreServiceStub) -> None:
    reply = await stub.AppendEvents(
        pb.AppendEventsRequest(events=[event("orders-eu", 1), event("orders-us", 2)]),
        metadata=WRITER,  # a token given as its sha256 in the file
        timeout=DEADLINE,
    )
    assert [e.channel for e in reply.events] == ["orders-eu", "orders-us"]
    mixed = stub.AppendEvents(
        pb.AppendEventsRequest(events=[event("orders-eu", 3), event("billing", 4)]),
        metadata=WRITER,
        timeout=DEADLINE,
    )
    assert (await _fails(mixed, DENIED, "PERMISSION_DENIED"))["channel"] == "billing"


async def test_admin_grant_is_needed_to_create(stub: pb_grpc.StoreServiceStub) -> None:
    create = stub.CreateChannel(
        pb.CreateChannelRequest(channel=channel_pb2.Channel(name="orders-new")),
        metadata=WRITER,
        timeout=DEADLINE,
    )
    assert (await _fails(create, DENIED, "PERMISSION_DENIED"))["permission"] == "admin"
    subscribe = stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel="orders-eu", subscription_id="s"),
        metadata=READER,
        timeout=DEADLINE,
    )
    await _fails(subscribe, DENIED, "PERMISSION_DENIED")


async def test_list_channels_returns_only_readable_channels(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    reader = await stub.ListChannels(pb.ListChannelsRequest(), metadata=READER, timeout=DEADLINE)
    assert [c.name for c in reader.channels] == ["orders-eu", "orders-us"]
    writer = await stub.ListChannels(pb.ListChannelsRequest(), metadata=WRITER, timeout=DEADLINE)
    assert [c.name for c in writer.channels] == ["orders-eu"]
    root = await stub.ListChannels(pb.ListChannelsRequest(), metadata=ROOT, timeout=DEADLINE)
    assert [c.name for c in root.channels] == ["billing", "orders-eu", "orders-us"]


async def test_subscription_streams_are_authorized_for_their_channel(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    for channel in ("billing", "orders-eu"):
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel=channel, subscription_id=f"sub-{channel}"),
            metadata=ROOT,
            timeout=DEADLINE,
        )
    await stub.AppendEvent(
        pb.AppendEventRequest(event=event("orders-eu", 1)), metadata=ROOT, timeout=DEADLINE
    )
    forbidden = stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id="sub-billing"),
        metadata=READER,
        timeout=DEADLINE,
    )
    # Outside the grant, a subscription is answered as missing.
    await _fails(forbidden.read(), NOT_FOUND, "SUBSCRIPTION_NOT_FOUND")
    get = stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id="sub-billing"), metadata=READER, timeout=DEADLINE
    )
    await _fails(get, NOT_FOUND, "SUBSCRIPTION_NOT_FOUND")
    allowed = stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id="sub-orders-eu"),
        metadata=READER,
        timeout=DEADLINE,
    )
    events = [e.payload.number_value async for message in allowed for e in message.events]
    assert events == [1]


async def test_events_by_id_are_authorized_by_their_channel(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    stored = await stub.AppendEvent(
        pb.AppendEventRequest(event=event("billing", 1)), metadata=ROOT, timeout=DEADLINE
    )
    get = stub.GetEvent(pb.GetEventRequest(id=stored.event.id), metadata=READER, timeout=DEADLINE)
    # An event outside the grant is answered exactly as a missing one.
    assert await _fails(get, NOT_FOUND, "EVENT_NOT_FOUND") == {"event_id": stored.event.id}
    missing = stub.GetEvent(pb.GetEventRequest(id="nope"), metadata=READER, timeout=DEADLINE)
    await _fails(missing, NOT_FOUND, "EVENT_NOT_FOUND")


async def _upload(channel: str) -> AsyncIterator[pb.UploadArtifactRequest]:
    yield pb.UploadArtifactRequest(header=pb.UploadArtifactHeader(channel=channel))
    yield pb.UploadArtifactRequest(data=b"payload")


async def test_artifacts_are_authorized_by_their_channel_or_star(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    mine = await stub.WriteArtifact(
        pb.WriteArtifactRequest(data=b"x", channel="orders-eu"), metadata=WRITER, timeout=DEADLINE
    )
    channelless = stub.WriteArtifact(
        pb.WriteArtifactRequest(data=b"x"), metadata=WRITER, timeout=DEADLINE
    )
    assert (await _fails(channelless, DENIED, "PERMISSION_DENIED"))["channel"] == ""
    upload = stub.UploadArtifact(_upload("billing"), metadata=WRITER, timeout=DEADLINE)
    assert (await _fails(upload, DENIED, "PERMISSION_DENIED"))["channel"] == "billing"
    uploaded = await stub.UploadArtifact(_upload("orders-us"), metadata=WRITER, timeout=DEADLINE)
    assert uploaded.artifact.size == len(b"payload")

    got = await stub.GetArtifact(
        pb.GetArtifactRequest(id=mine.artifact.id), metadata=READER, timeout=DEADLINE
    )
    assert got.artifact.channel == "orders-eu"
    root_only = await stub.WriteArtifact(
        pb.WriteArtifactRequest(data=b"x"), metadata=ROOT, timeout=DEADLINE
    )
    read = stub.ReadArtifact(
        pb.ReadArtifactRequest(id=root_only.artifact.id), metadata=READER, timeout=DEADLINE
    )
    await _fails(read.read(), NOT_FOUND, "ARTIFACT_NOT_FOUND")


async def test_snapshots_cannot_be_taken_over_from_another_channel(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    def put(channel: str) -> pb.PutSnapshotRequest:
        return pb.PutSnapshotRequest(
            snapshot=snapshot_pb2.Snapshot(name="state", channel=channel, value=value(1))
        )

    await stub.PutSnapshot(put("billing"), metadata=ROOT, timeout=DEADLINE)
    takeover = stub.PutSnapshot(put("orders-eu"), metadata=WRITER, timeout=DEADLINE)
    # Refused without naming the channel, which the writer may not read.
    assert await _fails(takeover, DENIED, "PERMISSION_DENIED") == {
        "channel": "",
        "permission": "write",
    }
    get = stub.GetSnapshot(pb.GetSnapshotRequest(name="state"), metadata=READER, timeout=DEADLINE)
    await _fails(get, NOT_FOUND, "SNAPSHOT_NOT_FOUND")


async def test_health_stays_open_without_a_token(auth_server: SSSNServer) -> None:
    async with grpc.aio.insecure_channel(auth_server.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=DEADLINE
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_tokens_file_may_be_json(start_server: ServerFactory, tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"principal": "p", "token": "t", "read": ["*"]}]}))
    server = await start_server(auth_tokens=path)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.StoreServiceStub(channel)
        await stub.ListChannels(pb.ListChannelsRequest(), metadata=_auth("t"), timeout=DEADLINE)
        denied = stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="c")),
            metadata=_auth("t"),
            timeout=DEADLINE,
        )
        await _fails(denied, DENIED, "PERMISSION_DENIED")


@pytest.mark.parametrize(
    "text",
    [
        "tokens = []",
        '[[tokens]]\nprincipal = "p"\nread = ["*"]',
        '[[tokens]]\nprincipal = "p"\ntoken = "t"\ntoken_sha256 = "00"',
        '[[tokens]]\nprincipal = "p"\ntoken_sha256 = "abc"',
        '[[tokens]]\nprincipal = "p"\ntoken = "t"\nread = "*"',
        "not toml [",
    ],
)
async def test_malformed_tokens_file_fails_the_start(
    start_server: ServerFactory, tmp_path: Path, text: str
) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokens\.toml"):
        await start_server(auth_tokens=path)


async def test_subscription_management_needs_admin_and_listing_needs_read(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel="orders-eu", subscription_id="managed"),
        metadata=ROOT,
        timeout=DEADLINE,
    )
    seek = stub.SeekSubscription(
        pb.SeekSubscriptionRequest(subscription_id="managed", cursor=0),
        metadata=READER,
        timeout=DEADLINE,
    )
    assert (await _fails(seek, DENIED, "PERMISSION_DENIED"))["permission"] == "admin"
    delete = stub.DeleteSubscription(
        pb.DeleteSubscriptionRequest(subscription_id="managed"), metadata=READER, timeout=DEADLINE
    )
    assert (await _fails(delete, DENIED, "PERMISSION_DENIED"))["permission"] == "admin"
    everything = stub.ListSubscriptions(
        pb.ListSubscriptionsRequest(), metadata=READER, timeout=DEADLINE
    )
    await _fails(everything, DENIED, "PERMISSION_DENIED")
    readable = await stub.ListSubscriptions(
        pb.ListSubscriptionsRequest(channel="orders-eu"), metadata=READER, timeout=DEADLINE
    )
    assert [s.id for s in readable.subscriptions] == ["managed"]
