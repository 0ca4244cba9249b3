"""Subscription leases in PostgreSQL: one owning stream per subscription, fenced by epoch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from ...domain.errors import SubscriptionLeaseLostError, ack_below, ack_beyond
from ...domain.models import Subscription
from ...domain.ports import Lease, SharedSubscriptions
from .._rows import SUBSCRIPTION_COLUMNS, subscription_from
from .._rules import subscription_not_found
from ._writer import Cursors

# The NOTIFY channel of claims, seeks, acknowledgements and deletions, with
# the subscription's id as payload.
CHANGES_CHANNEL = "sssn_subscriptions"
# A lease's columns after the subscription's own.
_LEASE_COLUMNS = f"{SUBSCRIPTION_COLUMNS}, lease_epoch, seeks, delivered"
_NOTIFY = f"pg_notify('{CHANGES_CHANNEL}', id)"

Write = Callable[..., Awaitable[Any]]
Fetch = Callable[..., Awaitable[list[asyncpg.Record]]]


class PostgresSubscriptions(SharedSubscriptions):
    """Leases as columns of the subscription's row.

    Every write goes through the store's writer, so it is one transaction
    that sees the row as the other servers left it. `lease_owner` and
    `lease_expires_at` say which server holds the lease and until when, for
    operators: a claim never waits for a lease to expire, since the newest
    stream always wins, and a killed server's leases simply lapse.
    """

    def __init__(
        self,
        write: Write,
        fetch: Fetch,
        *,
        owner: str,
        lease_ttl: float,
    ) -> None:
        self._write = write
        self._fetch = fetch
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.renew_interval = lease_ttl / 3
        self._listeners: list[Callable[[str], None]] = []

    def add_change_listener(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def changed(self, subscription_id: str) -> None:
        """A NOTIFY of a change to this subscription (from any server)."""
        for listener in self._listeners:
            listener(subscription_id)

    async def claim(self, subscription_id: str) -> Lease:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> Lease:
            rows = await db.fetch(
                "UPDATE subscriptions SET lease_epoch = lease_epoch + 1, lease_owner = $2,"
                " lease_expires_at = now() + make_interval(secs => $3), delivered = cursor"
                f" WHERE id = $1 RETURNING {_LEASE_COLUMNS}, {_NOTIFY}",
                subscription_id,
                self.owner,
                self.lease_ttl,
            )
            if not rows:
                raise subscription_not_found(subscription_id)
            return _lease(rows[0])

        lease: Lease = await self._write(work, one_statement=True)
        return lease

    async def delivered(self, subscription_id: str, epoch: int, cursor: int) -> None:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> None:
            status = await db.execute(
                "UPDATE subscriptions SET delivered = greatest(delivered, $3)"
                " WHERE id = $1 AND lease_epoch = $2",
                subscription_id,
                epoch,
                cursor,
            )
            if status.endswith(" 0"):
                await _refusal(db, subscription_id, epoch)

        await self._write(work, one_statement=True)

    async def advance(
        self, subscription_id: str, cursor: int, *, epoch: int | None, seeks: int | None
    ) -> None:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> None:
            status = await db.execute(
                "UPDATE subscriptions SET cursor = greatest(cursor, $2),"
                " delivered = greatest(delivered, $2)"
                " WHERE id = $1 AND ($3::bigint IS NULL OR lease_epoch = $3)"
                " AND ($4::bigint IS NULL OR seeks = $4)",
                subscription_id,
                cursor,
                epoch,
                seeks,
            )
            if status.endswith(" 0"):
                await _refusal(db, subscription_id, epoch)  # else a seek decided

        await self._write(work, one_statement=True)

    async def ack(self, subscription_id: str, cursor: int, *, epoch: int | None) -> Subscription:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> Subscription:
            rows = await db.fetch(
                f"SELECT {_LEASE_COLUMNS} FROM subscriptions WHERE id = $1 FOR UPDATE",
                subscription_id,
            )
            if not rows:
                raise subscription_not_found(subscription_id)
            lease = _lease(rows[0])
            current = lease.subscription
            if epoch is not None and epoch != lease.epoch:
                raise SubscriptionLeaseLostError(subscription_id, epoch, lease.epoch)
            if cursor < current.cursor:
                raise ack_below(subscription_id, current.cursor)
            if cursor > lease.delivered:
                raise ack_beyond(subscription_id, lease.delivered)
            if cursor > current.cursor:
                await db.execute(
                    f"UPDATE subscriptions SET cursor = $2 WHERE id = $1 RETURNING {_NOTIFY}",
                    subscription_id,
                    cursor,
                )
            return Subscription(
                id=current.id,
                channel=current.channel,
                cursor=cursor,
                consumer=current.consumer,
                batch_size=current.batch_size,
                kind=current.kind,
                metadata=current.metadata,
            )

        subscription: Subscription = await self._write(work)
        return subscription

    async def seek(self, subscription_id: str, cursor: int) -> Lease:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> Lease:
            rows = await db.fetch(
                "UPDATE subscriptions SET cursor = $2, delivered = $2, seeks = seeks + 1"
                f" WHERE id = $1 RETURNING {_LEASE_COLUMNS}, {_NOTIFY}",
                subscription_id,
                cursor,
            )
            if not rows:
                raise subscription_not_found(subscription_id)
            return _lease(rows[0])

        lease: Lease = await self._write(work, one_statement=True)
        return lease

    async def release(self, subscription_id: str, epoch: int) -> None:
        async def work(db: asyncpg.Connection, _cursors: Cursors) -> None:
            await db.execute(
                "UPDATE subscriptions SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = $1 AND lease_epoch = $2 AND lease_owner = $3",
                subscription_id,
                epoch,
                self.owner,
            )

        await self._write(work, one_statement=True)

    async def renew(self, epochs: dict[str, int]) -> dict[str, Lease | None]:
        ids = list(epochs)

        async def work(db: asyncpg.Connection, _cursors: Cursors) -> list[asyncpg.Record]:
            await db.execute(
                "UPDATE subscriptions s SET lease_expires_at = now() + make_interval(secs => $4)"
                " FROM unnest($1::text[], $2::bigint[]) AS held(id, epoch)"
                " WHERE s.id = held.id AND s.lease_epoch = held.epoch AND s.lease_owner = $3",
                ids,
                [epochs[i] for i in ids],
                self.owner,
                self.lease_ttl,
            )
            return list(
                await db.fetch(
                    f"SELECT {_LEASE_COLUMNS} FROM subscriptions WHERE id = ANY($1::text[])", ids
                )
            )

        rows: list[asyncpg.Record] = await self._write(work, one_statement=True)
        return _by_id(ids, rows)

    async def leases(self, subscription_ids: Sequence[str]) -> dict[str, Lease | None]:
        ids = list(subscription_ids)
        rows = await self._fetch(
            f"SELECT {_LEASE_COLUMNS} FROM subscriptions WHERE id = ANY($1::text[])", ids
        )
        return _by_id(ids, rows)


async def _refusal(db: asyncpg.Connection, subscription_id: str, epoch: int | None) -> None:
    """Why a fenced write changed nothing: raises for a lost lease or a
    deleted subscription; returns when only a seek came between."""
    current = await db.fetchval(
        "SELECT lease_epoch FROM subscriptions WHERE id = $1", subscription_id
    )
    if current is None:
        raise subscription_not_found(subscription_id)
    if epoch is not None and current != epoch:
        raise SubscriptionLeaseLostError(subscription_id, epoch, current)


def _lease(row: Sequence[Any]) -> Lease:
    subscription = subscription_from(row)
    return Lease(
        subscription=subscription,
        epoch=int(row[7]),
        seeks=int(row[8]),
        delivered=max(int(row[9]), subscription.cursor),
    )


def _by_id(ids: Sequence[str], rows: Sequence[asyncpg.Record]) -> dict[str, Lease | None]:
    found: dict[str, Lease | None] = dict.fromkeys(ids)
    for row in rows:
        found[row[0]] = _lease(row)
    return found
