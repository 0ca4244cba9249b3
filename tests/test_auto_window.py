"""Auto ack mode: a reader that stalls and then dies loses at most the client's
stream window, with the Python client and with the Node.js client."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sssn_client._config import STREAM_WINDOW_BYTES
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.app import SSSNServer

from .helpers import DEADLINE, event

# Reads the first message's events, says how far it got, then stops reading
# with the stream open, as a consumer stuck in its own processing would.
STALLING_READER = """
import sys, time
from sssn_client import SSSNClient

client = SSSNClient(sys.argv[1])
stream = client.subscribe("stalls", limit=100)
for count, event in enumerate(stream, 1):
    if count == 100:
        print(event.cursor, flush=True)
        time.sleep(3600)
"""

# The same consumer written with the Node.js client (clients/node).
STALLING_NODE_READER = """
import { SSSNClient } from './src/index.js';

const client = new SSSNClient(process.argv[1]);
let count = 0;
for await (const event of client.follow('stalls', { limit: 100 })) {
  count += 1;
  if (count === 100) {
    console.log(String(event.cursor));
    await new Promise(() => setInterval(() => {}, 1 << 30));
  }
}
"""

NODE_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "node"


def reader_command(client: str, address: str) -> tuple[list[str], Path | None]:
    """The stalling reader for `client`, and the folder it runs in."""
    if client == "python":
        return [sys.executable, "-c", STALLING_READER, address], None
    node = shutil.which("node")
    assert node is not None, "node is not on PATH; `make test` installs Node.js"
    return [node, "--input-type=module", "-e", STALLING_NODE_READER, address], NODE_CLIENT


async def recorded_cursor(stub: pb_grpc.StoreServiceStub) -> int:
    status = await stub.GetSubscription(
        pb.GetSubscriptionRequest(subscription_id="stalls"), timeout=DEADLINE
    )
    return status.subscription.cursor


@pytest.mark.parametrize("client", ["python", "node"])
async def test_a_stalled_then_killed_reader_loses_at_most_the_window(
    client: str,
    server: SSSNServer,
    stub: pb_grpc.StoreServiceStub,
    make_channel: Callable[..., Any],
) -> None:
    name = await make_channel("window")
    await stub.CreateSubscription(
        pb.CreateSubscriptionRequest(channel=name, subscription_id="stalls"), timeout=DEADLINE
    )
    batch = pb.AppendEventsRequest(events=[event(name, "x" * 100) for _ in range(100)])
    await stub.AppendEvents(batch, timeout=DEADLINE)
    command, folder = reader_command(client, server.address)
    reader = subprocess.Popen(
        command,
        cwd=folder,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert reader.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(reader.stdout.readline), DEADLINE)
        last_read = int(line)
        # Far more than any window holds, while the reader reads nothing.
        for _ in range(150):
            await stub.AppendEvents(batch, timeout=DEADLINE)
        settled, moved = 0, await recorded_cursor(stub)
        while settled < 3:  # until the transport holds all it will take
            await asyncio.sleep(0.3)
            now = await recorded_cursor(stub)
            settled, moved = (settled + 1, now) if now == moved else (0, now)
    finally:
        reader.send_signal(signal.SIGKILL)
        reader.wait()
        if reader.stdout is not None:
            reader.stdout.close()
    lost = await stub.QueryEvents(
        pb.QueryEventsRequest(channel=name, after_cursor=last_read, limit=10_000),
        timeout=DEADLINE,
    )
    lost_events = [each for each in lost.events if each.cursor <= moved]
    lost_bytes = sum(each.ByteSize() for each in lost_events)
    # Delivered beyond what was read: the transport's window, and the
    # message the reader was in (up to 100 events).
    one_message = 100 * lost_events[0].ByteSize() if lost_events else 0
    assert lost_bytes <= 2 * STREAM_WINDOW_BYTES + one_message, (len(lost_events), lost_bytes)
    # The reader's stream was held back: most of the appended events are still pending.
    assert moved < lost.events[-1].cursor
