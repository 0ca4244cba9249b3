"""The PostgreSQL store's own ways: migrations, its writer lock, plain-SQL payloads, outages."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sssn_proto.v1 import channel_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.domain.errors import InvalidPayloadError, StoreReadOnlyError
from sssn_server.domain.models import ArtifactSpec, Channel, Event
from sssn_server.store.postgres import PostgresStore, redacted
from sssn_server.store.postgres._schema import SCHEMA_VERSION
from sssn_server.store.postgres._session import migrate

from .backends import Databases, PostgresCluster, open_store, query, require_postgres
from .conftest import ServerFactory
from .helpers import DEADLINE, event, failure
from .streams import open_stream, read_message, stream_error

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def empty_database(postgres: Databases) -> Iterator[str]:
    url = postgres.create(migrated=False)
    yield url
    postgres.drop(url)


async def test_a_fresh_database_is_migrated_at_first_start(empty_database: str) -> None:
    async with open_store(empty_database) as store:
        await store.create_channel(Channel(name="events"))
    rows = await query(empty_database, "SELECT version FROM sssn_schema ORDER BY version")
    assert [row[0] for row in rows] == list(range(1, SCHEMA_VERSION + 1))
    async with open_store(empty_database) as store:  # a second start finds it current
        assert (await store.get_channel("events")).name == "events"


async def test_migrations_started_at_the_same_moment_run_once(empty_database: str) -> None:
    """Replicas starting together: each waits for the migration lock, and
    every one but the first finds the schema current."""
    connections = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        await asyncio.gather(*(migrate(connection) for connection in connections))
    finally:
        for connection in connections:
            await connection.close()
    rows = await query(empty_database, "SELECT version FROM sssn_schema")
    assert sorted(row[0] for row in rows) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_store_from_a_newer_server_is_refused(store_location: str) -> None:
    connection = await asyncpg.connect(store_location)
    await connection.execute("INSERT INTO sssn_schema (version) VALUES ($1)", SCHEMA_VERSION + 1)
    await connection.close()
    with pytest.raises(RuntimeError, match="newer"):
        await open_store(store_location).open()


async def test_several_writable_servers_open_one_database(store_location: str) -> None:
    async with open_store(store_location) as first, open_store(store_location) as second:
        await first.create_channel(Channel(name="events"))
        await second.append_events([Event(id="e1", channel="events", timestamp_ns=1)])
        await first.append_events([Event(id="e2", channel="events", timestamp_ns=2)])
        async with open_store(store_location, read_only=True) as reader:
            events = await reader.query_events("events", after_cursor=0, limit=10, kind=None)
            assert [(e.id, e.cursor) for e in events] == [("e1", 1), ("e2", 2)]


async def test_read_only_sessions_refuse_writes_in_the_database_too(store_location: str) -> None:
    async with open_store(store_location, read_only=True) as store:
        with pytest.raises(StoreReadOnlyError):
            await store.create_channel(Channel(name="events"))
        assert isinstance(store, PostgresStore)
        assert store._pool is not None
        async with store._pool.acquire() as connection:
            assert await connection.fetchval("SHOW default_transaction_read_only") == "on"
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await connection.execute("INSERT INTO channels VALUES ('x', NULL, 'log', '', '{}')")


@pytest.mark.parametrize(("durability", "setting"), [("full", "on"), ("normal", "off")])
async def test_durability_sets_synchronous_commit(
    start_server: ServerFactory, durability: str, setting: str
) -> None:
    server = await start_server(durability=durability)
    assert isinstance(server.store, PostgresStore)
    assert server.store._pool is not None
    assert await server.store._pool.fetchval("SHOW synchronous_commit") == setting


async def test_an_operator_reads_payloads_with_plain_sql(
    stub: pb_grpc.StoreServiceStub, make_channel: Any, store_location: str
) -> None:
    await make_channel()
    sent = event("events", {"order": {"id": 7, "items": ["a", "b"]}, "note": "nul \x00 here"})
    sent.metadata.update({"trace": "t-1"})
    reply = await stub.AppendEvent(pb.AppendEventRequest(event=sent), timeout=DEADLINE)
    rows = await query(
        store_location,
        "SELECT payload #>> '{order,id}', payload -> 'order' -> 'items', metadata ->> 'trace',"
        " payload ->> 'note' FROM events WHERE id = $1",
        reply.event.id,
    )
    assert tuple(rows[0]) == ("7", '["a", "b"]', "t-1", "nul \\u0000 here")
    # Served exactly as sent, from the wire form.
    got = await stub.GetEvent(pb.GetEventRequest(id=reply.event.id), timeout=DEADLINE)
    assert got.event.payload.struct_value.fields["note"].string_value == "nul \x00 here"


async def test_a_value_jsonb_cannot_hold_is_invalid_and_stores_nothing(store_location: str) -> None:
    """Without a wire form the JSONB column is the only copy: a NUL character
    cannot go in, and the event is refused rather than changed."""
    async with open_store(store_location) as store:
        await store.create_channel(Channel(name="events"))
        for batch in (
            [Event(id="nul", channel="events", timestamp_ns=1, payload="a\x00b")],
            [
                Event(id="ok", channel="events", timestamp_ns=1),
                Event(id="nul", channel="events", timestamp_ns=1, source="a\x00b"),
            ],
        ):
            with pytest.raises(InvalidPayloadError):
                await store.append_events(batch)
        assert await store.head_cursor() == 0
        stored = await store.append_events([Event(id="ok", channel="events", timestamp_ns=1)])
        assert stored[0].cursor == 1
        # Appended independently, the event that cannot be held fails alone.
        first, refused, last = await store.append_each(
            [
                Event(id="a", channel="events", timestamp_ns=1),
                Event(id="b", channel="events", timestamp_ns=1, schema="x\x00"),
                Event(id="c", channel="events", timestamp_ns=1),
            ]
        )
        assert isinstance(refused, InvalidPayloadError)
        assert refused.violations[0].field == "schema"
        assert [first.cursor, last.cursor] == [2, 3]  # type: ignore[union-attr]


async def test_artifacts_are_kept_in_chunk_rows_and_content_once(store_location: str) -> None:
    data = os.urandom(3 * (1 << 20) + 5)
    async with open_store(store_location) as store:
        artifacts = []
        for artifact_id in ("a1", "a2"):
            upload = await store.begin_artifact()
            for start in range(0, len(data), 100_000):
                await upload.write(data[start : start + 100_000])
            artifacts.append(
                await store.save_artifact(upload, ArtifactSpec(), artifact_id=artifact_id)
            )
        read = b"".join([chunk async for chunk in store.read_artifact(artifacts[1], 65536)])
    assert read == data
    chunks = await query(store_location, "SELECT length(data) FROM blob_chunks ORDER BY number")
    assert [row[0] for row in chunks] == [1 << 20] * 3 + [5]  # the second upload's are gone


async def test_cursors_become_visible_in_cursor_order(store_location: str) -> None:
    """A reader asking for events after the last cursor it saw, while many
    appends commit, never misses one (no lower cursor shows up later)."""
    async with open_store(store_location) as store:
        await store.create_channel(Channel(name="events"))
        done = asyncio.Event()
        seen: list[int] = []

        async def read_along() -> None:
            while True:
                finished = done.is_set()
                page = await store.query_events(
                    "events", after_cursor=seen[-1] if seen else 0, limit=500, kind=None
                )
                seen.extend(event.cursor for event in page)
                if finished and not page:
                    return

        reader = asyncio.create_task(read_along())
        writes = [
            store.append_events(
                [Event(id=f"e{i}-{j}", channel="events", timestamp_ns=1) for j in range(i % 3 + 1)]
            )
            for i in range(300)
        ]
        await asyncio.gather(*writes)
        done.set()
        await reader
        head = await store.head_cursor()
    assert seen == list(range(1, head + 1))


def test_urls_are_shown_without_their_password() -> None:
    assert redacted("postgresql://u:pw@h:5/db?sslmode=require") == (
        "postgresql://u:***@h:5/db?sslmode=require"
    )
    assert redacted("postgres://h/db") == "postgres://h/db"


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of the test's own, which the test may stop and start."""
    require_postgres()
    cluster = PostgresCluster(fast=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


async def _health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="sssn.v1.StoreService"), timeout=DEADLINE
    )
    return int(reply.status)


async def _wait_health(channel: grpc.aio.Channel, status: int) -> None:
    for _ in range(200):
        if await _health(channel) == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health never became {status}")


@pytest.fixture
async def outage_server(
    own_cluster: PostgresCluster, start_server: ServerFactory
) -> AsyncIterator[tuple[Any, grpc.aio.Channel]]:
    url = own_cluster.create_database("sssn")
    server = await start_server(store=url, lease_ttl=1.0)
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield server, channel


async def test_a_database_restart_is_unavailable_then_healed(
    own_cluster: PostgresCluster, outage_server: tuple[Any, grpc.aio.Channel]
) -> None:
    _server, channel = outage_server
    stub = pb_grpc.StoreServiceStub(channel)
    await stub.CreateChannel(
        pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")), timeout=DEADLINE
    )
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(subscription_id="s", channel="events"), timeout=DEADLINE
    )
    first = await stub.AppendEvent(
        pb.AppendEventRequest(event=event("events", 1)), timeout=DEADLINE
    )
    stream = open_stream(stub, "s")
    assert [e.cursor for e in (await read_message(stream)).events] == [first.event.cursor]

    await asyncio.to_thread(own_cluster.stop, "immediate")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendEvent(pb.AppendEventRequest(event=event("events", 2)), timeout=DEADLINE)
    refused = failure(caught.value)
    assert (refused.code, refused.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetEvent(pb.GetEventRequest(id=first.event.id), timeout=DEADLINE)
    assert failure(caught.value).reason == "STORE_UNAVAILABLE"
    await _wait_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
    # Its lease cannot be renewed: after the lease's lifetime the stream ends,
    # since another replica may own the subscription by then.
    ended = failure(await stream_error(stream))
    assert (ended.code, ended.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")

    await asyncio.to_thread(own_cluster.start)
    await _wait_health(channel, health_pb2.HealthCheckResponse.SERVING)
    second = await stub.AppendEvent(
        pb.AppendEventRequest(event=event("events", 3)), timeout=DEADLINE
    )
    assert second.event.cursor > first.event.cursor
    # The follower resumes from its cursor: nothing lost, nothing repeated.
    resumed = open_stream(stub, "s")
    assert [e.cursor for e in (await read_message(resumed)).events] == [second.event.cursor]
    resumed.cancel()


async def test_uploads_a_killed_server_left_are_removed_once_old(store_location: str) -> None:
    connection = await asyncpg.connect(store_location)
    try:
        for upload, age in (("old", "2 days"), ("recent", "1 minute")):
            await connection.execute(
                f"INSERT INTO uploads VALUES ($1, now() - interval '{age}')", upload
            )
            await connection.execute("INSERT INTO blob_chunks VALUES ($1, 0, 'x')", upload)
    finally:
        await connection.close()
    async with open_store(store_location):
        pass
    rows = await query(store_location, "SELECT upload FROM blob_chunks ORDER BY upload")
    assert [row[0] for row in rows] == ["recent"]  # may still be in progress elsewhere
    rows = await query(store_location, "SELECT upload FROM uploads")
    assert [row[0] for row in rows] == ["recent"]


async def test_a_request_the_database_refuses_fails_alone_in_its_group(
    store_location: str,
) -> None:
    """Requests queued together share one transaction: a value the database
    refuses, or a misused call, fails only its own caller."""
    async with open_store(store_location) as store:
        await store.create_channel(Channel(name="events"))
        good = [
            store.append_events([Event(id=f"g{index}", channel="events", timestamp_ns=1)])
            for index in range(10)
        ]
        refused = store.append_events(
            [Event(id="nul", channel="events", timestamp_ns=1, source="a\x00b")]
        )
        misused = store.restore_events(
            [Event(id="r", channel="events", timestamp_ns=1, cursor=0)], head=0
        )
        results = await asyncio.gather(*good, refused, misused, return_exceptions=True)
        assert isinstance(results[-2], InvalidPayloadError)
        assert isinstance(results[-1], ValueError)
        cursors = [batch[0].cursor for batch in results[:-2]]  # type: ignore[index]
        assert sorted(cursors) == list(range(1, 11))  # dense: the refused took none
        stored = await store.query_events("events", after_cursor=0, limit=20, kind=None)
        assert sorted(event.id for event in stored) == sorted(f"g{index}" for index in range(10))
