"""SSSN gRPC server: semantic channels over `grpc.aio`, on embedded SQLite or PostgreSQL."""

__version__ = "0.1.0"
