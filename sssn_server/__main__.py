"""Command line of the server: `python -m sssn_server` and the `sssn-server` script."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from . import __version__
from .api._convert import encode_event, json_size, plain_json, with_content_from_wire
from .app import AddressInUseError, serve
from .config import DURABILITY_LEVELS, MAX_EVENT_BYTES_CEILING, ServerConfig
from .copying import Copied, copy_store
from .domain.ports import (
    Store,
    StoreIncompatibleError,
    StoreLockedError,
    StoreUnreachableError,
)
from .importing import (
    ImportRefusedError,
    Rules,
    SameStoreError,
    describe,
    import_reference,
    summary,
)
from .loops import EVENT_LOOPS, default_event_loop, loop_factory
from .reference_store import ReferenceStoreError
from .store import build_store, is_database_url
from .transfer import TargetNotEmptyError

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
            "embedded SQLite store or a PostgreSQL database. Every flag can also be set "
            "with the environment variable shown in brackets."
        ),
        epilog=(
            "To move a store (SQLite to PostgreSQL, or back): sssn-server copy-store "
            "--from DIR --to postgresql://...; to bring in a store of the reference sssn "
            "0.1.1: sssn-server import-reference --from DIR [--to DIR|URL] [--dry-run]. See "
            "each command's --help."
        ),
    )
    parser.add_argument(
        "--store",
        metavar="DIR|URL",
        default=_env("STORE", _DEFAULTS.store),
        help=(
            "store folder holding sssn.sqlite and artifacts/, or a PostgreSQL URL "
            "(postgresql://user:password@host:port/db, query options such as sslmode "
            "pass through); one writer per folder, a second exits with status 2, while "
            "any number of servers may share a database; a URL of another scheme or a "
            "file is refused with status 2 [SSSN_STORE] "
            "(default: .sssn)"
        ),
    )
    parser.add_argument(
        "--pg-pool-size",
        type=int,
        metavar="N",
        default=int(_env("PG_POOL_SIZE", _DEFAULTS.pg_pool_size)),
        help=(
            "most connections to PostgreSQL, at least 2, one of them writing; ignored for a "
            f"SQLite store [SSSN_PG_POOL_SIZE] (default: {_DEFAULTS.pg_pool_size})"
        ),
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        metavar="SECONDS",
        default=float(_env("LEASE_TTL", _DEFAULTS.lease_ttl)),
        help=(
            "PostgreSQL: how long a stream's lease on its subscription outlives its server's"
            " last renewal (renewed every third of it); a new stream on any replica takes a"
            " subscription over at once, whatever this is. Ignored for a SQLite store"
            f" [SSSN_LEASE_TTL] (default: {_DEFAULTS.lease_ttl:g})"
        ),
    )
    parser.add_argument(
        "--host",
        metavar="HOST",
        default=_env("HOST", _DEFAULTS.host),
        help="interface to listen on; 0.0.0.0 for all [SSSN_HOST] (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        default=int(_env("PORT", _DEFAULTS.port)),
        help="TCP port, 0 for any free port (the address is printed) [SSSN_PORT] (default: 7700)",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        default=_env_flag("READ_ONLY"),
        help=(
            "serve an existing store, refuse every write and write no file; runs beside "
            "the store's writer, and with no writer running serves a snapshot "
            "[SSSN_READ_ONLY]"
        ),
    )
    parser.add_argument(
        "--durability",
        choices=sorted(DURABILITY_LEVELS),
        default=_env("DURABILITY", _DEFAULTS.durability),
        help=(
            "full: every acknowledged write survives power loss; normal: faster, "
            "survives a killed process but may lose the last writes on power loss; on "
            "PostgreSQL, synchronous_commit on or off [SSSN_DURABILITY] (default: full)"
        ),
    )
    loop = default_event_loop()
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=_env("EVENT_LOOP", loop),
        help=(
            "asyncio event loop implementation; uvloop makes each call's thread hand-offs "
            "cheaper [SSSN_EVENT_LOOP] (default: uvloop where installed, as it is with the "
            "server except on Windows; else asyncio)"
        ),
    )
    parser.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        default=float(_env("GRACE", _DEFAULTS.grace)),
        help=(
            "seconds unary calls in flight get to finish on shutdown; following streams "
            "end at once [SSSN_GRACE] (default: 10)"
        ),
    )
    parser.add_argument(
        "--max-artifact-bytes",
        type=int,
        metavar="N",
        default=int(_env("MAX_ARTIFACT_BYTES", _DEFAULTS.max_artifact_bytes)),
        help="largest artifact accepted [SSSN_MAX_ARTIFACT_BYTES] (default: 1 GiB)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        metavar="N",
        default=int(_env("MAX_MESSAGE_BYTES", _DEFAULTS.max_message_bytes)),
        help="largest request message accepted [SSSN_MAX_MESSAGE_BYTES] (default: 4 MiB)",
    )
    parser.add_argument(
        "--max-event-bytes",
        type=int,
        metavar="N",
        default=int(_env("MAX_EVENT_BYTES", _DEFAULTS.max_event_bytes)),
        help=(
            "largest event (and snapshot value) stored, as encoded; larger ones are refused "
            f"with EVENT_TOO_LARGE; at most {MAX_EVENT_BYTES_CEILING} so that every stored "
            "event fits in a message a stock client accepts (other limits: docs/limits.md) "
            "[SSSN_MAX_EVENT_BYTES] (default: 1 MiB)"
        ),
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        metavar="SECONDS",
        default=float(_env("HEARTBEAT_INTERVAL", _DEFAULTS.heartbeat_interval)),
        help=(
            "seconds an idle following stream waits before it sends an empty message; a "
            "request's heartbeat_interval overrides it [SSSN_HEARTBEAT_INTERVAL] (default: 15)"
        ),
    )
    _add_mesh_arguments(parser)
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        default=_env("LOG_LEVEL", "INFO"),
        help="logging level [SSSN_LOG_LEVEL] (default: INFO)",
    )
    parser.add_argument("--version", action="version", version=f"sssn-server {__version__}")
    return parser


def _env_path(name: str) -> Path | None:
    value = os.environ.get(f"SSSN_{name}")
    return Path(value) if value else None


def _add_mesh_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for running behind proxies and meshes: health is always on;
    reflection, keepalive, TLS, tokens, metrics and the access log."""
    parser.add_argument(
        "--no-reflection",
        dest="reflection",
        action="store_false",
        default=not _env_flag("NO_REFLECTION"),
        help="do not serve gRPC server reflection (on by default) [SSSN_NO_REFLECTION]",
    )
    seconds = [
        ("keepalive-time", "seconds of silence before the server pings a client"),
        ("keepalive-timeout", "seconds to wait for a ping's answer before closing"),
        ("min-ping-interval", "shortest client ping interval accepted without GOAWAY"),
        ("max-connection-idle", "close connections without calls after this; 0 never"),
        ("max-connection-age", "send GOAWAY after this to rebalance; 0 never"),
        ("max-connection-age-grace", "time calls get after a max-age GOAWAY"),
    ]
    for flag, meaning in seconds:
        env = flag.upper().replace("-", "_")
        default = getattr(_DEFAULTS, env.lower())
        parser.add_argument(
            f"--{flag}",
            type=float,
            metavar="SECONDS",
            default=float(_env(env, default)),
            help=f"{meaning} [SSSN_{env}] (default: {default:g})",
        )
    parser.add_argument(
        "--max-send-message-bytes",
        type=int,
        metavar="N",
        default=int(_env("MAX_SEND_MESSAGE_BYTES", _DEFAULTS.max_send_message_bytes)),
        help="largest response message sent; 0 for gRPC's default, unlimited (streams "
        "send messages of at most 3 MiB anyway) [SSSN_MAX_SEND_MESSAGE_BYTES] (default: 0)",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        default=_env_path("TLS_CERT"),
        help="certificate chain; with --tls-key, serve TLS [SSSN_TLS_CERT]",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        metavar="PEM",
        default=_env_path("TLS_KEY"),
        help="private key of --tls-cert [SSSN_TLS_KEY]",
    )
    parser.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PEM",
        default=_env_path("TLS_CLIENT_CA"),
        help="require client certificates signed by this CA (mTLS) [SSSN_TLS_CLIENT_CA]",
    )
    parser.add_argument(
        "--auth-tokens",
        type=Path,
        metavar="FILE",
        default=_env_path("AUTH_TOKENS"),
        help="TOML (or JSON) file of bearer tokens and their read/write/admin channel "
        "grants; every StoreService call then needs one [SSSN_AUTH_TOKENS] (default: off)",
    )
    metrics_port = os.environ.get("SSSN_METRICS_PORT")
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        default=int(metrics_port) if metrics_port else None,
        help="serve Prometheus metrics on http://HOST:PORT/metrics [SSSN_METRICS_PORT] "
        "(default: off)",
    )
    parser.add_argument(
        "--metrics-host",
        metavar="HOST",
        default=os.environ.get("SSSN_METRICS_HOST") or _DEFAULTS.metrics_host,
        help="interface of the metrics endpoint, whatever --host is; 0.0.0.0 for all "
        f"[SSSN_METRICS_HOST] (default: {_DEFAULTS.metrics_host})",
    )
    parser.add_argument(
        "--metrics-token",
        metavar="TOKEN",
        default=os.environ.get("SSSN_METRICS_TOKEN") or None,
        help="require `Authorization: Bearer TOKEN` on the metrics endpoint (401 without); "
        "prefer the variable, which process listings do not show [SSSN_METRICS_TOKEN] "
        "(default: none)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=_env_flag("ACCESS_LOG"),
        help="log one JSON line per call (method, status, duration, peer, principal) "
        "to stderr [SSSN_ACCESS_LOG]",
    )


_MESH_SETTINGS = (
    "reflection",
    "keepalive_time",
    "keepalive_timeout",
    "min_ping_interval",
    "max_connection_idle",
    "max_connection_age",
    "max_connection_age_grace",
    "max_send_message_bytes",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "auth_tokens",
    "metrics_port",
    "metrics_host",
    "metrics_token",
    "access_log",
)


def _configure_access_log() -> None:
    # Bare JSON lines, not the human format, so log shippers parse them as is.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("sssn_server.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


# Flags with a fixed set of values, by destination: argparse checks what is
# typed, not a default taken from the environment, so those are checked here.
_CHOICES = {
    "durability": ("DURABILITY", DURABILITY_LEVELS),
    "event_loop": ("EVENT_LOOP", EVENT_LOOPS),
}


# `scheme://...`: what a URL looks like, as opposed to a folder.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def store_location(value: str) -> Path | str:
    """The store --store names (a PostgreSQL URL, or a SQLite folder), or
    ValueError with the one line to print.

    A URL of another scheme is refused rather than taken as a relative path:
    `mysql://h/db` would otherwise become a folder called `mysql:`.
    """
    if is_database_url(value):
        return value
    if _URL.match(value):
        scheme = value.split(":", 1)[0].lower()
        raise ValueError(
            f"--store: unsupported URL scheme {scheme!r}; --store takes a folder for the"
            " embedded SQLite store or a postgresql:// URL"
        )
    folder = Path(value)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--store {value}: not a folder (a store is a folder holding sssn.sqlite)")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["copy-store"]:
        return copy_main(arguments[1:])
    if arguments[:1] == ["import-reference"]:
        return import_main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        store = store_location(args.store)
    except ValueError as exc:  # checked before anything is created or written
        print(f"sssn-server: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535 (0 picks a free one), not {args.port}")
    if args.pg_pool_size < 2:
        parser.error("--pg-pool-size must be at least 2 (one connection writes, one reads)")
    if not 0.3 <= args.lease_ttl <= 300:
        parser.error("--lease-ttl must be between 0.3 and 300 seconds")
    if not 1 <= args.max_event_bytes <= MAX_EVENT_BYTES_CEILING:
        parser.error(f"--max-event-bytes must be between 1 and {MAX_EVENT_BYTES_CEILING}")
    for dest, (variable, choices) in _CHOICES.items():
        if getattr(args, dest) not in choices:
            parser.error(
                f"SSSN_{variable}={getattr(args, dest)!r}: choose from {', '.join(choices)}"
            )
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = ServerConfig(
        store=store,
        host=args.host,
        port=args.port,
        read_only=args.read_only,
        pg_pool_size=args.pg_pool_size,
        lease_ttl=args.lease_ttl,
        durability=args.durability,
        grace=args.grace,
        max_artifact_bytes=args.max_artifact_bytes,
        max_message_bytes=args.max_message_bytes,
        max_event_bytes=args.max_event_bytes,
        heartbeat_interval=args.heartbeat_interval,
    )
    # The mesh settings (keepalive, TLS, tokens, metrics...), copied by name from the parsed flags.
    config = replace(config, **{name: getattr(args, name) for name in _MESH_SETTINGS})
    if config.access_log:
        _configure_access_log()
    try:
        factory = loop_factory(args.event_loop)
    except ImportError:  # asked for by name where uvloop is not installed
        print("sssn-server: --event-loop uvloop needs the uvloop package", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(config))
    except StoreLockedError as exc:  # another server writes to this store
        print(f"sssn-server: {exc}", file=sys.stderr)
        return 2
    except StoreUnreachableError as exc:  # the database is down, or refused us
        print(f"sssn-server: {exc}", file=sys.stderr)
        return 2
    except StoreIncompatibleError as exc:  # a newer schema, or not one of our stores
        print(f"sssn-server: {exc}", file=sys.stderr)
        return 2
    except AddressInUseError as exc:  # checked before the store is opened
        print(f"sssn-server: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # --read-only on a missing store
        print(f"sssn-server: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a malformed tokens file or TLS settings
        print(f"sssn-server: {exc}", file=sys.stderr)
        return 2
    return 0


def build_copy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sssn-server copy-store",
        description=(
            "Copy a whole store into a new, empty one: every channel, event, "
            "subscription, artifact and snapshot, with the same ids and cursors "
            "(subscriptions resume where they were). Stop the server that writes "
            "to the source first; the target must hold nothing yet. Either may be a "
            "folder (SQLite) or a postgresql:// URL."
        ),
    )
    parser.add_argument("--from", dest="source", required=True, help="the store to copy")
    parser.add_argument(
        "--to", dest="target", required=True, help="the new store (created; must be empty)"
    )
    return parser


def copy_main(argv: Sequence[str]) -> int:
    """`sssn-server copy-store`: exit 0 when copied, 2 when refused."""
    args = build_copy_parser().parse_args(argv)
    try:
        source, target = store_location(args.source), store_location(args.target)
    except ValueError as exc:
        print(f"sssn-server copy-store: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level="WARNING", stream=sys.stderr)
    try:
        copied = asyncio.run(copy_between(source, target))
    except (
        TargetNotEmptyError,
        StoreLockedError,
        StoreUnreachableError,
        StoreIncompatibleError,
        FileNotFoundError,
    ) as exc:
        print(f"sssn-server copy-store: {exc}", file=sys.stderr)
        return 2
    print(
        f"copied {copied.channels:,} channels, {copied.events:,} events (head cursor"
        f" {copied.head_cursor:,}), {copied.subscriptions:,} subscriptions,"
        f" {copied.artifacts:,} artifacts ({copied.artifact_bytes:,} bytes) and"
        f" {copied.snapshots:,} snapshots",
        flush=True,
    )
    return 0


async def copy_between(source: Path | str, target: Path | str) -> Copied:
    async with (
        _moving_store(source, read_only=True) as reading,
        _moving_store(target, read_only=False) as writing,
    ):
        return await copy_store(reading, writing, with_content=with_content_from_wire)


def _moving_store(location: Path | str, *, read_only: bool) -> Store:
    """A store as copy-store and import-reference open it: every write durable."""
    return build_store(
        location, read_only=read_only, durability="full", pool_size=4, plain_json=plain_json
    )


def build_import_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sssn-server import-reference",
        description=(
            "Import a store written by the reference sssn 0.1.1 (a folder holding its "
            "sssn.sqlite and artifacts/, read read-only) into a new, empty store: "
            "channels, events with their ids, cursors and parents, subscriptions with "
            "their cursors, artifacts (each file's sha256 checked) and snapshots. "
            "Everything is checked first; if anything does not fit (an id our rules "
            "refuse, JSON nested too deep, a corrupted artifact...) the import writes "
            "nothing, lists what it refused and exits with status 2, as it does for a "
            "target that is not empty. Stop the reference's writers first."
        ),
    )
    parser.add_argument(
        "--from", dest="source", metavar="DIR", required=True, help="the reference store"
    )
    parser.add_argument(
        "--to",
        dest="target",
        metavar="DIR|URL",
        default=_env("STORE", _DEFAULTS.store),
        help=(
            "the new store: a folder or a postgresql:// URL (created; must be empty) "
            "[SSSN_STORE] (default: .sssn)"
        ),
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help=(
            "check everything and print what would move (events per channel, "
            "subscriptions, artifacts and their bytes, snapshots) and what would be "
            "refused; write nothing; exit 2 if the import would be refused"
        ),
    )
    return parser


def import_main(argv: Sequence[str]) -> int:
    """`sssn-server import-reference`: exit 0 when imported (or a clean dry
    run), 2 when refused."""
    args = build_import_parser().parse_args(argv)
    prog = "sssn-server import-reference"
    try:
        target = store_location(args.target)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level="WARNING", stream=sys.stderr)
    rules = Rules(encode_event, json_size)
    try:
        plan = asyncio.run(
            import_reference(
                args.source,
                lambda read_only: _moving_store(target, read_only=read_only),
                rules=rules,
                dry_run=args.dry_run,
            )
        )
    except ImportRefusedError as exc:
        print(describe(exc.plan, dry_run=False), file=sys.stderr)
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except (
        ReferenceStoreError,
        SameStoreError,
        TargetNotEmptyError,
        StoreLockedError,
        StoreUnreachableError,
        StoreIncompatibleError,
    ) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(describe(plan, dry_run=True), flush=True)
        return 0 if plan.target_empty and not plan.refused_count else 2
    print(summary(plan), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
