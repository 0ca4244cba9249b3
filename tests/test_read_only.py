"""A server started with --read-only serves reads and refuses every write."""

from __future__ import annotations

import grpc
import pytest

from sssn_proto.v1 import channel_pb2, snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from .helpers import DEADLINE, event, failure


async def test_read_only_server_reads_and_refuses_writes(start_server) -> None:
    writable = await start_server()
    async with grpc.aio.insecure_channel(writable.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="events")), timeout=DEADLINE
        )
        stored = await stub.AppendEvent(
            pb.AppendEventRequest(event=event("events", 1)), timeout=DEADLINE
        )
        await stub.CreateSubscription(
            pb.CreateSubscriptionRequest(channel="events", subscription_id="w"), timeout=DEADLINE
        )
    await writable.stop(grace=0)

    server = await start_server(read_only=True)
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        fetched = await stub.GetEvent(pb.GetEventRequest(id=stored.event.id), timeout=DEADLINE)
        assert fetched.event == stored.event
        queried = await stub.QueryEvents(pb.QueryEventsRequest(channel="events"), timeout=DEADLINE)
        assert len(queried.events) == 1

        writes = [
            stub.CreateChannel(
                pb.CreateChannelRequest(channel=channel_pb2.Channel(name="new")), timeout=DEADLINE
            ),
            stub.AppendEvent(pb.AppendEventRequest(event=event("events", 2)), timeout=DEADLINE),
            stub.CreateSubscription(
                pb.CreateSubscriptionRequest(channel="events"), timeout=DEADLINE
            ),
            stub.WriteArtifact(pb.WriteArtifactRequest(data=b"x"), timeout=DEADLINE),
            stub.PutSnapshot(
                pb.PutSnapshotRequest(snapshot=snapshot_pb2.Snapshot(name="s")), timeout=DEADLINE
            ),
        ]
        for write in writes:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await write
            error = failure(caught.value)
            assert error.code == grpc.StatusCode.FAILED_PRECONDITION
            assert error.reason == "STORE_READ_ONLY"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.PullSubscription(
                pb.PullSubscriptionRequest(subscription_id="w"), timeout=DEADLINE
            ):
                pass
        assert failure(caught.value).reason == "STORE_READ_ONLY"
        listed = await stub.ListChannels(pb.ListChannelsRequest(), timeout=DEADLINE)
        assert [channel.name for channel in listed.channels] == ["events"]


async def test_read_only_needs_an_existing_store(start_server, empty_store_location) -> None:
    with pytest.raises(FileNotFoundError):
        await start_server(read_only=True, store=empty_store_location)
