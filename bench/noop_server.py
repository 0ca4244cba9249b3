"""The ceiling of the stack: a grpc.aio StoreService that stores nothing and answers at once."""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import grpc

from sssn_proto.v1 import event_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc
from sssn_server.loops import EVENT_LOOPS, default_event_loop, loop_factory


class NoopServicer(pb_grpc.StoreServiceServicer):
    """Same messages as the real service, without storage or validation."""

    def __init__(self) -> None:
        self._cursor = itertools.count(1)
        self._template = event_pb2.Event(channel="bench", kind="bench", id="noop")

    async def AppendEvent(self, request: pb.AppendEventRequest, context: Any) -> Any:
        event = event_pb2.Event()
        event.CopyFrom(request.event)
        event.cursor = next(self._cursor)
        return pb.AppendEventResponse(event=event)

    async def AppendEvents(self, request: pb.AppendEventsRequest, context: Any) -> Any:
        response = pb.AppendEventsResponse()
        response.events.extend(request.events)
        for event in response.events:
            event.cursor = next(self._cursor)
        return response

    async def AppendEventStream(
        self, request_iterator: AsyncIterator[pb.AppendEventStreamRequest], context: Any
    ) -> AsyncIterator[pb.AppendEventStreamResponse]:
        async for request in request_iterator:
            response = pb.AppendEventStreamResponse()
            for event in request.events:
                result = response.results.add()
                result.event.CopyFrom(event)
                result.event.cursor = next(self._cursor)
            yield response

    async def PullSubscription(
        self, request: pb.PullSubscriptionRequest, context: Any
    ) -> AsyncIterator[pb.PullSubscriptionResponse]:
        # `limit` events in all, `batch` per message: the drain shape without a store.
        per_message = request.limit if request.HasField("limit") else 100
        total = int(_metadata_dict(context).get("x-bench-total", "100000"))
        message = pb.PullSubscriptionResponse(events=[self._template] * per_message)
        for _ in range(total // per_message):
            yield message


def _metadata_dict(context: Any) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata()}


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_StoreServiceServicer_to_server(NoopServicer(), server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"noop listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    # The same event loop as our server's, so the ceiling is of the same stack.
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default=default_event_loop())
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory(args.event_loop)) as runner:
        runner.run(serve(args.port))


if __name__ == "__main__":
    main()
