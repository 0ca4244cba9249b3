"""What each client method sends and how it reads the answer, shared by both clients."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import IO, Any, Generic, TypeVar

from google.rpc import status_pb2

from sssn_proto.v1 import event_pb2, subscription_pb2
from sssn_proto.v1 import store_service_pb2 as pb

from . import _convert as convert
from ._config import UPLOAD_CHUNK, UPLOAD_THRESHOLD
from ._errors import (
    ArtifactIntegrityError,
    SSSNClientError,
    error_from_status,
    invalid,
    status_code_of,
)
from ._models import DEFAULT_MEDIA_TYPE, Artifact, Channel, Event, Snapshot, Subscription, coerce

T = TypeVar("T")

ArtifactData = bytes | bytearray | memoryview | str | IO[bytes]


@dataclass(frozen=True, slots=True)
class Unary(Generic[T]):
    """One unary call: the stub method, its request, and how to read its response."""

    method: str
    request: Any
    parse: Callable[[Any], T]
    """Turns the response message into the value the client method returns."""


# Channels


def create_channel(channel: Channel | Mapping[str, Any]) -> Unary[Channel]:
    request = pb.CreateChannelRequest(channel=convert.channel_to_proto(coerce(Channel, channel)))
    return Unary("CreateChannel", request, lambda r: convert.channel_from_proto(r.channel))


def get_channel(name: str) -> Unary[Channel]:
    with convert.encoding("name"):
        request = pb.GetChannelRequest(name=name)
    return Unary("GetChannel", request, lambda r: convert.channel_from_proto(r.channel))


def list_channels_page(page_token: str) -> Unary[tuple[list[Channel], str]]:
    """One page of `ListChannels` (the server's largest); the client follows the tokens."""
    request = pb.ListChannelsRequest(page_size=1000, page_token=page_token)
    return Unary(
        "ListChannels",
        request,
        lambda r: ([convert.channel_from_proto(c) for c in r.channels], r.next_page_token),
    )


def delete_channel(name: str) -> Unary[int]:
    with convert.encoding("name"):
        request = pb.DeleteChannelRequest(name=name)
    return Unary("DeleteChannel", request, lambda r: int(r.deleted_events))


# Events


def acknowledged(sent: event_pb2.Event, stored: event_pb2.Event, abridged: bool) -> Event:
    """The event an append returns: the stored one, or for an abridged
    acknowledgement (only id, channel, cursor and timestamp) the event as it
    was sent, completed with those four fields."""
    if not abridged:
        return convert.event_from_proto(stored)
    event = event_pb2.Event()
    event.CopyFrom(sent)
    event.id, event.channel, event.cursor = stored.id, stored.channel, stored.cursor
    event.timestamp.CopyFrom(stored.timestamp)
    event.kind = event.kind or "event"  # the server's default, as a full answer would say
    return convert.event_from_proto(event)


def append_event(event: Event | Mapping[str, Any]) -> Unary[Event]:
    request = pb.AppendEventRequest(event=convert.event_to_proto(coerce(Event, event)))
    return Unary("AppendEvent", request, lambda r: acknowledged(request.event, r.event, r.abridged))


def append_events(events: Iterable[Event | Mapping[str, Any]]) -> Unary[list[Event]]:
    if isinstance(events, (str, bytes, Mapping, Event)):
        raise invalid("events", "must be a list of events")
    messages = [
        convert.event_to_proto(coerce(Event, event), f"events[{index}]")
        for index, event in enumerate(events)
    ]
    return Unary(
        "AppendEvents",
        pb.AppendEventsRequest(events=messages),
        lambda r: [
            acknowledged(sent, stored, r.abridged)
            for sent, stored in zip(messages, r.events, strict=True)
        ],
    )


class AppendStream:
    """One `AppendEventStream` call's bookkeeping, shared by both clients: packs
    events into request messages and matches each response to its request.

    An event the client cannot encode is not sent; its error takes its place
    among the results. Responses come one per request, in order, so a FIFO of
    what each request held is enough (filled before the request is sent).
    """

    def __init__(self, events: object, batch_size: int) -> None:
        if isinstance(events, (str, bytes, Mapping, Event)):
            raise invalid("events", "must be an iterable of events")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise invalid("batch_size", "must be a positive integer")
        self.batch_size = batch_size
        # What each unanswered request held: its events' local errors, and the
        # request itself (to complete abridged acknowledgements).
        self._sent: deque[tuple[list[SSSNClientError | None], pb.AppendEventStreamRequest]] = (
            deque()
        )

    def request(self, batch: Iterable[Event | Mapping[str, Any]]) -> pb.AppendEventStreamRequest:
        """The request message of `batch` (at most `batch_size` events)."""
        request = pb.AppendEventStreamRequest()
        local: list[SSSNClientError | None] = []
        for event in batch:
            try:
                message = convert.event_to_proto(coerce(Event, event))
            except SSSNClientError as error:
                local.append(error)
            else:
                request.events.append(message)
                local.append(None)
        self._sent.append((local, request))
        return request

    def results(self, response: pb.AppendEventStreamResponse) -> list[Event | SSSNClientError]:
        """The results of the oldest unanswered request, one per event it was given."""
        local, request = self._sent.popleft()
        answers = iter(zip(request.events, response.results, strict=True))
        results: list[Event | SSSNClientError] = []
        for error in local:
            if error is not None:
                results.append(error)
                continue
            sent, answer = next(answers)
            if answer.WhichOneof("result") == "event":
                results.append(acknowledged(sent, answer.event, response.abridged))
            else:
                status = status_pb2.Status.FromString(answer.error.SerializeToString())
                results.append(error_from_status(status_code_of(status.code), status))
        return results


def get_event(event_id: str) -> Unary[Event]:
    with convert.encoding("id"):
        request = pb.GetEventRequest(id=event_id)
    return Unary("GetEvent", request, lambda r: convert.event_from_proto(r.event))


def query_events_page(
    channel: str, *, after_cursor: int, limit: int, kind: str | None
) -> Unary[tuple[list[Event], bool]]:
    """One `QueryEvents` call: its events, and whether the server cut the page
    short to keep the response under its size budget (more may follow)."""
    with convert.encoding("query"):
        request = pb.QueryEventsRequest(
            channel=channel, after_cursor=after_cursor, limit=limit, kind=kind or ""
        )
    return Unary(
        "QueryEvents",
        request,
        lambda r: ([convert.event_from_proto(e) for e in r.events], r.truncated),
    )


QUERY_PAGE_MAX = 10_000
"""The most events the server returns per `QueryEvents` call, whatever the limit."""


class Query:
    """Reads up to `limit` events of a channel (every one for None) over as many
    `QueryEvents` calls as it takes, `page_size` events at most per call.

    A page is followed from its last cursor when the server cut it short to
    stay under its response size (`truncated`) or when it is full; a short
    page that is not truncated is the channel's current end.
    """

    def __init__(
        self,
        channel: str,
        *,
        after_cursor: int,
        limit: int | None,
        kind: str | None,
        page_size: int = QUERY_PAGE_MAX,
    ) -> None:
        self._channel, self._kind = channel, kind
        self._after, self._left, self._page_size = after_cursor, limit, page_size
        self._asked: Any = None
        self.done = False

    def next_page(self) -> Unary[tuple[list[Event], bool]]:
        asked: Any = self._page_size if self._left is None else self._left
        if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
            asked = min(asked, self._page_size, QUERY_PAGE_MAX)
        # Anything else goes out as given, for the encoding or the server to refuse.
        self._asked = asked
        return query_events_page(
            self._channel, after_cursor=self._after, limit=asked, kind=self._kind
        )

    def add(self, page: tuple[list[Event], bool]) -> list[Event]:
        """Takes the answer to `next_page()`; returns its events."""
        events, truncated = page
        if self._left is not None:
            self._left -= len(events)
        if events:
            self._after = events[-1].cursor or self._after
        at_end = len(events) < self._asked and not truncated
        enough = self._left is not None and self._left <= 0
        # An empty page cannot move forward, even a truncated one: stop, not spin.
        self.done = not events or at_end or enough
        return events


# Subscriptions


def create_subscription(
    channel: str,
    *,
    subscription_id: str | None,
    consumer: str | None,
    batch_size: int,
    filters: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> Unary[Subscription]:
    subscription_filter = convert.filter_to_proto(filters)
    with convert.encoding("subscription"):
        request = pb.CreateSubscriptionRequest(
            channel=channel,
            subscription_id=subscription_id or "",
            consumer=consumer or "",
            batch_size=batch_size,
            filter=subscription_filter,
            metadata=convert.to_struct(metadata, "metadata"),
        )
    return Unary(
        "CreateSubscription",
        request,
        lambda r: convert.subscription_from_proto(r.subscription),
    )


def get_subscription(subscription_id: str) -> Unary[Subscription]:
    with convert.encoding("subscription_id"):
        request = pb.GetSubscriptionRequest(subscription_id=subscription_id)
    return Unary(
        "GetSubscription", request, lambda r: convert.subscription_from_proto(r.subscription)
    )


def list_subscriptions_page(
    channel: str | None, page_token: str
) -> Unary[tuple[list[Subscription], str]]:
    """One page of `ListSubscriptions` (the server's largest); the client follows the tokens."""
    with convert.encoding("channel"):
        request = pb.ListSubscriptionsRequest(
            channel=channel or "", page_size=1000, page_token=page_token
        )
    return Unary(
        "ListSubscriptions",
        request,
        lambda r: (
            [convert.subscription_from_proto(s) for s in r.subscriptions],
            r.next_page_token,
        ),
    )


def delete_subscription(subscription_id: str) -> Unary[None]:
    with convert.encoding("subscription_id"):
        request = pb.DeleteSubscriptionRequest(subscription_id=subscription_id)
    return Unary("DeleteSubscription", request, lambda r: None)


def seek_subscription(
    subscription_id: str, *, cursor: int | None, timestamp: float | datetime | None
) -> Unary[Subscription]:
    if (cursor is None) == (timestamp is None):
        raise invalid("position", "give exactly one of cursor and timestamp")
    with convert.encoding("subscription_id"):
        request = pb.SeekSubscriptionRequest(subscription_id=subscription_id)
    if cursor is not None:
        if isinstance(cursor, bool) or not isinstance(cursor, int):
            raise invalid("cursor", "must be an integer")
        with convert.encoding("cursor"):
            request.cursor = cursor
    else:
        request.timestamp.CopyFrom(convert.to_timestamp(_seconds(timestamp), "timestamp"))
    return Unary(
        "SeekSubscription", request, lambda r: convert.subscription_from_proto(r.subscription)
    )


def _seconds(timestamp: float | datetime | None) -> float:
    """Seconds since the epoch of a number or of a timezone-aware datetime."""
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise invalid("timestamp", "a datetime needs a timezone (naive ones are ambiguous)")
        return timestamp.timestamp()
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise invalid("timestamp", "must be seconds since the epoch or an aware datetime")
    return float(timestamp)


ACK_MODES = {"auto": subscription_pb2.ACK_MODE_AUTO, "manual": subscription_pb2.ACK_MODE_MANUAL}


def pull_request(
    subscription_id: str,
    *,
    limit: int | None,
    follow: bool,
    ack_mode: str = "auto",
    max_unacked: int = 0,
    heartbeat_interval: float | None = None,
) -> pb.PullSubscriptionRequest:
    if ack_mode not in ACK_MODES:
        raise invalid("ack_mode", f"must be one of {', '.join(ACK_MODES)}")
    with convert.encoding("pull"):
        request = pb.PullSubscriptionRequest(
            subscription_id=subscription_id,
            follow=follow,
            ack_mode=ACK_MODES[ack_mode],
            max_unacked=max_unacked,
        )
        if limit is not None:
            request.limit = limit
        if heartbeat_interval is not None:
            request.heartbeat_interval.FromNanoseconds(int(heartbeat_interval * 1e9))
    return request


def ack_subscription(
    subscription_id: str, cursor: int, lease_epoch: int = 0
) -> Unary[Subscription]:
    with convert.encoding("cursor"):
        request = pb.AckSubscriptionRequest(
            subscription_id=subscription_id, cursor=cursor, lease_epoch=lease_epoch
        )
    return Unary(
        "AckSubscription", request, lambda r: convert.subscription_from_proto(r.subscription)
    )


def events_of(message: pb.PullSubscriptionResponse) -> list[Event]:
    return [convert.event_from_proto(event) for event in message.events]


# Artifacts


class ArtifactWrite:
    """One artifact write: picks the unary call or the streaming upload, hashes the
    payload on the way out and checks the stored artifact against it."""

    def __init__(
        self,
        data: ArtifactData,
        *,
        channel: str | None,
        media_type: str,
        metadata: Mapping[str, Any] | None,
        event_ids: Iterable[str],
    ) -> None:
        if isinstance(data, str):  # the reference stores text as UTF-8
            data = data.encode("utf-8")
        if isinstance(data, (bytes, bytearray, memoryview)):
            with convert.encoding("data"):  # a non-contiguous memoryview cannot be sent
                self._buffer: memoryview | None = memoryview(data).cast("B")
            self._file: IO[bytes] | None = None
        elif callable(getattr(data, "read", None)):
            self._buffer, self._file = None, data
        else:
            raise invalid("data", "must be bytes, text or a binary file object")
        if isinstance(event_ids, str):
            raise invalid("event_ids", "must be a list of event ids")
        with convert.encoding("artifact"):
            self._header = pb.UploadArtifactHeader(
                channel=channel or "",
                media_type=media_type or DEFAULT_MEDIA_TYPE,
                metadata=convert.to_struct(metadata, "metadata"),
                event_ids=list(event_ids),
            )
        self._hash = hashlib.sha256()
        self._size = 0
        self._offset = 0

    @property
    def streaming(self) -> bool:
        """Whether the payload goes through `UploadArtifact` (large or a file)."""
        return self._buffer is None or len(self._buffer) > UPLOAD_THRESHOLD

    def unary(self) -> Unary[Artifact]:
        """The `WriteArtifact` call of a small in-memory payload."""
        assert self._buffer is not None
        data = self._buffer.tobytes()
        self._hash.update(data)
        self._size = len(data)
        header = self._header
        request = pb.WriteArtifactRequest(
            data=data,
            channel=header.channel,
            media_type=header.media_type,
            metadata=header.metadata,
            event_ids=header.event_ids,
        )
        return Unary("WriteArtifact", request, lambda r: self.verify(r.artifact))

    def header_request(self) -> pb.UploadArtifactRequest:
        return pb.UploadArtifactRequest(header=self._header)

    def next_chunk(self) -> pb.UploadArtifactRequest | None:
        """The next data message of the upload, or None at the end (blocks on files)."""
        if self._buffer is not None:
            chunk = self._buffer[self._offset : self._offset + UPLOAD_CHUNK].tobytes()
            self._offset += len(chunk)
        else:
            assert self._file is not None
            chunk = self._file.read(UPLOAD_CHUNK)
            if not isinstance(chunk, bytes):
                raise invalid("data", "the file must be opened in binary mode")
        if not chunk:
            return None
        self._hash.update(chunk)
        self._size += len(chunk)
        return pb.UploadArtifactRequest(data=chunk)

    @property
    def reads_a_file(self) -> bool:
        return self._file is not None

    def verify(self, message: Any) -> Artifact:
        """The stored artifact, once its size and sha256 match what was sent."""
        artifact = convert.artifact_from_proto(message)
        digest = self._hash.hexdigest()
        if artifact.size != self._size or artifact.sha256 != digest:
            raise ArtifactIntegrityError(
                f"artifact {artifact.id} was stored as {artifact.size} bytes with sha256 "
                f"{artifact.sha256}, but {self._size} bytes with sha256 {digest} were sent",
                resource={"artifact_id": artifact.id},
            )
        return artifact


def get_artifact(artifact_id: str) -> Unary[Artifact]:
    with convert.encoding("id"):
        request = pb.GetArtifactRequest(id=artifact_id)
    return Unary("GetArtifact", request, lambda r: convert.artifact_from_proto(r.artifact))


def read_artifact_request(artifact_id: str) -> pb.ReadArtifactRequest:
    with convert.encoding("id"):
        return pb.ReadArtifactRequest(id=artifact_id)


class ArtifactRead:
    """Reassembles a `ReadArtifact` stream and checks it against the metadata it starts with."""

    def __init__(self, artifact_id: str) -> None:
        self._artifact_id = artifact_id
        self._artifact: Artifact | None = None
        self._chunks: list[bytes] = []
        self._hash = hashlib.sha256()

    def add(self, message: pb.ReadArtifactResponse) -> None:
        if self._artifact is None and message.HasField("artifact"):
            self._artifact = convert.artifact_from_proto(message.artifact)
        self._chunks.append(message.data)
        self._hash.update(message.data)

    def result(self) -> bytes:
        data = b"".join(self._chunks)
        artifact = self._artifact
        if artifact is None:
            raise ArtifactIntegrityError(
                f"the stream of artifact {self._artifact_id} carried no metadata",
                resource={"artifact_id": self._artifact_id},
            )
        digest = self._hash.hexdigest()
        if len(data) != artifact.size or digest != artifact.sha256:
            raise ArtifactIntegrityError(
                f"artifact {artifact.id} should be {artifact.size} bytes with sha256 "
                f"{artifact.sha256}, but {len(data)} bytes with sha256 {digest} arrived",
                resource={"artifact_id": artifact.id},
            )
        return data


# Snapshots


def put_snapshot(
    name: str,
    value: Any,
    *,
    channel: str | None,
    timestamp: float | None,
    schema: str | None,
    source_event_id: str | None,
    metadata: Mapping[str, Any] | None,
) -> Unary[Snapshot]:
    given: dict[str, Any] = {
        "channel": channel,
        "timestamp": timestamp,
        "schema": schema,
        "source_event_id": source_event_id,
        "metadata": metadata,
    }
    overrides = {key: item for key, item in given.items() if item is not None}
    if isinstance(value, Snapshot) or callable(getattr(value, "model_dump", None)):
        # A whole snapshot object: its fields, under `name`, with explicit arguments winning.
        snapshot = replace(coerce(Snapshot, value), name=name, **overrides)
    else:
        snapshot = Snapshot(name=name, value=value, **overrides)
    request = pb.PutSnapshotRequest(snapshot=convert.snapshot_to_proto(snapshot))
    return Unary("PutSnapshot", request, lambda r: convert.snapshot_from_proto(r.snapshot))


def get_snapshot(name: str) -> Unary[Snapshot]:
    with convert.encoding("name"):
        request = pb.GetSnapshotRequest(name=name)
    return Unary("GetSnapshot", request, lambda r: convert.snapshot_from_proto(r.snapshot))
