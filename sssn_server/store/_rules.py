"""Rules and helpers every backend applies alike: append checks, error messages, JSON text."""

from __future__ import annotations

import json
from typing import Any

from ..domain.errors import (
    ArtifactNotFoundError,
    ChannelExistsError,
    ChannelNotFoundError,
    EventExistsError,
    EventNotFoundError,
    SnapshotNotFoundError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
)
from ..domain.models import Event


def check_append(
    event: Event, known: dict[str, str], channels: set[str], stored_parents: set[str]
) -> bool:
    """Whether `event` is new (False: a retry of a stored id); raises if it is refused."""
    if event.channel not in channels:
        raise channel_not_found(event.channel)
    owner = known.get(event.id)
    if owner is not None:
        if owner != event.channel:
            raise event_exists(event.id, owner)
        return False
    for parent in event.parent_ids:
        if parent not in known and parent not in stored_parents:
            raise event_not_found(parent)
    return True


def with_cursor(event: Event, cursor: int) -> Event:
    # Built directly, positionally in Event's field order:
    # dataclasses.replace costs several times more, keywords twice as much.
    return Event(
        event.id,
        event.channel,
        event.timestamp_ns,
        event.kind,
        event.payload,
        event.source,
        event.schema,
        event.metadata,
        event.correlation_id,
        event.parent_ids,
        cursor,
        event.wire,
    )


def channel_not_found(name: str) -> ChannelNotFoundError:
    return ChannelNotFoundError(f"Channel not found: {name}", channel=name)


def event_exists(event_id: str, owner: str) -> EventExistsError:
    return EventExistsError(
        f"Event id {event_id} already exists in channel {owner}", event_id=event_id, channel=owner
    )


def event_not_found(event_id: str) -> EventNotFoundError:
    return EventNotFoundError(f"Event not found: {event_id}", event_id=event_id)


def subscription_not_found(subscription_id: str) -> SubscriptionNotFoundError:
    return SubscriptionNotFoundError(
        f"Subscription not found: {subscription_id}", subscription_id=subscription_id
    )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def channel_exists(name: str) -> ChannelExistsError:
    return ChannelExistsError(f"Channel already exists: {name}", channel=name)


def subscription_exists(subscription_id: str, channel: str) -> SubscriptionExistsError:
    return SubscriptionExistsError(
        f"Subscription {subscription_id} already exists for channel {channel}",
        subscription_id=subscription_id,
        channel=channel,
    )


def artifact_not_found(artifact_id: str) -> ArtifactNotFoundError:
    return ArtifactNotFoundError(f"Artifact not found: {artifact_id}", artifact_id=artifact_id)


def snapshot_not_found(name: str) -> SnapshotNotFoundError:
    return SnapshotNotFoundError(f"Snapshot not found: {name}", snapshot=name)
