"""Prometheus metrics on `metrics_port`, and the JSON-lines access log."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sssn_proto.v1 import channel_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.__main__ import build_parser
from sssn_server.app import SSSNServer

from .conftest import ServerFactory
from .helpers import DEADLINE, event
from .server_process import ServerProcess
from .test_subscriptions import wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(server: SSSNServer, token: str | None = None) -> Samples:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def fetch() -> str:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
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


def _lag_series(samples: Samples) -> set[str]:
    return {
        dict(labels)["subscription"]
        for (name, labels), _ in samples.items()
        if name == "sssn_subscription_lag_cursors"
    }


async def test_a_deleted_subscription_s_series_are_dropped(start_server: ServerFactory) -> None:
    server: SSSNServer = await start_server(metrics_port=0)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.StoreServiceStub(channel)
        for name in ("events", "doomed"):
            await stub.CreateChannel(
                pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)), timeout=DEADLINE
            )
            await stub.AppendEvent(pb.AppendEventRequest(event=event(name, 1)), timeout=DEADLINE)
        for name in ("kept", "pulled", "followed", "in-doomed"):
            await stub.CreateSubscription(
                pb.CreateSubscriptionRequest(
                    channel="doomed" if name == "in-doomed" else "events", subscription_id=name
                ),
                timeout=DEADLINE,
            )
        for name in ("kept", "pulled", "in-doomed"):
            async for _ in stub.PullSubscription(
                pb.PullSubscriptionRequest(subscription_id=name), timeout=DEADLINE
            ):
                pass
        follow = stub.PullSubscription(
            pb.PullSubscriptionRequest(subscription_id="followed", follow=True), timeout=DEADLINE
        )
        assert len((await follow.read()).events) == 1
        assert _lag_series(await _scrape(server)) == {"kept", "pulled", "followed", "in-doomed"}

        for name in ("pulled", "followed"):
            await stub.DeleteSubscription(
                pb.DeleteSubscriptionRequest(subscription_id=name), timeout=DEADLINE
            )
        # Deleting a channel deletes its subscriptions, and their series.
        await stub.DeleteChannel(pb.DeleteChannelRequest(name="doomed"), timeout=DEADLINE)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                await follow.read()
        assert ended.value.code() == grpc.StatusCode.NOT_FOUND
        # The stream's end is recorded once its status is sent.
        while (await _scrape(server))[("sssn_open_streams", frozenset())] != 0:
            await asyncio.sleep(0.05)
        assert _lag_series(await _scrape(server)) == {"kept"}


async def test_metrics_endpoint_listens_on_loopback_whatever_the_host(
    start_server: ServerFactory,
) -> None:
    server: SSSNServer = await start_server(host="0.0.0.0", metrics_port=0)
    assert server.metrics_host == "127.0.0.1"
    assert build_parser().parse_args([]).metrics_host == "127.0.0.1"


def _status_of(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        assert error.headers["WWW-Authenticate"].startswith("Bearer")
        return error.code


async def test_metrics_token_is_required_when_set(start_server: ServerFactory) -> None:
    server: SSSNServer = await start_server(metrics_port=0, metrics_token="scrape-secret")
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer wrong-secret"}, 401),
        ({"Authorization": "Basic scrape-secret"}, 401),
        ({"Authorization": "Bearer scrape-secret"}, 200),
        ({"Authorization": "bearer  scrape-secret "}, 200),
    ):
        assert await asyncio.to_thread(_status_of, url, headers) == status, headers
    samples = await _scrape(server, token="scrape-secret")
    assert ("sssn_open_streams", frozenset()) in samples


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_metrics_token_flag_and_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_parser().parse_args(["--metrics-token", "t"]).metrics_token == "t"
    assert build_parser().parse_args([]).metrics_token is None
    help_text = subprocess.run(
        [sys.executable, "-m", "sssn_server", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "--metrics-token" in help_text and "[SSSN_METRICS_TOKEN]" in help_text
    monkeypatch.setenv("SSSN_METRICS_TOKEN", "from-the-environment")
    port = _free_port()
    server = ServerProcess(tmp_path / "store", "--metrics-port", str(port))
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert _status_of(url, {}) == 401
        assert _status_of(url, {"Authorization": "Bearer from-the-environment"}) == 200
    finally:
        assert server.stop()[0] == 0
