"""Maps domain errors to gRPC statuses with `google.rpc` details, from one table."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..domain.errors import (
    AbortedError,
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidPayloadError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SSSNError,
    UnauthenticatedError,
    UnavailableError,
)

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
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=dict(error.metadata)
            )
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
    return status_pb2.Status(
        code=getattr(code_pb2, code.name), message=error.message, details=details
    )


def internal_status() -> grpc.Status:
    """The status of an unexpected failure: a generic message, no internals."""
    return to_status(SSSNError("Internal server error."))


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
