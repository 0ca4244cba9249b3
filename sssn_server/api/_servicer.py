"""The `sssn.v1.StoreService` servicer: converts, calls the channel service, converts back."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from ..domain.errors import InvalidPayloadError, SSSNError, StoreReadOnlyError
from ..domain.models import Event
from ..domain.service import ChannelService
from . import _convert as convert
from . import _wire as wire
from ._calls import readable_channel
from ._errors import internal_status, status_proto, to_status
from ._handlers import SERVICE, check_decoded, decoded
from ._wire import Serialized

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Keep every response message well under the 4 MiB a default client accepts.
_MAX_MESSAGE_BYTES = 3 << 20

# The most a repeated field's tag and length add to each entry.
_ENTRY_FRAMING_BYTES = 6

# AppendEventStream: request messages whose appends may be under way at once;
# beyond that the server stops reading and HTTP/2 flow control holds the client.
_APPEND_STREAM_IN_FLIGHT = 32

# An AppendEventStream request's appends, or what ended the request stream
# (None: the client half-closed; an exception: reading failed).
_PendingAppend = asyncio.Future[list[Event | SSSNError]] | Exception | None


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], error: BaseException, method: str
) -> None:
    if isinstance(error, SSSNError):
        status = to_status(error)
    else:
        log.exception("unexpected error in %s", method, exc_info=error)
        status = internal_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


def _guarded(method: F) -> F:
    """Turns every failure of a handler into a taxonomy status, in one place,
    and refuses a request (or request message) that could not be decoded."""
    name = method.__name__
    request_streaming = SERVICE.methods_by_name[name].client_streaming

    def checked(request: Any) -> Any:
        if request_streaming:
            return decoded(request)
        check_decoded(request)
        return request

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for response in method(self, checked(request), context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _abort(context, error, name)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await method(self, checked(request), context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error, name)

    return unary  # type: ignore[return-value]


class StoreServicer(pb_grpc.StoreServiceServicer):
    """Thin adapter: each method converts, calls `ChannelService`, converts back."""

    def __init__(self, service: ChannelService) -> None:
        self._service = service

    # Channels

    @_guarded
    async def CreateChannel(
        self, request: pb.CreateChannelRequest, context: Any
    ) -> pb.CreateChannelResponse:
        channel = await self._service.create_channel(convert.channel_from_proto(request.channel))
        return pb.CreateChannelResponse(channel=convert.channel_to_proto(channel))

    @_guarded
    async def GetChannel(
        self, request: pb.GetChannelRequest, context: Any
    ) -> pb.GetChannelResponse:
        channel = await self._service.get_channel(request.name)
        return pb.GetChannelResponse(channel=convert.channel_to_proto(channel))

    @_guarded
    async def ListChannels(
        self, request: pb.ListChannelsRequest, context: Any
    ) -> pb.ListChannelsResponse:
        channels, next_token = await self._service.list_channels(
            page_size=request.page_size, page_token=request.page_token
        )
        messages = [convert.channel_to_proto(channel) for channel in channels]
        kept = _fitting(messages)
        if kept < len(messages):
            next_token = self._service.page_token_after(channels[kept - 1].name)
        return pb.ListChannelsResponse(channels=messages[:kept], next_page_token=next_token)

    @_guarded
    async def DeleteChannel(
        self, request: pb.DeleteChannelRequest, context: Any
    ) -> pb.DeleteChannelResponse:
        deleted_events = await self._service.delete_channel(request.name)
        return pb.DeleteChannelResponse(deleted_events=deleted_events)

    # Events

    # Responses that carry events are returned already serialized (see
    # `_wire.py`): built from the stored form without a message per event.

    @_guarded
    async def AppendEvent(self, request: pb.AppendEventRequest, context: Any) -> Serialized:
        (event,) = await self._service.append_events(
            [convert.event_from_proto(request.event)], field="event"
        )
        return wire.append_acknowledgement(  # AppendEventResponse
            [event], _MAX_MESSAGE_BYTES, readable_channel.get()
        )

    @_guarded
    async def AppendEvents(self, request: pb.AppendEventsRequest, context: Any) -> Serialized:
        events = await self._service.append_events(
            [convert.event_from_proto(event) for event in request.events]
        )
        return wire.append_acknowledgement(  # AppendEventsResponse
            events, _MAX_MESSAGE_BYTES, readable_channel.get()
        )

    @_guarded
    async def AppendEventStream(
        self, request_iterator: AsyncIterator[pb.AppendEventStreamRequest], context: Any
    ) -> AsyncIterator[Serialized]:
        # Refuse at once: a message of invalid events alone never reaches the store.
        if self._service.store.read_only:
            raise StoreReadOnlyError()
        readable = readable_channel.get()
        pending: asyncio.Queue[_PendingAppend] = asyncio.Queue(_APPEND_STREAM_IN_FLIGHT)
        reader = asyncio.create_task(self._start_appends(request_iterator, pending))
        try:
            while (item := await pending.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield _append_stream_response(await item, readable)  # serialized
            await reader
        finally:
            # Client gone, stream failed or done: stop reading and drop the
            # appends not answered (a write already queued still completes).
            reader.cancel()
            unanswered: list[asyncio.Future[Any]] = [reader]
            while not pending.empty():
                left = pending.get_nowait()
                if isinstance(left, asyncio.Future):
                    left.cancel()
                    unanswered.append(left)
            await asyncio.gather(*unanswered, return_exceptions=True)

    async def _start_appends(
        self,
        requests: AsyncIterator[pb.AppendEventStreamRequest],
        pending: asyncio.Queue[_PendingAppend],
    ) -> None:
        """Starts each request's appends without waiting for the one before, so
        consecutive requests share group commits; the bounded queue paces reading."""
        try:
            async for request in requests:
                events = [convert.event_from_proto(event) for event in request.events]
                appends = asyncio.ensure_future(self._service.append_each(events))
                try:
                    await pending.put(appends)
                except BaseException:  # cancelled while the queue was full
                    appends.cancel()
                    raise
        except Exception as error:  # a failed read (or a denied message) ends the stream in order
            await pending.put(error)
        else:
            await pending.put(None)

    @_guarded
    async def GetEvent(self, request: pb.GetEventRequest, context: Any) -> Serialized:
        event = await self._service.get_event_to_serve(request.id)
        return wire.events_message([event])  # GetEventResponse

    @_guarded
    async def QueryEvents(self, request: pb.QueryEventsRequest, context: Any) -> Serialized:
        events = await self._service.query_events(
            request.channel,
            after_cursor=request.after_cursor,
            limit=request.limit if request.HasField("limit") else None,
            kind=request.kind or None,
        )
        return wire.query_page(events, _MAX_MESSAGE_BYTES)  # QueryEventsResponse

    # Subscriptions

    @_guarded
    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: Any
    ) -> pb.CreateSubscriptionResponse:
        subscription = await self._service.create_subscription(
            request.channel,
            subscription_id=request.subscription_id or None,
            consumer=request.consumer or None,
            batch_size=request.batch_size if request.HasField("batch_size") else None,
            kind=request.filter.kind or None,
            metadata=convert.from_struct(request.metadata),
        )
        return pb.CreateSubscriptionResponse(
            subscription=convert.subscription_to_proto(subscription)
        )

    @_guarded
    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: Any
    ) -> pb.GetSubscriptionResponse:
        lag = await self._service.get_subscription_lag(request.subscription_id)
        return pb.GetSubscriptionResponse(
            subscription=convert.subscription_to_proto(lag.subscription),
            head_cursor=lag.head_cursor,
            pending_count=lag.pending_count,
        )

    @_guarded
    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Any
    ) -> pb.ListSubscriptionsResponse:
        subscriptions, next_token = await self._service.list_subscriptions(
            channel=request.channel or None,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        messages = [convert.subscription_to_proto(each) for each in subscriptions]
        kept = _fitting(messages)
        if kept < len(messages):
            next_token = self._service.page_token_after(subscriptions[kept - 1].id)
        return pb.ListSubscriptionsResponse(
            subscriptions=messages[:kept], next_page_token=next_token
        )

    @_guarded
    async def DeleteSubscription(
        self, request: pb.DeleteSubscriptionRequest, context: Any
    ) -> pb.DeleteSubscriptionResponse:
        await self._service.delete_subscription(request.subscription_id)
        return pb.DeleteSubscriptionResponse()

    @_guarded
    async def AckSubscription(
        self, request: pb.AckSubscriptionRequest, context: Any
    ) -> pb.AckSubscriptionResponse:
        subscription = await self._service.ack(
            request.subscription_id, request.cursor, lease_epoch=request.lease_epoch
        )
        return pb.AckSubscriptionResponse(subscription=convert.subscription_to_proto(subscription))

    @_guarded
    async def SeekSubscription(
        self, request: pb.SeekSubscriptionRequest, context: Any
    ) -> pb.SeekSubscriptionResponse:
        position = request.WhichOneof("position")
        subscription = await self._service.seek(
            request.subscription_id,
            cursor=request.cursor if position == "cursor" else None,
            timestamp_ns=(
                convert.timestamp_ns_from_proto(request.timestamp)
                if position == "timestamp"
                else None
            ),
        )
        return pb.SeekSubscriptionResponse(subscription=convert.subscription_to_proto(subscription))

    @_guarded
    async def PullSubscription(
        self, request: pb.PullSubscriptionRequest, context: Any
    ) -> AsyncIterator[Serialized]:
        batches = self._service.pull(
            request.subscription_id,
            limit=request.limit if request.HasField("limit") else None,
            follow=request.follow,
            ack_mode=convert.ack_mode_from_proto(request.ack_mode),
            max_unacked=request.max_unacked,
            heartbeat_interval=convert.seconds_from_duration(
                request.heartbeat_interval, request.HasField("heartbeat_interval")
            ),
        )
        try:
            async for delivery in batches:
                # PullSubscriptionResponses, each under the size budget.
                for message in wire.pull_messages(
                    delivery.events, delivery.head_cursor, _MAX_MESSAGE_BYTES, delivery.lease_epoch
                ):
                    yield message
        finally:
            # Close at once so the batch lock is released even on cancellation.
            await batches.aclose()

    # Artifacts

    @_guarded
    async def WriteArtifact(
        self, request: pb.WriteArtifactRequest, context: Any
    ) -> pb.WriteArtifactResponse:
        artifact = await self._service.write_artifact(
            convert.artifact_spec_from_proto(request), _single(request.data)
        )
        return pb.WriteArtifactResponse(artifact=convert.artifact_to_proto(artifact))

    @_guarded
    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.UploadArtifactRequest], context: Any
    ) -> pb.UploadArtifactResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("content") != "header":
            raise InvalidPayloadError("header", "must be the first message of the upload")
        artifact = await self._service.write_artifact(
            convert.artifact_spec_from_proto(first.header), _upload_chunks(request_iterator)
        )
        return pb.UploadArtifactResponse(artifact=convert.artifact_to_proto(artifact))

    @_guarded
    async def GetArtifact(
        self, request: pb.GetArtifactRequest, context: Any
    ) -> pb.GetArtifactResponse:
        artifact = await self._service.get_artifact(request.id)
        return pb.GetArtifactResponse(artifact=convert.artifact_to_proto(artifact))

    @_guarded
    async def ReadArtifact(
        self, request: pb.ReadArtifactRequest, context: Any
    ) -> AsyncIterator[pb.ReadArtifactResponse]:
        artifact, chunks = await self._service.read_artifact(request.id)
        metadata: Any = convert.artifact_to_proto(artifact)
        async for chunk in chunks:
            yield pb.ReadArtifactResponse(data=chunk, artifact=metadata)
            metadata = None
        if metadata is not None:  # an empty payload still reports its metadata
            yield pb.ReadArtifactResponse(artifact=metadata)

    # Snapshots

    @_guarded
    async def PutSnapshot(
        self, request: pb.PutSnapshotRequest, context: Any
    ) -> pb.PutSnapshotResponse:
        snapshot = await self._service.put_snapshot(convert.snapshot_from_proto(request.snapshot))
        return pb.PutSnapshotResponse(snapshot=convert.snapshot_to_proto(snapshot))

    @_guarded
    async def GetSnapshot(
        self, request: pb.GetSnapshotRequest, context: Any
    ) -> pb.GetSnapshotResponse:
        snapshot = await self._service.get_snapshot(request.name)
        return pb.GetSnapshotResponse(snapshot=convert.snapshot_to_proto(snapshot))


def _append_stream_response(
    results: list[Event | SSSNError], readable: Callable[[str], bool] | None
) -> Serialized:
    """An AppendEventStreamResponse: stored events from their wire form, errors as messages."""
    answers: list[Event | pb.AppendResult] = []
    for result in results:
        if isinstance(result, Event):
            answers.append(result)
        else:
            answer = pb.AppendResult()
            status = status_proto(result)
            answer.error.code = status.code
            answer.error.message = status.message
            answer.error.details.extend(status.details)
            answers.append(answer)
    return wire.append_results(answers, _MAX_MESSAGE_BYTES, readable)


def _fitting(messages: list[Any]) -> int:
    """How many of a page's messages (at least one) fit in one response."""
    size = 0
    for index, message in enumerate(messages):
        size += message.ByteSize() + _ENTRY_FRAMING_BYTES
        if index and size > _MAX_MESSAGE_BYTES:
            return index
    return len(messages)


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _upload_chunks(
    requests: AsyncIterable[pb.UploadArtifactRequest],
) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.WhichOneof("content") != "data":
            raise InvalidPayloadError("header", "must be sent once, as the first message")
        yield request.data
