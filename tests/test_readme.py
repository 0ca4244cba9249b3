"""The README's first session runs as printed: a fresh store, the client in a venv of its own."""

from __future__ import annotations

import difflib
import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# A fenced block is part of the session when the line before it is one of
#   <!-- session: server -->        the server; it runs until the session ends
#   <!-- session -->                shell commands, run with sh -e in the clone
#   <!-- session: file ~/NAME -->   a file to save before the next commands run
# and what a block prints is the ```text block that follows it, if the next
# fenced block is one. A block with no such output must only succeed.
_MARKER = re.compile(r"^<!-- session(?:: (?P<directive>.+?))? -->$")
_FENCE = re.compile(r"^```(?P<info>\S*)\s*$")

# What the README shows for a server on its default port in a clone at this
# path; the test's server listens on a free port with its store in tmp_path.
SHOWN_ADDRESS = "127.0.0.1:7700"
# The address the README's commands name (`export SSSN_TARGET=...`).
README_TARGET = "localhost:7700"
SHOWN_STORE = "/home/you/sssn-grpc/.sssn"

# `make run` depends on the project's venv and generated modules. The suite
# already runs from both, and remaking them here would rebuild the venv the
# tests run in, so make is told to take them as they are (`-o`); the recipe
# itself, what a newcomer's `make run` runs, is unchanged.
_MAKE_AS_IS = ("-o", ".venv/.installed", "-o", "sssn_proto/v1/.stamp")
_READY = "sssn-server listening on "
# pip downloads nothing twice: the venv's pip keeps using the usual cache
# although HOME moves to tmp_path.
_PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
_STEP_TIMEOUT = 600


@dataclass(frozen=True)
class Step:
    """One block of the session, with the output the README shows for it (None: not shown)."""

    directive: str
    code: str
    line: int
    expected: str | None


def session_steps(text: str) -> list[Step]:
    """The session's blocks in README order, each with the text block that follows it."""
    lines = text.splitlines()
    blocks: list[tuple[int, str, str, str | None]] = []  # line, info, code, marker directive
    previous = ""
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            if lines[index].strip():
                previous = lines[index].strip()
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end] != "```":
            end += 1
        marker = _MARKER.match(previous)
        directive = (marker["directive"] or "run") if marker else None
        blocks.append((index + 1, fence["info"], "\n".join(lines[index + 1 : end]), directive))
        previous = ""
        index = end + 1
    steps = []
    for position, (line, _, code, directive) in enumerate(blocks):
        if directive is None:
            continue
        following = blocks[position + 1] if position + 1 < len(blocks) else None
        shown = following is not None and following[1] == "text" and following[3] is None
        steps.append(Step(directive, code, line, following[2] if shown and following else None))
    return steps


class Server:
    """`make run` in its own process group, as a terminal runs it: Ctrl-C reaches make and
    the server together."""

    def __init__(self, code: str, env: dict[str, str]) -> None:
        command = code.split()
        assert command == ["make", "run"], f"the session's server block is {code!r}"
        self.popen = subprocess.Popen(
            ["make", *_MAKE_AS_IS, "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:
            for line in self.popen.stdout:
                self.output.append(line)
                self.lines.put(line)
        self.lines.put(None)

    def ready_line(self) -> str:
        """The line the server prints once it serves."""
        while True:
            try:
                line = self.lines.get(timeout=120)
            except queue.Empty:
                pytest.fail(f"make run printed no {_READY!r} line:\n{''.join(self.output)}")
            if line is None:
                pytest.fail(f"make run ended before serving:\n{''.join(self.output)}")
            if line.startswith(_READY):
                return line.rstrip("\n")

    def interrupt(self) -> str:
        """Ctrl-C, then everything printed."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
        try:
            self.popen.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(60)
        self._pump.join(60)
        return "".join(self.output)


@pytest.fixture
def session_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a newcomer's terminal, with HOME in tmp_path and a fresh store."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        # A developer's own settings (a token, a target, TLS) or a virtualenv
        # or make invocation around the test runner must not reach the session.
        if not name.startswith(("SSSN_", "MAKE", "MFLAGS", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(
        HOME=str(home),
        PIP_CACHE_DIR=_PIP_CACHE,
        SSSN_STORE=str(tmp_path / "store" / ".sssn"),
        SSSN_PORT="0",
    )
    yield env


def _expand(path: str, env: dict[str, str]) -> Path:
    assert path.startswith("~/"), f"session files are saved under ~/, not {path!r}"
    return Path(env["HOME"]) / path[2:]


def _compare(step: Step, printed: str) -> None:
    assert step.expected is not None
    if printed.rstrip("\n") != step.expected:
        diff = "\n".join(
            difflib.unified_diff(
                step.expected.splitlines(),
                printed.rstrip("\n").splitlines(),
                "README.md",
                "printed",
                lineterm="",
            )
        )
        pytest.fail(f"README.md line {step.line}: the block printed something else:\n{diff}")


def test_the_session_has_a_server_commands_a_file_and_shown_output() -> None:
    steps = session_steps(README.read_text(encoding="utf-8"))
    assert steps and steps[0].directive == "server"
    assert steps[0].expected is not None, "show the line the server prints when it is ready"
    assert [step.directive for step in steps[1:]].count("server") == 0
    assert any(step.directive.startswith("file ") for step in steps)
    assert any(step.directive == "run" and step.expected for step in steps)
    install = next(step for step in steps if step.directive == "run")
    assert "python3 -m venv" in install.code and "pip install ." in install.code


@pytest.mark.timeout(_STEP_TIMEOUT * 2)
def test_the_first_session_runs_as_printed(session_env: dict[str, str]) -> None:
    if not (ROOT / ".venv" / "bin" / "sssn-server").exists():
        pytest.skip("`make run` serves from .venv/, which `make test` creates")
    steps = session_steps(README.read_text(encoding="utf-8"))
    server_step, *rest = steps
    server = Server(server_step.code, session_env)
    try:
        ready = server.ready_line()
        address = ready.removeprefix(_READY).split(" ", 1)[0]
        shown = ready.replace(address, SHOWN_ADDRESS, 1).replace(
            session_env["SSSN_STORE"], SHOWN_STORE, 1
        )
        _compare(server_step, shown)
        env = {**session_env, "SSSN_TARGET": address}
        for step in rest:
            if step.directive.startswith("file "):
                path = _expand(step.directive.removeprefix("file "), env)
                path.write_text(step.code + "\n", encoding="utf-8")
                continue
            result = subprocess.run(
                # The server listens on a free port, not the README's 7700.
                ["sh", "-e", "-c", step.code.replace(f"={README_TARGET}", f"={address}")],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=_STEP_TIMEOUT,
                check=False,
            )
            assert result.returncode == 0, (
                f"README.md line {step.line} failed with status {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
            if step.expected is not None:
                _compare(step, result.stdout)
        # The client that ran is the one installed into the session's own venv
        # (asked from HOME: `python -c` in the clone would import the clone's).
        venv = Path(env["HOME"]) / "sssn-client"
        where = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sssn_client; print(sssn_client.__file__)"],
            cwd=env["HOME"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    finally:
        output = server.interrupt()
    assert "sssn-server stopped" in output, output
