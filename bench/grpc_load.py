"""Workloads against a gRPC StoreService (ours or the no-op ceiling); prints one JSON line each."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from sssn_proto.v1 import channel_pb2, event_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

Workload = Callable[["Bench"], Awaitable[dict[str, Any]]]


def payload(index: int) -> struct_pb2.Value:
    return json_format.ParseDict({"text": "hello", "n": index}, struct_pb2.Value())


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Bench:
    """One connection to the target and the sizes of every workload."""

    def __init__(self, target: str, scale: float, noop: bool, server_pid: int | None) -> None:
        self.channel = grpc.aio.insecure_channel(
            target, options=[("grpc.max_receive_message_length", -1)]
        )
        self.stub = pb_grpc.StoreServiceStub(self.channel)
        self.scale = scale
        self.noop = noop
        self.server_pid = server_pid
        self._channels = 0

    def size(self, full: int) -> int:
        return max(1, int(full * self.scale))

    async def new_channel(self) -> str:
        self._channels += 1
        name = f"bench-{self._channels}"
        if not self.noop:
            await self.stub.CreateChannel(
                pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name))
            )
        return name

    def event(self, channel: str, index: int) -> event_pb2.Event:
        return event_pb2.Event(channel=channel, kind="bench", payload=payload(index))


# Every append workload builds its requests before the clock starts, so the
# figures measure the server and the transport, not the load generator's
# JSON parsing (which costs ~4 us per event here, for every system alike).


async def append_sequential(bench: Bench) -> dict[str, Any]:
    channel = await bench.new_channel()
    count = bench.size(500)
    requests = [pb.AppendEventRequest(event=bench.event(channel, index)) for index in range(count)]
    latencies = []
    started = time.perf_counter()
    for request in requests:
        begin = time.perf_counter()
        await bench.stub.AppendEvent(request)
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed, "p50_ms": 1000 * statistics.median(latencies)}


async def append_concurrent(bench: Bench) -> dict[str, Any]:
    channel = await bench.new_channel()
    count = bench.size(3000)
    in_flight = 16
    requests = iter(
        [pb.AppendEventRequest(event=bench.event(channel, index)) for index in range(count)]
    )

    async def worker() -> None:
        for request in requests:
            await bench.stub.AppendEvent(request)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return {"per_s": count / (time.perf_counter() - started)}


async def append_batches(bench: Bench) -> dict[str, Any]:
    channel = await bench.new_channel()
    batches = bench.size(200)
    requests = [
        pb.AppendEventsRequest(events=[bench.event(channel, batch * 100 + i) for i in range(100)])
        for batch in range(batches)
    ]
    started = time.perf_counter()
    for request in requests:
        await bench.stub.AppendEvents(request)
    return {"per_s": batches * 100 / (time.perf_counter() - started)}


async def append_stream(bench: Bench) -> dict[str, Any]:
    """One AppendEventStream call: 16 events per message, sent without waiting
    for answers (the stream's flow control paces the sender); every event must
    come back with a cursor."""
    channel = await bench.new_channel()
    count = bench.size(20_000)
    per_message = 16
    messages = [
        pb.AppendEventStreamRequest(
            events=[
                bench.event(channel, index)
                for index in range(start, min(start + per_message, count))
            ]
        )
        for start in range(0, count, per_message)
    ]
    started = time.perf_counter()
    call = bench.stub.AppendEventStream()

    async def send() -> None:
        for message in messages:
            await call.write(message)
        await call.done_writing()

    sender = asyncio.create_task(send())
    acknowledged = 0
    last = 0
    async for response in call:
        for result in response.results:
            assert result.WhichOneof("result") == "event", result
            assert result.event.cursor > last, (result.event.cursor, last)
            last = result.event.cursor
            acknowledged += 1
    await sender
    elapsed = time.perf_counter() - started
    assert acknowledged == count, (acknowledged, count)
    return {"per_s": count / elapsed}


async def _filled_channel(bench: Bench, count: int) -> str:
    channel = await bench.new_channel()
    for start in range(0, count, 1000):
        events = [bench.event(channel, start + index) for index in range(min(1000, count - start))]
        await bench.stub.AppendEvents(pb.AppendEventsRequest(events=events))
    return channel


async def pull_drain(bench: Bench) -> dict[str, Any]:
    count = bench.size(100_000)
    per_message = 1000
    metadata: tuple[tuple[str, str], ...] = ()
    if bench.noop:
        subscription = "noop"
        metadata = (("x-bench-total", str(count)),)
    else:
        channel = await _filled_channel(bench, count)
        created = await bench.stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel=channel, batch_size=per_message)
        )
        subscription = created.subscription.id
    received = 0
    started = time.perf_counter()
    call = bench.stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id=subscription, limit=per_message, follow=True),
        metadata=metadata,
    )
    async for message in call:
        received += len(message.events)
        if received >= count:
            break
    elapsed = time.perf_counter() - started
    call.cancel()
    return {"per_s": received / elapsed, "events": received}


async def query_paging(bench: Bench) -> dict[str, Any]:
    count = bench.size(20_000)
    channel = await _filled_channel(bench, count)
    after, read = 0, 0
    started = time.perf_counter()
    while True:
        page = await bench.stub.QueryEvents(
            pb.QueryEventsRequest(channel=channel, after_cursor=after, limit=100)
        )
        if not page.events:
            break
        read += len(page.events)
        after = page.events[-1].cursor
    return {"per_s": read / (time.perf_counter() - started)}


async def follow_latencies(call: Any, origin: float, total: int, latencies: list[float]) -> None:
    """Reads a following stream until `total` events came, adding each one's
    append→delivery latency (its payload's `sent`, seconds after `origin`)."""
    seen = 0
    async for message in call:
        now = time.perf_counter() - origin
        for event in message.events:
            latencies.append(now - event.payload.struct_value["sent"])
        seen += len(message.events)
        if seen >= total:
            return


async def live_latency(bench: Bench) -> dict[str, Any]:
    """10 following streams, a producer at a steady 1,000 events/s."""
    channel = await bench.new_channel()
    followers, rate = 10, 1000
    total = bench.size(5000)
    calls = []
    for _ in range(followers):
        created = await bench.stub.CreateSubscription(pb.CreateSubscriptionRequest(channel=channel))
        calls.append(
            bench.stub.PullSubscription(
                pb.PullSubscriptionRequest(subscription_id=created.subscription.id, follow=True)
            )
        )
    origin = time.perf_counter()
    latencies: list[float] = []

    readers = [
        asyncio.create_task(follow_latencies(call, origin, total, latencies)) for call in calls
    ]
    await asyncio.sleep(0.5)  # let every stream open before the clock starts
    producer_start = time.perf_counter()
    for index in range(total):
        # A steady rate: wait for the event's slot, then send it.
        delay = producer_start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        value = json_format.ParseDict(
            {"n": index, "sent": time.perf_counter() - origin}, struct_pb2.Value()
        )
        await bench.stub.AppendEvent(
            pb.AppendEventRequest(event=event_pb2.Event(channel=channel, payload=value))
        )
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    for call in calls:
        call.cancel()
    return {
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "samples": len(latencies),
    }


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def idle_streams_rss(bench: Bench) -> dict[str, Any]:
    assert bench.server_pid is not None, "--server-pid is needed to read the RSS"
    channel = await bench.new_channel()
    count = bench.size(1000)
    before = _rss_kib(bench.server_pid)
    calls = []
    for _ in range(count):
        created = await bench.stub.CreateSubscription(pb.CreateSubscriptionRequest(channel=channel))
        calls.append(
            bench.stub.PullSubscription(
                pb.PullSubscriptionRequest(subscription_id=created.subscription.id, follow=True)
            )
        )
    # A stream is idle once its (empty) backlog was read; one append proves
    # every stream is live by reaching all of them.
    await bench.stub.AppendEvent(pb.AppendEventRequest(event=bench.event(channel, 0)))
    await asyncio.gather(*(call.read() for call in calls))
    after = _rss_kib(bench.server_pid)
    for call in calls:
        call.cancel()
    return {"rss_mib": after / 1024, "rss_growth_mib": (after - before) / 1024, "streams": count}


WORKLOADS: dict[str, Workload] = {
    "append_sequential": append_sequential,
    "append_concurrent_16": append_concurrent,
    "append_batches_100": append_batches,
    "append_stream": append_stream,
    "pull_drain": pull_drain,
    "query_paging": query_paging,
    "live_latency": live_latency,
    "idle_streams_rss": idle_streams_rss,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target")
    parser.add_argument("workloads", nargs="+", choices=sorted(WORKLOADS))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--noop", action="store_true", help="the target is bench/noop_server.py")
    parser.add_argument("--server-pid", type=int)
    args = parser.parse_args()
    bench = Bench(args.target, args.scale, args.noop, args.server_pid)
    async with bench.channel:
        for name in args.workloads:
            result = await WORKLOADS[name](bench)
            print(json.dumps({"workload": name, **result}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
