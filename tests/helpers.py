"""Test helpers: building messages and decoding the rich error status of a failed call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sssn_proto.v1 import event_pb2

# Generous per-call deadline so a hang fails the test instead of stalling it.
DEADLINE = 15


@dataclass
class RpcFailure:
    """What a failed call reported: code, ErrorInfo and BadRequest fields."""

    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: dict[str, str]
    fields: list[str] = field(default_factory=list)


def failure(error: grpc.aio.AioRpcError | grpc.RpcError) -> RpcFailure:
    """Decodes the `google.rpc.Status` details carried by a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {error!r}"
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail.Unpack(bad_request)
            fields = [violation.field for violation in bad_request.field_violations]
    return RpcFailure(
        code=error.code(),
        message=status.message,
        reason=info.reason,
        domain=info.domain,
        metadata=dict(info.metadata),
        fields=fields,
    )


def value(data: Any) -> struct_pb2.Value:
    """A `google.protobuf.Value` holding `data`."""
    return json_format.ParseDict(data, struct_pb2.Value())


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(data)
    return message


def event(channel: str, payload: Any = None, **fields: Any) -> event_pb2.Event:
    """An Event message for `channel` with a JSON payload."""
    message = event_pb2.Event(channel=channel, **fields)
    if payload is not None:
        message.payload.CopyFrom(value(payload))
    return message
