"""The sidecars retry what the kit's clients retry, and every service has its circuit breakers."""

from __future__ import annotations

import json
from typing import Any

from deploy.cluster import Cluster
from deploy.mesh import UNAVAILABLE_TRANSPORT_RETRY_ON, sidecar_retries
from services.kit import clients
from services.kit.config import SERVICES, MeshSettings
from tests.deploy.conftest import of_kind

CLUSTER = Cluster()


def _client_policy() -> dict[str, Any]:
    (method_config,) = json.loads(clients._RETRY_SERVICE_CONFIG)["methodConfig"]
    assert method_config["name"] == [{}]  # one policy for every method
    policy: dict[str, Any] = method_config["retryPolicy"]
    return policy


def test_sidecar_retries_match_the_client_retry_policy(mesh: list[dict[str, Any]]) -> None:
    policy = _client_policy()
    services = of_kind(mesh, "VirtualService")
    assert set(services) == set(SERVICES)
    for name, service in services.items():
        assert service["spec"]["hosts"] == [CLUSTER.host(name)]
        (route,) = [r for r in service["spec"]["http"] if r["name"] == "grpc"]
        retries = route["retries"]
        # maxAttempts counts the first try; attempts counts retries only.
        assert retries["attempts"] == policy["maxAttempts"] - 1
        conditions = set(retries["retryOn"].split(","))
        codes = {code.lower().replace("_", "-") for code in policy["retryableStatusCodes"]}
        assert codes <= conditions
        # Beyond the status codes only failures before any response, which gRPC reports as UNAVAILABLE.
        assert conditions - codes == set(UNAVAILABLE_TRANSPORT_RETRY_ON)
        assert "cancelled" not in conditions and "deadline-exceeded" not in conditions
        assert float(retries["backoff"].removesuffix("ms")) / 1000 == float(
            policy["initialBackoff"].removesuffix("s")
        )
        assert "timeout" not in route  # the caller's deadline bounds the call


def test_a_changed_client_policy_changes_the_sidecars(monkeypatch: Any) -> None:
    changed = {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 2,
                    "initialBackoff": "0.25s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["RESOURCE_EXHAUSTED"],
                },
            }
        ]
    }
    monkeypatch.setattr(clients, "_RETRY_SERVICE_CONFIG", json.dumps(changed))
    assert sidecar_retries() == {"attempts": 1, "retryOn": "resource-exhausted", "backoff": "250ms"}


def test_every_service_has_connection_pools_and_outlier_detection(mesh: list[dict[str, Any]]) -> None:
    rules = of_kind(mesh, "DestinationRule")
    services = of_kind(mesh, "Service")
    assert set(rules) == {*SERVICES, "gateway"}
    for name in SERVICES:
        spec = rules[name]["spec"]
        assert spec["host"] == f"{services[name]['metadata']['name']}.{CLUSTER.namespace}.svc.cluster.local"
        policy = spec["trafficPolicy"]
        assert policy["tls"] == {"mode": "ISTIO_MUTUAL"}
        assert {"tcp", "http"} <= set(policy["connectionPool"])
        assert policy["outlierDetection"]["consecutiveGatewayErrors"] > 0
        assert 0 < policy["retryBudget"]["percent"] <= 100
        # Every attempt of the kit's deadline fits, connection set-up included.
        connect = float(policy["connectionPool"]["tcp"]["connectTimeout"].removesuffix("s"))
        deadline = MeshSettings.model_fields["call_timeout_seconds"].default
        assert connect * _client_policy()["maxAttempts"] <= deadline
    # The gateway's listener is outside its sidecar and serves TLS itself: the client sidecar passes it on.
    assert rules["gateway"]["spec"]["trafficPolicy"]["tls"] == {"mode": "DISABLE"}
