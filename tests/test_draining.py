"""Draining of a real server process: health turns NOT_SERVING; a second signal exits at once."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .helpers import DEADLINE
from .server_process import ServerProcess

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_second_signal_skips_the_grace_period(tmp_path: Path) -> None:
    # The grace period is far longer than the test's deadlines: only the
    # second signal can end the process in time.
    server = ServerProcess(tmp_path / "store", "--grace", "3600")
    try:
        with grpc.insecure_channel(server.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="sssn.v1.StoreService"),
                timeout=DEADLINE * 4,
            )
            assert next(watch).status == SERVING
            server.process.send_signal(signal.SIGTERM)
            # The open Watch is a call in flight: it holds the drain open.
            assert next(watch).status == NOT_SERVING
            code, _, errors = server.stop(signal.SIGTERM, timeout=DEADLINE * 2)
            watch.cancel()
        assert code == 128 + signal.SIGTERM, errors
        assert "second signal" in errors
    finally:
        server.kill()
