"""Connection defaults shared by both clients: deadlines, retries, channel options."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import grpc

from ._errors import invalid

DEFAULT_TARGET = "localhost:7700"
# The store `sssn` runs a command on in-process when no server is named
# (the reference CLI's default store folder).
DEFAULT_STORE = ".sssn"
DEFAULT_TIMEOUT = 30.0
"""Seconds every call but a following subscription may take (its gRPC deadline)."""

UPLOAD_THRESHOLD = 2 << 20
"""Payloads above this many bytes go through the streaming `UploadArtifact`; the
unary `WriteArtifact` stays well under the server's 4 MiB message limit."""
UPLOAD_CHUNK = 1 << 20
"""Size of each `UploadArtifact` data message."""

SERVICE = "sssn.v1.StoreService"

STREAM_WINDOW_BYTES = 256 << 10
"""The HTTP/2 window each stream of a client announces, fixed (no bandwidth
probing). In auto ack mode the server moves a subscription's cursor once the
transport has taken a message, which is as far ahead of what the application
has read as this window lets it be: a reader that stalls and then dies loses
at most about one and a half windows of events, where a probing window grows
to megabytes (docs/delivery.md)."""

# Reads have no effect on the store, so replaying them after UNAVAILABLE (a
# restarting server, a dropped connection) is always safe. Writes are not
# retried here: an append without an id could be stored twice.
IDEMPOTENT_READS = (
    "GetChannel",
    "ListChannels",
    "GetEvent",
    "QueryEvents",
    "GetSubscription",
    "GetArtifact",
    "ReadArtifact",
    "GetSnapshot",
)

SERVICE_CONFIG: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE, "method": method} for method in IDEMPOTENT_READS],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}

ChannelOptions = Sequence[tuple[str, Any]]
CallMetadata = Sequence[tuple[str, str]] | Mapping[str, str] | None


def channel_options(extra: ChannelOptions = ()) -> list[tuple[str, Any]]:
    """gRPC channel options of a client; `extra` entries override the defaults."""
    options: dict[str, Any] = {
        "grpc.service_config": json.dumps(SERVICE_CONFIG),
        "grpc.enable_retries": 1,
        # QueryEvents and GetEvent answers are not split by the server, and an
        # event may itself be close to 4 MiB, so the default cap would reject them.
        "grpc.max_receive_message_length": -1,
        # gRPC's own reconnect backoff grows to 120 s; keep it under the 30 s cap
        # that `subscribe()` promises.
        "grpc.max_reconnect_backoff_ms": 30_000,
        # Bounds what an auto-mode stream delivers beyond what was read.
        "grpc.http2.bdp_probe": 0,
        "grpc.http2.lookahead_bytes": STREAM_WINDOW_BYTES,
    }
    options.update(dict(extra))
    return list(options.items())


def call_metadata(metadata: CallMetadata) -> tuple[tuple[str, str], ...] | None:
    """Normalizes per-call metadata given as pairs or as a mapping."""
    if not metadata:
        return None
    pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
    return tuple((str(key), str(value)) for key, value in pairs)


# Schemes gRPC resolves itself (`dns:///host:port`, `unix:/path`...): passed through.
GRPC_SCHEMES = frozenset({"dns", "unix", "unix-abstract", "ipv4", "ipv6", "vsock", "xds"})
# URLs as the reference's HTTP clients take them, with the port of each scheme.
URL_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_USAGE = "give host:port, http://host:port (plain text) or https://host:port (TLS)"


def grpc_target(
    target: str, credentials: grpc.ChannelCredentials | None
) -> tuple[str, grpc.ChannelCredentials | None]:
    """The gRPC target and credentials of a client's address.

    `http://host:port` is `host:port` in plain text and `https://host:port` is
    `host:port` over TLS (the given credentials, else the system's CAs), so the
    base URLs of the reference's HTTP clients keep working; `host:port` and
    gRPC's own targets (`dns:///...`, `unix:...`) pass unchanged. Addresses gRPC
    would only reject when the first call fails to resolve them are refused
    here, with `InvalidPayloadError`.
    """
    if not isinstance(target, str) or not target.strip():
        raise invalid("target", f"is empty; {_USAGE}")
    if any(char.isspace() for char in target):
        raise invalid("target", f"{target!r} contains whitespace; {_USAGE}")
    match = _SCHEME.match(target)
    scheme = match.group(1).lower() if match else ""
    if scheme in URL_PORTS:
        return _url_target(target, scheme, credentials)
    if scheme in GRPC_SCHEMES:
        return target, credentials
    if "://" in target:
        raise invalid("target", f"{target!r} has an unsupported scheme; {_USAGE}")
    _check_host_port(target)
    return target, credentials


def _url_target(
    url: str, scheme: str, credentials: grpc.ChannelCredentials | None
) -> tuple[str, grpc.ChannelCredentials | None]:
    parts = urlsplit(url)
    if not url[len(scheme) :].startswith("://") or not parts.hostname:
        raise invalid("target", f"{url!r} is not a URL with a host; {_USAGE}")
    try:
        port = parts.port
    except ValueError:
        raise invalid("target", f"{url!r} has an invalid port; {_USAGE}") from None
    if parts.username is not None or parts.password is not None:
        raise invalid(
            "target",
            "must not hold credentials; send the token as call metadata (--token on the"
            " command line)",
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        # A gRPC server answers at the root: a path prefix of an HTTP proxy has no meaning.
        raise invalid("target", f"{url!r} has a path; gRPC takes only scheme://host:port")
    host = parts.hostname
    if ":" in host:  # an IPv6 address keeps its brackets in a gRPC target
        host = f"[{host}]"
    address = f"{host}:{port if port is not None else URL_PORTS[scheme]}"
    if scheme == "https":
        return address, credentials or grpc.ssl_channel_credentials()
    if credentials is not None:
        raise invalid("target", f"{url!r} asks for plain text but credentials were given")
    return address, None


def _check_host_port(target: str) -> None:
    """Refuses a `host:port` whose port is not a port number."""
    host, colon, port = target.rpartition(":")
    if not colon or (host.count(":") and not host.startswith("[")):
        return  # a bare host (gRPC's default port) or a bare IPv6 address
    if not port.isdigit() or int(port) > 65535:
        raise invalid("target", f"{target!r} has an invalid port; {_USAGE}")


def client_address(
    target: str | None, base_url: str | None, credentials: grpc.ChannelCredentials | None
) -> tuple[str, grpc.ChannelCredentials | None]:
    """A client's gRPC target and credentials from `target` or the reference's `base_url`."""
    if target is not None and base_url is not None:
        raise invalid("target", "give target or base_url, not both")
    address = target if target is not None else base_url
    return grpc_target(DEFAULT_TARGET if address is None else address, credentials)
