"""Every error class the client raises, provoked on a real server, with its decoded status."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2

from sssn_client import (
    AlreadyExistsError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactTooLargeError,
    ChannelExistsError,
    ChannelNotFoundError,
    DeadlineExceededError,
    Event,
    EventExistsError,
    EventNotFoundError,
    FailedPreconditionError,
    InvalidPayloadError,
    NotFoundError,
    ResourceExhaustedError,
    ServerShuttingDownError,
    SnapshotNotFoundError,
    SSSNClient,
    SSSNClientError,
    SSSNError,
    StoreReadOnlyError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    TooManyItemsError,
    UnavailableError,
)

from . import client_fixtures
from .client_fixtures import ServerThread, wait_until
from .helpers import DEADLINE

client = client_fixtures.client
server_thread = client_fixtures.server_thread


def _setup(client: SSSNClient) -> None:
    client.create_channel({"name": "a"})
    client.create_channel({"name": "b"})
    client.append_event({"id": "e1", "channel": "a"})
    client.create_subscription("a", subscription_id="w")


# (call, error class, gRPC code, HTTP-style status, reason, resource) for every
# server-side reason; the HTTP-style status is what the reference's server answers.
CASES: list[tuple[str, Callable[[SSSNClient], Any], type[SSSNClientError], str, int, str, dict]] = [
    (
        "get_channel",
        lambda c: c.get_channel("ghost"),
        ChannelNotFoundError,
        "NOT_FOUND",
        404,
        "CHANNEL_NOT_FOUND",
        {"channel": "ghost"},
    ),
    (
        "append_to_missing_channel",
        lambda c: c.append_event({"channel": "ghost"}),
        ChannelNotFoundError,
        "NOT_FOUND",
        404,
        "CHANNEL_NOT_FOUND",
        {"channel": "ghost"},
    ),
    (
        "create_existing_channel",
        lambda c: c.create_channel({"name": "a"}),
        ChannelExistsError,
        "ALREADY_EXISTS",
        409,
        "CHANNEL_EXISTS",
        {"channel": "a"},
    ),
    (
        "get_event",
        lambda c: c.get_event("nope"),
        EventNotFoundError,
        "NOT_FOUND",
        404,
        "EVENT_NOT_FOUND",
        {"event_id": "nope"},
    ),
    (
        "missing_parent",
        lambda c: c.append_event(Event(channel="a", parent_ids=("nope",))),
        EventNotFoundError,
        "NOT_FOUND",
        404,
        "EVENT_NOT_FOUND",
        {"event_id": "nope"},
    ),
    (
        "event_id_in_another_channel",
        lambda c: c.append_event({"id": "e1", "channel": "b"}),
        EventExistsError,
        "ALREADY_EXISTS",
        409,
        "EVENT_EXISTS",
        {"event_id": "e1"},
    ),
    (
        "get_subscription",
        lambda c: c.get_subscription("nope"),
        SubscriptionNotFoundError,
        "NOT_FOUND",
        404,
        "SUBSCRIPTION_NOT_FOUND",
        {"subscription_id": "nope"},
    ),
    (
        "pull_subscription",
        lambda c: c.pull_subscription("nope"),
        SubscriptionNotFoundError,
        "NOT_FOUND",
        404,
        "SUBSCRIPTION_NOT_FOUND",
        {"subscription_id": "nope"},
    ),
    (
        "subscribe",
        lambda c: next(iter(c.subscribe("nope"))),
        SubscriptionNotFoundError,
        "NOT_FOUND",
        404,
        "SUBSCRIPTION_NOT_FOUND",
        {"subscription_id": "nope"},
    ),
    (
        "subscription_id_for_another_channel",
        lambda c: c.create_subscription("b", subscription_id="w"),
        SubscriptionExistsError,
        "ALREADY_EXISTS",
        409,
        "SUBSCRIPTION_EXISTS",
        {"subscription_id": "w"},
    ),
    (
        "get_artifact",
        lambda c: c.get_artifact("nope"),
        ArtifactNotFoundError,
        "NOT_FOUND",
        404,
        "ARTIFACT_NOT_FOUND",
        {"artifact_id": "nope"},
    ),
    (
        "read_artifact",
        lambda c: c.read_artifact("nope"),
        ArtifactNotFoundError,
        "NOT_FOUND",
        404,
        "ARTIFACT_NOT_FOUND",
        {"artifact_id": "nope"},
    ),
    (
        "get_snapshot",
        lambda c: c.get_snapshot("nope"),
        SnapshotNotFoundError,
        "NOT_FOUND",
        404,
        "SNAPSHOT_NOT_FOUND",
        {"snapshot": "nope"},
    ),
    (
        "bad_channel_name",
        lambda c: c.create_channel({"name": "a/b"}),
        InvalidPayloadError,
        "INVALID_ARGUMENT",
        400,
        "INVALID_PAYLOAD",
        {},
    ),
    (
        "too_many_events",
        lambda c: c.append_events([{"channel": "a"}] * 10_001),
        TooManyItemsError,
        "RESOURCE_EXHAUSTED",
        413,
        "TOO_MANY_ITEMS",
        {},
    ),
]


@pytest.mark.parametrize(
    ("call", "error_class", "code", "http", "reason", "resource"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_server_reason_raises_its_class(
    client: SSSNClient,
    call: Callable[[SSSNClient], Any],
    error_class: type[SSSNClientError],
    code: str,
    http: int,
    reason: str,
    resource: dict[str, str],
) -> None:
    _setup(client)
    with pytest.raises(error_class) as caught:
        call(client)
    error = caught.value
    assert type(error) is error_class
    assert isinstance(error, SSSNClientError) and isinstance(error, SSSNError)
    assert error.grpc_status_code == getattr(grpc.StatusCode, code)
    assert error.status_code == http
    assert error.error_type == error_class.__name__
    assert error.reason == reason
    assert error.message and error.message in str(error)
    assert error.detail is not None and error.detail.code == getattr(code_pb2, code)
    assert error.detail.message == error.message
    for key, value in resource.items():
        assert error.resource[key] == value


def test_reasons_group_under_their_status_class() -> None:
    assert issubclass(ChannelNotFoundError, NotFoundError)
    assert issubclass(SnapshotNotFoundError, NotFoundError)
    assert issubclass(EventExistsError, AlreadyExistsError)
    assert issubclass(StoreReadOnlyError, FailedPreconditionError)
    assert issubclass(TooManyItemsError, ResourceExhaustedError)
    assert issubclass(ServerShuttingDownError, UnavailableError)


def test_invalid_payload_names_the_fields(client: SSSNClient) -> None:
    client.create_channel({"name": "a"})
    with pytest.raises(InvalidPayloadError) as caught:
        client.create_subscription("a", consumer="two words", batch_size=0)
    fields = [field for field, _ in caught.value.field_violations]
    assert "consumer" in fields or "batch_size" in fields
    with pytest.raises(InvalidPayloadError) as caught:
        client.query_events("a", after_cursor=-1)
    assert caught.value.field_violations[0][0] == "after_cursor"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create_subscription("a", filters={"kind": "raw", "source": "x"}),
        lambda c: c.create_subscription("a", filters={"kind": 3}),
        lambda c: c.append_event({"channel": "a", "payload": {1, 2}}),
        lambda c: c.append_event({"channel": "a", "payload": {1: "not a string key"}}),
        lambda c: c.append_event({"channel": "a", "paylaod": 1}),
        lambda c: c.append_event("a"),
        lambda c: c.create_channel({"name": "a", "form": "spreadsheet"}),
        lambda c: c.put_snapshot("s", object()),
        lambda c: c.write_artifact(12),
        lambda c: c.get_channel(12),
    ],
    ids=[
        "unknown_filter",
        "filter_not_a_string",
        "payload_not_json",
        "object_key_not_a_string",
        "unknown_event_field",
        "event_not_a_mapping",
        "unknown_form",
        "snapshot_not_json",
        "artifact_not_bytes",
        "name_not_a_string",
    ],
)
def test_input_that_cannot_be_sent_is_refused_before_any_call(
    call: Callable[[SSSNClient], Any],
) -> None:
    # Nothing listens on this client's target: reaching the network would be UNAVAILABLE.
    offline = SSSNClient(f"127.0.0.1:{_free_port()}", timeout=DEADLINE)
    with offline, pytest.raises(InvalidPayloadError) as caught:
        call(offline)
    assert caught.value.grpc_status_code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.status_code == 400
    assert caught.value.error_type == "InvalidPayloadError"
    assert caught.value.reason == "INVALID_PAYLOAD"
    assert caught.value.detail is None


def test_a_read_only_server_refuses_writes(server_thread: ServerThread) -> None:
    with SSSNClient(server_thread.address, timeout=DEADLINE) as writer:
        _setup(writer)
    server_thread.stop()
    server_thread.start(read_only=True)
    with SSSNClient(server_thread.address, timeout=DEADLINE) as reader:
        assert reader.get_channel("a").name == "a"
        for write in (
            lambda: reader.create_channel({"name": "c"}),
            lambda: reader.append_event({"channel": "a"}),
            lambda: reader.pull_subscription("w"),  # pulling moves a cursor
            lambda: reader.put_snapshot("s", 1),
        ):
            with pytest.raises(StoreReadOnlyError) as caught:
                write()
            assert caught.value.grpc_status_code == grpc.StatusCode.FAILED_PRECONDITION
            assert caught.value.status_code == 400
            assert caught.value.error_type == "StoreReadOnlyError"
            assert caught.value.reason == "STORE_READ_ONLY"


@pytest.mark.parametrize("size", [64, 3 << 20], ids=["unary", "streamed"])
def test_an_artifact_over_the_server_limit_is_too_large(
    server_thread: ServerThread, size: int
) -> None:
    server_thread.stop()
    server_thread.start(max_artifact_bytes=32)
    small = SSSNClient(server_thread.address, timeout=DEADLINE)
    with small, pytest.raises(ArtifactTooLargeError) as caught:
        small.write_artifact(b"x" * size)
    assert caught.value.grpc_status_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.status_code == 413
    assert caught.value.error_type == "ArtifactTooLargeError"
    assert caught.value.reason == "ARTIFACT_TOO_LARGE"


def test_a_corrupted_payload_fails_the_sha256_check(
    client: SSSNClient, server_thread: ServerThread
) -> None:
    artifact = client.write_artifact(b"original payload")
    blob = Path(server_thread.store) / "artifacts" / artifact.sha256
    blob.chmod(0o600)
    blob.write_bytes(b"corrupted payload")
    with pytest.raises(ArtifactIntegrityError) as caught:
        client.read_artifact(artifact.id)
    assert caught.value.grpc_status_code == grpc.StatusCode.DATA_LOSS
    assert caught.value.status_code == 500
    assert caught.value.error_type == "ArtifactIntegrityError"
    assert caught.value.reason == "ARTIFACT_INTEGRITY"
    assert caught.value.resource == {"artifact_id": artifact.id}


@pytest.fixture
def stop_when_followed(server_thread: ServerThread) -> Iterator[None]:
    """Stops the server from another thread once a following stream is parked on it."""

    def stop() -> None:
        wait_until(lambda: server_thread.parked_followers == 1)
        server_thread.stop()

    stopper = threading.Thread(target=stop)
    stopper.start()
    yield
    stopper.join(DEADLINE)


def test_a_stopping_server_reports_shutting_down(
    client: SSSNClient, stop_when_followed: None
) -> None:
    _setup(client)
    client.create_subscription("b", subscription_id="idle")
    stream = client.subscribe("idle", max_retries=0)  # no reconnect: the error surfaces
    with pytest.raises(ServerShuttingDownError) as caught:
        next(stream)
    assert caught.value.grpc_status_code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.status_code == 503
    assert caught.value.error_type == "ServerShuttingDownError"
    assert caught.value.reason == "SHUTTING_DOWN"
    assert stream.closed


def test_an_unreachable_server_is_unavailable() -> None:
    offline = SSSNClient(f"127.0.0.1:{_free_port()}", timeout=DEADLINE)
    with offline, pytest.raises(UnavailableError) as caught:
        offline.get_channel("a")
    assert type(caught.value) is UnavailableError
    assert caught.value.grpc_status_code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.status_code == 503
    assert caught.value.error_type == "UnavailableError"
    assert caught.value.reason == "UNAVAILABLE"
    assert caught.value.detail is None


def test_an_expired_deadline() -> None:
    # A peer that accepts TCP connections but never speaks: no call can finish.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host, port = silent.getsockname()
        hurried = SSSNClient(f"{host}:{port}", timeout=0.2)
        with hurried, pytest.raises(DeadlineExceededError) as caught:
            hurried.list_channels()
    assert caught.value.grpc_status_code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.status_code == 504
    assert caught.value.error_type == "DeadlineExceededError"
    assert caught.value.reason == "DEADLINE_EXCEEDED"


def _free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
