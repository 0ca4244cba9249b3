"""One stream per subscription: a new stream takes over, the old one ends ABORTED."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from .helpers import failure
from .streams import MANUAL, open_stream, stream_error
from .test_subscriptions import append_many, read_events, subscribe, wait_until


async def test_a_new_stream_takes_over_and_the_old_one_ends_aborted(
    server, stub, make_channel
) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    old = open_stream(stub, "w")
    await wait_until(lambda: server.service.parked_followers == 1)
    new = open_stream(stub, "w")
    try:
        error = failure(await stream_error(old))
        assert error.code == grpc.StatusCode.ABORTED
        assert error.reason == "SUBSCRIPTION_TAKEN_OVER"
        assert error.metadata == {"subscription_id": "w"}
        await wait_until(lambda: server.service.open_streams == 1)
        stored = await append_many(stub, "events", 3)
        assert [e.id for e in await read_events(new, 3)] == [e.id for e in stored]
    finally:
        new.cancel()
    await wait_until(lambda: server.service.open_streams == 0)


async def test_takeover_hands_unacked_events_to_the_new_stream(server, stub, make_channel) -> None:
    await make_channel()
    await subscribe(stub, subscription_id="w")
    stored = await append_many(stub, "events", 4)
    old = open_stream(stub, "w", ack_mode=MANUAL)
    assert [e.id for e in await read_events(old, 4)] == [e.id for e in stored]
    new = open_stream(stub, "w", ack_mode=MANUAL)
    try:
        assert failure(await stream_error(old)).reason == "SUBSCRIPTION_TAKEN_OVER"
        assert [e.id for e in await read_events(new, 4)] == [e.id for e in stored]
    finally:
        new.cancel()


async def test_deleting_the_subscription_ends_its_stream_not_found(
    server, stub, make_channel
) -> None:
    from sssn_proto.v1 import store_service_pb2 as pb

    from .helpers import DEADLINE

    await make_channel()
    await subscribe(stub, subscription_id="w")
    call = open_stream(stub, "w", ack_mode=MANUAL)
    await wait_until(lambda: server.service.parked_followers == 1)
    await stub.DeleteSubscription(
        pb.DeleteSubscriptionRequest(subscription_id="w"), timeout=DEADLINE
    )
    error = failure(await stream_error(call))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "SUBSCRIPTION_NOT_FOUND")
    await wait_until(lambda: server.service.open_streams == 0)


async def test_takeover_does_not_wait_for_a_stream_stuck_sending(
    server, stub, make_channel
) -> None:
    from sssn_proto.v1 import store_service_pb2 as pb

    from .helpers import DEADLINE, event

    await make_channel()
    await subscribe(stub, subscription_id="w", batch_size=1)
    blob = "x" * (256 * 1024)
    stored = []
    for index in range(40):  # 10 MiB: far more than the transport buffers for a stream
        response = await stub.AppendEvent(
            pb.AppendEventRequest(event=event("events", {"i": index, "blob": blob})),
            timeout=DEADLINE,
        )
        stored.append(response.event)
    stuck = open_stream(stub, "w", ack_mode=MANUAL)  # never read: its sends block

    def blocked_sending() -> bool:
        status = server.service.stream_status("w")
        return status is not None and status.sending

    await wait_until(blocked_sending)
    new = open_stream(stub, "w", ack_mode=MANUAL)
    try:
        assert [e.id for e in await read_events(new, 40)] == [e.id for e in stored]
        await wait_until(lambda: server.service.open_streams == 1)
    finally:
        new.cancel()
        stuck.cancel()


async def test_a_stream_ended_between_sends_starts_no_further_send() -> None:
    # A takeover that lands while the old stream reads its next batch finds
    # no send to cancel; the send must then not begin at all, or it could
    # block on a reader that has gone.
    from sssn_server.domain.errors import SubscriptionTakenOverError
    from sssn_server.domain.streams import StreamHandle

    handle = StreamHandle("w", MANUAL, 0, epoch=1)
    handle.end(SubscriptionTakenOverError("w"))
    began = False
    with pytest.raises(SubscriptionTakenOverError), handle.sending_to_reader():
        began = True
    assert not began and not handle.sending


async def test_ending_a_stream_mid_send_cancels_the_send() -> None:
    from sssn_server.domain.errors import SubscriptionTakenOverError
    from sssn_server.domain.streams import StreamHandle

    handle_ready = asyncio.Event()
    handles: list[StreamHandle] = []

    async def stuck_sender() -> None:
        handles.append(StreamHandle("w", MANUAL, 0, epoch=len(handles) + 1))
        with handles[0].sending_to_reader():
            handle_ready.set()
            await asyncio.Event().wait()  # a transport that never takes the message

    task = asyncio.ensure_future(stuck_sender())
    await handle_ready.wait()
    assert handles[0].sending
    handles[0].end(SubscriptionTakenOverError("w"))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not handles[0].sending
