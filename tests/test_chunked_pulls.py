"""A pull that ends reads and sends its events a chunk at a time, whatever its limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.domain.service import Limits

from .helpers import DEADLINE, event


async def test_a_large_pull_arrives_in_chunks_in_order(
    stub: pb_grpc.StoreServiceStub, make_channel: Callable[..., Any]
) -> None:
    name = await make_channel("backlog")
    for _ in range(3):
        await stub.AppendEvents(
            pb.AppendEventsRequest(events=[event(name, n) for n in range(1_000)]),
            timeout=DEADLINE,
        )
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=name, subscription_id="catch-up"), timeout=DEADLINE
    )
    sizes: list[int] = []
    cursors: list[int] = []
    async for message in stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id="catch-up", limit=2_600), timeout=DEADLINE
    ):
        sizes.append(len(message.events))
        cursors.extend(each.cursor for each in message.events)
    chunk = Limits().pull_chunk
    assert max(sizes) == chunk
    assert sum(sizes) == 2_600
    assert cursors == sorted(cursors) and len(set(cursors)) == 2_600
    status = await stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id="catch-up"), timeout=DEADLINE
    )
    assert status.subscription.cursor == cursors[-1]
    assert status.pending_count == 400
