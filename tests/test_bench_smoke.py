"""A tiny run of the benchmark code against real servers, so `make bench` cannot rot unseen.

It measures nothing worth reading (every size is scaled to a handful of
events); it checks that every workload runs against our server and the no-op
ceiling, answers in the shape the report reads, and that the report renders.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from sssn_server.app import SSSNServer

from .backends import Databases
from .server_process import ServerProcess

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCALE = "0.005"


@pytest.fixture(scope="module")
def bench_modules() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        import report
        import run

        yield run, report
    finally:
        sys.path.remove(str(BENCH))


async def _load(*arguments: str) -> dict[str, dict[str, float]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / "grpc_load.py"),
        *arguments,
        "--scale",
        SCALE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    results = {}
    for line in out.decode().splitlines():
        record = json.loads(line)
        results[record.pop("workload")] = record
    return results


async def _store_workloads(store: Path | str) -> dict[str, dict[str, float]]:
    """bench/drain.py's workloads at a tiny scale, on a store of their own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / "drain.py"),
        str(store),
        "--scale",
        "0.002",
        cwd=BENCH,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    return {
        (record := json.loads(line)).pop("workload"): record for line in out.decode().splitlines()
    }


async def _noop_server() -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH / "noop_server.py"), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    assert "listening on" in line, line
    return process, line.split()[-1]


async def test_every_workload_runs_and_the_report_renders(
    server: SSSNServer, bench_modules: Any, empty_store_location: Path | str
) -> None:
    run, report = bench_modules
    ours = await _load(server.address, *run.OURS, "--server-pid", str(os.getpid()))
    assert set(ours) == set(run.OURS)
    on_store = await _store_workloads(empty_store_location)
    assert set(on_store) == set(run.OURS_STORE)
    assert on_store["live_under_drain"]["drained_events"] == 1800  # 9 in 10 of 2,000
    assert on_store["live_under_drain"]["over_idle_p99"] > 0
    assert on_store["disk_per_event"]["events"] == 2000
    assert on_store["disk_per_event"]["bytes"] > 100  # a 100-byte payload and more
    ours.update(on_store)
    assert ours["pull_drain"]["events"] == 500  # 100,000 scaled
    assert ours["live_latency"]["samples"] > 0 and ours["idle_streams_rss"]["streams"] == 5
    noop, address = await _noop_server()
    try:
        ceiling = await _load(address, *run.NOOP, "--noop")
    finally:
        noop.terminate()
        await noop.wait()
    assert set(ceiling) == set(run.NOOP)
    results = {"ours": ours, "noop": ceiling}
    table = run.table(results)
    assert table.count("\n") == len(run.ROWS) + 1
    rows = report.targets(results)
    assert len(rows) == len(report.TARGETS)
    # Without the reference and JetStream their targets cannot be judged.
    assert {status for name, _, _, status in rows if "reference" in name} == {"n/a"}
    assert all(status in {"met", "missed", "n/a"} for _, _, _, status in rows)
    # A judged target says how much of it was reached: 100% or more is met.
    for _, _, share, status in rows:
        if status != "n/a":
            reached = float("inf") if share == "∞" else float(share.rstrip("%").replace(",", ""))
            assert (reached >= 100) == (status == "met"), (share, status)
    assert report.targets({"ours": {"append_batches_100": {"per_s": 40_000}}})[3][2:] == (
        "80%",
        "missed",
    )
    saved = {
        "scale": 0.005,
        "repeat": 1,
        "environment": run.environment(None, None, None),
        "results": results,
    }
    document = report.markdown(saved, table, None)
    assert table in document and "at scale 0.005" in document
    assert "[benchmarks-scale.md](benchmarks-scale.md)" in document
    # It repeats the verdict of each section of the growth page.
    scale_page = "<!-- bench-scale 10 20 -->\n## 10 and 20 events\n\n- In short: all met.\n"
    with_growth = report.markdown(saved, table, None, scale_page)
    assert with_growth.endswith("- 10 and 20 events: all met.\n")
    # How idle vCPUs wait moves the ceiling most, so the report names it.
    idle = saved["environment"]["machine"]["cpu_idle"]
    assert f"- CPU idle: {idle or 'unknown'} " in document
    driver = Path("/sys/devices/system/cpu/cpuidle/current_driver")
    if driver.exists():
        assert idle is not None and idle.startswith(driver.read_text().strip())


async def test_the_cursor_allocation_workload_runs(postgres: Databases) -> None:
    url = postgres.create(migrated=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / "pg_cursors.py"),
        url,
        "--scale",
        "0.001",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    record = json.loads(out)
    assert record["workload"] == "cursor_allocation"
    assert record["identity_per_s"] > 0 and record["counter_per_s"] > 0
    assert record["counter_cost"] == record["identity_per_s"] / record["counter_per_s"]
    assert record["notify_cost"] == record["counter_per_s"] / record["notified_per_s"]


async def test_the_replicas_workload_runs_on_two_replicas_and_renders(
    postgres: Databases, bench_modules: Any
) -> None:
    run, _report = bench_modules
    url = postgres.create(migrated=False)
    replicas = [ServerProcess(url) for _ in range(2)]
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH / "replicas.py"),
            *(replica.address for replica in replicas),
            "--pids",
            ",".join(str(replica.process.pid) for replica in replicas),
            "--scale",
            "0.01",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
    finally:
        for replica in replicas:
            replica.kill()
    assert process.returncode == 0, err.decode()
    record = json.loads(out)
    assert record.pop("workload") == "replicas_2"
    # Each of the 2 followers delivered every one of the 32 appends (4,000 scaled).
    assert record["samples"] == 2 * 32
    assert record["per_s"] > 0 and record["cpu_ms_per_1k"] >= record["max_replica_cpu_ms_per_1k"]
    table = run.replicas_table({"replicas": {"replicas_1": record, "replicas_2": record}})
    assert table.count("\n") == 3 and "| 2 |" in table and "1.00x" in table
