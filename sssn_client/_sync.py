"""The synchronous client, `SSSNClient`, and its following subscription stream."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc

from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from . import _calls as calls
from ._config import (
    DEFAULT_TIMEOUT,
    CallMetadata,
    ChannelOptions,
    call_metadata,
    channel_options,
    client_address,
)
from ._errors import ClientClosedError, SSSNClientError, UnavailableError, error_from_rpc
from ._models import Artifact, Channel, Event, Snapshot, Subscription
from ._subscribe import Backoff, SubscribeOptions, ack_cursor, should_reconnect

T = TypeVar("T")


class SSSNClient:
    """Synchronous client of an SSSN gRPC server.

    One client holds one gRPC channel (a pool of connections) and is safe to
    share between threads. Close it, or use it as a context manager.

    Args:
        target: the server's address: `host:port` (any gRPC target string
            works), or the base URL a client of the reference took:
            `http://host:port` connects in plain text, `https://host:port`
            over TLS (with `credentials`, else the system's CAs). Defaults to
            `localhost:7700`.
        base_url: the reference's name of `target`, for code that passes it
            by keyword; give one or the other.
        timeout: deadline in seconds of every call except following
            subscriptions; None waits forever. Raise it for very large artifacts.
        credentials: `grpc.ssl_channel_credentials(...)` and the like for TLS;
            None connects in plain text (except to an `https://` URL).
        metadata: pairs (or a mapping) sent with every call, e.g. an auth token.
        options: extra gRPC channel options; they override the client's defaults.

    Raises:
        InvalidPayloadError: the address is not one of those forms (an
            unknown scheme, a URL with a path, a port that is not a number...).

    Every method raises `SSSNClientError` (a subclass named after the server's
    reason, such as `ChannelNotFoundError`) when the call fails, and
    `ClientClosedError` after `close()`.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: CallMetadata = None,
        options: ChannelOptions = (),
    ) -> None:
        self.target, credentials = client_address(target, base_url, credentials)
        self.timeout = timeout
        self._metadata = call_metadata(metadata)
        settings = channel_options(options)
        if credentials is None:
            self._channel = grpc.insecure_channel(self.target, options=settings)
        else:
            self._channel = grpc.secure_channel(self.target, credentials, options=settings)
        self._stub = pb_grpc.StoreServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._streams_lock = threading.Lock()  # streams open and close from any thread
        self._closed = False

    # Lifecycle

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Ends open streams and closes the channel; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        with self._streams_lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        self._channel.close()

    def __enter__(self) -> SSSNClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Channels

    def create_channel(self, channel: Channel | Mapping[str, Any]) -> Channel:
        """Creates a channel. Raises `ChannelExistsError` if the name is taken."""
        return self._unary(calls.create_channel(channel))

    def list_channels(self) -> list[Channel]:
        """Returns every channel, ordered by name (following the server's pages)."""
        channels: list[Channel] = []
        token = ""
        while True:
            page, token = self._unary(calls.list_channels_page(token))
            channels.extend(page)
            if not token:
                return channels

    def get_channel(self, name: str) -> Channel:
        """Returns one channel. Raises `ChannelNotFoundError`."""
        return self._unary(calls.get_channel(name))

    def delete_channel(self, name: str) -> int:
        """Deletes a channel with its events, subscriptions (their open streams end
        with `SubscriptionNotFoundError`), snapshots and artifact records, and
        returns how many events it held. Needs the `admin` grant.

        Raises `ChannelNotFoundError`, `PermissionDeniedError`, and
        `UnimplementedError` from a server older than the call.
        """
        return self._unary(calls.delete_channel(name))

    # Events

    def append_event(self, event: Event | Mapping[str, Any]) -> Event:
        """Appends one event and returns it with `id`, `cursor` and `timestamp` set.

        Appending an id that exists in the same channel returns the stored event,
        so an append with an explicit id is safe to retry. Raises
        `ChannelNotFoundError`, `EventNotFoundError` (a missing parent),
        `EventExistsError` (the id is used in another channel), `InvalidPayloadError`.

        When the server abridges its acknowledgement (the token may write the
        channel but not read it), the returned event is the one sent, with
        the `id`, `cursor` and `timestamp` the server gave it; for an id that
        already existed the stored content may differ (`get_event` reads it).
        """
        return self._unary(calls.append_event(event))

    def append_events(self, events: Iterable[Event | Mapping[str, Any]]) -> list[Event]:
        """Appends several events atomically (all or none); errors as `append_event`,
        plus `TooManyItemsError` above the server's batch limit.

        Returns the stored events in order. When the full events would not fit
        in one response (or the token cannot read a channel), the server sends
        only their ids, cursors and timestamps: each returned event is then the
        one sent, completed with those, as `append_event` explains.
        """
        return self._unary(calls.append_events(events))

    def append_event_stream(
        self, events: Iterable[Event | Mapping[str, Any]], *, batch_size: int = 16
    ) -> Iterator[Event | SSSNClientError]:
        """Streams appends over one `AppendEventStream` call, for high-rate producers.

        Sends `events` (consumed lazily, as the stream allows) in request
        messages of `batch_size` events, without waiting for the answers, and
        yields one result per event, in order: the stored `Event` (cursor set),
        or the `SSSNClientError` that refused that event alone (for example
        `ChannelNotFoundError`, or `InvalidPayloadError` for an event the client
        cannot encode); a refused event does not stop the others. Events are
        appended independently, not atomically; ids make resending safe. An
        abridged answer is completed from the events sent, as in `append_events`.

        Raises (after yielding the results before it) the error that ended the
        whole stream: `TooManyItemsError` (a batch above the server's limit),
        `StoreReadOnlyError`, `PermissionDeniedError`, `UnavailableError`...; an
        exception raised by `events` itself is re-raised once the events before
        it are answered. The call has no deadline (it lasts as long as `events`);
        stopping the iteration early cancels it, leaving unanswered events
        stored or not.
        """
        self._check_open()
        return self._append_stream(events, calls.AppendStream(events, batch_size))

    def _append_stream(
        self, events: Iterable[Event | Mapping[str, Any]], stream: calls.AppendStream
    ) -> Iterator[Event | SSSNClientError]:
        failed: list[Exception] = []

        def requests() -> Iterator[Any]:  # consumed by a gRPC thread
            batch: list[Event | Mapping[str, Any]] = []
            try:
                for event in events:
                    batch.append(event)
                    if len(batch) == stream.batch_size:
                        yield stream.request(batch)
                        batch = []
            except Exception as exc:  # end the stream; raised after the answers
                failed.append(exc)
            if batch:
                yield stream.request(batch)

        call = self._stub.AppendEventStream(requests(), metadata=self._metadata)
        try:
            for response in call:
                yield from stream.results(response)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        finally:
            call.cancel()
        if failed:
            raise failed[0]

    def get_event(self, event_id: str) -> Event:
        """Returns one event by id. Raises `EventNotFoundError`."""
        return self._unary(calls.get_event(event_id))

    def query_events(
        self,
        channel: str,
        *,
        after_cursor: int = 0,
        limit: int = 100,
        kind: str | None = None,
    ) -> list[Event]:
        """Returns up to `limit` events of `channel` with a cursor above `after_cursor`,
        in cursor order, optionally only of one `kind`.

        Fewer than `limit` events means the channel has no more for now: a page
        the server cut short to stay under its response size (`truncated`), or
        a limit above the 10,000 events the server returns per call, is read
        over as many calls as it takes. Raises
        `ChannelNotFoundError`, `InvalidPayloadError` (a negative cursor, a
        limit <= 0, a malformed kind).
        """
        query = calls.Query(channel, after_cursor=after_cursor, limit=limit, kind=kind)
        events: list[Event] = []
        while not query.done:
            events.extend(query.add(self._unary(query.next_page())))
        return events

    def iter_events(
        self,
        channel: str,
        *,
        after_cursor: int = 0,
        kind: str | None = None,
        page_size: int = 1000,
    ) -> Iterator[Event]:
        """Yields every event of `channel` after `after_cursor` (optionally of one
        `kind`) in cursor order, reading at most `page_size` events per call
        (fewer when the server truncates a page), until the channel's current
        end. Errors as `query_events`, raised from the iteration."""
        query = calls.Query(
            channel, after_cursor=after_cursor, limit=None, kind=kind, page_size=page_size
        )
        while not query.done:
            yield from query.add(self._unary(query.next_page()))

    # Subscriptions

    def create_subscription(
        self,
        channel: str,
        *,
        subscription_id: str | None = None,
        consumer: str | None = None,
        batch_size: int = 100,
        filters: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Subscription:
        """Creates a subscription at the start of `channel`, or returns the existing one
        with the same id and channel. `filters` accepts only `{"kind": ...}`; any
        other key raises `InvalidPayloadError` before a call is made. Raises
        `ChannelNotFoundError`, `SubscriptionExistsError` (id used for another channel)."""
        return self._unary(
            calls.create_subscription(
                channel,
                subscription_id=subscription_id,
                consumer=consumer,
                batch_size=batch_size,
                filters=filters,
                metadata=metadata,
            )
        )

    def get_subscription(self, subscription_id: str) -> Subscription:
        """Returns a subscription with its cursor. Raises `SubscriptionNotFoundError`."""
        return self._unary(calls.get_subscription(subscription_id))

    def list_subscriptions(self, channel: str | None = None) -> list[Subscription]:
        """Returns every subscription (only those of `channel` if given) with its
        cursor, ordered by id, following the server's pages. Raises
        `ChannelNotFoundError` for a missing `channel`."""
        subscriptions: list[Subscription] = []
        token = ""
        while True:
            page, token = self._unary(calls.list_subscriptions_page(channel, token))
            subscriptions.extend(page)
            if not token:
                return subscriptions

    def delete_subscription(self, subscription_id: str) -> None:
        """Deletes a subscription; its open stream ends with `SubscriptionNotFoundError`.
        Raises `SubscriptionNotFoundError` if it does not exist."""
        self._unary(calls.delete_subscription(subscription_id))

    def seek_subscription(
        self,
        subscription_id: str,
        *,
        cursor: int | None = None,
        timestamp: float | datetime | None = None,
    ) -> Subscription:
        """Moves a subscription backward (replay) or forward (skip) and returns it.

        Give exactly one position: `cursor` (the next event delivered is the
        first after it; 0 replays the channel) or `timestamp` (seconds since the
        epoch or an aware datetime: the next event is the first stamped at or
        after it; a float keeps about a microsecond of precision, so resume at
        a known event by its cursor). An open stream continues from there;
        unacknowledged deliveries are forgotten. Raises `SubscriptionNotFoundError`,
        `InvalidPayloadError` (no position, both, or a negative cursor).
        """
        return self._unary(
            calls.seek_subscription(subscription_id, cursor=cursor, timestamp=timestamp)
        )

    def ack_subscription(
        self, subscription_id: str, cursor: int, *, lease_epoch: int = 0
    ) -> Subscription:
        """Acknowledges every event up to `cursor` on a manual-mode subscription and
        returns it with the persisted cursor. Raises `InvalidPayloadError` for a
        cursor below the acknowledged one or beyond what the server delivered,
        `SubscriptionNotFoundError`; with the `lease_epoch` of the stream that
        delivered the events, `SubscriptionLeaseLostError` once another stream
        took the subscription over (`EventStream.ack` passes it)."""
        return self._unary(calls.ack_subscription(subscription_id, cursor, lease_epoch))

    def pull_subscription(self, subscription_id: str, *, limit: int | None = None) -> list[Event]:
        """Delivers one batch: up to `limit` (default: the batch size) pending events,
        moving the subscription's cursor past them. Raises `SubscriptionNotFoundError`."""
        self._check_open()
        request = calls.pull_request(subscription_id, limit=limit, follow=False)
        events: list[Event] = []
        try:
            for message in self._stub.PullSubscription(
                request, timeout=self.timeout, metadata=self._metadata
            ):
                events.extend(calls.events_of(message))
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return events

    def subscribe(
        self,
        subscription_id: str,
        *,
        limit: int | None = None,
        initial_backoff: float = 0.1,
        max_backoff: float = 30.0,
        max_retries: int | None = None,
        ack_mode: str = "auto",
        max_unacked: int = 0,
        heartbeat_interval: float | None = None,
    ) -> EventStream:
        """Follows a subscription: an iterator over its pending events, then over each
        new event as soon as it is committed, until closed.

        It survives server restarts and dropped connections: on UNAVAILABLE it
        reconnects after an exponential backoff with full jitter (at most
        `max_backoff` seconds) and resumes from the subscription's persisted
        cursor, so an uninterrupted reader sees every event once, in order.
        Other errors (`SubscriptionNotFoundError`, ...) are raised from the
        iteration; so is the last error after `max_retries` failed attempts.

        With `ack_mode="auto"` (the default), as with `pull_subscription`, the
        server moves the cursor when it sends events, not when you process
        them: events already sent but not yet iterated when you stop are not
        delivered again (at most about one and a half times
        `STREAM_WINDOW_BYTES` of events beyond the one being read). With
        `ack_mode="manual"` the cursor moves only when you call
        `stream.ack(event)` (cumulative), and every reconnect starts after
        the last acknowledged event, so nothing unprocessed is lost (an
        event may come twice); the server pauses at `max_unacked`
        unacknowledged events. With `heartbeat_interval` the server sends a
        heartbeat after that many idle seconds, and a stream silent for three
        intervals is treated as dead and reopened. A newer stream on the same
        subscription takes it over: this one then raises
        `SubscriptionTakenOverError` rather than reconnecting.

        Close the stream (`with client.subscribe(...) as stream:`), or let it
        be collected after `break`; closing the client closes it too.
        """
        self._check_open()
        options = SubscribeOptions(
            subscription_id=subscription_id,
            limit=limit,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            max_retries=max_retries,
            ack_mode=ack_mode,
            max_unacked=max_unacked,
            heartbeat_interval=heartbeat_interval,
        )
        options.request()  # reports unusable arguments now, not at the first read
        stream = EventStream(self, options)
        with self._streams_lock:
            self._streams.add(stream)
        return stream

    # Artifacts

    def write_artifact(
        self,
        data: calls.ArtifactData,
        *,
        channel: str | None = None,
        media_type: str = "application/octet-stream",
        metadata: Mapping[str, Any] | None = None,
        event_ids: Iterable[str] = (),
    ) -> Artifact:
        """Stores a payload (bytes, text stored as UTF-8, or a binary file object) and
        returns its metadata, after checking the stored size and sha256.

        Payloads above 2 MiB and files are streamed in 1 MiB chunks. Raises
        `ChannelNotFoundError`, `EventNotFoundError`, `ArtifactTooLargeError`,
        `ArtifactIntegrityError`.
        """
        write = calls.ArtifactWrite(
            data, channel=channel, media_type=media_type, metadata=metadata, event_ids=event_ids
        )
        if not write.streaming:
            return self._unary(write.unary())
        self._check_open()

        def requests() -> Iterator[Any]:
            yield write.header_request()
            while (chunk := write.next_chunk()) is not None:
                yield chunk

        try:
            response = self._stub.UploadArtifact(
                requests(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return write.verify(response.artifact)

    def get_artifact(self, artifact_id: str) -> Artifact:
        """Returns an artifact's metadata. Raises `ArtifactNotFoundError`."""
        return self._unary(calls.get_artifact(artifact_id))

    def read_artifact(self, artifact_id: str) -> bytes:
        """Returns an artifact's payload, checked against its size and sha256.
        Raises `ArtifactNotFoundError`, `ArtifactIntegrityError`."""
        self._check_open()
        read = calls.ArtifactRead(artifact_id)
        request = calls.read_artifact_request(artifact_id)
        try:
            for message in self._stub.ReadArtifact(
                request, timeout=self.timeout, metadata=self._metadata
            ):
                read.add(message)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return read.result()

    # Snapshots

    def put_snapshot(
        self,
        name: str,
        value: Any = None,
        *,
        channel: str | None = None,
        timestamp: float | None = None,
        schema: str | None = None,
        source_event_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Creates or replaces the snapshot `name` holding `value` (any JSON value, or a
        `Snapshot` whose fields are used). Raises `ChannelNotFoundError`,
        `EventNotFoundError` (a missing source event)."""
        return self._unary(
            calls.put_snapshot(
                name,
                value,
                channel=channel,
                timestamp=timestamp,
                schema=schema,
                source_event_id=source_event_id,
                metadata=metadata,
            )
        )

    def get_snapshot(self, name: str) -> Snapshot:
        """Returns a snapshot. Raises `SnapshotNotFoundError`."""
        return self._unary(calls.get_snapshot(name))

    # Plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("The client is closed.")

    def _error(self, exc: grpc.RpcError) -> Exception:
        if self._closed and exc.code() == grpc.StatusCode.CANCELLED:
            return ClientClosedError("The client was closed during the call.")
        return error_from_rpc(exc)

    def _unary(self, call: calls.Unary[T]) -> T:
        self._check_open()
        method = getattr(self._stub, call.method)
        try:
            response = method(call.request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return call.parse(response)

    def _open_stream(self, options: SubscribeOptions) -> Any:
        self._check_open()
        return self._stub.PullSubscription(options.request(), metadata=self._metadata)


class EventStream:
    """The iterator `SSSNClient.subscribe()` returns: one `Event` at a time, reconnecting
    as needed. A context manager; `close()` may be called from any thread."""

    def __init__(self, client: SSSNClient, options: SubscribeOptions) -> None:
        self._client = client
        self._options = options
        self._backoff = Backoff(options)
        self._pending: deque[Event] = deque()
        self._lease_epoch = 0  # of the stream that delivered the latest events
        self._call: Any = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def subscription_id(self) -> str:
        return self._options.subscription_id

    @property
    def closed(self) -> bool:
        return self._stopped.is_set()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        while not self._pending:
            if self._stopped.is_set():
                raise StopIteration
            call = self._current_call()
            if call is None:
                raise StopIteration
            silent = threading.Event()
            watchdog = self._watchdog(call, silent)
            try:
                message = next(call)
            except StopIteration:  # the server ended the stream: open another one
                self._drop(call)
                self._wait_before_retry(None)
                continue
            except grpc.RpcError as exc:
                self._drop(call)
                if self._stopped.is_set():
                    raise StopIteration from None
                if silent.is_set():  # no heartbeat for several intervals: reopen
                    self._wait_before_retry(None, dead=True)
                    continue
                if not should_reconnect(exc):
                    self.close()
                    raise error_from_rpc(exc) from None
                self._wait_before_retry(exc)
                continue
            finally:
                if watchdog is not None:
                    watchdog.cancel()
            self._backoff.received()
            self._pending.extend(calls.events_of(message))
            self._lease_epoch = message.lease_epoch
        return self._pending.popleft()

    def ack(self, event_or_cursor: Event | int) -> Subscription:
        """Manual mode: acknowledges this event and every one delivered before it.

        Raises `InvalidPayloadError` for a cursor below the acknowledged one or
        beyond what the server delivered on this subscription.
        """
        return self._client.ack_subscription(
            self.subscription_id, ack_cursor(event_or_cursor), lease_epoch=self._lease_epoch
        )

    def close(self) -> None:
        """Cancels the stream; iteration stops. Safe to call more than once."""
        with self._lock:
            self._stopped.set()
            call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A `for` loop left with `break` drops the stream: end the server stream too.
        call = getattr(self, "_call", None)
        if call is not None:
            with contextlib.suppress(Exception):  # the channel may be gone at exit
                call.cancel()

    def _current_call(self) -> Any:
        with self._lock:
            if self._stopped.is_set():
                return None
            if self._call is None:
                self._call = self._client._open_stream(self._options)
                self._backoff.opened()
            return self._call

    def _drop(self, call: Any) -> None:
        with self._lock:
            if self._call is call:
                self._call = None

    def _watchdog(self, call: Any, silent: threading.Event) -> threading.Timer | None:
        """Cancels `call` if no message arrives within the silence timeout."""
        timeout = self._options.silence_timeout
        if timeout is None:
            return None

        def fire() -> None:
            silent.set()
            call.cancel()

        timer = threading.Timer(timeout, fire)
        timer.daemon = True
        timer.start()
        return timer

    def _wait_before_retry(self, error: grpc.RpcError | None, *, dead: bool = False) -> None:
        delay = self._backoff.next_delay()
        if delay is None:
            self.close()
            if dead:
                raise UnavailableError("The stream sent no heartbeat; retries are exhausted.")
            if error is None:
                raise StopIteration
            raise error_from_rpc(error) from None
        # Waiting on the event lets close() from another thread end the wait at once.
        self._stopped.wait(delay)
