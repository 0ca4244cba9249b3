"""Server processes sharing one PostgreSQL: live tails, takeover, acks and failover across them."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from sssn_proto.v1 import channel_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.store.postgres._schema import SCHEMA_VERSION

from .backends import Databases, query
from .helpers import DEADLINE, event, failure
from .server_process import ServerProcess
from .streams import MANUAL, open_stream, read_message, stream_error

pytestmark = pytest.mark.postgres_only

# Short leases, so that a killed replica's lapse within the test.
LEASE_TTL = "1.5"


class Replica:
    """One server process and a channel to it."""

    def __init__(self, url: str) -> None:
        self.process = ServerProcess(url, "--lease-ttl", LEASE_TTL, "--grace", "5")
        self.channel = grpc.aio.insecure_channel(self.process.address)
        self.stub = pb_grpc.StoreServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
        self.process.kill()


@pytest.fixture
def start_replicas(store_location: str) -> Iterator[Callable[[int], Any]]:
    started: list[Replica] = []

    async def start(count: int) -> list[Replica]:
        replicas = [Replica(store_location) for _ in range(count)]
        started.extend(replicas)
        return replicas

    yield start
    for replica in started:
        replica.process.kill()


@pytest.fixture
async def replicas(start_replicas: Callable[[int], Any]) -> AsyncIterator[list[Replica]]:
    """Three replicas, a channel `events` and one subscription per replica."""
    started: list[Replica] = await start_replicas(3)
    stub = started[0].stub
    await stub.CreateChannel(
        pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")), timeout=DEADLINE
    )
    for number in range(3):
        await _subscribe(stub, f"s{number}")
    yield started
    for replica in started:
        await replica.close()


async def _subscribe(stub: Any, subscription_id: str) -> None:
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel="events", subscription_id=subscription_id),
        timeout=DEADLINE,
    )


async def _append(stub: Any, *payloads: Any) -> list[Any]:
    response = await stub.AppendEvents(
        pb.AppendEventsRequest(events=[event("events", p) for p in payloads]), timeout=DEADLINE
    )
    return list(response.events)


async def _stored_cursors(url: str) -> list[int]:
    rows = await query(url, "SELECT cursor FROM events ORDER BY cursor")
    return [row[0] for row in rows]


async def _follow(stub: Any, subscription_id: str, count: int) -> list[int]:
    """Cursors a following stream delivers until it has `count` events."""
    call = open_stream(stub, subscription_id, limit=50)
    cursors: list[int] = []
    try:
        while len(cursors) < count:
            message = await asyncio.wait_for(call.read(), 60)
            assert message is not grpc.aio.EOF
            cursors.extend(e.cursor for e in message.events)
    finally:
        call.cancel()
    return cursors


async def test_followers_on_every_replica_deliver_exactly_what_16_writers_committed(
    replicas: list[Replica], store_location: str
) -> None:
    writes_each, writers = 12, 16
    total = writers * writes_each * 2  # each write appends two events
    followers = [
        asyncio.ensure_future(_follow(replica.stub, f"s{number}", total))
        for number, replica in enumerate(replicas)
    ]
    await asyncio.sleep(0.5)  # the streams are open before the first append

    async def write(stub: Any, writer: int) -> None:
        rng = random.Random(writer)
        for number in range(writes_each):
            await _append(stub, f"{writer}.{number}.a", f"{writer}.{number}.b")
            await asyncio.sleep(rng.random() / 100)

    # Producers on every replica, their commits interleaved.
    await asyncio.gather(*(write(replicas[w % 3].stub, w) for w in range(writers)))
    delivered = await asyncio.gather(*followers)
    stored = await _stored_cursors(store_location)
    assert len(stored) == total
    for cursors in delivered:
        # Nothing skipped, repeated or reordered, whichever replica committed it.
        assert cursors == stored


async def test_a_stream_taken_over_on_another_replica_ends_and_its_acks_are_refused(
    replicas: list[Replica], store_location: str
) -> None:
    first, second, third = replicas
    stored = await _append(first.stub, 1, 2, 3)
    old = open_stream(first.stub, "s0", ack_mode=MANUAL)
    delivered = await read_message(old)
    assert [e.cursor for e in delivered.events] == [e.cursor for e in stored]
    assert delivered.lease_epoch > 0
    new = open_stream(second.stub, "s0", ack_mode=MANUAL)
    again = await read_message(new)
    assert again.lease_epoch > delivered.lease_epoch
    assert [e.cursor for e in again.events] == [e.cursor for e in stored]  # redelivered
    ended = failure(await stream_error(old))
    assert (ended.code, ended.reason) == (grpc.StatusCode.ABORTED, "SUBSCRIPTION_TAKEN_OVER")
    # The old consumer's late acknowledgement, to any replica, changes nothing.
    for replica in replicas:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _ack(replica.stub, "s0", stored[2].cursor, delivered.lease_epoch)
        refused = failure(caught.value)
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "SUBSCRIPTION_LEASE_LOST",
        )
    rows = await query(store_location, "SELECT cursor FROM subscriptions WHERE id = 's0'")
    assert rows[0][0] == 0
    # The new owner's acknowledgement works on a third replica.
    acked = await _ack(third.stub, "s0", stored[2].cursor, again.lease_epoch)
    assert acked.cursor == stored[2].cursor
    new.cancel()


async def test_manual_acks_sent_to_another_replica_release_the_stream(
    replicas: list[Replica],
) -> None:
    streaming, acking, _ = replicas
    stored = await _append(streaming.stub, 1, 2, 3, 4)
    call = open_stream(streaming.stub, "s0", ack_mode=MANUAL, max_unacked=2)
    first = await read_message(call)
    assert [e.cursor for e in first.events] == [e.cursor for e in stored[:2]]
    await _ack(acking.stub, "s0", stored[1].cursor, first.lease_epoch)
    following = await _next_events(call)
    assert [e.cursor for e in following.events] == [e.cursor for e in stored[2:]]
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # beyond what was delivered
        await _ack(acking.stub, "s0", stored[3].cursor + 1, first.lease_epoch)
    assert failure(caught.value).code == grpc.StatusCode.INVALID_ARGUMENT
    call.cancel()


async def test_a_killed_replica_loses_nothing_acknowledged_and_a_follower_elsewhere_skips_nothing(
    replicas: list[Replica], store_location: str
) -> None:
    doomed, survivor, _ = replicas
    follower = open_stream(survivor.stub, "s1", limit=50)
    consumer = open_stream(doomed.stub, "s0", ack_mode=MANUAL)
    acknowledged: list[int] = []
    stop = asyncio.Event()

    async def produce() -> None:
        number = 0
        with contextlib.suppress(grpc.aio.AioRpcError):
            while not stop.is_set():
                (stored,) = await _append(doomed.stub, number)
                acknowledged.append(stored.cursor)
                number += 1

    producing = asyncio.ensure_future(produce())
    first = await read_message(consumer)
    await _ack(doomed.stub, "s0", first.events[-1].cursor, first.lease_epoch)
    while len(acknowledged) < 30:
        await asyncio.sleep(0.05)
    doomed.process.process.send_signal(signal.SIGKILL)
    await producing
    stop.set()
    stored = await _stored_cursors(store_location)
    # Every acknowledged append was committed (a few more may have been).
    assert set(acknowledged) <= set(stored)
    seen: list[int] = []
    while len(seen) < len(stored):
        message = await read_message(follower)
        seen.extend(e.cursor for e in message.events)
    assert seen == stored
    follower.cancel()
    # The consumer of the killed replica resumes elsewhere after what it acknowledged.
    resumed = open_stream(survivor.stub, "s0", ack_mode=MANUAL)
    message = await read_message(resumed)
    assert message.events[0].cursor == stored[stored.index(first.events[-1].cursor) + 1]
    assert message.lease_epoch > first.lease_epoch
    resumed.cancel()


async def test_a_killed_replicas_leases_lapse(replicas: list[Replica], store_location: str) -> None:
    doomed = replicas[0]
    await _append(doomed.stub, 1)
    call = open_stream(doomed.stub, "s0", ack_mode=MANUAL)
    await read_message(call)
    held = "SELECT lease_expires_at > now() FROM subscriptions WHERE id = 's0'"
    assert (await query(store_location, held))[0][0] is True
    doomed.process.process.send_signal(signal.SIGKILL)
    await asyncio.sleep(float(LEASE_TTL) + 0.5)
    assert (await query(store_location, held))[0][0] is False


async def test_a_draining_replica_releases_its_leases_before_it_exits(
    replicas: list[Replica], store_location: str
) -> None:
    draining, other, _ = replicas
    await _append(draining.stub, 1)
    call = open_stream(draining.stub, "s0", ack_mode=MANUAL)
    first = await read_message(call)
    owner = "SELECT lease_owner FROM subscriptions WHERE id = 's0'"
    assert (await query(store_location, owner))[0][0] is not None
    status, _out, _err = draining.process.stop(signal.SIGTERM)
    assert status == 0
    ended = failure(await stream_error(call))
    assert (ended.code, ended.reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    assert (await query(store_location, owner))[0][0] is None
    moved = open_stream(other.stub, "s0", ack_mode=MANUAL)
    message = await read_message(moved)
    assert message.lease_epoch == first.lease_epoch + 1
    moved.cancel()


async def test_replicas_starting_together_on_an_empty_database_migrate_it_once(
    postgres: Databases,
) -> None:
    url = postgres.create(migrated=False)
    with ThreadPoolExecutor(3) as pool:  # three processes starting at the same moment
        started = list(pool.map(lambda _: ServerProcess(url, "--lease-ttl", LEASE_TTL), range(3)))
    try:
        rows = await query(url, "SELECT version FROM sssn_schema ORDER BY version")
        assert [row[0] for row in rows] == list(range(1, SCHEMA_VERSION + 1))
        async with grpc.aio.insecure_channel(started[2].address) as channel:
            stub = pb_grpc.StoreServiceStub(channel)
            await stub.CreateChannel(
                pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")),
                timeout=DEADLINE,
            )
            assert [e.cursor for e in await _append(stub, 1)] == [1]
    finally:
        for process in started:
            process.kill()
        postgres.drop(url)


async def test_two_replicas_on_one_database(
    start_replicas: Callable[[int], Any], store_location: str
) -> None:
    producer, consumer = await start_replicas(2)
    await producer.stub.CreateChannel(
        pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")), timeout=DEADLINE
    )
    await _subscribe(consumer.stub, "w")
    follower = asyncio.ensure_future(_follow(consumer.stub, "w", 20))
    await asyncio.sleep(0.3)
    for number in range(10):
        await _append(producer.stub, number, -number)
    assert await follower == await _stored_cursors(store_location)
    info = await consumer.stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id="w"), timeout=DEADLINE
    )
    assert info.pending_count == 0
    for replica in (producer, consumer):
        await replica.close()


async def _ack(stub: Any, subscription_id: str, cursor: int, lease_epoch: int) -> Any:
    response = await stub.AckSubscription(
        pb.AckSubscriptionRequest(
            subscription_id=subscription_id, cursor=cursor, lease_epoch=lease_epoch
        ),
        timeout=DEADLINE,
    )
    return response.subscription


async def _next_events(call: Any) -> pb.PullSubscriptionResponse:
    """The next message with events (heartbeats skipped)."""
    while True:
        message = await read_message(call)
        if message.events:
            return message
