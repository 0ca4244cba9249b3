"""Event ids: UUIDv7, unique across the random pool's refills and across a fork."""

from __future__ import annotations

import multiprocessing
import time
import uuid

from sssn_server.domain.ids import new_id, new_ids


def test_ids_are_uuid7_with_the_rfc_variant_and_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_ids(50)
    after = time.time_ns() // 1_000_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after
    assert new_ids(0) == []


def test_ids_stay_unique_across_many_refills_of_the_pool() -> None:
    # 4096-byte blocks hold 409 ids: these calls cross the block edge many
    # times, and one call asks for more than a block at once.
    minted = [new_id() for _ in range(3000)] + new_ids(1000) + new_ids(7)
    assert len(set(minted)) == len(minted)


def _child_ids(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put(new_ids(20))


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_id()  # the pool holds unused bytes that a child would inherit
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    child = context.Process(target=_child_ids, args=(queue,))
    child.start()
    from_child = queue.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    from_parent = new_ids(20)
    # The random bits, not the millisecond, which differs anyway.
    assert not {_random_bits(each) for each in from_child} & {
        _random_bits(each) for each in from_parent
    }


def _random_bits(text: str) -> int:
    return uuid.UUID(text).int & ((1 << 80) - 1)
