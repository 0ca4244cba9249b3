"""The `sssn` command line: every command of the reference CLI, over gRPC, plus serve and tail."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import grpc

from . import __version__
from ._config import DEFAULT_STORE, DEFAULT_TIMEOUT
from ._errors import (
    AlreadyExistsError,
    ArtifactIntegrityError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidPayloadError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SSSNClientError,
    SSSNError,
    UnauthenticatedError,
    UnavailableError,
)
from ._models import Artifact, Channel, Event, Snapshot, Subscription
from ._subscribe import Backoff, SubscribeOptions
from ._sync import SSSNClient

# Exit status of each error class: part of the CLI's contract, never renumbered.
# 2 is argparse's status for a bad command line.
EXIT_CODES: tuple[tuple[type[SSSNError], int, str], ...] = (
    (NotFoundError, 3, "NOT_FOUND: *_NOT_FOUND"),
    (AlreadyExistsError, 4, "ALREADY_EXISTS: CHANNEL_EXISTS, SUBSCRIPTION_EXISTS, EVENT_EXISTS"),
    (InvalidPayloadError, 5, "INVALID_ARGUMENT: INVALID_PAYLOAD"),
    (FailedPreconditionError, 6, "FAILED_PRECONDITION: STORE_READ_ONLY"),
    (ResourceExhaustedError, 7, "RESOURCE_EXHAUSTED: ARTIFACT_TOO_LARGE, TOO_MANY_ITEMS"),
    (UnavailableError, 8, "UNAVAILABLE: server unreachable or SHUTTING_DOWN"),
    (DeadlineExceededError, 9, "DEADLINE_EXCEEDED: no answer within --timeout"),
    (ArtifactIntegrityError, 10, "DATA_LOSS: ARTIFACT_INTEGRITY (size or sha256 mismatch)"),
    (UnauthenticatedError, 11, "UNAUTHENTICATED: no valid token (--token, SSSN_TOKEN)"),
    (PermissionDeniedError, 12, "PERMISSION_DENIED: the token's grants exclude the channel"),
)
EXIT_OTHER_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 8
EXIT_INTERRUPTED = 130

_EPILOG = "\n".join(
    [
        "exit status:",
        "  0    success (also `tail` stopped with Ctrl-C)",
        f"  {EXIT_OTHER_ERROR}    any other error (INTERNAL, UNKNOWN, ...)",
        f"  {EXIT_USAGE}    bad command line or argument (argparse usage error), or a"
        " --store that another server holds",
        *(f"  {code:<4} {label}" for _, code, label in EXIT_CODES),
        f"  {EXIT_INTERRUPTED}  interrupted with Ctrl-C",
        "",
        "Results are JSON on stdout: one object per line (lists are JSON Lines).",
        "Errors are one line on stderr: `sssn: error: REASON: message` (REASON is the",
        "server's ErrorInfo reason, a gRPC status name, or USAGE for a bad argument).",
    ]
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, `sssn: error: USAGE: ...`,
    like every other error of the command line (and the Node one's); the
    usage text is what `--help` is for."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"sssn: error: USAGE: {message}\n")


class _UsageError(Exception):
    """An argument that parsed but cannot be used (reported like an argparse error)."""


def exit_code(error: SSSNError) -> int:
    """The stable exit status of an error, from `EXIT_CODES`."""
    for error_class, code, _ in EXIT_CODES:
        if isinstance(error, error_class):
            return code
    return EXIT_OTHER_ERROR


# Argument types


def _json_object(raw: str) -> dict[str, Any]:
    value = _json_value(raw)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _json_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"must be valid JSON ({exc.msg})") from exc


def _instant(raw: str) -> float | datetime:
    """Seconds since the epoch, or an RFC 3339 date-time with its offset."""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be seconds since the epoch or an RFC 3339 time such as 2024-05-01T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("needs a UTC offset, e.g. 2024-05-01T12:00:00Z")
    return moment


def _json_argument(raw: str, label: str) -> Any:
    try:
        return _json_value(raw)
    except argparse.ArgumentTypeError as exc:
        raise _UsageError(f"{label} {exc}") from exc


# Output


def _emit(item: Channel | Event | Subscription | Artifact | Snapshot) -> None:
    # Compact separators, as the reference's `model_dump_json`; timestamps as
    # RFC 3339 text, which every language reads (the Node.js CLI prints the same).
    data = item.to_dict()
    if isinstance(data.get("timestamp"), float | int):
        data["timestamp"] = rfc3339(data["timestamp"])
    print(json.dumps(data, ensure_ascii=False, separators=(",", ":")), flush=True)


def rfc3339(seconds: float) -> str:
    """`seconds` since the epoch as RFC 3339 in UTC, to the microsecond: no
    fraction for whole seconds, else three digits or six."""
    # Rounded half up in one float operation, as the Node.js CLI does too.
    micros = math.floor(seconds * 1_000_000 + 0.5)
    whole, fraction = divmod(micros, 1_000_000)
    moment = _EPOCH + timedelta(seconds=whole)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if fraction:
        text += f".{fraction // 1000:03d}" if fraction % 1000 == 0 else f".{fraction:06d}"
    return text + "Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _emit_all(items: Iterable[Channel | Event | Subscription | Artifact | Snapshot]) -> None:
    for item in items:
        _emit(item)


def _emit_object(value: dict[str, Any]) -> None:
    """A result that is not a resource (what a delete removed), as one JSON line."""
    print(json.dumps(value, ensure_ascii=False, separators=(",", ":")), flush=True)


# Commands


def _channels(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit_all(client.list_channels())


def _create_channel(client: SSSNClient, args: argparse.Namespace) -> None:
    channel = Channel(
        name=args.name,
        schema=args.schema,
        form=args.form,
        description=args.description,
        metadata=args.metadata or {},
    )
    _emit(client.create_channel(channel))


def _get_channel(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit(client.get_channel(args.name))


def _delete_channel(client: SSSNClient, args: argparse.Namespace) -> None:
    deleted = client.delete_channel(args.name)
    _emit_object({"name": args.name, "deleted_events": deleted})


def _append(client: SSSNClient, args: argparse.Namespace) -> None:
    event = Event(
        id=args.id,
        channel=args.channel,
        timestamp=args.timestamp,
        source=args.source,
        kind=args.kind,
        payload=_json_argument(args.payload, "event payload"),
        schema=args.schema,
        metadata=args.metadata or {},
        correlation_id=args.correlation_id,
        parent_ids=tuple(args.parent_ids or ()),
    )
    _emit(client.append_event(event))


def _query_events(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit_all(
        client.query_events(
            args.channel, after_cursor=args.after_cursor, limit=args.limit, kind=args.kind
        )
    )


def _get_event(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit(client.get_event(args.id))


def _create_subscription(client: SSSNClient, args: argparse.Namespace) -> None:
    subscription = client.create_subscription(
        args.channel,
        subscription_id=args.id,
        consumer=args.consumer,
        batch_size=args.batch_size,
        filters={"kind": args.kind} if args.kind else None,
        metadata=args.metadata,
    )
    _emit(subscription)


def _get_subscription(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit(client.get_subscription(args.id))


def _list_subscriptions(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit_all(client.list_subscriptions(args.channel))


def _delete_subscription(client: SSSNClient, args: argparse.Namespace) -> None:
    client.delete_subscription(args.id)
    _emit_object({"id": args.id, "deleted": True})


def _seek_subscription(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit(client.seek_subscription(args.id, cursor=args.cursor, timestamp=args.timestamp))


def _pull_subscription(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit_all(client.pull_subscription(args.id, limit=args.limit))


def _write_artifact(client: SSSNClient, args: argparse.Namespace) -> None:
    options: dict[str, Any] = {
        "channel": args.channel,
        "media_type": args.media_type,
        "metadata": args.metadata,
        "event_ids": tuple(args.event_ids or ()),
    }
    if (args.data is None) == (args.file is None):
        raise _UsageError("give the artifact either as DATA or with --file, not both")
    if args.file is not None:
        try:
            with open(args.file, "rb") as payload:
                _emit(client.write_artifact(payload, **options))
        except OSError as exc:
            raise _UsageError(f"cannot read {args.file}: {exc.strerror}") from exc
        return
    if args.encoding == "base64":
        try:
            data = base64.b64decode(args.data.encode("ascii"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _UsageError("DATA is not valid base64") from exc
    else:
        data = args.data.encode("utf-8")
    _emit(client.write_artifact(data, **options))


def _get_artifact(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit(client.get_artifact(args.id))


def _read_artifact(client: SSSNClient, args: argparse.Namespace) -> None:
    data = client.read_artifact(args.id)
    if args.encoding == "base64":
        print(base64.b64encode(data).decode("ascii"), flush=True)
        return
    try:
        print(data.decode("utf-8"), flush=True)
    except UnicodeDecodeError as exc:
        raise _UsageError("the payload is not UTF-8 text; use --encoding base64") from exc


def _put_snapshot(client: SSSNClient, args: argparse.Namespace) -> None:
    snapshot = client.put_snapshot(
        args.name,
        _json_argument(args.value, "snapshot value"),
        channel=args.channel,
        schema=args.schema,
        source_event_id=args.source_event_id,
        metadata=args.metadata,
    )
    _emit(snapshot)


def _get_snapshot(client: SSSNClient, args: argparse.Namespace) -> None:
    _emit(client.get_snapshot(args.name))


def _tail(client: SSSNClient, args: argparse.Namespace) -> None:
    # Never guessed from the name: following a subscription moves its cursor.
    if (args.channel is None) == (args.subscription is None):
        raise _UsageError(
            "give a CHANNEL to follow, or --subscription ID"
            if args.channel is None
            else "give a CHANNEL or --subscription ID, not both"
        )
    if args.subscription is not None:
        with client.subscribe(args.subscription, limit=args.limit) as stream:
            _emit_all(stream)
        return
    client.get_channel(args.channel)
    _follow_channel(client, args)


def _follow_channel(client: SSSNClient, args: argparse.Namespace) -> None:
    """Reads a channel without a subscription: pages through it, then polls for more.

    Polling is the only way to follow a channel without moving anyone's cursor:
    the server pushes new events only on subscription streams. A server that
    restarts, or cancels the read while it stops, is waited for (said once on
    stderr), and the reading resumes after the last event printed.
    """
    cursor = args.after_cursor
    backoff = Backoff(SubscribeOptions(subscription_id=args.channel))
    away = False
    while True:
        try:
            events = client.query_events(
                args.channel, after_cursor=cursor, limit=1000, kind=args.kind
            )
        except SSSNClientError as exc:
            if exc.grpc_status_code not in _SERVER_AWAY:
                raise
            if not away:
                print(f"sssn: reconnecting to {client.target}: {exc.message}", file=sys.stderr)
                away = True
            time.sleep(backoff.next_delay() or 0.0)
            continue
        if away:
            print(f"sssn: reconnected to {client.target}", file=sys.stderr)
            away = False
        backoff.received()
        for event in events:
            _emit(event)
            cursor = event.cursor or cursor
        if len(events) < 1000:
            time.sleep(args.poll_interval)


# A server that stops answers UNAVAILABLE, or CANCELLED for a call its
# shutdown cut short: either way it (or its successor) will answer again.
_SERVER_AWAY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


_HANDLERS: dict[str, Callable[[SSSNClient, argparse.Namespace], None]] = {
    "channels": _channels,
    "create-channel": _create_channel,
    "get-channel": _get_channel,
    "delete-channel": _delete_channel,
    "append": _append,
    "query-events": _query_events,
    "get-event": _get_event,
    "create-subscription": _create_subscription,
    "get-subscription": _get_subscription,
    "list-subscriptions": _list_subscriptions,
    "delete-subscription": _delete_subscription,
    "seek-subscription": _seek_subscription,
    "pull-subscription": _pull_subscription,
    "write-artifact": _write_artifact,
    "get-artifact": _get_artifact,
    "read-artifact": _read_artifact,
    "put-snapshot": _put_snapshot,
    "get-snapshot": _get_snapshot,
    "tail": _tail,
}


# Parser


def build_parser() -> argparse.ArgumentParser:
    """The `sssn` argument parser (commands and flags named as in the reference CLI)."""
    parser = _Parser(
        prog="sssn",
        description=textwrap.fill(
            "Talk to an SSSN gRPC server, or run on a store in-process (--store): channels, "
            "events, subscriptions, artifacts and snapshots. Global options go before the "
            "command.",
            79,
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sssn {__version__}")
    parser.add_argument(
        "--target",
        help="server address: host:port, http://host:port (plain text) or "
        "https://host:port (TLS) [SSSN_TARGET]",
    )
    parser.add_argument(
        "--store",
        metavar="DIR",
        help="run the command on this store in-process, with no server to start (needs the "
        "server: pip install 'sssn-grpc[server]'); without --target or --store: "
        f"SSSN_TARGET, else SSSN_STORE, else the store {DEFAULT_STORE} [SSSN_STORE]",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"deadline of each call in seconds (default: {DEFAULT_TIMEOUT:g})",
    )
    _add_connection_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description or summary, 79),
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    command("channels", "List channels (JSON Lines, ordered by name)")

    create_channel = command("create-channel", "Create a channel")
    create_channel.add_argument("name", help="channel name (a path segment)")
    create_channel.add_argument("--schema", help="name of the schema its events follow")
    create_channel.add_argument("--form", default="log", help="one of the 13 forms (default: log)")
    create_channel.add_argument("--description", default="", help="text for people")
    create_channel.add_argument("--metadata", type=_json_object, help="JSON object")

    get_channel = command("get-channel", "Read one channel")
    get_channel.add_argument("name")

    delete_channel = command(
        "delete-channel",
        "Delete a channel with its events, subscriptions and snapshots",
        "Delete a channel with its events, its subscriptions, its snapshots and the "
        "records of its artifacts, and print how many events it held. Needs a token "
        "with the admin grant on the channel when the server checks tokens.",
    )
    delete_channel.add_argument("name")

    append = command("append", "Append one JSON event to a channel")
    append.add_argument("channel")
    append.add_argument("payload", help='the payload as JSON, e.g. \'{"text": "hi"}\'')
    append.add_argument("--kind", default="event", help="event type (default: event)")
    append.add_argument("--source", help="name of the producer")
    append.add_argument("--schema", help="name of the payload's schema")
    append.add_argument("--timestamp", type=float, help="seconds since the epoch (default: now)")
    append.add_argument("--metadata", type=_json_object, help="JSON object")
    append.add_argument("--correlation-id", help="token grouping related events")
    append.add_argument(
        "--parent-id", dest="parent_ids", action="append", help="id of a parent event (repeatable)"
    )
    append.add_argument("--id", help="event id; makes the append safe to retry")

    query_events = command("query-events", "Query a channel's events in cursor order (JSON Lines)")
    query_events.add_argument("channel")
    query_events.add_argument("--after-cursor", type=int, default=0, help="(default: 0)")
    query_events.add_argument("--limit", type=int, default=100, help="(default: 100)")
    query_events.add_argument("--kind", help="only events of this kind")

    get_event = command("get-event", "Read one event by id")
    get_event.add_argument("id")

    create_subscription = command(
        "create-subscription",
        "Create or reuse a channel subscription",
        "Create a subscription at the start of a channel, or print the existing one "
        "with the same id and channel.",
    )
    create_subscription.add_argument("channel")
    create_subscription.add_argument("--id", help="subscription id (default: minted by the server)")
    create_subscription.add_argument("--consumer", help="token naming the consuming worker")
    create_subscription.add_argument("--batch-size", type=int, default=100, help="(default: 100)")
    create_subscription.add_argument("--kind", help="deliver only events of this kind")
    create_subscription.add_argument("--metadata", type=_json_object, help="JSON object")

    get_subscription = command("get-subscription", "Read a subscription and its cursor")
    get_subscription.add_argument("id")

    list_subscriptions = command(
        "list-subscriptions", "List subscriptions with their cursors (JSON Lines, by id)"
    )
    list_subscriptions.add_argument("--channel", help="only the subscriptions of this channel")

    delete_subscription = command(
        "delete-subscription",
        "Delete a subscription",
        "Delete a subscription; a stream open on it ends with SUBSCRIPTION_NOT_FOUND.",
    )
    delete_subscription.add_argument("id")

    seek_subscription = command(
        "seek-subscription",
        "Move a subscription's cursor back (replay) or forward (skip)",
        "Move a subscription so that the next event it delivers is the first after "
        "--cursor, or the first stamped at or after --timestamp; print the subscription.",
    )
    seek_subscription.add_argument("id")
    position = seek_subscription.add_mutually_exclusive_group(required=True)
    position.add_argument(
        "--cursor", type=int, help="deliver next the first event after this cursor (0: replay)"
    )
    position.add_argument(
        "--timestamp",
        type=_instant,
        help="deliver next the first event stamped at or after this time "
        "(seconds since the epoch, or RFC 3339 such as 2024-05-01T12:00:00Z)",
    )

    pull_subscription = command(
        "pull-subscription",
        "Pull one batch of pending events from a subscription (JSON Lines)",
        "Pull one batch of pending events and move the subscription's cursor past them.",
    )
    pull_subscription.add_argument("id")
    pull_subscription.add_argument("--limit", type=int, help="(default: the batch size)")

    write_artifact = command(
        "write-artifact",
        "Write an artifact",
        "Store a payload given as DATA or read from --file (streamed in 1 MiB chunks); "
        "the stored sha256 is checked.",
    )
    write_artifact.add_argument("data", nargs="?", help="the payload (see --encoding)")
    write_artifact.add_argument(
        "--encoding", choices=("text", "base64"), default="text", help="of DATA (default: text)"
    )
    write_artifact.add_argument("--file", help="read the payload from this file instead")
    write_artifact.add_argument("--channel", help="channel the artifact belongs to")
    write_artifact.add_argument(
        "--media-type", default="application/octet-stream", help="(default: %(default)s)"
    )
    write_artifact.add_argument("--metadata", type=_json_object, help="JSON object")
    write_artifact.add_argument(
        "--event-id", dest="event_ids", action="append", help="id of a linked event (repeatable)"
    )

    get_artifact = command("get-artifact", "Read an artifact's metadata")
    get_artifact.add_argument("id")

    read_artifact = command(
        "read-artifact",
        "Read an artifact's payload",
        "Print an artifact's payload (sha256-checked).",
    )
    read_artifact.add_argument("id")
    read_artifact.add_argument(
        "--encoding", choices=("text", "base64"), default="text", help="(default: text)"
    )

    put_snapshot = command("put-snapshot", "Write (replace) a named snapshot")
    put_snapshot.add_argument("name")
    put_snapshot.add_argument("value", help="the state as JSON")
    put_snapshot.add_argument("--channel", help="channel the state is derived from")
    put_snapshot.add_argument("--schema", help="name of the value's schema")
    put_snapshot.add_argument("--source-event-id", help="id of the event the state is up to")
    put_snapshot.add_argument("--metadata", type=_json_object, help="JSON object")

    get_snapshot = command("get-snapshot", "Read one snapshot")
    get_snapshot.add_argument("name")

    tail = command(
        "tail",
        "Follow a channel or a subscription live (JSON Lines) until Ctrl-C",
        "Print events as they arrive, one JSON line each, until Ctrl-C. A CHANNEL is read "
        "from --after-cursor and then polled, without moving any cursor; it waits for a "
        "server that restarts, saying so on stderr. A subscription (--subscription ID) is "
        "followed on a server stream that reconnects after restarts; it moves the "
        "subscription's cursor, as pull-subscription does.",
    )
    tail.add_argument("channel", metavar="CHANNEL", nargs="?", help="the channel to follow")
    tail.add_argument(
        "--subscription", metavar="ID", help="follow this subscription instead of a channel"
    )
    tail.add_argument("--limit", type=int, help="subscription: most events per stream message")
    tail.add_argument(
        "--after-cursor", type=int, default=0, help="channel: start after this cursor (default: 0)"
    )
    tail.add_argument("--kind", help="channel: only events of this kind")
    tail.add_argument(
        "--poll-interval", type=float, default=0.5, help="channel: seconds between polls (0.5)"
    )

    commands.add_parser(
        "serve",
        add_help=False,
        help="Start the gRPC server in this process (takes every sssn-server flag; "
        "`sssn serve --help` lists them)",
    )
    return parser


def _serve(argv: list[str]) -> int:
    """`sssn serve`: the server's own command line parses (and documents) its flags."""
    from sssn_server.entry import load_server

    serve = load_server("sssn: error")
    return EXIT_USAGE if serve is None else serve(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one `sssn` command; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "serve":
        return _serve(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    embedded = None
    try:
        target, store = _where(args)
        credentials, metadata = _connection(args)
        if store is not None:
            if credentials is not None or metadata is not None:
                raise _UsageError("--tls and --token are for a server (--target), not --store")
            embedded = _embedded(store)
            if embedded is None:
                return EXIT_USAGE
            target = embedded.target
        with _client(target, args.timeout, credentials, metadata) as client:
            _HANDLERS[args.command](client, args)
    except _UsageError as exc:
        # The command line parsed, so one line without the usage text, like other errors.
        print(f"sssn: error: USAGE: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except SSSNClientError as exc:
        print(f"sssn: error: {exc.reason}: {exc.message}", file=sys.stderr, flush=True)
        return exit_code(exc)
    except SSSNError as exc:
        print(f"sssn: error: {exc}", file=sys.stderr, flush=True)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 0 if args.command == "tail" else EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`sssn tail x | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _EmbeddedRefused as exc:
        print(f"sssn: error: {exc.reason}: {exc}", file=sys.stderr, flush=True)
        return exc.status
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _where(args: argparse.Namespace) -> tuple[str, str | None]:
    """(target, store): the server to talk to, or the store to run the
    command on in-process (then the target comes from serving it)."""
    if args.target is not None and args.store is not None:
        raise _UsageError("give --target (a server) or --store (a store in-process), not both")
    if args.target is not None:
        return args.target, None
    if args.store is not None:
        return "", args.store
    if os.environ.get("SSSN_TARGET"):
        return os.environ["SSSN_TARGET"], None
    return "", os.environ.get("SSSN_STORE") or DEFAULT_STORE


class _EmbeddedRefused(Exception):
    """The store of `--store` cannot be served here (in use, missing, not a store)."""

    def __init__(self, message: str, reason: str, status: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


def _embedded(location: str) -> Any | None:
    """The store of `--store`, served in this process while the command runs
    (an `EmbeddedServer`, started), or None (and the line to install the
    server printed) where only the client is installed."""
    from sssn_server.entry import INSTALL_HINT, SERVER_MODULES

    try:
        from sssn_server.__main__ import store_location
        from sssn_server.domain.ports import (
            StoreIncompatibleError,
            StoreLockedError,
            StoreUnreachableError,
        )
        from sssn_server.embedded import EmbeddedServer
    except ImportError as exc:
        if exc.name not in SERVER_MODULES:
            raise
        print(
            f"sssn: error: USAGE: --store runs the server in this process, and the server is"
            f" not installed ({exc.name} is missing): {INSTALL_HINT}; or give --target",
            file=sys.stderr,
        )
        return None
    try:
        server = EmbeddedServer(store_location(location))
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    try:
        server.start()
    except StoreLockedError as exc:
        raise _EmbeddedRefused(
            f"{exc}; or talk to that server with --target HOST:PORT", "STORE_LOCKED", EXIT_USAGE
        ) from None
    except StoreUnreachableError as exc:
        raise _EmbeddedRefused(str(exc), "STORE_UNAVAILABLE", EXIT_UNAVAILABLE) from None
    except StoreIncompatibleError as exc:
        raise _EmbeddedRefused(str(exc), "STORE_INCOMPATIBLE", EXIT_USAGE) from None
    except OSError as exc:  # the folder cannot be created or read
        raise _EmbeddedRefused(f"--store: {exc}", "USAGE", EXIT_USAGE) from None
    return server


def _client(
    target: str,
    timeout: float,
    credentials: grpc.ChannelCredentials | None,
    metadata: dict[str, str] | None,
) -> SSSNClient:
    try:
        return SSSNClient(target, timeout=timeout, credentials=credentials, metadata=metadata)
    except InvalidPayloadError as exc:  # an unusable --target is a bad command line
        raise _UsageError(f"--{exc.message}") from None


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """TLS and token options matching the server's `--tls-*` and `--auth-tokens`."""
    env = os.environ.get
    parser.add_argument(
        "--tls",
        action="store_true",
        default=env("SSSN_TLS", "").lower() in {"1", "true", "yes", "on"},
        help="connect with TLS, trusting the system's CAs [SSSN_TLS]",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="PEM",
        default=env("SSSN_TLS_CA"),
        help="connect with TLS, trusting this CA bundle (implies --tls) [SSSN_TLS_CA]",
    )
    parser.add_argument(
        "--tls-client-cert",
        metavar="PEM",
        default=env("SSSN_TLS_CLIENT_CERT"),
        help="client certificate for servers that require one (mTLS) [SSSN_TLS_CLIENT_CERT]",
    )
    parser.add_argument(
        "--tls-client-key",
        metavar="PEM",
        default=env("SSSN_TLS_CLIENT_KEY"),
        help="private key of --tls-client-cert [SSSN_TLS_CLIENT_KEY]",
    )
    parser.add_argument(
        "--token",
        default=env("SSSN_TOKEN"),
        help="bearer token sent as `authorization` metadata; prefer the variable, "
        "which stays out of the process list [SSSN_TOKEN]",
    )


def _connection(
    args: argparse.Namespace,
) -> tuple[grpc.ChannelCredentials | None, dict[str, str] | None]:
    metadata = {"authorization": f"Bearer {args.token}"} if args.token else None
    if not (args.tls or args.tls_ca or args.tls_client_cert or args.tls_client_key):
        return None, metadata
    if bool(args.tls_client_cert) != bool(args.tls_client_key):
        raise _UsageError("--tls-client-cert and --tls-client-key go together")
    try:
        root = Path(args.tls_ca).read_bytes() if args.tls_ca else None
        cert = Path(args.tls_client_cert).read_bytes() if args.tls_client_cert else None
        key = Path(args.tls_client_key).read_bytes() if args.tls_client_key else None
    except OSError as exc:
        raise _UsageError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    credentials = grpc.ssl_channel_credentials(root, private_key=key, certificate_chain=cert)
    return credentials, metadata


if __name__ == "__main__":
    raise SystemExit(main())
