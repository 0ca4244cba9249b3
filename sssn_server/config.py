"""Server settings: one frozen dataclass, filled from flags or `SSSN_*` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DURABILITY_LEVELS = ("full", "normal")

# Responses are kept under 3 MiB (a stock client accepts 4 MiB), and one
# event with its cursor and framing must fit in one of them.
MAX_EVENT_BYTES_CEILING = (3 << 20) - (4 << 10)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything `sssn-server` needs to start."""

    store: Path | str = Path(".sssn")
    """Folder of the embedded store (`sssn.sqlite` and `artifacts/`), or the
    `postgresql://` URL of a database holding the store."""
    pg_pool_size: int = 10
    """Most connections a PostgreSQL store opens (one of them writes)."""
    lease_ttl: float = 10.0
    """PostgreSQL: seconds a stream's lease on its subscription outlives the
    last renewal by its server (a killed server's leases lapse after it)."""
    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 (or ::) for every interface."""
    port: int = 7700
    """TCP port; 0 picks a free one (the chosen port is printed)."""
    unix_socket: Path | None = None
    """Listen on this Unix socket instead of `host:port` (the embedded store
    of `sssn --store`, which no other process may reach)."""
    read_only: bool = False
    """Serve an existing store without writing to it."""
    durability: str = "full"
    """`full` syncs every commit to disk (survives power loss); `normal` is
    faster and survives a killed process but may lose the last commits on
    power loss (PostgreSQL: `synchronous_commit` on or off)."""
    grace: float = 10.0
    """Seconds unary calls in flight get to finish on shutdown."""
    max_artifact_bytes: int = 1 << 30
    """Largest artifact accepted, in bytes."""
    max_message_bytes: int = 4 << 20
    """Largest request message accepted, in bytes (gRPC's default is 4 MiB)."""
    max_event_bytes: int = 1 << 20
    """Largest event (and snapshot value) stored, as encoded; at most
    `MAX_EVENT_BYTES_CEILING`, so that any stored event fits in a message a
    stock client accepts."""
    heartbeat_interval: float = 15.0
    """Seconds an idle following stream waits before it sends an empty message;
    a request's `heartbeat_interval` overrides it."""
    # What proxies, probes and meshes expect. Durations are seconds; 0 turns a
    # limit off.
    reflection: bool = True
    """Serve gRPC server reflection so generic tools can list and call the API."""
    keepalive_time: float = 30.0
    """Seconds of silence on a connection before the server pings the client;
    keeps idle following streams alive through proxies and NATs that drop quiet
    connections after about a minute, and finds dead peers."""
    keepalive_timeout: float = 20.0
    """Seconds the server waits for a ping's answer before closing the connection."""
    min_ping_interval: float = 10.0
    """Shortest interval between client pings the server accepts; clients that
    ping more often are sent GOAWAY `too_many_pings`. gRPC's default of 5
    minutes would reject clients that ping every 30 s."""
    max_connection_idle: float = 0.0
    """Close a connection after this many seconds without calls; 0 never."""
    max_connection_age: float = 0.0
    """Ask clients to reconnect (GOAWAY) after this many seconds, to rebalance
    behind L4 load balancers; 0 never. Following streams then end with
    UNAVAILABLE after the age grace and resume from their cursor."""
    max_connection_age_grace: float = 60.0
    """Seconds calls get to finish after a max-age GOAWAY before being cut."""
    max_send_message_bytes: int = 0
    """Largest response message sent, in bytes; 0 leaves gRPC's default
    (unlimited; streams already send messages of at most 3 MiB)."""
    tls_cert: Path | None = None
    """PEM certificate chain; with `tls_key`, serve TLS instead of plaintext."""
    tls_key: Path | None = None
    """PEM private key of `tls_cert`."""
    tls_client_ca: Path | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed (mTLS)."""
    auth_tokens: Path | None = None
    """TOML or JSON file of bearer tokens and their channel grants; when set,
    every StoreService call needs `authorization: Bearer <token>`."""
    metrics_port: int | None = None
    """Serve Prometheus metrics over HTTP on this port (0 picks one); None for off."""
    metrics_host: str = "127.0.0.1"
    """Interface of the metrics endpoint: loopback unless set, whatever `host`
    is, since the series name subscriptions and methods."""
    metrics_token: str | None = None
    """When set, the metrics endpoint answers 401 to requests without
    `Authorization: Bearer <metrics_token>`."""
    access_log: bool = False
    """Log one JSON line per call (method, status, duration, peer, principal)
    on the `sssn_server.access` logger."""
