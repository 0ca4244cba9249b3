"""Channels over gRPC: create, get, list with paging, and their errors."""

from __future__ import annotations

import grpc
import pytest

from sssn_proto.v1 import channel_pb2
from sssn_proto.v1 import store_service_pb2 as pb

from .helpers import DEADLINE, failure, struct

BAD_NAMES = [
    "",
    " ",
    "a b",
    ".",
    "..",
    "a/b",
    "a:b",
    "a\\b",
    "a%20b",
    "tab\there",
    "nul\x00",
    "del\x7f",
]


async def test_create_and_get_channel_round_trips_every_field(stub) -> None:
    created = await stub.CreateChannel(
        pb.CreateChannelRequest(
            channel=channel_pb2.Channel(
                name="orders",
                schema="demo.Order",
                form=channel_pb2.CHANNEL_FORM_LATEST_STATE,
                description="Latest orders",
                metadata=struct({"team": "sales", "shards": 3}),
            )
        ),
        timeout=DEADLINE,
    )
    fetched = await stub.GetChannel(pb.GetChannelRequest(name="orders"), timeout=DEADLINE)
    assert fetched.channel == created.channel
    assert fetched.channel.schema == "demo.Order"
    assert fetched.channel.form == channel_pb2.CHANNEL_FORM_LATEST_STATE
    assert fetched.channel.description == "Latest orders"
    assert dict(fetched.channel.metadata) == {"team": "sales", "shards": 3}


async def test_unspecified_form_is_stored_as_log(stub, make_channel) -> None:
    await make_channel("plain")
    fetched = await stub.GetChannel(pb.GetChannelRequest(name="plain"), timeout=DEADLINE)
    assert fetched.channel.form == channel_pb2.CHANNEL_FORM_LOG


async def test_creating_an_existing_channel_is_already_exists(stub, make_channel) -> None:
    await make_channel("dup", description="first")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await make_channel("dup", description="second")
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "CHANNEL_EXISTS"
    assert error.domain == "sssn.dev"
    assert error.metadata == {"channel": "dup"}
    fetched = await stub.GetChannel(pb.GetChannelRequest(name="dup"), timeout=DEADLINE)
    assert fetched.channel.description == "first"


async def test_missing_channel_is_not_found(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetChannel(pb.GetChannelRequest(name="nope"), timeout=DEADLINE)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "CHANNEL_NOT_FOUND"
    assert error.metadata == {"channel": "nope"}


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_bad_channel_names_are_rejected_and_not_stored(stub, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name=name)), timeout=DEADLINE
        )
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_PAYLOAD"
    assert error.fields == ["channel.name"]
    listed = await stub.ListChannels(pb.ListChannelsRequest(), timeout=DEADLINE)
    assert list(listed.channels) == []


async def test_unknown_form_number_is_invalid(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateChannel(
            pb.CreateChannelRequest(channel=channel_pb2.Channel(name="x", form=99)),
            timeout=DEADLINE,
        )
    assert failure(caught.value).fields == ["channel.form"]


async def test_get_channel_with_bad_name_is_invalid(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetChannel(pb.GetChannelRequest(name="a/b"), timeout=DEADLINE)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["name"]


async def test_list_channels_pages_in_name_order(stub, make_channel) -> None:
    names = [f"ch-{index:02d}" for index in range(7)]
    for name in reversed(names):
        await make_channel(name)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stub.ListChannels(
            pb.ListChannelsRequest(page_size=3, page_token=token), timeout=DEADLINE
        )
        seen.extend(channel.name for channel in page.channels)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == names
    assert pages == 3


async def test_list_channels_default_page_holds_everything_small(stub, make_channel) -> None:
    for name in ("b", "a", "c"):
        await make_channel(name)
    page = await stub.ListChannels(pb.ListChannelsRequest(), timeout=DEADLINE)
    assert [channel.name for channel in page.channels] == ["a", "b", "c"]
    assert page.next_page_token == ""


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [({"page_size": -1}, "page_size"), ({"page_token": "!!not-a-token"}, "page_token")],
)
async def test_list_channels_rejects_bad_paging(stub, request_fields, field) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListChannels(pb.ListChannelsRequest(**request_fields), timeout=DEADLINE)
    error = failure(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == [field]
