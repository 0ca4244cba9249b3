"""The container probe against a real server process: SERVING is 0, anything else is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .server_process import ServerProcess


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sssn_server.healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_probe_passes_on_a_serving_server_and_fails_without_one(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "store")
    try:
        healthy = probe("--target", server.address)
        assert healthy.returncode == 0
        assert healthy.stdout.strip() == "SERVING"
        named = probe("--target", server.address, "--service", "sssn.v1.StoreService")
        assert named.returncode == 0
        unknown = probe("--target", server.address, "--service", "no.such.Service")
        assert unknown.returncode == 1
        assert "NOT_FOUND" in unknown.stderr
    finally:
        assert server.stop()[0] == 0
    gone = probe("--target", server.address, "--timeout", "1")
    assert gone.returncode == 1
    assert "UNAVAILABLE" in gone.stderr or "DEADLINE_EXCEEDED" in gone.stderr
