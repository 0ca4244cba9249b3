"""Command line of the server: `python -m sssn_server` and the `sssn-server` script."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .app import serve
from .config import DURABILITY_LEVELS, ServerConfig

_DEFAULTS = ServerConfig()


def _env(name: str, default: object) -> str:
    return os.environ.get(f"SSSN_{name}", str(default))


def _env_flag(name: str) -> bool:
    return os.environ.get(f"SSSN_{name}", "").lower() in {"1", "true", "yes", "on"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sssn-server",
        description=(
            "Serve SSSN semantic channels (sssn.v1.StoreService) over gRPC from an "
            "embedded SQLite store. Every flag can also be set with the environment "
            "variable shown in brackets."
        ),
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=Path(_env("STORE", _DEFAULTS.store)),
        help="store folder holding sssn.sqlite and artifacts/ [SSSN_STORE] (default: .sssn)",
    )
    parser.add_argument(
        "--host",
        default=_env("HOST", _DEFAULTS.host),
        help="interface to listen on; 0.0.0.0 for all [SSSN_HOST] (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(_env("PORT", _DEFAULTS.port)),
        help="TCP port, 0 for any free port [SSSN_PORT] (default: 7700)",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        default=_env_flag("READ_ONLY"),
        help="serve an existing store and refuse every write [SSSN_READ_ONLY]",
    )
    parser.add_argument(
        "--durability",
        choices=sorted(DURABILITY_LEVELS),
        default=_env("DURABILITY", _DEFAULTS.durability),
        help=(
            "full: every acknowledged write survives power loss; normal: faster, "
            "survives a killed process but may lose the last writes on power loss "
            "[SSSN_DURABILITY] (default: full)"
        ),
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=float(_env("GRACE", _DEFAULTS.grace)),
        help="seconds calls in flight get to finish on shutdown [SSSN_GRACE] (default: 10)",
    )
    parser.add_argument(
        "--max-artifact-bytes",
        type=int,
        default=int(_env("MAX_ARTIFACT_BYTES", _DEFAULTS.max_artifact_bytes)),
        help="largest artifact accepted [SSSN_MAX_ARTIFACT_BYTES] (default: 1 GiB)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(_env("MAX_MESSAGE_BYTES", _DEFAULTS.max_message_bytes)),
        help="largest request message accepted [SSSN_MAX_MESSAGE_BYTES] (default: 4 MiB)",
    )
    parser.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "INFO"),
        help="logging level [SSSN_LOG_LEVEL] (default: INFO)",
    )
    parser.add_argument("--version", action="version", version=f"sssn-server {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = ServerConfig(
        store=args.store,
        host=args.host,
        port=args.port,
        read_only=args.read_only,
        durability=args.durability,
        grace=args.grace,
        max_artifact_bytes=args.max_artifact_bytes,
        max_message_bytes=args.max_message_bytes,
    )
    try:
        asyncio.run(serve(config))
    except FileNotFoundError as exc:  # --read-only on a missing store
        print(f"sssn-server: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
