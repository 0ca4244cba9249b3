"""The one writer task: queued writes committed together, each done even if its caller leaves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from ...domain.errors import SSSNError, StoreUnavailableError
from ._errors import as_domain_error
from ._feed import COMMITS_CHANNEL

log = logging.getLogger(__name__)

# Requests committed in one transaction at most: enough to absorb a burst
# of concurrent callers, few enough that one commit stays short.
_MAX_GROUP = 256


class Cursors:
    """The cursor counter inside a group's transaction: the `cursor_head`
    row is locked for the whole transaction, so cursors are handed out in
    commit order and a reader of `cursor > N` never misses a lower one
    committed later."""

    __slots__ = ("head",)

    def __init__(self, head: int) -> None:
        self.head = head

    def take(self, count: int) -> int:
        """Reserves `count` consecutive cursors and returns the first."""
        first = self.head + 1
        self.head += count
        return first


Work = Callable[[asyncpg.Connection, Cursors], Awaitable[Any]]
Outcome = tuple[Exception | None, Any]
# The cursors a group committed: those after the first up to the second.
Span = tuple[int, int]
# Every other server hears of new cursors from this notification, sent
# with the counter's update (one statement) and delivered on commit.
_MOVE_HEAD = (
    "WITH moved AS (UPDATE cursor_head SET head = $1)"
    f" SELECT pg_notify('{COMMITS_CHANNEL}', $1::bigint::text)"
)


@dataclass(slots=True)
class Request:
    work: Work
    future: asyncio.Future[Any]
    savepoint: bool
    """False: the work changes the store in at most one statement and raises
    a domain error only before it or when it changed nothing."""


class _NeedsSavepoints(Exception):
    """A request without a savepoint failed inside the database, which
    aborts the whole transaction: the group runs again, each request in a
    savepoint of its own."""


class WriterTask:
    """Runs every write of the store, one group of queued requests per transaction.

    A request's work is carried out even if its caller is cancelled while
    waiting: a cancelled caller never interrupts a transaction, and a write
    once queued is not dropped. `committed` hears of each group on the event
    loop, in commit order, before the callers do, with the cursors it took.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        committed: Callable[[list[Request], list[Outcome], Span], None],
    ) -> None:
        self._pool = pool
        self._committed = committed
        self._queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sssn-pg-writer")

    async def stop(self) -> None:
        """Finishes the queued requests, then ends."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await asyncio.shield(self._task)
        self._task = None

    def submit(self, work: Work, future: asyncio.Future[Any], *, savepoint: bool) -> None:
        self._queue.put_nowait(Request(work, future, savepoint))

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            group = [first]
            while len(group) < _MAX_GROUP and not self._queue.empty():
                request = self._queue.get_nowait()
                if request is None:
                    stopping = True
                    break
                group.append(request)
            outcomes, span = await self._commit(group)
            try:
                self._committed(group, outcomes, span)
            except Exception:  # a listener's bug must not stop the writer
                log.exception("commit callback failed")

    async def _commit(self, group: list[Request]) -> tuple[list[Outcome], Span]:
        try:
            try:
                return await self._transaction(group, always_savepoint=False)
            except _NeedsSavepoints:
                return await self._transaction(group, always_savepoint=True)
        except Exception as exc:
            # The callers hear of it; the writer goes on with the next group.
            error = as_domain_error(exc)
            if error is None:
                log.exception("write transaction failed")
            return [(error or exc, None)] * len(group), (0, 0)

    async def _transaction(
        self, group: list[Request], *, always_savepoint: bool
    ) -> tuple[list[Outcome], Span]:
        outcomes: list[Outcome] = []
        async with self._pool.acquire() as connection, connection.transaction():
            head = await connection.fetchval("SELECT head FROM cursor_head FOR UPDATE")
            cursors = Cursors(head)
            for request in group:
                outcomes.append(
                    await _run_one(
                        connection, cursors, request, request.savepoint or always_savepoint
                    )
                )
            if cursors.head != head:
                await connection.execute(_MOVE_HEAD, cursors.head)
        return outcomes, (head, cursors.head)


async def _run_one(
    connection: asyncpg.Connection, cursors: Cursors, request: Request, savepoint: bool
) -> Outcome:
    """Runs one request's work; only a lost connection fails the whole group."""
    mark = cursors.head
    if not savepoint:
        try:
            return None, await request.work(connection, cursors)
        except SSSNError as error:  # raised before anything changed
            cursors.head = mark
            return error, None
        except Exception as exc:
            if _lost_connection(exc):
                raise
            # The database aborted the transaction, or the work failed
            # after a change: each request goes again in a savepoint.
            raise _NeedsSavepoints() from exc
    transaction = connection.transaction()
    await transaction.start()
    try:
        result = await request.work(connection, cursors)
    except Exception as exc:
        if _lost_connection(exc):
            raise
        await transaction.rollback()
        cursors.head = mark
        if isinstance(exc, SSSNError):
            return exc, None
        refusal = as_domain_error(exc)
        if refusal is None:  # a bug, or a caller's misuse: this caller hears of it
            log.exception("write failed")
        return refusal or exc, None
    await transaction.commit()
    return None, result


def _lost_connection(exc: Exception) -> bool:
    """Whether a failure means the connection (and so the transaction) is gone."""
    return isinstance(as_domain_error(exc), StoreUnavailableError)
