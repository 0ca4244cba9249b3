"""The examples run against a real server, so what they show stays true."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

from sssn_client import Event, SSSNClient

from . import client_fixtures
from .client_fixtures import REPO, Process, ServerThread, wait_until
from .helpers import DEADLINE

server_thread = client_fixtures.server_thread
client = client_fixtures.client
processes = client_fixtures.processes

EXAMPLES = REPO / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        check=False,
    )


def test_first_channel_walkthrough_runs_and_can_run_again(
    server_thread: ServerThread, client: SSSNClient
) -> None:
    for _ in range(2):
        result = run_example("first_channel.py", server_thread.address)
        assert result.returncode == 0, result.stderr
        assert "channel notes (feed)" in result.stdout
        assert "pulled" in result.stdout and "live" in result.stdout
        assert "first line '# Notes'" in result.stdout
    snapshot = client.get_snapshot("notes-latest")
    assert snapshot.value["last_text"] == "hello back"
    assert len(client.query_events("notes")) == 6


# The restart-safe processor


def derived_events(client: SSSNClient) -> list[Event]:
    return client.query_events("derived", limit=1000)


def drain(target: str) -> str:
    result = run_example("channel_processor.py", target, "--drain")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_processor_derives_one_event_per_source_event(
    server_thread: ServerThread, client: SSSNClient
) -> None:
    client.create_channel({"name": "raw"})
    sources = client.append_events(
        [{"channel": "raw", "payload": {"text": f"  Hello   World {i} "}} for i in range(5)]
    )
    assert "processed 5 events" in drain(server_thread.address)
    derived = derived_events(client)
    assert [event.parent_ids for event in derived] == [(source.id,) for source in sources]
    assert derived[0].payload == {"text": "hello world 0", "words": 3}
    latest = client.get_snapshot("latest")
    assert latest.value["source_cursor"] == sources[-1].cursor
    assert latest.source_event_id == derived[-1].id
    assert "processed 0 events" in drain(server_thread.address)  # nothing twice


def test_processor_finishes_the_work_of_a_crashed_predecessor(
    server_thread: ServerThread, client: SSSNClient
) -> None:
    client.create_channel({"name": "raw"})
    client.create_channel({"name": "derived"})
    client.create_subscription("raw", subscription_id="processor")
    sources = client.append_events([{"channel": "raw", "payload": i} for i in range(6)])
    # A predecessor pulled four events, stored the result of the first one, then died
    # before recording any progress.
    assert client.pull_subscription("processor", limit=4) == sources[:4]
    client.append_event(
        {
            "id": f"derived-{sources[0].id}",
            "channel": "derived",
            "payload": {"text": "0", "words": 1},
            "parent_ids": [sources[0].id],
        }
    )
    drain(server_thread.address)
    derived = derived_events(client)
    assert [event.parent_ids[0] for event in derived] == [source.id for source in sources]
    more = client.append_events([{"channel": "raw", "payload": i} for i in (6, 7)])
    drain(server_thread.address)
    assert [event.parent_ids[0] for event in derived_events(client)] == [
        source.id for source in sources + more
    ]


def test_processor_follows_live_and_stops_cleanly(
    processes: Callable[..., Process], server_thread: ServerThread, client: SSSNClient
) -> None:
    command = (sys.executable, str(EXAMPLES / "channel_processor.py"), server_thread.address)
    client.create_channel({"name": "raw"})
    sources = client.append_events([{"channel": "raw", "payload": i} for i in range(3)])
    processor = processes(*command)
    assert processor.readline().startswith("following processor on raw")
    wait_until(lambda: len(derived_events(client)) == 3)
    sources += client.append_events([{"channel": "raw", "payload": i} for i in (3, 4)])
    wait_until(lambda: len(derived_events(client)) == 5)
    # SIGTERM may land between storing a result and recording progress: the
    # next run redoes that event, and its derived event is not stored twice.
    assert processor.stop(signal.SIGTERM) == 0
    assert processor.rest()[-1].startswith("processed ")

    # Events appended while it is down are picked up by the next run, once each.
    sources += client.append_events([{"channel": "raw", "payload": i} for i in (5, 6)])
    restarted = processes(*command)
    restarted.readline()
    wait_until(lambda: len(derived_events(client)) == 7)
    assert restarted.stop(signal.SIGINT) == 0
    derived = derived_events(client)
    assert [event.parent_ids[0] for event in derived] == [source.id for source in sources]
