"""Every object kustomize builds validates offline, and the workloads are what the issue asks."""

from __future__ import annotations

import collections
import re
from typing import Any

import pytest

from deploy import cluster
from deploy.cluster import Cluster
from services.kit.config import SERVICES
from services.kit.contracts import descriptors_of
from services.kit.mtls import spiffe_id
from tests.deploy import schemas
from tests.deploy.conftest import of_kind

CLUSTER = Cluster()
WORKLOADS = (*SERVICES, "gateway")
RECOMMENDED = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
)
# Kubernetes' label syntax (apimachinery validation): optional DNS-subdomain prefix, a name of
# at most 63 characters; values likewise, possibly empty.
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
LABEL_VALUE = re.compile(rf"^{_LABEL_NAME}?$")

#: Objects of each kind in each overlay (n: the five services).
n = len(SERVICES)
EXPECTED: dict[str, dict[str, int]] = {
    "base": {
        "Namespace": 1,
        "NetworkPolicy": n + 2,
        "ServiceAccount": n + 2,
        "Deployment": n + 1,
        "Service": n + 1,
        "PodDisruptionBudget": n + 1,
        "HorizontalPodAutoscaler": n + 1,
        "ConfigMap": 2,
        "Job": 1,
    },
}
EXPECTED["istio"] = {
    **EXPECTED["base"],
    "PeerAuthentication": 2,
    "RequestAuthentication": 1,
    "AuthorizationPolicy": n + 1,
    "DestinationRule": n + 1,
    "VirtualService": n,
}


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pod templates of Deployments and Jobs, by workload name (the app.kubernetes.io/name label)."""
    return {
        o["metadata"]["labels"]["app.kubernetes.io/name"]: o["spec"]["template"]
        for o in objects
        if o["kind"] in ("Deployment", "Job")
    }


@pytest.mark.parametrize("overlay", ["base", "istio"])
def test_every_object_validates(built: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    objects = built[overlay]
    counted: collections.Counter[str] = collections.Counter()
    rules = 0
    for obj in objects:
        if schemas.is_istio(obj):
            rules += schemas.validate_istio(obj)
        else:
            for version in schemas.KUBERNETES_VERSIONS:
                schemas.validate_kubernetes(obj, version)
        counted[obj["kind"]] += 1
    assert dict(counted) == EXPECTED[overlay]
    if overlay == "istio":
        assert rules > 0  # the CRDs' CEL rules did run


def test_invalid_objects_are_caught(mesh: list[dict[str, Any]]) -> None:
    """The validators refuse what the API server refuses (so a pass means something)."""
    deployment = of_kind(mesh, "Deployment")["agent"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(schemas.InvalidObject, match="replica"):
        schemas.validate_kubernetes(broken, "1.37")
    edge = of_kind(mesh, "PeerAuthentication")["gateway-edge"]
    no_selector = {**edge, "spec": {k: v for k, v in edge["spec"].items() if k != "selector"}}
    with pytest.raises(schemas.InvalidObject, match="portLevelMtls requires selector"):
        schemas.validate_istio(no_selector)
    policy = of_kind(mesh, "AuthorizationPolicy")["agent"]
    typo = {**policy, "spec": {**policy["spec"], "rule": []}}
    with pytest.raises(schemas.InvalidObject, match="rule"):
        schemas.validate_istio(typo)
    legacy = {**policy, "apiVersion": "security.istio.io/v1beta2"}
    with pytest.raises(schemas.InvalidObject, match="no served Istio CRD"):
        schemas.validate_istio(legacy)


def test_recommended_labels(built: dict[str, list[dict[str, Any]]]) -> None:
    for obj in built["istio"]:
        metadata = obj["metadata"]
        label_sets = [metadata.get("labels", {})]
        if obj["kind"] in ("Deployment", "Job"):
            label_sets.append(obj["spec"]["template"]["metadata"]["labels"])
        for found in label_sets:
            assert found.get("app.kubernetes.io/part-of") == "orchestrall", schemas.object_name(obj)
            for key, value in found.items():
                assert LABEL_KEY.match(key) and LABEL_VALUE.match(value), (
                    schemas.object_name(obj),
                    key,
                    value,
                )
        if "app.kubernetes.io/name" in metadata.get("labels", {}):
            missing = [k for k in RECOMMENDED if k not in metadata["labels"]]
            assert missing == [], (schemas.object_name(obj), missing)
            assert metadata["labels"]["app.kubernetes.io/version"] == cluster.VERSION


def test_pods_are_non_root_read_only_and_bounded(mesh: list[dict[str, Any]]) -> None:
    accounts = of_kind(mesh, "ServiceAccount")
    specs = pod_specs(mesh)
    assert set(specs) == {*WORKLOADS, "migrate"}
    for name, template in specs.items():
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        # The ServiceAccount is the SPIFFE identity: spiffe://<td>/ns/<ns>/sa/<workload>.
        assert spec["serviceAccountName"] == name and name in accounts
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["runAsUser"] == cluster.UID and security["capabilities"]["drop"] == ["ALL"]
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, (name, kind)
        assert container["image"] == f"{cluster.IMAGE}:{cluster.VERSION}"


def test_services_are_probed_on_grpc_health_and_exposed_as_grpc(mesh: list[dict[str, Any]]) -> None:
    deployments = of_kind(mesh, "Deployment")
    services = of_kind(mesh, "Service")
    for name in SERVICES:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        port = container["ports"][0]
        assert port == {"name": "grpc", "containerPort": cluster.SERVICE_PORT, "protocol": "TCP"}
        assert container["livenessProbe"]["grpc"] == {"port": cluster.SERVICE_PORT}
        assert container["readinessProbe"]["grpc"] == {
            "port": cluster.SERVICE_PORT,
            "service": descriptors_of(name)[0].full_name,
        }
        assert container["startupProbe"]["grpc"]["port"] == cluster.SERVICE_PORT
        assert container["args"] == [name]
        service_port, *others = services[name]["spec"]["ports"]
        assert service_port["appProtocol"] == "grpc" and service_port["targetPort"] == "grpc"
        # The agent also serves the built-in tool catalog as an MCP server (HTTP), and auth the
        # form-encoded OAuth token endpoint, for the gateway.
        extra = {"agent": ("http-mcp", cluster.MCP_PORT), "auth": ("http-oauth", cluster.OAUTH_PORT)}
        expected = (
            [{"name": extra[name][0], "port": extra[name][1], "targetPort": extra[name][0]}]
            if name in extra
            else []
        )
        assert [{k: p[k] for k in ("name", "port", "targetPort")} for p in others] == expected
        assert services[name]["spec"]["selector"] == deployments[name]["spec"]["selector"]["matchLabels"]
        env = {e["name"]: e for e in container["env"]}
        assert env["ORCHESTRALL_LISTEN"]["value"] == f"0.0.0.0:{cluster.SERVICE_PORT}"
        assert env["ORCHESTRALL_TRUST_DOMAIN"]["value"] == CLUSTER.trust_domain
        assert (
            spiffe_id(CLUSTER.trust_domain, CLUSTER.namespace, name) == f"spiffe://{CLUSTER.principal(name)}"
        )


def test_every_workload_has_a_disruption_budget_and_an_autoscaler(mesh: list[dict[str, Any]]) -> None:
    deployments = of_kind(mesh, "Deployment")
    budgets = of_kind(mesh, "PodDisruptionBudget")
    autoscalers = of_kind(mesh, "HorizontalPodAutoscaler")
    assert set(deployments) == set(budgets) == set(autoscalers) == set(WORKLOADS)
    for name, deployment in deployments.items():
        assert "replicas" not in deployment["spec"]  # the autoscaler's to set
        assert budgets[name]["spec"]["selector"] == deployment["spec"]["selector"]
        target = autoscalers[name]["spec"]
        assert target["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert target["minReplicas"] >= 2 and target["metrics"][0]["containerResource"]["container"] == name


def test_database_and_model_endpoint_come_from_secret_and_config_map(mesh: list[dict[str, Any]]) -> None:
    specs = pod_specs(mesh)
    maps = [
        o for o in mesh if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("orchestrall-model-")
    ]
    assert len(maps) == 1 and set(maps[0]["data"]) == {"OPENAI_BASE_URL", "ORCHESTRALL_DEFAULT_MODEL"}
    for name in (*SERVICES, "migrate"):
        env = {e["name"]: e for e in specs[name]["spec"]["containers"][0]["env"]}
        urls = {"DATABASE_URL", "PGPASSWORD"} if name != "migrate" else {"MIGRATION_DATABASE_URL"}
        for key in urls:
            assert env[key]["valueFrom"]["secretKeyRef"]["name"] == cluster.DATABASE_SECRET, (name, key)
        assert "value" not in env.get("DATABASE_URL", {})
        if name == "agent":
            assert (
                env["OPENAI_BASE_URL"]["valueFrom"]["configMapKeyRef"]["name"] == maps[0]["metadata"]["name"]
            )
            assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
        else:
            assert "OPENAI_BASE_URL" not in env


def test_migrations_run_as_a_job_outside_the_mesh(mesh: list[dict[str, Any]]) -> None:
    (job,) = of_kind(mesh, "Job").values()
    template = job["spec"]["template"]
    assert template["spec"]["containers"][0]["args"] == ["migrate"]
    assert template["spec"]["restartPolicy"] == "Never"
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"


def test_the_overlay_puts_every_pod_in_the_mesh(built: dict[str, list[dict[str, Any]]]) -> None:
    mesh = built["istio"]
    (namespace,) = of_kind(mesh, "Namespace").values()
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    assert (
        "istio-injection" not in of_kind(built["base"], "Namespace")[CLUSTER.namespace]["metadata"]["labels"]
    )
    assert of_kind(mesh, "PeerAuthentication")["default"]["spec"] == {"mtls": {"mode": "STRICT"}}
    (jwt,) = of_kind(mesh, "RequestAuthentication")["orchestrall"]["spec"]["jwtRules"]
    assert jwt == {
        "issuer": CLUSTER.issuer,
        "jwksUri": "https://gateway.orchestrall.svc.cluster.local/.well-known/jwks.json",
        "audiences": ["orchestrall"],
        "forwardOriginalToken": True,
    }
    for name, deployment in of_kind(mesh, "Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert "holdApplicationUntilProxyStarts" in annotations["proxy.istio.io/config"], name
    gateway = of_kind(mesh, "Deployment")["gateway"]["spec"]["template"]["metadata"]["annotations"]
    assert gateway["traffic.sidecar.istio.io/excludeInboundPorts"] == str(cluster.GATEWAY_PORT)
    for obj in mesh:
        assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == CLUSTER.namespace


def test_the_gateway_serves_https_with_the_edge_secret(mesh: list[dict[str, Any]]) -> None:
    deployment = of_kind(mesh, "Deployment")["gateway"]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    # A kubernetes.io/tls Secret as cert-manager writes it, readable by the pod's group only.
    assert volumes["edge-tls"]["secret"] == {"secretName": cluster.EDGE_TLS_SECRET, "defaultMode": 0o440}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["edge-tls"] == {"name": "edge-tls", "mountPath": cluster.EDGE_TLS_DIR, "readOnly": True}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": cluster.GATEWAY_PORT, "http-envoy-prom": cluster.ENVOY_STATS_PORT}
    ready = {"port": "https", "path": "/ready", "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == container["startupProbe"]["httpGet"] == ready
    (port,) = of_kind(mesh, "Service")["gateway"]["spec"]["ports"]
    assert port == {
        "name": "https",
        "port": 443,
        "targetPort": "https",
        "protocol": "TCP",
        "appProtocol": "https",
    }
    assert CLUSTER.issuer.startswith("https://") and CLUSTER.jwks_uri.startswith("https://")


def test_envoy_stats_are_scraped_through_the_stats_listener(mesh: list[dict[str, Any]]) -> None:
    annotations = of_kind(mesh, "Deployment")["gateway"]["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(cluster.ENVOY_STATS_PORT),
        "prometheus.io/path": "/stats/prometheus",
    }
    # The admin interface is not a port of the pod.
    (container,) = of_kind(mesh, "Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    assert cluster.ENVOY_ADMIN_PORT not in {p["containerPort"] for p in container["ports"]}


def test_services_run_behind_the_sidecar_in_istio_mode(mesh: list[dict[str, Any]]) -> None:
    for name in SERVICES:
        (container,) = of_kind(mesh, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ORCHESTRALL_MESH_TLS"] == "istio", name
