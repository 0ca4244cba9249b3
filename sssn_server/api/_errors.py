"""Maps domain errors to gRPC statuses with `google.rpc` details, from one table."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..domain.errors import (
    AbortedError,
    AlreadyExistsError,
    EventExistsError,
    FailedPreconditionError,
    InvalidPayloadError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SSSNError,
    SubscriptionExistsError,
    UnauthenticatedError,
    UnavailableError,
)
from ._calls import hidden_ids, readable_channel

ERROR_DOMAIN = "sssn.dev"

_CODES: tuple[tuple[type[SSSNError], grpc.StatusCode], ...] = (
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (InvalidPayloadError, grpc.StatusCode.INVALID_ARGUMENT),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (AbortedError, grpc.StatusCode.ABORTED),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
)


def status_code(error: SSSNError) -> grpc.StatusCode:
    """The gRPC code of a domain error; INTERNAL for anything unmapped."""
    for error_type, code in _CODES:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL


def to_status(error: SSSNError) -> grpc.Status:
    """Builds the status (with ErrorInfo and, for bad input, BadRequest) for `error`."""
    return rpc_status.to_status(status_proto(error))


def status_proto(error: SSSNError) -> status_pb2.Status:
    """The `google.rpc.Status` of `error`: code, message, ErrorInfo and, for bad
    input, BadRequest; what `to_status` sends as a call's status and what
    AppendEventStream carries for one refused event."""
    code = status_code(error)
    message, metadata = _as_seen_by_caller(error)
    details = [
        _pack(
            error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
        )
    ]
    if isinstance(error, InvalidPayloadError):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=violation.field, description=violation.description
                        )
                        for violation in error.violations
                    ]
                )
            )
        )
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)


# Conflicts that name the channel holding the existing resource: to a caller
# that may not read that channel they say only that it is another one.
_CONFLICTS: tuple[tuple[type[SSSNError], str, str], ...] = (
    (EventExistsError, "event_id", "Event id {} already exists in another channel"),
    (
        SubscriptionExistsError,
        "subscription_id",
        "Subscription {} already exists for another channel",
    ),
)


def _as_seen_by_caller(error: SSSNError) -> tuple[str, dict[str, str]]:
    """The message and ErrorInfo metadata of `error` for the current call's
    caller: ids the auth interceptor hid are named as the caller sent them,
    and a channel it may not read is not named at all."""
    message, metadata = error.message, dict(error.metadata)
    aliases = hidden_ids.get()
    if aliases:
        # A not-found error names its id in the metadata too: looking up only
        # those keeps this cheap however many ids a long stream hid.
        for key, value in metadata.items():
            original = aliases.get(value)
            if original is not None:
                message = message.replace(value, original)
                metadata[key] = original
    readable = readable_channel.get()
    channel = metadata.get("channel")
    if readable is None or channel is None or readable(channel):
        return message, metadata
    for conflict, key, redacted in _CONFLICTS:
        if isinstance(error, conflict):
            del metadata["channel"]
            return redacted.format(metadata.get(key, "")), metadata
    return message, metadata


def internal_status() -> grpc.Status:
    """The status of an unexpected failure: a generic message, no internals."""
    return to_status(SSSNError("Internal server error."))


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
