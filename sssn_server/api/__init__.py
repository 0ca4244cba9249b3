"""The gRPC boundary: protobuf <-> domain conversion, the servicer, and error mapping."""

from ._servicer import StoreServicer

__all__ = ["StoreServicer"]
