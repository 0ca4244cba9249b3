"""The single SQLite writer: one thread owns the write connection and commits work in groups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...domain.errors import StorageFullError, StoreClosedError

log = logging.getLogger(__name__)

Work = Callable[[sqlite3.Connection], Any]
# Per request of a group: the error it failed with, or None and its result.
Outcome = tuple[BaseException | None, Any]


# Runs the batches of several combinable requests as one write, returning a
# result per batch (see WriterThread).
Combine = Callable[[sqlite3.Connection, list[Sequence[Any]]], list[Any]]


@dataclass(slots=True)
class Request:
    """One queued write: what to run, who waits for it, and whether it needs a
    savepoint of its own (not when it changes the store in one statement).
    A request with a `batch` may be run together with its neighbours."""

    work: Work
    future: asyncio.Future[Any]
    savepoint: bool = True
    batch: Sequence[Any] | None = None


# The writer thread's name; tests look for it to catch a store left open.
WRITER_THREAD_NAME = "sssn-store-writer"
# Queued writes are committed together, up to this many per transaction.
MAX_GROUP = 256


class WriterThread:
    """Runs every write of a store, in arrival order, on one thread.

    Whatever is queued when a transaction starts is committed with it (group
    commit), each request in its own savepoint so that one failure fails only
    its caller. The thread talks to the event loop twice per group: callers
    queue work on a thread-safe queue, and the group's outcomes come back in
    one callback, in commit order. That costs far less than a round trip to
    an executor per group, which is most of what a small append pays.

    Consecutive requests that carry a `batch` are run by one `combine` call
    in one savepoint (many small independent appends cost one append's
    statements); if that call fails, they run one by one, so that the
    failure is still only its own request's.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        committed: Callable[[list[Request], list[Outcome]], None],
        combine: Combine | None = None,
    ) -> None:
        """`connect` opens the write connection (in the thread); `committed` is
        called on the event loop with each group and its outcomes."""
        self._connect = connect
        self._committed = committed
        self._combine = combine
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Starts the thread; raises what opening the connection raised."""
        self._loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = self._loop.create_future()
        self._stopped = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(opened,), name=WRITER_THREAD_NAME, daemon=True
        )
        self._thread.start()
        try:
            await opened
        except BaseException:
            await self.stop()
            raise

    def submit(
        self,
        work: Work,
        future: asyncio.Future[Any],
        *,
        savepoint: bool = True,
        batch: Sequence[Any] | None = None,
    ) -> None:
        self._queue.put(Request(work, future, savepoint, batch))

    async def stop(self) -> None:
        """Commits what is queued, fails what comes later, closes the connection."""
        if self._thread is None:
            return
        self._queue.put(None)
        assert self._stopped is not None
        await self._stopped
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(callback, *args)

    def _run(self, opened: asyncio.Future[None]) -> None:
        try:
            db = self._connect()
        except BaseException as error:
            self._post(_resolve, opened, error)
            self._post(_resolve, self._stopped, None)
            return
        self._post(_resolve, opened, None)
        try:
            self._serve(db)
        finally:
            db.close()
            self._post(_resolve, self._stopped, None)

    def _serve(self, db: sqlite3.Connection) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            requests = [request for request in group if request is not None]
            if requests:
                outcomes = _commit_group(db, requests, self._combine)
                self._post(self._committed, requests, outcomes)
            if None in group:
                break
        # Whatever came after the stop is refused.
        while True:
            try:
                late = self._queue.get_nowait()
            except queue.Empty:
                return
            if late is not None:
                self._post(_resolve, late.future, StoreClosedError())


def _resolve(future: asyncio.Future[Any] | None, outcome: BaseException | None) -> None:
    if future is None or future.done():
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)


def _commit_group(
    db: sqlite3.Connection, requests: list[Request], combine: Combine | None
) -> list[Outcome]:
    """Runs a group of writes in one transaction; a failing one is rolled back alone."""
    outcomes: list[Outcome] = []
    try:
        db.execute("BEGIN IMMEDIATE")
        if len(requests) == 1:
            try:
                result = requests[0].work(db)
            except Exception as exc:
                _fail_group_if_lost(db, exc)
                db.execute("ROLLBACK")
                return [(exc, None)]
            outcomes.append((None, result))
        else:
            start = 0
            while start < len(requests):
                run = _combinable_run(requests, start) if combine is not None else 1
                if run > 1:
                    assert combine is not None
                    outcomes += _run_combined(db, requests[start : start + run], combine)
                else:
                    outcomes.append(_run_alone(db, requests[start]))
                start += run
        db.execute("COMMIT")
    except Exception as exc:
        # The transaction failed as a whole (disk full, I/O error): nothing of
        # the group is stored, so every caller gets the error, and the
        # connection is left outside any transaction for the next group.
        if _is_disk_full(exc):
            # Expected until space is freed, and the callers are told: one line.
            log.warning("write transaction failed: %s", exc)
        else:
            log.exception("write transaction failed")
        if db.in_transaction:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
        return [(_store_error(exc), None) for _request in requests]
    return outcomes


def _is_disk_full(error: BaseException) -> bool:
    """Whether SQLite failed because the disk (or its size limit) is full."""
    return isinstance(error, sqlite3.Error) and error.sqlite_errorcode == sqlite3.SQLITE_FULL


def _store_error(error: Exception) -> Exception:
    """What a caller is told of a failed transaction: a full disk as
    StorageFullError (retryable), anything else as it is."""
    if not _is_disk_full(error):
        return error
    full = StorageFullError()
    full.__cause__ = error
    return full


def _fail_group_if_lost(db: sqlite3.Connection, error: Exception) -> None:
    """Re-raises `error` (being handled) to fail the whole group when the
    transaction cannot go on: the disk is full, or SQLite rolled the
    transaction back by itself, as it may on SQLITE_FULL, IOERR or NOMEM.
    Later statements would otherwise run outside any transaction."""
    if _is_disk_full(error) or not db.in_transaction:
        raise error


def _combinable_run(requests: list[Request], start: int) -> int:
    """How many requests from `start` on carry a batch (at least 1)."""
    end = start
    while end < len(requests) and requests[end].batch is not None:
        end += 1
    return max(1, end - start)


def _run_combined(
    db: sqlite3.Connection, requests: list[Request], combine: Combine
) -> list[Outcome]:
    db.execute("SAVEPOINT combined")
    try:
        results = combine(db, [request.batch or () for request in requests])
    except Exception as exc:
        _fail_group_if_lost(db, exc)
        db.execute("ROLLBACK TO combined")
        db.execute("RELEASE combined")
        return [_run_alone(db, request) for request in requests]  # find the culprit
    db.execute("RELEASE combined")
    return [(None, result) for result in results]


def _run_alone(db: sqlite3.Connection, request: Request) -> Outcome:
    if not request.savepoint:
        try:
            return None, request.work(db)
        except Exception as exc:  # its one statement undid itself
            _fail_group_if_lost(db, exc)
            return exc, None
    db.execute("SAVEPOINT request")
    try:
        result = request.work(db)
    except Exception as exc:
        _fail_group_if_lost(db, exc)
        db.execute("ROLLBACK TO request")
        db.execute("RELEASE request")
        return exc, None
    db.execute("RELEASE request")
    return None, result
