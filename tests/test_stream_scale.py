"""Many following streams on one server: every event to every stream, once and in order."""

from __future__ import annotations

import asyncio

import grpc

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from .helpers import DEADLINE, event
from .streams import open_stream
from .test_subscriptions import subscribe, wait_until

STREAMS = 200
CONNECTIONS = 4
PRODUCERS = 4
BATCHES = 10  # per producer
PER_BATCH = 3


async def test_200_followers_each_receive_every_event_once_in_order(server, make_channel) -> None:
    connections = [grpc.aio.insecure_channel(server.address) for _ in range(CONNECTIONS)]
    stubs = [pb_grpc.StoreServiceStub(connection) for connection in connections]
    await make_channel()
    await make_channel("noise")
    for index in range(STREAMS):
        await subscribe(stubs[0], subscription_id=f"w{index}", batch_size=50)
    calls = [open_stream(stubs[index % CONNECTIONS], f"w{index}") for index in range(STREAMS)]
    total = PRODUCERS * BATCHES * PER_BATCH

    async def produce(producer: int) -> list[str]:
        stub = stubs[producer % CONNECTIONS]
        ids = []
        for batch in range(BATCHES):
            response = await stub.AppendEvents(
                pb.AppendEventsRequest(
                    events=[
                        event("events", {"p": producer, "b": batch, "i": i})
                        for i in range(PER_BATCH)
                    ]
                    + [event("noise", 0)]
                ),
                timeout=DEADLINE,
            )
            ids += [e.id for e in response.events if e.channel == "events"]
        return ids

    async def consume(call) -> list:
        received: list = []
        while len(received) < total:
            message = await asyncio.wait_for(call.read(), 60)
            assert message is not grpc.aio.EOF
            received.extend(message.events)
        return received

    try:
        await wait_until(lambda: server.service.open_streams == STREAMS, timeout=60)
        results = await asyncio.gather(
            asyncio.gather(*(produce(p) for p in range(PRODUCERS))),
            asyncio.gather(*(consume(call) for call in calls)),
        )
        produced, received = results
        all_ids = {i for ids in produced for i in ids}
        for events in received:
            cursors = [e.cursor for e in events]
            assert len(events) == total
            assert cursors == sorted(cursors) and len(set(cursors)) == total
            assert {e.id for e in events} == all_ids
            # Each producer's events keep their order on every stream.
            for ids in produced:
                mine = [e.id for e in events if e.id in set(ids)]
                assert mine == ids
    finally:
        for call in calls:
            call.cancel()
        await wait_until(lambda: server.service.open_streams == 0, timeout=60)
        for connection in connections:
            await connection.close()
