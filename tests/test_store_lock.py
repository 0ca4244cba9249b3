"""One writer per SQLite store: a second writer process is refused; read-only servers are not."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from sssn_proto.v1 import channel_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from .helpers import DEADLINE, event
from .server_process import ServerProcess

Start = Callable[..., ServerProcess]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def running(store: Path) -> Iterator[Start]:
    started: list[ServerProcess] = []

    def start(*extra: str) -> ServerProcess:
        server = ServerProcess(store, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def _refused_writer(store: Path) -> str:
    """Starts a writer on `store`, expects it to be refused, returns its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "sssn_server", "--store", str(store), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    return result.stderr


def _holder(errors: str) -> int:
    """The PID a refused writer's message names."""
    found = re.search(r"process (\d+)", errors)
    assert found is not None, errors
    return int(found.group(1))


def _append(server: ServerProcess, payload: int) -> int:
    with grpc.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        reply = stub.AppendEvent(
            pb.AppendEventRequest(event=event("events", payload)), timeout=DEADLINE
        )
    return int(reply.event.cursor)


def _payloads(server: ServerProcess) -> list[int]:
    with grpc.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        reply = stub.QueryEvents(pb.QueryEventsRequest(channel="events"), timeout=DEADLINE)
    return [int(e.payload.number_value) for e in reply.events]


def _create_channel(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as connection:
        pb_grpc.StoreServiceStub(connection).CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")),
            timeout=DEADLINE,
        )


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    # The -shm file is shared memory that the running writer's readers mark
    # as they read; its times say nothing about the refused process.
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if not path.name.endswith("-shm")
    }


def test_a_second_writer_is_refused_at_once_naming_the_holder(running: Start, store: Path) -> None:
    first = running()
    _create_channel(first)
    _append(first, 1)
    before = _listing(store)

    errors = _refused_writer(store)

    lines = errors.strip().splitlines()
    assert len(lines) == 1, errors
    assert _holder(lines[0]) == first.process.pid
    assert str(store.resolve()) in lines[0]
    # Refused before it touched the store: no migration, no WAL, no cleanup.
    assert _listing(store) == before
    # The first writer goes on as if nothing happened.
    assert _append(first, 2) == 2
    assert _payloads(first) == [1, 2]


def test_read_only_servers_run_beside_the_writer(running: Start, store: Path) -> None:
    writer = running()
    _create_channel(writer)
    _append(writer, 1)
    beside = running("--read-only")
    assert _payloads(beside) == [1]
    _append(writer, 2)
    assert _payloads(beside) == [1, 2]  # the writer's commits show
    assert beside.stop()[0] == 0
    assert writer.stop()[0] == 0

    # A read-only server started first (on a store no one writes) keeps no
    # later writer from starting, and that writer is the only one.
    first = running("--read-only")
    later = running()
    assert _append(later, 3) == 3
    assert _holder(_refused_writer(store)) == later.process.pid
    assert _payloads(first)[:2] == [1, 2]
    assert _payloads(later) == [1, 2, 3]
    for server in (first, later):
        assert server.stop()[0] == 0


def test_a_new_writer_starts_after_the_holder_is_killed(running: Start, store: Path) -> None:
    first = running()
    _create_channel(first)
    _append(first, 1)
    first.kill()  # SIGKILL: the kernel drops its lock

    second = running()
    assert _append(second, 2) == 2
    assert _payloads(second) == [1, 2]
    assert _holder(_refused_writer(store)) == second.process.pid
