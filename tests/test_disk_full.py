"""A full disk: writes get RESOURCE_EXHAUSTED (STORAGE_FULL), reads go on, writes resume."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sssn_proto.v1 import channel_pb2, snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from .conftest import ServerFactory
from .helpers import DEADLINE, event, failure, value
from .streams import MANUAL

# Room for the store's files (the write-ahead log takes about 4 MiB at start).
DISK_SIZE = "8m"
# Tries of one kind of write on a full disk before it must have failed: a
# write may still fit in what SQLite holds allocated in its log.
TRIES = 40


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_SIZE, unmounted after the test (and its server) ended."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root: the disk-full test must run there")
        pytest.skip("mounting a small tmpfs needs root (CI runs this test as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def store_location(small_disk: Path) -> Path:
    """The SQLite store, on the small disk (PostgreSQL's full disk: test_store_postgres)."""
    return small_disk / "store"


def fill(path: Path) -> None:
    """Writes `path` until the file system has not one byte left."""
    chunk = bytes(1 << 16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        while chunk:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)


async def until_storage_full(what: str, write: Callable[[int], Awaitable[Any]]) -> None:
    """Calls `write(attempt)` until it fails; the failure must be
    RESOURCE_EXHAUSTED with reason STORAGE_FULL."""
    for attempt in range(TRIES):
        try:
            await write(attempt)
        except grpc.aio.AioRpcError as caught:
            error = failure(caught)
            assert (error.code, error.reason) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "STORAGE_FULL",
            ), (what, error)
            assert "Retry" in error.message
            return
    raise AssertionError(f"{what}: {TRIES} writes succeeded on a full disk")


async def test_a_full_disk_refuses_writes_keeps_reads_and_recovers(
    start_server: ServerFactory, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server: SSSNServer = await start_server()
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        await _run(stub, small_disk)
    # A full disk is expected, not a bug: a line per failed write, no traceback.
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in noisy] == []


async def _run(stub: Any, disk: Path) -> None:
    # What exists before the disk fills: a channel with events, a snapshot,
    # an artifact and a manual subscription with events delivered to ack.
    await stub.CreateChannel(
        pb.CreateChannelRequest(channel=channel_pb2.Channel(name="c")), timeout=DEADLINE
    )
    seeded = await stub.AppendEvents(
        pb.AppendEventsRequest(events=[event("c", {"n": n}) for n in range(TRIES + 5)]),
        timeout=DEADLINE,
    )
    cursors = [e.cursor for e in seeded.events]
    await stub.PutSnapshot(
        pb.PutSnapshotRequest(snapshot=snapshot_pb2.Snapshot(name="snap", value=value(1))),
        timeout=DEADLINE,
    )
    artifact = (
        await stub.WriteArtifact(pb.WriteArtifactRequest(data=b"kept"), timeout=DEADLINE)
    ).artifact
    for subscription in ("acks", "seeker"):
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel="c", subscription_id=subscription),
            timeout=DEADLINE,
        )
    pull = stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id="acks", ack_mode=MANUAL, limit=len(cursors)),
        timeout=DEADLINE,
    )
    assert sum([len(message.events) async for message in pull]) == len(cursors)

    fill(disk / "filler")
    # Big events first, then ever smaller ones, until not even a small one
    # fits in what the write-ahead log holds allocated.
    for size in (1 << 17, 1 << 14, 1 << 10, 0):
        await until_storage_full(
            f"AppendEvent of {size} bytes",
            lambda n, size=size: stub.AppendEvent(
                pb.AppendEventRequest(event=event("c", "x" * size)), timeout=DEADLINE
            ),
        )

    acked = iter(cursors)
    writes: dict[str, Callable[[int], Awaitable[Any]]] = {
        "AppendEvents": lambda n: stub.AppendEvents(
            pb.AppendEventsRequest(events=[event("c", n), event("c", n)]), timeout=DEADLINE
        ),
        "AppendEventStream": lambda n: _append_by_stream(stub, event("c", n)),
        "CreateChannel": lambda n: stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name=f"new-{n}")),
            timeout=DEADLINE,
        ),
        "CreateSubscription": lambda n: stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel="c", subscription_id=f"sub-{n}"),
            timeout=DEADLINE,
        ),
        "AckSubscription": lambda n: stub.AckSubscription(
            pb.AckSubscriptionRequest(subscription_id="acks", cursor=next(acked)),
            timeout=DEADLINE,
        ),
        "SeekSubscription": lambda n: stub.SeekSubscription(
            pb.SeekSubscriptionRequest(subscription_id="seeker", cursor=n % 2),
            timeout=DEADLINE,
        ),
        "PutSnapshot": lambda n: stub.PutSnapshot(
            pb.PutSnapshotRequest(snapshot=snapshot_pb2.Snapshot(name="snap", value=value(n))),
            timeout=DEADLINE,
        ),
        "WriteArtifact": lambda n: stub.WriteArtifact(
            pb.WriteArtifactRequest(data=os.urandom(1 << 12)), timeout=DEADLINE
        ),
        "UploadArtifact": lambda n: stub.UploadArtifact(
            iter(
                [
                    pb.UploadArtifactRequest(header=pb.UploadArtifactHeader()),
                    pb.UploadArtifactRequest(data=os.urandom(1 << 12)),
                ]
            ),
            timeout=DEADLINE,
        ),
    }
    for name, write in writes.items():
        await until_storage_full(name, write)

    # Concurrent writes are committed in groups: a group that fails on a full
    # disk fails all of its writes, each told STORAGE_FULL, none stored.
    results = await asyncio.gather(
        *(
            stub.AppendEvent(
                pb.AppendEventRequest(event=event("c", "y" * 4096, id=f"burst-{n}")),
                timeout=DEADLINE,
            )
            for n in range(20)
        ),
        return_exceptions=True,
    )
    told_stored = {r.event.id for r in results if not isinstance(r, BaseException)}
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            assert failure(result).reason == "STORAGE_FULL"
        else:
            assert not isinstance(result, BaseException), result

    # Reads go on.
    query = await stub.QueryEvents(pb.QueryEventsRequest(channel="c", limit=5), timeout=DEADLINE)
    assert [e.cursor for e in query.events] == cursors[:5]
    await stub.GetChannel(pb.GetChannelRequest(name="c"), timeout=DEADLINE)
    got = await stub.GetSnapshot(pb.GetSnapshotRequest(name="snap"), timeout=DEADLINE)
    assert got.snapshot.value == value(1)
    listed = await stub.ListSubscriptions(pb.ListSubscriptionsRequest(), timeout=DEADLINE)
    assert "acks" in {s.id for s in listed.subscriptions}
    chunks = stub.ReadArtifact(pb.ReadArtifactRequest(id=artifact.id), timeout=DEADLINE)
    assert b"".join([message.data async for message in chunks]) == b"kept"

    # Space returns: every kind of write succeeds again.
    (disk / "filler").unlink()
    for write in writes.values():
        await write(TRIES + 1)
    stored = await stub.QueryEvents(
        pb.QueryEventsRequest(channel="c", after_cursor=cursors[-1], limit=1000),
        timeout=DEADLINE,
    )
    burst = {e.id for e in stored.events if e.id.startswith("burst-")}
    assert burst == told_stored


async def _append_by_stream(stub: Any, message: Any) -> None:
    call = stub.AppendEventStream(
        iter([pb.AppendEventStreamRequest(events=[message])]), timeout=DEADLINE
    )
    async for answer in call:
        for result in answer.results:
            assert result.WhichOneof("result") == "event", result
