"""Prometheus metrics on `metrics_port`, and the JSON-lines access log."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sssn_proto.v1 import channel_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from .conftest import ServerFactory
from .helpers import DEADLINE, event
from .test_subscriptions import wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(server: SSSNServer) -> Samples:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(fetch)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _calls(samples: Samples, method: str, code: str) -> float:
    key = ("sssn_rpc_calls_total", frozenset({("method", method), ("code", code)}))
    return samples.get(key, 0.0)


M = "sssn.v1.StoreService/"


async def test_metrics_count_calls_events_and_streams(start_server: ServerFactory) -> None:
    server: SSSNServer = await start_server(metrics_port=0)
    assert server.metrics_port
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.StoreServiceStub(channel)
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")), timeout=DEADLINE
        )
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel="events", subscription_id="s"), timeout=DEADLINE
        )
        await stub.AppendEvent(pb.AppendEventRequest(event=event("events", 1)), timeout=DEADLINE)
        await stub.AppendEvents(
            pb.AppendEventsRequest(events=[event("events", 2), event("events", 3)]),
            timeout=DEADLINE,
        )
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetChannel(pb.GetChannelRequest(name="missing"), timeout=DEADLINE)
        follow = stub.PullSubscription(
            pb.PullSubscriptionRequest(subscription_id="s", follow=True), timeout=DEADLINE
        )
        delivered = 0
        while delivered < 3:
            delivered += len((await follow.read()).events)

        samples = await _scrape(server)
        assert _calls(samples, M + "GetChannel", "NOT_FOUND") == 2
        assert _calls(samples, M + "AppendEvent", "OK") == 1
        assert _calls(samples, M + "CreateChannel", "OK") == 1
        assert samples[("sssn_events_appended_total", frozenset())] == 3
        assert samples[("sssn_events_delivered_total", frozenset())] == 3
        assert samples[("sssn_open_streams", frozenset())] == 1
        count = ("sssn_rpc_duration_seconds_count", frozenset({("method", M + "GetChannel")}))
        assert samples[count] == 2

        follow.cancel()
        # The server notices the cancellation on its own schedule: wait for it.
        while (await _scrape(server))[("sssn_open_streams", frozenset())] != 0:
            await asyncio.sleep(0.05)
        samples = await _scrape(server)
        assert _calls(samples, M + "PullSubscription", "CANCELLED") == 1

        # An append stream counts the events it stored, not the one it refused.
        stream = stub.AppendEventStream(timeout=DEADLINE)
        await stream.write(
            pb.AppendEventStreamRequest(
                events=[event("events", 4), event("missing", 5), event("events", 6)]
            )
        )
        await stream.done_writing()
        results = [result async for response in stream for result in response.results]
        assert [result.WhichOneof("result") for result in results] == ["event", "error", "event"]
        samples = await _scrape(server)
        assert samples[("sssn_events_appended_total", frozenset())] == 5
        assert samples[("sssn_events_delivered_total", frozenset())] == 3


async def test_metrics_endpoint_is_off_by_default(server: SSSNServer) -> None:
    assert server.metrics_port is None
    assert server.metrics is None


async def test_access_log_has_one_json_line_per_call_without_secrets(
    start_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[[tokens]]\nprincipal = "ops"\ntoken = "s3cret-token"\nread = ["*"]\n')
    server: SSSNServer = await start_server(access_log=True, auth_tokens=tokens)
    caplog.set_level(logging.INFO, logger="sssn_server.access")
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.StoreServiceStub(channel)
        auth = (("authorization", "Bearer s3cret-token"),)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetChannel(
                pb.GetChannelRequest(name="payload-name"), metadata=auth, timeout=DEADLINE
            )
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ListChannels(pb.ListChannelsRequest(), timeout=DEADLINE)

    def access_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "sssn_server.access"]

    # A call is logged once its status is sent, so the client may hear it first.
    await wait_until(lambda: len(access_lines()) >= 2)
    lines = access_lines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["method"] == M + "GetChannel"
    assert first["status"] == "NOT_FOUND"
    assert first["principal"] == "ops"
    assert first["peer"].startswith("ipv4:127.0.0.1:")
    assert first["duration_ms"] >= 0
    assert (second["method"], second["status"], second["principal"]) == (
        M + "ListChannels",
        "UNAUTHENTICATED",
        "",
    )
    assert not any("s3cret" in line or "payload-name" in line for line in lines)


async def test_subscription_lag_is_the_distance_to_the_head(start_server: ServerFactory) -> None:
    server: SSSNServer = await start_server(metrics_port=0)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.StoreServiceStub(channel)
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")), timeout=DEADLINE
        )
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel="events", subscription_id="slow", batch_size=1),
            timeout=DEADLINE,
        )
        stored = await stub.AppendEvents(
            pb.AppendEventsRequest(events=[event("events", n) for n in range(4)]),
            timeout=DEADLINE,
        )
        lag = ("sssn_subscription_lag_cursors", frozenset({("subscription", "slow")}))
        expected = [3, 2]
        for remaining in expected:
            async for _ in stub.PullSubscription(
                pb.PullSubscriptionRequest(subscription_id="slow"), timeout=DEADLINE
            ):
                pass
            assert (await _scrape(server))[lag] == remaining
        assert stored.events[-1].cursor - stored.events[1].cursor == expected[-1]
