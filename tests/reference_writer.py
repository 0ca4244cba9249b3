"""Writes a store with the reference `sssn` 0.1.1's `LocalStore`; prints what the reference reads.

tests/test_import_reference.py runs it in .venv-reference/ (tools/reference_venv.py):
`python reference_writer.py DIR` writes a store of every kind of thing, `python
reference_writer.py DIR awkward` one the reference accepts and our rules refuse.
"""

import hashlib
import json
import sys

from sssn import Channel, Event, LocalStore, Snapshot

# More than one chunk of an import (1 MiB).
BIG = bytes(range(256)) * 6000


def dump(model):
    return model.model_dump(mode="json", by_alias=True)


def write(store):
    store.create_channel(
        Channel(
            name="orders",
            schema="shop.Order",
            form="queue",
            description="orders placed",
            metadata={"team": "shop", "nested": {"a": [1, 2]}},
        )
    )
    store.create_channel({"name": "audit"})
    store.create_channel({"name": "empty", "form": "blackboard", "description": "nothing yet"})
    placed = store.append_event(
        Event(
            channel="orders",
            timestamp=1700000000.25,
            source="shop",
            kind="order.placed",
            payload={"order": "A-1", "total": 30, "items": [{"sku": "x", "qty": 2}]},
            schema="shop.Order",
            metadata={"trace": "t-1"},
            correlation_id="c-1",
        )
    )
    store.append_event(
        Event(
            channel="audit",
            timestamp=1733520000.123456,
            kind="audit.seen",
            payload="seen A-1",
            parent_ids=(placed.id,),
        )
    )
    paid = store.append_event(
        Event(
            id="pay-A-1",
            channel="orders",
            kind="order.paid",
            payload={"order": "A-1"},
            parent_ids=(placed.id,),
            correlation_id="c-1",
        )
    )
    store.append_event(Event(channel="audit", payload=[1, 2.5, True, None, "\u00e9\u2713"]))
    second = store.append_event(Event(channel="orders", kind="order.placed", payload=None))
    store.append_event(Event(channel="audit", payload=7, metadata={"deep": {"x": {"y": 1}}}))
    third = store.append_event(
        Event(
            channel="orders",
            kind="order.placed",
            payload={"order": "A-3"},
            parent_ids=(paid.id, second.id),
        )
    )
    store.create_subscription(
        "orders",
        subscription_id="billing",
        consumer="biller",
        batch_size=2,
        filters={"kind": "order.placed"},
        metadata={"owner": "finance"},
    )
    pulled = store.pull_subscription("billing")  # the first two placed orders
    store.create_subscription("audit", subscription_id="auditor")
    artifacts = [
        store.write_artifact(
            b"receipt A-1",
            channel="orders",
            media_type="text/plain",
            metadata={"order": "A-1"},
            event_ids=(placed.id, paid.id),
        ),
        store.write_artifact(b"receipt A-1"),  # the same file as the first
        store.write_artifact(BIG, channel="audit"),
        store.write_artifact(b""),
    ]
    store.put_snapshot(Snapshot(name="orders.latest", value={"open": ["A-1"]}))
    store.put_snapshot(
        Snapshot(
            name="orders.latest",
            channel="orders",
            timestamp=1733520001.5,
            value={"open": ["A-2", "A-3"]},
            schema="shop.State",
            source_event_id=third.id,
            metadata={"v": 2},
        )
    )
    store.put_snapshot(Snapshot(name="global", value=42))
    return {
        "pulled": [event.id for event in pulled],
        "subscriptions": ["auditor", "billing"],
        "artifacts": [artifact.id for artifact in artifacts],
        "snapshots": ["global", "orders.latest"],
    }


def write_awkward(store):
    """Things the reference takes that our rules refuse. (NaN and infinities
    it stores as null, so they need no refusing.)"""
    store.create_channel({"name": "c" * 300})  # over our 256 bytes
    store.create_channel({"name": "fine"})
    store.append_event(Event(id="bell\x07", channel="fine", payload=1))  # a control character
    deep = "leaf"
    for _ in range(30):  # over our 24 levels
        deep = {"a": deep}
    store.append_event(Event(id="deep", channel="fine", payload=deep))
    store.append_event(Event(id="ok", channel="fine", payload=2))
    store.create_subscription("fine", subscription_id="tab", consumer="tab\x01")
    return {"subscriptions": ["tab"], "artifacts": [], "snapshots": []}


def read_back(store, written):
    channels = store.list_channels()
    return {
        "channels": [dump(channel) for channel in channels],
        "events": {
            channel.name: [dump(event) for event in store.query_events(channel.name, limit=10_000)]
            for channel in channels
        },
        "subscriptions": [dump(store.get_subscription(name)) for name in written["subscriptions"]],
        "artifacts": [
            {
                **dump(store.get_artifact(name)),
                "read_sha256": hashlib.sha256(store.read_artifact(name)).hexdigest(),
            }
            for name in written["artifacts"]
        ],
        "snapshots": [dump(store.get_snapshot(name)) for name in written["snapshots"]],
        "pulled": written.get("pulled", []),
    }


def main():
    store = LocalStore(sys.argv[1])
    awkward = sys.argv[2:] == ["awkward"]
    written = write_awkward(store) if awkward else write(store)
    print(json.dumps(read_back(store, written)))


if __name__ == "__main__":
    main()
