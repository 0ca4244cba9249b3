"""Runs a private PostgreSQL cluster on loopback, for the tests and `make run-postgres`."""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

SUPERUSER = "sssn"
# initdb and the server refuse to run as root; as root they run as this user,
# which Debian's postgresql package creates.
SYSTEM_USER = "postgres"
DEFAULT_PORT = 5433
DEFAULT_DATABASE = "sssn"
# Debian's package keeps the binaries here and puts only a wrapper for psql on PATH.
_DEBIAN_BINS = Path("/usr/lib/postgresql")
_SETTINGS_FILE = "sssn.conf"
_LOG_TAIL_CHARS = 3000

StopMode = Literal["smart", "fast", "immediate"]


def find_pg_bin() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`, or None when PostgreSQL is not installed.

    Looks on PATH first, then at the newest `/usr/lib/postgresql/<version>/bin`.
    """
    found = shutil.which("initdb")
    if found is not None:
        # Resolved first: a symlink on PATH (/usr/local/bin/initdb) points at the
        # real bin directory, which also holds psql.
        for directory in (Path(found).resolve().parent, Path(found).parent):
            if (directory / "pg_ctl").is_file():
                return directory
    candidates = [
        path.parent
        for path in _DEBIAN_BINS.glob("*/bin/initdb")
        if path.parent.parent.name.isdigit() and (path.parent / "pg_ctl").is_file()
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda directory: int(directory.parent.name))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresCluster:
    """A PostgreSQL cluster in its own folder, listening on 127.0.0.1 only.

    `root` holds `data/` (the cluster), `log` (the server's log) and the server's
    Unix socket. The superuser is `sssn` and every local connection is trusted, so
    URLs carry no password. As a context manager it starts on entry and is destroyed
    on exit.
    """

    def __init__(self, root: Path | None = None, port: int | None = None, *, fast: bool = False):
        """Describes the cluster; nothing runs until `start()`.

        Args:
            root: the cluster's folder, created when missing. None makes a new
                temporary folder (under the system's temp dir), which also works as root,
                where a folder under a private parent (pytest's tmp_path) does not.
            port: the TCP port; None picks a free one at the first `start()` and keeps it.
            fast: turns off fsync and full-page writes (and initdb's sync): for
                throwaway clusters, whose data a power loss may corrupt.

        Raises:
            RuntimeError: PostgreSQL is not installed, or this process is root and
                there is no `postgres` user to run it as.
        """
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL not found (no initdb on PATH or in /usr/lib/postgresql/*/bin): "
                "run `make postgres` or `apt-get install postgresql`"
            )
        self.bin_dir = bin_dir
        self.fast = fast
        self._port = port
        self._run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root, and PostgreSQL refuses to run as root: it runs as the "
                    f"{SYSTEM_USER!r} user, which does not exist; install the postgresql "
                    f"package (`apt-get install postgresql`) or run as another user"
                ) from None
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="sssn-pg-"))
            # mkdtemp makes the folder 0700, which the postgres user could not enter.
            root.chmod(0o755)
        self.root = root.resolve()
        self.data_dir = self.root / "data"
        self.log_file = self.root / "log"

    @property
    def port(self) -> int:
        """The TCP port the server listens on; chosen by the first `start()` if not given."""
        if self._port is None:
            raise RuntimeError("the cluster has no port until it is started")
        return self._port

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL for database `dbname` as the superuser `sssn`."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        """Creates the cluster on first use, writes its settings and starts the server.

        Starting again after `stop()` keeps the data and the port, which is how
        tests simulate a database restart.

        Raises:
            RuntimeError: the server is already running, or initdb or pg_ctl failed
                (the message carries their output and the end of the server's log).
        """
        self._prepare_root()
        if not self.data_dir.exists():
            self._init()
        elif self.is_running():
            raise RuntimeError(f"the cluster in {self.root} is already running")
        if self._port is None:
            self._port = free_port()
        self._write_settings()
        self._pg_ctl("start", "-l", str(self.log_file), "-w", "-t", "60")

    def stop(self, mode: StopMode = "fast") -> None:
        """Stops the server and waits until it has exited; does nothing if it is not running.

        Args:
            mode: `fast` rolls back open transactions and disconnects clients;
                `immediate` stops without a checkpoint, like a crash (recovery runs
                at the next start); `smart` waits for clients to disconnect.
        """
        if self.is_running():
            self._pg_ctl("stop", "-m", mode, "-w", "-t", "60")

    def restart(self, mode: StopMode = "fast") -> None:
        """Stops the server and starts it again on the same port with the same data."""
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        """Whether a server is running on this cluster's data directory."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        # pg_ctl status exits with 0 while running and 3 when not.
        result = self._run([self._pg("pg_ctl"), "-D", str(self.data_dir), "status"], check=False)
        return result.returncode == 0

    def create_database(
        self, name: str, template: str | None = None, *, exist_ok: bool = False
    ) -> str:
        """Creates database `name` (a copy of `template` if given) and returns its URL.

        Raises:
            RuntimeError: the database exists (unless `exist_ok`), or psql failed.
        """
        if exist_ok and self._database_exists(name):
            return self.url(name)
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {_quote_ident(template)}"
        self.psql(sql)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drops database `name` if it exists, disconnecting anyone still connected to it."""
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Runs `sql` with psql as the superuser and returns its unaligned output.

        Raises:
            RuntimeError: psql is missing, or the statement failed.
        """
        psql = self.bin_dir / "psql"
        if not psql.is_file():
            found = shutil.which("psql")
            if found is None:
                raise RuntimeError(f"psql not found in {self.bin_dir} or on PATH")
            psql = Path(found)
        command = [
            str(psql),
            "-X",  # no ~/.psqlrc: its settings would change the output
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            dbname,
            "-c",
            sql,
        ]
        # psql is a client; it runs as anyone, root included.
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed on {sql!r}: {result.stderr.strip()}")
        return result.stdout

    def destroy(self) -> None:
        """Stops the server, without a checkpoint since the data goes too, and removes `root`."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()

    def _database_exists(self, name: str) -> bool:
        sql = f"SELECT 1 FROM pg_database WHERE datname = {_quote_literal(name)}"
        return self.psql(sql).strip() == "1"

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            return
        os.chown(self.root, self._run_as.pw_uid, self._run_as.pw_gid)
        # Every parent must be traversable by postgres too; checking as that user
        # gives a clear error instead of initdb's "Permission denied" on a path.
        if self._run(["test", "-w", str(self.root)], check=False).returncode != 0:
            raise RuntimeError(
                f"the {SYSTEM_USER!r} user cannot write {self.root}: a parent folder is "
                f"private to root (pytest's tmp_path is); use a folder under a traversable "
                f"parent, or PostgresCluster() with no root for a temporary one"
            )

    def _init(self) -> None:
        command = [
            self._pg("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if self.fast:
            command.append("--no-sync")
        self._run(command)
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# Settings of tools/pg_cluster.py, rewritten on every start.\n")
            conf.write(f"include_if_exists '{_SETTINGS_FILE}'\n")

    def _write_settings(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": _quote_literal(str(self.root)),
            # The test suite opens many pools at once; the default of 100 is near.
            "max_connections": "200",
        }
        if self.fast:
            settings["fsync"] = "off"
            settings["full_page_writes"] = "off"
        path = self.data_dir / _SETTINGS_FILE
        path.write_text(
            "".join(f"{key} = {value}\n" for key, value in settings.items()), encoding="utf-8"
        )
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _pg_ctl(self, *args: str) -> None:
        try:
            self._run([self._pg("pg_ctl"), "-D", str(self.data_dir), *args])
        except RuntimeError as exc:
            tail = self._log_tail()
            raise RuntimeError(f"{exc}\n--- end of {self.log_file} ---\n{tail}") from None

    def _pg(self, program: str) -> str:
        return str(self.bin_dir / program)

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def _run(self, command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs a server-side command, as the postgres user when this process is root."""
        if self._run_as is not None:
            if shutil.which("runuser") is not None:
                command = ["runuser", "-u", SYSTEM_USER, "--", *command]
            else:
                command = ["su", SYSTEM_USER, "-s", "/bin/sh", "-c", shlex.join(command)]
        # Run inside the cluster folder: the postgres user may not be allowed into the cwd.
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}): {output}")
        return result


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pg_cluster.py",
        description=(
            "Start or stop a persistent local PostgreSQL cluster for the server "
            "(`make run-postgres`). It listens on 127.0.0.1 only, its superuser is "
            f"{SUPERUSER!r} with no password, and its data lives in DIR."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser(
        "start",
        help="create the cluster in DIR if needed, start it and print the database's URL",
        description=(
            "Create the cluster in DIR on first use (initdb), start it on --port and "
            "create --database if missing; prints that database's URL. A server "
            "already running in DIR is restarted with these settings."
        ),
    )
    start.add_argument("dir", type=Path, metavar="DIR", help="the cluster's folder")
    start.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})"
    )
    start.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help=f"database to create and print the URL of (default {DEFAULT_DATABASE})",
    )
    stop = commands.add_parser(
        "stop",
        help="stop the cluster in DIR, keeping its data",
        description="Stop the server of the cluster in DIR, keeping its data; "
        "does nothing if it is not running.",
    )
    stop.add_argument("dir", type=Path, metavar="DIR", help="the cluster's folder")
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            cluster = PostgresCluster(args.dir, args.port)
            cluster.stop()
            started = time.monotonic()
            cluster.start()
            url = cluster.create_database(args.database, exist_ok=True)
            print(
                f"PostgreSQL running in {cluster.root} on port {cluster.port} "
                f"({time.monotonic() - started:.1f}s); log in {cluster.log_file}",
                file=sys.stderr,
            )
            print(url)
        else:
            cluster = PostgresCluster(args.dir)
            cluster.stop()
            print(f"PostgreSQL in {cluster.root} stopped", file=sys.stderr)
    except RuntimeError as exc:
        print(f"pg_cluster.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
