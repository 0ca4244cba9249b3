"""The standard grpc.health.v1 service: SERVING once the store is open, NOT_SERVING on drain."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sssn_server.app import SSSNServer

from .conftest import ServerFactory
from .helpers import DEADLINE

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize("service", ["", "sssn.v1.StoreService"])
async def test_check_reports_serving_once_started(server: SSSNServer, service: str) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE)
    assert reply.status == SERVING


async def test_check_of_an_unknown_service_is_not_found(server: SSSNServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=DEADLINE)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("service", ["", "sssn.v1.StoreService"])
async def test_watch_sees_not_serving_when_the_drain_starts(
    start_server: ServerFactory, service: str
) -> None:
    server: SSSNServer = await start_server(grace=DEADLINE)
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE)
        assert (await watch.read()).status == SERVING
        stopping = asyncio.create_task(server.stop())
        assert (await watch.read()).status == NOT_SERVING
        # Ending the watch lets the graceful stop finish before its grace.
        watch.cancel()
        await stopping
