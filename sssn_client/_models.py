"""Resource models: plain frozen dataclasses whose JSON fields hold plain Python values."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeVar, get_args

from ._errors import invalid

ChannelForm = Literal[
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
]
"""The type of `Channel.form`: the forms as the reference spells them."""

# The same forms as a tuple; the first is the default.
CHANNEL_FORMS: tuple[str, ...] = get_args(ChannelForm)
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

    # The pydantic methods that code written for the reference's models calls.

    def model_dump(
        self, *, mode: str = "python", by_alias: bool = False, exclude_none: bool = False
    ) -> dict[str, Any]:
        """The model as a new dict, keyed as the reference's `model_dump` keys it:
        `schema` is `schema_ref` unless `by_alias`; `mode="json"` turns tuples
        into lists; `exclude_none` leaves out fields that are None."""
        if mode not in ("python", "json"):
            raise invalid("mode", "must be 'python' or 'json'")
        if mode == "json":
            data = self.to_dict()
        else:
            data = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}  # type: ignore[arg-type]
        dumped: dict[str, Any] = {}
        for key, value in data.items():
            if exclude_none and value is None:
                continue
            dumped["schema_ref" if key == "schema" and not by_alias else key] = value
        return copy.deepcopy(dumped)

    def model_dump_json(self, *, by_alias: bool = False, exclude_none: bool = False) -> str:
        """The model as compact JSON text, as the reference's `model_dump_json` writes it."""
        data = self.model_dump(mode="json", by_alias=by_alias, exclude_none=exclude_none)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """Builds a model from a dict (or returns a model of this class as it is)."""
        return data if isinstance(data, cls) else cls.from_dict(data)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with the fields of `update` replaced (frozen models change this way)."""
        changed = dataclasses.replace(self, **dict(update or {}))  # type: ignore[type-var]
        return copy.deepcopy(changed) if deep else changed


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel(_Model):
    """A named semantic channel that events are appended to."""

    name: str
    schema: str | None = None
    form: str = "log"
    """One of `CHANNEL_FORMS`."""
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def schema_ref(self) -> str | None:
        """The reference's attribute name for `schema`."""
        return self.schema


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

    @property
    def schema_ref(self) -> str | None:
        """The reference's attribute name for `schema`."""
        return self.schema


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

    @property
    def schema_ref(self) -> str | None:
        """The reference's attribute name for `schema`."""
        return self.schema


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
