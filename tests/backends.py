"""The storage backends the suite runs on: SQLite in a temp dir and a throwaway PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from pg_cluster import PostgresCluster, find_pg_bin

from sssn_server.api._convert import plain_json
from sssn_server.domain.ports import Store
from sssn_server.store import SQLiteStore
from sssn_server.store.postgres import PostgresStore

BACKENDS = ("sqlite", "postgres")
# `make test` (and so CI) sets this: the PostgreSQL half must run, never skip.
REQUIRE_POSTGRES = os.environ.get("SSSN_REQUIRE_POSTGRES") == "1"
HAVE_POSTGRES = find_pg_bin() is not None
INSTALL_HINT = (
    "PostgreSQL is not installed: only the SQLite half of the suite runs."
    " `make test` installs it (apt-get install postgresql) and runs both."
)
_TEMPLATE = "sssn_template"


def backends_for(metafunc: pytest.Metafunc) -> list[str]:
    """The backends a test runs on: both, unless it reaches into a SQLite
    folder (`store_dir`) or is marked `sqlite_only` or `postgres_only`."""
    if "store_dir" in metafunc.fixturenames or metafunc.definition.get_closest_marker(
        "sqlite_only"
    ):
        return ["sqlite"]
    if metafunc.definition.get_closest_marker("postgres_only"):
        return ["postgres"]
    if HAVE_POSTGRES or REQUIRE_POSTGRES:
        return list(BACKENDS)
    return ["sqlite"]


def require_postgres() -> None:
    """Skips the test where PostgreSQL is missing, or fails it where it must run."""
    if HAVE_POSTGRES:
        return
    if REQUIRE_POSTGRES:
        pytest.fail(f"SSSN_REQUIRE_POSTGRES=1, but initdb was not found. {INSTALL_HINT}")
    pytest.skip(INSTALL_HINT)


def open_store(location: str | Path, **options: Any) -> Store:
    """A store of the backend `location` names, as the server builds it."""
    if isinstance(location, Path):
        return SQLiteStore(location, **options)
    return PostgresStore(location, plain_json=plain_json, **options)


class Databases:
    """Fresh databases on one cluster, each a copy of a migrated template."""

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster
        self._numbers = itertools.count()
        cluster.create_database(_TEMPLATE)
        asyncio.run(_migrate(cluster.url(_TEMPLATE)))

    def create(self, *, migrated: bool = True) -> str:
        """A new database's URL: migrated (from the template), or empty."""
        name = f"test_{next(self._numbers)}"
        return self.cluster.create_database(name, template=_TEMPLATE if migrated else None)

    def drop(self, url: str) -> None:
        self.cluster.drop_database(url.rsplit("/", 1)[1])


async def _migrate(url: str) -> None:
    async with open_store(url):
        pass


@pytest.fixture(scope="session")
def postgres() -> Iterator[Databases]:
    """A throwaway PostgreSQL cluster on a free loopback port, for the session."""
    require_postgres()
    cluster = PostgresCluster(fast=True)
    cluster.start()
    try:
        yield Databases(cluster)
    finally:
        cluster.destroy()


@pytest.fixture
def store_location(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Where the test's store lives: a folder, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield tmp_path / "store"
        return
    databases: Databases = request.getfixturevalue("postgres")
    url = databases.create()
    yield url
    databases.drop(url)


@pytest.fixture
def empty_store_location(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A location of the test's backend that holds no store yet."""
    if backend == "sqlite":
        yield tmp_path / "empty"
        return
    databases: Databases = request.getfixturevalue("postgres")
    url = databases.create(migrated=False)
    yield url
    databases.drop(url)


# What each backend keeps of artifact payloads, for tests that check that a
# refused upload keeps nothing and that content is stored once.


async def stored_digests(location: Path | str) -> set[str]:
    """The digests of the payloads the store holds."""
    if isinstance(location, Path):
        return {path.name for path in (location / "artifacts").iterdir() if path.is_file()}
    rows = await query(location, "SELECT sha256 FROM blobs")
    return {row[0] for row in rows}


async def unfinished_uploads(location: Path | str) -> int:
    """How many uploads left bytes behind without becoming a payload."""
    if isinstance(location, Path):
        return len(list((location / "artifacts" / ".staging").iterdir()))
    rows = await query(
        location,
        "SELECT (SELECT count(*) FROM uploads), (SELECT count(DISTINCT upload) FROM blob_chunks c"
        " WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.upload = c.upload))",
    )
    return max(int(rows[0][0]), int(rows[0][1]))


async def lose_payload(location: Path | str, digest: str) -> None:
    """Removes a payload behind the store's back, as a lost file would."""
    if isinstance(location, Path):
        (location / "artifacts" / digest).unlink()
        return
    await query(location, "DELETE FROM blobs WHERE sha256 = $1", digest)


async def query(url: str, sql: str, *parameters: Any) -> list[Any]:
    """The rows of one statement, on a connection of its own."""
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(sql, *parameters))
    finally:
        await connection.close()
