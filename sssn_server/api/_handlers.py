"""Registers the StoreService: pre-encoded responses pass, undecodable requests are marked."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from sssn_proto.v1 import store_service_pb2 as pb

from ..domain.errors import InvalidPayloadError, PayloadTooDeepError
from ..domain.models import MAX_JSON_DEPTH
from ._wire import Serialized

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["StoreService"]

# (client streaming, server streaming) -> the handler factory for that shape.
_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def serialize(response: Any) -> bytes:
    """A response message's bytes; a `Serialized` response (`_wire.py`)
    already holds them."""
    if type(response) is Serialized:
        return response.data
    data: bytes = response.SerializeToString()
    return data


@dataclass(frozen=True, slots=True)
class UndecodableRequest:
    """Stands for request bytes that do not parse as the method's request
    message. grpc.aio answers a deserializer's exception on a unary request
    with UNKNOWN and a traceback before any interceptor or handler runs (on
    a request stream it raises it into the handler's loop), so the
    deserializer returns this instead; interceptors pass it on and the
    servicer refuses the call with `error` (INVALID_ARGUMENT)."""

    error: InvalidPayloadError


def deserializer(message_class: type[Message]) -> Callable[[bytes], Any]:
    """`message_class.FromString` that returns an `UndecodableRequest` where
    it would raise."""
    parse = message_class.FromString
    name = message_class.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            # One line, no traceback: a client's bytes are not a server fault.
            log.info("refused an undecodable %s: %s", name, exc)
            return UndecodableRequest(_decode_error(name, exc))

    return deserialize


# How protobuf's parsers (upb, the pure-Python one) say a message nests too deep.
_TOO_DEEP_WORDS = ("depth", "nesting")


def _decode_error(name: str, exc: DecodeError) -> InvalidPayloadError:
    # Parsers stop at a fixed depth of nested messages; in a request only a
    # JSON value (payload, metadata, snapshot value) nests that deep.
    if any(word in str(exc).lower() for word in _TOO_DEEP_WORDS):
        return PayloadTooDeepError("request", MAX_JSON_DEPTH)
    return InvalidPayloadError("request", f"could not be decoded as a {name} message")


def check_decoded(request: Any) -> None:
    """Raises the error of a request that could not be decoded."""
    if type(request) is UndecodableRequest:
        raise request.error


async def decoded(requests: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """A request stream that raises the error of the first message that could
    not be decoded (the messages before it pass)."""
    async for request in requests:
        check_decoded(request)
        yield request


def add_store_service(servicer: Any, server: grpc.aio.Server) -> None:
    """What the generated `add_StoreServiceServicer_to_server` does, with
    `serialize` for every response and `deserializer` for every request: the
    handlers come from the contract's descriptor, so a new RPC needs nothing
    here."""
    handlers = {
        method.name: _FACTORIES[method.client_streaming, method.server_streaming](
            getattr(servicer, method.name),
            request_deserializer=deserializer(GetMessageClass(method.input_type)),
            response_serializer=serialize,
        )
        for method in SERVICE.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),)
    )
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
