"""The channel service's limits, below the API: no transport, plain JSON values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sssn_server.domain.errors import (
    EventTooLargeError,
    LimitExceededError,
    PayloadTooDeepError,
)
from sssn_server.domain.models import MAX_JSON_DEPTH, Channel, Event, Snapshot
from sssn_server.domain.service import ChannelService, Limits
from sssn_server.domain.validation import MAX_NAME_BYTES, is_short, nests_deeper
from sssn_server.store import SQLiteStore


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ChannelService]:
    async with SQLiteStore(tmp_path / "store") as store:
        service = ChannelService(store, Limits(max_event_bytes=1_000, max_metadata_bytes=200))
        await service.create_channel(Channel(name="events"))
        yield service


def nested(depth: int) -> Any:
    data: Any = "leaf"
    for index in range(depth):
        data = {"k": data} if index % 2 else [data]
    return data


def test_depth_counts_objects_and_arrays_alike() -> None:
    assert not nests_deeper(1, 0)
    assert nests_deeper([], 0)
    assert not nests_deeper(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)
    assert nests_deeper(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)
    # The deepest branch counts, wherever it is.
    assert nests_deeper({"flat": 1, "deep": nested(3)}, 3)


def test_lengths_are_counted_in_utf8_bytes() -> None:
    assert is_short("a" * MAX_NAME_BYTES)
    assert not is_short("a" * (MAX_NAME_BYTES + 1))
    assert not is_short("€" * (MAX_NAME_BYTES // 3 + 1))
    assert is_short("€" * (MAX_NAME_BYTES // 3))


async def test_an_event_is_measured_without_a_transport(service: ChannelService) -> None:
    with pytest.raises(EventTooLargeError) as caught:
        await service.append_events(
            [Event(id="", channel="events", timestamp_ns=0, payload="x" * 1_000)]
        )
    assert caught.value.violations[0].field == "events"
    (stored,) = await service.append_events(
        [Event(id="", channel="events", timestamp_ns=0, payload="x" * 900)]
    )
    assert stored.cursor == 1


async def test_each_event_of_a_stream_fails_alone(service: ChannelService) -> None:
    results = await service.append_each(
        [
            Event(id="ok", channel="events", timestamp_ns=0, payload=1),
            Event(id="deep", channel="events", timestamp_ns=0, payload=nested(MAX_JSON_DEPTH + 1)),
            Event(id="y" * (MAX_NAME_BYTES + 1), channel="events", timestamp_ns=0),
        ]
    )
    assert isinstance(results[0], Event)
    assert isinstance(results[1], PayloadTooDeepError)
    assert results[1].violations[0].field == "events[1].payload"
    assert isinstance(results[2], LimitExceededError)
    assert results[2].violations[0].field == "events[2].id"


async def test_metadata_and_snapshot_values_are_bounded(service: ChannelService) -> None:
    with pytest.raises(LimitExceededError):
        await service.create_channel(Channel(name="wide", metadata={"k": "v" * 300}))
    with pytest.raises(LimitExceededError):
        await service.create_channel(Channel(name="wordy", description="d" * 300))
    with pytest.raises(EventTooLargeError):
        await service.put_snapshot(Snapshot(name="s", timestamp_ns=0, value="v" * 2_000))
    stored = await service.put_snapshot(Snapshot(name="s", timestamp_ns=0, value="v" * 500))
    assert stored.value == "v" * 500
