"""`sssn-server import-reference`: a store the real reference `sssn` 0.1.1 wrote, into ours."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sssn_client import AsyncSSSNClient
from sssn_server.api._convert import plain_json, with_content_from_wire
from sssn_server.app import SSSNServer
from sssn_server.config import ServerConfig
from sssn_server.domain.models import Encoded, Event

from .backends import open_store, query
from .helpers import DEADLINE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import reference_venv

# The first test may spend a while building .venv-reference with pip.
pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).resolve().parent
# `make test` (and so CI) sets this: the reference must be installed, never skipped.
REQUIRE_REFERENCE = os.environ.get("SSSN_REQUIRE_REFERENCE") == "1"


@pytest.fixture(scope="session")
def reference_python() -> Path:
    """The python of .venv-reference/, where the reference 0.1.1 is installed."""
    try:
        return reference_venv.ensure()
    except (OSError, subprocess.CalledProcessError) as exc:
        message = f"cannot install {reference_venv.PACKAGES} into .venv-reference/: {exc}"
        if REQUIRE_REFERENCE:
            pytest.fail(f"SSSN_REQUIRE_REFERENCE=1, but {message}")
        pytest.skip(f"{message}; `make test` installs it (tools/reference_venv.py)")


def _write_reference(python: Path, folder: Path, *mode: str) -> dict[str, Any]:
    """A store written by the reference's own LocalStore, and what it reads back."""
    written = subprocess.run(
        [str(python), str(HERE / "reference_writer.py"), str(folder), *mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(written.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def reference(
    reference_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """One reference store for the module (tests that change it copy it first)."""
    folder = tmp_path_factory.mktemp("reference") / "store"
    return folder, _write_reference(reference_python, folder)


def _import(source: Path, target: Path | str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sssn_server",
            "import-reference",
            "--from",
            str(source),
            "--to",
            str(target),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _files(folder: Path) -> dict[str, bytes]:
    files = (path for path in folder.rglob("*") if path.is_file())
    return {str(path.relative_to(folder)): path.read_bytes() for path in files}


def _payload(event: Event) -> tuple[Any, Any]:
    """An event's payload and metadata as served (from its wire form)."""
    content = with_content_from_wire(event)
    assert isinstance(content.payload, Encoded) and isinstance(content.metadata, Encoded)
    return (
        plain_json(content.payload, is_object=False),
        plain_json(content.metadata, is_object=True),
    )


async def _contents(location: Path | str) -> dict[str, Any]:
    async with open_store(location, read_only=True) as store:
        channels = await store.list_channels(after=None, limit=100)
        return {
            "head": await store.head_cursor(),
            "channels": channels,
            "events": [
                await store.query_events(channel.name, after_cursor=0, limit=100, kind=None)
                for channel in channels
            ],
            "subscriptions": await store.list_subscriptions(channel=None, after=None, limit=100),
            "artifacts": await store.list_artifacts(after=None, limit=100),
            "snapshots": await store.list_snapshots(after=None, limit=100),
        }


async def test_an_import_keeps_ids_cursors_parents_subscriptions_artifacts_and_snapshots(
    reference: tuple[Path, dict[str, Any]], empty_store_location: Path | str
) -> None:
    folder, expected = reference
    target = empty_store_location

    imported = _import(folder, target)

    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(
        "imported 3 channels, 7 events (head cursor 7), 2 subscriptions, 4 artifacts"
        " (1,536,022 bytes) and 2 snapshots from "
    )
    assert "events: 7/7 (100%)" in imported.stderr  # the progress, line by line
    assert "artifacts: 4/4 (100%)" in imported.stderr
    by_id = {event["id"]: event for events in expected["events"].values() for event in events}

    # Through the Store: cursors, the exact instants, the wire form appends have.
    stored = await _contents(target)
    assert stored["head"] == 7
    events = [event for channel in stored["events"] for event in channel]
    assert sorted(event.cursor for event in events) == list(range(1, 8))
    for event in events:
        original = by_id[event.id]
        assert event.cursor == original["cursor"]
        assert event.timestamp_ns / 10**9 == original["timestamp"]  # the same float comes back
        assert event.wire is not None  # stored as an append through the API stores it
        assert _payload(event) == (original["payload"], original["metadata"])
    first = next(event for event in events if event.cursor == 1)
    assert first.timestamp_ns == 1_700_000_000_250_000_000

    # Through a real server and our client, against what the reference itself read back.
    server = SSSNServer(ServerConfig(store=target, port=0))
    await server.start()
    try:
        async with AsyncSSSNClient(server.address, timeout=DEADLINE) as client:
            channels = await client.list_channels()
            assert [channel.model_dump(mode="json", by_alias=True) for channel in channels] == (
                expected["channels"]
            )
            for name, original_events in expected["events"].items():
                got = await client.query_events(name, limit=100)
                assert [event.model_dump(mode="json", by_alias=True) for event in got] == (
                    original_events
                )
            for original in expected["subscriptions"]:
                got_subscription = await client.get_subscription(original["id"])
                assert got_subscription.model_dump(mode="json") == original
            for original in expected["artifacts"]:
                artifact = await client.get_artifact(original["id"])
                payload = await client.read_artifact(original["id"])
                assert hashlib.sha256(payload).hexdigest() == original["read_sha256"]
                assert payload == (folder / original["path"]).read_bytes()
                without_path = {key: value for key, value in original.items() if key != "path"}
                without_path.pop("read_sha256")
                assert artifact.model_dump(mode="json") == without_path
            for original in expected["snapshots"]:
                snapshot = await client.get_snapshot(original["name"])
                assert snapshot.model_dump(mode="json", by_alias=True) == original

            # The subscription resumes where the reference's pull left it.
            pulled = await client.pull_subscription("billing")
            placed = [event["id"] for event in expected["events"]["orders"]]
            assert expected["pulled"] == placed[:1] + placed[2:3]
            assert [event.id for event in pulled] == placed[3:]
            # New appends go on above the imported head.
            appended = await client.append_event({"channel": "audit", "payload": "new"})
            assert appended.cursor == 8
    finally:
        await server.stop(grace=0)


async def test_a_dry_run_reports_what_would_move_and_writes_nothing(
    reference: tuple[Path, dict[str, Any]], empty_store_location: Path | str
) -> None:
    folder, _expected = reference
    target = empty_store_location
    before = _files(folder)

    report = _import(folder, target, "--dry-run")

    assert report.returncode == 0, report.stderr
    shown_target = target if isinstance(target, Path) else target.split("@")[-1]
    assert report.stdout.splitlines() == [
        f"reference store {folder}: head cursor 7",
        "  channels: 3",
        "    audit   3 events",
        "    empty   0 events",
        "    orders  4 events",
        "  events: 7",
        "  subscriptions: 2",
        "  artifacts: 4 (1,536,022 bytes, sha256 checked)",
        "  snapshots: 2",
        "  refused: none",
        report.stdout.splitlines()[10],
        "dry run: nothing written; the import would go through",
    ]
    assert report.stdout.splitlines()[10].startswith("target ")
    assert report.stdout.splitlines()[10].endswith(f"{shown_target}: empty")
    if isinstance(target, Path):
        assert not target.exists()
    else:
        tables = await query(
            target, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables[0][0] == 0
    assert _files(folder) == before  # read-only: not even a journal left behind


async def test_a_store_that_is_not_empty_is_refused_and_left_alone(
    reference: tuple[Path, dict[str, Any]], empty_store_location: Path | str
) -> None:
    folder, _expected = reference
    target = empty_store_location
    assert _import(folder, target).returncode == 0
    before = await _contents(target)

    again = _import(folder, target)
    dry = _import(folder, target, "--dry-run")

    assert again.returncode == 2
    assert again.stderr.strip().endswith("is not empty; import-reference fills a new store only")
    assert "Traceback" not in again.stderr
    assert dry.returncode == 2
    assert ": not empty: import-reference would refuse it" in dry.stdout
    assert await _contents(target) == before


def test_a_corrupted_or_missing_artifact_file_is_refused_and_nothing_is_written(
    reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    original, expected = reference
    folder = tmp_path / "reference"
    shutil.copytree(original, folder)
    big, empty = expected["artifacts"][2], expected["artifacts"][3]
    corrupted = bytearray((folder / big["path"]).read_bytes())
    corrupted[1000] ^= 0xFF  # same size, one byte changed
    (folder / big["path"]).write_bytes(bytes(corrupted))
    (folder / empty["path"]).unlink()
    target = tmp_path / "ours"

    refused = _import(folder, target)
    report = _import(folder, target, "--dry-run")

    assert refused.returncode == 2
    corrupt_line = (
        f"artifact {big['id']!r}: the sha256 of {big['path']} is"
        f" {hashlib.sha256(corrupted).hexdigest()}, not the recorded {big['sha256']}"
    )
    missing_line = f"artifact {empty['id']!r}: its file {empty['path']} is missing"
    assert f"    {corrupt_line}" in refused.stderr.splitlines()
    assert f"    {missing_line}" in refused.stderr.splitlines()
    assert refused.stderr.strip().endswith(
        f"2 things in {folder} do not fit this store; nothing was written"
    )
    assert "Traceback" not in refused.stderr
    assert not target.exists()
    assert report.returncode == 2
    assert "  refused: 2" in report.stdout
    assert "the import would be refused" in report.stdout


def test_what_our_rules_refuse_is_listed_and_nothing_is_written(
    reference_python: Path, tmp_path: Path
) -> None:
    # All written by the reference itself, which takes them.
    folder = tmp_path / "reference"
    _write_reference(reference_python, folder, "awkward")
    target = tmp_path / "ours"

    report = _import(folder, target, "--dry-run")
    refused = _import(folder, target)

    assert report.returncode == 2
    listed = report.stdout.split("  refused: 4\n", 1)[1].splitlines()[:4]
    assert listed == [
        "    channel '" + "c" * 56 + "...: name: must be at most 256 bytes long",
        "    event 'bell\\x07': id: must be a non-empty path segment",
        "    event 'deep': payload: nests objects and arrays deeper than 24 levels",
        "    subscription 'tab': consumer: must be a non-empty token",
    ]
    assert refused.returncode == 2
    assert "4 things" in refused.stderr and "nothing was written" in refused.stderr
    assert not target.exists()


def test_rows_edited_behind_the_references_back_are_refused(
    reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    original, expected = reference
    folder = tmp_path / "reference"
    shutil.copytree(original, folder)
    third = expected["events"]["orders"][3]
    receipt = expected["artifacts"][0]
    with sqlite3.connect(folder / "sssn.sqlite") as db:
        db.execute("DELETE FROM events WHERE id = 'pay-A-1'")  # a parent and a linked event
        db.execute("UPDATE subscriptions SET filters = ? WHERE id = 'auditor'", ('{"source": 1}',))
        db.execute("UPDATE channels SET metadata = '[1]' WHERE name = 'empty'")
    db.close()

    report = _import(folder, tmp_path / "ours", "--dry-run")

    assert report.returncode == 2
    assert "  refused: 4" in report.stdout
    for line in (
        "channel 'empty': metadata: not a JSON object",
        "subscription 'auditor': filters: only 'kind' has a counterpart here, not source",
        f"event {third['id']!r}: parent event 'pay-A-1' does not exist",
        f"artifact {receipt['id']!r}: linked event 'pay-A-1' does not exist",
    ):
        assert f"    {line}" in report.stdout.splitlines()


def test_a_folder_that_holds_no_reference_store_is_refused(
    reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    folder, _expected = reference
    ours = tmp_path / "ours"
    assert _import(folder, ours).returncode == 0

    nothing = _import(tmp_path / "nothing", tmp_path / "new")
    not_reference = _import(ours, tmp_path / "new")
    itself = _import(folder, folder)

    assert nothing.returncode == 2
    assert nothing.stderr.strip().endswith(
        f"{tmp_path / 'nothing'} is not a reference store: it has no sssn.sqlite"
    )
    assert not_reference.returncode == 2
    assert "is not a store of the reference sssn 0.1.1: it has no" in not_reference.stderr
    assert itself.returncode == 2
    assert itself.stderr.strip().endswith(
        "is the reference store itself; import it into a new store"
    )
    assert not (tmp_path / "new").exists()


def test_serving_a_reference_store_as_it_is_is_refused_with_the_way_to_import_it(
    reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    folder, _expected = reference
    before = _files(folder)
    served = subprocess.run(
        [sys.executable, "-m", "sssn_server", "--store", str(folder), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode == 2
    assert "Traceback" not in served.stderr
    (line,) = served.stderr.strip().splitlines()
    assert "holds a reference sssn 0.1.1 store" in line
    assert f"sssn-server import-reference --from {folder}" in line
    assert _files(folder) == before  # nothing migrated, nothing written
