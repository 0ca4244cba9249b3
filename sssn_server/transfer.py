"""What `copy-store` and `import-reference` share: the empty-target rule, progress, writes."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import TextIO

from .domain.models import Artifact, ArtifactSpec, Event
from .domain.ports import Store

# Items read or written per call.
PAGE = 1000
# Bytes per chunk of an artifact's payload.
CHUNK = 1 << 20
_BAR = 30


class TargetNotEmptyError(ValueError):
    """The store to fill already holds something."""


@dataclass
class Progress:
    """A one-line progress bar on a terminal, a line per tenth elsewhere."""

    out: TextIO = field(default_factory=lambda: sys.stderr)
    _shown: int = -1

    def update(self, what: str, done: int, total: int) -> None:
        share = done / total if total else 1.0
        if self.out.isatty():
            filled = int(share * _BAR)
            bar = "#" * filled + "." * (_BAR - filled)
            self.out.write(f"\r{what:<13} [{bar}] {share:4.0%} {done:,}/{total:,}")
            if done >= total:
                self.out.write("\n")
            self.out.flush()
            return
        tenth = int(share * 10)
        if tenth != self._shown or done >= total:
            self._shown = tenth
            print(f"{what}: {done:,}/{total:,} ({share:.0%})", file=self.out, flush=True)

    def start(self) -> None:
        self._shown = -1


async def holds_anything(store: Store) -> bool:
    """Whether a store holds any channel, event, artifact or snapshot, or
    ever assigned a cursor (subscriptions need a channel)."""
    return bool(
        await store.head_cursor()
        or await store.list_channels(after=None, limit=1)
        or await store.list_artifacts(after=None, limit=1)
        or await store.list_snapshots(after=None, limit=1)
    )


async def require_empty(target: Store, command: str) -> None:
    """Raises TargetNotEmptyError, naming `command`, unless `target` is empty."""
    if await holds_anything(target):
        raise TargetNotEmptyError(
            f"{target.location} is not empty; {command} fills a new store only"
        )


async def restore_in_order(
    target: Store,
    events: AsyncIterable[Event],
    *,
    head: int,
    total: int,
    progress: Progress,
) -> int:
    """Writes events that come in cursor order with `Store.restore_events`, a
    page at a time, and raises the target's head to `head`; returns how many."""
    progress.start()
    progress.update("events", 0, total)
    written = 0
    batch: list[Event] = []
    async for event in events:
        batch.append(event)
        if len(batch) == PAGE:
            await target.restore_events(batch, head=0)
            written += len(batch)
            progress.update("events", written, total)
            batch = []
    # The last call (even with no events) moves the head: a store's head may
    # be above its last event.
    await target.restore_events(batch, head=head)
    written += len(batch)
    progress.update("events", written, total)
    return written


async def restore_artifact(
    target: Store, artifact: Artifact, chunks: AsyncIterator[bytes]
) -> Artifact:
    """Stores a payload under the artifact's id and fields, its linked events
    not checked again; RuntimeError if its sha256 is not the artifact's."""
    upload = await target.begin_artifact()
    try:
        async for chunk in chunks:
            await upload.write(chunk)
    except BaseException:
        await upload.discard()
        raise
    spec = ArtifactSpec(
        channel=artifact.channel,
        media_type=artifact.media_type,
        metadata=artifact.metadata,
        event_ids=artifact.event_ids,
    )
    saved = await target.save_artifact(upload, spec, artifact_id=artifact.id, check_events=False)
    if saved.sha256 != artifact.sha256:
        raise RuntimeError(f"artifact {artifact.id}: the copied payload's sha256 differs")
    return saved
