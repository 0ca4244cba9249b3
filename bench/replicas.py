"""Replicas on one PostgreSQL: 16 appenders spread over them, a follower on each; one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from grpc_load import follow_latencies, percentile

from sssn_proto.v1 import channel_pb2, event_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

APPENDERS = 16


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(targets: list[str], pids: list[int], scale: float) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(target) for target in targets]
    stubs = [pb_grpc.StoreServiceStub(channel) for channel in channels]
    total = max(APPENDERS, int(4000 * scale)) // APPENDERS * APPENDERS
    await stubs[0].CreateChannel(
        pb.CreateChannelRequest(channel=channel_pb2.Channel(name="load")), timeout=30
    )
    origin = time.perf_counter()
    latencies: list[float] = []
    calls = []
    for number, stub in enumerate(stubs):  # a follower on each replica
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel="load", subscription_id=f"f{number}"), timeout=30
        )
        calls.append(
            stub.PullSubscription(
                pb.PullSubscriptionRequest(subscription_id=f"f{number}", follow=True)
            )
        )

    async def append(stub: Any, count: int) -> None:
        for _ in range(count):
            value = json_format.ParseDict(
                {"sent": time.perf_counter() - origin}, struct_pb2.Value()
            )
            await stub.AppendEvent(
                pb.AppendEventRequest(event=event_pb2.Event(channel="load", payload=value))
            )

    readers = [
        asyncio.create_task(follow_latencies(call, origin, total, latencies)) for call in calls
    ]
    await asyncio.sleep(0.5)  # every stream open before the clock starts
    cpu_before = [cpu_seconds(pid) for pid in pids]
    started = time.perf_counter()
    # The appenders are spread over the replicas, as a balancer would.
    await asyncio.gather(
        *(append(stubs[n % len(stubs)], total // APPENDERS) for n in range(APPENDERS))
    )
    took = time.perf_counter() - started
    await asyncio.wait_for(asyncio.gather(*readers), 300)
    cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    for call in calls:
        call.cancel()
    for channel in channels:
        await channel.close()
    return {
        "per_s": total / took,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        # Server CPU per 1,000 appends: all replicas together, and the busiest.
        "cpu_ms_per_1k": 1000 * sum(cpu) / total * 1000,
        "max_replica_cpu_ms_per_1k": 1000 * max(cpu) / total * 1000,
        "samples": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("targets", nargs="+", help="HOST:PORT of each replica")
    parser.add_argument("--pids", required=True, help="the replicas' process ids, comma-separated")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    pids = [int(pid) for pid in args.pids.split(",")]
    result = asyncio.run(measure(args.targets, pids, args.scale))
    print(json.dumps({"workload": f"replicas_{len(args.targets)}", **result}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
