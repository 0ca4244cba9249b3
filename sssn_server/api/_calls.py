"""Per-call state shared by the interceptors, and wrapping of grpc.aio method handlers."""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

STORE_SERVICE_PREFIX = "/sssn.v1.StoreService/"


@dataclass(slots=True)
class CallInfo:
    """What the interceptors learn about one call (never payloads or tokens)."""

    method: str
    principal: str = ""


# The metrics interceptor sets a fresh CallInfo per call; the auth
# interceptor, running inside it, fills in the principal for the access log.
current_call: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar(
    "sssn_current_call", default=None
)

# Set by the auth interceptor for a call: whether its caller may read a
# channel. Unset (no `--auth-tokens`), every caller reads every channel. Append
# acknowledgements consult it so that a caller without `read` never sees a
# stored payload (an idempotent repeat returns the event as stored).
readable_channel: contextvars.ContextVar[Callable[[str], bool] | None] = contextvars.ContextVar(
    "sssn_readable_channel", default=None
)

# Set by the auth interceptor for a caller that may not read every channel:
# ids of stored resources it may not see, as the handler was given them (ids
# that cannot exist, so it answers exactly as for a missing one) -> as the
# caller sent them. The error mapping names the caller's ids again.
hidden_ids: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "sssn_hidden_ids", default=None
)

Behavior = Callable[..., Any]
# Wraps a unary-response behavior: (behavior, request_or_iterator, context) -> response.
UnaryWrap = Callable[[Behavior, Any, Any], Awaitable[Any]]
# Wraps a streaming-response behavior: yields what the behavior yields.
StreamWrap = Callable[[Behavior, Any, Any], AsyncIterator[Any]]


def wrap_handler(
    handler: grpc.RpcMethodHandler, unary: UnaryWrap, stream: StreamWrap
) -> grpc.RpcMethodHandler:
    """Returns `handler` with its behavior routed through `unary` or `stream`.

    Streaming handlers written as coroutines that call `context.write` (the
    health service's `Watch`) keep that style: grpc.aio refuses to mix it with
    an async generator, so they go through `unary` instead.
    """
    if handler.request_streaming and handler.response_streaming:
        inner, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        inner, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        inner, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    else:
        inner, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler

    if handler.response_streaming and inspect.isasyncgenfunction(inner):

        async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
            async for response in stream(inner, request, context):
                yield response

        behavior: Behavior = streaming
    else:

        async def unary_behavior(request: Any, context: Any) -> Any:
            return await unary(inner, request, context)

        behavior = unary_behavior
    return factory(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
