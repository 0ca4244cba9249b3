"""In-memory state of open subscription streams: ownership, unacknowledged deliveries, wake-ups."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import SSSNError

AUTO = "auto"
MANUAL = "manual"
ACK_MODES = (AUTO, MANUAL)


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """What the server knows of a subscription's open stream (for operators and tests)."""

    ack_mode: str
    unacked: int
    """Events delivered on this stream and not acknowledged yet (manual mode)."""
    paused: bool
    """The stream waits for acknowledgements before it sends more (flow control)."""
    sending: bool
    """A message is being handed to the transport (for long: the reader is not reading)."""


class StreamHandle:
    """The stream that currently owns a subscription.

    Manual mode keeps the stream's read position here, ahead of the persisted
    (acknowledged) cursor, with the cursors still awaiting an acknowledgement;
    a new stream starts again from the persisted cursor, which is what
    redelivers unacknowledged events (at least once).
    """

    def __init__(
        self,
        subscription_id: str,
        ack_mode: str,
        position: int,
        *,
        epoch: int,
        seeks: int | None = None,
    ) -> None:
        self.subscription_id = subscription_id
        self.ack_mode = ack_mode
        self.position = position
        self.epoch = epoch
        """The stream's lease on the subscription (its fencing token)."""
        self.seeks = seeks
        """Seeks of the subscription as a shared store counted them when this
        stream last looked (None: the store is not shared)."""
        self.unacked: deque[int] = deque()
        self.paused = False
        self.sending = False
        self.wake = asyncio.Event()
        self.error: SSSNError | None = None
        self._task = asyncio.current_task()

    def status(self) -> StreamStatus:
        return StreamStatus(
            ack_mode=self.ack_mode,
            unacked=len(self.unacked),
            paused=self.paused,
            sending=self.sending,
        )

    def check(self) -> None:
        """Raises the error that ended this stream's ownership, if any."""
        if self.error is not None:
            raise self.error

    @contextmanager
    def sending_to_reader(self) -> Iterator[None]:
        """Marks a message as being handed to the transport, so `end` can cut it short.

        Refuses to begin once the stream has ended: an `end` that landed while
        the batch was being read found nothing to cancel, and a send begun
        after it could block on a reader that is gone.
        """
        self.check()
        self.sending = True
        try:
            yield
        finally:
            self.sending = False

    def delivered(self, cursors: list[int]) -> None:
        self.position = cursors[-1]
        if self.ack_mode == MANUAL:
            self.unacked.extend(cursors)

    def acked(self, cursor: int) -> None:
        """Forgets deliveries up to `cursor` and lets a paused stream go on."""
        while self.unacked and self.unacked[0] <= cursor:
            self.unacked.popleft()
        self.position = max(self.position, cursor)
        self.wake.set()

    def reset(self, cursor: int) -> None:
        """Continues from `cursor` (a seek), forgetting outstanding deliveries."""
        self.position = cursor
        self.unacked.clear()
        self.wake.set()

    def end(self, error: SSSNError) -> None:
        """Ends the stream with `error` as soon as it wakes.

        A stream blocked sending to a reader that stopped reading would only
        notice when the transport gives up, so its task is cancelled instead:
        the new owner must not wait for a dead predecessor.
        """
        self.error = error
        self.wake.set()
        if self.sending and self._task is not None:
            self._task.cancel()
