"""Helpers for stream tests: manual-mode requests, acks, and reading past heartbeats."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import subscription_pb2

from .helpers import DEADLINE

MANUAL = subscription_pb2.ACK_MODE_MANUAL
AUTO = subscription_pb2.ACK_MODE_AUTO


def open_stream(stub: Any, subscription_id: str, **fields: Any) -> Any:
    """Opens a following PullSubscription stream (the caller cancels it)."""
    fields.setdefault("follow", True)
    return stub.PullSubscription(
        pb.PullSubscriptionRequest(subscription_id=subscription_id, **fields)
    )


async def ack(stub: Any, subscription_id: str, cursor: int) -> Any:
    response = await stub.AckSubscription(
        pb.AckSubscriptionRequest(subscription_id=subscription_id, cursor=cursor),
        timeout=DEADLINE,
    )
    return response.subscription


async def read_message(call: Any) -> pb.PullSubscriptionResponse:
    message = await asyncio.wait_for(call.read(), DEADLINE)
    assert message is not grpc.aio.EOF, "stream ended early"
    return message  # type: ignore[no-any-return]


async def stream_error(call: Any) -> grpc.aio.AioRpcError:
    """Reads until the stream fails and returns the error."""
    while True:
        try:
            message = await asyncio.wait_for(call.read(), DEADLINE)
        except grpc.aio.AioRpcError as error:
            return error
        assert message is not grpc.aio.EOF, "stream ended with OK"
