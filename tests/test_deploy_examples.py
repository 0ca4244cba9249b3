"""The deploy/ examples agree with the server: probes, grace periods and stream timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sssn_server.__main__ import build_parser
from sssn_server.domain.service import Limits

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _seconds(text: str) -> float:
    assert text.endswith("s"), text
    return float(text[:-1])


def _find(node: Any, key: str) -> list[Any]:
    """Every value stored under `key` anywhere in a YAML document."""
    found = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                found.append(value)
            found.extend(_find(value, key))
    elif isinstance(node, list):
        for item in node:
            found.extend(_find(item, key))
    return found


def test_kubernetes_probes_use_grpc_health_and_the_grace_covers_the_drain() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    (statefulset,) = [doc for doc in documents if doc["kind"] == "StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    server = build_parser().parse_args(container["args"])
    assert pod["terminationGracePeriodSeconds"] > server.grace
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == 7700
    assert container["readinessProbe"]["grpc"]["service"] == "sssn.v1.StoreService"
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    (service,) = [doc for doc in documents if doc["kind"] == "Service"]
    assert {port["appProtocol"] for port in service["spec"]["ports"] if port["name"] == "grpc"} == {
        "grpc"
    }


def test_envoy_never_times_out_a_following_stream_between_heartbeats() -> None:
    config = yaml.safe_load((DEPLOY / "envoy.yaml").read_text())
    heartbeat = Limits().heartbeat_interval
    (idle,) = _find(config, "stream_idle_timeout")
    assert _seconds(idle) > 4 * heartbeat
    routes = _find(config, "routes")[0]
    pull = [r for r in routes if "PullSubscription" in r["match"]["prefix"]]
    assert pull and _seconds(pull[0]["route"]["timeout"]) == 0
    (keepalive,) = _find(config, "connection_keepalive")
    minimum = build_parser().parse_args([]).min_ping_interval
    assert _seconds(keepalive["interval"]) >= minimum
    (health,) = _find(config, "grpc_health_check")
    assert health["service_name"] == "sssn.v1.StoreService"
