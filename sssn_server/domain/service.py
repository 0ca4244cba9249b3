"""The channel service: validates requests, calls storage, wakes followers; transport-neutral."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, replace

import uuid6

from ..store.base import Store
from .errors import (
    ArtifactTooLargeError,
    InvalidPayloadError,
    ShuttingDownError,
    StoreReadOnlyError,
    TooManyItemsError,
)
from .models import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_KIND,
    DEFAULT_MEDIA_TYPE,
    Artifact,
    ArtifactSpec,
    Channel,
    Event,
    Snapshot,
    Subscription,
)
from .notifier import CommitNotifier
from .validation import (
    optional_segment,
    optional_token,
    require_form,
    require_json,
    require_non_negative,
    require_positive,
    require_segment,
    require_token,
    segment_list,
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep one request from monopolizing the server."""

    max_append_batch: int = 10_000
    """Most events one AppendEvents call may carry."""
    max_query_limit: int = 10_000
    """Larger QueryEvents limits are lowered to this."""
    default_page_size: int = 100
    """ListChannels page size when the caller gives none."""
    max_page_size: int = 1_000
    """Larger ListChannels page sizes are lowered to this."""
    max_artifact_bytes: int = 1 << 30
    """Largest artifact payload accepted, in bytes."""
    artifact_chunk_bytes: int = 1 << 20
    """Size of the chunks ReadArtifact streams."""


def new_id() -> str:
    """Mints a time-ordered UUIDv7, so ids sort roughly by creation time."""
    return str(uuid6.uuid7())


class ChannelService:
    """Every operation of the store, with the reference's rules applied."""

    def __init__(self, store: Store, limits: Limits | None = None) -> None:
        self.store = store
        self.limits = limits or Limits()
        self._notifier = CommitNotifier()
        self._closing = False
        # Pulls of one subscription take turns so each batch goes to one reader.
        self._pull_locks: weakref.WeakValueDictionary[str, _Lock] = weakref.WeakValueDictionary()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def parked_followers(self) -> int:
        """Following streams currently idle, waiting for a commit."""
        return self._notifier.waiting

    def begin_shutdown(self) -> None:
        """Ends following streams at once; they resume elsewhere from their cursor."""
        self._closing = True
        self._notifier.close()

    # Channels

    async def create_channel(self, channel: Channel) -> Channel:
        channel = replace(
            channel,
            name=require_segment("channel.name", channel.name),
            form=require_form("channel.form", channel.form),
            metadata=require_json("channel.metadata", channel.metadata),
        )
        return await self.store.create_channel(channel)

    async def get_channel(self, name: str) -> Channel:
        return await self.store.get_channel(require_segment("name", name))

    async def list_channels(self, *, page_size: int, page_token: str) -> tuple[list[Channel], str]:
        """Returns one page of channels and the token of the next ("" at the end)."""
        if page_size < 0:
            raise InvalidPayloadError("page_size", "must not be negative")
        size = min(page_size or self.limits.default_page_size, self.limits.max_page_size)
        after = _decode_page_token(page_token) if page_token else None
        channels = await self.store.list_channels(after=after, limit=size + 1)
        if len(channels) > size:
            return channels[:size], _encode_page_token(channels[size - 1].name)
        return channels, ""

    # Events

    async def append_events(self, events: Sequence[Event], *, field: str = "events") -> list[Event]:
        """Appends events atomically; `field` names them in error details."""
        if len(events) > self.limits.max_append_batch:
            raise TooManyItemsError(
                f"{len(events)} events exceed the limit of {self.limits.max_append_batch} per call"
            )
        now = time.time_ns()
        prepared = [
            _prepare_event(event, f"{field}[{index}]" if len(events) > 1 else field, now)
            for index, event in enumerate(events)
        ]
        stored = await self.store.append_events(prepared)
        self._notifier.notify({event.channel for event in stored})
        return stored

    async def get_event(self, event_id: str) -> Event:
        return await self.store.get_event(require_segment("id", event_id))

    async def query_events(
        self, channel: str, *, after_cursor: int, limit: int | None, kind: str | None
    ) -> list[Event]:
        require_segment("channel", channel)
        require_non_negative("after_cursor", after_cursor)
        size = require_positive("limit", limit) if limit is not None else DEFAULT_BATCH_SIZE
        kind = optional_token("kind", kind)
        await self.store.get_channel(channel)
        return await self.store.query_events(
            channel,
            after_cursor=after_cursor,
            limit=min(size, self.limits.max_query_limit),
            kind=kind,
        )

    # Subscriptions

    async def create_subscription(
        self,
        channel: str,
        *,
        subscription_id: str | None,
        consumer: str | None,
        batch_size: int | None,
        kind: str | None,
        metadata: dict[str, object],
    ) -> Subscription:
        subscription = Subscription(
            id=optional_segment("subscription_id", subscription_id) or new_id(),
            channel=require_segment("channel", channel),
            consumer=optional_token("consumer", consumer),
            batch_size=(
                require_positive("batch_size", batch_size)
                if batch_size is not None
                else DEFAULT_BATCH_SIZE
            ),
            kind=optional_token("filter.kind", kind),
            metadata=require_json("metadata", metadata),
        )
        return await self.store.create_subscription(subscription)

    async def get_subscription(self, subscription_id: str) -> Subscription:
        return await self.store.get_subscription(
            require_segment("subscription_id", subscription_id)
        )

    async def pull(
        self, subscription_id: str, *, limit: int | None, follow: bool
    ) -> AsyncGenerator[list[Event], None]:
        """Yields batches of a subscription's pending events in cursor order.

        The cursor moves past a batch when the consumer asks for the next one
        (that is, once the batch was sent), so a stream cut mid-send delivers
        that batch again rather than losing it. Without `follow` it stops
        after `limit` events (default: the subscription's batch size) or when
        nothing is pending; with `follow` it waits for commits, `limit` being
        the most events per batch, until cancelled or the server shuts down.
        """
        require_segment("subscription_id", subscription_id)
        if limit is not None:
            require_positive("limit", limit)
        if self.store.read_only:
            raise StoreReadOnlyError()
        if self._closing:
            raise ShuttingDownError()
        subscription = await self.store.get_subscription(subscription_id)
        per_batch = limit or subscription.batch_size
        remaining = None if follow else per_batch
        lock = self._pull_locks.setdefault(subscription_id, _Lock())
        while True:
            if follow and self._closing:
                raise ShuttingDownError()
            wakeup = self._notifier.watch(subscription.channel)
            size = per_batch if remaining is None else min(per_batch, remaining)
            async with lock:
                current = await self.store.get_subscription(subscription_id)
                events = await self.store.query_events(
                    current.channel, after_cursor=current.cursor, limit=size, kind=current.kind
                )
                if events:
                    yield events
                    # The batch was sent: record that even if the stream is
                    # cancelled now, and before the next reader takes the lock.
                    await _uninterruptible(
                        self.store.advance_subscription(subscription_id, events[-1].cursor)
                    )
            if remaining is not None:
                remaining -= len(events)
                if remaining <= 0 or len(events) < size:
                    return
            elif not events:
                await self._notifier.wait(wakeup)

    # Artifacts

    async def write_artifact(self, spec: ArtifactSpec, chunks: AsyncIterable[bytes]) -> Artifact:
        """Stores a payload received in chunks, after checking what it links to."""
        spec = replace(
            spec,
            channel=optional_segment("channel", spec.channel),
            media_type=spec.media_type or DEFAULT_MEDIA_TYPE,
            metadata=require_json("metadata", spec.metadata),
            event_ids=segment_list("event_ids", spec.event_ids),
        )
        # Fail before receiving a large payload; the store checks again
        # inside the transaction that records it.
        if spec.channel is not None:
            await self.store.get_channel(spec.channel)
        for event_id in spec.event_ids:
            await self.store.get_event(event_id)
        upload = await self.store.begin_artifact()
        try:
            async for chunk in chunks:
                if upload.size + len(chunk) > self.limits.max_artifact_bytes:
                    raise ArtifactTooLargeError(
                        f"Artifact exceeds {self.limits.max_artifact_bytes} bytes"
                    )
                await upload.write(chunk)
            return await self.store.save_artifact(upload, spec, artifact_id=new_id())
        finally:
            await upload.discard()

    async def get_artifact(self, artifact_id: str) -> Artifact:
        return await self.store.get_artifact(require_segment("id", artifact_id))

    async def read_artifact(self, artifact_id: str) -> tuple[Artifact, AsyncIterator[bytes]]:
        """Returns an artifact's metadata and an iterator over its payload."""
        artifact = await self.get_artifact(artifact_id)
        return artifact, self.store.read_artifact(artifact, self.limits.artifact_chunk_bytes)

    # Snapshots

    async def put_snapshot(self, snapshot: Snapshot) -> Snapshot:
        snapshot = replace(
            snapshot,
            name=require_segment("snapshot.name", snapshot.name),
            channel=optional_segment("snapshot.channel", snapshot.channel),
            source_event_id=optional_segment("snapshot.source_event_id", snapshot.source_event_id),
            value=require_json("snapshot.value", snapshot.value),
            metadata=require_json("snapshot.metadata", snapshot.metadata),
            timestamp_ns=snapshot.timestamp_ns or time.time_ns(),
        )
        return await self.store.put_snapshot(snapshot)

    async def get_snapshot(self, name: str) -> Snapshot:
        return await self.store.get_snapshot(require_segment("name", name))


class _Lock:
    """An asyncio.Lock that can live in a WeakValueDictionary."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self._lock.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()


async def _uninterruptible(operation: Awaitable[None]) -> None:
    """Awaits `operation` to its end even if the caller is cancelled meanwhile,
    then lets the cancellation continue."""
    task = asyncio.ensure_future(operation)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def _prepare_event(event: Event, field: str, now_ns: int) -> Event:
    return replace(
        event,
        id=require_segment(f"{field}.id", event.id) if event.id else new_id(),
        channel=require_segment(f"{field}.channel", event.channel),
        kind=require_token(f"{field}.kind", event.kind) if event.kind else DEFAULT_KIND,
        correlation_id=optional_token(f"{field}.correlation_id", event.correlation_id),
        parent_ids=segment_list(f"{field}.parent_ids", event.parent_ids),
        payload=require_json(f"{field}.payload", event.payload),
        metadata=require_json(f"{field}.metadata", event.metadata),
        timestamp_ns=event.timestamp_ns or now_ns,
        cursor=0,
    )


def _encode_page_token(last_name: str) -> str:
    return base64.urlsafe_b64encode(last_name.encode()).decode().rstrip("=")


def _decode_page_token(token: str) -> str:
    try:
        name = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayloadError("page_token", "is not a token this server issued") from exc
    return require_segment("page_token", name)
