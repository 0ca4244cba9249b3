"""Fixtures: a real server on loopback over real storage (SQLite in a temp dir, or PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sssn_proto.v1 import channel_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer
from sssn_server.config import ServerConfig
from sssn_server.store.sqlite._writer import WRITER_THREAD_NAME

from .backends import (
    HAVE_POSTGRES,
    INSTALL_HINT,
    backends_for,
    empty_store_location,
    postgres,
    store_location,
)
from .helpers import DEADLINE

__all__ = [
    "empty_store_location",
    "postgres",
    "store_location",
]  # fixtures, re-exported for every test module

ServerFactory = Callable[..., Any]


def pytest_report_header() -> str | None:
    return None if HAVE_POSTGRES else f"*** {INSTALL_HINT} ***"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Runs every test that uses a store once per backend (see `backends_for`)."""
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", backends_for(metafunc))


@pytest.fixture(autouse=True)
def no_leaked_store_threads() -> Iterator[None]:
    """Fails a test that leaves a SQLite connection open: its thread would
    keep the test process (and CI) alive after the last test."""
    before = set(threading.enumerate())
    yield
    leaked = [
        thread
        for thread in set(threading.enumerate()) - before
        if thread.is_alive()
        and ("_connection_worker_thread" in thread.name or WRITER_THREAD_NAME in thread.name)
    ]
    for thread in leaked:
        thread.join(timeout=5)
    assert not [thread for thread in leaked if thread.is_alive()], "SQLite connection left open"


@pytest.fixture
def store_dir(store_location: Path) -> Path:
    """The SQLite store's folder, for tests that look inside it (SQLite only)."""
    return store_location


@pytest.fixture
async def start_server(store_location: Path | str) -> AsyncIterator[ServerFactory]:
    """Starts servers on 127.0.0.1:0 (settings overridable); stops them all after."""
    running: list[SSSNServer] = []

    async def start(**overrides: Any) -> SSSNServer:
        settings: dict[str, Any] = {"store": store_location, "host": "127.0.0.1", "port": 0}
        settings.update(overrides)
        server = SSSNServer(ServerConfig(**settings))
        await server.start()
        running.append(server)
        return server

    yield start
    for server in running:
        await server.stop(grace=0)


@pytest.fixture
async def server(start_server: ServerFactory) -> SSSNServer:
    return await start_server()  # type: ignore[no-any-return]


@pytest.fixture
async def channel(server: SSSNServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as connection:
        yield connection


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.StoreServiceStub:
    return pb_grpc.StoreServiceStub(channel)


@pytest.fixture
async def make_channel(stub: pb_grpc.StoreServiceStub) -> Callable[..., Any]:
    """Creates a channel on the test server and returns its name."""

    async def create(name: str = "events", **fields: Any) -> str:
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name, **fields)),
            timeout=DEADLINE,
        )
        return name

    return create
