"""A tiny run of the growth benchmark (`make bench-scale`), so its code cannot rot unseen."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
TINY = [
    "--small",
    "200",
    "--large",
    "2000",
    "--rounds",
    "2",
    "--live-events",
    "30",
    "--live-minimum",
    "5",
    "--drain-repeats",
    "1",
    "--starts",
    "2",
    "--pull-repeats",
    "3",
]


@pytest.fixture(scope="module")
def scale() -> Iterator[Any]:
    sys.path.insert(0, str(BENCH))
    try:
        import scale

        yield scale
    finally:
        sys.path.remove(str(BENCH))


def test_every_row_is_measured_and_the_report_renders(scale: Any, tmp_path: Path) -> None:
    # Only the shape is checked: at these sizes the figures mean nothing.
    results_file = tmp_path / "scale.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "scale.py"), *TINY, "--results", str(results_file)],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(results_file.read_text())
    assert results["sizes"] == {"small": 200, "large": 2000}
    rows = results["rows"]
    assert [row["key"] for row in rows] == [row.key for row in scale.ROWS]
    for row in rows:
        for column in ("small", "large", "ratio"):
            value = row[column]
            assert isinstance(value, int | float) and math.isfinite(value), (row, column)
            assert value >= 0, (row, column)
        assert row["status"] in {"met", "missed", "—"}, row
    by_key = {row["key"]: row for row in rows}
    # Rates are inverted, so a ratio above 1 is always worse at the large size.
    rate = by_key["drain_per_s"]
    assert rate["ratio"] == pytest.approx(rate["small"] / rate["large"])
    # The whole backlog is asked for; the server may cap what one pull sends.
    pulled = results["details"]["large"]["bulk_pull"]
    assert 0 < pulled["pull_events"] <= pulled["pull_limit"]
    # Its first message is the median of the timed pulls.
    firsts = pulled["pull_firsts_ms"]
    assert len(firsts) == 3
    assert by_key["pull_first_ms"]["large"] == pytest.approx(sorted(firsts)[1], abs=0.01)
    # Start-up is the median of the timed starts, which alternate between the stores.
    for store in ("small", "large"):
        starts = results["details"][store]["startups_ms"]
        assert len(starts) == 2 and all(took > 0 for took in starts)
        assert by_key["startup_ms"][store] == pytest.approx(sum(starts) / 2, abs=0.1)
    assert "the median of 2 starts of each store" in done.stdout
    # Idle live latency pools rounds that alternate between the stores.
    for store in ("small", "large"):
        idle = results["details"][store]["live_idle"]
        assert (idle["rounds"], idle["samples"]) == (2, 30)
        assert by_key["live_idle_p99_ms"][store] == pytest.approx(idle["p99_ms"], abs=0.01)
    lag = results["details"]["large"]["lag"]
    assert lag["main_events"] == 1800  # nine in ten events are on the main channel
    table = scale.table(results)
    assert table in done.stdout
    assert table.count("\n") == len(scale.ROWS) + 1
    document = scale.markdown(results)
    assert table in document and "## 200 and 2,000 events" in document
    # Each section has a one-line verdict, which docs/benchmarks.md repeats.
    judged = [row for row in rows if row["status"] in {"met", "missed"}]
    met = sum(row["status"] == "met" for row in judged)
    verdict = f"{met} of {len(judged)} judged rows met; the largest growth "
    assert f"- In short: {verdict}" in document
    growth = scale.report.growth_section(document)
    assert "[benchmarks-scale.md](benchmarks-scale.md)" in growth
    assert f"- 200 and 2,000 events: {verdict}" in growth
    # Saving one pair of sizes keeps the sections of others and replaces its own.
    other = scale.markdown({**results, "sizes": {"small": 10, "large": 20}})
    both = scale.markdown(results, other)
    assert both.index("## 200 and 2,000 events") < both.index("## 10 and 20 events")
    assert scale.markdown(results, both) == both
    assert scale.report.growth_section(both).count(" judged rows met;") == 2
    # The saved JSON renders again without measuring.
    rendered = subprocess.run(
        [sys.executable, str(BENCH / "scale.py"), "--render", str(results_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert table in rendered.stdout
