"""Server reflection: on by default so generic tools see the API; it can be turned off."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sssn_server.app import SSSNServer

from .conftest import ServerFactory
from .helpers import DEADLINE


async def _ask(
    address: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield request

    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        async for response in stub.ServerReflectionInfo(requests(), timeout=DEADLINE):
            return response
    raise AssertionError("no reflection response")


async def test_reflection_lists_the_services(server: SSSNServer) -> None:
    response = await _ask(server.address, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in response.list_services_response.service}
    assert {"sssn.v1.StoreService", "grpc.health.v1.Health"} <= names


async def test_reflection_describes_the_store_service(server: SSSNServer) -> None:
    response = await _ask(
        server.address,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="sssn.v1.StoreService"),
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    services = {(f.package, s.name) for f in files for s in f.service}
    assert ("sssn.v1", "StoreService") in services
    methods = {m.name for f in files for s in f.service for m in s.method}
    assert {"AppendEvent", "PullSubscription"} <= methods


async def test_reflection_can_be_turned_off(start_server: ServerFactory) -> None:
    server = await start_server(reflection=False)
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            timeout=DEADLINE
        )
        # The final status, whichever of writing or reading notices it first.
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await call.done_writing()
        assert await call.code() == grpc.StatusCode.UNIMPLEMENTED
