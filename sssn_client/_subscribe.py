"""What both clients' `subscribe()` share: the options, the reconnect policy, the backoff."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from sssn_proto.v1 import store_service_pb2 as pb

from . import _calls as calls
from ._errors import invalid
from ._models import Event

# Codes after which a following stream is opened again: the server went away
# (restart, deploy, network cut) or announced it is stopping. Anything else
# (NOT_FOUND, INVALID_ARGUMENT, ...) would fail the same way on every retry.
RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})

# Heartbeats may be delayed by a busy server or network; only several missed
# in a row mean the stream is gone (a half-open connection, a dead proxy).
SILENCE_FACTOR = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeOptions:
    """Everything a following stream needs to open and reopen itself.

    New stream features (acknowledgement modes, flow control, heartbeats) are
    added here and to `request()`, so both clients pick them up together.
    """

    subscription_id: str
    limit: int | None = None
    """Most events per stream message; the subscription's batch size when None."""
    initial_backoff: float = 0.1
    """Base delay before the first reconnect, in seconds."""
    max_backoff: float = 30.0
    """Cap of the delay between reconnects, in seconds."""
    max_retries: int | None = None
    """Consecutive failed attempts after which the error is raised; None retries forever."""
    ack_mode: str = "auto"
    """"auto": the server moves the cursor as it sends; "manual": only `ack()` moves it."""
    max_unacked: int = 0
    """Manual mode: the server pauses at this many unacknowledged events (0: its default)."""
    heartbeat_interval: float | None = None
    """Ask for a heartbeat after this many idle seconds, and treat a stream silent
    for `SILENCE_FACTOR` times as long as dead (reconnect); None uses neither."""

    def request(self) -> pb.PullSubscriptionRequest:
        return calls.pull_request(
            self.subscription_id,
            limit=self.limit,
            follow=True,
            ack_mode=self.ack_mode,
            max_unacked=self.max_unacked,
            heartbeat_interval=self.heartbeat_interval,
        )

    @property
    def silence_timeout(self) -> float | None:
        """Seconds without any message after which the stream counts as dead."""
        if self.heartbeat_interval is None:
            return None
        return self.heartbeat_interval * SILENCE_FACTOR


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog): each delay is
    uniform in [0, min(cap, base * 2**attempt)], so reconnecting clients spread out."""

    def __init__(self, options: SubscribeOptions) -> None:
        self._options = options
        self._attempt = 0
        self._opened_at = 0.0

    def opened(self) -> None:
        """A stream was opened now."""
        self._opened_at = time.monotonic()

    def received(self) -> None:
        """A message arrived: the connection works, so the next outage starts afresh."""
        self._attempt = 0

    def next_delay(self) -> float | None:
        """The delay before the next attempt, or None when retries are exhausted."""
        options = self._options
        # A stream that stayed up longer than the cap was a healthy connection
        # (an idle one receives nothing), so this failure is a new outage.
        if self._opened_at and time.monotonic() - self._opened_at >= options.max_backoff:
            self._attempt = 0
        if options.max_retries is not None and self._attempt >= options.max_retries:
            return None
        ceiling = min(options.max_backoff, options.initial_backoff * 2 ** min(self._attempt, 32))
        self._attempt += 1
        return random.uniform(0.0, ceiling)


def should_reconnect(error: grpc.RpcError) -> bool:
    return error.code() in RECONNECT_CODES


def ack_cursor(event_or_cursor: Event | int) -> int:
    """The cursor an `ack()` acknowledges up to."""
    if isinstance(event_or_cursor, int):
        return event_or_cursor
    if event_or_cursor.cursor is None:
        raise invalid("cursor", "the event has no cursor (it was not delivered by the server)")
    return event_or_cursor.cursor
