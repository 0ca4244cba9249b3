"""The `sssn-server` command: a clear line, not a traceback, where only the client is installed."""

from __future__ import annotations

import sys

# What `pip install 'sssn-grpc[server]'` adds to the client's dependencies.
SERVER_MODULES = frozenset(
    {"aiosqlite", "asyncpg", "grpc_health", "grpc_reflection", "prometheus_client"}
)
INSTALL_HINT = "pip install 'sssn-grpc[server]'"


def main() -> int:
    try:
        from .__main__ import main as serve
    except ImportError as exc:
        if exc.name not in SERVER_MODULES:
            raise
        print(
            f"sssn-server: the server is not installed ({exc.name} is missing): {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    return serve()
