"""The `sssn` command line run as real subprocesses: JSON output, errors and exit codes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sssn_client import SSSNClient
from sssn_client.cli import rfc3339

from . import client_fixtures
from .client_fixtures import BIN, Process, ServerThread, run_cli, wait_until
from .helpers import DEADLINE

server_thread = client_fixtures.server_thread
client = client_fixtures.client
processes = client_fixtures.processes

COMMANDS = [
    "channels",
    "create-channel",
    "get-channel",
    "delete-channel",
    "append",
    "query-events",
    "get-event",
    "create-subscription",
    "get-subscription",
    "list-subscriptions",
    "delete-subscription",
    "seek-subscription",
    "pull-subscription",
    "write-artifact",
    "get-artifact",
    "read-artifact",
    "put-snapshot",
    "get-snapshot",
    "tail",
]


def ok(target: str, *args: str) -> Any:
    """Runs a command that must succeed and returns its JSON output (a list for JSON Lines)."""
    result = run_cli(target, *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    return [json.loads(line) for line in lines] if len(lines) != 1 else json.loads(lines[0])


def fails(target: str, *args: str) -> tuple[int, str]:
    """Runs a command that must fail; returns its status and its one stderr line."""
    result = run_cli(target, *args)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return result.returncode, lines[0]


def test_help_lists_every_command_and_the_exit_codes() -> None:
    result = run_cli("unused", "--help")
    assert result.returncode == 0
    for command in [*COMMANDS, "serve"]:
        assert command in result.stdout
    for line in (
        "3    NOT_FOUND",
        "4    ALREADY_EXISTS",
        "5    INVALID_ARGUMENT",
        "8    UNAVAILABLE",
    ):
        assert line in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run_cli("unused", command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: sssn {command}")


def test_channel_commands(server_thread: ServerThread) -> None:
    target = server_thread.address
    created = ok(
        target,
        "create-channel",
        "orders",
        "--schema",
        "order.v1",
        "--form",
        "queue",
        "--description",
        "all orders",
        "--metadata",
        '{"owner": "ops"}',
    )
    assert created == {
        "name": "orders",
        "schema": "order.v1",
        "form": "queue",
        "description": "all orders",
        "metadata": {"owner": "ops"},
    }
    ok(target, "create-channel", "audit")
    assert ok(target, "get-channel", "orders") == created
    assert [channel["name"] for channel in ok(target, "channels")] == ["audit", "orders"]


def test_event_commands(server_thread: ServerThread) -> None:
    target = server_thread.address
    ok(target, "create-channel", "events")
    parent = ok(target, "append", "events", '{"text": "hello"}')
    assert parent["payload"] == {"text": "hello"} and parent["kind"] == "event"
    child = ok(
        target,
        "append",
        "events",
        "[1, 2]",
        "--kind",
        "derived",
        "--source",
        "cli",
        "--schema",
        "s.v1",
        "--timestamp",
        "1700000000.5",
        "--metadata",
        '{"m": 1}',
        "--correlation-id",
        "req-1",
        "--parent-id",
        parent["id"],
        "--id",
        "child-1",
    )
    assert child == {
        "id": "child-1",
        "cursor": child["cursor"],
        "channel": "events",
        "timestamp": "2023-11-14T22:13:20.500Z",  # RFC 3339, whatever was given
        "source": "cli",
        "kind": "derived",
        "payload": [1, 2],
        "schema": "s.v1",
        "metadata": {"m": 1},
        "correlation_id": "req-1",
        "parent_ids": [parent["id"]],
    }
    assert child["cursor"] > parent["cursor"]
    assert ok(target, "get-event", "child-1") == child
    assert ok(target, "query-events", "events") == [parent, child]
    assert ok(target, "query-events", "events", "--kind", "derived") == child
    assert ok(target, "query-events", "events", "--after-cursor", str(parent["cursor"])) == child
    assert ok(target, "query-events", "events", "--limit", "1") == parent


def test_subscription_commands(server_thread: ServerThread, client: SSSNClient) -> None:
    target = server_thread.address
    ok(target, "create-channel", "events")
    created = ok(
        target,
        "create-subscription",
        "events",
        "--id",
        "w",
        "--consumer",
        "pool",
        "--batch-size",
        "2",
        "--kind",
        "raw",
    )
    assert created == {
        "id": "w",
        "channel": "events",
        "cursor": 0,
        "consumer": "pool",
        "batch_size": 2,
        "filters": {"kind": "raw"},
        "metadata": {},
    }
    stored = client.append_events(
        [{"channel": "events", "kind": "raw", "payload": i} for i in range(3)]
    )
    pulled = ok(target, "pull-subscription", "w")
    assert [event["id"] for event in pulled] == [event.id for event in stored[:2]]
    assert ok(target, "get-subscription", "w")["cursor"] == stored[1].cursor
    assert ok(target, "pull-subscription", "w", "--limit", "5")["id"] == stored[2].id
    assert run_cli(target, "pull-subscription", "w").stdout == ""


def test_subscription_admin_commands(server_thread: ServerThread, client: SSSNClient) -> None:
    target = server_thread.address
    client.create_channel({"name": "events"})
    client.create_channel({"name": "audit"})
    stored = client.append_events(
        [{"channel": "events", "timestamp": 1_700_000_000 + n, "payload": n} for n in range(4)]
    )
    for subscription_id, channel in (("w", "events"), ("a", "audit"), ("v", "events")):
        client.create_subscription(channel, subscription_id=subscription_id)
    listed = ok(target, "list-subscriptions")
    assert [subscription["id"] for subscription in listed] == ["a", "v", "w"]
    assert listed[0] == {
        "id": "a",
        "channel": "audit",
        "cursor": 0,
        "consumer": None,
        "batch_size": 100,
        "filters": {},
        "metadata": {},
    }
    events_only = ok(target, "list-subscriptions", "--channel", "events")
    assert [subscription["id"] for subscription in events_only] == ["v", "w"]
    assert run_cli(target, "list-subscriptions", "--channel", "events-2").returncode == 3

    moved = ok(target, "seek-subscription", "w", "--cursor", str(stored[2].cursor))
    assert (moved["id"], moved["cursor"]) == ("w", stored[2].cursor)
    assert ok(target, "pull-subscription", "w")["payload"] == 3
    ok(target, "seek-subscription", "w", "--timestamp", "1700000001")
    assert [e["payload"] for e in ok(target, "pull-subscription", "w")] == [1, 2, 3]
    ok(target, "seek-subscription", "w", "--timestamp", "2023-11-14T22:13:22+00:00")
    assert [e["payload"] for e in ok(target, "pull-subscription", "w")] == [2, 3]
    ok(target, "seek-subscription", "w", "--timestamp", "2023-11-14T22:13:23Z")
    assert ok(target, "pull-subscription", "w")["payload"] == 3

    assert ok(target, "delete-subscription", "v") == {"id": "v", "deleted": True}
    assert ok(target, "list-subscriptions", "--channel", "events")["id"] == "w"


def test_delete_channel_command(server_thread: ServerThread, client: SSSNClient) -> None:
    target = server_thread.address
    client.create_channel({"name": "events"})
    client.create_channel({"name": "audit"})
    client.append_events([{"channel": "events", "payload": n} for n in range(3)])
    client.create_subscription("events", subscription_id="w")
    assert ok(target, "delete-channel", "events") == {"name": "events", "deleted_events": 3}
    assert ok(target, "channels")["name"] == "audit"  # one line: one object
    assert run_cli(target, "list-subscriptions").stdout == ""


def test_artifact_commands(server_thread: ServerThread, tmp_path: Path) -> None:
    target = server_thread.address
    ok(target, "create-channel", "events")
    event = ok(target, "append", "events", "null")
    text = ok(
        target,
        "write-artifact",
        "héllo",
        "--channel",
        "events",
        "--media-type",
        "text/plain",
        "--metadata",
        '{"a": 1}',
        "--event-id",
        event["id"],
    )
    assert text == {
        "id": text["id"],
        "channel": "events",
        "media_type": "text/plain",
        "size": len("héllo".encode()),
        "sha256": hashlib.sha256("héllo".encode()).hexdigest(),
        "metadata": {"a": 1},
        "event_ids": [event["id"]],
    }
    assert ok(target, "get-artifact", text["id"]) == text
    assert run_cli(target, "read-artifact", text["id"]).stdout == "héllo\n"

    binary = bytes(range(256))
    encoded = base64.b64encode(binary).decode()
    stored = ok(target, "write-artifact", encoded, "--encoding", "base64")
    assert stored["sha256"] == hashlib.sha256(binary).hexdigest()
    read = run_cli(target, "read-artifact", stored["id"], "--encoding", "base64")
    assert read.stdout == encoded + "\n"
    code, message = fails(target, "read-artifact", stored["id"])  # not UTF-8 text
    assert code == 2 and "--encoding base64" in message

    path = tmp_path / "payload.bin"
    path.write_bytes(binary * 20_000)  # ~5 MiB: streamed
    from_file = ok(target, "write-artifact", "--file", str(path))
    assert from_file["size"] == path.stat().st_size
    assert from_file["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_snapshot_commands(server_thread: ServerThread) -> None:
    target = server_thread.address
    ok(target, "create-channel", "events")
    event = ok(target, "append", "events", "1")
    stored = ok(
        target,
        "put-snapshot",
        "latest",
        '{"count": 1}',
        "--channel",
        "events",
        "--schema",
        "state.v1",
        "--source-event-id",
        event["id"],
        "--metadata",
        '{"by": "cli"}',
    )
    assert stored["value"] == {"count": 1}
    assert (stored["channel"], stored["schema"], stored["source_event_id"]) == (
        "events",
        "state.v1",
        event["id"],
    )
    assert list(stored) == [
        "name",
        "channel",
        "timestamp",
        "value",
        "schema",
        "source_event_id",
        "metadata",
    ]
    assert ok(target, "get-snapshot", "latest") == stored


def test_the_target_can_come_from_the_environment(server_thread: ServerThread) -> None:
    result = run_cli(
        "ignored", "channels", env={**os.environ, "SSSN_TARGET": server_thread.address}
    )
    # --target on the command line wins over the environment...
    assert result.returncode == 8
    environment_only = subprocess.run(
        [str(BIN / "sssn"), "create-channel", "from-env"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, "SSSN_TARGET": server_thread.address},
        check=False,
    )
    # ...and the environment replaces the default.
    assert environment_only.returncode == 0, environment_only.stderr
    assert json.loads(environment_only.stdout)["name"] == "from-env"


# Errors: one stderr line with the reason, a stable status per class


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["get-channel", "ghost"], 3, "CHANNEL_NOT_FOUND"),
        (["get-event", "ghost"], 3, "EVENT_NOT_FOUND"),
        (["get-subscription", "ghost"], 3, "SUBSCRIPTION_NOT_FOUND"),
        (["pull-subscription", "ghost"], 3, "SUBSCRIPTION_NOT_FOUND"),
        (["get-artifact", "ghost"], 3, "ARTIFACT_NOT_FOUND"),
        (["read-artifact", "ghost"], 3, "ARTIFACT_NOT_FOUND"),
        (["get-snapshot", "ghost"], 3, "SNAPSHOT_NOT_FOUND"),
        (["append", "ghost", "{}"], 3, "CHANNEL_NOT_FOUND"),
        (["tail", "ghost"], 3, "CHANNEL_NOT_FOUND"),
        (["tail", "--subscription", "ghost"], 3, "SUBSCRIPTION_NOT_FOUND"),
        (["delete-channel", "ghost"], 3, "CHANNEL_NOT_FOUND"),
        (["list-subscriptions", "--channel", "ghost"], 3, "CHANNEL_NOT_FOUND"),
        (["delete-subscription", "ghost"], 3, "SUBSCRIPTION_NOT_FOUND"),
        (["seek-subscription", "ghost", "--cursor", "0"], 3, "SUBSCRIPTION_NOT_FOUND"),
        (["seek-subscription", "w", "--cursor", "-1"], 5, "INVALID_PAYLOAD"),
        (["create-channel", "taken"], 4, "CHANNEL_EXISTS"),
        (["create-subscription", "other", "--id", "w"], 4, "SUBSCRIPTION_EXISTS"),
        (["append", "other", "{}", "--id", "e1"], 4, "EVENT_EXISTS"),
        (["create-channel", "a/b"], 5, "INVALID_PAYLOAD"),
        (["query-events", "taken", "--limit", "0"], 5, "INVALID_PAYLOAD"),
        (["create-channel", "x", "--form", "spreadsheet"], 5, "INVALID_PAYLOAD"),
    ],
)
def test_errors_exit_with_the_status_of_their_class(
    server_thread: ServerThread, client: SSSNClient, args: list[str], code: int, reason: str
) -> None:
    client.create_channel({"name": "taken"})
    client.create_channel({"name": "other"})
    client.create_subscription("taken", subscription_id="w")
    client.append_event({"id": "e1", "channel": "taken"})
    status, line = fails(server_thread.address, *args)
    assert (status, line.split(": ")[:3]) == (code, ["sssn", "error", reason])


def test_a_read_only_server_exits_6(server_thread: ServerThread) -> None:
    server_thread.stop()
    server_thread.start(read_only=True)
    status, line = fails(server_thread.address, "create-channel", "events")
    assert status == 6 and "STORE_READ_ONLY" in line


def test_a_too_large_artifact_exits_7(server_thread: ServerThread) -> None:
    server_thread.stop()
    server_thread.start(max_artifact_bytes=4)
    status, line = fails(server_thread.address, "write-artifact", "too long")
    assert status == 7 and "ARTIFACT_TOO_LARGE" in line


def test_an_unreachable_server_exits_8() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status, line = fails(f"127.0.0.1:{port}", "get-channel", "x")
    assert status == 8 and line.startswith("sssn: error: UNAVAILABLE: ")


def test_an_expired_deadline_exits_9() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host, port = silent.getsockname()
        result = subprocess.run(
            [str(BIN / "sssn"), "--target", f"{host}:{port}", "--timeout", "0.2", "channels"],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
    assert result.returncode == 9
    assert result.stderr.startswith("sssn: error: DEADLINE_EXCEEDED")


@pytest.mark.parametrize(
    "args",
    [
        ["append", "events", "not json"],
        ["put-snapshot", "s", "{bad"],
        ["create-channel", "x", "--metadata", "[1]"],
        ["write-artifact", "%%%", "--encoding", "base64"],
        ["write-artifact"],
        ["seek-subscription", "w"],
        ["seek-subscription", "w", "--cursor", "1", "--timestamp", "1"],
        ["seek-subscription", "w", "--timestamp", "yesterday"],
        ["seek-subscription", "w", "--timestamp", "2024-05-01T12:00:00"],
        ["no-such-command"],
        ["channels", "--unknown-flag"],
    ],
)
def test_bad_command_lines_exit_2(args: list[str]) -> None:
    result = run_cli("127.0.0.1:1", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    # One line, like every other error: what argparse says, with no usage text.
    assert result.stderr.startswith("sssn: error: USAGE: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr


# serve and tail


def test_serve_runs_the_server_in_process(
    processes: Callable[..., Process], tmp_path: Path
) -> None:
    server = processes(
        str(BIN / "sssn"), "serve", "--store", str(tmp_path / "store"), "--port", "0"
    )
    match = re.search(r"listening on (\S+)", server.readline())
    assert match is not None
    target = match.group(1)
    assert ok(target, "create-channel", "served")["name"] == "served"
    assert server.stop(signal.SIGTERM) == 0
    assert (tmp_path / "store" / "sssn.sqlite").exists()


def test_serve_help_lists_the_server_flags() -> None:
    result = run_cli("unused", "serve", "--help")
    assert result.returncode == 0
    assert "--store" in result.stdout and "--read-only" in result.stdout


def test_tail_follows_a_subscription_until_ctrl_c(
    processes: Callable[..., Process], server_thread: ServerThread, client: SSSNClient
) -> None:
    client.create_channel({"name": "events"})
    client.create_subscription("events", subscription_id="w")
    backlog = client.append_event({"channel": "events", "payload": "before"})
    tail = processes(
        sys.executable,
        "-m",
        "sssn_client.cli",
        "--target",
        server_thread.address,
        "tail",
        "--subscription",
        "w",
    )
    assert json.loads(tail.readline())["id"] == backlog.id
    wait_until(lambda: server_thread.parked_followers == 1)
    live = client.append_events([{"channel": "events", "payload": i} for i in range(3)])
    lines = [json.loads(tail.readline()) for _ in live]
    assert [line["id"] for line in lines] == [event.id for event in live]
    assert lines[0]["payload"] == 0
    assert tail.stop(signal.SIGINT) == 0
    assert tail.stderr == ""


def _tail(processes: Callable[..., Process], address: str, *args: str) -> Process:
    """`sssn tail ARGS` against a server, polling quickly so tests need not wait."""
    return processes(
        str(BIN / "sssn"), "--target", address, "tail", *args, "--poll-interval", "0.05"
    )


def test_tail_follows_a_channel_without_moving_any_cursor(
    processes: Callable[..., Process], server_thread: ServerThread, client: SSSNClient
) -> None:
    client.create_channel({"name": "events"})
    client.create_subscription("events", subscription_id="events")  # same name as the channel
    first = client.append_events([{"channel": "events", "kind": k} for k in ("a", "b", "a")])
    tail = _tail(
        processes,
        server_thread.address,
        "events",
        "--kind",
        "a",
        "--after-cursor",
        str(first[0].cursor),
    )
    assert json.loads(tail.readline())["id"] == first[2].id
    later = client.append_event({"channel": "events", "kind": "a"})
    assert json.loads(tail.readline())["id"] == later.id
    assert tail.stop(signal.SIGINT) == 0
    # A subscription of the same name is never followed by accident.
    assert client.get_subscription("events").cursor == 0


def test_tail_names_a_channel_or_a_subscription_never_both_or_neither(
    server_thread: ServerThread,
) -> None:
    for args, message in (
        (["tail"], "give a CHANNEL to follow, or --subscription ID"),
        (["tail", "events", "--subscription", "w"], "not both"),
    ):
        result = run_cli(server_thread.address, *args)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr


def test_a_channel_tail_waits_for_a_restarting_server_and_says_so(
    processes: Callable[..., Process], server_thread: ServerThread, client: SSSNClient
) -> None:
    client.create_channel({"name": "events"})
    first = client.append_event({"channel": "events", "payload": 1})
    tail = _tail(processes, server_thread.address, "events")
    assert json.loads(tail.readline())["id"] == first.id
    server_thread.stop()
    wait_until(lambda: "reconnecting to" in tail.stderr)
    server_thread.start()
    later = client.append_event({"channel": "events", "payload": 2})
    # Resumed after the last event printed: nothing again, nothing missed.
    assert json.loads(tail.readline())["id"] == later.id
    wait_until(lambda: "reconnected to" in tail.stderr)
    assert tail.stop(signal.SIGINT) == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "1970-01-01T00:00:00Z"),
        (1700000000.5, "2023-11-14T22:13:20.500Z"),
        (1700000002.123456789, "2023-11-14T22:13:22.123457Z"),
        (1700000002.000001, "2023-11-14T22:13:22.000001Z"),
        (-1.25, "1969-12-31T23:59:58.750Z"),
        (1e9, "2001-09-09T01:46:40Z"),
    ],
)
def test_timestamps_print_as_rfc3339_in_utc_to_the_microsecond(seconds: float, text: str) -> None:
    assert rfc3339(seconds) == text
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - seconds) < 1e-6


# --store: the command on a store in-process, with no server to start


def _sssn(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`sssn` with no SSSN_* variable but those given."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SSSN_")}
    return subprocess.run(
        [str(BIN / "sssn"), *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        env={**clean, **env},
        cwd=cwd,
        check=False,
    )


def _line(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_store_runs_each_command_in_process_and_keeps_what_it_wrote(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert _line(_sssn("--store", str(store), "create-channel", "events"))["name"] == "events"
    _line(_sssn("--store", str(store), "create-subscription", "events", "--id", "w"))
    appended = _line(_sssn("--store", str(store), "append", "events", '{"n": 1}'))
    assert appended["cursor"] == 1
    # Another process, the same store: everything is there, cursors included.
    pulled = _sssn("--store", str(store), "pull-subscription", "w")
    assert [json.loads(line)["id"] for line in pulled.stdout.splitlines()] == [appended["id"]]
    assert _line(_sssn("--store", str(store), "get-subscription", "w"))["cursor"] == 1
    assert (store / "sssn.sqlite").is_file()
    assert not list(Path(tempfile.gettempdir()).glob("sssn-embedded-*/sssn.sock"))


def test_without_target_or_store_the_variables_then_the_sssn_folder_decide(
    tmp_path: Path, server_thread: ServerThread, client: SSSNClient
) -> None:
    # Neither given: the store .sssn in the current folder.
    _line(_sssn("create-channel", "local", cwd=tmp_path))
    assert (tmp_path / ".sssn" / "sssn.sqlite").is_file()
    # SSSN_STORE names another store...
    other = tmp_path / "other"
    _line(_sssn("create-channel", "elsewhere", cwd=tmp_path, SSSN_STORE=str(other)))
    assert (other / "sssn.sqlite").is_file()
    # ...and SSSN_TARGET, a server, goes before it.
    _line(
        _sssn(
            "create-channel",
            "served",
            cwd=tmp_path,
            SSSN_STORE=str(other),
            SSSN_TARGET=server_thread.address,
        )
    )
    assert client.get_channel("served").name == "served"
    listed = _sssn("--store", str(other), "channels")
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["elsewhere"]


def test_store_held_by_a_running_server_is_refused_in_one_line(
    server_thread: ServerThread,
) -> None:
    refused = _sssn("--store", str(server_thread.store), "channels")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.startswith("sssn: error: STORE_LOCKED: ")
    assert "--target" in refused.stderr and len(refused.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "127.0.0.1:1", "--store", "x"], "not both"),
        (["--store", "x", "--token", "t"], "not --store"),
    ],
)
def test_store_with_a_server_option_is_a_usage_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = _sssn(*args, "channels", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("sssn: error: USAGE: ") and message in result.stderr
    assert not (tmp_path / "x").exists()
