"""SSSN gRPC server: semantic channels over a `grpc.aio` service and an embedded SQLite store."""

__version__ = "0.1.0"
