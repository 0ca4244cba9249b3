"""Server settings: one frozen dataclass, filled from flags or `SSSN_*` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DURABILITY_LEVELS = {"full": "FULL", "normal": "NORMAL"}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything `sssn-server` needs to start."""

    store: Path = Path(".sssn")
    """Folder of the embedded store (`sssn.sqlite` and `artifacts/`)."""
    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 (or ::) for every interface."""
    port: int = 7700
    """TCP port; 0 picks a free one (the chosen port is printed)."""
    read_only: bool = False
    """Serve an existing store without writing to it."""
    durability: str = "full"
    """`full` syncs every commit to disk (survives power loss); `normal` is
    faster and survives a killed process but may lose the last commits on
    power loss."""
    grace: float = 10.0
    """Seconds unary calls in flight get to finish on shutdown."""
    max_artifact_bytes: int = 1 << 30
    """Largest artifact accepted, in bytes."""
    max_message_bytes: int = 4 << 20
    """Largest request message accepted, in bytes (gRPC's default is 4 MiB)."""
