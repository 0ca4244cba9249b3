"""The Node.js client (clients/node) runs its own `node --test` suite against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from sssn_server.api import StoreServicer

ServerFactory = Callable[..., Any]
ROOT = Path(__file__).resolve().parent.parent
NODE_CLIENT = ROOT / "clients" / "node"
NODE_TESTS = sorted(f"test/{path.name}" for path in (NODE_CLIENT / "test").glob("*.test.js"))
# The suite has this many tests at least; fewer means files or tests went missing.
MIN_NODE_TESTS = 25
NODE_RUN_SECONDS = 90

_COUNT = re.compile(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", re.MULTILINE)
_FAILED = re.compile(r"^\s*not ok \d+ - (.+?)(?: # .*)?$", re.MULTILINE)


@dataclass
class NodeRun:
    """What one `node --test` run reported (TAP): exit code, counts, failed test names."""

    returncode: int
    output: str
    counts: dict[str, int]
    failed: set[str] = field(default_factory=set)


def _node() -> str:
    """The node executable; fails (never skips) when `make test` did not set it up."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH; `make test` installs Node.js before running the tests")
    if not (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("clients/node/node_modules is missing; `make test` runs `npm ci` there first")
    return node


async def run_node_tests(address: str, *files: str) -> NodeRun:
    """Runs the Node client's tests against the server at `address`."""
    process = await asyncio.create_subprocess_exec(
        _node(),
        "--test",
        "--test-reporter=tap",
        *(files or NODE_TESTS),
        cwd=NODE_CLIENT,
        env={**os.environ, "SSSN_TARGET": address},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), NODE_RUN_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    output = stdout.decode(errors="replace")
    counts = {name: int(number) for name, number in _COUNT.findall(output)}
    # Suites are reported as `not ok` too when a test inside fails; keep test names only.
    failed = set(_FAILED.findall(output))
    return NodeRun(process.returncode or 0, output, counts, failed)


async def test_node_client_suite_passes_against_a_live_server(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    run = await run_node_tests(server.address)
    assert run.returncode == 0, run.output
    assert run.counts.get("fail") == 0, run.output
    assert run.counts.get("tests", 0) >= MIN_NODE_TESTS, run.output
    assert run.counts.get("pass") == run.counts.get("tests"), run.output
    for status in ("cancelled", "skipped", "todo"):
        assert run.counts.get(status, 0) == 0, f"{status} node tests:\n{run.output}"


# Proof that the Node assertions bite: each case makes the server misbehave in
# one way through the public RPC methods, and the named Node tests must fail.


def _drop_last_queried_event(monkeypatch: pytest.MonkeyPatch) -> None:
    original = StoreServicer.QueryEvents

    async def query(self: StoreServicer, request: Any, context: Any) -> Any:
        response = await original(self, request, context)
        del response.events[-1:]
        return response

    monkeypatch.setattr(StoreServicer, "QueryEvents", query)


def _stop_after_first_message(monkeypatch: pytest.MonkeyPatch) -> None:
    original = StoreServicer.PullSubscription

    async def pull(self: StoreServicer, request: Any, context: Any) -> AsyncIterator[Any]:
        async with aclosing(original(self, request, context)) as responses:
            async for response in responses:
                yield response
                return

    monkeypatch.setattr(StoreServicer, "PullSubscription", pull)


def _error_without_details(monkeypatch: pytest.MonkeyPatch) -> None:
    async def get_channel(self: StoreServicer, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"Channel not found: {request.name}")

    monkeypatch.setattr(StoreServicer, "GetChannel", get_channel)


@pytest.mark.parametrize(
    ("sabotage", "must_fail"),
    [
        (_drop_last_queried_event, "appended events come back from queries in cursor order"),
        (
            _stop_after_first_message,
            "a following stream receives events appended after it opened",
        ),
        (_error_without_details, "a missing channel is NOT_FOUND with reason, domain and resource"),
    ],
    ids=["query-drops-an-event", "follow-stops-following", "error-without-reason"],
)
async def test_node_client_suite_fails_when_the_server_misbehaves(
    start_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
    sabotage: Any,
    must_fail: str,
) -> None:
    sabotage(monkeypatch)
    server = await start_server()
    run = await run_node_tests(server.address, "test/client.test.js")
    assert run.returncode != 0, run.output
    assert must_fail in run.failed, f"{must_fail!r} did not fail:\n{run.output}"
