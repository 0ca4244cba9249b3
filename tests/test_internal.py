"""Unexpected failures become INTERNAL with a generic message and no internals."""

from __future__ import annotations

import logging
import sqlite3

import grpc
import pytest

from sssn_proto.v1 import snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb

from .helpers import DEADLINE, failure, value


async def test_a_storage_fault_is_internal_and_logged(stub, store_dir, caplog) -> None:
    await stub.PutSnapshot(
        pb.PutSnapshotRequest(snapshot=snapshot_pb2.Snapshot(name="s", value=value(1))),
        timeout=DEADLINE,
    )
    # Break the store behind the server's back, as a damaged disk might.
    with sqlite3.connect(store_dir / "sssn.sqlite") as db:
        db.execute("DROP TABLE snapshots")
    db.close()
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSnapshot(pb.GetSnapshotRequest(name="s"), timeout=DEADLINE)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INTERNAL
    assert error.reason == "INTERNAL"
    assert error.message == "Internal server error."
    assert "snapshots" not in caught.value.details()
    assert any(
        "no such table" in record.getMessage() or record.exc_info for record in caplog.records
    )
    # The server keeps serving other calls.
    listed = await stub.ListChannels(pb.ListChannelsRequest(), timeout=DEADLINE)
    assert list(listed.channels) == []
