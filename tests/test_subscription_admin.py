"""Operating subscriptions: lag, ListSubscriptions, DeleteSubscription, open stream count."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import subscription_pb2

from .helpers import DEADLINE, failure
from .streams import MANUAL, open_stream
from .test_subscriptions import append_many, pull, subscribe, wait_until


async def get(stub, subscription_id: str) -> pb.GetSubscriptionResponse:
    return await stub.GetSubscription(  # type: ignore[no-any-return]
        pb.GetSubscriptionRequest(subscription_id=subscription_id), timeout=DEADLINE
    )


async def test_get_subscription_reports_head_and_pending(stub, make_channel) -> None:
    await make_channel()
    await make_channel("other")
    await subscribe(
        stub, subscription_id="w", filter=subscription_pb2.SubscriptionFilter(kind="raw")
    )
    empty = await get(stub, "w")
    assert (empty.head_cursor, empty.pending_count) == (0, 0)
    await append_many(stub, "events", 3, kind="raw")
    await append_many(stub, "events", 2, kind="clean")
    last = await append_many(stub, "other", 1, kind="raw")
    lag = await get(stub, "w")
    assert (lag.head_cursor, lag.pending_count) == (last[0].cursor, 3)
    await pull(stub, "w", limit=2, ack_mode=MANUAL)
    assert (await get(stub, "w")).pending_count == 3  # delivered, not acknowledged
    await pull(stub, "w", limit=2)
    assert (await get(stub, "w")).pending_count == 1


async def test_list_subscriptions_pages_by_id_and_filters_by_channel(stub, make_channel) -> None:
    await make_channel("a")
    await make_channel("b")
    for name in ("s3", "s1", "s5", "s2", "s4"):
        await subscribe(stub, "a", subscription_id=name)
    await subscribe(stub, "b", subscription_id="s0")
    seen, token, pages = [], "", 0
    while True:
        page = await stub.ListSubscriptions(
            pb.ListSubscriptionsRequest(channel="a", page_size=2, page_token=token),
            timeout=DEADLINE,
        )
        seen += [s.id for s in page.subscriptions]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ["s1", "s2", "s3", "s4", "s5"]
    assert pages == 3
    everything = await stub.ListSubscriptions(pb.ListSubscriptionsRequest(), timeout=DEADLINE)
    assert [s.id for s in everything.subscriptions] == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert everything.subscriptions[0].channel == "b"


@pytest.mark.parametrize(
    ("request_fields", "code", "reason"),
    [
        ({"channel": "ghost"}, grpc.StatusCode.NOT_FOUND, "CHANNEL_NOT_FOUND"),
        ({"page_size": -1}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD"),
        ({"page_token": "%%%"}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAYLOAD"),
    ],
)
async def test_list_subscriptions_errors(stub, request_fields, code, reason) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListSubscriptions(
            pb.ListSubscriptionsRequest(**request_fields), timeout=DEADLINE
        )
    error = failure(caught.value)
    assert (error.code, error.reason) == (code, reason)


async def test_deleted_subscription_is_not_found(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    await append_many(stub, "events", 2)
    await pull(stub, "w")
    await stub.DeleteSubscription(
        pb.DeleteSubscriptionRequest(subscription_id="w"), timeout=DEADLINE
    )
    for call in (
        get(stub, "w"),
        pull(stub, "w"),
        stub.DeleteSubscription(
            pb.DeleteSubscriptionRequest(subscription_id="w"), timeout=DEADLINE
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        error = failure(caught.value)
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "SUBSCRIPTION_NOT_FOUND")
    # The id can be used again, from the beginning of the channel.
    assert (await subscribe(stub, subscription_id="w")).cursor == 0


async def test_cancel_and_deadline_leave_no_open_stream(server, stub, make_channel) -> None:
    await make_channel()
    for index in range(4):
        await subscribe(stub, subscription_id=f"w{index}")
    cancelled = [open_stream(stub, "w0"), open_stream(stub, "w1", ack_mode=MANUAL)]
    expiring = [
        stub.PullSubscription(
            pb.PullSubscriptionRequest(subscription_id=f"w{index}", follow=True), timeout=0.5
        )
        for index in (2, 3)
    ]
    await wait_until(lambda: server.service.open_streams == 4)
    for call in cancelled:
        call.cancel()
    for call in expiring:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call.read(), DEADLINE)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_until(lambda: server.service.open_streams == 0)
    await wait_until(lambda: server.service.parked_followers == 0)
    assert all(server.service.stream_status(f"w{index}") is None for index in range(4))
