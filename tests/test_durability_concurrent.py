"""Crash durability under concurrency: SIGKILL the server while 16
clients append, restart it on the same store and check what survived.

Guarantees checked after the restart:
- every append whose call returned OK is stored, exactly as acknowledged
  (same cursor, same payload, same everything);
- cursors are unique and strictly increasing in query order;
- nothing is half-written: every stored event is one that an appender sent,
  field for field (the payloads carry a few hundred bytes of filler derived
  from the id, so a torn or mixed-up row would not match);
- an `AppendEvents` batch is all there or not there at all;
- the restarted server appends after every cursor handed out before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from sssn_proto.v1 import channel_pb2, event_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from .helpers import DEADLINE, event
from .server_process import ServerProcess

WORKERS = 16
BATCH = 5
# Wait for this many acknowledged events before the kill, so it lands while
# the appenders are in full flow rather than before the first commit.
ACKNOWLEDGED_BEFORE_KILL = 300
# Pages smaller than the data and not a multiple of BATCH, so batches
# straddle page boundaries.
PAGE = 97
CHANNEL = "crash"

# Sixteen clients are sixteen grpc.aio channels, each on its own connection
# (a local subchannel pool: otherwise gRPC shares one subchannel, i.e. one
# TCP connection, between channels with the same target and options). That
# is what "16 clients" means for a server, and the kill then cuts sixteen
# connections with calls in flight on each, not one multiplexed connection.
CLIENT_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


@dataclass
class Appends:
    """What the appenders sent and what the server acknowledged."""

    sent: dict[str, event_pb2.Event] = field(default_factory=dict)
    batches: list[list[str]] = field(default_factory=list)
    acknowledged: dict[str, event_pb2.Event] = field(default_factory=dict)
    # (worker, status code, whether the kill had been sent when it failed)
    failures: list[tuple[int, grpc.StatusCode, bool]] = field(default_factory=list)
    in_flight: int = 0
    killed: bool = False
    enough: asyncio.Event = field(default_factory=asyncio.Event)


def _event(worker: int, call: int, item: int | None) -> event_pb2.Event:
    event_id = f"w{worker:02d}-{call:05d}" + ("" if item is None else f"-{item}")
    filler = hashlib.sha256(event_id.encode()).hexdigest() * 6  # 384 bytes, unique per id
    return event(
        CHANNEL,
        {"worker": worker, "call": call, "item": item, "id": event_id, "filler": filler},
        id=event_id,
        source=f"w{worker:02d}",
        kind="single" if item is None else "batch",
    )


async def _append_until_failure(
    worker: int, stub: pb_grpc.StoreServiceStub, appends: Appends
) -> None:
    """Appends (singles and batches of BATCH, alternating) until a call fails."""
    for call in range(1_000_000):
        batch = (worker + call) % 2 == 1
        if batch:
            events = [_event(worker, call, item) for item in range(BATCH)]
            appends.batches.append([e.id for e in events])
        else:
            events = [_event(worker, call, None)]
        for message in events:
            appends.sent[message.id] = message
        appends.in_flight += 1
        try:
            if batch:
                response = await stub.AppendEvents(
                    pb.AppendEventsRequest(events=events), timeout=DEADLINE
                )
                stored = list(response.events)
            else:
                single = await stub.AppendEvent(
                    pb.AppendEventRequest(event=events[0]), timeout=DEADLINE
                )
                stored = [single.event]
        except grpc.aio.AioRpcError as error:
            appends.failures.append((worker, error.code(), appends.killed))
            return
        finally:
            appends.in_flight -= 1
        assert [e.id for e in stored] == [e.id for e in events]
        for message in stored:
            appends.acknowledged[message.id] = message
        if len(appends.acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
            appends.enough.set()


def _stub(client: grpc.aio.Channel) -> pb_grpc.StoreServiceStub:
    # The generated gRPC module has no type stubs.
    return pb_grpc.StoreServiceStub(client)  # type: ignore[no-untyped-call]


async def _query_all(stub: pb_grpc.StoreServiceStub) -> list[event_pb2.Event]:
    found: list[event_pb2.Event] = []
    after = 0
    while page := list(
        (
            await stub.QueryEvents(
                pb.QueryEventsRequest(channel=CHANNEL, after_cursor=after, limit=PAGE),
                timeout=DEADLINE,
            )
        ).events
    ):
        found.extend(page)
        after = page[-1].cursor
    return found


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    """Server processes to end (SIGKILL if still running) after the test."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.process.communicate(timeout=30)  # also closes its pipes


async def test_acknowledged_concurrent_appends_survive_sigkill(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    store = tmp_path / "store"
    first = ServerProcess(store)
    processes.append(first)
    appends = Appends()
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                grpc.aio.insecure_channel(first.address, options=CLIENT_OPTIONS)
            )
            for _ in range(WORKERS)
        ]
        stubs = [_stub(client) for client in clients]
        await stubs[0].CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name=CHANNEL)), timeout=DEADLINE
        )
        workers = [
            asyncio.create_task(_append_until_failure(worker, stubs[worker], appends))
            for worker in range(WORKERS)
        ]
        try:
            await asyncio.wait_for(appends.enough.wait(), 60)
            # Every worker is suspended in a call right now (that is their
            # only await), so the kill lands with a call in flight on each.
            in_flight_at_kill = appends.in_flight
            appends.killed = True
            first.process.send_signal(signal.SIGKILL)  # no shutdown code runs
            first.process.communicate(timeout=30)
            await asyncio.wait_for(asyncio.gather(*workers), 2 * DEADLINE)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    assert first.process.returncode == -signal.SIGKILL
    assert in_flight_at_kill == WORKERS
    assert len(appends.acknowledged) >= ACKNOWLEDGED_BEFORE_KILL
    # Each appender stopped on its first failure, and none failed before the kill.
    assert sorted(worker for worker, _, _ in appends.failures) == list(range(WORKERS))
    assert [f for f in appends.failures if not f[2]] == []
    assert {code for _, code, _ in appends.failures} == {grpc.StatusCode.UNAVAILABLE}

    second = ServerProcess(store)
    processes.append(second)
    async with grpc.aio.insecure_channel(second.address) as client:
        stub = _stub(client)
        stored = await _query_all(stub)

        cursors = [e.cursor for e in stored]
        assert all(a < b for a, b in itertools.pairwise(cursors)), "cursors not increasing"
        ids = [e.id for e in stored]
        assert len(set(ids)) == len(ids)
        by_id = {e.id: e for e in stored}

        # Every acknowledged append is there, exactly as acknowledged.
        missing = sorted(set(appends.acknowledged) - set(by_id))
        assert missing == [], f"{len(missing)} acknowledged events lost: {missing[:10]}"
        changed = [i for i, e in appends.acknowledged.items() if by_id[i] != e]
        assert changed == [], f"acknowledged events changed: {changed[:10]}"

        # Nothing half-written or foreign: every stored event (acknowledged
        # or caught in flight) is one that was sent, field for field.
        foreign = sorted(set(by_id) - set(appends.sent))
        assert foreign == []
        for message in stored:
            sent = appends.sent[message.id]
            assert message.channel == sent.channel == CHANNEL
            assert (message.source, message.kind) == (sent.source, sent.kind), message.id
            assert message.payload == sent.payload, f"payload of {message.id} differs"
            assert message.cursor > 0 and message.HasField("timestamp")

        # Batches are atomic, and stored in request order.
        for batch in appends.batches:
            present = [event_id for event_id in batch if event_id in by_id]
            assert present in ([], batch), f"batch partly stored: {present} of {batch}"
            batch_cursors = [by_id[event_id].cursor for event_id in present]
            assert batch_cursors == sorted(batch_cursors)

        # The restarted server goes on after every cursor handed out before.
        later = (
            await stub.AppendEvent(
                pb.AppendEventRequest(event=event(CHANNEL, "after restart")), timeout=DEADLINE
            )
        ).event
        assert later.cursor > max(cursors)
        assert later.cursor > max(e.cursor for e in appends.acknowledged.values())
        assert [e.id for e in await _query_all(stub)] == [*ids, later.id]

    status, _, errors = second.stop()
    assert status == 0, errors
    with contextlib.closing(sqlite3.connect(store / "sssn.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT count(*) FROM events").fetchone() == (len(stored) + 1,)
