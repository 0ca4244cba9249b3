"""Bearer-token authentication and channel-scoped authorization, as a grpc.aio interceptor."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import tomllib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import grpc

from sssn_proto.v1 import store_service_pb2 as pb

from ..domain.errors import (
    InvalidPayloadError,
    NotFoundError,
    PermissionDeniedError,
    SSSNError,
    UnauthenticatedError,
)
from ..domain.service import ChannelService
from ._calls import (
    STORE_SERVICE_PREFIX,
    Behavior,
    current_call,
    hidden_ids,
    readable_channel,
    wrap_handler,
)
from ._errors import to_status
from ._handlers import UndecodableRequest

log = logging.getLogger(__name__)

READ, WRITE, ADMIN = "read", "write", "admin"
PERMISSIONS = (READ, WRITE, ADMIN)

# A channel of None stands for a resource without a channel (artifacts and
# snapshots may have none); only the pattern "*" covers those.
_NO_CHANNEL: None = None
# The resource a request names does not exist (or the name is malformed):
# the handler answers NOT_FOUND/INVALID_ARGUMENT itself, which reveals nothing
# the caller could not learn by guessing ids.
_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Stored:
    """The channel (None: none) of a stored resource that the request names by
    the id in its `field`, not by channel. To a caller that may not read the
    channel, the resource is answered as missing. `field` None: the request
    would store under that id (a put replacing it), so it is refused instead,
    by a denial that does not name the channel."""

    channel: str | None
    field: str | None


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller and the channel-name glob patterns it holds for each permission."""

    name: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()

    def allows(self, permission: str, channel: str | None) -> bool:
        """Whether a `permission` grant covers `channel` (None: no channel)."""
        patterns: tuple[str, ...] = getattr(self, permission)
        if channel is None:
            return "*" in patterns
        return any(fnmatchcase(channel, pattern) for pattern in patterns)

    @property
    def reads_everything(self) -> bool:
        """Whether nothing stored is hidden from this principal."""
        return "*" in self.read


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


class TokenTable:
    """The tokens of `--auth-tokens`, kept only as sha256 digests."""

    def __init__(self, entries: Sequence[_Entry]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        """Reads a TOML file (or JSON of the same shape: `{"tokens": [...]}`).

        Raises:
            ValueError: the file is malformed; the message says where, never
                quoting a token.
        """
        text = path.read_text(encoding="utf-8")
        try:
            document = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}") from exc
        tokens = document.get("tokens") if isinstance(document, dict) else None
        if not isinstance(tokens, list) or not tokens:
            raise ValueError(f"{path}: expected a non-empty list `tokens` ([[tokens]] tables)")
        return cls([_parse_entry(path, index, item) for index, item in enumerate(tokens)])

    def authenticate(self, metadata: Iterable[tuple[str, Any]] | None) -> Principal:
        """The principal of the call's bearer token.

        Raises:
            UnauthenticatedError: no `authorization: Bearer` header, or an unknown token.
        """
        token = _bearer_token(metadata)
        if token is None:
            raise UnauthenticatedError(
                "This server requires `authorization: Bearer <token>` metadata."
            )
        digest = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        # Compare against every entry, in constant time each, so timing tells
        # nothing about which token (or how much of one) matched.
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry.principal
        if found is None:
            raise UnauthenticatedError("The bearer token is not valid.")
        return found


def _parse_entry(path: Path, index: int, item: object) -> _Entry:
    where = f"{path}: tokens[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a table")
    principal = item.get("principal")
    if not isinstance(principal, str) or not principal:
        raise ValueError(f"{where}: `principal` must be a non-empty string")
    token, token_sha256 = item.get("token"), item.get("token_sha256")
    if (token is None) == (token_sha256 is None):
        raise ValueError(f"{where}: give exactly one of `token` and `token_sha256`")
    if token is not None:
        if not isinstance(token, str) or not token:
            raise ValueError(f"{where}: `token` must be a non-empty string")
        digest = hashlib.sha256(token.encode()).digest()
    else:
        try:
            digest = bytes.fromhex(str(token_sha256))
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError(f"{where}: `token_sha256` must be 64 hex digits")
    grants: dict[str, tuple[str, ...]] = {}
    for permission in PERMISSIONS:
        patterns = item.get(permission, [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ValueError(f"{where}: `{permission}` must be a list of glob patterns")
        grants[permission] = tuple(patterns)
    return _Entry(digest, Principal(principal, **grants))


def _bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


# What each StoreService method needs, and how to find the channel(s) of its
# request. A resolver returns channel names (None: a channel-less resource),
# or _MISSING when the named resource does not exist.
Resolver = Callable[[ChannelService, Any], Awaitable[Any]]


async def _lookup(fetch: Awaitable[Any], field: str | None) -> Any:
    try:
        return [_Stored((await fetch).channel, field)]
    except (NotFoundError, InvalidPayloadError):
        return _MISSING


async def _of_subscription(
    service: ChannelService, request: Any, field: str | None = "subscription_id"
) -> Any:
    return await _lookup(service.get_subscription(request.subscription_id), field)


async def _snapshot_channels(service: ChannelService, request: pb.PutSnapshotRequest) -> Any:
    # Replacing a snapshot needs write on its current channel as well, so a
    # grant on one channel cannot overwrite another channel's snapshot.
    existing = await _lookup(service.get_snapshot(request.snapshot.name), None)
    current = [] if existing is _MISSING else existing
    return [request.snapshot.channel or None, *current]


async def _constant(channels: list[str | None]) -> Any:
    return channels


def _fixed(pick: Callable[[Any], list[str | None]]) -> Resolver:
    return lambda service, request: _constant(pick(request))


_RULES: dict[str, tuple[str, Resolver]] = {
    "CreateChannel": (ADMIN, _fixed(lambda r: [r.channel.name])),
    "GetChannel": (READ, _fixed(lambda r: [r.name])),
    # Any principal may list; the response keeps only channels it may read.
    "ListChannels": (READ, _fixed(lambda r: [])),
    "DeleteChannel": (ADMIN, _fixed(lambda r: [r.name])),
    "AppendEvent": (WRITE, _fixed(lambda r: [r.event.channel])),
    "AppendEvents": (WRITE, _fixed(lambda r: sorted({e.channel for e in r.events}))),
    # Checked on every request message (see _EVERY_MESSAGE), not the first only.
    "AppendEventStream": (WRITE, _fixed(lambda r: sorted({e.channel for e in r.events}))),
    "GetEvent": (READ, lambda s, r: _lookup(s.get_event(r.id), "id")),
    "QueryEvents": (READ, _fixed(lambda r: [r.channel])),
    "CreateSubscription": (ADMIN, _fixed(lambda r: [r.channel])),
    "GetSubscription": (READ, _of_subscription),
    "PullSubscription": (READ, _of_subscription),
    "AckSubscription": (READ, _of_subscription),
    "SeekSubscription": (ADMIN, _of_subscription),
    "DeleteSubscription": (ADMIN, _of_subscription),
    # Without a channel filter the listing spans every channel: needs `*`.
    "ListSubscriptions": (READ, _fixed(lambda r: [r.channel or None])),
    "WriteArtifact": (WRITE, _fixed(lambda r: [r.channel or None])),
    "GetArtifact": (READ, lambda s, r: _lookup(s.get_artifact(r.id), "id")),
    "ReadArtifact": (READ, lambda s, r: _lookup(s.get_artifact(r.id), "id")),
    "PutSnapshot": (WRITE, _snapshot_channels),
    "GetSnapshot": (READ, lambda s, r: _lookup(s.get_snapshot(r.name), "name")),
}

# Streaming-request methods each of whose messages names its own channels: a
# message the principal may not write ends the stream with PERMISSION_DENIED,
# after the answers to the messages before it.
_EVERY_MESSAGE = frozenset({"AppendEventStream"})

_ADMIN_VERBS = ("Create", "Delete", "Seek", "Update")
_WRITE_VERBS = ("Append", "Write", "Upload", "Put")
# Methods that may store what their request names: never given a stand-in id.
_STORING_VERBS = ("Create", "Append", "Write", "Upload", "Put")


def _rule(name: str) -> tuple[str, Resolver]:
    """The rule of a method; methods added later get one from their verb and
    the `subscription_id` or `channel` of their request, else need `*`."""
    if name in _RULES:
        return _RULES[name]
    if name.startswith(_ADMIN_VERBS):
        permission = ADMIN
    elif name.startswith(_WRITE_VERBS):
        permission = WRITE
    else:
        permission = READ

    async def resolve(service: ChannelService, request: Any) -> Any:
        fields = request.DESCRIPTOR.fields_by_name if request is not None else {}
        if "subscription_id" in fields and request.subscription_id:
            storing = name.startswith(_STORING_VERBS)
            return await _of_subscription(service, request, None if storing else "subscription_id")
        if "channel" in fields and isinstance(request.channel, str) and request.channel:
            return [request.channel]
        return [_NO_CHANNEL]

    return permission, resolve


def _decoded(request: Any) -> Any:
    """The request, or None where its bytes could not be decoded: it names
    nothing to authorize, and the handler refuses it (INVALID_ARGUMENT)."""
    return None if type(request) is UndecodableRequest else request


def _first_header(request: Any) -> Any:
    """UploadArtifact names its channel in the header, its first message."""
    if request is not None and request.WhichOneof("content") == "header":
        return request.header
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates StoreService calls by bearer token and authorizes them per
    channel; health and reflection stay open so probes and tools work."""

    def __init__(self, tokens: TokenTable, service: ChannelService) -> None:
        self._tokens = tokens
        self._service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(STORE_SERVICE_PREFIX):
            return handler
        name = method.removeprefix(STORE_SERVICE_PREFIX)
        principal: Principal | None = None
        failure: SSSNError | None = None
        try:
            principal = self._tokens.authenticate(handler_call_details.invocation_metadata)
        except UnauthenticatedError as error:
            failure = error
        streaming_request = bool(handler.request_streaming)

        async def admit(request: Any, context: Any) -> tuple[Any, Principal]:
            """Checks the call; returns the request (re-chained if peeked, with
            stand-in ids for what the caller may not see)."""
            if principal is None:
                await _abort(context, failure or UnauthenticatedError("Not authenticated."))
                raise AssertionError("unreachable")  # abort raises
            call = current_call.get()
            if call is not None:
                call.principal = principal.name
            readable_channel.set(functools.partial(principal.allows, READ))
            aliases: dict[str, str] | None = None
            if not principal.reads_everything:
                # One dict for the call, filled in later too (AppendEventStream
                # reads its messages in a task of its own).
                aliases = {}
                hidden_ids.set(aliases)
            if streaming_request and name in _EVERY_MESSAGE:
                return check_each(request, principal, aliases), principal
            first, rest = request, None
            if streaming_request:
                first, rest = await _peek(request)
            decoded = _decoded(first)
            target = decoded
            if decoded is not None and name == "UploadArtifact":
                header = _first_header(decoded)
                target = pb.WriteArtifactRequest(channel=header.channel) if header else None
            permission, resolve = _rule(name)
            channels: Any = await resolve(self._service, target) if target is not None else _MISSING
            if channels is not _MISSING:
                for item in channels:
                    stored = isinstance(item, _Stored)
                    channel = item.channel if stored else item
                    if principal.allows(permission, channel):
                        continue
                    if stored and not principal.allows(READ, channel):
                        assert aliases is not None  # a principal reading "*" reads it
                        if item.field is not None:
                            # The handler is given an id that cannot exist, so
                            # it answers exactly as for a missing one, after the
                            # same checks of the rest of the request.
                            first = _with_alias(first, item.field, aliases)
                            break
                        await _abort(context, _denied(principal, permission, None, shown=False))
                    await _abort(context, _denied(principal, permission, channel))
            if decoded is not None and aliases is not None:
                first = await _hide_references(self._service, first, principal, aliases)
            return (first if rest is None else _chain(first, rest)), principal

        async def check_each(
            requests: Any, principal: Principal, aliases: dict[str, str] | None
        ) -> AsyncIterator[Any]:
            # Raised from the request iterator, so the handler ends the stream
            # in order with the status of this error.
            permission, resolve = _rule(name)
            async for message in requests:
                if _decoded(message) is not None:
                    for channel in await resolve(self._service, message):
                        if not principal.allows(permission, channel):
                            raise _denied(principal, permission, channel)
                    if aliases is not None:
                        message = await _hide_references(self._service, message, principal, aliases)
                yield message

        async def unary(inner: Behavior, request: Any, context: Any) -> Any:
            request, caller = await admit(request, context)
            response = await inner(request, context)
            if name == "ListChannels" and response is not None:
                response = _readable_only(response, caller)
            return response

        async def stream(inner: Behavior, request: Any, context: Any) -> AsyncIterator[Any]:
            request, _ = await admit(request, context)
            async for response in inner(request, context):
                yield response

        return wrap_handler(handler, unary, stream)


def _denied(
    principal: Principal, permission: str, channel: str | None, *, shown: bool = True
) -> PermissionDeniedError:
    """`shown` False: the channel is that of a stored resource the caller may
    not read, so the error does not name it."""
    if not shown:
        target = "the channel of the stored resource"
    elif channel is not None:
        target = f"channel {channel!r}"
    else:
        target = "resources without a channel"
    return PermissionDeniedError(
        f"Principal {principal.name!r} has no {permission} grant for {target}.",
        channel=channel or "",
        permission=permission,
    )


def _readable_only(response: pb.ListChannelsResponse, principal: Principal) -> Any:
    # Pages may come back shorter than page_size; the page token stays valid.
    return pb.ListChannelsResponse(
        channels=[c for c in response.channels if principal.allows(READ, c.name)],
        next_page_token=response.next_page_token,
    )


async def _peek(requests: Any) -> tuple[Any, AsyncIterator[Any]]:
    """The first request message (None: none) and an iterator over the rest."""
    iterator = aiter(requests)
    return await anext(iterator, None), iterator


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    if first is not None:
        yield first
    async for message in rest:
        yield message


def _alias(original: str, aliases: dict[str, str]) -> str:
    """A valid id that no resource has, standing for `original` (see `hidden_ids`)."""
    alias = uuid.uuid4().hex
    aliases[alias] = original
    return alias


def _with_alias(request: Any, field: str, aliases: dict[str, str]) -> Any:
    copy = type(request)()
    copy.CopyFrom(request)
    setattr(copy, field, _alias(getattr(request, field), aliases))
    return copy


def _references(request: Any) -> Iterator[tuple[Any, str]]:
    """The (message, field) pairs of a request that name stored events."""
    if isinstance(request, pb.AppendEventRequest):
        yield request.event, "parent_ids"
    elif isinstance(request, pb.AppendEventsRequest | pb.AppendEventStreamRequest):
        for event in request.events:
            yield event, "parent_ids"
    elif isinstance(request, pb.WriteArtifactRequest):
        yield request, "event_ids"
    elif isinstance(request, pb.UploadArtifactRequest):
        if request.WhichOneof("content") == "header":
            yield request.header, "event_ids"
    elif isinstance(request, pb.PutSnapshotRequest):
        yield request.snapshot, "source_event_id"


def _referenced_ids(request: Any) -> set[str]:
    ids: set[str] = set()
    for message, field in _references(request):
        value = getattr(message, field)
        if isinstance(value, str):
            if value:
                ids.add(value)
        else:
            ids.update(value)
    return ids


async def _hide_references(
    service: ChannelService, request: Any, principal: Principal, aliases: dict[str, str]
) -> Any:
    """The request with each event it links to in a channel the principal may
    not read replaced by a stand-in id, so the handler answers EVENT_NOT_FOUND
    exactly as for a missing event and stores nothing."""
    referenced = _referenced_ids(request)
    if len(referenced) > service.limits.max_request_links:
        # The handler refuses more links than that (however it counts them)
        # before it looks any up: nothing to hide, and no lookup to spend.
        return request
    hidden: dict[str, str] = {}
    for event_id in referenced:
        try:
            event = await service.get_event(event_id)
        except (NotFoundError, InvalidPayloadError):
            # Refused by the handler, or an event appended earlier in the
            # same batch (to a channel the caller writes).
            continue
        if not principal.allows(READ, event.channel):
            hidden[event_id] = _alias(event_id, aliases)
    if not hidden:
        return request
    copy = type(request)()
    copy.CopyFrom(request)
    for message, field in _references(copy):
        value = getattr(message, field)
        if isinstance(value, str):
            setattr(message, field, hidden.get(value, value))
        else:
            value[:] = [hidden.get(item, item) for item in value]
    return copy


async def _abort(context: Any, error: SSSNError) -> None:
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
