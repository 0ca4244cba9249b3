"""Flow control: a manual stream pauses at `max_unacked` and resumes as acks arrive."""

from __future__ import annotations

import grpc
import pytest

from .helpers import failure
from .streams import MANUAL, ack, open_stream
from .test_subscriptions import append_many, pull, read_events, subscribe, wait_until


async def test_max_unacked_holds_the_server_back_until_acks_arrive(
    server, stub, make_channel
) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w", batch_size=100)
    stored = await append_many(stub, "events", 10)
    call = open_stream(stub, "w", ack_mode=MANUAL, max_unacked=3)

    def paused_with(unacked: int) -> bool:
        status = server.service.stream_status("w")
        return status is not None and status.paused and status.unacked == unacked

    try:
        for start in (0, 3, 6):
            # The server is parked with exactly three outstanding: it sent
            # three events and holds the other ones back.
            assert [e.id for e in await read_events(call, 3)] == [
                e.id for e in stored[start : start + 3]
            ]
            await wait_until(lambda: paused_with(3))
            assert server.service.parked_followers == 1
            await ack(stub, "w", stored[start + 2].cursor)
        assert [e.id for e in await read_events(call, 1)] == [stored[9].id]
        await wait_until(lambda: server.service.parked_followers == 1)
        status = server.service.stream_status("w")
        assert status is not None and not status.paused and status.unacked == 1
    finally:
        call.cancel()


async def test_non_following_manual_pull_stops_at_max_unacked(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    stored = await append_many(stub, "events", 5)
    delivered = await pull(stub, "w", ack_mode=MANUAL, max_unacked=2, limit=5)
    assert [e.id for e in delivered] == [e.id for e in stored[:2]]


async def test_negative_max_unacked_is_invalid(stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pull(stub, "w", ack_mode=MANUAL, max_unacked=-1)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["max_unacked"]
