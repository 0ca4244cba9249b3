"""The asyncio client, `AsyncSSSNClient`, and its following subscription stream."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
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


class AsyncSSSNClient:
    """asyncio client of an SSSN gRPC server: the methods of `SSSNClient` as coroutines.

    Arguments and errors are those of `SSSNClient`. The client may be created
    anywhere (even before `asyncio.run`, as the reference's client allows):
    it connects on its first call, in that call's event loop, and connects
    again if later used in another loop. Close it in the loop that uses it
    (`await client.close()` or `async with`).
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
        self._settings = channel_options(options)
        self._credentials = credentials
        # A grpc.aio channel belongs to the event loop it was made in, so it is
        # made in the loop of the first call (see `_connect`).
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: weakref.WeakSet[AsyncEventStream] = weakref.WeakSet()
        self._closed = False

    # Lifecycle

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Ends open streams and closes the channel; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            stream.cancel()
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None and self._loop is asyncio.get_running_loop():
            await channel.close()

    async def __aenter__(self) -> AsyncSSSNClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Channels

    async def create_channel(self, channel: Channel | Mapping[str, Any]) -> Channel:
        """See `SSSNClient.create_channel`."""
        return await self._unary(calls.create_channel(channel))

    async def list_channels(self) -> list[Channel]:
        """See `SSSNClient.list_channels`."""
        channels: list[Channel] = []
        token = ""
        while True:
            page, token = await self._unary(calls.list_channels_page(token))
            channels.extend(page)
            if not token:
                return channels

    async def get_channel(self, name: str) -> Channel:
        """See `SSSNClient.get_channel`."""
        return await self._unary(calls.get_channel(name))

    async def delete_channel(self, name: str) -> int:
        """See `SSSNClient.delete_channel`."""
        return await self._unary(calls.delete_channel(name))

    # Events

    async def append_event(self, event: Event | Mapping[str, Any]) -> Event:
        """See `SSSNClient.append_event`."""
        return await self._unary(calls.append_event(event))

    async def append_events(self, events: Iterable[Event | Mapping[str, Any]]) -> list[Event]:
        """See `SSSNClient.append_events`."""
        return await self._unary(calls.append_events(events))

    def append_event_stream(
        self,
        events: Iterable[Event | Mapping[str, Any]] | AsyncIterable[Event | Mapping[str, Any]],
        *,
        batch_size: int = 16,
    ) -> AsyncIterator[Event | SSSNClientError]:
        """See `SSSNClient.append_event_stream`; `events` may also be an async
        iterable. Use it with `async for` (no await)."""
        self._check_open()
        return self._append_stream(events, calls.AppendStream(events, batch_size))

    async def _append_stream(
        self,
        events: Iterable[Event | Mapping[str, Any]] | AsyncIterable[Event | Mapping[str, Any]],
        stream: calls.AppendStream,
    ) -> AsyncIterator[Event | SSSNClientError]:
        failed: list[Exception] = []

        async def requests() -> AsyncIterator[Any]:
            batch: list[Event | Mapping[str, Any]] = []
            try:
                async for event in _each(events):
                    batch.append(event)
                    if len(batch) == stream.batch_size:
                        yield stream.request(batch)
                        batch = []
            except Exception as exc:  # end the stream; raised after the answers
                failed.append(exc)
            if batch:
                yield stream.request(batch)

        call = self._connect().AppendEventStream(requests(), metadata=self._metadata)
        try:
            async for response in call:
                for result in stream.results(response):
                    yield result
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        finally:
            call.cancel()
        if failed:
            raise failed[0]

    async def get_event(self, event_id: str) -> Event:
        """See `SSSNClient.get_event`."""
        return await self._unary(calls.get_event(event_id))

    async def query_events(
        self,
        channel: str,
        *,
        after_cursor: int = 0,
        limit: int = 100,
        kind: str | None = None,
    ) -> list[Event]:
        """See `SSSNClient.query_events`."""
        query = calls.Query(channel, after_cursor=after_cursor, limit=limit, kind=kind)
        events: list[Event] = []
        while not query.done:
            events.extend(query.add(await self._unary(query.next_page())))
        return events

    async def iter_events(
        self,
        channel: str,
        *,
        after_cursor: int = 0,
        kind: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[Event]:
        """See `SSSNClient.iter_events`; use it with `async for` (no await)."""
        query = calls.Query(
            channel, after_cursor=after_cursor, limit=None, kind=kind, page_size=page_size
        )
        while not query.done:
            for event in query.add(await self._unary(query.next_page())):
                yield event

    # Subscriptions

    async def create_subscription(
        self,
        channel: str,
        *,
        subscription_id: str | None = None,
        consumer: str | None = None,
        batch_size: int = 100,
        filters: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Subscription:
        """See `SSSNClient.create_subscription`."""
        return await self._unary(
            calls.create_subscription(
                channel,
                subscription_id=subscription_id,
                consumer=consumer,
                batch_size=batch_size,
                filters=filters,
                metadata=metadata,
            )
        )

    async def get_subscription(self, subscription_id: str) -> Subscription:
        """See `SSSNClient.get_subscription`."""
        return await self._unary(calls.get_subscription(subscription_id))

    async def list_subscriptions(self, channel: str | None = None) -> list[Subscription]:
        """See `SSSNClient.list_subscriptions`."""
        subscriptions: list[Subscription] = []
        token = ""
        while True:
            page, token = await self._unary(calls.list_subscriptions_page(channel, token))
            subscriptions.extend(page)
            if not token:
                return subscriptions

    async def delete_subscription(self, subscription_id: str) -> None:
        """See `SSSNClient.delete_subscription`."""
        await self._unary(calls.delete_subscription(subscription_id))

    async def seek_subscription(
        self,
        subscription_id: str,
        *,
        cursor: int | None = None,
        timestamp: float | datetime | None = None,
    ) -> Subscription:
        """See `SSSNClient.seek_subscription`."""
        return await self._unary(
            calls.seek_subscription(subscription_id, cursor=cursor, timestamp=timestamp)
        )

    async def pull_subscription(
        self, subscription_id: str, *, limit: int | None = None
    ) -> list[Event]:
        """See `SSSNClient.pull_subscription`."""
        self._check_open()
        request = calls.pull_request(subscription_id, limit=limit, follow=False)
        events: list[Event] = []
        try:
            async for message in self._connect().PullSubscription(
                request, timeout=self.timeout, metadata=self._metadata
            ):
                events.extend(calls.events_of(message))
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return events

    async def ack_subscription(
        self, subscription_id: str, cursor: int, *, lease_epoch: int = 0
    ) -> Subscription:
        """See `SSSNClient.ack_subscription`."""
        return await self._unary(calls.ack_subscription(subscription_id, cursor, lease_epoch))

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
    ) -> AsyncEventStream:
        """Follows a subscription: `async for event in client.subscribe(...)`.

        Behaves as `SSSNClient.subscribe`. Use `async with client.subscribe(...)
        as stream:` (or `await stream.aclose()`) to end it deterministically;
        a stream dropped after `break` is cancelled when it is collected.
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
        stream = AsyncEventStream(self, options)
        self._streams.add(stream)
        return stream

    # Artifacts

    async def write_artifact(
        self,
        data: calls.ArtifactData,
        *,
        channel: str | None = None,
        media_type: str = "application/octet-stream",
        metadata: Mapping[str, Any] | None = None,
        event_ids: Iterable[str] = (),
    ) -> Artifact:
        """See `SSSNClient.write_artifact`; file objects are read in a worker thread."""
        write = calls.ArtifactWrite(
            data, channel=channel, media_type=media_type, metadata=metadata, event_ids=event_ids
        )
        if not write.streaming:
            return await self._unary(write.unary())
        self._check_open()

        async def requests() -> AsyncIterator[Any]:
            yield write.header_request()
            while True:
                if write.reads_a_file:  # keep blocking reads off the event loop
                    chunk = await asyncio.to_thread(write.next_chunk)
                else:
                    chunk = write.next_chunk()
                if chunk is None:
                    return
                yield chunk

        try:
            response = await self._connect().UploadArtifact(
                requests(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return write.verify(response.artifact)

    async def get_artifact(self, artifact_id: str) -> Artifact:
        """See `SSSNClient.get_artifact`."""
        return await self._unary(calls.get_artifact(artifact_id))

    async def read_artifact(self, artifact_id: str) -> bytes:
        """See `SSSNClient.read_artifact`."""
        self._check_open()
        read = calls.ArtifactRead(artifact_id)
        request = calls.read_artifact_request(artifact_id)
        try:
            async for message in self._connect().ReadArtifact(
                request, timeout=self.timeout, metadata=self._metadata
            ):
                read.add(message)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return read.result()

    # Snapshots

    async def put_snapshot(
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
        """See `SSSNClient.put_snapshot`."""
        return await self._unary(
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

    async def get_snapshot(self, name: str) -> Snapshot:
        """See `SSSNClient.get_snapshot`."""
        return await self._unary(calls.get_snapshot(name))

    # Plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("The client is closed.")

    def _connect(self) -> Any:
        """The stub over this event loop's channel, made on first use in the loop."""
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._stub is None or self._loop is not loop:
            # The channel of another loop cannot be closed from this one (closing
            # awaits in its own loop), so it is left to the garbage collector.
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=self._settings)
            else:
                self._channel = grpc.aio.secure_channel(
                    self.target, self._credentials, options=self._settings
                )
            self._stub = pb_grpc.StoreServiceStub(self._channel)  # type: ignore[no-untyped-call]
            self._loop = loop
        return self._stub

    def _error(self, exc: grpc.RpcError) -> Exception:
        if self._closed and exc.code() == grpc.StatusCode.CANCELLED:
            return ClientClosedError("The client was closed during the call.")
        return error_from_rpc(exc)

    async def _unary(self, call: calls.Unary[T]) -> T:
        self._check_open()
        method = getattr(self._connect(), call.method)
        try:
            response = await method(call.request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return call.parse(response)

    def _open_stream(self, options: SubscribeOptions) -> Any:
        self._check_open()
        return self._connect().PullSubscription(options.request(), metadata=self._metadata)


class AsyncEventStream:
    """The async iterator `AsyncSSSNClient.subscribe()` returns: one `Event` at a time,
    reconnecting as needed. An async context manager."""

    def __init__(self, client: AsyncSSSNClient, options: SubscribeOptions) -> None:
        self._client = client
        self._options = options
        self._backoff = Backoff(options)
        self._pending: deque[Event] = deque()
        self._lease_epoch = 0  # of the stream that delivered the latest events
        self._call: Any = None
        self._stopped = False
        self._wakeup: asyncio.Event | None = None

    @property
    def subscription_id(self) -> str:
        return self._options.subscription_id

    @property
    def closed(self) -> bool:
        return self._stopped

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            if self._stopped:
                raise StopAsyncIteration
            if self._call is None:
                self._call = self._client._open_stream(self._options)
                self._backoff.opened()
            call = self._call
            try:
                message = await asyncio.wait_for(call.read(), self._options.silence_timeout)
            except TimeoutError:
                # No heartbeat for several intervals: the stream is dead even
                # if the connection looks open; open another one.
                self._drop(call)
                call.cancel()
                await self._wait_before_retry(None, dead=True)
                continue
            except asyncio.CancelledError:
                # A local cancel (close) ends the read this way; a cancellation
                # of the task itself must go on.
                task = asyncio.current_task()
                if not self._stopped or (task is not None and task.cancelling()):
                    raise
                raise StopAsyncIteration from None
            except grpc.RpcError as exc:
                self._drop(call)
                if self._stopped:
                    raise StopAsyncIteration from None
                if not should_reconnect(exc):
                    self.cancel()
                    raise error_from_rpc(exc) from None
                await self._wait_before_retry(exc)
                continue
            if message is grpc.aio.EOF:  # the server ended the stream: open another one
                self._drop(call)
                await self._wait_before_retry(None)
                continue
            self._backoff.received()
            self._pending.extend(calls.events_of(message))
            self._lease_epoch = message.lease_epoch
        return self._pending.popleft()

    async def ack(self, event_or_cursor: Event | int) -> Subscription:
        """Manual mode: acknowledges this event and every one delivered before it.

        Raises `InvalidPayloadError` for a cursor below the acknowledged one or
        beyond what the server delivered on this subscription.
        """
        return await self._client.ack_subscription(
            self.subscription_id, ack_cursor(event_or_cursor), lease_epoch=self._lease_epoch
        )

    def cancel(self) -> None:
        """Ends the stream now, without waiting (iteration stops)."""
        self._stopped = True
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
        if self._wakeup is not None:
            self._wakeup.set()

    async def aclose(self) -> None:
        """Ends the stream; iteration stops. Safe to call more than once."""
        self.cancel()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A stream dropped after `break` ends its server stream too.
        call = getattr(self, "_call", None)
        if call is not None:
            with contextlib.suppress(Exception):  # the loop may be closed at exit
                call.cancel()

    def _drop(self, call: Any) -> None:
        if self._call is call:
            self._call = None

    async def _wait_before_retry(self, error: grpc.RpcError | None, *, dead: bool = False) -> None:
        delay = self._backoff.next_delay()
        if delay is None:
            self.cancel()
            if dead:
                raise UnavailableError("The stream sent no heartbeat; retries are exhausted.")
            if error is None:
                raise StopAsyncIteration
            raise error_from_rpc(error)
        # Waiting on an event lets aclose() from another task end the wait at once.
        self._wakeup = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), delay)
        self._wakeup = None


async def _each(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterates a plain or an async iterable alike."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
