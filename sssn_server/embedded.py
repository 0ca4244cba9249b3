"""The server of `sssn --store`: a store served on a private Unix socket in a thread of its own."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from .app import SSSNServer
from .config import ServerConfig

# Seconds the last calls get when the command is done (they are the command's own).
_GRACE = 5.0


class EmbeddedServer:
    """Serves one store to this process alone, for as long as a command runs.

    The command line then talks to it over gRPC like to any server, so one
    code path serves both, and the store is locked, migrated and closed
    exactly as `sssn-server` does it. The socket lives in a new folder only
    this user can open.
    """

    def __init__(self, store: Path | str) -> None:
        self._store = store
        self._folder = Path(tempfile.mkdtemp(prefix="sssn-embedded-"))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sssn-embedded", daemon=True
        )
        self._server: SSSNServer | None = None
        self.target = ""
        """What to dial once started: `unix:PATH`."""

    def start(self) -> str:
        """Opens the store and returns the target to dial (`unix:PATH`);
        raises what `sssn-server` refuses to start for (a locked store...)."""
        # Only what goes wrong is worth a line on the command's stderr.
        logging.getLogger("sssn_server").setLevel(logging.WARNING)
        self._thread.start()
        config = ServerConfig(
            store=self._store,
            unix_socket=self._folder / "sssn.sock",
            reflection=False,
            grace=_GRACE,
        )
        server = SSSNServer(config)
        try:
            self._run(server.start())
        except BaseException:
            self.stop()
            raise
        self._server = server
        self.target = server.address
        return self.target

    def stop(self) -> None:
        """Stops serving (cursors of streams ended are stored first) and
        closes the store; safe to call more than once."""
        server, self._server = self._server, None
        if server is not None:
            self._run(server.stop(grace=_GRACE))
        if self._thread.is_alive():
            self._run(self._loop.shutdown_asyncgens())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        if not self._loop.is_closed():
            self._loop.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
