"""Runs `python -m sssn_server` as a real child process for lifecycle and durability tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

_LISTENING = re.compile(r"listening on (\S+)")


class ServerProcess:
    """A server subprocess on 127.0.0.1 with its store in `store` (a folder or a URL)."""

    def __init__(self, store: Path | str, *extra: str, port: int = 0) -> None:
        self.store = store
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sssn_server",
                "--store",
                str(store),
                "--port",
                str(port),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = _LISTENING.search(line)
        if match is None:
            self.process.kill()
            _, errors = self.process.communicate(timeout=30)
            raise AssertionError(f"server did not start: {line!r} {errors}")
        self.address = match.group(1)
        self.port = int(self.address.rsplit(":", 1)[1])

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str, str]:
        """Sends `signum` and returns (exit status, rest of stdout, stderr)."""
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.communicate(timeout=30)  # also closes the pipes
