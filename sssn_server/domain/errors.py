"""Domain errors: one class per row of the error taxonomy, each with a stable reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field and why it is invalid."""

    field: str
    description: str


class SSSNError(Exception):
    """Base of every error the service reports to callers.

    Attributes:
        reason: stable UPPER_SNAKE_CASE name (an `ErrorReason` without prefix).
        metadata: the offending resource names, e.g. {"channel": "orders"}.
    """

    reason = "INTERNAL"

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: Mapping[str, str] = metadata


class NotFoundError(SSSNError):
    """A named resource does not exist."""


class ChannelNotFoundError(NotFoundError):
    reason = "CHANNEL_NOT_FOUND"


class EventNotFoundError(NotFoundError):
    reason = "EVENT_NOT_FOUND"


class SubscriptionNotFoundError(NotFoundError):
    reason = "SUBSCRIPTION_NOT_FOUND"


class ArtifactNotFoundError(NotFoundError):
    reason = "ARTIFACT_NOT_FOUND"


class SnapshotNotFoundError(NotFoundError):
    reason = "SNAPSHOT_NOT_FOUND"


class AlreadyExistsError(SSSNError):
    """A resource with that identity already exists in a conflicting form."""


class ChannelExistsError(AlreadyExistsError):
    reason = "CHANNEL_EXISTS"


class SubscriptionExistsError(AlreadyExistsError):
    reason = "SUBSCRIPTION_EXISTS"


class EventExistsError(AlreadyExistsError):
    reason = "EVENT_EXISTS"


class InvalidPayloadError(SSSNError):
    """A request value is malformed; `violations` names each bad field."""

    reason = "INVALID_PAYLOAD"

    def __init__(self, field: str, description: str, **metadata: str) -> None:
        super().__init__(f"{field}: {description}", **metadata)
        self.violations: tuple[FieldViolation, ...] = (FieldViolation(field, description),)


class FailedPreconditionError(SSSNError):
    """The system is not in a state that allows the request."""


class StoreReadOnlyError(FailedPreconditionError):
    reason = "STORE_READ_ONLY"

    def __init__(self) -> None:
        super().__init__("The store is open read-only; writes are refused.")


class ResourceExhaustedError(SSSNError):
    """A request is too large or carries too many items."""


class ArtifactTooLargeError(ResourceExhaustedError):
    reason = "ARTIFACT_TOO_LARGE"


class TooManyItemsError(ResourceExhaustedError):
    reason = "TOO_MANY_ITEMS"


class AbortedError(SSSNError):
    """The operation was ended by a concurrent one; the caller decides whether to retry."""


class SubscriptionTakenOverError(AbortedError):
    reason = "SUBSCRIPTION_TAKEN_OVER"

    def __init__(self, subscription_id: str) -> None:
        super().__init__(
            f"Another stream took over subscription {subscription_id}.",
            subscription_id=subscription_id,
        )


class UnavailableError(SSSNError):
    """The service cannot serve the request now; retrying later may work."""


class ShuttingDownError(UnavailableError):
    reason = "SHUTTING_DOWN"

    def __init__(self) -> None:
        super().__init__("The server is shutting down; reconnect to resume.")


class StoreClosedError(UnavailableError):
    """The store was used after it was closed."""

    reason = "SHUTTING_DOWN"

    def __init__(self) -> None:
        super().__init__("The store is closed.")


class UnauthenticatedError(SSSNError):
    """The call carried no valid credentials."""

    reason = "UNAUTHENTICATED"


class PermissionDeniedError(SSSNError):
    """The caller is known but its grants do not cover the request."""

    reason = "PERMISSION_DENIED"
