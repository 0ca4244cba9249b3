"""Rows every backend reads and writes alike: column lists, values in order, models from rows."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..domain.models import Channel, Event, Snapshot, Subscription
from ._rules import dumps

log = logging.getLogger(__name__)

CHANNEL_COLUMNS = "name, schema, form, description, metadata"
SUBSCRIPTION_COLUMNS = "id, channel, cursor, consumer, batch_size, kind, metadata"
ARTIFACT_COLUMNS = "id, channel, media_type, size, sha256, metadata, event_ids"
SNAPSHOT_COLUMNS = "name, channel, timestamp_ns, value, schema, source_event_id, metadata"
# Upsert of a snapshot by name (the same in SQLite and PostgreSQL).
SNAPSHOT_UPDATE = (
    " ON CONFLICT(name) DO UPDATE SET channel = excluded.channel,"
    " timestamp_ns = excluded.timestamp_ns, value = excluded.value,"
    " schema = excluded.schema, source_event_id = excluded.source_event_id,"
    " metadata = excluded.metadata"
)


def channel_values(channel: Channel) -> tuple[Any, ...]:
    return (
        channel.name,
        channel.schema,
        channel.form,
        channel.description,
        dumps(channel.metadata),
    )


def subscription_values(subscription: Subscription) -> tuple[Any, ...]:
    return (
        subscription.id,
        subscription.channel,
        subscription.cursor,
        subscription.consumer,
        subscription.batch_size,
        subscription.kind,
        dumps(subscription.metadata),
    )


def snapshot_values(snapshot: Snapshot) -> tuple[Any, ...]:
    return (
        snapshot.name,
        snapshot.channel,
        snapshot.timestamp_ns,
        dumps(snapshot.value),
        snapshot.schema,
        snapshot.source_event_id,
        dumps(snapshot.metadata),
    )


def channel_from(row: Sequence[Any]) -> Channel:
    return Channel(
        name=row[0], schema=row[1], form=row[2], description=row[3], metadata=json.loads(row[4])
    )


def subscription_from(row: Sequence[Any]) -> Subscription:
    return Subscription(
        id=row[0],
        channel=row[1],
        cursor=row[2],
        consumer=row[3],
        batch_size=row[4],
        kind=row[5],
        metadata=json.loads(row[6]),
    )


def snapshot_from(row: Sequence[Any]) -> Snapshot:
    return Snapshot(
        name=row[0],
        channel=row[1],
        timestamp_ns=row[2],
        value=json.loads(row[3]),
        schema=row[4],
        source_event_id=row[5],
        metadata=json.loads(row[6]),
    )


@dataclass(frozen=True, slots=True)
class Appended:
    """What one append stored: a result per event, and the new events."""

    results: list[Any]
    fresh: list[Event]


def appends_one(events: Sequence[Event]) -> bool:
    """Whether an append is the common case one statement stores: one event
    without parents."""
    return len(events) == 1 and not events[0].parent_ids


def announce(
    results: Sequence[Any], listeners: Sequence[Callable[[Sequence[Event]], None]]
) -> None:
    """Tells commit listeners about a group's new events, in commit order;
    `results` are the outcomes of the group's writes."""
    for result in results:
        if isinstance(result, Appended) and result.fresh:
            for listener in listeners:
                try:
                    listener(result.fresh)
                except Exception:  # a listener's bug must not stop the writer
                    log.exception("commit listener failed")
