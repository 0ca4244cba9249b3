"""Storage behaviours, run against every Store implementation (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sssn_server.domain.errors import (
    ChannelNotFoundError,
    EventExistsError,
    EventNotFoundError,
    StoreClosedError,
    StoreReadOnlyError,
)
from sssn_server.domain.models import Channel, Event
from sssn_server.domain.ports import Store

from .backends import open_store

StoreFactory = Callable[..., Store]


@pytest.fixture
def make_store(store_location: Path | str) -> StoreFactory:
    """Opens stores of the test's backend, all on one location."""
    return lambda **options: open_store(store_location, **options)


@pytest.fixture
async def store(make_store) -> AsyncIterator[Store]:
    async with make_store() as opened:
        await opened.create_channel(Channel(name="events"))
        yield opened


def new_event(index: int, **fields) -> Event:
    return Event(id=f"e{index}", channel="events", timestamp_ns=index + 1, payload=index, **fields)


async def test_concurrent_writes_are_grouped_but_fail_alone(store: Store) -> None:
    good = [store.append_events([new_event(index)]) for index in range(40)]
    bad = store.append_events([new_event(99, parent_ids=("missing",))])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(results[-1], EventNotFoundError)
    stored = [batch[0] for batch in results[:-1]]  # type: ignore[index]
    cursors = [event.cursor for event in stored]
    assert len(set(cursors)) == 40
    queried = await store.query_events("events", after_cursor=0, limit=100, kind=None)
    assert sorted(event.id for event in queried) == sorted(f"e{index}" for index in range(40))


async def test_single_appends_failing_in_one_group_fail_alone(store: Store) -> None:
    """Single-event appends run without a savepoint of their own: a failing
    one must still leave its group's other writes, and nothing of itself."""
    await store.create_channel(Channel(name="other"))
    await store.append_events([Event(id="taken", channel="other", timestamp_ns=1)])
    calls = []
    for index in range(30):
        if index % 3 == 1:  # a missing channel
            calls.append(
                store.append_events([Event(id=f"g{index}", channel="ghost", timestamp_ns=1)])
            )
        elif index % 3 == 2:  # an id of another channel
            calls.append(store.append_events([Event(id="taken", channel="events", timestamp_ns=1)]))
        else:
            calls.append(store.append_events([new_event(index)]))
    results = await asyncio.gather(*calls, return_exceptions=True)
    for index, result in enumerate(results):
        expected = (list, ChannelNotFoundError, EventExistsError)[index % 3]
        assert isinstance(result, expected), (index, result)
    queried = await store.query_events("events", after_cursor=0, limit=100, kind=None)
    assert [event.id for event in queried] == [f"e{index}" for index in range(0, 30, 3)]
    assert await store.query_events("other", after_cursor=0, limit=10, kind=None) != []
    with pytest.raises(EventNotFoundError):
        await store.get_event("g1")


async def test_independent_appends_of_many_callers_each_get_what_they_would_alone(
    store: Store,
) -> None:
    await append_many_callers(store)


async def append_many_callers(store: Store) -> None:
    calls = [
        store.append_each(
            [
                new_event(3 * index),
                new_event(3 * index + 1, parent_ids=(f"e{3 * index}",)),
                Event(id=f"lost{index}", channel="ghost", timestamp_ns=1),
            ]
        )
        for index in range(10)
    ]
    # A retry of another caller's event, and a parent from another caller.
    calls.append(store.append_each([new_event(0), new_event(100, parent_ids=("e27",))]))
    calls.append(store.append_each([new_event(101, parent_ids=("lost3",))]))
    results = await asyncio.gather(*calls)
    cursors = []
    for index, result in enumerate(results[:10]):
        first, second, third = result
        assert isinstance(first, Event) and isinstance(second, Event)
        assert (first.id, second.id) == (f"e{3 * index}", f"e{3 * index + 1}")
        assert isinstance(third, ChannelNotFoundError)
        cursors += [first.cursor, second.cursor]
    assert cursors == sorted(cursors) and len(set(cursors)) == 20
    retried, child = results[10]
    assert isinstance(retried, Event) and retried.cursor == results[0][0].cursor  # type: ignore[union-attr]
    assert isinstance(child, Event) and child.cursor > max(cursors)
    (orphan,) = results[11]
    assert isinstance(orphan, EventNotFoundError)  # a refused event stays unknown
    stored = await store.query_events("events", after_cursor=0, limit=100, kind=None)
    assert len(stored) == 21 and [event.cursor for event in stored][:20] == cursors


async def test_every_field_of_an_event_reads_back_as_stored(store: Store) -> None:
    parent = (await store.append_events([new_event(1)]))[0]
    sent = Event(
        id="full",
        channel="events",
        timestamp_ns=1_700_000_000_123_456_789,
        kind="order.created",
        payload={"nested": [1, 2.5, None, True, "x"]},
        source="producer",
        schema="demo.Order",
        metadata={"trace": "abc"},
        correlation_id="req-7",
        parent_ids=(parent.id,),
    )
    (stored,) = await store.append_events([sent])
    assert stored.cursor > parent.cursor
    for read in (
        await store.get_event("full"),
        (await store.query_events("events", after_cursor=parent.cursor, limit=5, kind=None))[0],
    ):
        assert read == stored
        assert (read.source, read.schema, read.correlation_id) == (
            "producer",
            "demo.Order",
            "req-7",
        )
        assert (read.kind, read.payload, read.metadata) == (sent.kind, sent.payload, sent.metadata)
        assert (read.parent_ids, read.wire, read.timestamp_ns) == (
            sent.parent_ids,
            sent.wire,
            sent.timestamp_ns,
        )


@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
async def test_absent_optional_fields_read_back_absent_and_text_stays_text(
    store: Store, batch: bool
) -> None:
    """The SQLite store binds an absent source, schema or correlation id as a
    placeholder number; no text, not even "0" or "", may be taken for it."""
    texts = ("0", "", "x")
    sent = [new_event(1)] + [
        new_event(2 + index, source=text, schema=text, correlation_id=text)
        for index, text in enumerate(texts)
    ]
    if batch:
        await store.append_events(sent)
    else:
        for event in sent:
            await store.append_events([event])
    read = await store.query_events("events", after_cursor=0, limit=10, kind=None)
    assert [(event.source, event.schema, event.correlation_id) for event in read] == [
        (None, None, None),
        *[(text, text, text) for text in texts],
    ]


async def test_a_batch_of_new_events_and_one_that_is_not_are_stored_alike(store: Store) -> None:
    """A batch of new events is inserted in one optimistic statement; one
    retry, clash or missing channel undoes it and every event is checked.
    Either way each event gets what it would alone, and cursors stay dense."""
    fresh = await store.append_each([new_event(index) for index in range(5)])
    assert [event.cursor for event in fresh] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    mixed = await store.append_each(
        [
            new_event(10),
            new_event(2),  # a retry: answered with the stored event
            Event(id="g", channel="ghost", timestamp_ns=1),
            new_event(11),
        ]
    )
    assert isinstance(mixed[2], ChannelNotFoundError)
    assert mixed[1] == fresh[2]
    assert [mixed[0].cursor, mixed[3].cursor] == [6, 7]  # type: ignore[union-attr]
    stored = await store.query_events("events", after_cursor=0, limit=100, kind=None)
    assert [event.id for event in stored] == ["e0", "e1", "e2", "e3", "e4", "e10", "e11"]
    assert [event.cursor for event in stored] == list(range(1, 8))


async def test_a_batch_larger_than_one_statement_holds_is_stored_in_order(store: Store) -> None:
    # More rows than one multi-row INSERT of the SQLite store binds.
    count = 2 * 1000 + 7
    stored = await store.append_events([new_event(index) for index in range(count)])
    assert [event.cursor for event in stored] == list(range(1, count + 1))
    queried = await store.query_events("events", after_cursor=0, limit=count, kind=None)
    assert [(event.id, event.cursor) for event in queried] == [
        (f"e{index}", index + 1) for index in range(count)
    ]


async def test_an_empty_batch_stores_nothing_and_answers_empty(store: Store) -> None:
    assert await store.append_events([]) == []
    assert await store.append_each([]) == []
    assert await store.query_events("events", after_cursor=0, limit=5, kind=None) == []


async def test_an_event_with_a_wire_form_is_read_without_what_that_form_holds(
    store: Store,
) -> None:
    with_wire = new_event(1, metadata={"m": 1}, wire=b"the whole event")
    without = new_event(2, metadata={"m": 2})  # as stored before schema 3
    await store.append_events([with_wire, without])
    read = await store.query_events("events", after_cursor=0, limit=5, kind=None)
    assert [(event.payload, event.metadata) for event in read] == [(None, {}), (2, {"m": 2})]
    assert [(event.id, event.cursor, event.wire, event.kind) for event in read] == [
        ("e1", 1, b"the whole event", "event"),
        ("e2", 2, None, "event"),
    ]
    kinds = await store.query_events("events", after_cursor=0, limit=5, kind="event")
    assert [event.payload for event in kinds] == [None, 2]
    assert (await store.get_event("e1")).payload is None


async def test_a_failed_batch_leaves_no_trace(store: Store) -> None:
    with pytest.raises(ChannelNotFoundError):
        await store.append_events([new_event(1), Event(id="x", channel="ghost", timestamp_ns=1)])
    assert await store.query_events("events", after_cursor=0, limit=10, kind=None) == []
    assert await store.head_cursor() == 0


async def test_head_cursor_tracks_the_newest_event(store: Store) -> None:
    stored = await store.append_events([new_event(1), new_event(2)])
    assert await store.head_cursor() == stored[-1].cursor


async def test_reopening_keeps_data(make_store) -> None:
    async with make_store() as store:
        await store.create_channel(Channel(name="kept"))
    async with make_store() as store:
        assert (await store.get_channel("kept")).name == "kept"


async def test_read_only_store_refuses_writes(make_store) -> None:
    async with make_store() as store:
        await store.create_channel(Channel(name="events"))
    async with make_store(read_only=True) as store:
        assert (await store.get_channel("events")).name == "events"
        with pytest.raises(StoreReadOnlyError):
            await store.append_events([new_event(1)])
        with pytest.raises(StoreReadOnlyError):
            await store.begin_artifact()


async def test_calls_after_close_raise_store_closed(make_store) -> None:
    store = make_store()
    await store.open()
    await store.close()
    await store.close()  # closing twice is harmless
    with pytest.raises(StoreClosedError):
        await store.get_channel("events")
    with pytest.raises(StoreClosedError):
        await store.create_channel(Channel(name="late"))


async def test_discarded_uploads_leave_nothing(make_store) -> None:
    async with make_store() as store:
        upload = await store.begin_artifact()
        await upload.write(b"partial")
        await upload.discard()
        await upload.discard()  # twice is harmless


async def test_a_batch_may_repeat_an_id_and_name_earlier_events_as_parents(store: Store) -> None:
    await store.create_channel(Channel(name="other"))
    first, again, child = await store.append_events(
        [new_event(1), new_event(1), new_event(2, parent_ids=("e1",))]
    )
    assert again == first and child.cursor > first.cursor
    assert child.parent_ids == ("e1",)
    clash = Event(id="e3", channel="other", timestamp_ns=1)
    with pytest.raises(EventExistsError):
        await store.append_events([new_event(3), clash])
    with pytest.raises(EventNotFoundError):  # a parent later in the batch is not there yet
        await store.append_events([new_event(4, parent_ids=("e5",)), new_event(5)])
    queried = await store.query_events("events", after_cursor=0, limit=10, kind=None)
    assert [event.id for event in queried] == ["e1", "e2"]
