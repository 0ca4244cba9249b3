"""Wiring and lifecycle: open the store, serve gRPC, drain and close on a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import TracebackType

import grpc

from sssn_proto.v1 import store_service_pb2_grpc

from .api import StoreServicer
from .config import DURABILITY_LEVELS, ServerConfig
from .domain.service import ChannelService, Limits
from .store.sqlite import SQLiteStore

log = logging.getLogger(__name__)


def join_host_port(host: str, port: int) -> str:
    """Formats an address, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SSSNServer:
    """One running service: the store, the channel service and the gRPC server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = SQLiteStore(
            config.store,
            read_only=config.read_only,
            synchronous=DURABILITY_LEVELS[config.durability],
        )
        self.service = ChannelService(
            self.store, Limits(max_artifact_bytes=config.max_artifact_bytes)
        )
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """The `host:port` the server listens on (the real port once started)."""
        return join_host_port(self.config.host, self.port)

    async def start(self) -> None:
        """Opens the store, then starts serving; sets `port` to the bound port."""
        await self.store.open()
        try:
            server = grpc.aio.server(
                options=[
                    ("grpc.max_receive_message_length", self.config.max_message_bytes),
                    ("grpc.so_reuseport", 0),
                ]
            )
            register = store_service_pb2_grpc.add_StoreServiceServicer_to_server
            register(StoreServicer(self.service), server)  # type: ignore[no-untyped-call]
            self.port = server.add_insecure_port(join_host_port(self.config.host, self.config.port))
            await server.start()
        except BaseException:
            await self.store.close()
            raise
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        """Ends following streams with UNAVAILABLE at once, gives unary calls
        `grace` seconds, then closes the store."""
        self.service.begin_shutdown()
        if self._server is not None:
            await self._server.stop(self.config.grace if grace is None else grace)
            self._server = None
        await self.store.close()

    async def __aenter__(self) -> SSSNServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(config: ServerConfig) -> None:
    """Runs the server until SIGINT or SIGTERM, then shuts down cleanly."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    server = SSSNServer(config)
    await server.start()
    mode = " read-only" if config.read_only else ""
    print(
        f"sssn-server listening on {server.address} (store {server.store.root}{mode})",
        flush=True,
    )
    try:
        await stopping.wait()
        log.info("shutting down")
    finally:
        await server.stop()
    print("sssn-server stopped", flush=True)
