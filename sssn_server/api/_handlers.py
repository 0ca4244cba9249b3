"""Registers the StoreService with a serializer that lets pre-encoded responses through."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message_factory import GetMessageClass

from sssn_proto.v1 import store_service_pb2 as pb

from ._wire import Serialized

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


def add_store_service(servicer: Any, server: grpc.aio.Server) -> None:
    """What the generated `add_StoreServiceServicer_to_server` does, with
    `serialize` for every response: the handlers come from the contract's
    descriptor, so a new RPC needs nothing here."""
    handlers = {
        method.name: _FACTORIES[method.client_streaming, method.server_streaming](
            getattr(servicer, method.name),
            request_deserializer=GetMessageClass(method.input_type).FromString,
            response_serializer=serialize,
        )
        for method in SERVICE.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),)
    )
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
