"""Request rules shared by every transport: names, tokens, cursors, limits and JSON values."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from .errors import InvalidPayloadError, LimitExceededError, PayloadTooDeepError
from .models import CHANNEL_FORMS, MAX_JSON_DEPTH, Encoded

MAX_NAME_BYTES = 256
"""Longest name, id, token, source, schema or media type, in UTF-8 bytes."""

# Characters a path segment may not hold; `\s` is exactly `str.isspace()`.
# Control characters too: U+0000 cannot be stored in PostgreSQL text, and
# none of them belongs in a name.
_NOT_IN_SEGMENT = re.compile(r"[%/:\\\s\x00-\x1f\x7f]")


def is_segment(value: object) -> bool:
    """Whether `value` is a path segment, the rule for names, ids and tokens alike."""
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and _NOT_IN_SEGMENT.search(value) is None
    )


def is_short(value: str) -> bool:
    """Whether a string fits in `MAX_NAME_BYTES` of UTF-8."""
    # A character takes at most four bytes: most strings need no encoding.
    return len(value) * 4 <= MAX_NAME_BYTES or len(value.encode()) <= MAX_NAME_BYTES


def require_segment(field: str, value: object) -> str:
    """Returns `value` if it is a path segment, else raises InvalidPayloadError.

    A segment is non-empty, has no whitespace, is not `.` or `..`, holds
    none of `% / : \\` (the reference's rule for names and ids) and takes
    at most `MAX_NAME_BYTES`.
    """
    if not is_segment(value):
        raise not_a_segment(field)
    if not is_short(value):  # type: ignore[arg-type]
        raise too_long(field)
    return value  # type: ignore[return-value]


def require_token(field: str, value: object) -> str:
    """Returns `value` if it is a token (kinds, consumers, correlation ids)."""
    if not is_segment(value):
        raise not_a_token(field)
    if not is_short(value):  # type: ignore[arg-type]
        raise too_long(field)
    return value  # type: ignore[return-value]


def optional_text(field: str, value: str | None) -> str | None:
    """Validates a free-form short string (a source, a schema name, a media type)."""
    if value and not is_short(value):
        raise too_long(field)
    return value


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


def too_long(field: str) -> LimitExceededError:
    return LimitExceededError(
        field,
        f"must be at most {MAX_NAME_BYTES} bytes long",
        limit="max_name_bytes",
        maximum=MAX_NAME_BYTES,
    )


def too_deep(field: str) -> PayloadTooDeepError:
    return PayloadTooDeepError(field, MAX_JSON_DEPTH)


def optional_segment(field: str, value: str | None) -> str | None:
    """Validates a segment that may be absent (None or empty)."""
    return require_segment(field, value) if value else None


def optional_token(field: str, value: str | None) -> str | None:
    """Validates a token that may be absent (None or empty)."""
    return require_token(field, value) if value else None


def segment_list(field: str, values: Iterable[str], *, most: int) -> tuple[str, ...]:
    """Validates every item of a list of at most `most` path segments."""
    items = tuple(values)
    if len(items) > most:
        raise LimitExceededError(
            field,
            f"lists {len(items)} ids, over the limit of {most}",
            limit="max_links",
            maximum=most,
        )
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
    """Rejects values JSON cannot carry (NaN and infinities are the only way
    in) and values nested deeper than `MAX_JSON_DEPTH`."""
    if not is_json(value):
        raise not_json(field)
    if is_deep(value):
        raise too_deep(field)
    return value


def is_deep(value: Any) -> bool:
    """Whether a JSON value, plain or `Encoded`, nests deeper than `MAX_JSON_DEPTH`."""
    if isinstance(value, Encoded):
        return value.deep
    return nests_deeper(value, MAX_JSON_DEPTH)


def nests_deeper(value: Any, depth: int) -> bool:
    """Whether a plain JSON value nests objects and arrays more than `depth` levels."""
    if isinstance(value, dict):
        items: Iterable[Any] = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    return depth <= 0 or any(nests_deeper(item, depth - 1) for item in items)


def is_finite_json(value: Any) -> bool:
    """Whether a plain JSON value holds no NaN or infinity."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(is_finite_json(item) for item in value.values())
    if isinstance(value, list):
        return all(is_finite_json(item) for item in value)
    return True
