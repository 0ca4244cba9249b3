"""`sssn-server copy-store`: one store into an empty other, ids, cursors and payloads kept."""

from __future__ import annotations

import heapq
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .domain.models import ArtifactSpec, Event
from .domain.ports import Store

# Items read or written per call.
PAGE = 1000
# Bytes per chunk of an artifact's payload.
_CHUNK = 1 << 20
_BAR = 30


class TargetNotEmptyError(ValueError):
    """The store to copy into already holds something."""


@dataclass
class Copied:
    """How much a copy moved."""

    channels: int = 0
    events: int = 0
    subscriptions: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    snapshots: int = 0
    head_cursor: int = 0


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


async def copy_store(
    source: Store,
    target: Store,
    *,
    with_content: Callable[[Event], Event],
    progress: Progress | None = None,
) -> Copied:
    """Copies every channel, event, subscription, artifact and snapshot of
    `source` into `target`, which must be empty (TargetNotEmptyError).

    Events keep their ids and cursors and are written in cursor order, so the
    copy's head and every subscription's cursor mean what they meant;
    `with_content` gives an event its payload and metadata back from its
    wire form, for a target that keeps them readable.
    """
    await _require_empty(target)
    shown = progress or Progress()
    copied = Copied()
    channels = [channel async for channel in _pages(source.list_channels)]
    for channel in channels:
        await target.create_channel(channel)
    copied.channels = len(channels)
    names = [channel.name for channel in channels]
    total = 0
    for name in names:
        total += await source.count_events(name, after_cursor=0, kind=None)
    shown.start()
    shown.update("events", 0, total)
    batch: list[Event] = []
    async for event in _in_cursor_order(source, names):
        batch.append(with_content(event))
        if len(batch) == PAGE:
            await target.restore_events(batch, head=0)
            copied.events += len(batch)
            shown.update("events", copied.events, total)
            batch = []
    copied.head_cursor = await source.head_cursor()
    await target.restore_events(batch, head=copied.head_cursor)
    copied.events += len(batch)
    shown.update("events", copied.events, total)
    async for subscription in _pages(source.list_subscriptions, channel=None):
        await target.create_subscription(subscription)
        copied.subscriptions += 1
    async for artifact in _pages(source.list_artifacts):
        upload = await target.begin_artifact()
        try:
            async for chunk in source.read_artifact(artifact, _CHUNK):
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
        saved = await target.save_artifact(
            upload, spec, artifact_id=artifact.id, check_events=False
        )
        if saved.sha256 != artifact.sha256:
            raise RuntimeError(f"artifact {artifact.id}: the copied payload's sha256 differs")
        copied.artifacts += 1
        copied.artifact_bytes += saved.size
    async for snapshot in _pages(source.list_snapshots):
        await target.put_snapshot(snapshot, check_events=False)
        copied.snapshots += 1
    return copied


async def _require_empty(target: Store) -> None:
    holds = (
        await target.head_cursor()
        or await target.list_channels(after=None, limit=1)
        or await target.list_artifacts(after=None, limit=1)
        or await target.list_snapshots(after=None, limit=1)
    )
    if holds:
        raise TargetNotEmptyError(
            f"{target.location} is not empty; copy-store fills a new store only"
        )


async def _pages(list_page: Callable[..., Any], **filters: Any) -> AsyncIterator[Any]:
    """Every item of a `list_*` call, page by page, by id or name."""
    after: str | None = None
    while True:
        page = await list_page(after=after, limit=PAGE, **filters)
        for item in page:
            yield item
        if len(page) < PAGE:
            return
        last = page[-1]
        after = getattr(last, "id", None) or last.name


async def _in_cursor_order(source: Store, channels: list[str]) -> AsyncIterator[Event]:
    """Every event of the channels, merged into one stream in cursor order."""
    pages: dict[int, list[Event]] = {}
    heap: list[tuple[int, int]] = []  # (cursor, channel index) of each page's next event
    # A page per channel is held at once: smaller pages when there are many.
    size = max(10, min(PAGE, 100_000 // max(1, len(channels))))

    async def refill(index: int, after: int) -> None:
        page = await source.query_events(channels[index], after_cursor=after, limit=size, kind=None)
        page.reverse()  # popped from the end
        pages[index] = page
        if page:
            heapq.heappush(heap, (page[-1].cursor, index))

    for index in range(len(channels)):
        await refill(index, 0)
    while heap:
        _cursor, index = heapq.heappop(heap)
        page = pages[index]
        event = page.pop()
        yield event
        if page:
            heapq.heappush(heap, (page[-1].cursor, index))
        else:
            await refill(index, event.cursor)
