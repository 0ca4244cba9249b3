"""What a token may not read stays hidden: payloads, channel names, existence and links."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from sssn_proto.v1 import channel_pb2, snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from .conftest import ServerFactory
from .helpers import DEADLINE, RpcFailure, event, failure, value

# Tokens generated for these tests only; they guard nothing.
TOKENS_TOML = """
[[tokens]]
principal = "root"
token = "root-token"
read = ["*"]
write = ["*"]
admin = ["*"]

[[tokens]]
principal = "scribe"
token = "scribe-token"
write = ["orders-*"]
admin = ["orders-*"]

[[tokens]]
principal = "reader"
token = "reader-token"
read = ["orders-*"]

[[tokens]]
principal = "linker"
token = "linker-token"
read = ["orders-*"]
write = ["orders-*"]
"""


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


ROOT, SCRIBE = _auth("root-token"), _auth("scribe-token")
READER, LINKER = _auth("reader-token"), _auth("linker-token")
NOT_FOUND = grpc.StatusCode.NOT_FOUND
SECRET = {"card": "4111-1111"}


@pytest.fixture
async def stub(start_server: ServerFactory, tmp_path: Path) -> AsyncIterator[Any]:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS_TOML, encoding="utf-8")
    server: SSSNServer = await start_server(auth_tokens=tokens)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.StoreServiceStub(channel)
        for name in ("orders-eu", "billing"):
            await stub.CreateChannel(
                pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)),
                metadata=ROOT,
                timeout=DEADLINE,
            )
        yield stub


async def _failure(call: Awaitable[Any]) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return failure(caught.value)


async def _reappend(stub: Any, method: str, metadata: Any, message: Any) -> tuple[Any, bool]:
    """Appends one event through `method`; returns the event answered and `abridged`."""
    if method == "AppendEvent":
        reply = await stub.AppendEvent(
            pb.AppendEventRequest(event=message), metadata=metadata, timeout=DEADLINE
        )
        return reply.event, reply.abridged
    if method == "AppendEvents":
        replies = await stub.AppendEvents(
            pb.AppendEventsRequest(events=[message]), metadata=metadata, timeout=DEADLINE
        )
        (only,) = replies.events
        return only, replies.abridged
    stream = stub.AppendEventStream(metadata=metadata, timeout=DEADLINE)
    await stream.write(pb.AppendEventStreamRequest(events=[message]))
    await stream.done_writing()
    (response,) = [response async for response in stream]
    (result,) = response.results
    assert result.WhichOneof("result") == "event", result
    return result.event, response.abridged


@pytest.mark.parametrize("method", ["AppendEvent", "AppendEvents", "AppendEventStream"])
async def test_reappend_without_read_shows_ids_and_cursor_but_no_payload(
    stub: Any, method: str
) -> None:
    stored = (
        await stub.AppendEvent(
            pb.AppendEventRequest(
                event=event("orders-eu", SECRET, id="paid-1", source="till", kind="paid")
            ),
            metadata=ROOT,
            timeout=DEADLINE,
        )
    ).event

    retried, abridged = await _reappend(stub, method, SCRIBE, event("orders-eu", id="paid-1"))
    assert abridged
    assert (retried.id, retried.channel, retried.cursor) == ("paid-1", "orders-eu", stored.cursor)
    assert retried.timestamp == stored.timestamp
    assert not retried.HasField("payload")
    assert (retried.source, retried.kind) == ("", "")

    # A token that reads the channel still gets the event as stored.
    full, abridged = await _reappend(stub, method, ROOT, event("orders-eu", id="paid-1"))
    assert not abridged
    assert full == stored


async def test_conflicts_do_not_name_a_channel_the_caller_cannot_read(stub: Any) -> None:
    await stub.AppendEvent(
        pb.AppendEventRequest(event=event("billing", SECRET, id="inv-1")),
        metadata=ROOT,
        timeout=DEADLINE,
    )
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel="billing", subscription_id="sub-1"),
        metadata=ROOT,
        timeout=DEADLINE,
    )
    clash = event("orders-eu", id="inv-1")

    single = await _failure(
        stub.AppendEvent(pb.AppendEventRequest(event=clash), metadata=SCRIBE, timeout=DEADLINE)
    )
    batch = await _failure(
        stub.AppendEvents(pb.AppendEventsRequest(events=[clash]), metadata=SCRIBE, timeout=DEADLINE)
    )
    for refused in (single, batch):
        assert (refused.code, refused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "EVENT_EXISTS")
        assert refused.metadata == {"event_id": "inv-1"}
        assert refused.message == "Event id inv-1 already exists in another channel"

    stream = stub.AppendEventStream(metadata=SCRIBE, timeout=DEADLINE)
    await stream.write(pb.AppendEventStreamRequest(events=[clash]))
    await stream.done_writing()
    (result,) = [result async for response in stream for result in response.results]
    assert result.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert "billing" not in str(result.error)

    subscription = await _failure(
        stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel="orders-eu", subscription_id="sub-1"),
            metadata=SCRIBE,
            timeout=DEADLINE,
        )
    )
    assert subscription.reason == "SUBSCRIPTION_EXISTS"
    assert subscription.metadata == {"subscription_id": "sub-1"}
    assert "billing" not in subscription.message

    # A caller that may read the other channel is told which one it is.
    named = await _failure(
        stub.AppendEvent(pb.AppendEventRequest(event=clash), metadata=ROOT, timeout=DEADLINE)
    )
    assert named.metadata == {"event_id": "inv-1", "channel": "billing"}


Call = Callable[[Any, str], Awaitable[Any]]


def _unary(method: str, build: Callable[[str], Any], metadata: Any = READER) -> Call:
    return lambda stub, name: getattr(stub, method)(
        build(name), metadata=metadata, timeout=DEADLINE
    )


def _streamed(method: str, build: Callable[[str], Any]) -> Call:
    return lambda stub, name: getattr(stub, method)(
        build(name), metadata=READER, timeout=DEADLINE
    ).read()


# Each call, given the id of a resource in a channel the reader may not read
# (`kind` of resource) or a missing id.
BY_ID: dict[str, tuple[str, Call]] = {
    "GetEvent": ("event", _unary("GetEvent", lambda i: pb.GetEventRequest(id=i))),
    "GetSubscription": (
        "subscription",
        _unary("GetSubscription", lambda i: pb.GetSubscriptionRequest(subscription_id=i)),
    ),
    "PullSubscription": (
        "subscription",
        _streamed("PullSubscription", lambda i: pb.PullSubscriptionRequest(subscription_id=i)),
    ),
    "PullSubscription-bad-limit": (
        "subscription",
        _streamed(
            "PullSubscription", lambda i: pb.PullSubscriptionRequest(subscription_id=i, limit=0)
        ),
    ),
    "AckSubscription": (
        "subscription",
        _unary("AckSubscription", lambda i: pb.AckSubscriptionRequest(subscription_id=i)),
    ),
    "AckSubscription-bad-cursor": (
        "subscription",
        _unary(
            "AckSubscription", lambda i: pb.AckSubscriptionRequest(subscription_id=i, cursor=-1)
        ),
    ),
    "SeekSubscription": (
        "subscription",
        _unary(
            "SeekSubscription", lambda i: pb.SeekSubscriptionRequest(subscription_id=i, cursor=0)
        ),
    ),
    "SeekSubscription-no-position": (
        "subscription",
        _unary("SeekSubscription", lambda i: pb.SeekSubscriptionRequest(subscription_id=i)),
    ),
    "DeleteSubscription": (
        "subscription",
        _unary("DeleteSubscription", lambda i: pb.DeleteSubscriptionRequest(subscription_id=i)),
    ),
    "GetArtifact": ("artifact", _unary("GetArtifact", lambda i: pb.GetArtifactRequest(id=i))),
    "ReadArtifact": (
        "artifact",
        _streamed("ReadArtifact", lambda i: pb.ReadArtifactRequest(id=i)),
    ),
    "GetSnapshot": ("snapshot", _unary("GetSnapshot", lambda i: pb.GetSnapshotRequest(name=i))),
}


async def _hidden_resources(stub: Any) -> dict[str, str]:
    """Creates one resource of each kind in `billing`; returns their ids by kind."""
    stored = await stub.AppendEvent(
        pb.AppendEventRequest(event=event("billing", SECRET, id="inv-7")),
        metadata=ROOT,
        timeout=DEADLINE,
    )
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel="billing", subscription_id="ledger"),
        metadata=ROOT,
        timeout=DEADLINE,
    )
    artifact = await stub.WriteArtifact(
        pb.WriteArtifactRequest(data=b"pdf", channel="billing"), metadata=ROOT, timeout=DEADLINE
    )
    await stub.PutSnapshot(
        pb.PutSnapshotRequest(
            snapshot=snapshot_pb2.Snapshot(name="balance", channel="billing", value=value(SECRET))
        ),
        metadata=ROOT,
        timeout=DEADLINE,
    )
    return {
        "event": stored.event.id,
        "subscription": "ledger",
        "artifact": artifact.artifact.id,
        "snapshot": "balance",
    }


def _shape(refused: RpcFailure, resource_id: str) -> tuple[Any, ...]:
    """What the caller learns, with the id it sent written as ID."""
    return (
        refused.code,
        refused.reason,
        refused.domain,
        refused.message.replace(resource_id, "ID"),
        {key: "ID" if v == resource_id else v for key, v in refused.metadata.items()},
        refused.fields,
    )


@pytest.mark.parametrize("case", sorted(BY_ID))
async def test_resources_outside_the_grant_are_answered_exactly_as_missing(
    stub: Any, case: str
) -> None:
    kind, call = BY_ID[case]
    hidden = (await _hidden_resources(stub))[kind]
    missing = f"no-such-{kind}"
    answer_hidden = await _failure(call(stub, hidden))
    answer_missing = await _failure(call(stub, missing))
    assert _shape(answer_hidden, hidden) == _shape(answer_missing, missing)
    assert answer_hidden.code in (NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    assert "billing" not in answer_hidden.message
    # The resource is still there, unchanged, for a token that may read it.
    if kind == "subscription":
        kept = await stub.GetSubscription(
            pb.GetSubscriptionRequest(subscription_id=hidden), metadata=ROOT, timeout=DEADLINE
        )
        assert (kept.subscription.channel, kept.subscription.cursor) == ("billing", 0)


async def _upload(header: pb.UploadArtifactHeader) -> AsyncIterator[pb.UploadArtifactRequest]:
    yield pb.UploadArtifactRequest(header=header)
    yield pb.UploadArtifactRequest(data=b"attachment")


LINKS: dict[str, Callable[[Any, str], Awaitable[Any]]] = {
    "AppendEvent": lambda stub, link: stub.AppendEvent(
        pb.AppendEventRequest(event=event("orders-eu", 1, parent_ids=[link])),
        metadata=LINKER,
        timeout=DEADLINE,
    ),
    "AppendEvents": lambda stub, link: stub.AppendEvents(
        pb.AppendEventsRequest(
            events=[event("orders-eu", 1), event("orders-eu", 2, parent_ids=["ok", link])]
        ),
        metadata=LINKER,
        timeout=DEADLINE,
    ),
    "WriteArtifact": lambda stub, link: stub.WriteArtifact(
        pb.WriteArtifactRequest(data=b"x", channel="orders-eu", event_ids=["ok", link]),
        metadata=LINKER,
        timeout=DEADLINE,
    ),
    "UploadArtifact": lambda stub, link: stub.UploadArtifact(
        _upload(pb.UploadArtifactHeader(channel="orders-eu", event_ids=[link])),
        metadata=LINKER,
        timeout=DEADLINE,
    ),
    "PutSnapshot": lambda stub, link: stub.PutSnapshot(
        pb.PutSnapshotRequest(
            snapshot=snapshot_pb2.Snapshot(
                name="linked", channel="orders-eu", value=value(1), source_event_id=link
            )
        ),
        metadata=LINKER,
        timeout=DEADLINE,
    ),
}


async def _stored_in_orders(stub: Any) -> list[str]:
    query = await stub.QueryEvents(
        pb.QueryEventsRequest(channel="orders-eu"), metadata=ROOT, timeout=DEADLINE
    )
    return [stored.id for stored in query.events]


@pytest.mark.parametrize("method", sorted(LINKS))
async def test_links_to_events_the_caller_cannot_read_are_answered_as_missing(
    stub: Any, method: str
) -> None:
    for channel, event_id in (("billing", "inv-9"), ("orders-eu", "ok")):
        await stub.AppendEvent(
            pb.AppendEventRequest(event=event(channel, SECRET, id=event_id)),
            metadata=ROOT,
            timeout=DEADLINE,
        )
    link = LINKS[method]
    hidden = await _failure(link(stub, "inv-9"))
    missing = await _failure(link(stub, "no-such-event"))
    assert (hidden.code, hidden.reason) == (NOT_FOUND, "EVENT_NOT_FOUND")
    assert _shape(hidden, "inv-9") == _shape(missing, "no-such-event")
    assert hidden.metadata == {"event_id": "inv-9"}
    # Nothing was stored.
    assert await _stored_in_orders(stub) == ["ok"]
    snapshot = stub.GetSnapshot(
        pb.GetSnapshotRequest(name="linked"), metadata=ROOT, timeout=DEADLINE
    )
    assert (await _failure(snapshot)).reason == "SNAPSHOT_NOT_FOUND"
    # Links the caller may read are accepted.
    await link(stub, "ok")


async def test_append_stream_refuses_only_the_event_linking_to_an_unreadable_one(
    stub: Any,
) -> None:
    await stub.AppendEvent(
        pb.AppendEventRequest(event=event("billing", SECRET, id="inv-3")),
        metadata=ROOT,
        timeout=DEADLINE,
    )
    stream = stub.AppendEventStream(metadata=LINKER, timeout=DEADLINE)
    await stream.write(
        pb.AppendEventStreamRequest(
            events=[
                event("orders-eu", 1, id="a"),
                event("orders-eu", 2, parent_ids=["inv-3"]),
                event("orders-eu", 3, id="c", parent_ids=["a"]),
            ]
        )
    )
    await stream.write(
        pb.AppendEventStreamRequest(events=[event("orders-eu", 4, parent_ids=["c", "inv-3"])])
    )
    await stream.done_writing()
    results = [result async for response in stream for result in response.results]
    assert [result.WhichOneof("result") for result in results] == [
        "event",
        "error",
        "event",
        "error",
    ]
    for refused in (results[1].error, results[3].error):
        assert refused.code == NOT_FOUND.value[0]
        assert refused.message == "Event not found: inv-3"
    assert await _stored_in_orders(stub) == ["a", "c"]


async def test_a_parent_earlier_in_the_same_batch_is_accepted(stub: Any) -> None:
    # The scribe may read nothing: a parent stored before its call would be
    # hidden from it, but one appended in the same call is its own.
    stored = await stub.AppendEvents(
        pb.AppendEventsRequest(
            events=[event("orders-eu", 1, id="first"), event("orders-eu", 2, parent_ids=["first"])]
        ),
        metadata=SCRIBE,
        timeout=DEADLINE,
    )
    assert stored.events[0].id == "first"
    assert await _stored_in_orders(stub) == [e.id for e in stored.events]
    later = await _failure(
        stub.AppendEvent(
            pb.AppendEventRequest(event=event("orders-eu", 3, parent_ids=["first"])),
            metadata=SCRIBE,
            timeout=DEADLINE,
        )
    )
    assert (later.code, later.reason) == (NOT_FOUND, "EVENT_NOT_FOUND")
