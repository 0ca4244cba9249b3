"""Every RPC of the contract has a client method: subscription admin, channel deletion,
abridged append acknowledgements and truncated query pages, against real servers."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest

from sssn_client import (
    AsyncSSSNClient,
    ChannelNotFoundError,
    Event,
    EventNotFoundError,
    InvalidPayloadError,
    SSSNClient,
    SubscriptionNotFoundError,
)
from sssn_client.cli import build_parser
from sssn_proto.v1 import event_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from . import client_fixtures
from .client_fixtures import ServerThread, wait_until
from .helpers import DEADLINE, value

client = client_fixtures.client
server_thread = client_fixtures.server_thread
aclient = client_fixtures.aclient

SERVICE = pb.DESCRIPTOR.services_by_name["StoreService"]

# RPCs whose client method is not the RPC's name in snake_case.
CLIENT_METHOD = {"UploadArtifact": "write_artifact"}  # write_artifact streams large payloads

# The `sssn` command of each RPC; None where the command line deliberately has none.
CLI_COMMAND: dict[str, str | None] = {
    "CreateChannel": "create-channel",
    "GetChannel": "get-channel",
    "ListChannels": "channels",
    "DeleteChannel": "delete-channel",
    "AppendEvent": "append",
    "AppendEvents": None,  # a batch of JSON events has no convenient command-line form
    "AppendEventStream": None,  # for long-running producers, not one-shot commands
    "GetEvent": "get-event",
    "QueryEvents": "query-events",
    "CreateSubscription": "create-subscription",
    "GetSubscription": "get-subscription",
    "ListSubscriptions": "list-subscriptions",
    "DeleteSubscription": "delete-subscription",
    "PullSubscription": "pull-subscription",
    "AckSubscription": None,  # acknowledges a manual stream's deliveries, held by its process
    "SeekSubscription": "seek-subscription",
    "WriteArtifact": "write-artifact",
    "UploadArtifact": "write-artifact",  # --file
    "GetArtifact": "get-artifact",
    "ReadArtifact": "read-artifact",
    "PutSnapshot": "put-snapshot",
    "GetSnapshot": "get-snapshot",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


RPCS = [method.name for method in SERVICE.methods]


@pytest.mark.parametrize("rpc", RPCS)
def test_every_rpc_has_a_method_in_both_clients(rpc: str) -> None:
    name = CLIENT_METHOD.get(rpc, _snake(rpc))
    sync_method = getattr(SSSNClient, name, None)
    async_method = getattr(AsyncSSSNClient, name, None)
    assert callable(sync_method), f"SSSNClient has no {name}() for {rpc}"
    assert callable(async_method), f"AsyncSSSNClient has no {name}() for {rpc}"
    # The asyncio client's unary methods are coroutines; streams are async iterators.
    assert not inspect.iscoroutinefunction(sync_method)
    if SERVICE.methods_by_name[rpc].server_streaming or rpc == "AppendEventStream":
        return
    assert inspect.iscoroutinefunction(async_method), f"AsyncSSSNClient.{name} is not async"


# The Node.js client's method of each RPC whose method is not the RPC's name
# in lowerCamelCase.
NODE_METHOD = {
    "PullSubscription": "follow",
    "UploadArtifact": "writeArtifact",
    "AckSubscription": "ack",
}
NODE_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "node" / "src" / "index.js"


def test_every_rpc_has_a_method_in_the_node_client() -> None:
    listing = subprocess.run(
        [
            "node",
            "--input-type=module",
            "-e",
            f"import {{ SSSNClient }} from {json.dumps(NODE_CLIENT.as_uri())};"
            " console.log(JSON.stringify(Object.getOwnPropertyNames(SSSNClient.prototype)));",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    methods = set(json.loads(listing.stdout))
    for rpc in RPCS:
        name = NODE_METHOD.get(rpc, rpc[0].lower() + rpc[1:])
        assert name in methods, f"the Node.js SSSNClient has no {name}() for {rpc}"


def test_every_rpc_has_a_command_or_a_reason_not_to() -> None:
    assert set(CLI_COMMAND) == set(RPCS), "decide the CLI command of each new RPC"
    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    available = set(commands.choices)
    for rpc, command in CLI_COMMAND.items():
        assert command is None or command in available, f"no `sssn {command}` for {rpc}"


# Subscriptions: list, delete, seek


def _orders(client: SSSNClient) -> list[Event]:
    client.create_channel({"name": "orders"})
    client.create_channel({"name": "audit"})
    return client.append_events(
        [{"channel": "orders", "kind": "placed", "payload": n} for n in range(5)]
    )


def test_list_subscriptions_orders_by_id_and_filters_by_channel(client: SSSNClient) -> None:
    stored = _orders(client)
    assert client.list_subscriptions() == []
    for subscription_id, channel in (("w2", "orders"), ("a1", "audit"), ("w1", "orders")):
        client.create_subscription(channel, subscription_id=subscription_id, consumer="pool")
    client.pull_subscription("w1", limit=2)
    listed = client.list_subscriptions()
    assert [s.id for s in listed] == ["a1", "w1", "w2"]
    assert [s.cursor for s in listed] == [0, stored[1].cursor, 0]
    assert listed[1] == client.get_subscription("w1")
    assert [s.id for s in client.list_subscriptions("orders")] == ["w1", "w2"]
    assert [s.id for s in client.list_subscriptions(channel="audit")] == ["a1"]
    with pytest.raises(ChannelNotFoundError):
        client.list_subscriptions("ghost")


def test_list_subscriptions_follows_the_server_pages(server_thread: ServerThread) -> None:
    server_thread.stop()
    server_thread.start(durability="normal")  # 1001 commits; no need to sync each
    with SSSNClient(server_thread.address, timeout=DEADLINE) as fresh:
        fresh.create_channel({"name": "orders"})
        ids = sorted(f"s{index:04}" for index in range(1001))
        for subscription_id in ids:
            fresh.create_subscription("orders", subscription_id=subscription_id)
        assert [s.id for s in fresh.list_subscriptions()] == ids


def test_delete_subscription_forgets_it_and_ends_its_stream(client: SSSNClient) -> None:
    _orders(client)
    client.create_subscription("orders", subscription_id="w")
    client.create_subscription("orders", subscription_id="kept")
    stream = client.subscribe("w")
    assert next(stream).payload == 0  # the stream is open on the server
    assert client.delete_subscription("w") is None
    with pytest.raises(SubscriptionNotFoundError):
        for _ in stream:  # the rest of the backlog, then the end of the stream
            pass
    with pytest.raises(SubscriptionNotFoundError):
        client.get_subscription("w")
    assert [s.id for s in client.list_subscriptions()] == ["kept"]
    with pytest.raises(SubscriptionNotFoundError) as caught:
        client.delete_subscription("w")
    assert caught.value.resource == {"subscription_id": "w"}


def test_seek_subscription_replays_and_skips_by_cursor(client: SSSNClient) -> None:
    stored = _orders(client)
    client.create_subscription("orders", subscription_id="w")
    assert len(client.pull_subscription("w")) == 5
    replayed = client.seek_subscription("w", cursor=stored[1].cursor)
    assert replayed.cursor == stored[1].cursor
    assert [e.payload for e in client.pull_subscription("w")] == [2, 3, 4]
    assert client.seek_subscription("w", cursor=0).cursor == 0
    assert [e.payload for e in client.pull_subscription("w", limit=1)] == [0]
    client.seek_subscription("w", cursor=stored[3].cursor)  # skip forward
    assert [e.payload for e in client.pull_subscription("w")] == [4]


def test_seek_subscription_by_timestamp(client: SSSNClient) -> None:
    client.create_channel({"name": "orders"})
    base = 1_700_000_000.0
    client.append_events(
        [{"channel": "orders", "timestamp": base + n, "payload": n} for n in range(4)]
    )
    client.create_subscription("orders", subscription_id="w")
    client.seek_subscription("w", timestamp=base + 2)
    assert [e.payload for e in client.pull_subscription("w")] == [2, 3]
    moment = datetime.fromtimestamp(base + 0.5, UTC).astimezone(timezone(timedelta(hours=2)))
    client.seek_subscription("w", timestamp=moment)  # aware datetimes, any offset
    assert [e.payload for e in client.pull_subscription("w")] == [1, 2, 3]


@pytest.mark.parametrize(
    "position",
    [
        {},
        {"cursor": 1, "timestamp": 1.0},
        {"cursor": "1"},
        {"cursor": True},
        {"timestamp": "yesterday"},
        {"timestamp": datetime(2024, 1, 1)},  # naive: its instant is ambiguous
    ],
    ids=["none", "both", "cursor_text", "cursor_bool", "timestamp_text", "naive_datetime"],
)
def test_seek_needs_exactly_one_usable_position(
    client: SSSNClient, position: dict[str, Any]
) -> None:
    with pytest.raises(InvalidPayloadError) as caught:
        client.seek_subscription("w", **position)
    assert caught.value.detail is None  # refused before any call


def test_seek_errors_from_the_server(client: SSSNClient) -> None:
    _orders(client)
    client.create_subscription("orders", subscription_id="w")
    with pytest.raises(InvalidPayloadError) as invalid:
        client.seek_subscription("w", cursor=-1)
    assert invalid.value.reason == "INVALID_PAYLOAD" and invalid.value.detail is not None
    with pytest.raises(SubscriptionNotFoundError):
        client.seek_subscription("ghost", cursor=0)


# Channels: delete


def test_delete_channel_removes_it_with_its_events_and_subscriptions(client: SSSNClient) -> None:
    _orders(client)
    client.append_event({"id": "kept", "channel": "audit"})
    client.create_subscription("orders", subscription_id="w")
    client.create_subscription("audit", subscription_id="a")
    client.put_snapshot("orders.total", 5, channel="orders")
    assert client.delete_channel("orders") == 5
    assert [c.name for c in client.list_channels()] == ["audit"]
    with pytest.raises(ChannelNotFoundError):
        client.query_events("orders")
    assert [s.id for s in client.list_subscriptions()] == ["a"]
    assert client.get_event("kept").channel == "audit"
    with pytest.raises(ChannelNotFoundError) as caught:
        client.delete_channel("orders")
    assert caught.value.resource == {"channel": "orders"}


# Abridged acknowledgements: the returned events keep what the caller sent

TOKENS = """
[[tokens]]
principal = "root"
token = "root-token"
read = ["*"]
write = ["*"]
admin = ["*"]

[[tokens]]
principal = "dropbox"
token = "drop-token"
write = ["inbox"]
"""
ROOT = {"authorization": "Bearer root-token"}
DROP = {"authorization": "Bearer drop-token"}


@pytest.fixture
def write_only(server_thread: ServerThread, tmp_path: Path) -> Iterator[str]:
    """A server with tokens, an `inbox` channel, and a token that may write it but not read it."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS, encoding="utf-8")
    server_thread.stop()
    server_thread.start(auth_tokens=tokens)
    with SSSNClient(server_thread.address, timeout=DEADLINE, metadata=ROOT) as root:
        root.create_channel({"name": "inbox"})
    yield server_thread.address


def _letter(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "channel": "inbox",
        "source": "mail",
        "kind": "letter",
        "payload": {"n": n, "text": "hello", "tags": [1, 2]},
        "schema": "mail.v1",
        "metadata": {"urgent": n % 2 == 0},
        "correlation_id": "thread-1",
        **fields,
    }


def _same_as_sent(acknowledged: Event, sent: dict[str, Any]) -> None:
    assert acknowledged.id and acknowledged.cursor and acknowledged.timestamp
    for name, given in sent.items():
        assert getattr(acknowledged, name) == given, name


def test_the_server_abridges_acknowledgements_for_a_write_only_token(write_only: str) -> None:
    """The premise of the tests below: the raw answer carries no payload."""
    with grpc.insecure_channel(write_only) as channel:
        response = pb_grpc.StoreServiceStub(channel).AppendEvent(
            pb.AppendEventRequest(event=event_pb2.Event(channel="inbox", kind="letter")),
            metadata=tuple(DROP.items()),
            timeout=DEADLINE,
        )
    assert response.abridged and response.event.cursor and not response.event.kind


def test_abridged_acknowledgements_keep_what_was_sent(write_only: str) -> None:
    with SSSNClient(write_only, timeout=DEADLINE, metadata=DROP) as dropbox:
        one = dropbox.append_event(Event.from_dict(_letter(0, parent_ids=())))
        _same_as_sent(one, _letter(0, parent_ids=()))
        batch = dropbox.append_events([_letter(1), _letter(2, id="letter-2")])
        for acknowledged, n in zip(batch, (1, 2), strict=True):
            _same_as_sent(acknowledged, _letter(n))
        assert batch[1].id == "letter-2"
        streamed = list(
            dropbox.append_event_stream([_letter(3), _letter(4, parent_ids=("ghost",))])
        )
        assert isinstance(streamed[0], Event)
        _same_as_sent(streamed[0], _letter(3))
        assert isinstance(streamed[1], EventNotFoundError)
        defaults = dropbox.append_event({"channel": "inbox"})
        assert (defaults.kind, defaults.payload, defaults.metadata) == ("event", None, {})
    with SSSNClient(write_only, timeout=DEADLINE, metadata=ROOT) as root:
        for acknowledged in (one, *batch, streamed[0], defaults):
            assert root.get_event(acknowledged.id or "") == acknowledged


def test_async_abridged_acknowledgements_keep_what_was_sent(write_only: str) -> None:
    async def send() -> list[Event]:
        async with AsyncSSSNClient(write_only, timeout=DEADLINE, metadata=DROP) as dropbox:
            one = await dropbox.append_event(_letter(0))
            batch = await dropbox.append_events([_letter(1)])
            streamed = [r async for r in dropbox.append_event_stream([_letter(2)])]
            return [one, *batch, *streamed]  # type: ignore[list-item]

    for n, acknowledged in enumerate(asyncio.run(send())):
        _same_as_sent(acknowledged, _letter(n))


def test_acknowledgements_too_large_for_one_response_keep_the_payloads(
    client: SSSNClient,
) -> None:
    client.create_channel({"name": "big"})
    # Four events of about 1 MB fit in a request but not in the 3 MiB answer budget.
    sent = [{"channel": "big", "kind": "blob", "payload": str(n) * 1_000_000} for n in range(4)]
    with grpc.insecure_channel(client.target) as channel:
        raw = pb_grpc.StoreServiceStub(channel).AppendEvents(
            pb.AppendEventsRequest(
                events=[event_pb2.Event(channel="big", payload=value(e["payload"])) for e in sent]
            ),
            timeout=DEADLINE,
        )
    assert raw.abridged and not raw.events[0].HasField("payload")  # the premise
    stored = client.append_events(sent)
    assert [e.payload for e in stored] == [e["payload"] for e in sent]
    assert [e.kind for e in stored] == ["blob"] * 4
    assert stored == client.query_events("big", after_cursor=raw.events[-1].cursor, limit=10)


def test_query_events_reads_past_pages_the_server_truncates(client: SSSNClient) -> None:
    client.create_channel({"name": "big"})
    sent = [{"channel": "big", "payload": str(n) * 1_000_000} for n in range(4)]
    for event in sent:
        client.append_event(event)
    with grpc.insecure_channel(client.target) as channel:
        raw = pb_grpc.StoreServiceStub(channel).QueryEvents(
            pb.QueryEventsRequest(channel="big", limit=10), timeout=DEADLINE
        )
    assert raw.truncated and 0 < len(raw.events) < 4  # the premise: 4 MB do not fit one page
    assert [e.payload for e in client.query_events("big", limit=10)] == [e["payload"] for e in sent]
    assert len(client.query_events("big", limit=len(raw.events) + 1)) == len(raw.events) + 1
    assert len(list(client.iter_events("big", page_size=2))) == 4


# Truncated query pages, served by a stand-in server whose pages hold two events at most


class _PagingServicer(pb_grpc.StoreServiceServicer):
    """Answers QueryEvents over five stored events, at most two per page, saying
    `truncated` when the page stops short of the limit; records each request."""

    def __init__(self) -> None:
        self.events = [
            event_pb2.Event(id=f"e{n}", channel="c", cursor=10 * n, kind="k") for n in range(1, 6)
        ]
        self.requests: list[tuple[int, int]] = []

    def QueryEvents(self, request: pb.QueryEventsRequest, context: Any) -> Any:
        self.requests.append((request.after_cursor, request.limit))
        after = [e for e in self.events if e.cursor > request.after_cursor][: request.limit]
        page = after[:2]
        return pb.QueryEventsResponse(events=page, truncated=len(page) < len(after))


@pytest.fixture
def paging() -> Iterator[tuple[str, _PagingServicer]]:
    servicer = _PagingServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_StoreServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None).wait(DEADLINE)


def test_query_events_continues_after_truncated_pages(
    paging: tuple[str, _PagingServicer],
) -> None:
    address, servicer = paging
    with SSSNClient(address, timeout=DEADLINE) as stand_in:
        assert [e.cursor for e in stand_in.query_events("c", limit=4)] == [10, 20, 30, 40]
        assert servicer.requests == [(0, 4), (20, 2)]
        servicer.requests.clear()
        assert [e.cursor for e in stand_in.query_events("c", after_cursor=30)] == [40, 50]
        assert servicer.requests == [(30, 100)]  # not truncated: everything left
        servicer.requests.clear()
        assert [e.cursor for e in stand_in.iter_events("c", page_size=3)] == [10, 20, 30, 40, 50]
        assert servicer.requests == [(0, 3), (20, 3), (40, 3)]


def test_async_query_events_continues_after_truncated_pages(
    paging: tuple[str, _PagingServicer],
) -> None:
    address, servicer = paging

    async def read() -> tuple[list[int | None], list[int | None]]:
        async with AsyncSSSNClient(address, timeout=DEADLINE) as stand_in:
            limited = [e.cursor for e in await stand_in.query_events("c", limit=5)]
            every = [e.cursor async for e in stand_in.iter_events("c", after_cursor=10)]
            return limited, every

    assert asyncio.run(read()) == ([10, 20, 30, 40, 50], [20, 30, 40, 50])
    assert servicer.requests[:3] == [(0, 5), (20, 3), (40, 1)]


def test_iter_events_reads_a_real_channel_to_its_end(client: SSSNClient) -> None:
    client.create_channel({"name": "orders"})
    stored = client.append_events(
        [
            {"channel": "orders", "kind": "even" if n % 2 == 0 else "odd", "payload": n}
            for n in range(7)
        ]
    )
    assert list(client.iter_events("orders", page_size=3)) == stored
    assert [e.payload for e in client.iter_events("orders", kind="odd", page_size=2)] == [1, 3, 5]
    assert list(client.iter_events("orders", after_cursor=stored[-1].cursor or 0)) == []
    with pytest.raises(ChannelNotFoundError):
        next(client.iter_events("ghost"))


def test_a_limit_above_the_server_page_maximum_is_read_in_several_calls(
    server_thread: ServerThread,
) -> None:
    server_thread.stop()
    server_thread.start(durability="normal")
    with SSSNClient(server_thread.address, timeout=DEADLINE) as fresh:
        fresh.create_channel({"name": "many"})
        for start in (0, 6000):
            fresh.append_events(
                [{"channel": "many", "payload": n} for n in range(start, start + 6000)]
            )
        events = fresh.query_events("many", limit=11_000)
        assert [e.payload for e in events] == list(range(11_000))
        rest = fresh.query_events("many", after_cursor=events[-1].cursor or 0, limit=5000)
        assert len(rest) == 1000


# The asyncio client's new methods against an in-process server


async def test_async_subscription_admin_and_channel_deletion(
    server: SSSNServer, aclient: AsyncSSSNClient
) -> None:
    await aclient.create_channel({"name": "orders"})
    stored = await aclient.append_events(
        [{"channel": "orders", "timestamp": 1_700_000_000 + n, "payload": n} for n in range(3)]
    )
    await aclient.create_subscription("orders", subscription_id="w")
    await aclient.create_subscription("orders", subscription_id="v")
    assert [s.id for s in await aclient.list_subscriptions("orders")] == ["v", "w"]
    assert len(await aclient.pull_subscription("w")) == 3
    assert (await aclient.seek_subscription("w", cursor=stored[0].cursor)).cursor == stored[
        0
    ].cursor
    assert [e.payload for e in await aclient.pull_subscription("w")] == [1, 2]
    await aclient.seek_subscription("w", timestamp=1_700_000_002)
    assert [e.payload for e in await aclient.pull_subscription("w")] == [2]
    await aclient.delete_subscription("v")
    assert [s.id for s in await aclient.list_subscriptions()] == ["w"]
    with pytest.raises(SubscriptionNotFoundError):
        await aclient.delete_subscription("v")
    assert await aclient.delete_channel("orders") == 3
    assert await aclient.list_subscriptions() == []
    with pytest.raises(ChannelNotFoundError):
        await aclient.delete_channel("orders")


def test_a_deleted_channel_ends_a_following_stream(
    client: SSSNClient, server_thread: ServerThread
) -> None:
    client.create_channel({"name": "orders"})
    client.create_subscription("orders", subscription_id="w")
    stream = client.subscribe("w")
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            for _ in stream:
                pass
        except BaseException as exc:  # the test thread inspects it
            failure.append(exc)

    reader = threading.Thread(target=follow)
    reader.start()
    wait_until(lambda: server_thread.parked_followers == 1)
    assert client.delete_channel("orders") == 0
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert [type(exc) for exc in failure] == [SubscriptionNotFoundError]
