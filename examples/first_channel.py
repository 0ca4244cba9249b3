"""A first session with the Python client: channel, events, subscription, artifact, snapshot."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sssn_client import ChannelExistsError, Event, SSSNClient


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", nargs="?", default="localhost:7700", help="server host:port")
    args = parser.parse_args(argv)

    with SSSNClient(args.target) as client:
        # A channel is created once; running the walkthrough again reuses it.
        try:
            channel = client.create_channel(
                {"name": "notes", "form": "feed", "description": "notes from the walkthrough"}
            )
        except ChannelExistsError:
            channel = client.get_channel("notes")
        print(f"channel {channel.name} ({channel.form})")

        # A subscription is a cursor the server keeps; creating it again returns it.
        reader = client.create_subscription("notes", subscription_id="notes-reader")
        print(f"subscription {reader.id} at cursor {reader.cursor}")

        # Events: the server assigns the id (a UUIDv7), the cursor and the timestamp.
        hello = client.append_event(
            Event(channel="notes", source="walkthrough", kind="note", payload={"text": "hello"})
        )
        reply = client.append_event(
            Event(
                channel="notes",
                source="walkthrough",
                kind="reply",
                payload={"text": "hello back", "mood": "cheerful"},
                parent_ids=(hello.id or "",),
            )
        )
        print(f"appended {hello.kind} at cursor {hello.cursor}, {reply.kind} at {reply.cursor}")

        # Reading by cursor does not move any subscription.
        for event in client.query_events("notes", after_cursor=(hello.cursor or 1) - 1):
            print(f"  query  {event.cursor} {event.kind}: {event.payload['text']}")

        # Pulling hands out the pending events and moves the subscription past them.
        for event in client.pull_subscription("notes-reader"):
            print(f"  pulled {event.cursor} {event.kind}: {event.payload['text']}")

        # Following: the stream delivers each new event as soon as it is committed.
        live = client.append_event(Event(channel="notes", kind="note", payload={"text": "live"}))
        with client.subscribe("notes-reader") as stream:
            event = next(stream)
            print(f"  live   {event.cursor} {event.kind}: {event.payload['text']}")
        assert event.id == live.id

        # Artifacts hold bytes by content; the client checks the sha256 both ways.
        artifact = client.write_artifact(
            "# Notes\n\nhello, hello back\n",
            channel="notes",
            media_type="text/markdown",
            event_ids=(hello.id or "", reply.id or ""),
        )
        text = client.read_artifact(artifact.id).decode()
        print(f"artifact {artifact.id}: {artifact.size} bytes, first line {text.splitlines()[0]!r}")

        # A snapshot is the latest state derived from the channel; a put replaces it.
        snapshot = client.put_snapshot(
            "notes-latest",
            {"last_text": reply.payload["text"], "cursor": reply.cursor},
            channel="notes",
            source_event_id=reply.id,
        )
        print(f"snapshot {snapshot.name} = {client.get_snapshot(snapshot.name).value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
