"""Subscriptions over gRPC: creation rules and PullSubscription in both modes."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_proto.v1 import subscription_pb2

from .helpers import DEADLINE, event, failure, struct


async def subscribe(stub, channel="events", **fields) -> subscription_pb2.Subscription:
    response = await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=channel, **fields), timeout=DEADLINE
    )
    return response.subscription


async def append_many(stub, channel: str, count: int, start: int = 0, **fields) -> list:
    response = await stub.AppendEvents(
        pb.AppendEventsRequest(
            events=[event(channel, start + index, **fields) for index in range(count)]
        ),
        timeout=DEADLINE,
    )
    return list(response.events)


async def pull(stub, subscription_id: str, **fields) -> list:
    """A non-following pull: every event of every message, in order."""
    events = []
    async for message in stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id=subscription_id, **fields), timeout=DEADLINE
    ):
        events.extend(message.events)
    return events


async def cursor_of(stub, subscription_id: str) -> int:
    response = await stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id=subscription_id), timeout=DEADLINE
    )
    return response.subscription.cursor


async def read_events(call, count: int) -> list:
    """Reads messages from a following stream until `count` events arrived."""
    events: list = []
    while len(events) < count:
        message = await asyncio.wait_for(call.read(), DEADLINE)
        assert message is not grpc.aio.EOF, "stream ended early"
        events.extend(message.events)
    return events


async def wait_until(predicate, timeout: float = DEADLINE) -> None:
    """Waits for a condition of the server's state (not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def wait_until_cursor(stub, subscription_id: str, cursor: int) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while await cursor_of(stub, subscription_id) < cursor:
        assert asyncio.get_running_loop().time() < deadline, "cursor never moved"
        await asyncio.sleep(0.01)


# Creation


async def test_create_subscription_with_every_field(stub, make_channel) -> None:
    await make_channel()
    created = await subscribe(
        stub,
        subscription_id="worker",
        consumer="pool-1",
        batch_size=25,
        filter=subscription_pb2.SubscriptionFilter(kind="raw"),
        metadata=struct({"owner": "ops"}),
    )
    assert created.id == "worker"
    assert created.cursor == 0
    assert created.consumer == "pool-1"
    assert created.batch_size == 25
    assert created.filter.kind == "raw"
    assert dict(created.metadata) == {"owner": "ops"}
    fetched = await stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id="worker"), timeout=DEADLINE
    )
    assert fetched.subscription == created


async def test_defaults_mint_an_id_and_batch_size_100(stub, make_channel) -> None:
    await make_channel()
    created = await subscribe(stub)
    assert created.id
    assert created.batch_size == 100


async def test_same_id_same_channel_returns_the_existing_subscription(stub, make_channel) -> None:
    await make_channel()
    first = await subscribe(stub, subscription_id="w", consumer="one")
    await append_many(stub, "events", 3)
    await pull(stub, "w")
    again = await subscribe(stub, subscription_id="w", consumer="two", batch_size=5)
    assert again.consumer == "one"
    assert again.batch_size == first.batch_size
    assert again.cursor > 0  # the existing cursor, not a fresh one


async def test_same_id_for_another_channel_is_already_exists(stub, make_channel) -> None:
    await make_channel("a")
    await make_channel("b")
    await subscribe(stub, "a", subscription_id="w")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await subscribe(stub, "b", subscription_id="w")
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "SUBSCRIPTION_EXISTS"
    assert error.metadata["subscription_id"] == "w"


async def test_subscribing_to_a_missing_channel_is_not_found(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await subscribe(stub, "ghost")
    assert failure(caught.value).reason == "CHANNEL_NOT_FOUND"


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"subscription_id": "a/b"}, "subscription_id"),
        ({"consumer": "two words"}, "consumer"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -1}, "batch_size"),
        ({"filter": subscription_pb2.SubscriptionFilter(kind="a:b")}, "filter.kind"),
    ],
)
async def test_bad_subscription_fields_are_invalid(stub, make_channel, fields, bad_field) -> None:
    await make_channel()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await subscribe(stub, **fields)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [bad_field]


async def test_get_missing_subscription_is_not_found(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSubscription(
            pb.GetSubscriptionRequest(subscription_id="nope"), timeout=DEADLINE
        )
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "SUBSCRIPTION_NOT_FOUND")
    assert error.metadata == {"subscription_id": "nope"}


# Pulling without follow


async def test_pull_delivers_pending_events_in_order_and_moves_the_cursor(
    stub, make_channel
) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w", batch_size=4)
    stored = await append_many(stub, "events", 10)
    first = await pull(stub, "w")
    assert [e.id for e in first] == [e.id for e in stored[:4]]
    assert await cursor_of(stub, "w") == stored[3].cursor
    second = await pull(stub, "w", limit=5)
    assert [e.id for e in second] == [e.id for e in stored[4:9]]
    rest = await pull(stub, "w", limit=100)
    assert [e.id for e in rest] == [stored[9].id]
    assert await pull(stub, "w") == []
    assert await cursor_of(stub, "w") == stored[9].cursor


async def test_pull_applies_the_kind_filter(stub, make_channel) -> None:
    await make_channel()
    await subscribe(
        stub, subscription_id="raw-only", filter=subscription_pb2.SubscriptionFilter(kind="raw")
    )
    await append_many(stub, "events", 3, kind="clean")
    raw = await append_many(stub, "events", 2, kind="raw")
    delivered = await pull(stub, "raw-only")
    assert [e.id for e in delivered] == [e.id for e in raw]


async def test_pull_only_sees_its_own_channel(stub, make_channel) -> None:
    await make_channel("a")
    await make_channel("b")
    await subscribe(stub, "a", subscription_id="w")
    await append_many(stub, "b", 3)
    mine = await append_many(stub, "a", 2)
    assert [e.id for e in await pull(stub, "w")] == [e.id for e in mine]


async def test_concurrent_pulls_of_one_subscription_get_disjoint_batches(
    stub, make_channel
) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w", batch_size=10)
    stored = await append_many(stub, "events", 40)
    batches = await asyncio.gather(*(pull(stub, "w") for _ in range(4)))
    delivered = sorted(e.cursor for batch in batches for e in batch)
    assert delivered == [e.cursor for e in stored]


async def test_pull_of_a_missing_subscription_is_not_found(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pull(stub, "nope")
    assert failure(caught.value).reason == "SUBSCRIPTION_NOT_FOUND"


@pytest.mark.parametrize("follow", [False, True])
async def test_pull_rejects_a_non_positive_limit(stub, make_channel, follow) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pull(stub, "w", limit=0, follow=follow)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["limit"]


async def test_large_batches_are_split_into_messages_under_4_mib(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w", batch_size=20)
    blob = "x" * (512 * 1024)
    stored = await append_many(stub, "events", 0)
    for index in range(12):  # 12 x 0.5 MiB: more than one default-sized message
        stored.append(
            (
                await stub.AppendEvent(
                    pb.AppendEventRequest(event=event("events", {"i": index, "blob": blob})),
                    timeout=DEADLINE,
                )
            ).event
        )
    messages = [
        message
        async for message in stub.PullSubscription(
            pb.PullSubscriptionRequest(subscription_id="w"), timeout=DEADLINE
        )
    ]
    assert len(messages) >= 2
    assert all(message.ByteSize() < 4 * 1024 * 1024 for message in messages)
    assert [e.id for m in messages for e in m.events] == [e.id for e in stored]


# Following


async def test_follow_delivers_backlog_then_events_appended_after_it_opened(
    server, stub, make_channel
) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w", batch_size=3)
    backlog = await append_many(stub, "events", 5)
    call = stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id="w", follow=True))
    try:
        assert [e.id for e in await read_events(call, 5)] == [e.id for e in backlog]
        await wait_until(lambda: server.service.parked_followers == 1)
        live = []
        for index in range(4):
            live.append(
                (
                    await stub.AppendEvent(
                        pb.AppendEventRequest(event=event("events", 100 + index)),
                        timeout=DEADLINE,
                    )
                ).event
            )
        assert [e.id for e in await read_events(call, 4)] == [e.id for e in live]
        await wait_until(lambda: server.service.parked_followers == 1)
        assert await cursor_of(stub, "w") == live[-1].cursor
    finally:
        call.cancel()


async def test_follow_ignores_other_channels_and_kinds(server, stub, make_channel) -> None:
    await make_channel()
    await make_channel("noise")
    await subscribe(
        stub, subscription_id="w", filter=subscription_pb2.SubscriptionFilter(kind="wanted")
    )
    call = stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id="w", follow=True))
    try:
        await wait_until(lambda: server.service.parked_followers == 1)
        await append_many(stub, "noise", 3, kind="wanted")
        await append_many(stub, "events", 3, kind="other")
        wanted = await append_many(stub, "events", 1, kind="wanted")
        assert [e.id for e in await read_events(call, 1)] == [wanted[0].id]
    finally:
        call.cancel()


async def test_reconnecting_follower_loses_and_repeats_nothing(server, stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w", batch_size=2)
    expected = await append_many(stub, "events", 5)
    received: list = []
    for round_number in range(4):
        call = stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id="w", follow=True))
        received.extend(await read_events(call, len(expected) - len(received)))
        # Cancel only once the server recorded the delivery: a stream cut while
        # a message is in flight may deliver it again (at least once).
        await wait_until_cursor(stub, "w", received[-1].cursor)
        call.cancel()
        expected += await append_many(stub, "events", 3, start=10 * (round_number + 1))
    call = stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id="w", follow=True))
    received.extend(await read_events(call, len(expected) - len(received)))
    call.cancel()
    assert [e.id for e in received] == [e.id for e in expected]
    assert len({e.id for e in received}) == len(received)


async def test_cancelled_streams_leave_no_task_or_waiter_behind(server, stub, make_channel) -> None:
    await make_channel()
    # One subscription each: a second stream on a subscription takes it over.
    for index in range(5):
        await subscribe(stub, subscription_id=f"w{index}")
    await asyncio.sleep(0)
    baseline = len(asyncio.all_tasks())
    calls = [
        stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id=f"w{index}", follow=True))
        for index in range(5)
    ]
    await wait_until(lambda: server.service.parked_followers == 5)
    for call in calls:
        call.cancel()
    await wait_until(lambda: server.service.parked_followers == 0)
    await wait_until(lambda: len(asyncio.all_tasks()) <= baseline)
    # The subscription still works for the next consumer.
    stored = await append_many(stub, "events", 2)
    assert [e.id for e in await pull(stub, "w0")] == [e.id for e in stored]
    assert server.service.open_streams == 0


async def test_many_followers_of_one_channel_each_get_every_event(
    server, stub, make_channel
) -> None:
    await make_channel()
    calls = []
    for index in range(3):
        await subscribe(stub, subscription_id=f"w{index}")
        calls.append(
            stub.PullSubscription(
                pb.PullSubscriptionRequest(subscription_id=f"w{index}", follow=True)
            )
        )
    try:
        await wait_until(lambda: server.service.parked_followers == 3)
        stored = await append_many(stub, "events", 7)
        for call in calls:
            assert [e.id for e in await read_events(call, 7)] == [e.id for e in stored]
    finally:
        for call in calls:
            call.cancel()


async def test_shutdown_ends_following_streams_with_unavailable(start_server) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel={"name": "events"}), timeout=DEADLINE
        )
        await subscribe(stub, subscription_id="w")
        call = stub.PullSubscription(pb.PullSubscriptionRequest(subscription_id="w", follow=True))
        await wait_until(lambda: server.service.parked_followers == 1)
        # A long grace must not delay the end of following streams.
        stopping = asyncio.create_task(server.stop(grace=30))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call.read(), DEADLINE)
        await asyncio.wait_for(stopping, DEADLINE)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "SHUTTING_DOWN"
