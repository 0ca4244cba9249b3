"""`make bench`: every system started here on loopback, measured in one run, reported as ratios."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import report

from sssn_server.loops import default_event_loop

HERE = Path(__file__).resolve().parent
REFERENCE_VENV = HERE / ".venv-ref"
REFERENCE_PACKAGES = ["sssn[server]==0.1.1", "httpx>=0.27"]
# NATS JetStream, the broker baseline: Debian's nats-server, driven with nats-py
# from a venv of its own so the project's venv stays clean.
NATS_VENV = HERE / ".venv-nats"
NATS_PACKAGES = ["nats-py>=2.6"]
# matplotlib draws docs/benchmarks.png (--save) from a venv of its own.
PLOT_VENV = HERE / ".venv-plot"
PLOT_PACKAGES = ["matplotlib>=3.7"]
RESULTS = HERE / "results" / "latest.json"
DOCS = HERE.parent / "docs"

OURS = [
    "append_sequential",
    "append_concurrent_16",
    "append_batches_100",
    "append_stream",
    "pull_drain",
    "query_paging",
    "live_latency",
    "idle_streams_rss",
]
# Measured by bench/drain.py on a store built for them (ours only); on
# PostgreSQL also `cursor_allocation` (bench/pg_cursors.py).
OURS_STORE = ["live_under_drain", "disk_per_event"]
NOOP = [
    "append_sequential",
    "append_concurrent_16",
    "append_batches_100",
    "append_stream",
    "pull_drain",
]
REFERENCE = ["append_sequential", "append_concurrent_16", "pull_drain", "query_paging"]
JETSTREAM = ["append_sequential", "append_concurrent_16", "append_stream", "pull_drain"]

# (workload, metric, unit, higher is better)
ROWS = [
    ("append_sequential", "per_s", "events/s", True),
    ("append_sequential", "p50_ms", "ms p50", False),
    ("append_concurrent_16", "per_s", "events/s", True),
    ("append_batches_100", "per_s", "events/s", True),
    ("append_stream", "per_s", "events/s", True),
    ("pull_drain", "per_s", "events/s", True),
    ("query_paging", "per_s", "events/s", True),
    ("live_latency", "p50_ms", "ms p50", False),
    ("live_latency", "p99_ms", "ms p99", False),
    ("idle_streams_rss", "rss_mib", "MiB RSS", False),
    ("live_under_drain", "p99_ms", "ms p99", False),
    ("live_under_drain", "over_idle_p99", "x idle p99", False),
    ("disk_per_event", "bytes", "bytes/event", False),
    # PostgreSQL alone (bench/pg_cursors.py): one-row commits through a locked
    # counter row, as the store hands out cursors, over a plain identity column.
    ("cursor_allocation", "counter_cost", "x identity time", False),
    # ... and what the commit's NOTIFY adds to each of those transactions.
    ("cursor_allocation", "notify_cost", "x without NOTIFY", False),
]


def ensure_venv(venv: Path, packages: list[str]) -> Path:
    """A venv of its own for packages our packages never import; reinstalled when they change."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    wanted = "\n".join(packages) + "\n"
    if not marker.exists() or marker.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
        marker.write_text(wanted)
    return python


def ensure_optional_venv(venv: Path, packages: list[str], purpose: str) -> Path | None:
    """ensure_venv, or None with a note on stderr when the packages cannot be installed."""
    try:
        return ensure_venv(venv, packages)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"note: {purpose} skipped: cannot install {packages}: {error}", file=sys.stderr)
        return None


def find_nats_server() -> str | None:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    return shutil.which("nats-server") or shutil.which(
        "nats-server", path="/usr/local/sbin:/usr/sbin:/sbin"
    )


def ensure_nats_server() -> str | None:
    """nats-server from the distribution's packages where missing; None (and a note) if not."""
    found = find_nats_server()
    if found is not None:
        return found
    if os.geteuid() == 0:
        sudo: list[str] = []
    elif shutil.which("sudo") is not None:
        sudo = ["sudo", "-n"]  # never waits for a password
    else:
        print(
            "note: JetStream skipped: nats-server is missing and there is no sudo", file=sys.stderr
        )
        return None
    if shutil.which("apt-get") is None:
        print(
            "note: JetStream skipped: nats-server is missing and there is no apt-get",
            file=sys.stderr,
        )
        return None
    install = [
        *sudo,
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "nats-server",
    ]
    print("nats-server not found: installing it with apt-get", file=sys.stderr, flush=True)
    errors = ""
    # A second try after `apt-get update`, for package lists that are stale or missing.
    for before in ([], [*sudo, "apt-get", "update"]):
        try:
            if before:
                subprocess.run(before, capture_output=True, text=True, timeout=600, check=True)
            done = subprocess.run(install, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as error:
            errors = str(error)
            continue
        errors = done.stderr.strip()
        if done.returncode == 0 and (found := find_nats_server()) is not None:
            return found
    print(
        f"note: JetStream skipped: apt-get could not install nats-server: {errors}", file=sys.stderr
    )
    return None


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


def measure_ours(scale: float, workdir: Path, cluster: Any = None) -> dict[str, dict[str, float]]:
    """Our server on a fresh SQLite store, or with `cluster` (a running
    `tools/pg_cluster.PostgresCluster`) on fresh PostgreSQL databases."""
    run = f"run{next(_RUNS)}"
    store = str(workdir / "ours") if cluster is None else cluster.create_database(f"{run}_ours")
    server = Server(
        [sys.executable, "-m", "sssn_server", "--store", store, "--port", "0"],
        re.compile(r"listening on (\S+)"),
    )
    try:
        results = run_load(
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
    # A server of its own over a store of its own: the drain needs a large
    # backlog, and the disk figure a store holding nothing else.
    drain = str(workdir / "drain") if cluster is None else cluster.create_database(f"{run}_drain")
    results.update(run_load([sys.executable, str(HERE / "drain.py"), drain, "--scale", str(scale)]))
    if cluster is not None:
        cursors = cluster.create_database(f"{run}_cursors")
        results.update(
            run_load([sys.executable, str(HERE / "pg_cursors.py"), cursors, "--scale", str(scale)])
        )
    return results


_RUNS = itertools.count()
# How many replicas share one database in `replicas_N` (bench/replicas.py).
REPLICAS = (1, 2, 3)


def measure_replicas(scale: float, cluster: Any) -> dict[str, dict[str, float]]:
    """One, two and three servers on one fresh database each time, driven
    together by bench/replicas.py."""
    results: dict[str, dict[str, float]] = {}
    run = f"run{next(_RUNS)}"
    for count in REPLICAS:
        url = cluster.create_database(f"{run}_replicas{count}")
        servers = []
        try:
            for _ in range(count):
                servers.append(
                    Server(
                        [sys.executable, "-m", "sssn_server", "--store", url, "--port", "0"],
                        re.compile(r"listening on (\S+)"),
                    )
                )
            results.update(
                run_load(
                    [
                        sys.executable,
                        str(HERE / "replicas.py"),
                        *(server.address for server in servers),
                        "--pids",
                        ",".join(str(server.process.pid) for server in servers),
                        "--scale",
                        str(scale),
                    ]
                )
            )
        finally:
            for server in servers:
                server.stop()
    return results


def replicas_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Replicas on one PostgreSQL, each against one replica in the same run."""
    measured = results.get("replicas", {})
    one = measured.get("replicas_1", {})
    if not one:
        return ""
    lines = [
        "| replicas | appends/s | vs 1 replica | live p50 ms | live p99 ms"
        " | server CPU ms per 1k appends (all) | busiest replica |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count in REPLICAS:
        row = measured.get(f"replicas_{count}")
        if not row:
            continue
        lines.append(
            f"| {count} | {row['per_s']:,.0f} | {ratio(row['per_s'], one['per_s'], True)} |"
            f" {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['cpu_ms_per_1k']:,.0f} |"
            f" {row['max_replica_cpu_ms_per_1k']:,.0f} |"
        )
    return "\n".join(lines)


def start_postgres() -> Any:
    """A durable PostgreSQL cluster of the bench's own (fsync on, as in
    production), from tools/pg_cluster.py; None where PostgreSQL is missing."""
    sys.path.insert(0, str(HERE.parent / "tools"))
    import pg_cluster

    if pg_cluster.find_pg_bin() is None:
        print("note: PostgreSQL is not installed; its columns stay empty", file=sys.stderr)
        return None
    cluster = pg_cluster.PostgresCluster()
    cluster.start()
    return cluster


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


def measure_jetstream(
    server_binary: str, python: Path, scale: float, workdir: Path
) -> dict[str, dict[str, float]]:
    """nats-server with JetStream on file storage in the temp dir, driven by nats_load.py."""
    port = free_port()
    store = workdir / "jetstream"
    server = Server([server_binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.1)
        return run_load(
            [
                str(python),
                str(HERE / "nats_load.py"),
                f"nats://127.0.0.1:{port}",
                *JETSTREAM,
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
        " | no-op ceiling | ours vs ceiling | JetStream | ours vs JetStream"
        " | ours on PostgreSQL | SQLite vs PostgreSQL |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    systems = ("ours", "reference", "noop", "jetstream", "postgres")
    for workload, metric, unit, higher in ROWS:
        ours, reference, noop, jetstream, postgres = (
            cell(system, workload, metric) for system in systems
        )
        lines.append(
            f"| {workload} | {unit} | {fmt(ours)} | {fmt(reference)} | "
            f"{ratio(ours, reference, higher)} | {fmt(noop)} | {ratio(ours, noop, higher)} | "
            f"{fmt(jetstream)} | {ratio(ours, jetstream, higher)} | "
            f"{fmt(postgres)} | {ratio(ours, postgres, higher)} |"
        )
    return "\n".join(lines)


def _output(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout or done.stderr).strip()


def _venv_version(python: Path | None, package: str) -> str | None:
    if python is None:
        return None
    return _output(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"]
    )


def _postgres_version() -> str | None:
    sys.path.insert(0, str(HERE.parent / "tools"))
    import pg_cluster

    directory = pg_cluster.find_pg_bin()
    if directory is None:
        return None
    version = _output([str(directory / "postgres"), "--version"])
    return version.rsplit(" ", 1)[-1] if version else None


def _event_loop() -> str:
    """The loop our server and the no-op ceiling run on (their default here)."""
    loop = default_event_loop()
    if loop == "uvloop":
        return f"uvloop {importlib.metadata.version('uvloop')}"
    return loop


def _cpu_idle() -> str | None:
    """How idle CPUs wait (Linux cpuidle): on VMs that halt them at once, every
    call that waits pays for waking up, which moves the no-op ceiling most."""
    sysfs = Path("/sys/devices/system/cpu/cpuidle")
    try:
        parts = [f"{sysfs.joinpath('current_driver').read_text().strip()} driver"]
    except OSError:
        return None
    poll = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
    if poll.exists():
        parts.append(f"guest_halt_poll_ns {poll.read_text().strip()}")
    return ", ".join(parts)


def environment(
    reference: Path | None, nats_server: str | None, nats_python: Path | None
) -> dict[str, Any]:
    """The machine and every version the figures depend on, for the saved report."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    memory = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    server_version = _output([nats_server, "--version"]) if nats_server else None
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
            "cpus": os.cpu_count(),
            "ram_gib": round(int(memory.group(1)) / 1024**2, 1) if memory else None,
            "kernel": f"{platform.system()} {platform.release()}",
            "cpu_idle": _cpu_idle(),
        },
        "versions": {
            "python": platform.python_version(),
            "grpcio": importlib.metadata.version("grpcio"),
            "protobuf": importlib.metadata.version("protobuf"),
            "aiosqlite": importlib.metadata.version("aiosqlite"),
            "sqlite": sqlite3.sqlite_version,
            "asyncpg": importlib.metadata.version("asyncpg"),
            "postgresql": _postgres_version(),
            "event loop": _event_loop(),
            "reference sssn": _venv_version(reference, "sssn"),
            "nats-server": server_version.removeprefix("nats-server: ") if server_version else None,
            "nats-py": _venv_version(nats_python, "nats-py"),
        },
    }


def save(saved: dict[str, Any], markdown_table: str) -> None:
    """docs/benchmarks.md, and docs/benchmarks.png when matplotlib can be installed."""
    DOCS.mkdir(exist_ok=True)
    png = DOCS / "benchmarks.png"
    plotter = ensure_optional_venv(PLOT_VENV, PLOT_PACKAGES, "the plot")
    plotted = False
    if plotter is not None:
        plot = subprocess.run(
            [
                str(plotter),
                str(HERE / "report.py"),
                str(RESULTS),
                str(png),
                "--order",
                *dict.fromkeys(workload for workload, _, unit, _ in ROWS if unit == "events/s"),
            ],
            capture_output=True,
            text=True,
        )
        plotted = plot.returncode == 0
        if not plotted:
            print(f"note: the plot failed:\n{plot.stderr}", file=sys.stderr)
    document = DOCS / "benchmarks.md"
    scale_page = DOCS / "benchmarks-scale.md"
    growth = scale_page.read_text() if scale_page.exists() else ""
    document.write_text(
        report.markdown(saved, markdown_table, png.name if plotted else None, growth)
    )
    written = [str(path.relative_to(HERE.parent)) for path in (document, png) if path.exists()]
    print(f"wrote {' and '.join(written)}")


def repeat_once(
    args: argparse.Namespace,
    runs: dict[str, list[dict[str, dict[str, float]]]],
    python: Path | None,
    nats_server: str | None,
    nats_python: Path | None,
    cluster: Any,
) -> None:
    """One repetition of every system, each on fresh storage."""
    with tempfile.TemporaryDirectory(prefix="sssn-bench-") as tmp:
        workdir = Path(tmp)
        runs["ours"].append(measure_ours(args.scale, workdir))
        if cluster is not None:
            runs["postgres"].append(measure_ours(args.scale, workdir, cluster))
            runs["replicas"].append(measure_replicas(args.scale, cluster))
        runs["noop"].append(measure_noop(args.scale))
        if python is not None:
            runs["reference"].append(measure_reference(python, args.scale, workdir))
        if nats_server is not None and nats_python is not None:
            try:
                runs["jetstream"].append(
                    measure_jetstream(nats_server, nats_python, args.scale, workdir)
                )
            except (RuntimeError, subprocess.SubprocessError) as error:
                details = getattr(error, "stderr", None) or ""
                print(f"note: JetStream run failed: {error}\n{details}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per system; medians reported")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="workload size factor (0.1 = quick)"
    )
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-nats", action="store_true", help="leave out NATS JetStream")
    parser.add_argument(
        "--skip-postgres", action="store_true", help="leave out our server on PostgreSQL"
    )
    parser.add_argument(
        "--save", action="store_true", help="write docs/benchmarks.md and docs/benchmarks.png"
    )
    args = parser.parse_args()
    python = None if args.skip_reference else ensure_venv(REFERENCE_VENV, REFERENCE_PACKAGES)
    nats_server = nats_python = None
    if not args.skip_nats:
        nats_server = ensure_nats_server()
        if nats_server is not None:
            nats_python = ensure_optional_venv(NATS_VENV, NATS_PACKAGES, "JetStream")
    cluster = None if args.skip_postgres else start_postgres()
    runs: dict[str, list[dict[str, dict[str, float]]]] = defaultdict(list)
    try:
        for repetition in range(args.repeat):
            print(f"repetition {repetition + 1}/{args.repeat}", file=sys.stderr, flush=True)
            repeat_once(args, runs, python, nats_server, nats_python, cluster)
    finally:
        if cluster is not None:
            cluster.destroy()
    results = {system: medians(system_runs) for system, system_runs in runs.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    saved = {
        "repeat": args.repeat,
        "scale": args.scale,
        "cpus": os.cpu_count(),
        "environment": environment(python, nats_server, nats_python),
        "results": results,
    }
    RESULTS.write_text(json.dumps(saved, indent=2) + "\n")
    markdown_table = table(results)
    scaling = replicas_table(results)
    if scaling:
        markdown_table += (
            "\n\nReplicas on one PostgreSQL (`bench/replicas.py`: 16 appenders spread over"
            " them, a follower on each; all on this machine's cores, with the database):\n\n"
            + scaling
        )
    print(markdown_table)
    print(f"\n(medians of {args.repeat} runs; JSON in {RESULTS.relative_to(HERE.parent)})")
    if args.save:
        save(saved, markdown_table)


if __name__ == "__main__":
    main()
