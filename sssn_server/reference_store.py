"""Reads a store that the reference `sssn` 0.1.1 wrote (`sssn.sqlite`, `artifacts/`), read-only."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

from .domain.models import DEFAULT_MEDIA_TYPE, Artifact, Channel, Event, Snapshot, Subscription

DATABASE = "sssn.sqlite"
ARTIFACTS = "artifacts"

# The reference's tables and the columns read from each: its whole schema.
_COLUMNS = {
    "channels": ("name", "schema_ref", "form", "description", "metadata"),
    "events": (
        "rowid",
        "id",
        "channel",
        "timestamp",
        "source",
        "kind",
        "payload",
        "schema_ref",
        "metadata",
        "correlation_id",
        "parent_ids",
    ),
    "subscriptions": ("id", "channel", "cursor", "consumer", "batch_size", "filters", "metadata"),
    "artifacts": (
        "id",
        "channel",
        "path",
        "media_type",
        "size",
        "sha256",
        "metadata",
        "event_ids",
    ),
    "snapshots": (
        "name",
        "channel",
        "timestamp",
        "value",
        "schema_ref",
        "source_event_id",
        "metadata",
    ),
}
_ROWS_PER_FETCH = 1000
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Names in messages are cut to this many characters: a refused one may be long.
_SHOWN_CHARS = 60

# Links the reference checked when it wrote them, checked again here: rows
# edited behind its back could name what is not there. Each row is (kind of
# resource, its id, the text of the refusal).
_DANGLING = (
    (
        "event",
        "SELECT id, 'channel ' || quote(channel) || ' does not exist' FROM events"
        " WHERE channel NOT IN (SELECT name FROM channels)",
    ),
    (
        "event",
        "SELECT e.id, 'parent event ' || quote(p.value) || ' does not exist'"
        " FROM events e, json_each(CASE WHEN json_valid(e.parent_ids) AND"
        " json_type(e.parent_ids) = 'array' THEN e.parent_ids ELSE '[]' END) p"
        " WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = p.value)",
    ),
    (
        "subscription",
        "SELECT id, 'channel ' || quote(channel) || ' does not exist' FROM subscriptions"
        " WHERE channel NOT IN (SELECT name FROM channels)",
    ),
    (
        "artifact",
        "SELECT id, 'channel ' || quote(channel) || ' does not exist' FROM artifacts"
        " WHERE channel IS NOT NULL AND channel NOT IN (SELECT name FROM channels)",
    ),
    (
        "artifact",
        "SELECT a.id, 'linked event ' || quote(l.value) || ' does not exist'"
        " FROM artifacts a, json_each(CASE WHEN json_valid(a.event_ids) AND"
        " json_type(a.event_ids) = 'array' THEN a.event_ids ELSE '[]' END) l"
        " WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = l.value)",
    ),
    (
        "snapshot",
        "SELECT name, 'channel ' || quote(channel) || ' does not exist' FROM snapshots"
        " WHERE channel IS NOT NULL AND channel NOT IN (SELECT name FROM channels)",
    ),
    (
        "snapshot",
        "SELECT name, 'source event ' || quote(source_event_id) || ' does not exist'"
        " FROM snapshots WHERE source_event_id IS NOT NULL"
        " AND source_event_id NOT IN (SELECT id FROM events)",
    ),
)


class ReferenceStoreError(ValueError):
    """The folder is not a reference store that can be read."""


class PayloadMismatchError(ValueError):
    """An artifact's file does not hold the bytes its row describes."""

    def __init__(self, artifact_id: str, reason: str) -> None:
        super().__init__(f"artifact {shown(artifact_id)}: {reason}")
        self.artifact_id = artifact_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Refusal:
    """Something in the reference store that our store cannot take as it is."""

    what: str
    """The kind of resource: channel, event, subscription, artifact or snapshot."""
    key: str
    """Its name or id."""
    reason: str

    def __str__(self) -> str:
        return f"{self.what} {shown(self.key)}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ReferenceArtifact:
    """An artifact row, as our model, with the file that holds its payload."""

    artifact: Artifact
    """`size` and `sha256` as the reference recorded them."""
    path: Path


def shown(key: object) -> str:
    """A name or id for a message: quoted, escaped, and cut when long."""
    text = repr(key)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def nanoseconds(seconds: object) -> int:
    """The reference's float seconds since the epoch as whole nanoseconds,
    rounded from the float's exact value (ValueError if it is not a number)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError("is not a number")
    try:
        return round(Fraction(seconds) * 1_000_000_000)
    except (OverflowError, ValueError):  # infinity, NaN
        raise ValueError("is not a finite number") from None


class ReferenceStore:
    """A reference store opened read-only with the stdlib's sqlite3.

    Every read runs in one read transaction, so they all see the database as
    it was when the store was opened, and nothing is written to its folder.
    """

    def __init__(self, folder: str | Path) -> None:
        self.root = Path(folder).expanduser().resolve()
        self.artifacts_dir = self.root / ARTIFACTS
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> ReferenceStore:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Opens the database read-only; ReferenceStoreError if it is missing
        or lacks one of the reference's tables or columns."""
        path = self.root / DATABASE
        if not path.is_file():
            raise ReferenceStoreError(f"{self.root} is not a reference store: it has no {DATABASE}")
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise ReferenceStoreError(f"cannot open {path} read-only: {exc}") from exc
        try:
            db.execute("BEGIN")
            for table, columns in _COLUMNS.items():
                found = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                missing = [column for column in columns if column not in found | {"rowid"}]
                if not found or missing:
                    what = f"table {table}" if not found else f"column {table}.{missing[0]}"
                    raise ReferenceStoreError(
                        f"{path} is not a store of the reference sssn 0.1.1: it has no {what}"
                    )
        except sqlite3.Error as exc:
            db.close()
            raise ReferenceStoreError(f"cannot read {path}: {exc}") from exc
        except BaseException:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _rows(self, table: str, order: str) -> Iterator[tuple[Any, ...]]:
        assert self._db is not None, "the reference store is not open"
        columns = ", ".join(_COLUMNS[table])
        rows = self._db.execute(f"SELECT {columns} FROM {table} ORDER BY {order}")
        while batch := rows.fetchmany(_ROWS_PER_FETCH):
            yield from batch

    def _value(self, sql: str) -> Any:
        assert self._db is not None, "the reference store is not open"
        return self._db.execute(sql).fetchone()[0]

    def head_cursor(self) -> int:
        """The greatest cursor (rowid) of its events: the reference never deletes one."""
        return int(self._value("SELECT coalesce(max(rowid), 0) FROM events"))

    def count(self, table: str) -> int:
        if table not in _COLUMNS:
            raise ValueError(f"no table {table}")
        return int(self._value(f"SELECT count(*) FROM {table}"))

    def channels(self) -> Iterator[Channel | Refusal]:
        """Its channels by name, as our model, or why a row does not map."""
        for name, schema, form, description, metadata in self._rows("channels", "name"):
            try:
                yield Channel(
                    name=_text(name, "name"),
                    schema=_optional_text(schema, "schema") or None,
                    form=_text(form, "form"),
                    description=_optional_text(description, "description") or "",
                    metadata=_object(metadata, "metadata"),
                )
            except ValueError as exc:
                yield Refusal("channel", str(name), str(exc))

    def events(self) -> Iterator[Event | Refusal]:
        """Its events in cursor order, as our model, or why a row does not map.

        The reference's cursor is the row's rowid: one counter for the whole
        store, as ours is, so each event keeps its cursor.
        """
        for row in self._rows("events", "rowid"):
            cursor, event_id = row[0], row[1]
            try:
                yield _event(row)
            except ValueError as exc:
                yield Refusal("event", str(event_id), f"(cursor {cursor}) {exc}")

    def subscriptions(self) -> Iterator[Subscription | Refusal]:
        """Its subscriptions by id, as our model, or why a row does not map.

        The reference's `filters` holds at most a `kind`, which becomes ours.
        """
        for row in self._rows("subscriptions", "id"):
            subscription_id, channel, cursor, consumer, batch_size, filters, metadata = row
            try:
                yield Subscription(
                    id=_text(subscription_id, "id"),
                    channel=_text(channel, "channel"),
                    cursor=_integer(cursor, "cursor"),
                    consumer=_optional_text(consumer, "consumer") or None,
                    batch_size=_integer(batch_size, "batch_size"),
                    kind=_kind_filter(filters),
                    metadata=_object(metadata, "metadata"),
                )
            except ValueError as exc:
                yield Refusal("subscription", str(subscription_id), str(exc))

    def artifacts(self) -> Iterator[ReferenceArtifact | Refusal]:
        """Its artifacts by id, as our model with their files, or why a row
        does not map. The row's `path` is not kept: ours are found by digest."""
        for row in self._rows("artifacts", "id"):
            artifact_id, channel, path, media_type, size, sha256, metadata, event_ids = row
            try:
                digest = _optional_text(sha256, "sha256")
                if digest is None:
                    raise ValueError("sha256: none recorded, so the payload cannot be checked")
                if _SHA256.fullmatch(digest.lower()) is None:
                    raise ValueError(f"sha256: {shown(digest)} is not a sha256 digest")
                yield ReferenceArtifact(
                    Artifact(
                        id=_text(artifact_id, "id"),
                        size=_integer(size, "size"),
                        sha256=digest.lower(),
                        channel=_optional_text(channel, "channel") or None,
                        media_type=_optional_text(media_type, "media_type") or DEFAULT_MEDIA_TYPE,
                        metadata=_object(metadata, "metadata"),
                        event_ids=_ids(event_ids, "event_ids"),
                    ),
                    self._payload_path(_text(path, "path")),
                )
            except ValueError as exc:
                yield Refusal("artifact", str(artifact_id), str(exc))

    def snapshots(self) -> Iterator[Snapshot | Refusal]:
        """Its snapshots by name, as our model, or why a row does not map."""
        for row in self._rows("snapshots", "name"):
            name, channel, timestamp, value, schema, source_event_id, metadata = row
            try:
                yield Snapshot(
                    name=_text(name, "name"),
                    timestamp_ns=_nanoseconds(timestamp),
                    value=_json(value, "value"),
                    channel=_optional_text(channel, "channel") or None,
                    schema=_optional_text(schema, "schema") or None,
                    source_event_id=_optional_text(source_event_id, "source_event_id") or None,
                    metadata=_object(metadata, "metadata"),
                )
            except ValueError as exc:
                yield Refusal("snapshot", str(name), str(exc))

    def dangling_links(self) -> Iterator[Refusal]:
        """Rows that name a channel or an event the store does not hold."""
        assert self._db is not None, "the reference store is not open"
        for what, sql in _DANGLING:
            for key, reason in self._db.execute(sql):
                yield Refusal(what, str(key), str(reason))

    def _payload_path(self, path: str) -> Path:
        # As the reference resolves it: relative to the store, inside artifacts/.
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.artifacts_dir):
            raise ValueError(f"path: {shown(path)} is outside {ARTIFACTS}/")
        return target

    def check_payload(self, item: ReferenceArtifact, chunk_size: int) -> None:
        """Reads an artifact's file through; PayloadMismatchError unless it
        holds the size and sha256 its row records."""
        for _chunk in self.read_payload(item, chunk_size):
            pass

    def read_payload(self, item: ReferenceArtifact, chunk_size: int) -> Iterator[bytes]:
        """Yields an artifact's file in chunks, then raises PayloadMismatchError
        if the bytes are not the size and sha256 its row records."""
        artifact = item.artifact
        name = f"{ARTIFACTS}/{item.path.name}"
        digest = hashlib.sha256()
        size = 0
        try:
            with item.path.open("rb") as payload:
                while chunk := payload.read(chunk_size):
                    digest.update(chunk)
                    size += len(chunk)
                    yield chunk
        except FileNotFoundError:
            raise PayloadMismatchError(artifact.id, f"its file {name} is missing") from None
        except OSError as exc:
            raise PayloadMismatchError(
                artifact.id, f"cannot read {name}: {exc.strerror or exc}"
            ) from exc
        if digest.hexdigest() != artifact.sha256:
            raise PayloadMismatchError(
                artifact.id,
                f"the sha256 of {name} is {digest.hexdigest()}, not the recorded {artifact.sha256}",
            )
        if size != artifact.size:
            raise PayloadMismatchError(
                artifact.id, f"{name} holds {size} bytes, not the recorded {artifact.size}"
            )


# Rows to models. Each raises ValueError("field: what is wrong").


def _event(row: tuple[Any, ...]) -> Event:
    cursor, event_id, channel, timestamp, source, kind, payload = row[:7]
    schema, metadata, correlation_id, parent_ids = row[7:]
    number = _integer(cursor, "cursor")
    if number < 1:
        raise ValueError(f"cursor: {number} is not a cursor (they start at 1)")
    return Event(
        id=_text(event_id, "id"),
        channel=_text(channel, "channel"),
        timestamp_ns=_nanoseconds(timestamp),
        kind=_text(kind, "kind"),
        payload=_json(payload, "payload"),
        source=_optional_text(source, "source") or None,
        schema=_optional_text(schema, "schema") or None,
        metadata=_object(metadata, "metadata"),
        correlation_id=_optional_text(correlation_id, "correlation_id") or None,
        parent_ids=_ids(parent_ids, "parent_ids"),
        cursor=number,
    )


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field}: {shown(value)} is not text")
    return value


def _optional_text(value: Any, field: str) -> str | None:
    return None if value is None else _text(value, field)


def _integer(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field}: {shown(value)} is not an integer")
    return value


def _nanoseconds(value: Any) -> int:
    try:
        return nanoseconds(value)
    except ValueError as exc:
        raise ValueError(f"timestamp: {shown(value)} {exc}") from None


def _json(text: Any, field: str) -> Any:
    """A JSON column: SQL NULL is JSON null. NaN and infinities, which the
    reference writes as Python's json does, are read; our rules refuse them."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"{field}: not JSON text")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{field}: not JSON ({exc})") from None


def _object(text: Any, field: str) -> dict[str, Any]:
    value = _json(text, field)
    if not isinstance(value, dict):
        raise ValueError(f"{field}: not a JSON object")
    return value


def _ids(text: Any, field: str) -> tuple[str, ...]:
    value = _json(text, field)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{field}: not a JSON list of ids")
    return tuple(value)


def _kind_filter(text: Any) -> str | None:
    filters = _object(text, "filters")
    others = sorted(set(filters) - {"kind"})
    if others:
        raise ValueError(f"filters: only 'kind' has a counterpart here, not {', '.join(others)}")
    kind = filters.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise ValueError("filters: 'kind' is not text")
    return kind or None
