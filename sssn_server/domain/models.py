"""Plain resource models shared by the service and the storage layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
DEFAULT_FORM = "log"
DEFAULT_KIND = "event"
DEFAULT_MEDIA_TYPE = "application/octet-stream"
DEFAULT_BATCH_SIZE = 100

JSONObject = dict[str, Any]


# Deepest nesting of objects and arrays a JSON value may have. An object costs
# three levels of protobuf messages and an array two, and stock parsers stop
# at 100 levels (Python's and Java's); with the response messages around a
# value, 24 leaves room for every response that carries one.
MAX_JSON_DEPTH = 24


@dataclass(slots=True)  # not frozen: built for every event read, so kept cheap
class Encoded:
    """A JSON value kept in the wire form the API received it in.

    Event payloads and metadata are stored and served as these bytes, so the
    hot paths never decode them: the domain and the store treat them as
    opaque, and only the API layer knows the encoding (a serialized
    `google.protobuf.Value` for payloads, `Struct` for metadata).
    """

    data: bytes
    finite: bool = True
    """False when the value holds NaN or an infinity, which JSON cannot carry."""
    deep: bool = False
    """True when the value nests objects and arrays deeper than `MAX_JSON_DEPTH`."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A named stream that events are appended to."""

    name: str
    schema: str | None = None
    form: str = DEFAULT_FORM
    description: str = ""
    metadata: JSONObject = field(default_factory=dict)


# Not frozen, unlike the other models: a frozen dataclass costs three times as
# much to build, and an append builds each event several times. Treat an event
# as immutable all the same.
@dataclass(slots=True)
class Event:
    """A typed record in one channel; `cursor` is set once stored."""

    id: str
    channel: str
    timestamp_ns: int
    kind: str = DEFAULT_KIND
    payload: Any = None
    """A plain JSON value, or `Encoded`."""
    source: str | None = None
    schema: str | None = None
    metadata: JSONObject | Encoded = field(default_factory=dict)
    correlation_id: str | None = None
    parent_ids: tuple[str, ...] = ()
    cursor: int = 0
    wire: bytes | None = None
    """The event as the API serves it, without its cursor, when the API
    supplied an encoder: stored and served as is (opaque to domain and store)."""
    origin: Any = field(default=None, compare=False, repr=False)
    """On an event as received: what the API decoded it from, which the API's
    encoder may complete instead of building its wire form anew (opaque to
    domain and store, and never kept past the call)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """A persisted consumer cursor over one channel."""

    id: str
    channel: str
    cursor: int = 0
    consumer: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    kind: str | None = None
    metadata: JSONObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArtifactSpec:
    """What a writer says about an artifact before its bytes are stored."""

    channel: str | None = None
    media_type: str = DEFAULT_MEDIA_TYPE
    metadata: JSONObject = field(default_factory=dict)
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Artifact:
    """Metadata of a content-addressed payload."""

    id: str
    size: int
    sha256: str
    channel: str | None = None
    media_type: str = DEFAULT_MEDIA_TYPE
    metadata: JSONObject = field(default_factory=dict)
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A named latest-state value."""

    name: str
    timestamp_ns: int
    value: Any = None
    channel: str | None = None
    schema: str | None = None
    source_event_id: str | None = None
    metadata: JSONObject = field(default_factory=dict)
