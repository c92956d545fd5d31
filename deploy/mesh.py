"""The Istio overlay: mTLS, token checks, authorization from the kit's table, retries from its clients.

The AuthorizationPolicies come from :data:`services.kit.policy.SERVICE_CALLS` and the contracts'
access rules (:func:`services.kit.auth.method_rules`), the table the kit enforces locally; the
sidecars' retries from the kit's client retry policy (:mod:`services.kit.clients`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deploy.cluster import (
    GATEWAY_PORT,
    HTTP_PORTS,
    PART_OF,
    SERVICE_PORT,
    Cluster,
    labels,
    selector,
)
from gateway.envoy.render import MCP_PATH, token_path
from services.kit import clients
from services.kit.auth import method_rules
from services.kit.config import SERVICES
from services.kit.contracts import descriptors_of
from services.kit.policy import SERVICE_CALLS

#: gRPC status code names (the retry service config's) -> Envoy's ``retry_on`` conditions.
GRPC_RETRY_ON = {
    "CANCELLED": "cancelled",
    "DEADLINE_EXCEEDED": "deadline-exceeded",
    "INTERNAL": "internal",
    "RESOURCE_EXHAUSTED": "resource-exhausted",
    "UNAVAILABLE": "unavailable",
}
#: Failures a sidecar meets before any response, which a gRPC client sees as UNAVAILABLE: the
#: sidecar retries them only when the client's policy retries UNAVAILABLE.
UNAVAILABLE_TRANSPORT_RETRY_ON = ("connect-failure", "refused-stream", "reset")


# --- the Istio overlay ----------------------------------------------------------------------

HEALTH_PATHS = ("/grpc.health.v1.Health/*",)
REFLECTION_PATHS = ("/grpc.reflection.v1.ServerReflection/*", "/grpc.reflection.v1alpha.ServerReflection/*")


def _istio_metadata(name: str, target: str, cluster: Cluster) -> dict[str, Any]:
    return {"name": name, "labels": labels(target, "mesh-policy", cluster)}


def peer_authentications(cluster: Cluster) -> list[dict[str, Any]]:
    """STRICT mTLS for every workload of the namespace; plain HTTP only on the gateway's edge port."""
    return [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "labels": {"app.kubernetes.io/part-of": PART_OF}},
            "spec": {"mtls": {"mode": "STRICT"}},
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": _istio_metadata("gateway-edge", "gateway", cluster),
            # Clients outside the mesh reach Envoy's listener directly (its port is excluded from
            # the sidecar's inbound capture); the sidecar still does mTLS for the gateway's calls.
            "spec": {
                "selector": {"matchLabels": selector("gateway", cluster)},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {str(GATEWAY_PORT): {"mode": "PERMISSIVE"}},
            },
        },
    ]


def request_authentication(cluster: Cluster) -> dict[str, Any]:
    """Sidecars verify bearer tokens against auth's issuer and JWKS (served through the gateway)."""
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": _istio_metadata("orchestrall", "auth", cluster),
        "spec": {
            "jwtRules": [
                {
                    "issuer": cluster.issuer,
                    "jwksUri": cluster.jwks_uri,
                    "audiences": [cluster.audience],
                    # The services verify the token again (zero trust), so it must reach them.
                    "forwardOriginalToken": True,
                }
            ]
        },
    }


@dataclass(frozen=True)
class ServiceAccess:
    """Who may call what on one service, from the contracts and the kit's policy table.

    Attributes:
        service: The mesh service.
        anonymous: RPCs anyone in the mesh may call (``access.anonymous``).
        authenticated: External RPCs that need a user's token (the kit then checks its permission).
        by_identity: Caller -> the RPCs it may call on its own identity (:data:`SERVICE_CALLS`).
    """

    service: str
    anonymous: tuple[str, ...]
    authenticated: tuple[str, ...]
    by_identity: dict[str, tuple[str, ...]]


def service_access(name: str) -> ServiceAccess:
    """Reads :class:`ServiceAccess` of service ``name``."""
    rules = method_rules(descriptors_of(name))
    by_identity = {
        caller: tuple(sorted(m for m in methods if m in rules))
        for caller, methods in sorted(SERVICE_CALLS.items())
    }
    return ServiceAccess(
        service=name,
        anonymous=tuple(m for m, r in rules.items() if r.anonymous and not r.internal),
        authenticated=tuple(m for m, r in rules.items() if not r.anonymous and not r.internal),
        by_identity={caller: methods for caller, methods in by_identity.items() if methods},
    )


def _rule(
    principals: Sequence[str], paths: Sequence[str], request_principals: Sequence[str] = ()
) -> dict[str, Any]:
    source: dict[str, Any] = {"principals": list(principals)}
    if request_principals:
        source["requestPrincipals"] = list(request_principals)
    return {"from": [{"source": source}], "to": [{"operation": {"paths": list(paths)}}]}


def authorization_policies(cluster: Cluster) -> list[dict[str, Any]]:
    """``allow-nothing`` for the namespace, then one ALLOW policy per service.

    Each service's policy admits, as the kit does (``services.kit.interceptors.Guard``):

    1. any workload of the namespace (mTLS, so a SPIFFE ID) to the anonymous RPCs, health and
       reflection;
    2. any workload of the namespace with a token that RequestAuthentication verified to the
       external RPCs (the service then checks the token's permission);
    3. each service of :data:`SERVICE_CALLS` to the RPCs listed for it, on its identity alone.

    Everything else, internal RPCs from any other caller included, is denied.
    """
    everyone = [cluster.principal("*")]
    policies: list[dict[str, Any]] = [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "allow-nothing", "labels": {"app.kubernetes.io/part-of": PART_OF}},
            # An ALLOW policy without rules matches nothing: whatever no policy below allows is denied.
            "spec": {},
        }
    ]
    for name in SERVICES:
        access = service_access(name)
        rules = [
            _rule(everyone, [*access.anonymous, *HEALTH_PATHS, *REFLECTION_PATHS]),
            _rule(everyone, access.authenticated, request_principals=[f"{cluster.issuer}/*"]),
        ]
        rules += [
            _rule([cluster.principal(caller)], methods) for caller, methods in access.by_identity.items()
        ]
        if name == "agent":  # the built-in tool catalog's MCP server: the gateway, with a token
            rules.append(
                _rule([cluster.principal("gateway")], [MCP_PATH], request_principals=[f"{cluster.issuer}/*"])
            )
        if name == "auth":  # the form-encoded token endpoint: the gateway, anonymous as IssueToken is
            rules.append(_rule([cluster.principal("gateway")], [token_path()]))
        policies.append(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": _istio_metadata(name, name, cluster),
                "spec": {
                    "selector": {"matchLabels": selector(name, cluster)},
                    "action": "ALLOW",
                    "rules": rules,
                },
            }
        )
    return policies


def client_retry_policy() -> dict[str, Any]:
    """Returns the kit's gRPC retry policy (gRFC A6), the one every peer channel uses.

    Raises:
        ValueError: The service config is not one policy for every method.
    """
    config = json.loads(clients._RETRY_SERVICE_CONFIG)
    method_configs = config.get("methodConfig", [])
    if len(method_configs) != 1 or method_configs[0].get("name") != [{}]:
        raise ValueError("expected one retry policy for every method in services/kit/clients.py")
    policy: dict[str, Any] = method_configs[0]["retryPolicy"]
    return policy


def sidecar_retries() -> dict[str, Any]:
    """The sidecars' retries, matching the kit's: same conditions, attempts and first backoff.

    ``maxAttempts`` counts the first try, ``attempts`` only the retries. Envoy's backoff starts at
    ``backoff`` and grows to ten times that; the kit's grows by ``backoffMultiplier`` to ``maxBackoff``.
    """
    policy = client_retry_policy()
    codes = policy["retryableStatusCodes"]
    retry_on = [GRPC_RETRY_ON[code] for code in codes]
    if "UNAVAILABLE" in codes:
        retry_on += UNAVAILABLE_TRANSPORT_RETRY_ON
    return {
        "attempts": int(policy["maxAttempts"]) - 1,
        "retryOn": ",".join(retry_on),
        "backoff": _duration(policy["initialBackoff"]),
    }


def _duration(text: str) -> str:
    """A protobuf JSON duration (``0.1s``) as a Go duration in whole milliseconds (``100ms``)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return f"{round(float(match.group(1)) * 1000)}ms"


def destination_rules(cluster: Cluster) -> list[dict[str, Any]]:
    """Connection pools, outlier detection and a retry budget per service; plaintext to the gateway."""
    rules = []
    for name in SERVICES:
        rules.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": _istio_metadata(name, name, cluster),
                "spec": {
                    "host": cluster.host(name),
                    "trafficPolicy": {
                        "tls": {"mode": "ISTIO_MUTUAL"},
                        # gRPC multiplexes on few long-lived HTTP/2 connections: balance requests.
                        "loadBalancer": {"simple": "LEAST_REQUEST"},
                        "connectionPool": {
                            # Fits every attempt in the kit's 10 s deadline (4 attempts x 2 s).
                            "tcp": {"maxConnections": 1024, "connectTimeout": "2s"},
                            "http": {
                                "http2MaxRequests": 1024,
                                "http1MaxPendingRequests": 1024,
                                "idleTimeout": "300s",
                            },
                        },
                        # Ejects a pod that answers UNAVAILABLE / fails to connect (gateway errors,
                        # 502-504) five times in a row; application errors (INTERNAL) do not count.
                        "outlierDetection": {
                            "consecutive5xxErrors": 0,
                            "consecutiveGatewayErrors": 5,
                            "interval": "10s",
                            "baseEjectionTime": "30s",
                            "maxEjectionPercent": 50,
                        },
                        # Retries in flight stay a fifth of requests in flight, so a struggling service
                        # is not flooded by them; the kit itself does not retry behind the sidecar
                        # (ORCHESTRALL_MESH_TLS=istio), so the two do not multiply.
                        "retryBudget": {"percent": 20, "minRetryConcurrency": 3},
                    },
                },
            }
        )
    rules.append(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": _istio_metadata("gateway", "gateway", cluster),
            # The gateway's listener is outside its sidecar and serves TLS itself (the edge
            # certificate): an in-mesh client speaks HTTPS to it and its sidecar passes that TLS
            # through (the Service's port says appProtocol https) instead of adding Istio's.
            "spec": {"host": cluster.host("gateway"), "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
        }
    )
    return rules


def virtual_services(cluster: Cluster) -> list[dict[str, Any]]:
    """One route per service with the sidecar retries of :func:`sidecar_retries`."""
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": _istio_metadata(name, name, cluster),
            "spec": {
                "hosts": [cluster.host(name)],
                "http": [
                    *(
                        {
                            "name": http.name.removeprefix("http-"),
                            "match": [{"port": http.number}],
                            "route": [
                                {"destination": {"host": cluster.host(name), "port": {"number": http.number}}}
                            ],
                        }
                        for http in [HTTP_PORTS.get(name)]
                        if http is not None
                    ),
                    {
                        "name": "grpc",
                        "route": [
                            {"destination": {"host": cluster.host(name), "port": {"number": SERVICE_PORT}}}
                        ],
                        # No route timeout: each call's grpc-timeout (the kit's deadline) bounds it.
                        "retries": sidecar_retries(),
                    },
                ],
            },
        }
        for name in SERVICES
    ]


def _pod_annotation_patch(kind: str, name: str, annotations: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1" if kind == "Deployment" else "batch/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"template": {"metadata": {"annotations": dict(annotations)}}},
    }


def istio_kustomization(cluster: Cluster) -> dict[str, Any]:
    """``deploy/istio/kustomization.yaml``: the base, Istio's objects and the sidecar patches."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": cluster.namespace,
        "resources": [
            "../base",
            "peer-authentication.yaml",
            "request-authentication.yaml",
            "authorization-policies.yaml",
            "destination-rules.yaml",
            "virtual-services.yaml",
        ],
        "patches": [
            {"path": "patches/namespace.yaml"},
            # Every Deployment: the app starts once its sidecar is ready (it calls peers at start).
            {"path": "patches/sidecar-first.yaml", "target": {"kind": "Deployment"}},
            {"path": "patches/gateway-edge.yaml"},
            {
                "path": "patches/migrate.yaml",
                "target": {"kind": "Job", "labelSelector": "app.kubernetes.io/name=migrate"},
            },
        ],
    }


def istio_patches(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """Strategic-merge patches of the overlay, by file name."""
    return {
        "namespace.yaml": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": cluster.namespace, "labels": {"istio-injection": "enabled"}},
        },
        "sidecar-first.yaml": _pod_annotation_patch(
            "Deployment",
            "any",
            {"proxy.istio.io/config": json.dumps({"holdApplicationUntilProxyStarts": True})},
        ),
        # Clients reach Envoy itself, so it sees their address (the anonymous rate limit's key)
        # and verifies their tokens; its calls to the services go through the sidecar (mTLS).
        "gateway-edge.yaml": _pod_annotation_patch(
            "Deployment", "gateway", {"traffic.sidecar.istio.io/excludeInboundPorts": str(GATEWAY_PORT)}
        ),
        # Migrations talk to PostgreSQL only, and a Job whose sidecar runs on never completes.
        "migrate.yaml": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "any"},
            "spec": {"template": {"metadata": {"labels": {"sidecar.istio.io/inject": "false"}}}},
        },
    }
