"""An event too large to send (stored before the size limits) stops every read
at it: nothing after it is skipped, and no cursor moves past it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_proto.v1 import subscription_pb2
from sssn_server.api import _convert as convert
from sssn_server.app import SSSNServer
from sssn_server.config import ServerConfig
from sssn_server.domain.errors import EventUndeliverableError
from sssn_server.domain.models import Channel, Event, Subscription
from sssn_server.domain.service import ChannelService, Limits
from sssn_server.store import SQLiteStore

from .helpers import DEADLINE, failure

STOCK_RECEIVE_LIMIT = 4 * 1024 * 1024
HUGE = "x" * (STOCK_RECEIVE_LIMIT + 1000)


def legacy(index: int, payload: object, *, wire: bool) -> Event:
    stored = Event(id=f"e{index}", channel="events", timestamp_ns=index + 1, payload=payload)
    if wire:  # as stored by a version that kept the served form, but no limit
        stored.wire = convert.encode_event(stored)
    return stored


async def write_legacy_store(root: Path, *, wire: bool) -> None:
    """Channel `events`: a small event, one larger than a client receives, and
    another small one; subscriptions `auto` and `manual` at the start."""
    store = SQLiteStore(root)
    await store.open()
    try:
        await store.create_channel(Channel(name="events"))
        await store.append_events([legacy(1, 1, wire=wire)])
        await store.append_events([legacy(2, HUGE, wire=wire)])
        await store.append_events([legacy(3, 3, wire=wire)])
        for name in ("auto", "manual"):
            await store.create_subscription(Subscription(id=name, channel="events"))
    finally:
        await store.close()


@pytest.fixture(params=["wire form", "no wire form"])
async def stub(request, tmp_path: Path) -> AsyncIterator[pb_grpc.StoreServiceStub]:
    root = tmp_path / "store"
    await write_legacy_store(root, wire=request.param == "wire form")
    server = SSSNServer(ServerConfig(store=root, host="127.0.0.1", port=0))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield pb_grpc.StoreServiceStub(channel)
    finally:
        await server.stop(grace=0)


async def pull(
    stub: pb_grpc.StoreServiceStub, subscription: str, **fields: object
) -> tuple[list[str], grpc.aio.AioRpcError | None]:
    """The ids a pull delivered before it ended, and how it ended."""
    ids: list[str] = []
    try:
        async for message in stub.PullSubscription(
            pb.PullSubscriptionRequest(subscription_id=subscription, limit=10, **fields),
            timeout=DEADLINE,
        ):
            ids.extend(event.id for event in message.events)
    except grpc.aio.AioRpcError as error:
        return ids, error
    return ids, None


def assert_undeliverable(error: grpc.aio.AioRpcError | None) -> None:
    assert error is not None
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = failure(error)
    assert info.reason == "EVENT_UNDELIVERABLE"
    assert info.metadata["event_id"] == "e2" and info.metadata["cursor"] == "2"
    assert "seek" in error.details()


async def cursor_of(stub: pb_grpc.StoreServiceStub, subscription: str) -> int:
    response = await stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id=subscription), timeout=DEADLINE
    )
    return response.subscription.cursor


async def test_an_auto_mode_pull_stops_at_the_event_every_time(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    ids, error = await pull(stub, "auto")
    assert ids == ["e1"]
    assert_undeliverable(error)
    assert await cursor_of(stub, "auto") == 1
    # Again, and following: still stopped there, e3 not skipped.
    for follow in (False, True):
        ids, error = await pull(stub, "auto", follow=follow)
        assert ids == []
        assert_undeliverable(error)
        assert await cursor_of(stub, "auto") == 1


async def test_a_manual_mode_pull_stops_at_the_event_and_seeking_past_it_goes_on(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    ids, error = await pull(stub, "manual", ack_mode=subscription_pb2.ACK_MODE_MANUAL)
    assert ids == ["e1"]
    assert_undeliverable(error)
    assert await cursor_of(stub, "manual") == 0
    # An operator decides to skip it: the event after it is delivered.
    await stub.SeekSubscription(
        pb.SeekSubscriptionRequest(subscription_id="manual", cursor=2), timeout=DEADLINE
    )
    ids, error = await pull(stub, "manual")
    assert (ids, error) == (["e3"], None)


async def test_queries_and_get_event_refuse_it_with_the_same_reason(
    stub: pb_grpc.StoreServiceStub,
) -> None:
    page = await stub.QueryEvents(pb.QueryEventsRequest(channel="events"), timeout=DEADLINE)
    assert [event.id for event in page.events] == ["e1"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.QueryEvents(
            pb.QueryEventsRequest(channel="events", after_cursor=1), timeout=DEADLINE
        )
    assert_undeliverable(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetEvent(pb.GetEventRequest(id="e2"), timeout=DEADLINE)
    assert_undeliverable(caught.value)
    after = await stub.QueryEvents(
        pb.QueryEventsRequest(channel="events", after_cursor=2), timeout=DEADLINE
    )
    assert [event.id for event in after.events] == ["e3"]


async def test_the_domain_ends_a_read_before_the_first_event_it_cannot_send(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "store")
    await store.open()
    try:
        await store.create_channel(Channel(name="events"))
        await store.append_events([legacy(1, 1, wire=False), legacy(2, "y" * 500, wire=False)])
        await store.append_events([legacy(3, 3, wire=False)])
        service = ChannelService(store, Limits(max_served_event_bytes=200))
        events = await service.query_events("events", after_cursor=0, limit=10, kind=None)
        assert [event.id for event in events] == ["e1"]
        with pytest.raises(EventUndeliverableError) as caught:
            await service.query_events("events", after_cursor=1, limit=10, kind=None)
        assert caught.value.metadata["cursor"] == "2"
        with pytest.raises(EventUndeliverableError):
            await service.get_event_to_serve("e2")
        assert (await service.get_event("e2")).id == "e2"  # for lookups that send nothing
    finally:
        await store.close()
