"""The `sssn-server` command: a clear line, not a traceback, where only the client is installed."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

# What `pip install 'sssn-grpc[server]'` adds to the client's dependencies.
SERVER_MODULES = frozenset(
    {"aiosqlite", "asyncpg", "grpc_health", "grpc_reflection", "prometheus_client"}
)
INSTALL_HINT = "pip install 'sssn-grpc[server]'"

ServerMain = Callable[[Sequence[str] | None], int]


def load_server(prog: str) -> ServerMain | None:
    """The server's command line, or None (and one line on stderr naming the
    missing module and the extra to install) where only the client is."""
    try:
        from .__main__ import main
    except ImportError as exc:
        if exc.name not in SERVER_MODULES:
            raise
        print(
            f"{prog}: the server is not installed ({exc.name} is missing): {INSTALL_HINT}",
            file=sys.stderr,
        )
        return None
    return main


def main() -> int:
    serve = load_server("sssn-server")
    return 2 if serve is None else serve(None)
