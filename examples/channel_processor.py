"""A restart-safe channel processor: derives one event per source event and keeps a snapshot."""

# It pulls the subscription of one channel, appends a derived event to another
# channel with the source event as parent, and records its progress in the
# `latest` snapshot. It can be killed at any moment and restarted:
#
# - the server moves the subscription's cursor when it hands events out, so a
#   worker that dies before finishing loses them from the subscription; on
#   start the processor redoes every event between its own checkpoint (the
#   snapshot) and the subscription's cursor;
# - the derived event's id is computed from the source event's id, so redoing
#   an event whose result was already appended returns the stored event
#   instead of appending a second one.
#
# Every source event is thus turned into exactly one derived event. Run one
# processor per subscription.

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Iterable, Sequence
from typing import Any

from sssn_client import ChannelExistsError, Event, SnapshotNotFoundError, SSSNClient


def transform(payload: Any) -> dict[str, Any]:
    """The work itself: here, a normalized text and its word count."""
    text = payload.get("text", "") if isinstance(payload, dict) else str(payload)
    normalized = " ".join(str(text).split()).lower()
    return {"text": normalized, "words": len(normalized.split())}


class Processor:
    """Turns the events of `source` into events of `sink`, resuming where it stopped."""

    def __init__(
        self, client: SSSNClient, *, source: str, sink: str, subscription: str, snapshot: str
    ) -> None:
        self.client = client
        self.source = source
        self.sink = sink
        self.subscription = subscription
        self.snapshot = snapshot
        self.processed = 0

    def setup(self) -> None:
        for name in (self.source, self.sink):
            with contextlib.suppress(ChannelExistsError):  # made by an earlier run
                self.client.create_channel({"name": name})
        self.client.create_subscription(self.source, subscription_id=self.subscription)

    def checkpoint(self) -> int:
        """Cursor of the last source event whose result is recorded (0: none yet)."""
        try:
            state = self.client.get_snapshot(self.snapshot).value
        except SnapshotNotFoundError:
            return 0
        return int(state["source_cursor"])

    def recover(self) -> None:
        """Redoes events the subscription handed out but a previous run did not finish."""
        done = self.checkpoint()
        delivered = self.client.get_subscription(self.subscription).cursor
        while done < delivered:
            page = self.client.query_events(self.source, after_cursor=done, limit=100)
            pending = [event for event in page if (event.cursor or 0) <= delivered]
            if not pending:
                break
            self.handle(pending)
            done = pending[-1].cursor or done

    def handle(self, events: Iterable[Event]) -> None:
        for event in events:
            derived = self.client.append_event(
                Event(
                    id=f"derived-{event.id}",  # the same id on a redo: stored only once
                    channel=self.sink,
                    source="channel_processor",
                    kind="derived",
                    payload=transform(event.payload),
                    correlation_id=event.correlation_id,
                    parent_ids=(event.id or "",),
                )
            )
            # The checkpoint moves only once the result is stored.
            self.client.put_snapshot(
                self.snapshot,
                {"source_cursor": event.cursor, "source_event_id": event.id},
                channel=self.sink,
                source_event_id=derived.id,
            )
            self.processed += 1

    def drain(self) -> None:
        """Processes what is pending, then returns."""
        while events := self.client.pull_subscription(self.subscription):
            self.handle(events)

    def follow(self) -> None:
        """Processes pending events, then each new one as it arrives, until interrupted."""
        with self.client.subscribe(self.subscription) as stream:
            for event in stream:
                self.handle([event])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", nargs="?", default="localhost:7700", help="server host:port")
    parser.add_argument("--source", default="raw", help="channel to read (default: raw)")
    parser.add_argument("--sink", default="derived", help="channel to write (default: derived)")
    parser.add_argument("--subscription", default="processor", help="(default: processor)")
    parser.add_argument("--snapshot", default="latest", help="progress snapshot (default: latest)")
    parser.add_argument("--drain", action="store_true", help="stop when nothing is pending")
    args = parser.parse_args(argv)

    # SIGTERM (a deploy, `docker stop`) stops the processor like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with SSSNClient(args.target) as client:
        processor = Processor(
            client,
            source=args.source,
            sink=args.sink,
            subscription=args.subscription,
            snapshot=args.snapshot,
        )
        try:
            processor.setup()
            processor.recover()
            if args.drain:
                processor.drain()
            else:
                print(f"following {args.subscription} on {args.source}", flush=True)
                processor.follow()
        except KeyboardInterrupt:
            pass
        print(f"processed {processor.processed} events", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
