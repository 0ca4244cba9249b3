"""Workloads against the reference sssn 0.1.1 HTTP server; runs in the reference's own venv."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import time
import uuid
from typing import Any

import httpx


class Bench:
    def __init__(self, base_url: str, store: str, scale: float) -> None:
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        self.http = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60)
        self.store = store
        self.scale = scale
        self._channels = 0

    def size(self, full: int) -> int:
        return max(1, int(full * self.scale))

    async def new_channel(self) -> str:
        self._channels += 1
        name = f"bench-{self._channels}"
        (await self.http.post("/channels", json={"name": name})).raise_for_status()
        return name

    @staticmethod
    def event(channel: str, index: int) -> dict[str, Any]:
        return {"channel": channel, "kind": "bench", "payload": {"text": "hello", "n": index}}

    def fill(self, channel: str, count: int) -> None:
        """Writes `count` events straight into the reference's SQLite file.

        Appending 100k events over HTTP at its ~300/s would take minutes;
        rows shaped exactly as its LocalStore writes them read the same.
        """
        now = time.time()
        rows = [
            (
                str(uuid.uuid4()),
                channel,
                now,
                None,
                "bench",
                json.dumps({"n": index, "text": "hello"}),
                None,
                "{}",
                None,
                "[]",
            )
            for index in range(count)
        ]
        with sqlite3.connect(f"{self.store}/sssn.sqlite") as db:
            db.executemany(
                "insert into events(id, channel, timestamp, source, kind, payload, schema_ref,"
                " metadata, correlation_id, parent_ids) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        db.close()


async def append_sequential(bench: Bench) -> dict[str, Any]:
    channel = await bench.new_channel()
    count = bench.size(500)
    latencies = []
    started = time.perf_counter()
    for index in range(count):
        begin = time.perf_counter()
        (await bench.http.post("/events", json=bench.event(channel, index))).raise_for_status()
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed, "p50_ms": 1000 * statistics.median(latencies)}


async def append_concurrent(bench: Bench) -> dict[str, Any]:
    channel = await bench.new_channel()
    count = bench.size(3000)
    next_index = iter(range(count))

    async def worker() -> None:
        for index in next_index:
            response = await bench.http.post("/events", json=bench.event(channel, index))
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(16)))
    return {"per_s": count / (time.perf_counter() - started)}


async def pull_drain(bench: Bench) -> dict[str, Any]:
    count = bench.size(100_000)
    channel = await bench.new_channel()
    bench.fill(channel, count)
    created = await bench.http.post("/subscriptions", json={"channel": channel})
    subscription = created.json()["id"]
    received = 0
    started = time.perf_counter()
    while received < count:
        response = await bench.http.post(
            f"/subscriptions/{subscription}/pull", params={"limit": 1000}
        )
        response.raise_for_status()
        batch = response.json()
        if not batch:
            break
        received += len(batch)
    return {"per_s": received / (time.perf_counter() - started), "events": received}


async def query_paging(bench: Bench) -> dict[str, Any]:
    count = bench.size(20_000)
    channel = await bench.new_channel()
    bench.fill(channel, count)
    after, read = 0, 0
    started = time.perf_counter()
    while True:
        response = await bench.http.get(
            "/events", params={"channel": channel, "after_cursor": after, "limit": 100}
        )
        page = response.json()
        if not page:
            break
        read += len(page)
        after = page[-1]["cursor"]
    return {"per_s": read / (time.perf_counter() - started)}


WORKLOADS = {
    "append_sequential": append_sequential,
    "append_concurrent_16": append_concurrent,
    "pull_drain": pull_drain,
    "query_paging": query_paging,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base_url")
    parser.add_argument("store")
    parser.add_argument("workloads", nargs="+")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    bench = Bench(args.base_url, args.store, args.scale)
    async with bench.http:
        for name in args.workloads:
            if name in WORKLOADS:
                result = await WORKLOADS[name](bench)
                print(json.dumps({"workload": name, **result}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
