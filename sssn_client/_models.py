"""Resource models: plain frozen dataclasses whose JSON fields hold plain Python values."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from ._errors import invalid

# Channel forms as the reference spells them; the first is the default.
CHANNEL_FORMS: tuple[str, ...] = (
    "log",
    "queue",
    "topic",
    "blackboard",
    "latest-state",
    "artifact-index",
    "pipeline-edge",
    "database-view",
    "feed",
    "time-series",
    "tree",
    "forum",
    "hub",
)
DEFAULT_MEDIA_TYPE = "application/octet-stream"


class _Model:
    """Dict conversions shared by every model, in the reference's JSON shape."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Returns the model as a JSON-ready dict (tuples become lists)."""
        return {
            item.name: _jsonable(getattr(self, item.name))
            for item in dataclasses.fields(self)  # type: ignore[arg-type]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Builds a model from a dict such as `to_dict()` or the reference's
        `model_dump(by_alias=True)` returns.

        Raises:
            InvalidPayloadError: `data` is not a mapping or has unknown keys.
        """
        label = cls.__name__.lower()
        if not isinstance(data, Mapping):
            raise invalid(label, "must be a mapping or a model object")
        known = {item.name for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values = dict(data)
        if "schema_ref" in values and "schema" in known:  # reference dumps without by_alias
            values.setdefault("schema", values.pop("schema_ref"))
        unknown = sorted(set(values) - known)
        if unknown:
            raise invalid(f"{label}.{unknown[0]}", "is not a field of " + cls.__name__)
        for name in ("parent_ids", "event_ids"):
            if name in values and values[name] is not None:
                if isinstance(values[name], str):  # tuple("ab") would be ("a", "b")
                    raise invalid(f"{label}.{name}", "must be a list of ids")
                values[name] = tuple(values[name])
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            raise invalid(label, str(exc)) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel(_Model):
    """A named semantic channel that events are appended to."""

    name: str
    schema: str | None = None
    form: str = "log"
    """One of `CHANNEL_FORMS`."""
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event(_Model):
    """A typed record in one channel. `id`, `cursor` and `timestamp` are set by the
    server when left out; `timestamp` is in seconds since the epoch."""

    id: str | None = None
    cursor: int | None = None
    channel: str
    timestamp: float | None = None
    source: str | None = None
    kind: str = "event"
    payload: Any = None
    schema: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    parent_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription(_Model):
    """A persisted consumer cursor over one channel. `filters` is `{"kind": ...}` or `{}`."""

    id: str
    channel: str
    cursor: int = 0
    consumer: str | None = None
    batch_size: int = 100
    filters: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact(_Model):
    """Metadata of a payload stored by content (lowercase hex `sha256`)."""

    id: str
    channel: str | None = None
    media_type: str = DEFAULT_MEDIA_TYPE
    size: int
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot(_Model):
    """A named latest-state value; `timestamp` is in seconds since the epoch."""

    name: str
    channel: str | None = None
    timestamp: float | None = None
    value: Any = None
    schema: str | None = None
    source_event_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


ModelT = TypeVar("ModelT", Channel, Event, Subscription, Artifact, Snapshot)


def coerce(model: type[ModelT], value: object) -> ModelT:
    """Accepts a model, a plain dict, or a reference (pydantic) model object."""
    if isinstance(value, model):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # an `sssn` 0.1.1 model: users switching keep their objects
        value = dump(mode="json", by_alias=True)
    if isinstance(value, Mapping):
        return model.from_dict(value)
    raise invalid(model.__name__.lower(), f"must be a {model.__name__} or a dict")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value
