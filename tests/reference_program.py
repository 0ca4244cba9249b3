"""An order-audit worker written against the HTTP clients of the reference `sssn` 0.1.1.

tests/test_client_compat.py runs it against our server with only its import
line changed; it prints a transcript that must match the reference's.
"""

import asyncio
import os

from sssn import (
    AsyncSSSNClient,
    Channel,
    Event,
    InvalidPayloadError,
    Snapshot,
    SSSNClient,
    SSSNClientError,
)

BASE_URL = os.environ.get("SSSN_URL", "http://127.0.0.1:7700")


def ensure_channel(client, channel):
    try:
        return client.create_channel(channel)
    except SSSNClientError as err:
        if err.status_code != 409 or err.error_type != "ChannelExistsError":
            raise
        return client.get_channel(channel.name)


def main():
    client = SSSNClient(BASE_URL, timeout=10.0)
    orders = ensure_channel(
        client,
        Channel(name="orders", schema="shop.Order", form="queue", description="orders placed"),
    )
    again = ensure_channel(client, Channel(name="orders"))
    client.create_channel({"name": "audit", "metadata": {"team": "finance"}})
    print("channels", orders.name, orders.schema, orders.form, again.description)

    placed = client.append_event(
        Event(
            channel="orders",
            source="shop",
            kind="order.placed",
            payload={"order": "A-1", "total": 30},
        )
    )
    paid = client.append_event(
        Event(
            channel="orders",
            source="billing",
            kind="order.paid",
            payload={"order": "A-1"},
            parent_ids=(placed.id,),
            correlation_id="A-1",
        )
    )
    client.append_event(
        {
            "channel": "orders",
            "source": "shop",
            "kind": "order.placed",
            "payload": {"order": "B-2", "total": 12},
        }
    )
    print("appended", paid.cursor > placed.cursor, paid.parent_ids == (placed.id,), paid.payload)

    events = client.query_events("orders", after_cursor=0, limit=10)
    print("query", [event.kind for event in events])
    print(
        "placed",
        [event.payload["order"] for event in client.query_events("orders", kind="order.placed")],
    )
    print(
        "page",
        [
            event.payload["order"]
            for event in client.query_events("orders", after_cursor=events[0].cursor, limit=1)
        ],
    )
    print("event", client.get_event(paid.id).correlation_id, client.get_event(paid.id).source)

    subscription = client.create_subscription(
        "orders",
        subscription_id="billing",
        consumer="billing-worker",
        batch_size=2,
        filters={"kind": "order.placed"},
    )
    first = client.pull_subscription(subscription.id)
    rest = client.pull_subscription(subscription.id, limit=5)
    print("pulled", [event.payload["total"] for event in first], len(rest))
    print(
        "reused",
        client.create_subscription("orders", subscription_id="billing").consumer,
        subscription.filters,
    )

    invoice = client.write_artifact(
        b"%PDF-1.4 invoice A-1",
        channel="orders",
        media_type="application/pdf",
        metadata={"order": "A-1"},
        event_ids=(paid.id,),
    )
    stored = client.get_artifact(invoice.id)
    print(
        "artifact",
        invoice.size,
        stored.media_type,
        stored.sha256 == invoice.sha256,
        stored.event_ids == (paid.id,),
    )
    print("payload", client.read_artifact(invoice.id)[:8])
    note = client.write_artifact("a note in plain text")
    print("text", client.read_artifact(note.id).decode("utf-8"))

    totals = client.put_snapshot(
        "orders.totals",
        {"A-1": 30, "B-2": 12},
        channel="orders",
        source_event_id=paid.id,
        schema="shop.Totals",
    )
    print("snapshot", totals.name, totals.schema, client.get_snapshot("orders.totals").value["B-2"])
    client.put_snapshot(
        "orders.totals", Snapshot(name="orders.totals", value={"A-1": 30}, channel="orders")
    )
    print("replaced", client.get_snapshot("orders.totals").value)

    failing = [
        ("channel exists", lambda: client.create_channel(Channel(name="audit"))),
        ("missing channel", lambda: client.get_channel("refunds")),
        ("missing event", lambda: client.get_event("no-such-event")),
        ("append to a missing channel", lambda: client.append_event(Event(channel="refunds"))),
        (
            "missing parent",
            lambda: client.append_event(Event(channel="orders", parent_ids=("ghost",))),
        ),
        (
            "subscription taken",
            lambda: client.create_subscription("audit", subscription_id="billing"),
        ),
        ("missing subscription", lambda: client.pull_subscription("no-such-subscription")),
        ("missing artifact", lambda: client.read_artifact("no-such-artifact")),
        ("missing snapshot", lambda: client.get_snapshot("no-such-snapshot")),
        ("link to a missing event", lambda: client.put_snapshot("s", 1, source_event_id="ghost")),
        ("zero limit", lambda: client.query_events("orders", limit=0)),
        ("negative cursor", lambda: client.query_events("orders", after_cursor=-1)),
        ("zero batch size", lambda: client.create_subscription("orders", batch_size=0)),
        (
            "unknown filter",
            lambda: client.create_subscription("orders", filters={"source": "shop"}),
        ),
    ]
    for label, call in failing:
        try:
            call()
        except SSSNClientError as err:
            print("error", label, err.status_code, err.error_type)
    try:
        client.get_channel("two words")
    except InvalidPayloadError:
        print("refused", "two words")

    worker = AsyncSSSNClient(BASE_URL, timeout=10.0)
    asyncio.run(audit(worker))


async def audit(client):
    channels = await client.list_channels()
    print("async channels", [channel.name for channel in channels])
    paid = await client.query_events("orders", kind="order.paid")
    print("async paid", [event.payload["order"] for event in paid])
    await client.create_subscription("orders", subscription_id="auditor")
    print("async pulled", len(await client.pull_subscription("auditor", limit=10)))
    try:
        await client.create_channel({"name": "orders"})
    except SSSNClientError as err:
        print("async error", err.status_code, err.error_type)
    print("async snapshot", (await client.get_snapshot("orders.totals")).channel)


if __name__ == "__main__":
    main()
