"""`sssn-server copy-store`: one store into an empty other, ids, cursors and payloads kept."""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .domain.models import Event
from .domain.ports import Store
from .transfer import CHUNK, PAGE, Progress, require_empty, restore_artifact, restore_in_order


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
    await require_empty(target, "copy-store")
    copied = Copied()
    channels = [channel async for channel in _pages(source.list_channels)]
    for channel in channels:
        await target.create_channel(channel)
    copied.channels = len(channels)
    names = [channel.name for channel in channels]
    total = 0
    for name in names:
        total += await source.count_events(name, after_cursor=0, kind=None)
    copied.head_cursor = await source.head_cursor()
    events = (with_content(event) async for event in _in_cursor_order(source, names))
    copied.events = await restore_in_order(
        target, events, head=copied.head_cursor, total=total, progress=progress or Progress()
    )
    async for subscription in _pages(source.list_subscriptions, channel=None):
        await target.create_subscription(subscription)
        copied.subscriptions += 1
    async for artifact in _pages(source.list_artifacts):
        saved = await restore_artifact(target, artifact, source.read_artifact(artifact, CHUNK))
        copied.artifacts += 1
        copied.artifact_bytes += saved.size
    async for snapshot in _pages(source.list_snapshots):
        await target.put_snapshot(snapshot, check_events=False)
        copied.snapshots += 1
    return copied


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
