"""Connection defaults shared by both clients: deadlines, retries, channel options."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_TARGET = "localhost:7700"
DEFAULT_TIMEOUT = 30.0
"""Seconds every call but a following subscription may take (its gRPC deadline)."""

UPLOAD_THRESHOLD = 2 << 20
"""Payloads above this many bytes go through the streaming `UploadArtifact`; the
unary `WriteArtifact` stays well under the server's 4 MiB message limit."""
UPLOAD_CHUNK = 1 << 20
"""Size of each `UploadArtifact` data message."""

SERVICE = "sssn.v1.StoreService"

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
    }
    options.update(dict(extra))
    return list(options.items())


def call_metadata(metadata: CallMetadata) -> tuple[tuple[str, str], ...] | None:
    """Normalizes per-call metadata given as pairs or as a mapping."""
    if not metadata:
        return None
    pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
    return tuple((str(key), str(value)) for key, value in pairs)
