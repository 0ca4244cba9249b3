"""Client errors: one class per server reason, built from a failed call by one table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


class SSSNError(RuntimeError):
    """Base of every error this package raises (the reference's base class name)."""


class ClientClosedError(SSSNError):
    """A call was made on a client (or stream) after it was closed."""


# The HTTP status of each gRPC code, as `google.rpc.Code` documents it; the
# reference's HTTP server answers the same for the errors it shares with us
# (404 missing, 409 conflict, 400 invalid, 500 unexpected).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class SSSNClientError(SSSNError):
    """A call failed: the server (or the transport) returned a non-OK status.

    The attributes the reference's HTTP client sets keep their meaning, so code
    written for it (`err.status_code == 409`, `err.error_type ==
    "ChannelExistsError"`) runs unchanged; the gRPC details sit beside them.

    Attributes:
        status_code: the HTTP-style status of the error, as the reference's
            server answers it: 404 for a missing resource, 409 for a conflict,
            400 for an invalid request, 500 for an unexpected failure, and the
            usual HTTP equivalent of every other gRPC code (401, 403, 413,
            503, 504...; docs/migrating.md has the table).
        grpc_status_code: the `grpc.StatusCode` of the failed call.
        error_type: the name of the error's class, as the reference names its
            errors (`"ChannelExistsError"`, `"InvalidPayloadError"`...).
        reason: the stable reason the server put in its `google.rpc.ErrorInfo`
            (for example `"CHANNEL_NOT_FOUND"`); when the status carries no
            ErrorInfo (a transport failure, an expired deadline, a check made by
            this client), the name of the status code or of the client check.
        message: the human-readable message of the status.
        detail: the decoded `google.rpc.Status` (with its `details`), or None
            when the failure carried none.
        resource: the ErrorInfo metadata: which resource was at fault, for
            example `{"channel": "orders"}`.
        field_violations: `(field, description)` pairs of a `google.rpc.BadRequest`.

    The reference's constructor, `SSSNClientError(409, error_type=...,
    message=...)`, works too (for test doubles written against it).
    """

    default_status = grpc.StatusCode.UNKNOWN
    """The gRPC code of this class when none is given."""
    default_reason = "UNKNOWN"
    """The reason of this class when the status carries none."""
    http_status: int | None = None
    """The HTTP status of this class, where it is more precise than its code's."""

    def __init__(
        self,
        message_or_status: str | int = "",
        /,
        *,
        message: str | None = None,
        status_code: int | grpc.StatusCode | None = None,
        grpc_status_code: grpc.StatusCode | None = None,
        error_type: str | None = None,
        reason: str | None = None,
        detail: Any = None,
        resource: Mapping[str, str] | None = None,
        field_violations: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if isinstance(message_or_status, int):  # the reference's form: the HTTP status first
            status_code = status_code or message_or_status
            text = message or ""
        else:
            text = message if message is not None else message_or_status
        if isinstance(status_code, grpc.StatusCode):  # this package's earlier keyword
            grpc_status_code, status_code = grpc_status_code or status_code, None
        self.grpc_status_code: grpc.StatusCode = grpc_status_code or self.default_status
        self.status_code: int = (
            status_code or self.http_status or HTTP_STATUS.get(self.grpc_status_code, 500)
        )
        self.error_type: str = error_type or type(self).__name__
        self.reason: str = reason or self.default_reason
        self.message: str = text
        self.detail = detail
        self.resource: dict[str, str] = dict(resource or {})
        self.field_violations = field_violations
        super().__init__(f"{self.reason}: {text}" if text else self.reason)


class NotFoundError(SSSNClientError):
    """NOT_FOUND: a named resource does not exist."""

    default_status = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class ChannelNotFoundError(NotFoundError):
    """The channel does not exist."""

    default_reason = "CHANNEL_NOT_FOUND"


class EventNotFoundError(NotFoundError):
    """The event, or an event a `parent_ids`/`event_ids`/`source_event_id` link names,
    does not exist."""

    default_reason = "EVENT_NOT_FOUND"


class SubscriptionNotFoundError(NotFoundError):
    """The subscription does not exist."""

    default_reason = "SUBSCRIPTION_NOT_FOUND"


class ArtifactNotFoundError(NotFoundError):
    """The artifact, or its stored payload, does not exist."""

    default_reason = "ARTIFACT_NOT_FOUND"


class SnapshotNotFoundError(NotFoundError):
    """The snapshot does not exist."""

    default_reason = "SNAPSHOT_NOT_FOUND"


class AlreadyExistsError(SSSNClientError):
    """ALREADY_EXISTS: the identity is taken by a conflicting resource."""

    default_status = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class ChannelExistsError(AlreadyExistsError):
    """A channel with that name already exists."""

    default_reason = "CHANNEL_EXISTS"


class SubscriptionExistsError(AlreadyExistsError):
    """The subscription id is already used for another channel."""

    default_reason = "SUBSCRIPTION_EXISTS"


class EventExistsError(AlreadyExistsError):
    """The event id is already used in another channel."""

    default_reason = "EVENT_EXISTS"


class InvalidPayloadError(SSSNClientError):
    """INVALID_ARGUMENT: a name, id, token, cursor, limit, JSON value or filter is malformed.

    Also raised by the client itself, before any call, for input it cannot
    encode (an unknown filter key, a value that is not JSON, an unknown form).
    """

    default_status = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_PAYLOAD"


class EventTooLargeError(InvalidPayloadError):
    """The event (or snapshot value) is larger than the server stores; nothing was stored."""

    default_reason = "EVENT_TOO_LARGE"
    http_status = 413


class PayloadTooDeepError(InvalidPayloadError):
    """A JSON value nests deeper than the server accepts; nothing was stored."""

    default_reason = "PAYLOAD_TOO_DEEP"


class LimitExceededError(InvalidPayloadError):
    """A value is over one of the server's limits (`resource` names `limit` and `max`)."""

    default_reason = "LIMIT_EXCEEDED"


class FailedPreconditionError(SSSNClientError):
    """FAILED_PRECONDITION: the server is not in a state that allows the request."""

    default_status = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class StoreReadOnlyError(FailedPreconditionError):
    """The server serves its store read-only and refuses writes (pulls included)."""

    default_reason = "STORE_READ_ONLY"


class EventUndeliverableError(FailedPreconditionError):
    """The next event is larger than a client receives by default (stored
    before the server's size limits); the read stops there and no cursor moves
    past it. Seek the subscription to `resource["cursor"]` to skip it."""

    default_reason = "EVENT_UNDELIVERABLE"


class SubscriptionLeaseLostError(FailedPreconditionError):
    """An acknowledgement from a stream that another stream (on any replica)
    took over since: nothing was acknowledged; the new stream has the events."""

    default_reason = "SUBSCRIPTION_LEASE_LOST"


class ResourceExhaustedError(SSSNClientError):
    """RESOURCE_EXHAUSTED: a request is too large or carries too many items."""

    default_status = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class ArtifactTooLargeError(ResourceExhaustedError):
    """The artifact is larger than the server accepts."""

    default_reason = "ARTIFACT_TOO_LARGE"
    http_status = 413


class TooManyItemsError(ResourceExhaustedError):
    """The request carries more items than the server accepts in one call."""

    default_reason = "TOO_MANY_ITEMS"
    http_status = 413


class StorageFullError(ResourceExhaustedError):
    """The server's disk is full; nothing was stored. Retry with backoff."""

    default_reason = "STORAGE_FULL"
    http_status = 507


class UnavailableError(SSSNClientError):
    """UNAVAILABLE: the server cannot be reached or is stopping; retrying later may work."""

    default_status = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class StoreUnavailableError(UnavailableError):
    """The server's database cannot be reached; nothing was changed. Retry with backoff."""

    default_reason = "STORE_UNAVAILABLE"


class ServerShuttingDownError(UnavailableError):
    """The server is shutting down; reconnect (streams resume from their cursor)."""

    default_reason = "SHUTTING_DOWN"


class AbortedError(SSSNClientError):
    """ABORTED: a concurrent operation ended this one."""

    default_status = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class SubscriptionTakenOverError(AbortedError):
    """Another stream opened on the subscription and owns it now; `subscribe()`
    raises it instead of reconnecting, so two workers never fight over it."""

    default_reason = "SUBSCRIPTION_TAKEN_OVER"


class UnauthenticatedError(SSSNClientError):
    """UNAUTHENTICATED: the server requires a bearer token and got none or an unknown one."""

    default_status = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDeniedError(SSSNClientError):
    """PERMISSION_DENIED: the token's grants do not cover the channel (see `resource`)."""

    default_status = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class DeadlineExceededError(SSSNClientError):
    """DEADLINE_EXCEEDED: the call did not finish within its deadline."""

    default_status = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class InternalError(SSSNClientError):
    """INTERNAL: an unexpected server failure (the server logs the cause)."""

    default_status = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"


class UnimplementedError(SSSNClientError):
    """UNIMPLEMENTED: the server does not know the call (a server older than this client)."""

    default_status = grpc.StatusCode.UNIMPLEMENTED
    default_reason = "UNIMPLEMENTED"


class ArtifactIntegrityError(SSSNClientError):
    """DATA_LOSS: the size or sha256 of an artifact's payload does not match its metadata."""

    default_status = grpc.StatusCode.DATA_LOSS
    default_reason = "ARTIFACT_INTEGRITY"


# The one table from a server's ErrorInfo reason to the class raised.
_BY_REASON: dict[str, type[SSSNClientError]] = {
    cls.default_reason: cls
    for cls in (
        ChannelNotFoundError,
        EventNotFoundError,
        SubscriptionNotFoundError,
        ArtifactNotFoundError,
        SnapshotNotFoundError,
        ChannelExistsError,
        SubscriptionExistsError,
        EventExistsError,
        InvalidPayloadError,
        EventTooLargeError,
        PayloadTooDeepError,
        LimitExceededError,
        StoreReadOnlyError,
        EventUndeliverableError,
        SubscriptionLeaseLostError,
        ArtifactTooLargeError,
        TooManyItemsError,
        StorageFullError,
        ServerShuttingDownError,
        StoreUnavailableError,
        InternalError,
        SubscriptionTakenOverError,
        UnauthenticatedError,
        PermissionDeniedError,
    )
}

# Statuses without a known reason (transport failures, newer servers) fall back
# to the class of their code, so `except NotFoundError` still catches them.
_BY_STATUS: dict[grpc.StatusCode, type[SSSNClientError]] = {
    cls.default_status: cls
    for cls in (
        NotFoundError,
        AlreadyExistsError,
        InvalidPayloadError,
        FailedPreconditionError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        InternalError,
        ArtifactIntegrityError,
        AbortedError,
        UnimplementedError,
        UnauthenticatedError,
        PermissionDeniedError,
    )
}


def error_from_rpc(error: grpc.RpcError) -> SSSNClientError:
    """Builds the client error of a failed call (sync or asyncio) from its rich status."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a status whose code disagrees with the call's: keep the call's
        status = None
    return error_from_status(code, status, details)


def error_from_status(
    code: grpc.StatusCode, status: status_pb2.Status | None, details: str = ""
) -> SSSNClientError:
    """Builds the client error of a `google.rpc.Status` (a failed call's, or one
    event's in an append stream); `details` is the message when it has none."""
    reason = ""
    resource: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    if status is not None:
        for packed in status.details:
            if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                packed.Unpack(info)
                reason = info.reason
                resource = dict(info.metadata)
            elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                packed.Unpack(bad_request)
                violations.extend(
                    (violation.field, violation.description)
                    for violation in bad_request.field_violations
                )
    error_class = _BY_REASON.get(reason) or _BY_STATUS.get(code, SSSNClientError)
    return error_class(
        status.message if status is not None and status.message else details,
        grpc_status_code=code,
        reason=reason or code.name,
        detail=status,
        resource=resource,
        field_violations=tuple(violations),
    )


def status_code_of(value: int) -> grpc.StatusCode:
    """The `grpc.StatusCode` of a numeric `google.rpc.Code` (UNKNOWN if unknown)."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


def invalid(field: str, description: str, **extra: Any) -> InvalidPayloadError:
    """A client-side INVALID_PAYLOAD for input that cannot be sent, naming the field."""
    return InvalidPayloadError(
        f"{field}: {description}", field_violations=((field, description),), **extra
    )
