"""The rendered AuthorizationPolicies allow exactly what the kit allows, and deny what it denies.

The kit's side is the real guard (``services.kit.interceptors.Guard``), fed the caller's
certificate (SPIFFE ID ``spiffe://cluster.local/ns/orchestrall/sa/<caller>``) and, or not, a
token whose roles grant every permission. Istio's side is the policies of ``kubectl kustomize
deploy/istio``, decided by ``tests/deploy/istio_authz.py``. Every caller, every RPC of every
service, with and without a token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.cluster import Cluster
from gateway.envoy.render import token_path
from services.kit import mtls
from services.kit.auth import Principal, method_rules
from services.kit.config import SERVICES
from services.kit.contracts import descriptors_of
from services.kit.errors import DomainError, domain_of
from services.kit.interceptors import Guard
from services.kit.policy import SERVICE_CALLS, may_call
from tests.deploy import istio_authz
from tests.deploy.conftest import of_kind

CLUSTER = Cluster()
TOKEN = "header.payload.signature"
#: Every identity in the namespace that may call: the services, the gateway, the operator's CLI,
#: the migrations Job and one the table has never heard of.
CALLERS = (*SERVICES, "gateway", "cli", "migrate", "intruder")
#: Served by every server outside the guard, to any peer with a mesh certificate.
UNGUARDED = (
    "/grpc.health.v1.Health/Check",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)
CREATE_RUN = "/orchestrall.agent.v1.AgentService/CreateRun"


class _Verifier:
    """Stands in for JwtVerifier: the token is valid and its roles grant everything."""

    def cached(self, token: str) -> Principal | None:
        return Principal(kind="user", subject="alice", tenant="acme", roles=("owner",), token=token)

    async def verify(self, token: str) -> Principal:  # pragma: no cover - cached() always answers
        raise AssertionError("not reached")


class _Context:
    """The two things the guard reads from a call: the TLS peer and the metadata."""

    def __init__(self, pem: bytes, token: str | None) -> None:
        self._pem = pem
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self._pem]}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """One certificate per caller, issued as Istio would name it (trust domain cluster.local)."""
    tls = tmp_path_factory.mktemp("cluster-tls")
    mtls.ensure_ca(tls, CLUSTER.trust_domain)
    return {
        caller: mtls.issue_workload_cert(
            tls, caller, CLUSTER.trust_domain, CLUSTER.namespace
        ).cert.read_bytes()
        for caller in CALLERS
    }


def _methods(service: str) -> Iterator[str]:
    yield from method_rules(descriptors_of(service))
    yield from UNGUARDED


async def kit_allows(service: str, caller: str, method: str, pem: bytes, token: str | None) -> bool:
    """Whether ``service``'s guard admits the call (the kit's decision, from its own code)."""
    if method in UNGUARDED:
        return True  # mTLS with a certificate of the mesh CA is all they ask
    rules = method_rules(descriptors_of(service))
    guard = Guard(domain_of(service), rules, _Verifier(), CLUSTER.trust_domain, None)  # type: ignore[arg-type]
    try:
        await guard._admit(rules[method], method, _Context(pem, token))  # type: ignore[arg-type]
    except DomainError:
        return False
    return True


def mesh_allows(
    mesh: list[dict[str, Any]], service: str, caller: str, method: str, token: str | None
) -> bool:
    """Whether the service's sidecar admits the call under the rendered policies."""
    policies = list(of_kind(mesh, "AuthorizationPolicy").values())
    labels = of_kind(mesh, "Deployment")[service]["spec"]["template"]["metadata"]["labels"]
    request = istio_authz.Request(
        principal=CLUSTER.principal(caller),
        request_principal=f"{CLUSTER.issuer}/alice" if token else None,
        path=method,
    )
    return istio_authz.allowed(policies, labels, request)


async def test_rendered_policies_allow_exactly_what_the_kit_allows(
    mesh: list[dict[str, Any]], certificates: dict[str, bytes]
) -> None:
    decisions = 0
    disagreements = []
    allowed_without_token = set()
    for service in SERVICES:
        for method in _methods(service):
            for caller in CALLERS:
                for token in (None, TOKEN):
                    kit = await kit_allows(service, caller, method, certificates[caller], token)
                    istio = mesh_allows(mesh, service, caller, method, token)
                    decisions += 1
                    if kit != istio:
                        disagreements.append(
                            f"{caller} -> {method} token={bool(token)}: kit {kit}, Istio {istio}"
                        )
                    if istio and token is None and method not in UNGUARDED:
                        allowed_without_token.add((caller, method))
    assert disagreements == []
    assert decisions == len(CALLERS) * 2 * sum(len(list(_methods(s))) for s in SERVICES)
    # On identity alone: exactly the table's entries, and the anonymous RPCs for everyone.
    anonymous = {m for s in SERVICES for m, r in method_rules(descriptors_of(s)).items() if r.anonymous}
    table = {(c, m) for c, methods in SERVICE_CALLS.items() for m in methods}
    assert allowed_without_token == table | {(c, m) for c in CALLERS for m in anonymous}


async def test_flag_calling_create_run_is_denied_in_the_table_and_the_mesh(
    mesh: list[dict[str, Any]], certificates: dict[str, bytes]
) -> None:
    assert not may_call("flag", CREATE_RUN)
    assert not await kit_allows("agent", "flag", CREATE_RUN, certificates["flag"], None)
    assert not mesh_allows(mesh, "agent", "flag", CREATE_RUN, None)
    # The caller the table names gets through both.
    assert may_call("workflow", CREATE_RUN)
    assert await kit_allows("agent", "workflow", CREATE_RUN, certificates["workflow"], None)
    assert mesh_allows(mesh, "agent", "workflow", CREATE_RUN, None)


def test_internal_rpcs_take_no_token_from_anyone_the_table_does_not_name(mesh: list[dict[str, Any]]) -> None:
    rotate = "/orchestrall.auth.v1.AuthService/RotateSigningKey"
    for caller in CALLERS:
        assert mesh_allows(mesh, "auth", caller, rotate, TOKEN) == (caller == "cli")


def test_only_the_gateway_reaches_the_form_token_endpoint(mesh: list[dict[str, Any]]) -> None:
    """Auth's form-encoded token endpoint (services/auth/oauth.py) is for the gateway's route alone."""
    path = token_path()
    for caller in CALLERS:
        for token in (None, TOKEN):
            assert mesh_allows(mesh, "auth", caller, path, token) == (caller == "gateway"), (caller, token)
    # Its path is nothing on any other service.
    assert not mesh_allows(mesh, "agent", "gateway", path, None)


def test_another_namespace_is_denied_by_the_mesh(mesh: list[dict[str, Any]]) -> None:
    """Istio also pins the namespace; the kit's check is of the service account name alone."""
    policies = list(of_kind(mesh, "AuthorizationPolicy").values())
    labels = of_kind(mesh, "Deployment")["agent"]["spec"]["template"]["metadata"]["labels"]
    for path, token in ((CREATE_RUN, None), (CREATE_RUN, TOKEN), ("/grpc.health.v1.Health/Check", None)):
        request = istio_authz.Request(
            principal="cluster.local/ns/elsewhere/sa/workflow",
            request_principal=f"{CLUSTER.issuer}/alice" if token else None,
            path=path,
        )
        assert not istio_authz.allowed(policies, labels, request)


def test_a_workload_without_a_policy_of_its_own_gets_nothing(mesh: list[dict[str, Any]]) -> None:
    """``allow-nothing`` covers every workload, the ones added later included."""
    policies = list(of_kind(mesh, "AuthorizationPolicy").values())
    request = istio_authz.Request(CLUSTER.principal("agent"), f"{CLUSTER.issuer}/alice", "/anything/At.All")
    assert not istio_authz.allowed(policies, {"app.kubernetes.io/name": "newcomer"}, request)


def test_the_evaluator_follows_istio_semantics() -> None:
    match = istio_authz.string_matches
    assert match("cluster.local/ns/a/sa/b", ["cluster.local/ns/a/sa/*"])
    assert match("x.example/sub", ["*/sub"]) and match("anything", ["*"])
    assert not match(None, ["*"]) and not match("cluster.local/ns/ab/sa/c", ["cluster.local/ns/a/sa/*"])
    deny = {"spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]}}
    allow_all: dict[str, Any] = {"spec": {"rules": [{}]}}
    request = istio_authz.Request("cluster.local/ns/a/sa/b", None, "/x")
    assert istio_authz.allowed([], {}, request)
    assert istio_authz.allowed([allow_all], {}, request)
    assert not istio_authz.allowed([allow_all, deny], {}, request)
    assert not istio_authz.allowed([{"spec": {}}], {}, request)
    with pytest.raises(NotImplementedError):
        istio_authz.allowed([{"spec": {"rules": [{"when": []}]}}], {}, request)


def test_policies_follow_the_namespace_and_trust_domain(tmp_path: Path) -> None:
    from deploy.mesh import authorization_policies

    cluster = Cluster(namespace="acme", trust_domain="example.org", issuer="https://api.acme.example")
    text = repr(authorization_policies(cluster))
    assert "example.org/ns/acme/sa/workflow" in text and "https://api.acme.example/*" in text
    assert "cluster.local" not in text and "orchestrall/sa" not in text
