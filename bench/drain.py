"""`make bench` on a store built for it: live latency beside a catch-up drain, disk per event.

Run by `bench/run.py` against a fresh store folder (or an empty PostgreSQL
database); prints one JSON line per workload, like `grpc_load.py`:

- `live_under_drain`: one following stream fed at a steady rate, first with
  nothing else running (idle, 3,000 events), then while another process drains a
  subscription whose backlog is the whole store (1,000,000 events at scale 1):
  append→delivery p50/p99 in both, and the p99 ratio;
- `disk_per_event`: the store's bytes on disk per event, every payload a
  100-byte JSON object, and that over the payload's size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from pathlib import Path

import scale
import scale_load
from scale_load import Target

DRAIN_EVENTS = 1_000_000
# The idle baseline takes 3,000 samples, about as many as the stream under
# the drain takes: the p99 of 1,000 is their 10th worst, and it moved the
# ratio with it from run to run.
LIVE_EVENTS, LIVE_RATE, LIVE_MINIMUM = 3000, 500.0, 20


async def measure(store: Path | str, factor: float) -> dict[str, dict[str, float]]:
    events = max(10, int(DRAIN_EVENTS * factor))
    built, per_event, _ = await scale.build_store(store, events, random.Random(1))
    server, _ = await scale.start_server(store)
    try:
        channel, stub = scale_load.connect(server.address)
        async with channel:
            target = Target("drain", server.address, server.process.pid, built, stub)
            live = max(LIVE_MINIMUM, int(LIVE_EVENTS * min(1.0, factor * 10)))
            idle = (await scale_load.live_run(target, "live-idle", live, LIVE_RATE, live)).summary()
            options = argparse.Namespace(live_rate=LIVE_RATE, live_minimum=LIVE_MINIMUM)
            under, drained = await scale.live_under_drain(target, options)
    finally:
        server.stop()
    return {
        "live_under_drain": {
            "idle_p50_ms": idle["p50_ms"],
            "idle_p99_ms": idle["p99_ms"],
            "p50_ms": under["p50_ms"],
            "p99_ms": under["p99_ms"],
            "over_idle_p99": under["p99_ms"] / idle["p99_ms"],
            "samples": under["samples"],
            "drained_events": drained["events"],
        },
        "disk_per_event": {
            "bytes": per_event,
            "over_payload": per_event / scale_load.PAYLOAD_BYTES,
            "events": events,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "store", help="a folder for the store (created), or the URL of an empty PostgreSQL database"
    )
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    store: Path | str = args.store if "://" in args.store else Path(args.store)
    for workload, metrics in asyncio.run(measure(store, args.scale)).items():
        print(json.dumps({"workload": workload, **metrics}), flush=True)


if __name__ == "__main__":
    main()
