"""Code written for the reference `sssn` 0.1.1 clients runs on `sssn_client`: its error
attributes, base URLs, public names, model methods, ref resolver and helpers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import get_args

import grpc
import pytest

import sssn_client
from sssn_client import (
    CHANNEL_FORMS,
    AsyncSSSNClient,
    Channel,
    ChannelExistsError,
    ChannelForm,
    Event,
    InvalidPayloadError,
    PermissionDeniedError,
    ResolvedSSSNRef,
    Snapshot,
    SSSNClient,
    SSSNClientError,
    SSSNError,
    SSSNRef,
    SSSNRefError,
    SSSNResolver,
    UnauthenticatedError,
    UnimplementedError,
    channel_resource,
    snapshot_resource,
)
from sssn_proto.v1 import store_service_pb2_grpc as pb_grpc

from . import client_fixtures, test_tls
from .client_fixtures import BIN, REPO, ServerThread, run_cli
from .conftest import ServerFactory
from .helpers import DEADLINE
from .test_tls import Pki

client = client_fixtures.client
server_thread = client_fixtures.server_thread
pki = test_tls.pki  # certificates made for the test, as in test_tls.py

# What `tests/reference_program.py` printed when run with the reference 0.1.1
# against the reference's own HTTP server (`sssn.create_app` under uvicorn).
REFERENCE_TRANSCRIPT = """\
channels orders shop.Order queue orders placed
appended True True {'order': 'A-1'}
query ['order.placed', 'order.paid', 'order.placed']
placed ['A-1', 'B-2']
page ['A-1']
event A-1 billing
pulled [30, 12] 0
reused billing-worker {'kind': 'order.placed'}
artifact 20 application/pdf True True
payload b'%PDF-1.4'
text a note in plain text
snapshot orders.totals shop.Totals 12
replaced {'A-1': 30}
error channel exists 409 ChannelExistsError
error missing channel 404 ChannelNotFoundError
error missing event 404 EventNotFoundError
error append to a missing channel 404 ChannelNotFoundError
error missing parent 404 EventNotFoundError
error subscription taken 409 SubscriptionExistsError
error missing subscription 404 SubscriptionNotFoundError
error missing artifact 404 ArtifactNotFoundError
error missing snapshot 404 SnapshotNotFoundError
error link to a missing event 404 EventNotFoundError
error zero limit 400 InvalidPayloadError
error negative cursor 400 InvalidPayloadError
error zero batch size 400 InvalidPayloadError
error unknown filter 400 InvalidPayloadError
refused two words
async channels ['audit', 'orders']
async paid ['A-1']
async pulled 3
async error 409 ChannelExistsError
async snapshot orders
"""


def test_a_reference_program_runs_with_only_its_import_changed(
    server_thread: ServerThread, tmp_path: Path
) -> None:
    original = (REPO / "tests" / "reference_program.py").read_text(encoding="utf-8")
    ported = original.replace("from sssn import (", "from sssn_client import (")
    changed = [
        (old, new)
        for old, new in zip(original.splitlines(), ported.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [("from sssn import (", "from sssn_client import (")]
    program = tmp_path / "program.py"
    program.write_text(ported, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 4,
        env={**os.environ, "SSSN_URL": f"http://{server_thread.address}"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == REFERENCE_TRANSCRIPT
    assert result.stderr == ""


# Public names

# `sssn.__all__` of the reference 0.1.1.
REFERENCE_NAMES = {
    "Artifact",
    "ArtifactNotFoundError",
    "AsyncSSSNClient",
    "Channel",
    "ChannelExistsError",
    "ChannelForm",
    "ChannelNotFoundError",
    "EndpointScope",
    "Event",
    "EventNotFoundError",
    "InvalidPayloadError",
    "LocalStore",
    "ResolvedSSSNRef",
    "SSSNError",
    "SSSNClient",
    "SSSNClientError",
    "SSSNRef",
    "SSSNRefError",
    "SSSNResolver",
    "StoreEndpointSpec",
    "Snapshot",
    "SnapshotNotFoundError",
    "Subscription",
    "SubscriptionExistsError",
    "SubscriptionNotFoundError",
    "__version__",
    "channel_resource",
    "create_app",
    "endpoint",
    "snapshot_resource",
}
# Names of the reference's embedded store and HTTP server, which a gRPC client
# package cannot offer; docs/migrating.md says what replaces each.
NOT_OVER_GRPC = {"LocalStore", "create_app", "endpoint", "EndpointScope", "StoreEndpointSpec"}


def test_every_reference_name_that_makes_sense_over_grpc_exists() -> None:
    for name in sorted(REFERENCE_NAMES - NOT_OVER_GRPC):
        assert name in sssn_client.__all__, name
        assert getattr(sssn_client, name) is not None
    guide = (REPO / "docs" / "migrating.md").read_text(encoding="utf-8")
    for name in sorted(NOT_OVER_GRPC):
        assert f"`{name}`" in guide, f"docs/migrating.md does not explain {name}"


# Errors: the reference's attributes, with the gRPC details beside them


def test_errors_keep_the_reference_attributes_and_add_the_grpc_ones(client: SSSNClient) -> None:
    client.create_channel({"name": "orders"})
    with pytest.raises(SSSNClientError) as caught:
        client.create_channel({"name": "orders"})
    error = caught.value
    assert (error.status_code, error.error_type) == (409, "ChannelExistsError")
    assert (error.grpc_status_code, error.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "CHANNEL_EXISTS",
    )
    assert error.message and error.detail is not None
    # Reusing an event id in another channel is a conflict, not the reference's 500.
    client.create_channel({"name": "audit"})
    client.append_event({"id": "e1", "channel": "orders"})
    with pytest.raises(SSSNClientError) as conflict:
        client.append_event({"id": "e1", "channel": "audit"})
    assert (conflict.value.status_code, conflict.value.error_type) == (409, "EventExistsError")


def test_errors_built_the_reference_way() -> None:
    # Test doubles written for the reference construct errors like this.
    error = SSSNClientError(409, error_type="ChannelExistsError", message="taken", detail={"x": 1})
    assert (error.status_code, error.error_type, error.message) == (
        409,
        "ChannelExistsError",
        "taken",
    )
    assert error.detail == {"x": 1} and isinstance(error, SSSNError)
    assert ChannelExistsError("taken").status_code == 409
    assert ChannelExistsError("taken").error_type == "ChannelExistsError"
    # The keyword this package used for the gRPC code before still means it.
    earlier = SSSNClientError("gone", status_code=grpc.StatusCode.NOT_FOUND)
    assert (earlier.status_code, earlier.grpc_status_code) == (404, grpc.StatusCode.NOT_FOUND)


TOKENS = """
[[tokens]]
principal = "root"
token = "root-token"
read = ["*"]
write = ["*"]
admin = ["*"]

[[tokens]]
principal = "reader"
token = "reader-token"
read = ["*"]
"""


def test_auth_failures_are_401_and_403(server_thread: ServerThread, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS, encoding="utf-8")
    server_thread.stop()
    server_thread.start(auth_tokens=tokens)
    reader = {"authorization": "Bearer reader-token"}
    with SSSNClient(server_thread.address, timeout=DEADLINE, metadata=reader) as client:
        with pytest.raises(PermissionDeniedError) as denied:
            client.create_channel({"name": "orders"})
        assert (denied.value.status_code, denied.value.error_type) == (403, "PermissionDeniedError")
    with SSSNClient(server_thread.address, timeout=DEADLINE) as anonymous:
        with pytest.raises(UnauthenticatedError) as anonymous_error:
            anonymous.list_channels()
        assert anonymous_error.value.status_code == 401


@pytest.fixture
def bare_server() -> Iterator[str]:
    """A gRPC server that implements none of the service (an older server, say)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = pb_grpc.StoreServiceServicer()
    pb_grpc.add_StoreServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait(DEADLINE)


def test_an_unknown_rpc_is_unimplemented_501(bare_server: str) -> None:
    with (
        SSSNClient(bare_server, timeout=DEADLINE) as client,
        pytest.raises(UnimplementedError) as caught,
    ):
        client.delete_channel("orders")
    assert (caught.value.status_code, caught.value.error_type) == (501, "UnimplementedError")


# Addresses: the reference's base URLs


def test_http_urls_and_base_url_connect_in_plain_text(server_thread: ServerThread) -> None:
    port = server_thread.port
    for url in (
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{port}/",
        f"HTTP://localhost:{port}",
    ):
        with SSSNClient(url, timeout=DEADLINE) as client:
            assert client.list_channels() == []
    with SSSNClient(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE) as client:
        assert client.target == f"127.0.0.1:{port}"
        client.create_channel({"name": "orders"})
    assert SSSNClient("https://sssn.example.com").target == "sssn.example.com:443"
    assert SSSNClient("http://[::1]").target == "[::1]:80"


@pytest.mark.parametrize(
    "address",
    [
        "",
        "ftp://127.0.0.1:7700",
        "http://",
        "http:127.0.0.1:7700",
        "http://127.0.0.1:port",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:7700/api/v1",
        "http://127.0.0.1:7700?x=1",
        "http://user:secret@127.0.0.1:7700",
        "http://127.0.0.1 :7700",
        "127.0.0.1:seventy",
    ],
)
def test_a_bad_address_is_refused_at_once_with_a_clear_error(address: str) -> None:
    for client_class in (SSSNClient, AsyncSSSNClient):
        with pytest.raises(InvalidPayloadError) as caught:
            client_class(address)
        assert caught.value.field_violations[0][0] == "target"
        assert caught.value.status_code == 400 and caught.value.detail is None
    assert "resolve" not in caught.value.message.lower()


def test_a_plain_text_url_with_credentials_is_contradictory() -> None:
    with pytest.raises(InvalidPayloadError):
        SSSNClient("http://127.0.0.1:7700", credentials=grpc.ssl_channel_credentials())
    with pytest.raises(InvalidPayloadError):
        SSSNClient("127.0.0.1:7700", base_url="http://127.0.0.1:7700")


async def test_https_urls_connect_over_tls(start_server: ServerFactory, pki: Pki) -> None:
    server = await start_server(tls_cert=pki.server.cert_path, tls_key=pki.server.key_path)
    url = f"https://127.0.0.1:{server.port}"
    trusted = grpc.ssl_channel_credentials(pki.ca.cert)
    async with AsyncSSSNClient(url, timeout=DEADLINE, credentials=trusted) as client:
        assert await client.list_channels() == []
    # Without credentials, https trusts the default roots, which gRPC reads from
    # this variable when it first needs them: a fresh process (the CLI) sees it.
    env = {**os.environ, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(pki.ca.cert_path)}
    code, out, err = await _sssn("--target", url, "create-channel", "orders", env=env)
    assert code == 0, err
    assert json.loads(out)["name"] == "orders"
    code, _, err = await _sssn("--target", url.replace("https", "http"), "channels", env=env)
    assert code == 8, err  # plain text to a TLS server: UNAVAILABLE


async def _sssn(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(BIN / "sssn"),
        "--timeout",
        str(DEADLINE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE * 2)
    return process.returncode or 0, out.decode(), err.decode()


def test_the_cli_takes_urls_and_refuses_bad_ones(server_thread: ServerThread) -> None:
    created = run_cli(f"http://{server_thread.address}", "create-channel", "orders")
    assert created.returncode == 0, created.stderr
    refused = run_cli("ftp://127.0.0.1:1", "channels")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("sssn: error: USAGE: --target: ")


def test_an_async_client_made_outside_a_loop_works_in_each_loop(
    server_thread: ServerThread,
) -> None:
    # The reference's async client holds no connection, so programs create it
    # before `asyncio.run` and may run several loops with it.
    client = AsyncSSSNClient(f"http://{server_thread.address}", timeout=DEADLINE)

    async def create(name: str) -> list[str]:
        await client.create_channel({"name": name})
        return [channel.name for channel in await client.list_channels()]

    assert asyncio.run(create("a")) == ["a"]
    assert asyncio.run(create("b")) == ["a", "b"]

    async def close() -> None:
        await client.close()

    asyncio.run(close())
    assert client.closed


# Models: the pydantic methods and names reference code uses


def test_models_answer_the_reference_model_methods(client: SSSNClient) -> None:
    client.create_channel(Channel(name="orders", schema="shop.Order"))
    stored = client.append_event(
        Event(channel="orders", payload={"items": [1, 2]}, schema="shop.Order", parent_ids=())
    )
    assert stored.schema_ref == "shop.Order" == client.get_channel("orders").schema_ref
    dumped = stored.model_dump()
    assert dumped["schema_ref"] == "shop.Order" and "schema" not in dumped
    assert stored.model_dump(by_alias=True)["schema"] == "shop.Order"
    assert stored.model_dump(exclude_none=True).keys() == {
        key for key, item in dumped.items() if item is not None
    }
    dumped["payload"]["items"].append(3)  # a copy: the event is unchanged
    assert stored.payload == {"items": [1, 2]}
    assert json.loads(stored.model_dump_json()) == stored.model_dump(mode="json")
    assert Event.model_validate(stored.model_dump()) == stored
    assert Event.model_validate(stored) is stored
    moved = stored.model_copy(update={"channel": "audit"}, deep=True)
    assert (moved.channel, moved.payload, stored.channel) == ("audit", stored.payload, "orders")
    snapshot = client.put_snapshot("s", Snapshot(name="s", value=1, schema="v1"))
    assert snapshot.schema_ref == "v1"
    assert get_args(ChannelForm) == CHANNEL_FORMS and "latest-state" in CHANNEL_FORMS


def test_channel_and_snapshot_resources(client: SSSNClient) -> None:
    channel = client.create_channel(
        Channel(name="orders", schema="shop.Order", form="queue", metadata={"team": "ops"})
    )
    described = channel_resource(channel)
    assert described == {
        "name": "orders",
        "schema": "shop.Order",
        "form": "queue",
        "description": "",
        "metadata": {"team": "ops"},
        "endpoints": [],
    }
    described["metadata"]["team"] = "changed"
    assert channel.metadata == {"team": "ops"}
    snapshot = client.put_snapshot("totals", {"n": 1}, channel="orders", schema="shop.Totals")
    assert snapshot_resource(snapshot, description="running totals") == {
        "name": "totals",
        "schema": "shop.Totals",
        "channel": "orders",
        "description": "running totals",
        "metadata": {},
        "endpoints": [],
    }
    with pytest.raises(InvalidPayloadError):
        channel_resource(channel, custom_endpoints=[lambda: None])


# The ref resolver

CONFIG = """
[stores.local]
path = ".sssn"
metadata = {{ owner = "ops" }}

[refs."psi://acme/shop/channels/orders"]
url = "{url}"
owner = "ops"

[refs."psi://acme/shop/snapshots/totals"]
store = "stores/main"

[refs."psi://acme/shop/schemas/order"]
path = "schemas/order.json"
"""


def test_the_resolver_opens_clients_for_bound_refs(
    server_thread: ServerThread, tmp_path: Path
) -> None:
    config = CONFIG.format(url=f"http://{server_thread.address}")
    root = tmp_path / "root"
    root.mkdir()
    resolver = SSSNResolver.from_text(config, root=root)
    assert list(root.iterdir()) == []  # reading text writes nothing
    assert resolver.refs() == (
        "psi://acme/shop/channels/orders",
        "psi://acme/shop/snapshots/totals",
    )
    binding = resolver.resolve("psi://acme/shop/channels/orders")
    assert binding == ResolvedSSSNRef(
        ref="psi://acme/shop/channels/orders",
        resource_kind="channels",
        name="orders",
        url=f"http://{server_thread.address}",
        metadata={"owner": "ops"},
    )
    with resolver.client("psi://acme/shop/channels/orders", timeout=DEADLINE) as client:
        client.create_channel({"name": binding.name})

    async def names() -> list[str]:
        ref = SSSNRef("psi://acme/shop/channels/orders")
        async with resolver.async_client(ref, timeout=DEADLINE) as aclient:
            return [channel.name for channel in await aclient.list_channels()]

    assert asyncio.run(names()) == ["orders"]
    assert resolver.store_path("psi://acme/shop/snapshots/totals") == root / "stores" / "main"
    assert resolver.store("local") == {"path": ".sssn", "metadata": {"owner": "ops"}}
    with pytest.raises(SSSNRefError):
        resolver.client("psi://acme/shop/snapshots/totals")  # bound to a folder
    with pytest.raises(SSSNRefError):
        resolver.store_path("psi://acme/shop/channels/orders")  # bound to a server
    with pytest.raises(SSSNRefError):
        resolver.resolve("psi://acme/shop/channels/unbound")
    folder = tmp_path / "project" / ".psi"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(config, encoding="utf-8")
    from_folder = SSSNResolver.from_config(tmp_path / "project")
    assert from_folder.root == (tmp_path / "project").resolve()
    assert from_folder.refs() == resolver.refs()


def test_refs_are_parsed_and_checked() -> None:
    ref = SSSNRef.parse("psi://acme/shop/snapshots/totals")
    assert (ref.org, ref.package, ref.resource_kind, ref.name) == (
        "acme",
        "shop",
        "snapshots",
        "totals",
    )
    assert str(ref) == "psi://acme/shop/snapshots/totals" and SSSNRef.parse(ref) is ref
    for bad in (
        "",
        "http://acme/shop/channels/orders",
        "psi://acme/shop/channels",
        "psi://acme/shop/schemas/order",
        "psi://acme/shop/channels/or%2Fders",
        "psi://acme/shop/channels/..",
        "psi://acme/shop/channels/orders?x=1",
    ):
        with pytest.raises(SSSNRefError):
            SSSNRef(bad)
    assert issubclass(SSSNRefError, ValueError) and issubclass(SSSNRefError, SSSNError)
    resolver = SSSNResolver()
    for targets in ({}, {"url": "http://a:1", "path": "x"}, {"url": "ftp://a"}, {"store": " x"}):
        with pytest.raises(SSSNRefError):
            resolver.bind("psi://acme/shop/channels/orders", **targets)
    with pytest.raises(SSSNRefError):
        SSSNResolver.from_text('[refs]\n"psi://acme/shop/channels/orders" = 3\n')
