"""`sssn-server import-reference`: a store of the reference `sssn` 0.1.1 into a new one of ours."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from .config import MAX_EVENT_BYTES_CEILING
from .domain.errors import EventTooLargeError, LimitExceededError, SSSNError
from .domain.models import Artifact, Channel, Event, Snapshot, Subscription
from .domain.ports import Store
from .domain.service import Limits
from .domain.validation import (
    optional_segment,
    optional_text,
    optional_token,
    require_form,
    require_json,
    require_non_negative,
    require_positive,
    require_segment,
    require_timestamp,
    require_token,
    segment_list,
)
from .reference_store import (
    PayloadMismatchError,
    ReferenceArtifact,
    ReferenceStore,
    Refusal,
)
from .transfer import (
    CHUNK,
    PAGE,
    Progress,
    TargetNotEmptyError,
    holds_anything,
    require_empty,
    restore_artifact,
    restore_in_order,
)

COMMAND = "import-reference"
# Refusals kept to be listed; every one is counted.
LISTED_REFUSALS = 100

EventEncoder = Callable[[Event], bytes]
JSONMeasure = Callable[[Any], int]
Item = TypeVar("Item")


class ImportRefusedError(ValueError):
    """Something in the reference store does not fit ours; nothing was written."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(
            f"{plan.refused_count:,} things in {plan.source} do not fit this store;"
            " nothing was written"
        )
        self.plan = plan


class SameStoreError(ValueError):
    """The target named is the reference store itself."""


@dataclass
class Plan:
    """What an import moves, or on a dry run would move, and what it refuses."""

    source: str
    head_cursor: int = 0
    events: dict[str, int] = field(default_factory=dict)
    """Events of each channel that moves, by channel name; like every count
    here, refused ones left out."""
    subscriptions: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    snapshots: int = 0
    refused: list[Refusal] = field(default_factory=list)
    """The first `LISTED_REFUSALS` refusals."""
    refused_count: int = 0
    target: str = ""
    target_empty: bool = True

    @property
    def channels(self) -> int:
        return len(self.events)

    @property
    def event_total(self) -> int:
        return sum(self.events.values())

    def refuse(self, refusal: Refusal) -> None:
        self.refused_count += 1
        if len(self.refused) < LISTED_REFUSALS:
            self.refused.append(refusal)


class Rules:
    """Our rules for what an import brings in: those of a write through the
    API, but that events and snapshot values may be as large as any server
    can be set to take (`--max-event-bytes`), since the import adds no
    event a server could not deliver."""

    def __init__(
        self,
        encode_event: EventEncoder,
        measure_json: JSONMeasure,
        limits: Limits | None = None,
    ) -> None:
        """Args:
        encode_event: an event's wire form, stored beside it as an append stores it.
        measure_json: a JSON value's size as the API encodes it, for the limits.
        limits: the bounds; by default a server's, with the largest event size.
        """
        self._encode = encode_event
        self._measure = measure_json
        self.limits = limits or Limits(max_event_bytes=MAX_EVENT_BYTES_CEILING)

    def channel(self, channel: Channel) -> None:
        require_segment("name", channel.name)
        optional_text("schema", channel.schema)
        require_form("form", channel.form)
        self._metadata("metadata", channel.metadata)
        if len(channel.description.encode()) > self.limits.max_metadata_bytes:
            raise self._over_metadata_limit("description")

    def event(self, event: Event) -> Event:
        """Checks an event; returns it with its wire form."""
        require_segment("id", event.id)
        require_segment("channel", event.channel)
        require_token("kind", event.kind)
        optional_token("correlation_id", event.correlation_id)
        optional_text("source", event.source)
        optional_text("schema", event.schema)
        segment_list("parent_ids", event.parent_ids, most=self.limits.max_links)
        require_json("payload", event.payload)
        require_json("metadata", event.metadata)
        require_timestamp("timestamp", event.timestamp_ns)
        wire = self._encode(event)
        if len(wire) > self.limits.max_event_bytes:
            raise EventTooLargeError("event", len(wire), self.limits.max_event_bytes)
        return replace(event, wire=wire)

    def subscription(self, subscription: Subscription) -> None:
        require_segment("id", subscription.id)
        require_segment("channel", subscription.channel)
        require_non_negative("cursor", subscription.cursor)
        optional_token("consumer", subscription.consumer)
        require_positive("batch_size", subscription.batch_size)
        optional_token("filters.kind", subscription.kind)
        self._metadata("metadata", subscription.metadata)

    def artifact(self, artifact: Artifact) -> None:
        require_segment("id", artifact.id)
        optional_segment("channel", artifact.channel)
        optional_text("media_type", artifact.media_type)
        require_non_negative("size", artifact.size)
        self._metadata("metadata", artifact.metadata)
        segment_list("event_ids", artifact.event_ids, most=self.limits.max_links)

    def snapshot(self, snapshot: Snapshot) -> None:
        require_segment("name", snapshot.name)
        optional_segment("channel", snapshot.channel)
        optional_text("schema", snapshot.schema)
        optional_segment("source_event_id", snapshot.source_event_id)
        require_json("value", snapshot.value)
        self._metadata("metadata", snapshot.metadata)
        require_timestamp("timestamp", snapshot.timestamp_ns)
        size = self._measure(snapshot.value)
        if size > self.limits.max_event_bytes:
            raise EventTooLargeError("value", size, self.limits.max_event_bytes)

    def _metadata(self, name: str, value: Any) -> None:
        require_json(name, value)
        if self._measure(value) > self.limits.max_metadata_bytes:
            raise self._over_metadata_limit(name)

    def _over_metadata_limit(self, name: str) -> LimitExceededError:
        limit = self.limits.max_metadata_bytes
        return LimitExceededError(
            name,
            f"must encode to at most {limit} bytes",
            limit="max_metadata_bytes",
            maximum=limit,
        )


async def import_reference(
    folder: str | Path,
    open_target: Callable[[bool], Store],
    *,
    rules: Rules,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Plan:
    """Reads the reference store in `folder`, checks all of it against our
    rules, and unless `dry_run` writes it into the empty store that
    `open_target(read_only)` opens. Returns the plan: what was (or would
    be) moved and refused.

    Everything is checked before anything is written: the target is written
    only when nothing is refused. Ids, cursors, parents, subscription
    cursors, artifacts (their sha256 checked) and snapshots are kept.

    Raises:
        ReferenceStoreError: `folder` holds no reference store.
        TargetNotEmptyError: the target holds something (a dry run reports it).
        ImportRefusedError: something does not fit (a dry run reports it).
        RuntimeError: an artifact's file changed while it was imported.
    """
    shown = progress or Progress()
    with ReferenceStore(folder) as reference:
        probe = open_target(True)
        if Path(probe.location) == reference.root:
            raise SameStoreError(
                f"{probe.location} is the reference store itself; import it into a new store"
            )
        # Read-only, so that a dry run writes nothing, and a real run fails
        # before its long checks when the target is taken.
        try:
            async with probe:
                target_empty = not await holds_anything(probe)
        except FileNotFoundError:  # no store there yet
            target_empty = True
        if not target_empty and not dry_run:
            raise TargetNotEmptyError(
                f"{probe.location} is not empty; {COMMAND} fills a new store only"
            )
        plan = check_reference(reference, rules, shown)
        plan.target, plan.target_empty = probe.location, target_empty
        if dry_run:
            return plan
        if plan.refused_count:
            raise ImportRefusedError(plan)
        async with open_target(False) as target:
            await require_empty(target, COMMAND)
            await _write(reference, target, rules, plan, shown)
    return plan


def check_reference(reference: ReferenceStore, rules: Rules, progress: Progress) -> Plan:
    """Reads every row and artifact file and checks them against our rules."""
    plan = Plan(source=str(reference.root), head_cursor=reference.head_cursor())
    for channel in _checked(plan, "channel", reference.channels(), rules.channel):
        plan.events[channel.name] = 0
    total = reference.count("events")
    progress.start()
    progress.update("checking", 0, total)
    for read, item in enumerate(reference.events(), 1):
        for event in _checked(plan, "event", [item], rules.event):
            if event.channel in plan.events:  # else a refused or missing channel's
                plan.events[event.channel] += 1
        if read % PAGE == 0:
            progress.update("checking", read, total)
    progress.update("checking", total, total)
    plan.subscriptions = sum(
        1 for _ in _checked(plan, "subscription", reference.subscriptions(), rules.subscription)
    )
    files = reference.count("artifacts")
    progress.start()
    progress.update("sha256", 0, files)
    for read, row in enumerate(reference.artifacts(), 1):
        for artifact in _checked(plan, "artifact", [row], _artifact_rule(rules)):
            try:
                reference.check_payload(artifact, CHUNK)
            except PayloadMismatchError as exc:
                plan.refuse(Refusal("artifact", artifact.artifact.id, exc.reason))
                continue
            plan.artifacts += 1
            plan.artifact_bytes += artifact.artifact.size
        progress.update("sha256", read, files)
    plan.snapshots = sum(
        1 for _ in _checked(plan, "snapshot", reference.snapshots(), rules.snapshot)
    )
    for refusal in reference.dangling_links():
        plan.refuse(refusal)
    return plan


def _artifact_rule(rules: Rules) -> Callable[[ReferenceArtifact], None]:
    return lambda item: rules.artifact(item.artifact)


def _checked(
    plan: Plan, what: str, items: Iterable[Item | Refusal], rule: Callable[[Item], object]
) -> Iterator[Item]:
    """The items that map and pass `rule`; the plan refuses the others."""
    for item in items:
        if isinstance(item, Refusal):
            plan.refuse(item)
            continue
        try:
            rule(item)
        except SSSNError as exc:
            plan.refuse(Refusal(what, _key(item), exc.message))
            continue
        yield item


def _key(item: object) -> str:
    if isinstance(item, ReferenceArtifact):
        return item.artifact.id
    name = getattr(item, "id", None) or getattr(item, "name", "")
    return str(name)


async def _write(
    reference: ReferenceStore, target: Store, rules: Rules, plan: Plan, progress: Progress
) -> None:
    for channel in reference.channels():
        await target.create_channel(_unchanged(channel))
    events = _events_with_wire(reference, rules)
    await restore_in_order(
        target, events, head=plan.head_cursor, total=plan.event_total, progress=progress
    )
    for subscription in reference.subscriptions():
        await target.create_subscription(_unchanged(subscription))
    progress.start()
    progress.update("artifacts", 0, plan.artifacts)
    for done, item in enumerate(reference.artifacts(), 1):
        artifact = _unchanged(item)
        await restore_artifact(target, artifact.artifact, _chunks(reference, artifact))
        progress.update("artifacts", done, plan.artifacts)
    for snapshot in reference.snapshots():
        await target.put_snapshot(_unchanged(snapshot), check_events=False)


async def _events_with_wire(reference: ReferenceStore, rules: Rules) -> AsyncIterator[Event]:
    for event in reference.events():
        yield rules.event(_unchanged(event))


async def _chunks(reference: ReferenceStore, item: ReferenceArtifact) -> AsyncIterator[bytes]:
    try:
        for chunk in reference.read_payload(item, CHUNK):
            yield chunk
    except PayloadMismatchError as exc:  # checked before: the file changed since
        raise RuntimeError(f"{exc}; it changed during the import") from exc


def _unchanged(item: Item | Refusal) -> Item:
    # The reads run in one read transaction: rows that passed the check pass again.
    if isinstance(item, Refusal):
        raise RuntimeError(f"{item}: changed during the import")
    return item


def describe(plan: Plan, *, dry_run: bool) -> str:
    """The plan as the command prints it: the dry run's report."""
    lines = [
        f"reference store {plan.source}: head cursor {plan.head_cursor:,}",
        f"  channels: {plan.channels:,}",
    ]
    width = max((len(name) for name in plan.events), default=0)
    lines += [f"    {name:<{width}}  {count:,} events" for name, count in plan.events.items()]
    lines += [
        f"  events: {plan.event_total:,}",
        f"  subscriptions: {plan.subscriptions:,}",
        f"  artifacts: {plan.artifacts:,} ({plan.artifact_bytes:,} bytes, sha256 checked)",
        f"  snapshots: {plan.snapshots:,}",
    ]
    if plan.refused_count:
        lines.append(f"  refused: {plan.refused_count:,}")
        lines += [f"    {refusal}" for refusal in plan.refused]
        if plan.refused_count > len(plan.refused):
            lines.append(f"    ... and {plan.refused_count - len(plan.refused):,} more")
    else:
        lines.append("  refused: none")
    state = "empty" if plan.target_empty else f"not empty: {COMMAND} would refuse it"
    lines.append(f"target {plan.target}: {state}")
    if dry_run:
        would = plan.target_empty and not plan.refused_count
        lines.append(
            "dry run: nothing written; "
            + ("the import would go through" if would else "the import would be refused")
        )
    return "\n".join(lines)


def summary(plan: Plan) -> str:
    """The line printed once an import is done."""
    return (
        f"imported {plan.channels:,} channels, {plan.event_total:,} events (head cursor"
        f" {plan.head_cursor:,}), {plan.subscriptions:,} subscriptions, {plan.artifacts:,}"
        f" artifacts ({plan.artifact_bytes:,} bytes) and {plan.snapshots:,} snapshots"
        f" from {plan.source}"
    )
