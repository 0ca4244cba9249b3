"""Python's `sssn` and Node's `bin/sssn.js` run one table of command lines and must answer alike."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .client_fixtures import BIN, REPO, ServerThread
from .helpers import DEADLINE
from .test_cli import COMMANDS as PYTHON_COMMANDS

NODE_CLI = REPO / "clients" / "node" / "bin" / "sssn.js"
SIDES = ("py", "js")

# Every command but `tail`, which runs until Ctrl-C (its options are compared
# through --help below); `serve` exists only in Python.
COMMANDS = tuple(command for command in PYTHON_COMMANDS if command != "tail")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def _node() -> str:
    """The node executable; fails (never skips) when `make test` did not set it up."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH; `make test` installs Node.js before running the tests")
    if not (REPO / "clients" / "node" / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("clients/node/node_modules is missing; `make test` runs `npm ci` there first")
    return node


def _environment(**extra: str) -> dict[str, str]:
    # The caller's SSSN_* settings (a token, TLS, a target) must not reach either CLI.
    env = {key: value for key, value in os.environ.items() if not key.startswith("SSSN_")}
    env.update(extra)
    return env


def run_both(
    py_args: list[str], js_args: list[str], env: Mapping[str, str] | None = None
) -> tuple[Result, Result]:
    """Runs the Python and the Node command line side by side and waits for both."""
    env = dict(env or _environment())
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for command in ([str(BIN / "sssn"), *py_args], [_node(), str(NODE_CLI), *js_args])
    ]
    results = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=DEADLINE * 2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        results.append(Result(process.returncode, stdout, stderr))
    return results[0], results[1]


def assert_alike(python: Result, node: Result, what: str) -> None:
    assert node.code == python.code, f"{what}: exit {node.code} != {python.code}\n{python}\n{node}"
    assert node.stdout == python.stdout, what
    assert node.stderr == python.stderr, what
    if python.code != 0:
        assert node.stdout == "" and len(node.stderr.splitlines()) == 1, what


@dataclass(frozen=True)
class Row:
    """One command line. `{s}` is the side (`py` or `js`) and other fields come from
    `capture` of earlier rows, per side.

    A row that `writes` runs once per side: Python on the `py-` resources, Node
    on the `js-` ones; their outputs must agree once the side and what the
    server picks (ids it mints, cursors, `volatile` keys) are masked. Every
    other row reads: both command lines run it against the state each side
    wrote, and must print the same bytes."""

    args: tuple[str, ...]
    writes: bool = False
    volatile: tuple[str, ...] = ()
    capture: Mapping[str, str] = field(default_factory=dict)
    """Name -> top-level key of the (one-line) output, kept for later rows."""


def w(*args: str, volatile: tuple[str, ...] = (), **capture: str) -> Row:
    return Row(args, writes=True, volatile=volatile, capture=capture)


def r(*args: str) -> Row:
    return Row(args)


# Writes whose output holds a time the server picked (the reads check it exactly).
STAMPED = ("timestamp",)

# The objects in this table have one key each: the Python client reads JSON
# objects through protobuf maps, whose order differs between its runs
# (test_objects_with_several_keys_hold_the_same_members covers those).
TABLE: tuple[Row, ...] = (
    # Channels
    w(
        "create-channel",
        "{s}-orders",
        "--schema",
        "order.v1",
        "--form",
        "queue",
        "--description",
        "all orders",
        "--metadata",
        '{"owner": {"team": ["ops", 1, 2.5, null, true]}}',
    ),
    w("create-channel", "{s}-audit", "--form", "latest-state"),
    w("create-channel", "{s}-gone", "--desc", "an abbreviated flag"),
    w("create-channel", "{s}-orders"),
    w("create-channel", "{s}-bad", "--form", "LATEST_STATE"),
    w("create-channel", "{s}-a/b"),
    r("get-channel", "{s}-orders"),
    r("get-channel", "{s}-ghost"),
    # Events
    w(
        "append",
        "{s}-orders",
        '{"text": "h\u00e9llo \\u0001 \\" \\\\ / \\n"}',
        "--id",
        "{s}-e1",
        "--kind",
        "created",
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
        e1_cursor="cursor",
    ),
    w(
        "append",
        "{s}-orders",
        '[1, 2.5, -0.0, 1e16, 1e-7, 12345678901234567890, null, true, "x", [], {}]',
        "--id",
        "{s}-e2",
        "--kind",
        "derived",
        "--timestamp",
        "1700000001",
        "--parent-id",
        "{s}-e1",
    ),
    w("append", "{s}-orders", "0.1", "--id", "{s}-e3", "--timestamp", "1700000002.123456789"),
    w("append", "{s}-orders", '"stamped by the server"', volatile=STAMPED, e4="id"),
    w("append", "{s}-orders", "-5", "--kind", "derived", "--timestamp", "-1.25", "--id", "{s}-e5"),
    w("append", "{s}-orders", '"again"', "--id", "{s}-e1"),  # a retry returns the stored event
    w("append", "{s}-audit", "{}", "--id", "{s}-e1"),
    w("append", "{s}-orders", "{}", "--parent-id", "{s}-ghost"),
    w("append", "{s}-ghost", "{}"),
    w("append", "{s}-orders", "NaN"),
    w("append", "{s}-orders", "1", "--timestamp", "nan"),
    w("append", "{s}-orders", "1", "--timestamp", "inf"),
    r("get-event", "{s}-e1"),
    r("get-event", "{e4}"),
    r("get-event", "{s}-ghost"),
    r("query-events", "{s}-orders"),
    r("query-events", "{s}-orders", "--after-cursor", "{e1_cursor}", "--limit", "2"),
    r("query-events", "{s}-orders", "--kind", "derived"),
    r("query-events", "{s}-orders", "--limit", "20000"),
    r("query-events", "{s}-orders", "--limit", "0"),
    r("query-events", "{s}-orders", "--limit", "-99999999999"),
    r("query-events", "{s}-orders", "--after-cursor", "-1"),
    r("query-events", "{s}-orders", "--after-cursor", "99999999999999999999"),
    r("query-events", "{s}-ghost"),
    # Subscriptions
    w(
        "create-subscription",
        "{s}-orders",
        "--id",
        "{s}-w",
        "--consumer",
        "pool",
        "--batch-size",
        "2",
        "--kind",
        "created",
        "--metadata",
        '{"k": "v"}',
    ),
    w("create-subscription", "{s}-orders", "--id", "{s}-v"),
    w("create-subscription", "{s}-orders", "--id", "{s}-v"),
    w("create-subscription", "{s}-orders", minted="id"),
    w("create-subscription", "{s}-audit", "--id", "{s}-v"),
    w("create-subscription", "{s}-orders", "--batch-size", "0"),
    w("create-subscription", "{s}-orders", "--batch-size", "99999999999"),
    w("create-subscription", "{s}-ghost"),
    w("pull-subscription", "{s}-v", "--limit", "2", volatile=STAMPED),
    r("get-subscription", "{s}-v"),
    w("seek-subscription", "{s}-v", "--cursor", "0"),
    w("seek-subscription", "{s}-v", "--timestamp", "1700000001"),
    w("pull-subscription", "{s}-v", "--limit", "1", volatile=STAMPED),
    w("seek-subscription", "{s}-v", "--timestamp", "2023-11-14T22:13:21.5+00:00"),
    w("seek-subscription", "{s}-v", "--timestamp", "2023-11-14T23:13:21,5+0100"),
    w("pull-subscription", "{s}-v", volatile=STAMPED),
    w("pull-subscription", "{s}-v", volatile=STAMPED),
    w("seek-subscription", "{s}-v", "--cursor", "-1"),
    w("seek-subscription", "{s}-v", "--cursor", "99999999999999999999"),
    w("seek-subscription", "{s}-ghost", "--cursor", "0"),
    w("pull-subscription", "{s}-ghost"),
    w("pull-subscription", "{s}-w", "--limit", "0"),
    r("get-subscription", "{s}-w"),
    r("get-subscription", "{minted}"),
    r("get-subscription", "{s}-ghost"),
    r("list-subscriptions"),
    r("list-subscriptions", "--channel", "{s}-orders"),
    r("list-subscriptions", "--channel", "{s}-ghost"),
    w("delete-subscription", "{s}-w"),
    w("delete-subscription", "{s}-w"),
    r("list-subscriptions", "--channel", "{s}-orders"),
    # Artifacts
    w(
        "write-artifact",
        "h\u00e9llo",
        "--channel",
        "{s}-orders",
        "--media-type",
        "text/plain",
        "--metadata",
        '{"a": 1}',
        "--event-id",
        "{s}-e1",
        text="id",
    ),
    w("write-artifact", "AAEC/f7/", "--encoding", "base64", binary="id"),
    w("write-artifact", "--file", "{file}", "--channel", "{s}-orders", streamed="id"),
    w("write-artifact", "%%%", "--encoding", "base64"),
    w("write-artifact", "QUI", "--encoding", "base64"),
    w("write-artifact"),
    w("write-artifact", "x", "--file", "{file}"),
    w("write-artifact", "--file", "{missing}"),
    w("write-artifact", "x", "--event-id", "{s}-ghost"),
    w("write-artifact", "x", "--channel", "{s}-ghost"),
    r("get-artifact", "{text}"),
    r("get-artifact", "{streamed}"),
    r("read-artifact", "{text}"),
    r("read-artifact", "{binary}", "--encoding", "base64"),
    r("read-artifact", "{binary}"),
    r("get-artifact", "{s}-ghost"),
    r("read-artifact", "{s}-ghost"),
    # Snapshots
    w(
        "put-snapshot",
        "{s}-state",
        '{"count": [1, {"deep": "x"}]}',
        "--channel",
        "{s}-orders",
        "--schema",
        "state.v1",
        "--source-event-id",
        "{s}-e1",
        "--metadata",
        '{"by": "cli"}',
        volatile=STAMPED,
    ),
    w("put-snapshot", "{s}-bare", "null", volatile=STAMPED),
    w("put-snapshot", "{s}-bad", "{"),
    w("put-snapshot", "{s}-bad", "1", "--source-event-id", "{s}-ghost"),
    r("get-snapshot", "{s}-state"),
    r("get-snapshot", "{s}-bare"),
    r("get-snapshot", "{s}-ghost"),
    # Deleting
    w("append", "{s}-gone", "1", "--id", "{s}-g1", "--timestamp", "1e9"),
    w("append", "{s}-gone", "2", "--id", "{s}-g2", "--timestamp", "1e9"),
    w("delete-channel", "{s}-gone"),
    w("delete-channel", "{s}-gone"),
    r("channels"),
    # Command lines refused before any call (argparse's rules and messages)
    r("no-such-command"),
    r(),
    r("channels", "extra"),
    r("channels", "--unknown-flag"),
    r("--bogus", "channels"),
    r("append"),
    r("append", "orders"),
    r("append", "orders", "not json"),
    r("append", "orders", "[1,]"),
    r("append", "orders", '{"a" 1}'),
    r("append", "orders", '{"a": 1,}'),
    r("append", "orders", '"\\q"'),
    r("append", "orders", "1", "--timestamp", "soon"),
    r("append", "orders", "1", "--timestamp", "-1e5"),
    r("create-channel", "x", "--metadata", "[1]"),
    r("create-channel", "x", "--metadata", "{"),
    r("query-events", "orders", "--limit"),
    r("query-events", "orders", "--limit", "x"),
    r("query-events", "orders", "--limit=1", "more", "args"),
    r("seek-subscription", "v"),
    r("seek-subscription", "v", "--cursor", "1", "--timestamp", "1"),
    r("seek-subscription", "v", "--timestamp", "yesterday"),
    r("seek-subscription", "v", "--timestamp", "2024-05-01T12:00:00"),
    r("read-artifact", "x", "--encoding", "hex"),
    r("write-artifact", "x", "--m", "text/plain"),
    r("--timeout", "x", "channels"),
    r("--tls-client-cert", "cert.pem", "channels"),
    r("--tls-ca", "{missing}", "channels"),
    # Targets refused before any call
    r("--target", "", "channels"),
    r("--target", "x:abc", "channels"),
    r("--target", "ftp://x:1", "channels"),
    r("--target", "http://x:1/prefix", "channels"),
    r("--target", "http://user@x:1", "channels"),
)


_FIELD = re.compile(r"\{(\w+)\}")


def fill(args: tuple[str, ...], known: Mapping[str, str]) -> list[str]:
    """The arguments with each `{name}` replaced (JSON braces are left alone)."""
    return [_FIELD.sub(lambda match: known[match.group(1)], arg) for arg in args]


def _mask(text: str, side: str, volatile: tuple[str, ...]) -> str:
    """A write's output without what differs between the two sides by design."""
    text = re.sub(rf"\b{side}-", "SIDE-", text)
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "UUID", text)
    for key in ("cursor", *volatile):
        text = re.sub(rf'"{key}":[^,}}]+', f'"{key}":MASKED', text)
    return text


@pytest.fixture
def parity_server(store_location: Path | str) -> Iterator[ServerThread]:
    """One server for both command lines, on the test's backend."""
    running = ServerThread(store_location)  # type: ignore[arg-type]  # a PostgreSQL URL too
    try:
        running.start()
        yield running
    finally:
        running.close()


def test_the_table_runs_alike_through_both_command_lines(
    parity_server: ServerThread, tmp_path: Path
) -> None:
    target = ["--target", parity_server.address]
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 12_000)  # ~3 MiB: streamed in chunks
    known: dict[str, dict[str, str]] = {
        side: {"s": side, "file": str(payload), "missing": str(tmp_path / "missing")}
        for side in SIDES
    }
    for row in TABLE:
        if row.writes:
            python, node = run_both(
                [*target, *fill(row.args, known["py"])], [*target, *fill(row.args, known["js"])]
            )
            what = f"sssn {' '.join(row.args)} (py- and js- resources)"
            assert node.code == python.code, f"{what}: exit {node.code} != {python.code}"
            assert _mask(node.stdout, "js", row.volatile) == _mask(
                python.stdout, "py", row.volatile
            ), what
            assert _mask(node.stderr, "js", ()) == _mask(python.stderr, "py", ()), what
            for side, result in (("py", python), ("js", node)):
                for name, key in row.capture.items():
                    known[side][name] = str(json.loads(result.stdout)[key])
            continue
        # A row that names no side's resources runs once.
        for args in {tuple(fill(row.args, known[side])): None for side in SIDES}:
            python, node = run_both([*target, *args], [*target, *args])
            assert_alike(python, node, f"sssn {' '.join(args)}")


def _canonical(line: str) -> str:
    """A JSON line with the members of nested objects sorted (the top level keeps its order)."""
    data = json.loads(line)

    def sort(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: sort(value[key]) for key in sorted(value)}
        if isinstance(value, list):
            return [sort(item) for item in value]
        return value

    return json.dumps({key: sort(value) for key, value in data.items()}, separators=(",", ":"))


def test_objects_with_several_keys_hold_the_same_members(parity_server: ServerThread) -> None:
    target = ["--target", parity_server.address]
    metadata = '{"z": 1, "a": {"y": [1, {"c": 2, "b": 3}], "x": null}, "10": 2, "2": "x"}'
    for command in (
        ["create-channel", "{s}-keys", "--metadata", metadata],
        ["append", "{s}-keys", metadata, "--metadata", metadata, "--id", "{s}-k1"],
        ["put-snapshot", "{s}-keys", metadata, "--metadata", metadata],
    ):
        python, node = run_both(
            [*target, *fill(tuple(command), {"s": "py"})],
            [*target, *fill(tuple(command), {"s": "js"})],
        )
        assert (python.code, node.code) == (0, 0), (python, node)
        masked = [
            _mask(_canonical(result.stdout), side, ("timestamp",))
            for side, result in (("py", python), ("js", node))
        ]
        assert masked[0] == masked[1]
    for side in SIDES:
        for command in (["get-channel", f"{side}-keys"], ["get-event", f"{side}-k1"]):
            python, node = run_both([*target, *command], [*target, *command])
            assert (python.code, node.code) == (0, 0), (python, node)
            assert _canonical(node.stdout) == _canonical(python.stdout)


def test_the_target_comes_from_sssn_target_in_both(parity_server: ServerThread) -> None:
    env = _environment(SSSN_TARGET=parity_server.address)
    python, node = run_both(["create-channel", "py-env"], ["create-channel", "js-env"], env)
    assert (python.code, node.code) == (0, 0), (python, node)
    assert _mask(node.stdout, "js", ()) == _mask(python.stdout, "py", ())
    assert_alike(*run_both(["channels"], ["channels"], env), "channels from SSSN_TARGET")


def test_transport_failures_exit_alike() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        quiet = "{}:{}".format(*silent.getsockname())
        for args, code, reason in (
            (["--target", closed, "get-channel", "x"], 8, "UNAVAILABLE"),
            (["--target", quiet, "--timeout", "0.2", "channels"], 9, "DEADLINE_EXCEEDED"),
        ):
            python, node = run_both(args, args)
            # The messages are each gRPC library's own words; the status and reason agree.
            for result in (python, node):
                assert result.code == code, result
                assert result.stdout == ""
                assert result.stderr.startswith(f"sssn: error: {reason}: "), result
                assert len(result.stderr.splitlines()) == 1, result


def test_both_list_every_command_and_describe_each() -> None:
    python, node = run_both(["--help"], ["--help"])
    assert (python.code, node.code) == (0, 0)
    for command in (*COMMANDS, "tail", "serve"):
        assert re.search(rf"^\s+{command}\b", python.stdout, re.MULTILINE), command
        assert re.search(rf"^\s+{command}\b", node.stdout, re.MULTILINE), command
    for line in python.stdout[python.stdout.index("exit status:") :].splitlines()[1:16]:
        if line.strip().startswith("2 "):
            continue  # Python's line names argparse
        assert line in node.stdout, line
    for command in (*COMMANDS, "tail"):
        python, node = run_both([command, "--help"], [command, "--help"])
        assert (python.code, node.code) == (0, 0), command
        for result in (python, node):
            assert result.stdout.startswith(f"usage: sssn {command}"), result.stdout
