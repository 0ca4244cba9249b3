"""The deploy/ examples agree with the server: probes, grace periods, stream timeouts, retries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sssn_client._config import IDEMPOTENT_READS
from sssn_proto.v1 import store_service_pb2
from sssn_server.__main__ import build_parser
from sssn_server.domain.service import Limits

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SERVICE = store_service_pb2.DESCRIPTOR.services_by_name["StoreService"]
# Retrying on these repeats nothing: the request never reached the server.
UNSENT = {"connect-failure", "refused-stream"}


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


def _kubernetes() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))


def _envoy() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "envoy.yaml").read_text())
    return config


def _route(config: dict[str, Any], path: str) -> dict[str, Any]:
    """The route Envoy picks for a request path: the first whose match fits."""
    (routes,) = _find(config, "routes")
    for route in routes:
        match = route["match"]
        if match.get("path") == path or path.startswith(match.get("prefix", "\0")):
            found: dict[str, Any] = route["route"]
            return found
    raise AssertionError(f"no route for {path}")


def _retried_on(route: dict[str, Any]) -> set[str]:
    policy = route.get("retry_policy")
    return set(policy["retry_on"].split(",")) if policy else set()


def test_kubernetes_probes_use_grpc_health_and_the_grace_covers_the_drain() -> None:
    documents = _kubernetes()
    (statefulset,) = [doc for doc in documents if doc["kind"] == "StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    server = build_parser().parse_args(container["args"])
    assert pod["terminationGracePeriodSeconds"] > server.grace
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == 7700
    assert container["readinessProbe"]["grpc"]["service"] == "sssn.v1.StoreService"
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user


def test_kubernetes_services_the_client_one_and_the_headless_one_of_the_statefulset() -> None:
    documents = _kubernetes()
    (statefulset,) = [doc for doc in documents if doc["kind"] == "StatefulSet"]
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    services = {
        doc["metadata"]["name"]: doc["spec"] for doc in documents if doc["kind"] == "Service"
    }
    # A StatefulSet's serviceName must name a headless Service: it gives the pods their DNS names.
    governing = services[statefulset["spec"]["serviceName"]]
    assert governing["clusterIP"] == "None"
    assert governing["selector"] == labels
    client = services["sssn"]  # the name envoy.yaml and deploy/README.md use
    assert client.get("clusterIP") != "None"
    assert client["selector"] == labels
    for spec in (governing, client):
        (grpc_port,) = [port for port in spec["ports"] if port["name"] == "grpc"]
        assert (grpc_port["port"], grpc_port["appProtocol"]) == (7700, "grpc")


def test_kubernetes_runs_the_image_deploy_readme_builds() -> None:
    (statefulset,) = [doc for doc in _kubernetes() if doc["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    guide = (DEPLOY / "README.md").read_text()
    (built,) = set(re.findall(r"docker build -t (\S+) \.", guide))
    assert container["image"] == built
    # A tag loaded into kind or minikube is there only if the node never pulls it.
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert f"kind load docker-image {built}" in guide
    assert "kubectl apply -f deploy/kubernetes.yaml" in guide


def test_kubernetes_replicas_share_a_database_named_by_a_secret() -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes-replicas.yaml").read_text()))
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] > 1
    # Never fewer ready replicas during a rollout: a new pod is up before an old one drains.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    server = build_parser().parse_args(container["args"])
    assert pod["terminationGracePeriodSeconds"] > server.grace
    assert server.lease_ttl <= 15
    (store,) = [env for env in container["env"] if env["name"] == "SSSN_STORE"]
    secret = store["valueFrom"]["secretKeyRef"]
    guide = (DEPLOY / "README.md").read_text()
    # The README creates the Secret the Deployment reads, with a database URL.
    assert f"kubectl create secret generic {secret['name']}" in guide
    assert f"--from-literal={secret['key']}='postgresql://" in guide
    assert "kubectl apply -f deploy/kubernetes-replicas.yaml" in guide
    assert not [doc for doc in documents if doc["kind"] in ("Secret", "PersistentVolumeClaim")]
    # Readiness follows the store's health, which follows the database.
    assert container["readinessProbe"]["grpc"] == {"port": 7700, "service": "sssn.v1.StoreService"}
    (built,) = set(re.findall(r"docker build -t (\S+) \.", guide))
    assert container["image"] == built
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    services = {
        doc["metadata"]["name"]: doc["spec"] for doc in documents if doc["kind"] == "Service"
    }
    assert services["sssn"]["selector"] == labels
    assert services["sssn-replicas"]["clusterIP"] == "None"  # every replica, for Envoy
    assert "sssn-replicas" in guide


def test_envoy_never_times_out_a_following_stream_between_heartbeats() -> None:
    config = _envoy()
    heartbeat = Limits().heartbeat_interval
    (idle,) = _find(config, "stream_idle_timeout")
    assert _seconds(idle) > 4 * heartbeat
    (keepalive,) = _find(config, "connection_keepalive")
    minimum = build_parser().parse_args([]).min_ping_interval
    assert _seconds(keepalive["interval"]) >= minimum
    (health,) = _find(config, "grpc_health_check")
    assert health["service_name"] == "sssn.v1.StoreService"


def test_envoy_gives_every_stream_no_deadline() -> None:
    config = _envoy()
    for method in SERVICE.methods:
        route = _route(config, f"/{SERVICE.full_name}/{method.name}")
        if method.client_streaming or method.server_streaming:
            assert _seconds(route["timeout"]) == 0, method.name
        else:
            assert _seconds(route["timeout"]) > 0, method.name


def test_envoy_repeats_only_reads_and_requests_that_never_reached_the_server() -> None:
    config = _envoy()
    for host in _find(config, "virtual_hosts")[0]:
        assert "retry_policy" not in host  # a host-wide policy would reach the appends
    reads = set(IDEMPOTENT_READS)
    assert reads <= {method.name for method in SERVICE.methods}
    for method in SERVICE.methods:
        retried = _retried_on(_route(config, f"/{SERVICE.full_name}/{method.name}"))
        if method.name in reads:
            assert "unavailable" in retried, method.name
        else:
            assert retried <= UNSENT, f"{method.name} is retried on {retried - UNSENT}"
    # The same for whatever else arrives: health, reflection, a method added later.
    assert _retried_on(_route(config, "/grpc.health.v1.Health/Check")) <= UNSENT
    assert _retried_on(_route(config, f"/{SERVICE.full_name}/SomeFutureWrite")) <= UNSENT
