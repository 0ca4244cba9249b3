"""The saved report of `bench/run.py --save`: docs/benchmarks.md and its plot.

run.py imports this module for the markdown (project venv). The plot is drawn by
running this file in bench/.venv-plot, where matplotlib lives:

    bench/.venv-plot/bin/python bench/report.py RESULTS.json OUT.png --order WORKLOAD...
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, dict[str, float]]]

SYSTEMS = {  # key in the results: label, colour
    "ours": ("ours", "#1f77b4"),
    "reference": ("reference sssn 0.1.1 (HTTP)", "#ff7f0e"),
    "noop": ("no-op gRPC ceiling", "#7f7f7f"),
    "jetstream": ("NATS JetStream", "#2ca02c"),
    "postgres": ("ours on PostgreSQL", "#9467bd"),
}
MB_PER_MIB = 1.048576


def _get(results: Results, system: str, workload: str, metric: str) -> float | None:
    return results.get(system, {}).get(workload, {}).get(metric)


# Each check gives what was measured, for the table, and how much of its
# target that is (1.0 or more: met; None: not measured), so a missed target
# says by how much.
Check = tuple[str, float | None]


def _at_least(results: Results, workload: str, metric: str, floor: float, unit: str) -> Check:
    value = _get(results, "ours", workload, metric)
    if value is None:
        return "not measured", None
    return f"{value:,.0f} {unit}", value / floor


def _times(results: Results, workload: str, other: str, floor: float) -> Check:
    """Ours / other for a rate (higher is better) against a floor."""
    ours = _get(results, "ours", workload, "per_s")
    theirs = _get(results, other, workload, "per_s")
    if not ours or not theirs:
        return "not measured", None
    times = ours / theirs
    return f"{times:.2f}x ({ours:,.0f} vs {theirs:,.0f} events/s)", times / floor


def _ahead_of(results: Results, workload: str, other: str, other_workload: str) -> Check:
    """Ours on one workload against another system on its counterpart."""
    ours = _get(results, "ours", workload, "per_s")
    theirs = _get(results, other, other_workload, "per_s")
    if not ours or not theirs:
        return "not measured", None
    return f"{ours / theirs:.2f}x ({ours:,.0f} vs {theirs:,.0f} events/s)", ours / theirs


def _p99(results: Results) -> Check:
    value = _get(results, "ours", "live_latency", "p99_ms")
    if value is None:
        return "not measured", None
    return f"{value:.1f} ms", 10 / value if value else float("inf")


def _under_drain(results: Results) -> Check:
    ratio = _get(results, "ours", "live_under_drain", "over_idle_p99")
    under = _get(results, "ours", "live_under_drain", "p99_ms")
    idle = _get(results, "ours", "live_under_drain", "idle_p99_ms")
    if ratio is None or under is None or idle is None:
        return "not measured", None
    return f"{ratio:.2f}x ({under:.1f} vs {idle:.1f} ms)", 3 / ratio if ratio else float("inf")


def _idle_rss(results: Results) -> Check:
    growth = _get(results, "ours", "idle_streams_rss", "rss_growth_mib")
    streams = _get(results, "ours", "idle_streams_rss", "streams")
    if growth is None or not streams:
        return "not measured", None
    per_1000 = growth * 1000 / streams * MB_PER_MIB
    measured = f"{per_1000:.1f} MB"
    if streams != 1000:
        measured += f" (from {growth:.1f} MiB for {streams:,.0f} streams, scaled to 1,000)"
    return measured, 150 / per_1000 if per_1000 > 0 else float("inf")


TARGETS: list[tuple[str, Callable[[Results], Check]]] = [
    (
        "sequential AppendEvent ≥ 0.7x no-op ceiling",
        lambda r: _times(r, "append_sequential", "noop", 0.7),
    ),
    (
        "16 concurrent AppendEvent ≥ 0.7x no-op ceiling",
        lambda r: _times(r, "append_concurrent_16", "noop", 0.7),
    ),
    (
        "16 concurrent AppendEvent ≥ 5x reference",
        lambda r: _times(r, "append_concurrent_16", "reference", 5),
    ),
    (
        "AppendEvents(100) ≥ 50,000 events/s",
        lambda r: _at_least(r, "append_batches_100", "per_s", 50_000, "events/s"),
    ),
    (
        "AppendEventStream ≥ 20,000 events/s",
        lambda r: _at_least(r, "append_stream", "per_s", 20_000, "events/s"),
    ),
    (
        "AppendEventStream ahead of JetStream's 16 concurrent publishes",
        lambda r: _ahead_of(r, "append_stream", "jetstream", "append_concurrent_16"),
    ),
    (
        "pull drain ≥ 100,000 events/s",
        lambda r: _at_least(r, "pull_drain", "per_s", 100_000, "events/s"),
    ),
    ("pull drain ≥ 10x reference", lambda r: _times(r, "pull_drain", "reference", 10)),
    ("pull drain ≥ 5x JetStream drain", lambda r: _times(r, "pull_drain", "jetstream", 5)),
    ("live latency p99 ≤ 10 ms", _p99),
    ("1,000 idle streams add ≤ 150 MB RSS", _idle_rss),
    ("live p99 while a 1M-event backlog drains ≤ 3x idle p99", _under_drain),
]


def targets(results: Results) -> list[tuple[str, str, str, str]]:
    """(target, measured, share of the target, met/missed/n/a) for each
    target of the issue. The share is the figure over the target, or the
    bound over the figure where lower is better (latency, memory), so that
    100% always means just met."""
    rows = []
    for name, check in TARGETS:
        measured, attained = check(results)
        if attained is None:
            rows.append((name, measured, "n/a", "n/a"))
        else:
            # Rounded down, so that a target just missed never reads 100%.
            share = "∞" if attained == float("inf") else f"{math.floor(attained * 100):,}%"
            rows.append((name, measured, share, "met" if attained >= 1 else "missed"))
    return rows


# How each cost grows with the store is measured by `make bench-scale`, which
# writes its own page; the bench report links to it and repeats each run's
# one-line verdict from it, whichever of the two ran last.
GROWTH_HEADING = "## Growth with the store's size"
IN_SHORT = "- In short: "
SCALE_SECTION = re.compile(r"^<!-- bench-scale (\d+) (\d+) -->$", re.MULTILINE)


def growth_section(scale_page: str) -> str:
    """The section of docs/benchmarks.md on growth: the link to
    docs/benchmarks-scale.md and the verdict of each pair of sizes on it."""
    lines = [
        GROWTH_HEADING,
        "",
        "How each cost grows from a small to a large store (`make bench-scale`):",
        "[benchmarks-scale.md](benchmarks-scale.md).",
    ]
    marks = list(SCALE_SECTION.finditer(scale_page))
    ends = [following.start() for following in marks[1:]] + ([len(scale_page)] if marks else [])
    verdicts = []
    for mark, end in zip(marks, ends, strict=True):
        body = scale_page[mark.end() : end]
        verdict = next((line for line in body.splitlines() if line.startswith(IN_SHORT)), None)
        if verdict is not None:
            small, large = int(mark.group(1)), int(mark.group(2))
            verdicts.append(f"- {small:,} and {large:,} events: {verdict[len(IN_SHORT) :]}")
    if verdicts:
        lines += ["", *verdicts]
    return "\n".join(lines) + "\n"


def markdown(saved: dict[str, Any], table: str, plot: str | None, scale_page: str = "") -> str:
    environment = saved.get("environment", {})
    machine = environment.get("machine", {})
    versions = environment.get("versions", {})

    def shown(value: Any) -> str:
        return "not run" if value is None else str(value)

    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py --save`): every system started on",
        "127.0.0.1 of one machine, measured in the same run, medians of the repetitions.",
        "What each system and workload is: [bench/README.md](../bench/README.md);",
        "how the hot paths work and where the time goes: [performance.md](performance.md).",
        "",
        f"- date: {environment.get('date', 'unknown')}",
        f"- scale: {saved['scale']} (1.0 = the full sizes), repeat: {saved['repeat']}",
        f"- CPU: {machine.get('cpu', 'unknown')}, {shown(machine.get('cpus'))} CPUs",
        f"- RAM: {shown(machine.get('ram_gib'))} GiB",
        f"- kernel: {machine.get('kernel', 'unknown')}",
        f"- CPU idle: {machine.get('cpu_idle') or 'unknown'} (performance.md: what halting costs)",
        "- versions: " + ", ".join(f"{name} {shown(value)}" for name, value in versions.items()),
        "",
    ]
    if saved["scale"] != 1.0:
        lines += [
            f"> A run at scale {saved['scale']}: smaller workloads than the targets name;",
            "> the figures are indicative only. `make bench` runs the full sizes.",
            "",
        ]
    lines += ["## Results", "", table, "", "Ratios: >1 means ours is better.", ""]
    if plot is not None:
        lines += [f"![throughput, log scale]({plot})", ""]
    if "jetstream" in saved["results"]:
        lines += [
            "JetStream runs on file storage with nats-server's defaults, which do not",
            "fsync each message (`sync_interval`, 2 minutes); ours commits every append",
            "with SQLite `synchronous=FULL`, an fsync per commit.",
            "",
        ]
    lines += [
        "## Targets",
        "",
        "| target | measured | of the target | status |",
        "| --- | --- | ---: | --- |",
    ]
    lines += [
        f"| {name} | {measured} | {share} | {status} |"
        for name, measured, share, status in targets(saved["results"])
    ]
    lines += [
        "",
        '"Of the target": how much of it was reached (100% is just met; for',
        "latency and memory, the bound over the figure). Where the time goes for",
        "each target missed: [performance.md](performance.md).",
        "",
        growth_section(scale_page).rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def plot(results: Results, path: Path, order: list[str]) -> None:
    """Grouped horizontal bars of every throughput (events/s) workload, log scale.

    Workloads come in `order` (the table's), then any other one with a rate.
    """
    # Imported here and untyped: matplotlib lives in bench/.venv-plot only.
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")

    workloads = [
        workload
        for workload in order
        if any("per_s" in results.get(system, {}).get(workload, {}) for system in SYSTEMS)
    ]
    for system in SYSTEMS:
        for workload, metrics in results.get(system, {}).items():
            if "per_s" in metrics and workload not in workloads:
                workloads.append(workload)
    present = [system for system in SYSTEMS if system in results]
    height = 0.8 / max(1, len(present))
    figure, axes = pyplot.subplots(figsize=(9, 1.2 + 0.9 * len(workloads)))
    for offset, system in enumerate(present):
        label, colour = SYSTEMS[system]
        rows, values = [], []
        for row, workload in enumerate(workloads):
            value = _get(results, system, workload, "per_s")
            if value:
                rows.append(row - 0.4 + height * (offset + 0.5))
                values.append(value)
        bars = axes.barh(rows, values, height=height, label=label, color=colour)
        axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=7)
    axes.set_yticks(range(len(workloads)), workloads)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("events/s (log scale; higher is better)")
    axes.set_xlim(right=axes.get_xlim()[1] * 4)  # room for the labels
    axes.grid(axis="x", which="major", alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(present), fontsize=8)
    axes.set_title("SSSN gRPC throughput (medians)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description="Draws the plot of a bench/run.py JSON file.")
    parser.add_argument("results", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--order", nargs="*", default=[], help="workloads, top to bottom")
    args = parser.parse_args()
    plot(json.loads(args.results.read_text())["results"], args.png, args.order)


if __name__ == "__main__":
    main()
