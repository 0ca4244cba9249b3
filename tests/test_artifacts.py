"""Artifacts over gRPC: unary write, streamed upload and read, sha256, links and limits."""

from __future__ import annotations

import hashlib
import os

import grpc
import pytest

from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from .backends import lose_payload, stored_digests, unfinished_uploads
from .helpers import DEADLINE, event, failure, struct

MIB = 1024 * 1024


async def read_all(stub, artifact_id: str) -> tuple[bytes, list]:
    messages = [
        message
        async for message in stub.ReadArtifact(
            pb.ReadArtifactRequest(id=artifact_id), timeout=DEADLINE
        )
    ]
    return b"".join(message.data for message in messages), messages


def upload_requests(data: bytes, chunk: int = 256 * 1024, **header):
    yield pb.UploadArtifactRequest(header=pb.UploadArtifactHeader(**header))
    for start in range(0, len(data), chunk):
        yield pb.UploadArtifactRequest(data=data[start : start + chunk])


async def test_write_get_and_read_binary_artifact(stub, make_channel, store_location) -> None:
    await make_channel()
    appended = await stub.AppendEvent(
        pb.AppendEventRequest(event=event("events", 1)), timeout=DEADLINE
    )
    data = bytes(range(256)) * 64 + b"\x00\xff\x00"
    written = (
        await stub.WriteArtifact(
            pb.WriteArtifactRequest(
                data=data,
                channel="events",
                media_type="application/x-demo",
                metadata=struct({"source": "demo"}),
                event_ids=[appended.event.id],
            ),
            timeout=DEADLINE,
        )
    ).artifact
    digest = hashlib.sha256(data).hexdigest()
    assert written.sha256 == digest
    assert written.size == len(data)
    assert written.channel == "events"
    assert list(written.event_ids) == [appended.event.id]
    fetched = await stub.GetArtifact(pb.GetArtifactRequest(id=written.id), timeout=DEADLINE)
    assert fetched.artifact == written
    payload, messages = await read_all(stub, written.id)
    assert payload == data
    assert messages[0].artifact == written
    assert await stored_digests(store_location) == {digest}


async def test_default_media_type_and_empty_payload(stub) -> None:
    written = (
        await stub.WriteArtifact(pb.WriteArtifactRequest(data=b""), timeout=DEADLINE)
    ).artifact
    assert written.media_type == "application/octet-stream"
    assert written.size == 0
    payload, messages = await read_all(stub, written.id)
    assert payload == b""
    assert messages[0].artifact.sha256 == hashlib.sha256(b"").hexdigest()


async def test_upload_and_read_an_artifact_larger_than_4_mib(stub, make_channel) -> None:
    await make_channel()
    data = os.urandom(5 * MIB + 123)
    response = await stub.UploadArtifact(
        upload_requests(data, channel="events", media_type="application/octet-stream"),
        timeout=DEADLINE,
    )
    artifact = response.artifact
    assert artifact.size == len(data)
    assert artifact.sha256 == hashlib.sha256(data).hexdigest()
    payload, messages = await read_all(stub, artifact.id)
    assert len(messages) >= 5  # streamed in chunks of at most 1 MiB
    assert all(len(message.data) <= MIB for message in messages)
    assert hashlib.sha256(payload).hexdigest() == artifact.sha256
    assert payload == data


async def test_same_content_is_stored_once(stub, store_location) -> None:
    first = await stub.WriteArtifact(pb.WriteArtifactRequest(data=b"same"), timeout=DEADLINE)
    second = await stub.WriteArtifact(pb.WriteArtifactRequest(data=b"same"), timeout=DEADLINE)
    assert first.artifact.id != second.artifact.id
    assert await stored_digests(store_location) == {first.artifact.sha256}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"channel": "ghost"}, "CHANNEL_NOT_FOUND"), ({"event_ids": ["nope"]}, "EVENT_NOT_FOUND")],
)
async def test_links_to_missing_resources_are_not_found_and_store_nothing(
    stub, store_location, fields, reason
) -> None:
    before = await stored_digests(store_location)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.WriteArtifact(pb.WriteArtifactRequest(data=b"x", **fields), timeout=DEADLINE)
    error = failure(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, reason)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.UploadArtifact(upload_requests(b"y" * 1000, **fields), timeout=DEADLINE)
    assert await stored_digests(store_location) == before
    assert await unfinished_uploads(store_location) == 0


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [({"channel": "a b"}, "channel"), ({"event_ids": ["ok", "a/b"]}, "event_ids[1]")],
)
async def test_malformed_artifact_fields_are_invalid(stub, fields, bad_field) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.WriteArtifact(pb.WriteArtifactRequest(data=b"x", **fields), timeout=DEADLINE)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [bad_field]


async def test_upload_without_a_header_first_is_invalid(stub) -> None:
    def requests():
        yield pb.UploadArtifactRequest(data=b"chunk")
        yield pb.UploadArtifactRequest(header=pb.UploadArtifactHeader())

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UploadArtifact(requests(), timeout=DEADLINE)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["header"]


async def test_upload_with_a_second_header_is_invalid_and_stores_nothing(
    stub, store_location
) -> None:
    def requests():
        yield pb.UploadArtifactRequest(header=pb.UploadArtifactHeader())
        yield pb.UploadArtifactRequest(data=b"chunk")
        yield pb.UploadArtifactRequest(header=pb.UploadArtifactHeader())

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UploadArtifact(requests(), timeout=DEADLINE)
    assert failure(caught.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert await stored_digests(store_location) == set()


async def test_empty_upload_stream_is_invalid(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UploadArtifact(iter(()), timeout=DEADLINE)
    assert failure(caught.value).fields == ["header"]


async def test_artifact_over_the_size_limit_is_resource_exhausted(
    start_server, store_location
) -> None:
    server = await start_server(max_artifact_bytes=1000)
    async with grpc.aio.insecure_channel(server.address) as connection:
        stub = pb_grpc.StoreServiceStub(connection)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UploadArtifact(upload_requests(b"z" * 1001, chunk=100), timeout=DEADLINE)
        error = failure(caught.value)
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.reason == "ARTIFACT_TOO_LARGE"
        accepted = await stub.WriteArtifact(
            pb.WriteArtifactRequest(data=b"z" * 1000), timeout=DEADLINE
        )
        assert accepted.artifact.size == 1000
    assert await stored_digests(store_location) == {accepted.artifact.sha256}


async def test_missing_artifact_is_not_found(stub) -> None:
    for call in (
        stub.GetArtifact(pb.GetArtifactRequest(id="nope"), timeout=DEADLINE),
        read_all(stub, "nope"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        error = failure(caught.value)
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "ARTIFACT_NOT_FOUND")
        assert error.metadata == {"artifact_id": "nope"}


async def test_a_lost_payload_file_reads_as_not_found(stub, store_location) -> None:
    written = await stub.WriteArtifact(pb.WriteArtifactRequest(data=b"gone"), timeout=DEADLINE)
    await lose_payload(store_location, written.artifact.sha256)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all(stub, written.artifact.id)
    assert failure(caught.value).reason == "ARTIFACT_NOT_FOUND"
