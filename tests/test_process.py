"""The server as a process: command line, signals, restarts and crash durability."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from sssn_proto.v1 import channel_pb2, snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.collector import YOUNG_THRESHOLD

from .helpers import DEADLINE, event, value
from .server_process import ServerProcess


@pytest.fixture
def running(tmp_path: Path):
    started: list[ServerProcess] = []

    def start(*extra: str, port: int = 0) -> ServerProcess:
        server = ServerProcess(tmp_path / "store", *extra, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def connect(server: ServerProcess) -> tuple[grpc.Channel, pb_grpc.StoreServiceStub]:
    connection = grpc.insecure_channel(server.address)
    return connection, pb_grpc.StoreServiceStub(connection)


ENTRY_POINTS = {
    "module": [sys.executable, "-m", "sssn_server"],
    "script": [str(Path(sys.executable).parent / "sssn-server")],
}


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_help_documents_every_flag_and_its_variable(entry_point) -> None:
    result = subprocess.run(
        [*ENTRY_POINTS[entry_point], "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for flag in [
        "--store",
        "--host",
        "--port",
        "--read-only",
        "--durability",
        "--event-loop",
        "--grace",
    ]:
        assert flag in result.stdout
    for variable in ["SSSN_STORE", "SSSN_HOST", "SSSN_PORT", "SSSN_DURABILITY", "SSSN_EVENT_LOOP"]:
        assert variable in result.stdout


@pytest.mark.parametrize(
    ("choice", "loop_class"),
    [("uvloop", "uvloop.Loop"), ("asyncio", "asyncio.unix_events._UnixSelectorEventLoop")],
)
def test_serves_on_the_event_loop_asked_for(running, choice: str, loop_class: str) -> None:
    server = running("--event-loop", choice, "--log-level", "info")
    connection, stub = connect(server)
    with connection:
        stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="c")), timeout=DEADLINE
        )
        stored = stub.AppendEvent(pb.AppendEventRequest(event=event("c", 1)), timeout=DEADLINE)
    assert stored.event.cursor == 1
    code, _, errors = server.stop()
    assert code == 0
    assert f"event loop: {loop_class}" in errors


def test_the_process_freezes_its_startup_heap_for_the_collector(running) -> None:
    server = running("--log-level", "info")
    code, _, errors = server.stop()
    assert code == 0
    frozen = re.search(
        r"garbage collector: (\d+) startup objects frozen, young threshold (\d+)", errors
    )
    assert frozen is not None, errors
    assert int(frozen.group(1)) > 10_000  # gRPC, protobuf and the store, at least
    assert int(frozen.group(2)) == YOUNG_THRESHOLD


@pytest.mark.parametrize("variable", ["SSSN_DURABILITY", "SSSN_EVENT_LOOP"])
def test_a_bad_choice_from_the_environment_is_refused_clearly(
    tmp_path: Path, variable: str
) -> None:
    result = subprocess.run(
        [*ENTRY_POINTS["module"], "--store", str(tmp_path / "store"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, variable: "bogus"},
    )
    assert result.returncode == 2
    assert f"{variable}='bogus': choose from" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("store", "says"),
    [
        # Port 1: nothing listens there, so the database cannot be reached.
        (
            "postgresql://user:secret@127.0.0.1:1/sssn?sslmode=disable",
            "cannot open the store at postgresql://user:***@127.0.0.1:1/sssn",
        ),
        ("postgres://127.0.0.1:1/sssn", "cannot open the store at postgres://127.0.0.1:1/sssn"),
        ("mysql://127.0.0.1/sssn", "unsupported URL scheme 'mysql'"),
    ],
)
def test_a_store_url_is_never_taken_for_a_folder(tmp_path: Path, store: str, says: str) -> None:
    result = subprocess.run(
        [*ENTRY_POINTS["module"], "--store", store, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert says in result.stderr
    assert "secret" not in result.stderr  # a URL's password is never echoed
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no `postgresql:` folder, nothing written


def test_a_store_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "sssn.sqlite"
    not_a_folder.write_bytes(b"")
    result = subprocess.run(
        [*ENTRY_POINTS["module"], "--store", str(not_a_folder), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"sssn-server: --store {not_a_folder}: not a folder (a store is a folder holding "
        "sssn.sqlite)"
    ]
    assert not_a_folder.read_bytes() == b""


def test_a_port_in_use_is_refused_in_one_line_before_the_store_is_created(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*ENTRY_POINTS["module"], "--store", str(tmp_path / "store"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"sssn-server: cannot listen on 127.0.0.1:{port}: the port is in use or the address"
        " is not one of this machine's (choose another with --port, or 0 for any free one)"
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_refused(tmp_path: Path, port: str) -> None:
    result = subprocess.run(
        [*ENTRY_POINTS["module"], "--store", str(tmp_path / "store"), "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--port must be between 0 and 65535" in result.stderr
    assert not (tmp_path / "store").exists()


def test_uvloop_is_the_default_where_installed() -> None:
    from sssn_server.__main__ import build_parser

    assert build_parser().parse_args([]).event_loop == "uvloop"


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    store = tmp_path / "from-env"
    server = subprocess.Popen(
        [*ENTRY_POINTS["module"]],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SSSN_STORE": str(store), "SSSN_PORT": "0"},
    )
    try:
        assert server.stdout is not None
        assert f"(store {store})" in server.stdout.readline()
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_prints_its_address_and_exits_0_on_a_signal(running, signum) -> None:
    server = running()
    assert server.address.startswith("127.0.0.1:") and server.port > 0
    connection, stub = connect(server)
    with connection:
        stub.CreateChannel(pb.CreateChannelRequest(channel=channel_pb2.Channel(name="x")))
    status, out, _ = server.stop(signum)
    assert status == 0
    assert "stopped" in out
    assert (server.store / "sssn.sqlite").is_file()
    assert (server.store / "artifacts").is_dir()


def test_restart_on_the_same_store_keeps_everything_and_never_reuses_cursors(running) -> None:
    first = running()
    connection, stub = connect(first)
    with connection:
        stub.CreateChannel(pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")))
        stored = list(
            stub.AppendEvents(
                pb.AppendEventsRequest(events=[event("events", index) for index in range(5)])
            ).events
        )
        stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel="events", subscription_id="w", batch_size=3)
        )
        pulled = [
            e
            for m in stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id="w"))
            for e in m.events
        ]
        artifact = stub.WriteArtifact(pb.WriteArtifactRequest(data=b"\x00payload\xff")).artifact
        stub.PutSnapshot(
            pb.PutSnapshotRequest(snapshot=snapshot_pb2.Snapshot(name="latest", value=value(7)))
        )
    assert first.stop()[0] == 0
    # Delete the newest event behind the server's back: its cursor must
    # still never be handed out again.
    with sqlite3.connect(first.store / "sssn.sqlite") as db:
        db.execute("DELETE FROM events WHERE cursor = ?", (stored[-1].cursor,))
    db.close()

    second = running(port=first.port)
    connection, stub = connect(second)
    with connection:
        assert stub.GetChannel(pb.GetChannelRequest(name="events")).channel.name == "events"
        assert stub.GetEvent(pb.GetEventRequest(id=stored[0].id)).event == stored[0]
        subscription = stub.GetSubscription(pb.GetSubscriptionRequest(subscription_id="w"))
        assert subscription.subscription.cursor == pulled[-1].cursor == stored[2].cursor
        rest = [
            e.id
            for m in stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id="w"))
            for e in m.events
        ]
        assert rest == [stored[3].id]
        data = b"".join(m.data for m in stub.ReadArtifact(pb.ReadArtifactRequest(id=artifact.id)))
        assert data == b"\x00payload\xff"
        snapshot = stub.GetSnapshot(pb.GetSnapshotRequest(name="latest")).snapshot
        assert snapshot.value.number_value == 7
        later = stub.AppendEvent(pb.AppendEventRequest(event=event("events", 99))).event
        assert later.cursor > stored[-1].cursor
    assert second.stop()[0] == 0


def test_acknowledged_appends_survive_kill_9(running) -> None:
    server = running()
    connection, stub = connect(server)
    with connection:
        stub.CreateChannel(pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")))

        def append(index: int) -> str:
            request = pb.AppendEventRequest(event=event("events", index))
            return stub.AppendEvent(request, timeout=DEADLINE).event.id

        with ThreadPoolExecutor(max_workers=8) as pool:
            acknowledged = list(pool.map(append, range(200)))
    server.process.kill()  # SIGKILL: no shutdown code runs
    server.process.communicate(timeout=30)

    restarted = running(port=server.port)
    connection, stub = connect(restarted)
    with connection:
        found: list[str] = []
        after = 0
        while page := list(
            stub.QueryEvents(
                pb.QueryEventsRequest(channel="events", after_cursor=after, limit=1000)
            ).events
        ):
            found.extend(e.id for e in page)
            after = page[-1].cursor
    assert set(acknowledged) <= set(found)
    assert len(found) == len(set(found)) == 200


async def test_sigterm_ends_open_streams_at_once_and_loses_nothing(running) -> None:
    server = running("--grace", "60")
    appended: list[str] = []
    received: list[str] = []
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")), timeout=DEADLINE
        )
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel="events", subscription_id="w", batch_size=7),
            timeout=DEADLINE,
        )
        streams = [
            stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id="w", follow=True))
        ]
        for index in range(3):  # more idle streams on other subscriptions
            await stub.CreateSubscription(
                pb.CreateSubscriptionRequest(channel="events", subscription_id=f"idle{index}"),
                timeout=DEADLINE,
            )
        for batch in range(5):
            response = await stub.AppendEvents(
                pb.AppendEventsRequest(events=[event("events", batch * 10 + n) for n in range(10)]),
                timeout=DEADLINE,
            )
            appended.extend(e.id for e in response.events)
        while len(received) < 30:
            received.extend(e.id for e in (await streams[0].read()).events)
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            while True:
                message = await asyncio.wait_for(streams[0].read(), DEADLINE)
                assert message is not grpc.aio.EOF
                received.extend(e.id for e in message.events)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # Far inside the 60 s grace: open streams do not hold the shutdown.
    server.process.communicate(timeout=30)
    assert server.process.returncode == 0

    restarted = running(port=server.port)
    async with grpc.aio.insecure_channel(restarted.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        async for message in stub.PullSubscription(
            pb.PullSubscriptionRequest(subscription_id="w", limit=1000), timeout=DEADLINE
        ):
            received.extend(e.id for e in message.events)
    assert received == appended  # every event once, in order, across the restart


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
    }


def test_read_only_server_never_writes_a_file(running, tmp_path: Path) -> None:
    writable = running()
    connection, stub = connect(writable)
    with connection:
        stub.CreateChannel(pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")))
        stub.AppendEvent(pb.AppendEventRequest(event=event("events", 1)))
        stub.CreateSubscription(pb.CreateSubscriptionRequest(channel="events", subscription_id="w"))
    assert writable.stop()[0] == 0
    before = _listing(writable.store)

    server = running("--read-only")
    connection, stub = connect(server)
    with connection:
        assert len(stub.QueryEvents(pb.QueryEventsRequest(channel="events")).events) == 1
        for call in (
            lambda: stub.AppendEvent(pb.AppendEventRequest(event=event("events", 2))),
            lambda: stub.WriteArtifact(pb.WriteArtifactRequest(data=b"x")),
            lambda: list(stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id="w"))),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert server.stop()[0] == 0
    assert _listing(writable.store) == before

    missing = tmp_path / "no-store-here"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sssn_server",
            "--store",
            str(missing),
            "--read-only",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert not missing.exists()


@pytest.mark.parametrize("command", [["sssn-server"], ["sssn"]])
def test_both_commands_tell_their_version(command: list[str]) -> None:
    from sssn_server import __version__

    result = subprocess.run(
        [str(Path(sys.executable).parent / command[0]), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{command[0]} {__version__}"
