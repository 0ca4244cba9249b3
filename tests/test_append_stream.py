"""AppendEventStream: pipelined, per-event results in order, stream-level errors in order."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from sssn_client import (
    AsyncSSSNClient,
    ChannelNotFoundError,
    EventExistsError,
    EventNotFoundError,
    InvalidPayloadError,
    SSSNClient,
    TooManyItemsError,
)
from sssn_proto.v1 import channel_pb2, event_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from . import client_fixtures
from .client_fixtures import ServerThread
from .conftest import ServerFactory
from .helpers import DEADLINE, RpcFailure, event, failure

aclient = client_fixtures.aclient
server_thread = client_fixtures.server_thread
client = client_fixtures.client


def requests(*batches: Iterable[event_pb2.Event]) -> list[pb.AppendEventStreamRequest]:
    return [pb.AppendEventStreamRequest(events=list(batch)) for batch in batches]


async def exchange(
    stub: pb_grpc.StoreServiceStub, messages: list[pb.AppendEventStreamRequest], **kwargs: Any
) -> list[pb.AppendEventStreamResponse]:
    """Sends every message, then half-closes, and returns every response."""
    return [r async for r in stub.AppendEventStream(iter(messages), timeout=DEADLINE, **kwargs)]


def cursors(responses: list[pb.AppendEventStreamResponse]) -> list[int]:
    return [r.event.cursor for response in responses for r in response.results]


@dataclasses.dataclass
class ResultError:
    code: grpc.StatusCode
    reason: str
    domain: str
    fields: list[str]


def result_error(result: pb.AppendResult) -> ResultError:
    """Decodes one event's error; AppendError's bytes parse as a google.rpc.Status."""
    assert result.WhichOneof("result") == "error", result
    status = status_pb2.Status.FromString(result.error.SerializeToString())
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail.Unpack(bad_request)
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    return ResultError(
        code, info.reason, info.domain, [v.field for v in bad_request.field_violations]
    )


async def query(stub: pb_grpc.StoreServiceStub, channel: str = "events") -> list[event_pb2.Event]:
    response = await stub.QueryEvents(
        pb.QueryEventsRequest(channel=channel, limit=10_000), timeout=DEADLINE
    )
    return list(response.events)


async def answers_then_failure(call: Any) -> tuple[list[pb.AppendEventStreamResponse], RpcFailure]:
    """The responses a stream sent before it failed, and how it failed."""
    answered = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for response in call:
            answered.append(response)
    return answered, failure(caught.value)


def limit_batches(server: SSSNServer, size: int) -> None:
    service = server.service
    service.limits = dataclasses.replace(service.limits, max_append_batch=size)


async def test_cursors_come_back_in_order_across_messages(stub, make_channel) -> None:
    await make_channel()
    responses = await exchange(
        stub, requests([event("events", i) for i in range(3)], [event("events", 3)] * 1)
    )
    assert [len(r.results) for r in responses] == [3, 1]
    found = cursors(responses)
    assert found == sorted(found) and len(set(found)) == 4
    assert [r.event.payload.number_value for resp in responses for r in resp.results] == [
        0,
        1,
        2,
        3,
    ]


async def test_thousands_of_events_are_all_acknowledged_and_readable(stub, make_channel) -> None:
    await make_channel()
    messages = requests(*([event("events", n * 100 + i) for i in range(100)] for n in range(12)))
    responses = await exchange(stub, messages)
    assert len(responses) == 12
    stored = [r.event for response in responses for r in response.results]
    assert len(stored) == 1200
    assert all(s.cursor > 0 for s in stored)
    assert [s.cursor for s in stored] == sorted({s.cursor for s in stored})
    readable = await query(stub)
    assert [(e.id, e.cursor) for e in readable] == [(s.id, s.cursor) for s in stored]
    assert [e.payload.number_value for e in readable] == list(range(1200))


async def test_a_bad_event_fails_only_itself(stub, make_channel) -> None:
    await make_channel()
    await make_channel("other")
    await stub.AppendEvent(pb.AppendEventRequest(event=event("other", id="taken")))
    bad = [
        event("events", kind="no good"),
        event("missing"),
        event("events", parent_ids=["nope"]),
        event("events", id="taken"),
        event("events", {"x": float("nan")}),
    ]
    batch = [event("events", 0)]
    for index, each in enumerate(bad, start=1):
        batch += [each, event("events", index)]
    (response,) = await exchange(stub, requests(batch))
    results = list(response.results)
    assert len(results) == 11
    good = results[0::2]
    assert [r.event.payload.number_value for r in good] == [0, 1, 2, 3, 4, 5]
    assert [e.id for e in await query(stub)] == [r.event.id for r in good]

    errors = [result_error(r) for r in results[1::2]]
    assert {e.domain for e in errors} == {"sssn.dev"}
    assert [(e.code, e.reason) for e in errors] == [
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD"),
        (grpc.StatusCode.NOT_FOUND, "CHANNEL_NOT_FOUND"),
        (grpc.StatusCode.NOT_FOUND, "EVENT_NOT_FOUND"),
        (grpc.StatusCode.ALREADY_EXISTS, "EVENT_EXISTS"),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD"),
    ]
    assert errors[0].fields == ["events[1].kind"]
    assert errors[4].fields == ["events[9].payload"]


async def test_a_bad_name_repeated_in_one_message_fails_every_time(stub, make_channel) -> None:
    # The rules check each distinct name once per request: one that failed
    # must fail again, in every field, and one that passed must keep passing.
    await make_channel()
    batch = []
    for _ in range(2):
        batch += [
            event("events", kind="no good"),
            event("bad channel"),
            event("events", correlation_id="no:good"),
            event("events", kind="good", correlation_id="good"),
            event("events", parent_ids=["a/b"]),
        ]
    (response,) = await exchange(stub, requests(batch))
    results = list(response.results)
    fields = [result_error(r).fields if r.HasField("error") else None for r in results]
    expected = ["kind", "channel", "correlation_id", None, "parent_ids[0]"]
    assert fields == [
        None if name is None else [f"events[{index}].{name}"]
        for index, name in enumerate(expected * 2)
    ]
    assert [e.kind for e in await query(stub)] == ["good", "good"]


async def test_errors_match_what_append_event_returns(stub, make_channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendEvent(pb.AppendEventRequest(event=event("missing")), timeout=DEADLINE)
    unary = failure(caught.value)
    (response,) = await exchange(stub, requests([event("missing")]))
    (result,) = response.results
    assert result.error.message == unary.message
    streamed = result_error(result)
    assert (streamed.code, streamed.reason) == (unary.code, unary.reason)


async def test_a_repeated_id_returns_the_first_stored_event(stub, make_channel) -> None:
    await make_channel()
    first = event("events", 1, id="same")
    responses = await exchange(
        stub, requests([first, event("events", 2, id="same")], [event("events", 3, id="same")])
    )
    stored = [r.event for response in responses for r in response.results]
    assert len(stored) == 3
    assert stored[0] == stored[1] == stored[2]
    assert stored[0].payload.number_value == 1
    assert len(await query(stub)) == 1


async def test_one_response_per_request_in_order_even_when_empty(stub, make_channel) -> None:
    await make_channel()
    sizes = [2, 0, 1, 0, 0, 3]
    messages = requests(*([event("events", n)] * n for n in sizes))
    responses = await exchange(stub, messages)
    assert [len(r.results) for r in responses] == sizes
    assert [r.event.payload.number_value for resp in responses for r in resp.results] == [
        2,
        2,
        1,
        3,
        3,
        3,
    ]


async def test_an_empty_stream_ends_ok(stub) -> None:
    assert await exchange(stub, []) == []


async def test_too_many_events_end_the_stream_after_earlier_answers(
    server, stub, make_channel
) -> None:
    await make_channel()
    limit_batches(server, 5)
    call = stub.AppendEventStream(
        iter(requests([event("events", 1)] * 3, [event("events", 2)] * 6, [event("events", 3)])),
        timeout=DEADLINE,
    )
    answered, error = await answers_then_failure(call)
    assert [len(r.results) for r in answered] == [3]
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_ITEMS")
    assert not [e for e in await query(stub) if e.payload.number_value == 2]


async def test_a_read_only_server_refuses_the_stream(start_server: ServerFactory) -> None:
    writable = await start_server()
    async with grpc.aio.insecure_channel(writable.address) as connection:
        await pb_grpc.StoreServiceStub(connection).CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")), timeout=DEADLINE
        )
    await writable.stop(grace=0)
    server = await start_server(read_only=True)
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        # Even a message of invalid events only (which never reaches the store).
        for batch in ([event("events", 1)], [event("events", kind="no good")], []):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await exchange(stub, requests(batch))
            error = failure(caught.value)
            assert (error.code, error.reason) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "STORE_READ_ONLY",
            )


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
read = ["*"]

[[tokens]]
principal = "writer"
token = "writer-token"
read = ["*"]
write = ["orders-*"]
"""


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_token_auth_checks_every_message(start_server: ServerFactory, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS_TOML, encoding="utf-8")
    server = await start_server(auth_tokens=tokens)
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        for name in ("orders-eu", "billing"):
            await stub.CreateChannel(
                pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)),
                metadata=_auth("root-token"),
                timeout=DEADLINE,
            )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await exchange(stub, requests([event("orders-eu")]))
        assert failure(caught.value).code == grpc.StatusCode.UNAUTHENTICATED

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await exchange(stub, requests([event("orders-eu")]), metadata=_auth("reader-token"))
        error = failure(caught.value)
        assert (error.code, error.metadata["permission"]) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "write",
        )

        # The writer may write orders-*: the message naming billing ends the
        # stream, after the answer to the one before it.
        call = stub.AppendEventStream(
            iter(
                requests(
                    [event("orders-eu", 1)],
                    [event("orders-eu", 2), event("billing", 2)],
                    [event("orders-eu", 3)],
                )
            ),
            metadata=_auth("writer-token"),
            timeout=DEADLINE,
        )
        answered, error = await answers_then_failure(call)
        assert [len(r.results) for r in answered] == [1]
        assert (error.code, error.metadata["channel"]) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "billing",
        )
        stored = await stub.QueryEvents(
            pb.QueryEventsRequest(channel="orders-eu"), metadata=_auth("root-token")
        )
        assert [e.payload.number_value for e in stored.events] == [1]


def _stream_tasks() -> list[asyncio.Task[Any]]:
    names = ("_start_appends", "append_each", "AppendEventStream")
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and any(name in repr(task.get_coro()) for name in names)
    ]


async def test_cancelling_mid_stream_leaves_no_task_behind(stub, make_channel) -> None:
    await make_channel()
    hold = asyncio.Event()

    async def producer() -> AsyncIterator[pb.AppendEventStreamRequest]:
        yield pb.AppendEventStreamRequest(events=[event("events", 1)])
        await hold.wait()  # never set: the stream stays open until cancelled
        yield pb.AppendEventStreamRequest(events=[event("events", 2)])

    call = stub.AppendEventStream(producer(), timeout=DEADLINE)
    first = await call.read()
    assert len(first.results) == 1
    assert _stream_tasks(), "the server should be reading the open stream"
    call.cancel()
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while _stream_tasks():
        assert asyncio.get_running_loop().time() < deadline, _stream_tasks()
        await asyncio.sleep(0.01)
    # The server still serves streams.
    (response,) = await exchange(stub, requests([event("events", 3)]))
    assert response.results[0].event.cursor > first.results[0].event.cursor


async def test_pipelined_requests_are_all_answered_in_order(stub, make_channel) -> None:
    await make_channel()
    call = stub.AppendEventStream(timeout=DEADLINE)
    for n in range(200):
        await call.write(pb.AppendEventStreamRequest(events=[event("events", n)] * 2))
    await call.done_writing()
    responses = [response async for response in call]
    assert len(responses) == 200
    assert [r.results[0].event.payload.number_value for r in responses] == list(range(200))
    found = cursors(responses)
    assert len(found) == 400 and found == sorted(set(found))


# The Python clients


def _mixed_batch() -> list[Any]:
    return [
        {"channel": "events", "payload": {"n": 0}},
        {"channel": "missing"},
        {"channel": "events", "payload": {"n": 1}},
        {"channel": "events", "payload": object()},  # cannot be encoded: refused by the client
        {"channel": "events", "payload": {"n": 2}},
        {"channel": "events", "parent_ids": ["nope"]},
        {"channel": "events", "payload": {"n": 3}},
        {"channel": "events", "id": "taken"},
        {"channel": "events", "payload": {"n": 4}},
    ]


def _check_mixed(results: list[Any]) -> None:
    assert len(results) == 9
    assert [r.payload for r in results[0::2]] == [{"n": n} for n in range(5)]
    good_cursors = [r.cursor for r in results[0::2]]
    assert good_cursors == sorted(set(good_cursors)) and good_cursors[0] > 0
    assert isinstance(results[1], ChannelNotFoundError)
    assert results[1].resource == {"channel": "missing"}
    assert isinstance(results[3], InvalidPayloadError)
    assert isinstance(results[5], EventNotFoundError)
    assert isinstance(results[7], EventExistsError)


async def test_async_client_streams_appends(aclient: AsyncSSSNClient, server) -> None:
    await aclient.create_channel({"name": "events"})
    await aclient.create_channel({"name": "other"})
    await aclient.append_event({"channel": "other", "id": "taken"})

    async def produce() -> AsyncIterator[Any]:
        for each in _mixed_batch():
            yield each

    results = [r async for r in aclient.append_event_stream(produce(), batch_size=2)]
    _check_mixed(results)
    plain = [r async for r in aclient.append_event_stream(_mixed_batch(), batch_size=4)]
    _check_mixed(plain)

    stored = [
        r
        async for r in aclient.append_event_stream(
            ({"channel": "events", "payload": i} for i in range(1000)), batch_size=16
        )
    ]
    assert [e.payload for e in stored] == list(range(1000))
    with pytest.raises(InvalidPayloadError):
        aclient.append_event_stream([], batch_size=0)

    limit_batches(server, 3)
    got: list[Any] = []
    with pytest.raises(TooManyItemsError):
        async for result in aclient.append_event_stream([{"channel": "events"}] * 8, batch_size=4):
            got.append(result)
    assert got == []


def test_sync_client_streams_appends(client: SSSNClient, server_thread: ServerThread) -> None:
    client.create_channel({"name": "events"})
    client.create_channel({"name": "other"})
    client.append_event({"channel": "other", "id": "taken"})
    _check_mixed(list(client.append_event_stream(iter(_mixed_batch()), batch_size=3)))

    def failing() -> Any:
        yield {"channel": "events", "payload": "before"}
        raise RuntimeError("the producer broke")

    got: list[Any] = []
    with pytest.raises(RuntimeError, match="the producer broke"):
        for result in client.append_event_stream(failing(), batch_size=16):
            got.append(result)
    assert [r.payload for r in got] == ["before"]

    # Stopping early cancels the call; the client stays usable.
    stream = client.append_event_stream({"channel": "events"} for _ in range(10_000))
    assert next(iter(stream)).cursor > 0
    stream.close()  # type: ignore[attr-defined]
    assert client.append_event({"channel": "events"}).cursor > 0

    assert server_thread.server is not None
    limit_batches(server_thread.server, 3)
    with pytest.raises(TooManyItemsError):
        list(client.append_event_stream([{"channel": "events"}] * 8, batch_size=4))
