"""Request rules shared by every transport: names, tokens, cursors, limits and JSON values."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from .errors import InvalidPayloadError
from .models import CHANNEL_FORMS, Encoded

# Characters a path segment may not hold; `\s` is exactly `str.isspace()`.
_NOT_IN_SEGMENT = re.compile(r"[%/:\\\s]")


def is_segment(value: object) -> bool:
    """Whether `value` is a path segment, the rule for names, ids and tokens alike."""
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and _NOT_IN_SEGMENT.search(value) is None
    )


def require_segment(field: str, value: object) -> str:
    """Returns `value` if it is a path segment, else raises InvalidPayloadError.

    A segment is non-empty, has no whitespace, is not `.` or `..` and holds
    none of `% / : \\` (the reference's rule for names and ids).
    """
    if not is_segment(value):
        raise not_a_segment(field)
    return value  # type: ignore[return-value]


def require_token(field: str, value: object) -> str:
    """Returns `value` if it is a token (kinds, consumers, correlation ids)."""
    if not is_segment(value):
        raise not_a_token(field)
    return value  # type: ignore[return-value]


# The errors of the rules above and below, for callers that test a value with
# the predicate and name the field only when it fails (see `_EventRules`).


def not_a_segment(field: str) -> InvalidPayloadError:
    return InvalidPayloadError(field, "must be a non-empty path segment")


def not_a_token(field: str) -> InvalidPayloadError:
    return InvalidPayloadError(field, "must be a non-empty token")


def not_a_timestamp(field: str) -> InvalidPayloadError:
    return InvalidPayloadError(field, "must be between 1677-09-21 and 2262-04-11 (UTC)")


def not_json(field: str) -> InvalidPayloadError:
    return InvalidPayloadError(field, "must be valid JSON (NaN and Infinity are not)")


def optional_segment(field: str, value: str | None) -> str | None:
    """Validates a segment that may be absent (None or empty)."""
    return require_segment(field, value) if value else None


def optional_token(field: str, value: str | None) -> str | None:
    """Validates a token that may be absent (None or empty)."""
    return require_token(field, value) if value else None


def segment_list(field: str, values: Iterable[str]) -> tuple[str, ...]:
    """Validates every item of a list of path segments."""
    items = tuple(values)
    for index, value in enumerate(items):
        require_segment(f"{field}[{index}]", value)
    return items


def require_non_negative(field: str, value: int) -> int:
    """Cursors start at 0 and never go below."""
    if value < 0:
        raise InvalidPayloadError(field, "must be greater than or equal to 0")
    return value


def require_positive(field: str, value: int) -> int:
    """Limits and batch sizes must be at least 1."""
    if value < 1:
        raise InvalidPayloadError(field, "must be greater than 0")
    return value


# Instants are stored as signed 64-bit nanoseconds since the Unix epoch:
# 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z.
_EARLIEST_NS = -(2**63)
_LATEST_NS = 2**63 - 1


def is_timestamp(nanoseconds: int) -> bool:
    """Whether 64-bit nanoseconds since the epoch can hold an instant."""
    return _EARLIEST_NS <= nanoseconds <= _LATEST_NS


def require_timestamp(field: str, nanoseconds: int) -> int:
    """Accepts an instant that 64-bit nanoseconds since the epoch can hold."""
    if not is_timestamp(nanoseconds):
        raise not_a_timestamp(field)
    return nanoseconds


def require_form(field: str, value: str) -> str:
    """Accepts one of the thirteen channel forms."""
    if value not in CHANNEL_FORMS:
        raise InvalidPayloadError(field, f"must be one of {', '.join(CHANNEL_FORMS)}")
    return value


def is_json(value: Any) -> bool:
    """Whether JSON can carry `value`, plain or `Encoded` (NaN and infinities cannot)."""
    return value.finite if isinstance(value, Encoded) else is_finite_json(value)


def require_json(field: str, value: Any) -> Any:
    """Rejects values JSON cannot carry (NaN and infinities are the only way in)."""
    if not is_json(value):
        raise not_json(field)
    return value


def is_finite_json(value: Any) -> bool:
    """Whether a plain JSON value holds no NaN or infinity."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(is_finite_json(item) for item in value.values())
    if isinstance(value, list):
        return all(is_finite_json(item) for item in value)
    return True
