"""Fuzzes every StoreService RPC: never UNKNOWN or INTERNAL, and a refusal changes nothing.

The RPCs come from the service descriptor, so a new one is fuzzed without a
change here. `make fuzz` runs many more examples (SSSN_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sssn_proto.v1 import channel_pb2, snapshot_pb2
from sssn_proto.v1 import store_service_pb2 as pb
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from .helpers import event, value
from .server_process import ServerProcess

SERVICE = pb.DESCRIPTOR.services_by_name["StoreService"]
METHODS = [method.name for method in SERVICE.methods]

# Examples per test; `make fuzz` raises it.
EXAMPLES = int(os.environ.get("SSSN_FUZZ_EXAMPLES", "400"))
# Whatever a call may end with except these.
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
# A call that ends with these was not refused: it may have changed something.
NOT_REFUSED = {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
# A unary call that has not answered by then hangs.
UNARY_DEADLINE = 10.0
# Following pulls never end by themselves; other streams end quickly.
FOLLOW_DEADLINE = 0.3
STREAM_DEADLINE = 10.0

CHANNEL, SUBSCRIPTION, SNAPSHOT = "fuzz", "sub", "snap"
EVENT_IDS = ["e1", "e2", "e3"]
# Watches the store's head from a channel and subscription the fuzz never names.
PROBE_CHANNEL, PROBE = "probe-5c1e", "probe-5c1e"


class Fuzzed:
    """The server under fuzz, a connection to it, and what it has logged."""

    def __init__(
        self,
        process: ServerProcess,
        channel: grpc.Channel,
        readers: list[threading.Thread],
        log: list[str],
    ) -> None:
        self.process = process
        self.channel = channel
        self.stub = pb_grpc.StoreServiceStub(channel)
        self.readers = readers
        self.log = log
        self.artifact_id = ""
        self.fingerprint: tuple[Any, ...] = ()

    # A failing example prints its arguments: this one briefly.
    def __repr__(self) -> str:
        return f"Fuzzed({self.process.address})"

    def stop(self) -> list[str]:
        """Stops the server (once) and returns every line it logged."""
        self.channel.close()
        if self.process.process.poll() is None:
            # Not `ServerProcess.stop()`: its `communicate` would race the readers.
            self.process.process.send_signal(signal.SIGTERM)
            self.process.process.wait(timeout=30)
        for reader in self.readers:
            reader.join(timeout=10)
        for stream in (self.process.process.stdout, self.process.process.stderr):
            if stream is not None:
                stream.close()
        return self.log


def _drain(stream: Any, lines: list[str]) -> None:
    # The server logs a line per undecodable request; a full pipe would stall it.
    for line in stream:
        lines.append(line)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    process = ServerProcess(Path(tmp_path_factory.mktemp("fuzz")) / "store")
    log: list[str] = []
    readers = [
        threading.Thread(target=_drain, args=(stream, lines), daemon=True)
        for stream, lines in ((process.process.stdout, []), (process.process.stderr, log))
    ]
    for reader in readers:
        reader.start()
    connection = grpc.insecure_channel(
        process.address, options=[("grpc.max_receive_message_length", -1)]
    )
    state = Fuzzed(process, connection, readers, log)
    try:
        _seed(state)
        state.fingerprint = _fingerprint(state.stub)
        yield state
    finally:
        state.stop()


def _seed(state: Fuzzed, *, again: bool = False) -> None:
    """Creates what the fuzz works on; `again` (the fuzz deleted the channel):
    as much of it as the fuzz's own writes leave room for."""
    stub = state.stub

    def call(method: Callable[..., Any], request: Message) -> Any:
        try:
            return method(request, timeout=UNARY_DEADLINE)
        except grpc.RpcError as error:
            # The fuzz may have taken an id or deleted what another links to.
            if not again or error.code() not in _SEED_CONFLICTS:
                raise
            return None

    for name in (CHANNEL, PROBE_CHANNEL):
        call(stub.CreateChannel, pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)))
    first, *others = EVENT_IDS
    call(
        stub.AppendEvent, pb.AppendEventRequest(event=event(CHANNEL, {"n": 1}, id=first, kind="k"))
    )
    for index, other in enumerate(others):
        call(
            stub.AppendEvent,
            pb.AppendEventRequest(event=event(CHANNEL, [index], id=other, parent_ids=[first])),
        )
    for subscription, channel in ((SUBSCRIPTION, CHANNEL), (PROBE, PROBE_CHANNEL)):
        call(
            stub.CreateSubscription,
            pb.CreateSubscriptionRequest(channel=channel, subscription_id=subscription),
        )
    snapshot = snapshot_pb2.Snapshot(name=SNAPSHOT, channel=CHANNEL, value=value({"a": 1}))
    call(stub.PutSnapshot, pb.PutSnapshotRequest(snapshot=snapshot))
    if not state.artifact_id:
        written = call(
            stub.WriteArtifact,
            pb.WriteArtifactRequest(channel=CHANNEL, data=b"payload", event_ids=[first]),
        )
        state.artifact_id = written.artifact.id


_SEED_CONFLICTS = {grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.NOT_FOUND}


def _outcome(call: Callable[[], Any]) -> Any:
    """A call's response bytes (deterministic), or its status code."""
    try:
        return call().SerializeToString(deterministic=True)
    except grpc.RpcError as error:
        return error.code()


def _pages(list_call: Callable[[str], Any], items: str) -> Any:
    pages, token = [], ""
    while True:
        try:
            page = list_call(token)
        except grpc.RpcError as error:
            return error.code()
        pages.append([m.SerializeToString(deterministic=True) for m in getattr(page, items)])
        token = page.next_page_token
        if not token:
            return pages


def _fingerprint(stub: pb_grpc.StoreServiceStub) -> tuple[Any, ...]:
    """What a refused call must leave as it was: every channel and
    subscription, the seeded channel's events and snapshot, the store's head."""
    deadline = UNARY_DEADLINE
    return (
        _pages(
            lambda t: stub.ListChannels(
                pb.ListChannelsRequest(page_size=1000, page_token=t), timeout=deadline
            ),
            "channels",
        ),
        _pages(
            lambda t: stub.ListSubscriptions(
                pb.ListSubscriptionsRequest(page_size=1000, page_token=t), timeout=deadline
            ),
            "subscriptions",
        ),
        _outcome(
            lambda: stub.QueryEvents(
                pb.QueryEventsRequest(channel=CHANNEL, limit=10_000), timeout=deadline
            )
        ),
        _outcome(lambda: stub.GetSnapshot(pb.GetSnapshotRequest(name=SNAPSHOT), timeout=deadline)),
        stub.GetSubscription(
            pb.GetSubscriptionRequest(subscription_id=PROBE), timeout=deadline
        ).head_cursor,
    )


def _settled(stub: pb_grpc.StoreServiceStub) -> tuple[Any, ...]:
    """The fingerprint once writes a finished stream left (its cursor) are done."""
    last = _fingerprint(stub)
    for _ in range(50):
        time.sleep(0.02)
        current = _fingerprint(stub)
        if current == last:
            return current
        last = current
    return last


# Request messages built field by field from the descriptors.

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
}
# Levels of nested messages generated: enough for an object in an event's payload.
_DEPTH = 5


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted({low, high, 0, 1, max(low, -1)})
    return st.one_of(st.sampled_from(edges), st.integers(-3, 200), st.integers(low, high))


def _scalar(descriptor: FieldDescriptor, names: list[str]) -> st.SearchStrategy[Any]:
    kind = descriptor.type
    if kind == FieldDescriptor.TYPE_ENUM:
        defined = st.sampled_from([each.number for each in descriptor.enum_type.values])
        return _mostly(defined, _integers(*_INT_RANGES[kind]))
    if kind in _INT_RANGES:
        return _integers(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    assert kind == FieldDescriptor.TYPE_STRING, descriptor.full_name
    # Mostly names that exist, so that calls get past validation to the store.
    known = st.sampled_from(_likely(descriptor.name, names))
    return _mostly(known, st.sampled_from(REFUSED_NAMES), st.text(max_size=12))


def _likely(field: str, names: list[str]) -> list[str]:
    """The names that exist which a field of this name most likely takes."""
    if "subscription" in field:
        return [SUBSCRIPTION]
    if field in ("channel", "name"):
        return [CHANNEL, SNAPSHOT]
    return names


def _mostly(usual: st.SearchStrategy[Any], *others: st.SearchStrategy[Any]) -> Any:
    """`usual` in half the draws, else one of `others`."""
    choices = [usual] * len(others) + list(others)
    return st.sampled_from(range(len(choices))).flatmap(lambda pick: choices[pick])


def _messages(names: list[str]) -> Callable[[Descriptor, int], st.SearchStrategy[Message]]:
    @functools.cache
    def message(descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        fields = {}
        for each in descriptor.fields:
            strategy = field_values(each, depth)
            if strategy is not None:
                fields[each.name] = strategy
        return st.fixed_dictionaries({}, optional=fields).map(functools.partial(_build, descriptor))

    def field_values(descriptor: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
        entry = descriptor.message_type
        if entry is not None and entry.GetOptions().map_entry:
            item = single(entry.fields_by_name["value"], depth)
            if item is None:
                return None
            key = _scalar(entry.fields_by_name["key"], names)
            return st.dictionaries(key, item, max_size=3)
        item = single(descriptor, depth)
        if item is None or not descriptor.is_repeated:
            return item
        return st.lists(item, max_size=3)

    def single(descriptor: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
        if descriptor.message_type is None:
            return _scalar(descriptor, names)
        if depth == 0:
            return None
        return st.deferred(lambda: message(descriptor.message_type, depth - 1))

    return message


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = GetMessageClass(descriptor)()
    for name, item in values.items():
        each = descriptor.fields_by_name[name]
        target = getattr(message, name)
        entry = each.message_type
        if entry is not None and entry.GetOptions().map_entry:
            for key, element in item.items():
                if entry.fields_by_name["value"].message_type is not None:
                    target[key].CopyFrom(element)
                else:
                    target[key] = element
        elif each.is_repeated:
            target.extend(item)
        elif entry is not None:
            target.CopyFrom(item)
        else:
            setattr(message, name, item)
    return message


@functools.cache
def _requests(names: tuple[str, ...]) -> dict[str, st.SearchStrategy[list[bytes]]]:
    """Per method, the request messages of a call as bytes (one for a unary
    request, one to three for a stream), from well-formed messages."""
    message = _messages(list(names))
    strategies = {}
    for method in SERVICE.methods:
        one = message(method.input_type, _DEPTH).map(lambda m: m.SerializeToString())
        if method.client_streaming:
            strategies[method.name] = st.lists(one, min_size=1, max_size=3)
        else:
            strategies[method.name] = one.map(lambda data: [data])
    return strategies


def _corrupt(data: bytes, at: int, junk: bytes) -> bytes:
    at %= len(data) + 1
    return data[:at] + junk + data[at + len(junk) :]


@functools.cache
def _raw_requests(names: tuple[str, ...], method: str) -> st.SearchStrategy[list[bytes]]:
    """Random bytes, or well-formed requests with bytes overwritten."""
    descriptor = SERVICE.methods_by_name[method]
    random = st.binary(max_size=256)
    corrupted = st.builds(
        _corrupt,
        _requests(names)[method].map(lambda messages: messages[0]),
        st.integers(0, 512),
        st.binary(min_size=1, max_size=8),
    )
    one = st.one_of(random, corrupted)
    if descriptor.client_streaming:
        return st.lists(one, min_size=1, max_size=3)
    return one.map(lambda data: [data])


def _names(state: Fuzzed) -> tuple[str, ...]:
    """Names and ids that exist, and a few that may be new."""
    return (CHANNEL, SUBSCRIPTION, SNAPSHOT, *EVENT_IDS, state.artifact_id, "new", "k")


# Strings the rules for names, ids and tokens refuse.
REFUSED_NAMES = ("", ".", "..", "a/b", "with space", "50%", "c:d", "n" * 300)


def _call(state: Fuzzed, method: str, messages: list[bytes], follow: bool) -> tuple[Any, int]:
    """Sends the request bytes as they are; returns the status code and how
    many response messages came before it."""
    descriptor = SERVICE.methods_by_name[method]
    path = f"/{SERVICE.full_name}/{method}"
    channel = state.channel
    received = 0
    try:
        if descriptor.server_streaming:
            timeout = FOLLOW_DEADLINE if follow else STREAM_DEADLINE
            if descriptor.client_streaming:
                responses = channel.stream_stream(path)(iter(messages), timeout=timeout)
            else:
                responses = channel.unary_stream(path)(messages[0], timeout=timeout)
            for _response in responses:
                received += 1
        elif descriptor.client_streaming:
            channel.stream_unary(path)(iter(messages), timeout=STREAM_DEADLINE)
        else:
            channel.unary_unary(path)(messages[0], timeout=UNARY_DEADLINE)
    except grpc.RpcError as error:
        return error.code(), received
    return grpc.StatusCode.OK, received


def _follows(method: str, messages: list[bytes]) -> bool:
    """Whether a call may wait for events that never come (a following pull)."""
    if method != "PullSubscription":
        return False
    try:
        return pb.PullSubscriptionRequest.FromString(messages[0]).follow
    except Exception:  # undecodable: refused at once
        return False


def _check(state: Fuzzed, method: str, messages: list[bytes]) -> None:
    if state.fingerprint[2] == grpc.StatusCode.NOT_FOUND:  # the fuzz deleted the channel
        _seed(state, again=True)
        state.fingerprint = _settled(state.stub)
    before = state.fingerprint
    follow = _follows(method, messages)
    code, received = _call(state, method, messages, follow)
    assert code not in FORBIDDEN, (method, code, messages)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        assert follow or SERVICE.methods_by_name[method].server_streaming, (method, messages)
    refused = code not in NOT_REFUSED and received == 0
    after = _fingerprint(state.stub) if refused else _settled(state.stub)
    if refused:
        assert after == before, (method, code, messages)
    state.fingerprint = after


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    # Not Phase.explain: it replays a failure with its choices varied, which
    # a server whose state moves on between calls cannot honour.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TIMEOUT = 60 + EXAMPLES


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(data=st.data())
def test_well_formed_requests_with_random_values(fuzzed: Fuzzed, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(METHODS), label="method")
    messages = data.draw(_requests(_names(fuzzed))[method], label="requests")
    _check(fuzzed, method, messages)


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(data=st.data())
def test_random_and_corrupted_bytes(fuzzed: Fuzzed, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(METHODS), label="method")
    messages = data.draw(_raw_requests(_names(fuzzed), method), label="requests")
    _check(fuzzed, method, messages)


def test_the_fuzzed_server_logged_no_error_and_no_traceback(fuzzed: Fuzzed) -> None:
    # Runs after the fuzz above (a module's tests run in order). The log is
    # read once the server has stopped, so no line is still on its way.
    lines = fuzzed.stop()
    assert [line for line in lines if "Traceback" in line or " ERROR " in line] == []
