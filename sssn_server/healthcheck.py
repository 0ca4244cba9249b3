"""Container probe: exits 0 only if the server's grpc.health.v1 service reports SERVING."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sssn_server.healthcheck",
        description=(
            "Ask a server's grpc.health.v1.Health service whether it is SERVING; "
            "exit 0 if so, 1 otherwise (for Docker HEALTHCHECK and exec probes). "
            "Plaintext only: with TLS use a gRPC-native probe."
        ),
    )
    port = os.environ.get("SSSN_PORT", "7700")
    parser.add_argument("--target", default=f"127.0.0.1:{port}", help="host:port to ask")
    parser.add_argument(
        "--service", default="", help='service name to check; "" is the whole server'
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
    args = parser.parse_args(argv)
    with grpc.insecure_channel(args.target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"unhealthy: {error.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(status)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    raise SystemExit(main())
