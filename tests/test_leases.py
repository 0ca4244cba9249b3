"""Subscription leases below the API: epochs, fencing, and services sharing a PostgreSQL store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from sssn_server.domain.errors import (
    InvalidPayloadError,
    SubscriptionLeaseLostError,
    SubscriptionNotFoundError,
    SubscriptionTakenOverError,
)
from sssn_server.domain.models import Channel, Event
from sssn_server.domain.service import ChannelService, Delivery, Limits
from sssn_server.domain.streams import MANUAL

from .backends import open_store, query

WAIT = 10


async def _services(
    stack: AsyncExitStack, location: Path | str, count: int
) -> list[ChannelService]:
    services = []
    for _ in range(count):
        options = {} if isinstance(location, Path) else {"lease_ttl": 1.5}
        store = await stack.enter_async_context(open_store(location, **options))
        services.append(ChannelService(store, Limits(heartbeat_interval=60)))
    return services


@pytest.fixture
async def service(store_location: Path | str) -> AsyncIterator[ChannelService]:
    async with AsyncExitStack() as stack:
        (only,) = await _services(stack, store_location, 1)
        await _prepare(only)
        yield only


@pytest.fixture
async def pair(store_location: str) -> AsyncIterator[tuple[ChannelService, ChannelService]]:
    """Two services on one PostgreSQL store, as two replicas would run them."""
    async with AsyncExitStack() as stack:
        first, second = await _services(stack, store_location, 2)
        await _prepare(first)
        yield first, second


async def _prepare(service: ChannelService) -> None:
    await service.create_channel(Channel(name="events"))
    await service.create_subscription(
        "events", subscription_id="s", consumer=None, batch_size=None, kind=None, metadata={}
    )


async def _append(service: ChannelService, *payloads: object) -> list[Event]:
    return await service.append_events(
        [Event(id="", channel="events", timestamp_ns=1, payload=p) for p in payloads]
    )


async def _next(stream: AsyncIterator[Delivery]) -> Delivery:
    return await asyncio.wait_for(anext(stream), WAIT)


async def _ended_with(stream: AsyncIterator[Delivery], error: type[Exception]) -> None:
    with pytest.raises(error):
        while True:
            await _next(stream)


def _manual(service: ChannelService, **options: object) -> AsyncIterator[Delivery]:
    return service.pull("s", limit=10, follow=True, ack_mode=MANUAL, **options)  # type: ignore[arg-type]


async def test_each_stream_has_a_greater_epoch_and_acks_of_an_older_one_are_refused(
    service: ChannelService,
) -> None:
    stored = await _append(service, 1, 2, 3)
    first = _manual(service)
    delivered = await _next(first)
    assert delivered.lease_epoch > 0
    second = _manual(service)
    again = await _next(second)
    assert again.lease_epoch > delivered.lease_epoch
    # The new stream got the unacknowledged events again.
    assert [e.cursor for e in again.events] == [e.cursor for e in stored]
    await _ended_with(first, SubscriptionTakenOverError)
    with pytest.raises(SubscriptionLeaseLostError) as refused:
        await service.ack("s", stored[1].cursor, lease_epoch=delivered.lease_epoch)
    assert refused.value.metadata["current_lease_epoch"] == str(again.lease_epoch)
    assert (await service.get_subscription("s")).cursor == 0
    acked = await service.ack("s", stored[1].cursor, lease_epoch=again.lease_epoch)
    assert acked.cursor == stored[1].cursor
    # Without an epoch, as older clients send it: checked against deliveries only.
    assert (await service.ack("s", stored[2].cursor)).cursor == stored[2].cursor
    await second.aclose()


async def test_a_pull_that_ends_holds_no_lease(service: ChannelService) -> None:
    await _append(service, 1)
    (delivery,) = [d async for d in service.pull("s", limit=10, follow=False)]
    assert delivery.lease_epoch == 0


@pytest.mark.postgres_only
async def test_a_claim_on_another_service_ends_the_stream_here(
    pair: tuple[ChannelService, ChannelService], store_location: str
) -> None:
    here, there = pair
    stored = await _append(here, 1, 2)
    old = _manual(here)
    first = await _next(old)
    new = _manual(there)
    second = await _next(new)
    assert second.lease_epoch == first.lease_epoch + 1
    # Heard through the notification of the claim, without another event.
    await _ended_with(old, SubscriptionTakenOverError)
    with pytest.raises(SubscriptionLeaseLostError):
        await here.ack("s", stored[0].cursor, lease_epoch=first.lease_epoch)
    with pytest.raises(SubscriptionLeaseLostError):
        await there.ack("s", stored[0].cursor, lease_epoch=first.lease_epoch)
    rows = await query(store_location, "SELECT cursor, lease_epoch FROM subscriptions")
    assert [tuple(row) for row in rows] == [(0, second.lease_epoch)]
    await new.aclose()


@pytest.mark.postgres_only
async def test_an_ack_sent_to_another_service_moves_the_stream_on(
    pair: tuple[ChannelService, ChannelService],
) -> None:
    streaming, acking = pair
    stored = await _append(streaming, 1, 2, 3)
    stream = _manual(streaming, max_unacked=2)
    first = await _next(stream)
    assert [e.cursor for e in first.events] == [e.cursor for e in stored[:2]]
    waiting = asyncio.ensure_future(_next(stream))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # paused at the window
    acked = await acking.ack("s", stored[1].cursor, lease_epoch=first.lease_epoch)
    assert acked.cursor == stored[1].cursor
    # The stream's own server heard of it and sends the rest.
    resumed = await asyncio.wait_for(waiting, WAIT)
    assert [e.cursor for e in resumed.events] == [stored[2].cursor]
    # Beyond what was delivered is refused wherever the ack goes.
    with pytest.raises(InvalidPayloadError):
        await acking.ack("s", stored[2].cursor + 5)
    await stream.aclose()


@pytest.mark.postgres_only
async def test_a_seek_on_another_service_redirects_the_stream(
    pair: tuple[ChannelService, ChannelService],
) -> None:
    streaming, seeking = pair
    stored = await _append(streaming, 1, 2, 3)
    stream = streaming.pull("s", limit=10, follow=True)
    first = await _next(stream)
    assert len(first.events) == 3
    waiting = asyncio.ensure_future(_next(stream))
    await asyncio.sleep(0.2)
    await seeking.seek("s", cursor=stored[0].cursor, timestamp_ns=None)
    replay = await asyncio.wait_for(waiting, WAIT)
    assert [e.cursor for e in replay.events] == [e.cursor for e in stored[1:]]
    # The first batch's cursor move did not undo the seek...
    assert (await seeking.get_subscription("s")).cursor == stored[0].cursor
    # ...and the replay's move is stored once it is sent.
    waiting = asyncio.ensure_future(_next(stream))
    for _ in range(50):
        if (await seeking.get_subscription("s")).cursor == stored[2].cursor:
            break
        await asyncio.sleep(0.1)
    assert (await seeking.get_subscription("s")).cursor == stored[2].cursor
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await stream.aclose()


@pytest.mark.postgres_only
async def test_a_deletion_on_another_service_ends_the_stream(
    pair: tuple[ChannelService, ChannelService],
) -> None:
    streaming, deleting = pair
    await _append(streaming, 1)
    stream = streaming.pull("s", limit=10, follow=True)
    await _next(stream)
    await deleting.delete_subscription("s")
    await _ended_with(stream, SubscriptionNotFoundError)


@pytest.mark.postgres_only
async def test_leases_are_renewed_while_held_and_freed_when_the_stream_ends(
    pair: tuple[ChannelService, ChannelService], store_location: str
) -> None:
    here, _there = pair
    await _append(here, 1)
    stream = _manual(here)
    await _next(stream)
    sql = "SELECT lease_owner IS NOT NULL, lease_expires_at > now() FROM subscriptions"
    await asyncio.sleep(2.0)  # past the 1.5 s lease: renewed meanwhile
    assert [tuple(row) for row in await query(store_location, sql)] == [(True, True)]
    await stream.aclose()
    for _ in range(50):
        rows = await query(store_location, "SELECT lease_owner FROM subscriptions")
        if rows[0][0] is None:
            break
        await asyncio.sleep(0.1)
    assert rows[0][0] is None
    with contextlib.suppress(Exception):
        await here.flush_cursors()


@pytest.mark.postgres_only
async def test_a_stale_streams_cursor_move_is_refused_and_moves_nothing(
    pair: tuple[ChannelService, ChannelService], store_location: str
) -> None:
    here, there = pair
    stored = await _append(here, 1, 2, 3)
    shared = here.store.shared_subscriptions()
    assert shared is not None
    old = await shared.claim("s")
    new = await there.store.shared_subscriptions().claim("s")  # type: ignore[union-attr]
    assert new.epoch == old.epoch + 1
    # What the old stream's auto mode would store after its send: refused.
    with pytest.raises(SubscriptionLeaseLostError):
        await shared.advance("s", stored[2].cursor, epoch=old.epoch, seeks=old.seeks)
    with pytest.raises(SubscriptionLeaseLostError):
        await shared.delivered("s", old.epoch, stored[2].cursor)
    rows = await query(store_location, "SELECT cursor, delivered FROM subscriptions")
    assert [tuple(row) for row in rows] == [(0, 0)]
    # The owner's move goes through; one begun before a seek does not undo it.
    await shared.advance("s", stored[1].cursor, epoch=new.epoch, seeks=new.seeks)
    sought = await shared.seek("s", stored[0].cursor)
    await shared.advance("s", stored[2].cursor, epoch=new.epoch, seeks=new.seeks)
    assert (await here.get_subscription("s")).cursor == stored[0].cursor
    assert sought.seeks == new.seeks + 1
