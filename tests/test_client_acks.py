"""The Python client's durable subscriptions: manual acks, takeover, dead-stream detection."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from sssn_client import (
    AsyncSSSNClient,
    InvalidPayloadError,
    SSSNClient,
    SubscriptionLeaseLostError,
    SubscriptionTakenOverError,
    UnavailableError,
)
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from . import client_fixtures
from .client_fixtures import ServerThread, wait_until
from .helpers import DEADLINE
from .test_subscriptions import wait_until as async_wait_until

server_thread = client_fixtures.server_thread
client = client_fixtures.client
aclient = client_fixtures.aclient


def _setup(client: SSSNClient, count: int) -> list[Any]:
    client.create_channel({"name": "events"})
    client.create_subscription("events", subscription_id="w")
    return client.append_events([{"channel": "events", "payload": i} for i in range(count)])


def test_sync_manual_subscribe_redelivers_what_was_not_acked(client: SSSNClient) -> None:
    stored = _setup(client, 5)
    with client.subscribe("w", ack_mode="manual") as stream:
        received = [next(stream) for _ in range(3)]
        assert stream.ack(received[1]).cursor == stored[1].cursor
    assert client.get_subscription("w").cursor == stored[1].cursor
    with client.subscribe("w", ack_mode="manual") as stream:
        again = [next(stream) for _ in range(3)]
        stream.ack(again[-1])
    assert again == stored[2:]
    assert client.get_subscription("w").cursor == stored[4].cursor


def test_sync_ack_errors_and_bad_ack_mode(client: SSSNClient) -> None:
    stored = _setup(client, 2)
    with pytest.raises(InvalidPayloadError):
        client.ack_subscription("w", stored[1].cursor)  # never delivered
    with pytest.raises(InvalidPayloadError) as caught:
        client.subscribe("w", ack_mode="sometimes")
    assert caught.value.field_violations[0][0] == "ack_mode"


def test_sync_stream_taken_over_raises_instead_of_reconnecting(
    client: SSSNClient, server_thread: ServerThread
) -> None:
    _setup(client, 1)
    with client.subscribe("w", max_backoff=0.1) as old:
        next(old)
        wait_until(lambda: server_thread.parked_followers == 1)
        # Another worker's stream (opened at once, unlike subscribe()'s lazy one).
        with grpc.insecure_channel(server_thread.address) as channel:
            newer = pb_grpc.StoreServiceStub(channel).PullSubscription(
                pb.PullSubscriptionRequest(subscription_id="w", follow=True)
            )
            try:
                with pytest.raises(SubscriptionTakenOverError) as caught:
                    next(old)
                assert caught.value.resource == {"subscription_id": "w"}
                assert old.closed
            finally:
                newer.cancel()


def test_sync_ack_from_a_taken_over_stream_is_refused(client: SSSNClient) -> None:
    stored = _setup(client, 2)
    with client.subscribe("w", ack_mode="manual") as old:
        first = next(old)
        with client.subscribe("w", ack_mode="manual") as new:
            assert next(new) == first  # redelivered to the new owner
            # The old stream's acknowledgement carries its lease: refused.
            with pytest.raises(SubscriptionLeaseLostError) as caught:
                old.ack(first)
            assert caught.value.reason == "SUBSCRIPTION_LEASE_LOST"
            assert caught.value.grpc_status_code == grpc.StatusCode.FAILED_PRECONDITION
            assert client.get_subscription("w").cursor == 0
            assert new.ack(first).cursor == stored[0].cursor


async def test_async_manual_subscribe_with_flow_control(
    aclient: AsyncSSSNClient, server: SSSNServer
) -> None:
    await aclient.create_channel({"name": "events"})
    await aclient.create_subscription("events", subscription_id="w")
    stored = await aclient.append_events([{"channel": "events", "payload": i} for i in range(6)])
    received = []
    async with aclient.subscribe("w", ack_mode="manual", max_unacked=2) as stream:
        async for event in stream:
            received.append(event)
            if len(received) % 2 == 0:
                # Two outstanding: the server holds the rest until the ack.
                await async_wait_until(lambda: _paused(server))
                await stream.ack(event)
            if len(received) == 6:
                break
    assert received == stored
    assert (await aclient.get_subscription("w")).cursor == stored[-1].cursor


def _paused(server: SSSNServer) -> bool:
    status = server.service.stream_status("w")
    return status is not None and status.paused


class _SilentServicer(pb_grpc.StoreServiceServicer):
    """A server whose streams never send anything: a stand-in for a dead proxy."""

    def __init__(self) -> None:
        self.streams = 0

    async def PullSubscription(self, request: Any, context: Any) -> Any:
        self.streams += 1
        await asyncio.Event().wait()
        yield  # pragma: no cover - never reached


async def test_async_subscribe_reopens_a_stream_that_sends_no_heartbeat() -> None:
    silent = _SilentServicer()
    server = grpc.aio.server()
    pb_grpc.add_StoreServiceServicer_to_server(silent, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with AsyncSSSNClient(f"127.0.0.1:{port}", timeout=DEADLINE) as client:
            stream = client.subscribe(
                "w", heartbeat_interval=0.02, max_retries=2, initial_backoff=0.01
            )
            with pytest.raises(UnavailableError):
                await asyncio.wait_for(anext(stream), DEADLINE)
        assert silent.streams == 3  # the first stream and two reopened ones
    finally:
        await server.stop(grace=0)
