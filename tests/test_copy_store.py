"""`sssn-server copy-store`: a whole store into an empty one, SQLite to PostgreSQL and back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from sssn_proto.v1 import channel_pb2, snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer
from sssn_server.config import ServerConfig
from sssn_server.domain.models import Event
from sssn_server.domain.ports import Store

from .backends import Databases, open_store, query
from .helpers import DEADLINE, event, struct, value

ARTIFACT = bytes(range(256)) * 5000  # more than one chunk of a copy


async def _fill(location: Path | str) -> None:
    """A store with every kind of thing in it, including a deleted channel
    whose events were the newest (the head is then above the last event)."""
    server = SSSNServer(ServerConfig(store=location, port=0))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as connection:
            stub = pb_grpc.StoreServiceStub(connection)
            for name in ("a", "b", "gone"):
                await stub.CreateChannel(
                    pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)),
                    timeout=DEADLINE,
                )
            first = await stub.AppendEvent(
                pb.AppendEventRequest(event=event("a", {"n": 1}, kind="start")), timeout=DEADLINE
            )
            await stub.AppendEvents(
                pb.AppendEventsRequest(
                    events=[
                        event("b", {"n": index}, parent_ids=[first.event.id], source="s")
                        for index in range(2500)
                    ]
                ),
                timeout=DEADLINE,
            )
            linked = await stub.AppendEvent(
                pb.AppendEventRequest(
                    event=event("gone", [1, "two"], metadata=struct({"trace": "t"}))
                ),
                timeout=DEADLINE,
            )
            await stub.AppendEvent(pb.AppendEventRequest(event=event("a", 2)), timeout=DEADLINE)
            await stub.AppendEvent(pb.AppendEventRequest(event=event("gone", 3)), timeout=DEADLINE)
            for subscription, channel in (("sa", "a"), ("sb", "b")):
                await stub.CreateSubscription(
                    pb.CreateSubscriptionRequest(subscription_id=subscription, channel=channel),
                    timeout=DEADLINE,
                )
            await stub.SeekSubscription(
                pb.SeekSubscriptionRequest(subscription_id="sa", cursor=first.event.cursor),
                timeout=DEADLINE,
            )
            await stub.WriteArtifact(
                pb.WriteArtifactRequest(
                    data=ARTIFACT, channel="a", event_ids=[linked.event.id, first.event.id]
                ),
                timeout=DEADLINE,
            )
            await stub.WriteArtifact(pb.WriteArtifactRequest(data=b""), timeout=DEADLINE)
            await stub.PutSnapshot(
                pb.PutSnapshotRequest(
                    snapshot=snapshot_pb2.Snapshot(
                        name="state", value=value({"x": 1}), source_event_id=linked.event.id
                    )
                ),
                timeout=DEADLINE,
            )
            await stub.DeleteChannel(pb.DeleteChannelRequest(name="gone"), timeout=DEADLINE)
    finally:
        await server.stop(grace=0)


async def _contents(store: Store) -> dict[str, Any]:
    channels = await store.list_channels(after=None, limit=100)
    artifacts = await store.list_artifacts(after=None, limit=100)
    return {
        "head": await store.head_cursor(),
        "channels": channels,
        "events": {
            channel.name: await store.query_events(
                channel.name, after_cursor=0, limit=10_000, kind=None
            )
            for channel in channels
        },
        "subscriptions": await store.list_subscriptions(channel=None, after=None, limit=100),
        "artifacts": artifacts,
        "payloads": [
            b"".join([chunk async for chunk in store.read_artifact(artifact, 65536)])
            for artifact in artifacts
        ],
        "snapshots": await store.list_snapshots(after=None, limit=100),
    }


def _copy(source: Path | str, target: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sssn_server",
            "copy-store",
            "--from",
            str(source),
            "--to",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("direction", ["sqlite-to-postgres", "postgres-to-sqlite"])
async def test_a_copy_keeps_ids_cursors_subscriptions_artifacts_and_snapshots(
    direction: str, tmp_path: Path, postgres: Databases
) -> None:
    folder, url = tmp_path / "store", postgres.create(migrated=False)
    source, target = (folder, url) if direction == "sqlite-to-postgres" else (url, folder)
    await _fill(source)

    copied = _copy(source, target)

    assert copied.returncode == 0, copied.stderr
    assert "copied 2 channels, 2,502 events" in copied.stdout
    assert "2 subscriptions, 2 artifacts" in copied.stdout and "1 snapshots" in copied.stdout
    assert "events: 2,502/2,502 (100%)" in copied.stderr  # the progress, line by line
    async with open_store(source, read_only=True) as original:
        expected = await _contents(original)
    async with open_store(target) as copy:
        got = await _contents(copy)
    # Above the last event left: the deleted channel's (and in PostgreSQL
    # the deletion's own cursor).
    assert expected["head"] == (2504 if isinstance(source, Path) else 2505)
    assert got == expected
    assert sorted(expected["payloads"]) == [b"", ARTIFACT]
    # New appends go on above the copied head.
    async with open_store(target) as copy:
        (appended,) = await copy.append_events([Event(id="new", channel="a", timestamp_ns=1)])
    assert appended.cursor == expected["head"] + 1
    if isinstance(target, str):  # the copy's payloads read with plain SQL
        numbers = await query(
            target, "SELECT (payload ->> 'n')::int FROM events WHERE channel = 'b' ORDER BY cursor"
        )
        assert [row[0] for row in numbers] == list(range(2500))


async def test_a_store_that_is_not_empty_is_refused_and_left_alone(
    tmp_path: Path, postgres: Databases
) -> None:
    source, target = tmp_path / "store", postgres.create(migrated=False)
    await _fill(source)
    assert _copy(source, target).returncode == 0
    async with open_store(target) as copy:
        before = await _contents(copy)

    again = _copy(source, target)

    assert again.returncode == 2
    assert again.stderr.strip().endswith("is not empty; copy-store fills a new store only")
    assert "Traceback" not in again.stderr
    async with open_store(target) as copy:
        assert await _contents(copy) == before
