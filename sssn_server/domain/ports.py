"""The storage port: the async interface the domain needs, implemented by each backend."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from .errors import SSSNError
from .models import Artifact, ArtifactSpec, Channel, Event, Snapshot, Subscription


class StoreLockedError(RuntimeError):
    """Another process already writes to the store; raised by `Store.open`
    before anything in the store is read or written."""

    def __init__(self, message: str, *, holder_pid: int | None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


class StoreIncompatibleError(RuntimeError):
    """The store holds what this server does not read (a newer schema, or
    another program's tables, such as a reference sssn 0.1.1 store); raised
    by `Store.open` before anything is written."""


class StoreUnreachableError(RuntimeError):
    """The database behind a store could not be reached, or refused the
    server, while `Store.open` connected; nothing was written."""


@dataclass(frozen=True, slots=True)
class ChannelDeletion:
    """What `Store.delete_channel` removed."""

    events: int
    """How many events the channel held."""
    subscriptions: tuple[str, ...]
    """Ids of the channel's subscriptions, now gone."""
    artifacts: tuple[str, ...]
    """Ids of the artifact records of the channel, now gone."""


class ArtifactUpload(abc.ABC):
    """A payload being received; nothing is visible until `Store.save_artifact`."""

    size: int

    @abc.abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Appends a chunk of the payload."""

    @abc.abstractmethod
    async def discard(self) -> None:
        """Drops what was received; safe to call more than once."""


class Store(abc.ABC):
    """Durable home of channels, events, subscriptions, artifacts and snapshots.

    Implementations validate links (parents, linked events, channels) inside
    the same transaction as the write, so a failed call changes nothing, and
    raise only `sssn_server.domain.errors` exceptions.
    """

    read_only: bool = False
    location: str = ""
    """Where the store is, as shown to operators (no password)."""

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Opens connections and brings the schema up to date.

        Raises:
            StoreLockedError: a writable store that allows one writer (a
                SQLite folder) is already open in another process.
            StoreUnreachableError: the store's database did not answer or
                refused the connection.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Closes every connection; later calls raise StoreClosedError."""

    def add_availability_listener(self, listener: Callable[[bool], None]) -> None:  # noqa: B027
        """Calls `listener(False)` when the database behind the store stops
        answering and `listener(True)` when it answers again, on the event
        loop. A store without a separate database never calls it."""

    # Channels

    @abc.abstractmethod
    async def create_channel(self, channel: Channel) -> Channel:
        """Stores a new channel; raises ChannelExistsError if the name is taken."""

    @abc.abstractmethod
    async def get_channel(self, name: str) -> Channel:
        """Returns a channel or raises ChannelNotFoundError."""

    @abc.abstractmethod
    async def list_channels(self, *, after: str | None, limit: int) -> list[Channel]:
        """Returns up to `limit` channels with names greater than `after`, by name."""

    @abc.abstractmethod
    async def delete_channel(self, name: str) -> ChannelDeletion:
        """Deletes a channel with its events, subscriptions, snapshots and
        artifact records, in one transaction; raises ChannelNotFoundError.

        Cursors of the deleted events are not handed out again, and
        `head_cursor` does not go back. Events and artifacts of other
        channels that name deleted events keep those ids.
        """

    # Events

    @abc.abstractmethod
    async def append_events(self, events: Sequence[Event]) -> list[Event]:
        """Stores events atomically and returns them with cursors, in order.

        An event whose id exists in the same channel is returned as stored;
        in another channel it raises EventExistsError. Parents may name
        events stored earlier in the same batch.
        """

    @abc.abstractmethod
    def add_commit_listener(self, listener: Callable[[Sequence[Event]], None]) -> None:
        """Calls `listener` with the new events of every commit, in cursor
        order, on the event loop, each event once. Events a retry answered
        with (stored earlier) are not new and not passed. A store that only
        this server writes calls it before the appenders hear back; a store
        other servers write too passes their commits as well, read back."""

    def add_channel_deleted_listener(  # noqa: B027
        self, listener: Callable[[str, Sequence[str]], None]
    ) -> None:
        """Calls `listener(channel, subscription_ids)` for each channel that
        another server deleted, at its place among the commits passed to the
        commit listeners. A store only this server writes never calls it."""

    @abc.abstractmethod
    async def append_each(self, events: Sequence[Event]) -> list[Event | SSSNError]:
        """Stores events independently, in one transaction, in order.

        Each result is the stored event (with its cursor) or the error that
        refused that event alone, by the same rules as `append_events`; a
        refused event is not stored and later events may not name it.
        """

    @abc.abstractmethod
    async def restore_events(self, events: Sequence[Event], *, head: int) -> None:
        """Stores events copied from another store with the cursors they
        carry, in one transaction, then raises `head_cursor` to at least
        `head` (a copied store's head may be above its last event).

        Each cursor must be above `head_cursor()` and above the one before
        it (ValueError otherwise); ids and parents are not checked again and
        commit listeners do not hear of them: this is how `copy-store`
        fills an empty store, not an append.
        """

    @abc.abstractmethod
    async def get_event(self, event_id: str) -> Event:
        """Returns an event or raises EventNotFoundError."""

    @abc.abstractmethod
    async def query_events(
        self,
        channel: str,
        *,
        after_cursor: int,
        limit: int,
        kind: str | None,
    ) -> list[Event]:
        """Returns a channel's events after a cursor, in cursor order.

        An event stored with a `wire` form comes without payload and
        metadata (payload None, metadata empty), here as from every read:
        the store keeps an event's content once, and its callers serve
        events through that form. One stored without it comes whole.
        """

    @abc.abstractmethod
    async def head_cursor(self) -> int:
        """Returns the greatest cursor ever assigned (0 for an empty store)."""

    @abc.abstractmethod
    async def count_events(self, channel: str, *, after_cursor: int, kind: str | None) -> int:
        """Counts a channel's events after a cursor (of one kind, if given)."""

    @abc.abstractmethod
    async def first_cursor_at(self, channel: str, timestamp_ns: int) -> int | None:
        """Returns the smallest cursor of the channel's events with a timestamp
        at or after `timestamp_ns`, or None if there is none."""

    # Subscriptions

    @abc.abstractmethod
    async def create_subscription(self, subscription: Subscription) -> Subscription:
        """Stores a subscription, or returns the existing one with the same id
        and channel; raises SubscriptionExistsError for another channel."""

    @abc.abstractmethod
    async def get_subscription(self, subscription_id: str) -> Subscription:
        """Returns a subscription or raises SubscriptionNotFoundError."""

    @abc.abstractmethod
    async def advance_subscription(self, subscription_id: str, cursor: int) -> None:
        """Moves a subscription's cursor forward to `cursor` (never backward)."""

    @abc.abstractmethod
    async def seek_subscription(self, subscription_id: str, cursor: int) -> Subscription:
        """Sets a subscription's cursor to `cursor`, backward or forward, and
        returns the subscription; raises SubscriptionNotFoundError."""

    @abc.abstractmethod
    async def list_subscriptions(
        self, *, channel: str | None, after: str | None, limit: int
    ) -> list[Subscription]:
        """Returns up to `limit` subscriptions with ids greater than `after`, by
        id, only those of `channel` when given."""

    @abc.abstractmethod
    async def delete_subscription(self, subscription_id: str) -> None:
        """Deletes a subscription; raises SubscriptionNotFoundError."""

    def shared_subscriptions(self) -> SharedSubscriptions | None:
        """Subscription ownership kept in the store, for a store that several
        servers write at once; None (the default): only this server writes
        it, and it keeps ownership in its memory."""
        return None

    # Artifacts

    @abc.abstractmethod
    async def begin_artifact(self) -> ArtifactUpload:
        """Starts receiving a payload."""

    @abc.abstractmethod
    async def save_artifact(
        self,
        upload: ArtifactUpload,
        spec: ArtifactSpec,
        *,
        artifact_id: str,
        check_events: bool = True,
    ) -> Artifact:
        """Makes a received payload durable and records it under `artifact_id`.

        Raises ChannelNotFoundError or EventNotFoundError for missing links;
        the upload is discarded whether or not it succeeds. `check_events`
        False: a copy, whose linked events may have gone with their channel.
        """

    @abc.abstractmethod
    async def get_artifact(self, artifact_id: str) -> Artifact:
        """Returns an artifact's metadata or raises ArtifactNotFoundError."""

    @abc.abstractmethod
    async def list_artifacts(self, *, after: str | None, limit: int) -> list[Artifact]:
        """Returns up to `limit` artifacts with ids greater than `after`, by id."""

    @abc.abstractmethod
    def read_artifact(self, artifact: Artifact, chunk_size: int) -> AsyncIterator[bytes]:
        """Yields the payload in chunks; ArtifactNotFoundError if it is gone."""

    # Snapshots

    @abc.abstractmethod
    async def put_snapshot(self, snapshot: Snapshot, *, check_events: bool = True) -> Snapshot:
        """Creates or replaces a snapshot; `check_events` as in `save_artifact`."""

    @abc.abstractmethod
    async def list_snapshots(self, *, after: str | None, limit: int) -> list[Snapshot]:
        """Returns up to `limit` snapshots with names greater than `after`, by name."""

    @abc.abstractmethod
    async def get_snapshot(self, name: str) -> Snapshot:
        """Returns a snapshot or raises SnapshotNotFoundError."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A subscription's ownership as the shared store holds it."""

    subscription: Subscription
    """The subscription with its persisted (acknowledged) cursor."""
    epoch: int
    """The lease of the stream that owns it last (0: never streamed)."""
    seeks: int
    """How many times it was sought: a cursor move begun before a seek must
    not undo it."""
    delivered: int
    """The highest cursor its owner delivered (at least its cursor)."""


class SharedSubscriptions(abc.ABC):
    """Which stream owns each subscription, and what it delivered, where
    every server on one store sees it.

    A stream claims its subscription, taking a new lease epoch (a fencing
    token) and ending the claim of any stream before it on any server. The
    writes made for a stream carry its epoch and are refused once another
    stream claimed the subscription. Claims, seeks, acknowledgements and
    deletions are announced to every server's change listeners (a hint:
    listeners read the lease again). A server renews the leases of its open
    streams every `renew_interval`; one that cannot for `lease_ttl` seconds
    must end them, since another server may own them by then.
    """

    lease_ttl: float
    renew_interval: float

    @abc.abstractmethod
    async def claim(self, subscription_id: str) -> Lease:
        """A new lease for a stream starting now, delivering from the cursor;
        raises SubscriptionNotFoundError."""

    @abc.abstractmethod
    async def delivered(self, subscription_id: str, epoch: int, cursor: int) -> None:
        """Records that the stream of `epoch` is sending events up to
        `cursor`; raises SubscriptionLeaseLostError once another stream
        claimed the subscription, SubscriptionNotFoundError once it is gone."""

    @abc.abstractmethod
    async def advance(
        self, subscription_id: str, cursor: int, *, epoch: int | None, seeks: int | None
    ) -> None:
        """Moves the cursor forward to `cursor` (auto mode, after a send).
        With `epoch`, raises SubscriptionLeaseLostError if that stream lost
        the subscription; with `seeks`, moves nothing if a seek came since."""

    @abc.abstractmethod
    async def ack(self, subscription_id: str, cursor: int, *, epoch: int | None) -> Subscription:
        """Acknowledges up to `cursor` (at least the cursor, at most what was
        delivered, by the stream of `epoch` if given) and persists it."""

    @abc.abstractmethod
    async def seek(self, subscription_id: str, cursor: int) -> Lease:
        """Sets the cursor (backward or forward) and counts a seek."""

    @abc.abstractmethod
    async def release(self, subscription_id: str, epoch: int) -> None:
        """The stream of `epoch` ended: its lease is free (it stays the last)."""

    @abc.abstractmethod
    async def renew(self, epochs: dict[str, int]) -> dict[str, Lease | None]:
        """Extends this server's leases (subscription id -> epoch) and
        returns each subscription's lease now (None: it is gone)."""

    @abc.abstractmethod
    async def leases(self, subscription_ids: Sequence[str]) -> dict[str, Lease | None]:
        """Each subscription's lease now, without renewing anything."""

    @abc.abstractmethod
    def add_change_listener(self, listener: Callable[[str], None]) -> None:
        """Calls `listener(subscription_id)` when any server claimed, sought,
        acknowledged or deleted the subscription (a hint, possibly late,
        possibly of a change this server made)."""
