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


def ack_below(subscription_id: str, acknowledged: int) -> InvalidPayloadError:
    """An acknowledgement below the subscription's acknowledged cursor."""
    return InvalidPayloadError(
        "cursor",
        f"is below the acknowledged cursor {acknowledged}; acknowledgements are cumulative",
        subscription_id=subscription_id,
    )


def ack_beyond(subscription_id: str, delivered: int) -> InvalidPayloadError:
    """An acknowledgement of events nobody was given."""
    return InvalidPayloadError(
        "cursor",
        f"is beyond the last delivered cursor {delivered}",
        subscription_id=subscription_id,
    )


class EventTooLargeError(InvalidPayloadError):
    """An event (or snapshot value) encodes to more bytes than the server stores."""

    reason = "EVENT_TOO_LARGE"

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(
            field,
            f"encodes to {size} bytes, over the limit of {limit}",
            limit="max_event_bytes",
            max_bytes=str(limit),
        )


class PayloadTooDeepError(InvalidPayloadError):
    """A JSON value nests objects and arrays deeper than stock parsers read back."""

    reason = "PAYLOAD_TOO_DEEP"

    def __init__(self, field: str, limit: int) -> None:
        super().__init__(
            field, f"nests objects and arrays deeper than {limit} levels", max_depth=str(limit)
        )


class LimitExceededError(InvalidPayloadError):
    """A value is over one of the server's documented limits (`limit` names it)."""

    reason = "LIMIT_EXCEEDED"

    def __init__(self, field: str, description: str, *, limit: str, maximum: int) -> None:
        super().__init__(field, description, limit=limit, max=str(maximum))


class FailedPreconditionError(SSSNError):
    """The system is not in a state that allows the request."""


class EventUndeliverableError(FailedPreconditionError):
    """The next event of a read is larger than a client receives in one message."""

    reason = "EVENT_UNDELIVERABLE"

    def __init__(self, event_id: str, cursor: int, size: int, limit: int) -> None:
        super().__init__(
            f"Event {event_id!r} (cursor {cursor}) encodes to {size} bytes, more than the"
            f" {limit} a client receives by default; it was stored before the size limits."
            " Nothing after it is sent until it is skipped: seek the subscription to"
            f" cursor {cursor} to skip it.",
            event_id=event_id,
            cursor=str(cursor),
            size=str(size),
        )


class StoreReadOnlyError(FailedPreconditionError):
    reason = "STORE_READ_ONLY"

    def __init__(self) -> None:
        super().__init__("The store is open read-only; writes are refused.")


class SubscriptionLeaseLostError(FailedPreconditionError):
    """A write on behalf of a stream that no longer owns its subscription:
    another stream took it over since (an acknowledgement carrying an older
    lease epoch, or a cursor move of the old stream). Nothing changed."""

    reason = "SUBSCRIPTION_LEASE_LOST"

    def __init__(self, subscription_id: str, epoch: int, current: int) -> None:
        super().__init__(
            f"Subscription {subscription_id} is now owned by the stream of lease {current};"
            f" lease {epoch} was taken over and acknowledges nothing.",
            subscription_id=subscription_id,
            lease_epoch=str(epoch),
            current_lease_epoch=str(current),
        )


class ResourceExhaustedError(SSSNError):
    """A request is too large or carries too many items."""


class ArtifactTooLargeError(ResourceExhaustedError):
    reason = "ARTIFACT_TOO_LARGE"


class TooManyItemsError(ResourceExhaustedError):
    reason = "TOO_MANY_ITEMS"


class StorageFullError(ResourceExhaustedError):
    """The disk under the store is full; retrying once space is freed succeeds."""

    reason = "STORAGE_FULL"

    def __init__(self) -> None:
        super().__init__("The server's storage is full; nothing was stored. Retry later.")


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


class StoreUnavailableError(UnavailableError):
    """The database behind the store cannot be reached or refused the connection."""

    reason = "STORE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "The server's database is unavailable; nothing was changed. Retry with backoff."
        )


class UnauthenticatedError(SSSNError):
    """The call carried no valid credentials."""

    reason = "UNAUTHENTICATED"


class PermissionDeniedError(SSSNError):
    """The caller is known but its grants do not cover the request."""

    reason = "PERMISSION_DENIED"
