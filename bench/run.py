"""`make bench`: every system started here on loopback, measured in one run, reported as ratios."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE_VENV = HERE / ".venv-ref"
REFERENCE_PACKAGES = ["sssn[server]==0.1.1", "httpx>=0.27"]
RESULTS = HERE / "results" / "latest.json"

OURS = [
    "append_sequential",
    "append_concurrent_16",
    "append_batches_100",
    "pull_drain",
    "query_paging",
    "live_latency",
    "idle_streams_rss",
]
NOOP = ["append_sequential", "append_concurrent_16", "append_batches_100", "pull_drain"]
REFERENCE = ["append_sequential", "append_concurrent_16", "pull_drain", "query_paging"]

# (workload, metric, unit, higher is better)
ROWS = [
    ("append_sequential", "per_s", "events/s", True),
    ("append_sequential", "p50_ms", "ms p50", False),
    ("append_concurrent_16", "per_s", "events/s", True),
    ("append_batches_100", "per_s", "events/s", True),
    ("pull_drain", "per_s", "events/s", True),
    ("query_paging", "per_s", "events/s", True),
    ("live_latency", "p50_ms", "ms p50", False),
    ("live_latency", "p99_ms", "ms p99", False),
    ("idle_streams_rss", "rss_mib", "MiB RSS", False),
]


def ensure_reference_venv() -> Path:
    """Installs the reference into its own venv; our packages never import it."""
    python = REFERENCE_VENV / "bin" / "python"
    if not (REFERENCE_VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(REFERENCE_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *REFERENCE_PACKAGES], check=True
        )
        (REFERENCE_VENV / ".installed").touch()
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A system under test, started as a child process and stopped with SIGINT."""

    def __init__(self, command: list[str], ready: re.Pattern[str] | None = None) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.address = ""
        if ready is not None:
            assert self.process.stdout is not None
            match = ready.search(self.process.stdout.readline())
            if match is None:
                self.stop()
                raise RuntimeError(f"{command[0]} did not start")
            self.address = match.group(1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()


def run_load(command: list[str]) -> dict[str, dict[str, float]]:
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800)
    results = {}
    for line in output.stdout.splitlines():
        record = json.loads(line)
        results[record.pop("workload")] = record
    return results


def measure_ours(scale: float, workdir: Path) -> dict[str, dict[str, float]]:
    server = Server(
        [sys.executable, "-m", "sssn_server", "--store", str(workdir / "ours"), "--port", "0"],
        re.compile(r"listening on (\S+)"),
    )
    try:
        return run_load(
            [
                sys.executable,
                str(HERE / "grpc_load.py"),
                server.address,
                *OURS,
                "--scale",
                str(scale),
                "--server-pid",
                str(server.process.pid),
            ]
        )
    finally:
        server.stop()


def measure_noop(scale: float) -> dict[str, dict[str, float]]:
    server = Server(
        [sys.executable, str(HERE / "noop_server.py")], re.compile(r"listening on (\S+)")
    )
    try:
        return run_load(
            [
                sys.executable,
                str(HERE / "grpc_load.py"),
                server.address,
                *NOOP,
                "--scale",
                str(scale),
                "--noop",
            ]
        )
    finally:
        server.stop()


def measure_reference(python: Path, scale: float, workdir: Path) -> dict[str, dict[str, float]]:
    port = free_port()
    store = workdir / "reference"
    server = Server(
        [
            str(python.parent / "sssn"),
            "--store",
            str(store),
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base_url}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the reference server did not start")
        return run_load(
            [
                str(python),
                str(HERE / "http_load.py"),
                base_url,
                str(store),
                *REFERENCE,
                "--scale",
                str(scale),
            ]
        )
    finally:
        server.stop()


def medians(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    collected: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for workload, metrics in run.items():
            for metric, number in metrics.items():
                collected[workload][metric].append(number)
    return {
        workload: {metric: statistics.median(numbers) for metric, numbers in metrics.items()}
        for workload, metrics in collected.items()
    }


def ratio(ours: float | None, other: float | None, higher_is_better: bool) -> str:
    """How many times better ours is (>1 means ours wins), whichever way the metric points."""
    if not ours or not other:
        return "n/a"
    return f"{(ours / other if higher_is_better else other / ours):.2f}x"


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    def cell(system: str, workload: str, metric: str) -> float | None:
        return results.get(system, {}).get(workload, {}).get(metric)

    def fmt(number: float | None) -> str:
        return "n/a" if number is None else f"{number:,.1f}"

    lines = [
        "| workload | unit | ours | reference | ours vs reference"
        " | no-op ceiling | ours vs ceiling |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload, metric, unit, higher in ROWS:
        ours, reference, noop = (cell(s, workload, metric) for s in ("ours", "reference", "noop"))
        lines.append(
            f"| {workload} | {unit} | {fmt(ours)} | {fmt(reference)} | "
            f"{ratio(ours, reference, higher)} | {fmt(noop)} | {ratio(ours, noop, higher)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per system; medians reported")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="workload size factor (0.1 = quick)"
    )
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    python = None if args.skip_reference else ensure_reference_venv()
    runs: dict[str, list[dict[str, dict[str, float]]]] = defaultdict(list)
    for repetition in range(args.repeat):
        print(f"repetition {repetition + 1}/{args.repeat}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="sssn-bench-") as tmp:
            workdir = Path(tmp)
            runs["ours"].append(measure_ours(args.scale, workdir))
            runs["noop"].append(measure_noop(args.scale))
            if python is not None:
                runs["reference"].append(measure_reference(python, args.scale, workdir))
    results = {system: medians(system_runs) for system, system_runs in runs.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "repeat": args.repeat,
        "scale": args.scale,
        "cpus": os.cpu_count(),
        "results": results,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"\n(medians of {args.repeat} runs; JSON in {RESULTS.relative_to(HERE.parent)})")


if __name__ == "__main__":
    main()
