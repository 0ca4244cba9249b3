"""Client side of `make bench-scale`: store building, timed calls, a drain in its own process."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import struct_pb2
from grpc_load import _rss_kib, percentile

from sssn_proto.v1 import channel_pb2, event_pb2, subscription_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

MAIN = "main"
SIDES = ("side-1", "side-2")
# Timed appends go to a channel of their own: the store grows by them alike,
# and the main channel's backlog stays what was built.
APPENDS_CHANNEL = "appends"
COMMON_KIND, RARE_KIND = "a", "b"
BUILD_BATCH = 1000
PAYLOAD_BYTES = 100
# Event g of a built store is stamped STEP_NS after event g-1, so a seek by
# time can aim at any depth of the store.
STEP_NS = 1000
ID_SAMPLES = 1000
# Generous: a cost that grows with the store must show as a slow figure, not
# as a failed run.
CALL_TIMEOUT = 600.0
PULL_TIMEOUT = 3600.0
MESSAGE_OPTIONS = [("grpc.max_receive_message_length", -1)]

_PAD = "abcdefghijklmnopqrstuvwxyz0123456789" * 4


def channel_of(index: int) -> str:
    """The channel of event `index` of a built store: nine in ten on the main one."""
    slot = index % 20
    return SIDES[slot - 18] if slot >= 18 else MAIN


def kind_of(index: int) -> str:
    """One event in ten is of the rare kind (all of them on the main channel)."""
    return RARE_KIND if index % 10 == 5 else COMMON_KIND


def payload(index: int) -> struct_pb2.Value:
    """A JSON object of exactly PAYLOAD_BYTES bytes written compactly; strings only,
    so no number formatting can change its length."""
    number = f"{index:012d}"
    skeleton = len(json.dumps({"n": number, "text": ""}, separators=(",", ":")))
    value = struct_pb2.Value()
    value.struct_value.update({"n": number, "text": _PAD[: PAYLOAD_BYTES - skeleton]})
    return value


def percentiles(latencies: list[float], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": 1000 * percentile(latencies, 0.5),
        f"{prefix}_p99_ms": 1000 * percentile(latencies, 0.99),
    }


def connect(address: str) -> tuple[grpc.aio.Channel, pb_grpc.StoreServiceStub]:
    channel = grpc.aio.insecure_channel(address, options=MESSAGE_OPTIONS)
    return channel, pb_grpc.StoreServiceStub(channel)


@dataclass
class Built:
    """What the benchmark knows of a store it built: enough to aim reads at any depth."""

    events: int
    base_ns: int
    main_cursors: array[int] = field(default_factory=lambda: array("q"))
    samples: list[tuple[str, int]] = field(default_factory=list)

    @property
    def main_events(self) -> int:
        return len(self.main_cursors)

    def main_cursor_at(self, fraction: float) -> int:
        """The cursor of the built main-channel event at this fraction of it."""
        position = min(len(self.main_cursors) - 1, max(0, int(fraction * len(self.main_cursors))))
        return self.main_cursors[position]


def built_event(index: int, base_ns: int) -> event_pb2.Event:
    event = event_pb2.Event(channel=channel_of(index), kind=kind_of(index), payload=payload(index))
    event.timestamp.FromNanoseconds(base_ns + index * STEP_NS)
    return event


async def build(
    stub: pb_grpc.StoreServiceStub, events: int, rng: random.Random, progress: Callable[[str], None]
) -> Built:
    """Appends `events` events in batches of BUILD_BATCH, one call at a time."""
    for name in (MAIN, *SIDES):
        await stub.CreateChannel(pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)))
    # Stamped in the past, so events appended while measuring come after all of them.
    base_ns = time.time_ns() - events * STEP_NS - 60 * 10**9
    built = Built(events=events, base_ns=base_ns)
    sampled = set(rng.sample(range(events), min(events, ID_SAMPLES)))
    reported = 0
    for start in range(0, events, BUILD_BATCH):
        indexes = range(start, min(start + BUILD_BATCH, events))
        request = pb.AppendEventsRequest(events=[built_event(index, base_ns) for index in indexes])
        response = await stub.AppendEvents(request, timeout=CALL_TIMEOUT)
        for index, event in zip(indexes, response.events, strict=True):
            if event.channel == MAIN:
                built.main_cursors.append(event.cursor)
            if index in sampled:
                built.samples.append((event.id, event.cursor))
        if (done := indexes.stop * 10 // events) > reported:
            reported = done
            progress(f"{indexes.stop:,} of {events:,} events")
    return built


# Point calls: each makes one request (outside the clock) for one timed call.

Request = Callable[["Target", random.Random], tuple[str, Any, int]]


@dataclass
class Target:
    """A running server over a built store, as the timed calls see it."""

    name: str
    address: str
    pid: int
    built: Built
    stub: pb_grpc.StoreServiceStub
    subscriptions: dict[str, str] = field(default_factory=dict)


def _get_event(target: Target, rng: random.Random) -> tuple[str, Any, int]:
    event_id, _ = rng.choice(target.built.samples)
    return "GetEvent", pb.GetEventRequest(id=event_id), 1


def _query_at(low: float, high: float, kind: str = "") -> Request:
    def request(target: Target, rng: random.Random) -> tuple[str, Any, int]:
        after = target.built.main_cursor_at(rng.uniform(low, high))
        query = pb.QueryEventsRequest(channel=MAIN, after_cursor=after, limit=100, kind=kind)
        return "QueryEvents", query, 1

    return request


def _query_near_end(target: Target, rng: random.Random) -> tuple[str, Any, int]:
    # A full page before the end of the built events, wherever the end is.
    count = len(target.built.main_cursors)
    position = max(0, count - 100 - rng.randrange(1, 1000))
    after = target.built.main_cursors[position]
    return "QueryEvents", pb.QueryEventsRequest(channel=MAIN, after_cursor=after, limit=100), 1


def _get_subscription(key: str) -> Request:
    def request(target: Target, rng: random.Random) -> tuple[str, Any, int]:
        subscription = target.subscriptions[key]
        return "GetSubscription", pb.GetSubscriptionRequest(subscription_id=subscription), 1

    return request


def _seek_early(target: Target, rng: random.Random) -> tuple[str, Any, int]:
    built = target.built
    # Early in the store: nearly every event is after the time sought.
    index = int(rng.uniform(0.005, 0.02) * built.events)
    request = pb.SeekSubscriptionRequest(subscription_id=target.subscriptions["seek"])
    request.timestamp.FromNanoseconds(built.base_ns + index * STEP_NS)
    return "SeekSubscription", request, 1


def _new_event(rng: random.Random) -> event_pb2.Event:
    return event_pb2.Event(
        channel=APPENDS_CHANNEL, kind=COMMON_KIND, payload=payload(rng.randrange(10**9))
    )


def _append_event(target: Target, rng: random.Random) -> tuple[str, Any, int]:
    return "AppendEvent", pb.AppendEventRequest(event=_new_event(rng)), 1


def _append_events_100(target: Target, rng: random.Random) -> tuple[str, Any, int]:
    events = [_new_event(rng) for _ in range(100)]
    return "AppendEvents", pb.AppendEventsRequest(events=events), 100


# (name, request, calls per round); the appends come last since they grow the store.
POINT_CALLS: list[tuple[str, Request, int]] = [
    ("get_event", _get_event, 100),
    ("query_end", _query_near_end, 50),
    ("query_middle", _query_at(0.49, 0.51), 50),
    ("query_kind", _query_at(0.49, 0.51, RARE_KIND), 50),
    ("get_subscription", _get_subscription("lag"), 50),
    ("get_subscription_kind", _get_subscription("lag-kind"), 50),
    ("seek_time", _seek_early, 20),
    ("append_event", _append_event, 100),
    ("append_events_100", _append_events_100, 10),
]
APPENDS = {"append_event", "append_events_100"}


async def prepare_point_calls(target: Target) -> dict[str, Any]:
    """The subscriptions the timed calls read: two whose lag is the whole main
    channel (all kinds, and the rare kind alone) and one to seek; and the
    channel the timed appends go to."""
    await target.stub.CreateChannel(
        pb.CreateChannelRequest(channel=channel_pb2.Channel(name=APPENDS_CHANNEL))
    )
    for key, kind in (("lag", ""), ("lag-kind", RARE_KIND), ("seek", "")):
        created = await target.stub.CreateSubscription(
            pb.CreateSubscriptionRequest(
                channel=MAIN,
                subscription_id=f"scale-{key}",
                filter=subscription_pb2.SubscriptionFilter(kind=kind),
            )
        )
        target.subscriptions[key] = created.subscription.id
    lag = await target.stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id=target.subscriptions["lag"]),
        timeout=CALL_TIMEOUT,
    )
    return {"pending_count": lag.pending_count, "main_events": target.built.main_events}


async def point_round(
    target: Target, rng: random.Random, name: str, request: Request, calls: int
) -> tuple[list[float], int]:
    """`calls` sequential calls: their latencies and how many events they carried."""
    latencies, carried = [], 0
    for _ in range(calls):
        method, message, events = request(target, rng)
        begin = time.perf_counter()
        await getattr(target.stub, method)(message, timeout=CALL_TIMEOUT)
        latencies.append(time.perf_counter() - begin)
        carried += events
    return latencies, carried


def summarize_point_calls(name: str, latencies: list[float], carried: int) -> dict[str, float]:
    if name in APPENDS:
        # Sequential calls: the rate is what they carried over the time they took.
        return {f"{name}_per_s": carried / sum(latencies)}
    return percentiles(latencies, name)


# Streams


@dataclass
class LiveRun:
    """What one live stream measured: append→delivery of each event, in seconds."""

    latencies: list[float]
    sent_after_stop: int
    window_s: float

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": 1000 * percentile(self.latencies, 0.5),
            "p99_ms": 1000 * percentile(self.latencies, 0.99),
            "samples": len(self.latencies),
            "sent_after_stop": self.sent_after_stop,
            "window_s": self.window_s,
        }


async def live_run(
    target: Target,
    channel: str,
    events: int,
    rate: float,
    minimum: int,
    stop: asyncio.Event | None = None,
) -> LiveRun:
    """One following stream; a producer appends at a steady `rate` until `events`
    are sent or, once `minimum` are, `stop` is set: every append→delivery time,
    and how many were sent after `stop` was set."""
    stub = target.stub
    await stub.CreateChannel(pb.CreateChannelRequest(channel=channel_pb2.Channel(name=channel)))
    created = await stub.CreateSubscription(pb.CreateSubscriptionRequest(channel=channel))
    call = stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id=created.subscription.id, follow=True)
    )
    sent_at: dict[int, float] = {}
    latencies: list[float] = []

    async def follow() -> None:
        async for message in call:
            now = time.perf_counter()
            for event in message.events:
                latencies.append(now - sent_at[int(event.payload.struct_value["n"])])

    reader = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # the stream is open before the first event
    started = time.perf_counter()
    index = after_stop = 0
    while index < events and not (stop is not None and stop.is_set() and index >= minimum):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        value = struct_pb2.Value()
        value.struct_value.update({"n": index})
        sent_at[index] = time.perf_counter()
        after_stop += stop is not None and stop.is_set()
        await stub.AppendEvent(
            pb.AppendEventRequest(event=event_pb2.Event(channel=channel, payload=value)),
            timeout=CALL_TIMEOUT,
        )
        index += 1
    window = time.perf_counter() - started
    deadline = time.perf_counter() + 120
    try:
        while len(latencies) < index and time.perf_counter() < deadline and not reader.done():
            await asyncio.sleep(0.01)
    finally:
        call.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    if len(latencies) < index:
        raise RuntimeError(f"live stream delivered {len(latencies)} of {index} events")
    return LiveRun(latencies, after_stop, window)


async def catch_up_rate(target: Target, count: int, repeats: int) -> dict[str, float]:
    """A following pull draining `count` events from the middle of the main
    channel, 1,000 per message; the median rate of `repeats` fresh subscriptions."""
    built = target.built
    start = max(0, len(built.main_cursors) // 2 - count // 2)
    rates = []
    for repeat in range(repeats):
        created = await target.stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel=MAIN, subscription_id=f"scale-catch-up-{repeat}")
        )
        subscription = created.subscription.id
        await target.stub.SeekSubscription(
            pb.SeekSubscriptionRequest(
                subscription_id=subscription, cursor=built.main_cursors[start] - 1
            ),
            timeout=CALL_TIMEOUT,
        )
        received = 0
        began = time.perf_counter()
        call = target.stub.PullSubscription(
            pb.PullSubscriptionRequest(subscription_id=subscription, limit=1000, follow=True)
        )
        async for message in call:
            received += len(message.events)
            if received >= count:
                break
        elapsed = time.perf_counter() - began
        call.cancel()
        rates.append(received / elapsed)
    return {"drain_per_s": statistics.median(rates), "drain_events": count}


async def bulk_pull(target: Target, repeats: int) -> dict[str, Any]:
    """One non-following pull asking for the whole main channel: the server's
    RSS before, at its peak during, and after; its time to the first message
    is the median of `repeats` such pulls (the others stop at that message)."""
    created = await target.stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=MAIN, subscription_id="scale-bulk")
    )
    limit = min(target.built.main_events, 2**31 - 1)
    before = _rss_kib(target.pid)
    peak = before
    pulling = True

    async def sample_rss() -> None:
        nonlocal peak
        while pulling:
            peak = max(peak, _rss_kib(target.pid))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample_rss())
    received, first = 0, None
    began = time.perf_counter()
    try:
        async for message in target.stub.PullSubscription(
            pb.PullSubscriptionRequest(
                subscription_id=created.subscription.id, limit=limit, follow=False
            ),
            timeout=PULL_TIMEOUT,
        ):
            if first is None:
                first = time.perf_counter() - began
            received += len(message.events)
        total = time.perf_counter() - began
    finally:
        pulling = False
        await sampler
    # Time for the server to let go of what the pull held.
    await asyncio.sleep(1.0)
    after = _rss_kib(target.pid)
    firsts = [first if first is not None else total]
    for number in range(1, repeats):
        firsts.append(await _first_message(target, limit, f"scale-bulk-{number}"))
    return {
        "pull_first_ms": 1000 * statistics.median(firsts),
        "pull_firsts_ms": [round(1000 * took, 2) for took in firsts],
        "pull_total_s": total,
        "pull_events": received,
        "pull_limit": limit,
        "pull_rss_before_mib": before / 1024,
        "pull_rss_peak_mib": max(peak, after) / 1024,
        "pull_rss_after_mib": after / 1024,
    }


async def _first_message(target: Target, limit: int, subscription_id: str) -> float:
    """Seconds to the first message of a non-following pull of `limit` from
    the start of main, on a subscription of its own."""
    created = await target.stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=MAIN, subscription_id=subscription_id)
    )
    began = time.perf_counter()
    call = target.stub.PullSubscription(
        pb.PullSubscriptionRequest(
            subscription_id=created.subscription.id, limit=limit, follow=False
        ),
        timeout=PULL_TIMEOUT,
    )
    async for _ in call:
        break
    took = time.perf_counter() - began
    call.cancel()
    return took


async def drain(address: str, subscription: str, until_cursor: int) -> None:
    """A following pull through the subscription's backlog as fast as it comes,
    printing one line at its first message and one when it reaches `until_cursor`
    (monotonic clock: comparable across processes on one machine)."""
    channel, stub = connect(address)
    async with channel:
        call = stub.PullSubscription(
            pb.PullSubscriptionRequest(subscription_id=subscription, limit=1000, follow=True),
            timeout=PULL_TIMEOUT,
        )
        received, first = 0, None
        async for message in call:
            if not message.events:
                continue
            if first is None:
                first = time.monotonic()
                print(json.dumps({"started": first}), flush=True)
            received += len(message.events)
            if message.events[-1].cursor >= until_cursor:
                break
        done = time.monotonic()
        call.cancel()
        assert first is not None
        print(json.dumps({"done": done, "events": received, "per_s": received / (done - first)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    drainer = commands.add_parser("drain", help="drain a subscription up to a cursor")
    drainer.add_argument("address")
    drainer.add_argument("subscription")
    drainer.add_argument("until_cursor", type=int)
    args = parser.parse_args()
    asyncio.run(drain(args.address, args.subscription, args.until_cursor))


if __name__ == "__main__":
    main()
