"""The same workloads against NATS JetStream; runs in bench/.venv-nats, prints one JSON line each.

Every workload gets its own file-storage stream (nats-server's default sync
settings) with one subject, the analogue of one of our channels. Messages carry
the same payload as ours, `{"text": "hello", "n": i}` as JSON bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

Workload = Callable[["Bench"], Awaitable[dict[str, Any]]]

STREAM_WINDOW = 256  # append_stream: publishes in flight before awaiting their acks
FILL_WINDOW = 1000  # pull_drain: the untimed backlog is published this many at a time


def payload(index: int) -> bytes:
    return json.dumps({"text": "hello", "n": index}).encode()


class Bench:
    """One connection to nats-server and the sizes of every workload."""

    def __init__(self, js: JetStreamContext, scale: float) -> None:
        self.js = js
        self.scale = scale
        self._streams = 0

    def size(self, full: int) -> int:
        return max(1, int(full * self.scale))

    async def new_subject(self) -> str:
        """A fresh file-storage stream with one subject, like a new channel of ours."""
        self._streams += 1
        name, subject = f"BENCH_{self._streams}", f"bench.{self._streams}"
        for _ in range(100):  # JetStream may still be starting right after the port opens
            try:
                await self.js.add_stream(name=name, subjects=[subject], storage=StorageType.FILE)
                return subject
            except (ServiceUnavailableError, NoRespondersError, NoStreamResponseError):
                await asyncio.sleep(0.1)
        raise RuntimeError("JetStream did not become available")

    async def publish_window(self, subject: str, payloads: list[bytes]) -> None:
        """Publishes `payloads` all at once on the connection, then awaits every ack."""
        await asyncio.gather(*(self.js.publish(subject, data) for data in payloads))


# As in grpc_load.py, payloads are built before the clock starts.


async def append_sequential(bench: Bench) -> dict[str, Any]:
    subject = await bench.new_subject()
    count = bench.size(500)
    payloads = [payload(index) for index in range(count)]
    latencies = []
    started = time.perf_counter()
    for data in payloads:
        begin = time.perf_counter()
        await bench.js.publish(subject, data)
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed, "p50_ms": 1000 * statistics.median(latencies)}


async def append_concurrent(bench: Bench) -> dict[str, Any]:
    subject = await bench.new_subject()
    count = bench.size(3000)
    in_flight = 16
    payloads = iter([payload(index) for index in range(count)])

    async def worker() -> None:
        for data in payloads:
            await bench.js.publish(subject, data)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return {"per_s": count / (time.perf_counter() - started)}


async def append_stream(bench: Bench) -> dict[str, Any]:
    """Pipelined publishing: windows of 256 publishes in flight, each window's acks awaited."""
    subject = await bench.new_subject()
    count = bench.size(20_000)
    payloads = [payload(index) for index in range(count)]
    started = time.perf_counter()
    for start in range(0, count, STREAM_WINDOW):
        await bench.publish_window(subject, payloads[start : start + STREAM_WINDOW])
    return {"per_s": count / (time.perf_counter() - started), "window": STREAM_WINDOW}


async def pull_drain(bench: Bench) -> dict[str, Any]:
    """A durable pull consumer with AckPolicy.NONE fetching 1,000 messages per request.

    AckPolicy.NONE is the analogue of our durable subscription with auto-advance:
    the server moves the consumer on as it delivers, and the client sends no acks.
    """
    count = bench.size(100_000)
    per_fetch = 1000
    subject = await bench.new_subject()
    backlog = [payload(index) for index in range(count)]
    for start in range(0, count, FILL_WINDOW):  # not timed
        await bench.publish_window(subject, backlog[start : start + FILL_WINDOW])
    consumer = await bench.js.pull_subscribe(
        subject, durable="drain", config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    received = 0
    started = time.perf_counter()
    while received < count:
        received += len(await consumer.fetch(batch=per_fetch, timeout=10))
    elapsed = time.perf_counter() - started
    await consumer.unsubscribe()
    return {"per_s": received / elapsed, "events": received}


WORKLOADS: dict[str, Workload] = {
    "append_sequential": append_sequential,
    "append_concurrent_16": append_concurrent,
    "append_stream": append_stream,
    "pull_drain": pull_drain,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("server", help="nats://127.0.0.1:PORT")
    parser.add_argument("workloads", nargs="+", choices=sorted(WORKLOADS))
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    connection = await nats.connect(args.server, connect_timeout=10)
    try:
        bench = Bench(connection.jetstream(timeout=30), args.scale)
        for name in args.workloads:
            result = await WORKLOADS[name](bench)
            print(json.dumps({"workload": name, **result}), flush=True)
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
