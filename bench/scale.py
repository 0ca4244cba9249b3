"""`make bench-scale`: how each cost grows from a small to a large store, measured in one run."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import report
import run
import scale_load
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_load import _rss_kib
from scale_load import Built, Target

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_server.store.sqlite import DATABASE_FILE

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scale.json"
DOCS = HERE.parent / "docs"
DOCUMENT = DOCS / "benchmarks-scale.md"
# docs/benchmarks.md, written by `make bench --save`, links to this page and
# repeats each section's verdict; --save here writes that section of it anew.

SMALL, LARGE = 10_000, 1_000_000
FLAT = 1.5
UNDER_DRAIN = 3.0
LISTENING = re.compile(r"listening on (\S+)")


@dataclass(frozen=True)
class Row:
    """One line of the report. `judge`: "flat" (large vs small within FLAT),
    "answer" (grows with the answer's size, not judged), "info" (not judged),
    "under-drain" (the large store's value within UNDER_DRAIN)."""

    key: str
    metric: str
    unit: str
    higher_is_better: bool = False
    judge: str = "flat"


ROWS = [
    Row("startup_ms", "start-up (process start → health SERVING), median", "ms"),
    Row("rss_startup_mib", "RSS after start-up", "MiB"),
    Row("disk_bytes_per_event", "disk per event, 100-byte JSON payloads", "bytes"),
    Row("append_event_per_s", "AppendEvent, one at a time", "events/s", True),
    Row("append_events_100_per_s", "AppendEvents of 100", "events/s", True),
    Row("get_event_p50_ms", "GetEvent, random ids", "ms p50"),
    Row("get_event_p99_ms", "GetEvent, random ids", "ms p99"),
    Row("query_end_p50_ms", "QueryEvents page of 100 near the end", "ms p50"),
    Row("query_end_p99_ms", "QueryEvents page of 100 near the end", "ms p99"),
    Row("query_middle_p50_ms", "QueryEvents page of 100 in the middle", "ms p50"),
    Row("query_middle_p99_ms", "QueryEvents page of 100 in the middle", "ms p99"),
    Row("query_kind_p50_ms", "QueryEvents of one kind (1 in 10), middle", "ms p50"),
    Row("get_subscription_p50_ms", "GetSubscription, lag = whole channel", "ms p50"),
    Row("get_subscription_p99_ms", "GetSubscription, lag = whole channel", "ms p99"),
    Row("get_subscription_kind_p50_ms", "GetSubscription, kind filter, same lag", "ms p50"),
    Row("seek_time_p50_ms", "SeekSubscription by time, early in the store", "ms p50"),
    Row("seek_time_p99_ms", "SeekSubscription by time, early in the store", "ms p99"),
    Row("pull_first_ms", "PullSubscription of the whole backlog: first message, median", "ms"),
    Row("pull_rss_peak_mib", "PullSubscription of the whole backlog: peak RSS", "MiB"),
    Row("pull_rss_after_mib", "PullSubscription of the whole backlog: RSS after", "MiB"),
    Row(
        "pull_events",
        "PullSubscription of the whole backlog: events sent",
        "events",
        True,
        "answer",
    ),
    Row(
        "pull_total_s", "PullSubscription of the whole backlog: until the end", "s", judge="answer"
    ),
    Row("drain_per_s", "catch-up drain (following pull), same count", "events/s", True),
    Row("live_idle_p50_ms", "live append→delivery, idle", "ms p50"),
    Row("live_idle_p99_ms", "live append→delivery, idle", "ms p99"),
    Row(
        "live_drain_p50_ms", "live append→delivery, while a backlog drains", "ms p50", judge="info"
    ),
    Row(
        "live_drain_p99_ms", "live append→delivery, while a backlog drains", "ms p99", judge="info"
    ),
    Row("live_drain_over_idle_p99", "live p99 while draining ÷ idle p99", "x", judge="under-drain"),
]
TARGETS = {
    "flat": f"≤ {FLAT}x",
    "answer": "grows with the answer",
    "info": "—",
    "under-drain": f"≤ {UNDER_DRAIN:g}x in the large store",
}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Servers


async def start_server(store: Path | str) -> tuple[run.Server, float]:
    """A server on `store` and a free loopback port, and how long it took to
    answer a health check from the moment its process started."""
    began = time.perf_counter()
    server = run.Server(
        [sys.executable, "-m", "sssn_server", "--store", str(store), "--port", "0"], LISTENING
    )
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=60)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.01)
    except BaseException:
        server.stop()
        raise
    return server, time.perf_counter() - began


def disk_bytes(store: Path) -> int:
    """The database and its log after a checkpoint (the server is stopped)."""
    database = store / DATABASE_FILE
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    files = [database, database.with_name(database.name + "-wal")]
    return sum(path.stat().st_size for path in files if path.exists())


async def _database_bytes(url: str) -> int:
    """A PostgreSQL store's tables with their indexes and TOAST, vacuumed."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM ANALYZE")
        return int(
            await connection.fetchval(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
                " WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace"
            )
        )
    finally:
        await connection.close()


async def build_store(
    store: Path | str, events: int, rng: random.Random
) -> tuple[Built, float, float]:
    """A fresh store of `events` events, its bytes per event on disk, and the
    seconds building it took."""
    name = store.name if isinstance(store, Path) else store.rsplit("/", 1)[1]
    server, _ = await start_server(store)
    try:
        channel, stub = scale_load.connect(server.address)
        async with channel:
            began = time.perf_counter()
            built = await scale_load.build(
                stub, events, rng, lambda line: progress(f"  {name}: {line}")
            )
            took = time.perf_counter() - began
            progress(f"  {name}: built in {took:.1f} s")
    finally:
        server.stop()
    if isinstance(store, str):
        return built, await _database_bytes(store) / events, took
    return built, disk_bytes(store) / events, took


# Measuring


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = {"small": args.small, "large": args.large}
    rng = random.Random(args.seed)
    metrics: dict[str, dict[str, float]] = {name: {} for name in sizes}
    details: dict[str, dict[str, Any]] = {name: {} for name in sizes}
    with tempfile.TemporaryDirectory(prefix="sssn-scale-") as tmp:
        stores = {name: Path(tmp) / name for name in sizes}
        built: dict[str, Built] = {}
        for name, events in sizes.items():
            progress(f"building the {name} store: {events:,} events")
            built[name], per_event, took = await build_store(stores[name], events, rng)
            metrics[name]["disk_bytes_per_event"] = per_event
            details[name]["build_s"] = took
        servers: dict[str, run.Server] = {}
        targets: dict[str, Target] = {}
        channels = []
        try:
            startups = await timed_starts(stores, args.starts)
            # Both stay up, so the point calls can alternate between them.
            for name in sizes:
                server, _ = await start_server(stores[name])
                servers[name] = server
                metrics[name]["startup_ms"] = 1000 * statistics.median(startups[name])
                details[name]["startups_ms"] = [round(1000 * took, 1) for took in startups[name]]
                metrics[name]["rss_startup_mib"] = _rss_kib(server.process.pid) / 1024
                channel, stub = scale_load.connect(server.address)
                channels.append(channel)
                targets[name] = Target(name, server.address, server.process.pid, built[name], stub)
            for name, target in targets.items():
                details[name]["lag"] = await scale_load.prepare_point_calls(target)
            await point_calls(targets, args.rounds, rng, metrics)
            await idle_latency(targets, args, metrics, details)
            # Fixed, so both stores drain the same amount.
            drain_count = args.drain_events or max(1, int(0.8 * len(built["small"].main_cursors)))
            for name, target in targets.items():
                progress(f"streams on the {name} store")
                await streams(target, args, drain_count, metrics[name], details[name])
        finally:
            for channel in channels:
                await channel.close()
            for server in servers.values():
                server.stop()
    return {"sizes": sizes, "metrics": metrics, "details": details}


async def timed_starts(stores: dict[str, Path], starts: int) -> dict[str, list[float]]:
    """Seconds to a SERVING health check for `starts` starts of each store,
    alternating between the stores, so one slow moment of a shared machine
    neither decides a store's figure nor lands on one store only."""
    took: dict[str, list[float]] = defaultdict(list)
    for number in range(starts):
        progress(f"start-up {number + 1} of {starts}")
        for name, store in stores.items():
            server, seconds = await start_server(store)
            server.stop()
            took[name].append(seconds)
    return took


async def point_calls(
    targets: dict[str, Target],
    rounds: int,
    rng: random.Random,
    metrics: dict[str, dict[str, float]],
) -> None:
    """Every point call in rounds that alternate between the stores, so a
    neighbour's burst on a shared machine lands on both alike."""
    latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
    carried: dict[tuple[str, str], int] = defaultdict(int)
    for name, request, calls in scale_load.POINT_CALLS:
        progress(f"point calls: {name}")
        for _ in range(rounds):
            for store, target in targets.items():
                times, events = await scale_load.point_round(target, rng, name, request, calls)
                latencies[store, name] += times
                carried[store, name] += events
    for (store, name), times in latencies.items():
        metrics[store].update(scale_load.summarize_point_calls(name, times, carried[store, name]))


async def idle_latency(
    targets: dict[str, Target],
    args: argparse.Namespace,
    metrics: dict[str, dict[str, float]],
    details: dict[str, Any],
) -> None:
    """Live latency with nothing else going on, in rounds that alternate between
    the stores (`--live-events` in all, split over `--rounds`), so a
    neighbour's burst on a shared machine lands on both alike."""
    progress("live latency, idle")
    per_round = max(1, args.live_events // args.rounds)
    runs: dict[str, list[scale_load.LiveRun]] = defaultdict(list)
    for number in range(args.rounds):
        for name, target in targets.items():
            channel = f"live-idle-{number}"
            measured = await scale_load.live_run(
                target, channel, per_round, args.live_rate, per_round
            )
            runs[name].append(measured)
    for name, done in runs.items():
        pooled = scale_load.LiveRun(
            [latency for one in done for latency in one.latencies],
            0,
            sum(one.window_s for one in done),
        ).summary()
        metrics[name]["live_idle_p50_ms"] = pooled["p50_ms"]
        metrics[name]["live_idle_p99_ms"] = pooled["p99_ms"]
        details[name]["live_idle"] = {**pooled, "rounds": len(done)}


async def streams(
    target: Target,
    args: argparse.Namespace,
    drain_count: int,
    metrics: dict[str, float],
    details: dict[str, Any],
) -> None:
    under, drained = await live_under_drain(target, args)
    metrics["live_drain_p50_ms"], metrics["live_drain_p99_ms"] = under["p50_ms"], under["p99_ms"]
    metrics["live_drain_over_idle_p99"] = under["p99_ms"] / metrics["live_idle_p99_ms"]
    details["live_drain"] = {**under, "drain": drained}
    catch_up = await scale_load.catch_up_rate(target, drain_count, args.drain_repeats)
    metrics["drain_per_s"] = catch_up["drain_per_s"]
    details["catch_up"] = catch_up
    bulk = await scale_load.bulk_pull(target, args.pull_repeats)
    for key in ("pull_first_ms", "pull_rss_peak_mib", "pull_rss_after_mib"):
        metrics[key] = bulk[key]
    metrics["pull_events"], metrics["pull_total_s"] = bulk["pull_events"], bulk["pull_total_s"]
    details["bulk_pull"] = bulk


async def live_under_drain(
    target: Target, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, Any]]:
    """Live latency while another process drains a subscription whose backlog is
    the whole main channel; the producer runs until the drain ends (and at least
    to a minimum of samples), so the figures cover the whole drain."""
    created = await target.stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=scale_load.MAIN, subscription_id="scale-drain")
    )
    drainer = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "scale_load.py"),
        "drain",
        target.address,
        created.subscription.id,
        str(target.built.main_cursors[-1]),
        stdout=asyncio.subprocess.PIPE,
    )
    assert drainer.stdout is not None
    stdout = drainer.stdout
    try:
        started = json.loads(await asyncio.wait_for(stdout.readline(), scale_load.CALL_TIMEOUT))
        ended = asyncio.Event()
        finished: dict[str, Any] = {}

        async def watch() -> None:
            line = await stdout.readline()
            if line:
                finished.update(json.loads(line))
            ended.set()

        watcher = asyncio.create_task(watch())
        # Bounded only so that a drain that never ends cannot keep it going forever.
        most = int(args.live_rate * scale_load.PULL_TIMEOUT)
        live = (
            await scale_load.live_run(
                target, "live-drain", most, args.live_rate, args.live_minimum, ended
            )
        ).summary()
        await asyncio.wait_for(watcher, scale_load.PULL_TIMEOUT)
        if await drainer.wait() != 0:
            raise RuntimeError("the drain failed")
    except BaseException:
        if drainer.returncode is None:
            drainer.kill()
            await drainer.wait()
        raise
    return live, {**finished, **started}


# Reporting


def ratio(row: Row, small: float, large: float) -> float | None:
    """How many times the large store's cost is the small one's (for rates, the
    inverse), so above 1 always means worse at the large size."""
    numerator, denominator = (small, large) if row.higher_is_better else (large, small)
    return numerator / denominator if denominator > 0 else None


def status(row: Row, large: float, growth: float | None) -> str:
    if row.judge == "flat":
        return "n/a" if growth is None else ("met" if growth <= FLAT else "missed")
    if row.judge == "under-drain":
        return "met" if large <= UNDER_DRAIN else "missed"
    return "—"


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    small, large = results["metrics"]["small"], results["metrics"]["large"]
    lines = []
    for row in ROWS:
        growth = ratio(row, small[row.key], large[row.key])
        lines.append(
            {
                "key": row.key,
                "metric": row.metric,
                "unit": row.unit,
                "small": small[row.key],
                "large": large[row.key],
                "ratio": growth,
                "target": TARGETS[row.judge],
                "status": status(row, large[row.key], growth),
            }
        )
    return lines


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def table(results: dict[str, Any]) -> str:
    sizes = results["sizes"]
    lines = [
        f"| metric | unit | small ({sizes['small']:,} events) | large ({sizes['large']:,} events)"
        " | large vs small | target | status |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for line in rows(results):
        growth = "n/a" if line["ratio"] is None else f"{line['ratio']:.2f}x"
        lines.append(
            f"| {line['metric']} | {line['unit']} | {_number(line['small'])} | "
            f"{_number(line['large'])} | {growth} | {line['target']} | {line['status']} |"
        )
    return "\n".join(lines)


def verdict(results: dict[str, Any]) -> str:
    """One line on the whole run: how many judged rows met their target, the
    largest growth among those that must stay flat, and the live latency under
    the drain."""
    judged = [line for line in rows(results) if line["status"] in {"met", "missed"}]
    met = sum(line["status"] == "met" for line in judged)
    flat_keys = {row.key for row in ROWS if row.judge == "flat"}
    flat = [line for line in judged if line["key"] in flat_keys]
    worst = max(flat, key=lambda line: line["ratio"] or 0.0)
    under = results["metrics"]["large"]["live_drain_over_idle_p99"]
    return (
        f"{met} of {len(judged)} judged rows met; the largest growth {worst['ratio']:.2f}x"
        f" ({worst['metric']}, {worst['unit']}); live p99 while draining {under:.2f}x"
        " the idle p99."
    )


def notes(results: dict[str, Any]) -> list[str]:
    large = results["metrics"]["large"]
    details = results["details"]["large"]
    drain = details["live_drain"]["drain"]
    bulk = details["bulk_pull"]
    lag = details["lag"]
    lines = [
        "- large vs small: how many times the cost on the large store is the cost on the",
        "  small one (for rates, small ÷ large), so above 1 is always worse at the large size.",
        f"- A 100-byte JSON payload takes {large['disk_bytes_per_event']:,.0f} bytes per event"
        f" on disk in the large store ({large['disk_bytes_per_event'] / 100:.1f}x the payload).",
        f"- GetSubscription's lag: pending_count {lag['pending_count']:,} for"
        f" {lag['main_events']:,} events on the channel.",
        f"- The whole-backlog pull asked for {bulk['pull_limit']:,} events and got"
        f" {bulk['pull_events']:,}; the server's RSS went from {bulk['pull_rss_before_mib']:,.0f}"
        f" MiB to {bulk['pull_rss_peak_mib']:,.0f} at most and {bulk['pull_rss_after_mib']:,.0f}"
        " after.",
    ]
    firsts = bulk.get("pull_firsts_ms")
    if firsts:
        lines.append(
            f"  Its first message is the median of {len(firsts)} such pulls from the start of"
            f" the channel, {_spread(firsts, 2)} ms; the one that read to the end took"
            f" {firsts[0]:,.2f}, the others stopped at their first message."
        )
    lines += [
        f"- Live latency while draining: {details['live_drain']['samples']:,} samples while"
        f" another subscription drained {drain['events']:,} events at"
        f" {drain['per_s']:,.0f} events/s.",
    ]
    if details["live_drain"]["sent_after_stop"] > 1:
        lines.append(
            f"  {details['live_drain']['sent_after_stop']:,} of them were sent after the drain"
            " ended (the minimum of samples outlasted it)."
        )
    starts = {name: results["details"][name].get("startups_ms") for name in ("small", "large")}
    if starts["small"] and starts["large"]:
        lines.append(
            f"- Start-up is the median of {len(starts['large'])} starts of each store, taken in"
            f" turn: {_spread(starts['small'])} ms for the small store, {_spread(starts['large'])}"
            " for the large."
        )
    return lines


def _spread(values: list[float], digits: int = 0) -> str:
    return f"{min(values):,.{digits}f} to {max(values):,.{digits}f}"


def _server_version() -> str:
    commit = run._output(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"])
    if commit is None:
        return "unknown"
    dirty = run._output(
        ["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "sssn_server"]
    )
    return f"{commit} (sssn_server modified)" if dirty else commit


HEADER = """# Growth with the store's size

Written by `make bench-scale` (`bench/scale.py --save`): a small and a large store
built through the server, then a fresh server process on each, both measured in
the same run (point calls alternating between them). What each row measures:
[bench/README.md](../bench/README.md#growth-with-the-stores-size-make-bench-scale).
One section per pair of sizes; a run replaces the section of its sizes only.
"""
SECTION = report.SCALE_SECTION


def section(results: dict[str, Any]) -> str:
    """The report of one run: its sizes, machine and versions, the table and notes."""
    environment = results["environment"]
    machine = environment["machine"]
    versions = {name: value for name, value in environment["versions"].items() if value}
    sizes = results["sizes"]
    lines = [
        f"<!-- bench-scale {sizes['small']} {sizes['large']} -->",
        f"## {sizes['small']:,} and {sizes['large']:,} events",
        "",
        f"- date: {environment['date']}",
        f"- server: commit {results.get('server', 'unknown')}",
        f"- CPU: {machine['cpu']}, {machine['cpus']} CPUs",
        f"- RAM: {machine['ram_gib']} GiB",
        f"- kernel: {machine['kernel']}",
        f"- CPU idle: {machine.get('cpu_idle') or 'unknown'}",
        "- versions: " + ", ".join(f"{name} {value}" for name, value in versions.items()),
        "",
        table(results),
        "",
        report.IN_SHORT + verdict(results),
        *notes(results),
        "",
    ]
    return "\n".join(lines)


def markdown(results: dict[str, Any], existing: str = "") -> str:
    """The document with this run's section, keeping other sizes' sections of `existing`."""
    sections = {}
    marks = list(SECTION.finditer(existing))
    for number, mark in enumerate(marks):
        stop = marks[number + 1].start() if number + 1 < len(marks) else len(existing)
        key = (int(mark.group(1)), int(mark.group(2)))
        sections[key] = existing[mark.start() : stop].strip("\n") + "\n"
    sizes = results["sizes"]
    sections[sizes["small"], sizes["large"]] = section(results)
    # Largest first: the run at the full or larger size is the one to read.
    ordered = [sections[key] for key in sorted(sections, key=lambda key: (-key[1], key[0]))]
    return HEADER + "\n" + "\n".join(ordered)


def save(results: dict[str, Any]) -> None:
    DOCS.mkdir(exist_ok=True)
    existing = DOCUMENT.read_text() if DOCUMENT.exists() else ""
    page = markdown(results, existing)
    DOCUMENT.write_text(page)
    benchmarks = DOCS / "benchmarks.md"
    text = benchmarks.read_text() if benchmarks.exists() else "# Benchmarks\n"
    # The growth section is the last of that page, as `make bench` writes it.
    kept = text.split(report.GROWTH_HEADING, 1)[0].rstrip("\n")
    growth = report.growth_section(page)
    benchmarks.write_text(kept + "\n\n" + growth)
    print(f"wrote {DOCUMENT.relative_to(HERE.parent)} and the growth section of docs/benchmarks.md")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=SMALL, help="events in the small store")
    parser.add_argument(
        "--large", type=int, help=f"events in the large store (default {LARGE:,} x --scale)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies the large size (5: 5M events)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds of point calls, and of idle live latency, per store",
    )
    parser.add_argument(
        "--starts", type=int, default=5, help="timed starts per store (the median is reported)"
    )
    parser.add_argument(
        "--live-events",
        type=int,
        default=3000,
        help="live events of the idle stream (split over --rounds)",
    )
    parser.add_argument("--live-rate", type=float, default=500.0, help="live events per second")
    parser.add_argument(
        "--live-minimum", type=int, default=20, help="live events sent even after a drain ends"
    )
    parser.add_argument(
        "--drain-events", type=int, help="catch-up drain size (default: 80%% of the small store)"
    )
    parser.add_argument("--drain-repeats", type=int, default=3)
    parser.add_argument(
        "--pull-repeats",
        type=int,
        default=5,
        help="pulls timed to their first message (the median is reported)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--render", type=Path, help="print (and with --save, save) a results file; measure nothing"
    )
    parser.add_argument("--save", action="store_true", help=f"write {DOCUMENT.name} in docs/")
    args = parser.parse_args(argv)
    if args.large is None:
        args.large = int(LARGE * args.scale)
    if not 0 < args.small < args.large:
        parser.error("need 0 < --small < --large")
    if min(args.starts, args.pull_repeats) < 1:
        parser.error("need --starts and --pull-repeats of at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.render is not None:
        results = json.loads(args.render.read_text())
    else:
        results = asyncio.run(measure(args))
        results["environment"] = run.environment(None, None, None)
        results["server"] = _server_version()
        results["rows"] = rows(results)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print()
    print("\n".join(notes(results)))
    if args.render is None:
        print(f"\n(JSON in {args.results})")
    if args.save:
        save(results)


if __name__ == "__main__":
    main()
