"""What the PostgreSQL store's way of handing out cursors costs, against a plain identity column.

Run by `bench/run.py` against an empty database URL; prints one JSON line
(workload `cursor_allocation`), like `grpc_load.py`. Each of 16 connections
commits one-row transactions as fast as it can, for a fixed time, into:

- `identity`: a `bigint GENERATED ALWAYS AS IDENTITY` key, which hands out
  numbers without waiting but lets a lower number commit after a higher one
  (a reader of `cursor > N` can then miss it: the sequence-gap problem);
- `counter`: what the store does, a counter row locked (`FOR UPDATE`) and
  advanced inside each transaction, so numbers commit in order;
- `notified`: the same, advancing the counter and sending the new head with
  `NOTIFY` in one statement, as the store's writer does so that the other
  servers on the database hear of the commit.

The first ratio is the price of gap-free visibility when every transaction
is its own; the store pays it once per group of appends (`WriterTask`), not
per event. The second is what the commit notification adds to such a
transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import asyncpg

WRITERS = 16
SECONDS = 3.0

_SCHEMA = """
CREATE TABLE identity_events (cursor bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);
CREATE TABLE counter_events (cursor bigint PRIMARY KEY, body text);
CREATE TABLE counter (singleton boolean PRIMARY KEY, head bigint NOT NULL);
INSERT INTO counter VALUES (true, 0);
"""


async def _identity(connection: asyncpg.Connection) -> None:
    async with connection.transaction():
        await connection.execute("INSERT INTO identity_events (body) VALUES ('x')")


async def _counter(connection: asyncpg.Connection) -> None:
    async with connection.transaction():
        head = await connection.fetchval("SELECT head FROM counter FOR UPDATE")
        await connection.execute("INSERT INTO counter_events VALUES ($1, 'x')", head + 1)
        await connection.execute("UPDATE counter SET head = $1", head + 1)


async def _notified(connection: asyncpg.Connection) -> None:
    async with connection.transaction():
        head = await connection.fetchval("SELECT head FROM counter FOR UPDATE")
        await connection.execute("INSERT INTO counter_events VALUES ($1, 'x')", head + 1)
        await connection.execute(
            "WITH moved AS (UPDATE counter SET head = $1)"
            " SELECT pg_notify('bench_commits', $1::bigint::text)",
            head + 1,
        )


async def _rate(url: str, commit: object, seconds: float) -> float:
    connections = [await asyncpg.connect(url) for _ in range(WRITERS)]
    done = 0
    deadline = time.perf_counter() + seconds

    async def write(connection: asyncpg.Connection) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await commit(connection)  # type: ignore[operator]
            done += 1

    began = time.perf_counter()
    try:
        await asyncio.gather(*(write(connection) for connection in connections))
    finally:
        for connection in connections:
            await connection.close()
    return done / (time.perf_counter() - began)


async def measure(url: str, seconds: float) -> dict[str, float]:
    setup = await asyncpg.connect(url)
    try:
        await setup.execute(_SCHEMA)
    finally:
        await setup.close()
    identity = await _rate(url, _identity, seconds)
    counter = await _rate(url, _counter, seconds)
    notified = await _rate(url, _notified, seconds)
    return {
        "identity_per_s": identity,
        "counter_per_s": counter,
        "counter_cost": identity / counter,
        "notified_per_s": notified,
        "notify_cost": counter / notified,
        "writers": WRITERS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="an empty PostgreSQL database")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    seconds = max(0.2, SECONDS * min(1.0, args.scale * 10))
    result = asyncio.run(measure(args.url, seconds))
    print(json.dumps({"workload": "cursor_allocation", **result}), flush=True)


if __name__ == "__main__":
    main()
