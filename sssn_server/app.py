"""Wiring and lifecycle: open the store, serve gRPC, drain and close on a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sssn_proto.v1 import store_service_pb2

from .api import StoreServicer
from .api import _convert as convert
from .api import _wire as wire
from .api._auth import AuthInterceptor, TokenTable
from .api._handlers import add_store_service
from .api._metrics import Metrics, MetricsInterceptor, start_metrics_endpoint
from .collector import YOUNG_THRESHOLD, tune_for_serving
from .config import ServerConfig
from .domain.service import ChannelService, Limits
from .store import build_store

log = logging.getLogger(__name__)


def join_host_port(host: str, port: int) -> str:
    """Formats an address, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


STORE_SERVICE = store_service_pb2.DESCRIPTOR.services_by_name["StoreService"].full_name
SERVICE_NAMES = (STORE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC channel arguments for connection management, from the settings.

    Limits set to 0 are left out, which keeps gRPC's default (off/unlimited).
    """
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", _ms(config.keepalive_time)),
        ("grpc.keepalive_timeout_ms", _ms(config.keepalive_timeout)),
        # Let clients keep idle connections alive with pings between calls,
        # and let the server's own pings go on while a stream is quiet.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(config.min_ping_interval)),
    ]
    if config.max_connection_idle > 0:
        options.append(("grpc.max_connection_idle_ms", _ms(config.max_connection_idle)))
    if config.max_connection_age > 0:
        options.append(("grpc.max_connection_age_ms", _ms(config.max_connection_age)))
        options.append(("grpc.max_connection_age_grace_ms", _ms(config.max_connection_age_grace)))
    if config.max_send_message_bytes > 0:
        options.append(("grpc.max_send_message_length", config.max_send_message_bytes))
    return options


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings (None: plaintext); mTLS with a client CA.

    Raises:
        ValueError: only one of the certificate and the key is given, or a
            client CA without them.
    """
    if config.tls_cert is None and config.tls_key is None:
        if config.tls_client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    client_ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class AddressInUseError(OSError):
    """The server cannot listen on its host and port (taken, or not an
    address of this machine)."""


def _listen(server: grpc.aio.Server, host: str, port: int, credentials: Any) -> int:
    """Binds `host:port` and returns the bound port, or AddressInUseError."""
    address = join_host_port(host, port)
    if port and not _can_bind(host, port):
        # Checked here first: grpc would also log an error line of its own.
        raise _in_use(address)
    try:
        if credentials is None:
            return int(server.add_insecure_port(address))
        return int(server.add_secure_port(address, credentials))
    except RuntimeError as exc:  # grpc says only "Failed to bind to address"
        raise _in_use(address) from exc


def _in_use(address: str) -> AddressInUseError:
    return AddressInUseError(
        f"cannot listen on {address}: the port is in use or the address is not"
        " one of this machine's (choose another with --port, or 0 for any free one)"
    )


def _can_bind(host: str, port: int) -> bool:
    """Whether every address `host` resolves to can be bound on `port` now."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, protocol, _name, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError:
                return False
    return True


class SSSNServer:
    """One running service: the store, the channel service and the gRPC server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = build_store(
            config.store,
            read_only=config.read_only,
            durability=config.durability,
            pool_size=config.pg_pool_size,
            plain_json=convert.plain_json,
            lease_ttl=config.lease_ttl,
        )
        self.service = ChannelService(
            self.store,
            Limits(
                max_artifact_bytes=config.max_artifact_bytes,
                max_event_bytes=config.max_event_bytes,
                heartbeat_interval=config.heartbeat_interval,
            ),
            encode_event=convert.encode_event,
            measure_json=convert.json_size,
            measure_event=wire.served_size,
        )
        self._server: grpc.aio.Server | None = None
        self.port = 0
        self.health = health.aio.HealthServicer()
        self._health_updates: set[asyncio.Task[None]] = set()
        self.store.add_availability_listener(self._store_availability_changed)
        self.metrics = Metrics() if config.metrics_port is not None else None
        if self.metrics is not None:
            self.service.add_subscription_deleted_listener(self.metrics.forget_subscription)
        self.metrics_port: int | None = None
        self.metrics_host: str | None = None
        self._metrics_http: Any = None

    @property
    def address(self) -> str:
        """The `host:port` the server listens on (the real port once started),
        or `unix:PATH` for a Unix socket."""
        if self.config.unix_socket is not None:
            return f"unix:{self.config.unix_socket}"
        return join_host_port(self.config.host, self.port)

    async def start(self) -> None:
        """Takes the port, opens the store, then starts serving; sets `port`
        to the bound port.

        Raises:
            AddressInUseError: the address cannot be listened on; nothing
                in the store was opened or written.
        """
        # Read the tokens and certificates first, and take the port: a bad
        # file or a taken port fails the start before the store is touched.
        tokens = TokenTable.load(self.config.auth_tokens) if self.config.auth_tokens else None
        credentials = server_credentials(self.config)
        # A fresh health servicer per start: one that entered graceful
        # shutdown never reports SERVING again.
        self.health = health.aio.HealthServicer()
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if self.metrics is not None or self.config.access_log:
            interceptors.append(MetricsInterceptor(self.metrics, log_calls=self.config.access_log))
        if tokens is not None:
            interceptors.append(AuthInterceptor(tokens, self.service))
        server = grpc.aio.server(interceptors=interceptors, options=server_options(self.config))
        try:
            add_store_service(StoreServicer(self.service), server)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
            if self.config.reflection:
                reflection.enable_server_reflection(SERVICE_NAMES, server)
            if self.config.unix_socket is not None:
                server.add_insecure_port(self.address)
            else:
                self.port = _listen(server, self.config.host, self.config.port, credentials)
            await self.store.open()
        except BaseException:
            await server.stop(0)
            raise
        try:
            # The store is open: probes may route traffic here from now on.
            for service in ("", STORE_SERVICE):
                await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
            await server.start()
            if self.metrics is not None:
                self._start_metrics_endpoint(self.metrics)
        except BaseException:
            await server.stop(0)
            await self.store.close()
            raise
        self._server = server

    def _store_availability_changed(self, available: bool) -> None:
        """Probes stop routing traffic here while the database is unreachable."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if available
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        task = asyncio.get_running_loop().create_task(self._set_health(status))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    async def _set_health(self, status: Any) -> None:
        for service in ("", STORE_SERVICE):
            await self.health.set(service, status)

    def _start_metrics_endpoint(self, metrics: Metrics) -> None:
        http_server, thread = start_metrics_endpoint(
            metrics.registry,
            self.config.metrics_host,
            self.config.metrics_port or 0,
            self.config.metrics_token,
        )
        self._metrics_http = (http_server, thread)
        self.metrics_host = str(http_server.server_address[0])
        self.metrics_port = int(http_server.server_port)

    async def stop(self, grace: float | None = None) -> None:
        """Ends following streams with UNAVAILABLE at once, gives unary calls
        `grace` seconds, then closes the store."""
        self.service.begin_shutdown()
        # Probes see NOT_SERVING from the first moment of the drain, so
        # balancers stop routing new calls here.
        await self.health.enter_graceful_shutdown()
        # Woken streams need a few loop turns to send UNAVAILABLE.
        await self.service.wait_streams_ended(timeout=1.0)
        if self._server is not None:
            await self._server.stop(self.config.grace if grace is None else grace)
            self._server = None
        if self._metrics_http is not None:
            http_server, thread = self._metrics_http
            http_server.shutdown()
            http_server.server_close()
            thread.join()
            self._metrics_http = None
        # Streams ended above may still be recording their last batch.
        await self.service.flush_cursors()
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


def _exit_now(signum: int) -> None:
    # Every acknowledged write is already committed, so nothing is lost by
    # not closing the store; exit like a process killed by that signal.
    log.warning("second signal: exiting without waiting for calls in flight")
    logging.shutdown()
    os._exit(128 + signum)


async def serve(config: ServerConfig) -> None:
    """Runs the server until SIGINT or SIGTERM, then shuts down cleanly."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    server = SSSNServer(config)
    # Started before anything is logged: a start refused because another
    # server holds the store is reported by one line on stderr alone.
    await server.start()
    log.info("event loop: %s.%s", type(loop).__module__, type(loop).__name__)
    frozen = tune_for_serving()
    log.info(
        "garbage collector: %d startup objects frozen, young threshold %d",
        frozen,
        YOUNG_THRESHOLD,
    )
    mode = " read-only" if config.read_only else ""
    print(
        f"sssn-server listening on {server.address} (store {server.store.location}{mode})",
        flush=True,
    )
    try:
        await stopping.wait()
        log.info("shutting down")
        # A second signal means "now": skip what is left of the grace period.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _exit_now, signum)
    finally:
        await server.stop()
    print("sssn-server stopped", flush=True)
