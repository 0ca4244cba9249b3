"""The store's writer lock: an exclusive flock on a file in the store folder, held while open."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ...domain.ports import StoreLockedError

LOCK_FILE = "sssn.lock"

# The holder writes its PID right after taking the lock; a second writer that
# reads the file in between sees it empty and looks again for this long.
_PID_WAIT_SECONDS = 0.5


class WriterLock:
    """One writer per store folder.

    The lock is the kernel's (flock), so it goes with the process however the
    process ends, SIGKILL included; the file and the PID in it stay behind
    and mean nothing once unlocked. Read-only servers never take it, so they
    can neither be refused nor keep a writer from starting.
    """

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock or raises StoreLockedError at once, without waiting."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd)
            os.close(fd)
            who = "another process" if holder is None else f"process {holder}"
            raise StoreLockedError(
                f"store {self.path.parent} is already served by {who}"
                f" (lock {self.path}); stop that server first, or start this one"
                " with --read-only",
                holder_pid=holder,
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Lets another writer in; harmless when not held."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the flock


def _holder_pid(fd: int) -> int | None:
    deadline = time.monotonic() + _PID_WAIT_SECONDS
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)
