"""Fixtures for client and CLI tests: a real server on its own event loop thread, and runners."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from sssn_client import AsyncSSSNClient, SSSNClient
from sssn_server.app import SSSNServer
from sssn_server.config import ServerConfig

from .helpers import DEADLINE

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


class ServerThread:
    """A real server on 127.0.0.1 whose event loop runs in a background thread.

    Synchronous clients block their thread, so they cannot share the event
    loop of an in-process `grpc.aio` server; this gives the server its own.
    Restarting keeps the port, so clients reconnect to the same address.
    """

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = 0
        self.server: SSSNServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sssn-server")
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def parked_followers(self) -> int:
        """Following streams idle on the server (their cursor is persisted)."""
        return self.server.service.parked_followers if self.server else 0

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(DEADLINE)

    def start(self, **overrides: Any) -> str:
        """Starts the server (on its previous port after the first start)."""
        assert self.server is None, "already running"
        settings: dict[str, Any] = {"store": self.store, "host": "127.0.0.1", "port": self.port}
        settings.update(overrides)
        server = SSSNServer(ServerConfig(**settings))
        self.run(server.start())
        self.server = server
        self.port = server.port
        return self.address

    def stop(self) -> None:
        """Stops the server at once (following streams end with UNAVAILABLE)."""
        if self.server is not None:
            server, self.server = self.server, None
            self.run(server.stop(grace=0))

    def close(self) -> None:
        self.stop()
        self.run(self._loop.shutdown_asyncgens())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(DEADLINE)
        self._loop.close()


@pytest.fixture
def server_thread(store_dir: Path) -> Iterator[ServerThread]:
    """A started `ServerThread` over the test's store; stopped after the test."""
    running = ServerThread(store_dir)
    try:
        running.start()
        yield running
    finally:
        running.close()


@pytest.fixture
def client(server_thread: ServerThread) -> Iterator[SSSNClient]:
    """A synchronous client of `server_thread`."""
    with SSSNClient(server_thread.address, timeout=DEADLINE) as connected:
        yield connected


@pytest.fixture
async def aclient(server: SSSNServer) -> Any:
    """An asyncio client of the in-process `server` fixture."""
    async with AsyncSSSNClient(server.address, timeout=DEADLINE) as connected:
        yield connected


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Waits for a condition of the system's state (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def run_cli(
    target: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs the installed `sssn` script against `target` and waits for it."""
    return subprocess.run(
        [str(BIN / "sssn"), "--target", target, *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        env=env,
        check=False,
    )


class Process:
    """A long-running child process whose output is read line by line, with deadlines."""

    def __init__(self, *command: str, cwd: Path | None = None) -> None:
        self.popen = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._errors: list[str] = []
        assert self.popen.stdout is not None and self.popen.stderr is not None
        # Both pipes are drained continuously so a chatty child never blocks on a full pipe.
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self._lines.put)),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self._errors.append)),
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream: IO[str], sink: Callable[[Any], None]) -> None:
        with stream:
            for line in stream:
                sink(line)
        sink(None)

    def readline(self) -> str:
        """The next line of stdout; fails if none comes within the deadline."""
        line = self._lines.get(timeout=DEADLINE)
        assert line is not None, f"the process ended early: {self.stderr}"
        return line

    @property
    def stderr(self) -> str:
        return "".join(line for line in self._errors if line is not None)

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Sends `signum`, waits for the exit and returns the status (kills on a hang)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
        try:
            return self.popen.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(DEADLINE)
            raise
        finally:
            for pump in self._pumps:
                pump.join(DEADLINE)

    def rest(self) -> list[str]:
        """The stdout lines not read yet, once the process has exited."""
        lines = []
        while (line := self._lines.get(timeout=DEADLINE)) is not None:
            lines.append(line)
        return lines


@pytest.fixture
def processes() -> Iterator[Callable[..., Process]]:
    """Starts child processes; any still running at the end is killed."""
    started: list[Process] = []

    def start(*command: str, cwd: Path | None = None) -> Process:
        process = Process(*command, cwd=cwd)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()
        process.stop()
