"""Manifest-friendly descriptions of channels and snapshots, as the reference's helpers give."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import invalid
from ._models import Channel, Snapshot, coerce


def channel_resource(
    channel: Channel | Mapping[str, Any], *, custom_endpoints: Sequence[Any] = ()
) -> dict[str, Any]:
    """Describes a channel for a package manifest or a service card.

    Returns a new dict with the channel's `name`, `schema`, `form`,
    `description` and `metadata`, and an empty `endpoints` list.

    Raises:
        InvalidPayloadError: `custom_endpoints` is not empty: the reference's
            custom HTTP endpoints have no counterpart in the gRPC service.
    """
    _no_custom_endpoints(custom_endpoints)
    model = coerce(Channel, channel)
    return {
        "name": model.name,
        "schema": model.schema,
        "form": model.form,
        "description": model.description,
        "metadata": copy.deepcopy(model.metadata),
        "endpoints": [],
    }


def snapshot_resource(
    snapshot: Snapshot | Mapping[str, Any],
    *,
    description: str = "",
    custom_endpoints: Sequence[Any] = (),
) -> dict[str, Any]:
    """Describes a snapshot for a package manifest or a service card.

    Returns a new dict with the snapshot's `name`, `schema`, `channel` and
    `metadata`, the given `description`, and an empty `endpoints` list.

    Raises:
        InvalidPayloadError: `custom_endpoints` is not empty (see `channel_resource`).
    """
    _no_custom_endpoints(custom_endpoints)
    model = coerce(Snapshot, snapshot)
    return {
        "name": model.name,
        "schema": model.schema,
        "channel": model.channel,
        "description": description,
        "metadata": copy.deepcopy(model.metadata),
        "endpoints": [],
    }


def _no_custom_endpoints(custom_endpoints: Sequence[Any]) -> None:
    if custom_endpoints:
        raise invalid(
            "custom_endpoints",
            "custom HTTP endpoints do not exist over gRPC; describe them elsewhere",
        )
