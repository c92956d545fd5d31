"""The kustomize base: the five services, the Envoy gateway, the migrations Job, the namespace.

Each service is a Deployment behind a Service with ``appProtocol: grpc``, probed by Kubernetes'
native gRPC probes on ``grpc.health.v1``, run as a ServiceAccount named after its SPIFFE identity
(``spiffe://<trust-domain>/ns/<namespace>/sa/<service>``, :func:`services.kit.mtls.spiffe_id`),
with a PodDisruptionBudget and a HorizontalPodAutoscaler. The gateway's Envoy config is rendered by
:func:`gateway.envoy.render.render` from the template used locally; only the addresses differ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import swagger_ui_bundle

from deploy.cluster import (
    CHECKOV_SKIPS,
    DATABASE_SECRET,
    EDGE_TLS_DIR,
    EDGE_TLS_SECRET,
    ENCRYPTION_SECRET,
    ENVOY_ADMIN_PORT,
    ENVOY_CONCURRENCY,
    ENVOY_CONFIG_DIR,
    ENVOY_STATS_PORT,
    GATEWAY_PORT,
    GATEWAY_SERVICE_PORT,
    HTTP_PORTS,
    IMAGE,
    IMAGE_ROOT,
    IMAGE_SITE_PACKAGES,
    ISTIO_MERGED_METRICS_PORT,
    MAX_REPLICAS,
    MCP_PORT,
    METRICS_PORT,
    MIN_REPLICAS,
    MODEL_CONFIG,
    MODEL_DEFAULTS,
    MODEL_SECRET,
    OAUTH_PORT,
    PAGE_TOKEN_SECRET,
    PART_OF,
    RESOURCES,
    SERVICE_PORT,
    SIDECAR_TRANSPORT,
    STATE_DIR,
    TARGET_CPU_PERCENT,
    UID,
    VERSION,
    Cluster,
    labels,
    selector,
)
from gateway.docs import DocsFiles
from gateway.envoy.render import READY_PATH, STATS_PATH, EdgeTls
from gateway.envoy.render import render as render_envoy
from services.kit.config import SERVICES
from services.kit.contracts import descriptors_of


def _checkov_skips(*checks: str) -> dict[str, str]:
    """Annotations that skip checkov checks on one object, each with its reason."""
    return {f"checkov.io/skip{i}": f"{check}={CHECKOV_SKIPS[check]}" for i, check in enumerate(checks, 1)}


def _metadata(name: str, component: str, cluster: Cluster, **extra: Any) -> dict[str, Any]:
    return {"name": name, "labels": labels(name, component, cluster), **extra}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _scratch_volumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Writable folders on a read-only root filesystem: the state folder and /tmp."""
    volumes = [
        {"name": "state", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    mounts = [{"name": "state", "mountPath": STATE_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
    return volumes, mounts


def _spread(name: str, cluster: Cluster) -> list[dict[str, Any]]:
    """Replicas spread over nodes and zones where the cluster has room (never blocks scheduling)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(name, cluster)},
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]


def service_account(name: str, component: str, cluster: Cluster) -> dict[str, Any]:
    """The workload's identity; Istio's SPIFFE ID is ``spiffe://<td>/ns/<ns>/sa/<name>``."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(name, component, cluster),
        # No workload talks to the Kubernetes API; Istio mounts its own token for the sidecar.
        "automountServiceAccountToken": False,
    }


def _deployment(
    name: str,
    component: str,
    cluster: Cluster,
    container: dict[str, Any],
    *,
    volumes: list[dict[str, Any]],
    pod_annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    template_metadata: dict[str, Any] = {"labels": labels(name, component, cluster)}
    if pod_annotations:
        template_metadata["annotations"] = dict(pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(
            name, component, cluster, annotations=_checkov_skips("CKV_K8S_43", "CKV_K8S_35")
        ),
        # No replicas: the HorizontalPodAutoscaler owns the count (between MIN_REPLICAS and MAX_REPLICAS).
        "spec": {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(name, cluster)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": template_metadata,
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(),
                    "terminationGracePeriodSeconds": 30,
                    "topologySpreadConstraints": _spread(name, cluster),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _pdb(name: str, component: str, cluster: Cluster) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(name, component, cluster),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(name, cluster)},
            # A pod that is not ready protects nothing; it must not block a node drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def _hpa(name: str, component: str, cluster: Cluster) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(name, component, cluster),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": MIN_REPLICAS,
            "maxReplicas": MAX_REPLICAS,
            # The app container's CPU alone: the sidecar's would blur the signal.
            "metrics": [
                {
                    "type": "ContainerResource",
                    "containerResource": {
                        "name": "cpu",
                        "container": name,
                        "target": {"type": "Utilization", "averageUtilization": TARGET_CPU_PERCENT},
                    },
                }
            ],
        },
    }


# --- the five services ----------------------------------------------------------------------


def mesh_environment(name: str, cluster: Cluster) -> list[dict[str, Any]]:
    """Environment of service ``name`` (``services.kit.config.MeshSettings`` and its own)."""
    addresses = {peer: f"{cluster.host(peer)}:{SERVICE_PORT}" for peer in SERVICES}
    plain = {
        "ORCHESTRALL_LISTEN": f"0.0.0.0:{SERVICE_PORT}",
        "ORCHESTRALL_ADDRESSES": json.dumps(addresses, separators=(",", ":")),
        "ORCHESTRALL_ISSUER": cluster.issuer,
        "ORCHESTRALL_AUDIENCE": cluster.audience,
        "ORCHESTRALL_TRUST_DOMAIN": cluster.trust_domain,
        "ORCHESTRALL_NAMESPACE": cluster.namespace,
        "ORCHESTRALL_STATE_DIR": STATE_DIR,
        **SIDECAR_TRANSPORT,
    }
    env: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in plain.items()]
    secret = {"name": DATABASE_SECRET}
    env += [
        # Server and database; services connect as the orchestrall_app role (services.kit.db.app_url).
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {**secret, "key": "url"}}},
        # libpq reads the role's password from here (PostgreSQL docs, "Environment Variables").
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {**secret, "key": "app-password"}}},
        {"name": "ORCHESTRALL_METRICS_LISTEN", "value": f"0.0.0.0:{METRICS_PORT}"},
        # A page token from one replica must be good on the next (services.kit.pagination).
        {
            "name": "ORCHESTRALL_PAGE_TOKEN_KEY",
            "valueFrom": {"secretKeyRef": {"name": PAGE_TOKEN_SECRET, "key": "key"}},
        },
    ]
    http = HTTP_PORTS.get(name)
    if http is not None:
        env.append({"name": http.setting, "value": f"0.0.0.0:{http.number}"})
    if name in ("agent", "workflow"):
        # Stored secrets (MCP server headers, webhook triggers' signing secrets) must open on
        # every replica (services.kit.sealing).
        env.append(
            {
                "name": "ORCHESTRALL_ENCRYPTION_KEY",
                "valueFrom": {"secretKeyRef": {"name": ENCRYPTION_SECRET, "key": "key"}},
            }
        )
    if name == "agent":
        env += [
            {"name": key, "valueFrom": {"configMapKeyRef": {"name": MODEL_CONFIG, "key": key}}}
            for key in MODEL_DEFAULTS
        ]
        env.append(
            {
                "name": "OPENAI_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": MODEL_SECRET, "key": "api-key", "optional": True}},
            }
        )
    return env


def service_ports(name: str) -> list[dict[str, Any]]:
    """The TCP ports service ``name`` takes traffic on: gRPC, and its HTTP port (:data:`HTTP_PORTS`)."""
    ports = [{"protocol": "TCP", "port": SERVICE_PORT}]
    if name in HTTP_PORTS:
        ports.append({"protocol": "TCP", "port": HTTP_PORTS[name].number})
    return ports


def grpc_service_names(name: str) -> list[str]:
    """Full names of the gRPC services that mesh service ``name`` implements."""
    return [d.full_name for d in descriptors_of(name)]


def service_objects(name: str, cluster: Cluster) -> list[dict[str, Any]]:
    """ServiceAccount, Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler of a service."""
    component = "grpc-service"
    volumes, mounts = _scratch_volumes()
    http = HTTP_PORTS.get(name)
    container = {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "Always",
        "args": [name],
        "ports": [
            {"name": "grpc", "containerPort": SERVICE_PORT, "protocol": "TCP"},
            {"name": "http-metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            *([{"name": http.name, "containerPort": http.number, "protocol": "TCP"}] if http else []),
        ],
        "env": mesh_environment(name, cluster),
        # grpc.health.v1 on the server's own port (Kubernetes' native gRPC probes; Istio rewrites
        # them to its agent, so they work under STRICT mTLS). Readiness asks for the service by
        # name: it goes NOT_SERVING first on SIGTERM, so the pod leaves the endpoints.
        "startupProbe": {"grpc": {"port": SERVICE_PORT}, "periodSeconds": 2, "failureThreshold": 60},
        "readinessProbe": {
            "grpc": {"port": SERVICE_PORT, "service": grpc_service_names(name)[0]},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "grpc": {"port": SERVICE_PORT},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        # Endpoints are removed while the pod still serves; then SIGTERM starts the graceful stop.
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "resources": RESOURCES.get(name, RESOURCES["default"]),
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, component, cluster),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(name, cluster),
            "ports": [
                {
                    "name": "grpc",
                    "port": SERVICE_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                },
                *(
                    [
                        {
                            "name": http.name,
                            "port": http.number,
                            "targetPort": http.name,
                            "protocol": "TCP",
                            "appProtocol": "http",
                        }
                    ]
                    if http
                    else []
                ),
            ],
        },
    }
    return [
        service_account(name, component, cluster),
        # Istio merges these metrics into its sidecar's scrape endpoint (metrics merging), so
        # Prometheus scrapes them under STRICT mTLS without a policy exception.
        _deployment(
            name,
            component,
            cluster,
            container,
            volumes=volumes,
            pod_annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        ),
        service,
        _pdb(name, component, cluster),
        _hpa(name, component, cluster),
    ]


# --- the gateway ----------------------------------------------------------------------------


def envoy_config(cluster: Cluster) -> str:
    """The gateway's Envoy config in the cluster: the local template, cluster addresses.

    Upstreams are the Services (``<svc>.<namespace>.svc.cluster.local:50051``, STRICT_DNS), in
    plaintext to the gateway's own sidecar, which does mTLS with Istio's certificates. The
    listener serves TLS with the edge Secret's files (:data:`EDGE_TLS_SECRET`), as ``up --tls``
    does with the local CA's; Envoy's stats listener binds every address, for Prometheus.
    """
    tls = Path(EDGE_TLS_DIR)
    edge = cluster.edge
    return render_envoy(
        listen_port=GATEWAY_PORT,
        admin_port=ENVOY_ADMIN_PORT,
        upstreams={name: (cluster.host(name), SERVICE_PORT) for name in SERVICES},
        mcp_upstream=(cluster.host("agent"), MCP_PORT),
        oauth_upstream=(cluster.host("auth"), OAUTH_PORT),
        docs=image_docs_files(),
        rate_limit_upstream=(cluster.host("billing"), SERVICE_PORT),
        tls_dir=None,
        descriptor_set=IMAGE_ROOT / "gen" / "orchestrall.binpb",
        issuer=cluster.issuer,
        audience=cluster.audience,
        trust_domain=cluster.trust_domain,
        namespace=cluster.namespace,
        tenant_rate_limit=edge.tenant_rate_limit,
        anonymous_rate_limit=edge.anonymous_rate_limit,
        cors_origins=edge.cors_origins,
        listen_address="0.0.0.0",
        edge_tls=EdgeTls(tls / "tls.crt", tls / "tls.key", tls / "ca.crt"),
        stats_port=ENVOY_STATS_PORT,
        stats_address="0.0.0.0",
    )


def image_docs_files() -> DocsFiles:
    """The API documentation's files in the image: gen/ and the venv's Swagger UI (this machine's version)."""
    local = DocsFiles.installed(IMAGE_ROOT / "gen" / "openapi.json")
    site_packages = Path(swagger_ui_bundle.__file__).parents[1]
    return DocsFiles(local.openapi, IMAGE_SITE_PACKAGES / local.assets.relative_to(site_packages))


def gateway_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """ServiceAccount, Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler of Envoy."""
    name, component = "gateway", "gateway"
    volumes, mounts = _scratch_volumes()
    volumes.append({"name": "envoy", "configMap": {"name": "gateway-envoy"}})
    mounts.append({"name": "envoy", "mountPath": ENVOY_CONFIG_DIR, "readOnly": True})
    # The edge certificate; the pod's group (fsGroup) may read it, nobody else. Envoy reads the
    # files at start, so a renewed certificate serves from the next rollout on (see the README).
    volumes.append({"name": "edge-tls", "secret": {"secretName": EDGE_TLS_SECRET, "defaultMode": 0o440}})
    mounts.append({"name": "edge-tls", "mountPath": EDGE_TLS_DIR, "readOnly": True})
    tcp = {"tcpSocket": {"port": GATEWAY_PORT}}
    # Over the edge's own TLS (the kubelet does not check the certificate): admin's /ready
    # through the listener, so the pod is ready once its TLS listener serves, unready draining.
    ready = {"httpGet": {"port": "https", "path": READY_PATH, "scheme": "HTTPS"}}
    container = {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "Always",
        "args": [
            "gateway",
            "--config",
            f"{ENVOY_CONFIG_DIR}/envoy.yaml",
            "--concurrency",
            str(ENVOY_CONCURRENCY),
        ],
        "ports": [
            {"name": "https", "containerPort": GATEWAY_PORT, "protocol": "TCP"},
            {"name": "http-envoy-prom", "containerPort": ENVOY_STATS_PORT, "protocol": "TCP"},
        ],
        # Envoy opens its listener once its config is loaded; the admin port stays on loopback.
        "startupProbe": {**ready, "periodSeconds": 2, "failureThreshold": 30},
        "readinessProbe": {**ready, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**tcp, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "resources": RESOURCES[name],
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    # Envoy's stats, merged by Istio into its sidecar's scrape endpoint like the services' metrics.
    deployment = _deployment(
        name,
        component,
        cluster,
        container,
        volumes=volumes,
        pod_annotations={
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(ENVOY_STATS_PORT),
            "prometheus.io/path": STATS_PATH,
        },
    )
    deployment["metadata"]["annotations"] = _checkov_skips("CKV_K8S_43")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, component, cluster),
        "spec": {
            # The edge. Local traffic policy keeps the client's address, which the anonymous
            # rate limit is keyed on (use_remote_address in the Envoy config).
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": selector(name, cluster),
            "ports": [
                {
                    "name": "https",
                    "port": GATEWAY_SERVICE_PORT,
                    "targetPort": "https",
                    "protocol": "TCP",
                    "appProtocol": "https",
                }
            ],
        },
    }
    return [
        service_account(name, component, cluster),
        deployment,
        service,
        _pdb(name, component, cluster),
        _hpa(name, component, cluster),
    ]


# --- migrations -----------------------------------------------------------------------------


def migrate_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """The migrations Job (every service's Alembic lineage to head) and its ServiceAccount.

    The Job's name carries the version: a new release is a new Job (a Job's pod template is
    immutable), and a finished one is removed after a day.
    """
    name, component = "migrate", "migrations"
    volumes, mounts = _scratch_volumes()
    container = {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "Always",
        "args": ["migrate"],
        "env": [
            {"name": "ORCHESTRALL_STATE_DIR", "value": STATE_DIR},
            {
                "name": "MIGRATION_DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": DATABASE_SECRET, "key": "migration-url"}},
            },
        ],
        "resources": RESOURCES[name],
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    job_name = f"{name}-{VERSION.replace('.', '-')}"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "labels": labels(name, component, cluster),
            "annotations": _checkov_skips("CKV_K8S_43", "CKV_K8S_35"),
        },
        "spec": {
            "backoffLimit": 6,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels(name, component, cluster)},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "restartPolicy": "Never",
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    return [service_account(name, component, cluster), job]


def network_policies(cluster: Cluster) -> list[dict[str, Any]]:
    """Ingress at layer 4, beneath Istio's checks at layer 7: nothing reaches a pod unless listed here.

    The services take gRPC from the namespace's own workloads, the gateway takes HTTP from
    anywhere, the metrics ports (each service's, Envoy's stats, an Istio sidecar's merged
    metrics) take scrapes from the monitoring namespace, nothing else takes anything (the
    migrations Job included). Egress stays open: PostgreSQL and the model endpoint are
    wherever the operator runs them.
    """
    ours = {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}}
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cluster.monitoring_namespace}}
    }

    def scrapes(port: int) -> dict[str, Any]:
        ports = [{"protocol": "TCP", "port": p} for p in (port, ISTIO_MERGED_METRICS_PORT)]
        return {"from": [monitoring], "ports": ports}

    policies: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-ingress", "labels": {"app.kubernetes.io/part-of": PART_OF}},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }
    ]
    for name in SERVICES:
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _metadata(name, "grpc-service", cluster),
                "spec": {
                    "podSelector": {"matchLabels": selector(name, cluster)},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [ours], "ports": service_ports(name)}, scrapes(METRICS_PORT)],
                },
            }
        )
    policies.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _metadata("gateway", "gateway", cluster),
            "spec": {
                "podSelector": {"matchLabels": selector("gateway", cluster)},
                "policyTypes": ["Ingress"],
                # The edge: any client, on the listener only (the admin port is on loopback anyway).
                "ingress": [
                    {"ports": [{"protocol": "TCP", "port": GATEWAY_PORT}]},
                    scrapes(ENVOY_STATS_PORT),
                ],
            },
        }
    )
    return policies


def namespace_object(cluster: Cluster) -> dict[str, Any]:
    """The namespace, enforcing the ``restricted`` Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": cluster.namespace,
            "labels": {
                "app.kubernetes.io/part-of": PART_OF,
                "app.kubernetes.io/managed-by": "kustomize",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def base_kustomization(cluster: Cluster) -> dict[str, Any]:
    """``deploy/base/kustomization.yaml``."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": cluster.namespace,
        "resources": [
            "namespace.yaml",
            "network-policies.yaml",
            *(f"{name}.yaml" for name in SERVICES),
            "gateway.yaml",
            "migrate.yaml",
        ],
        "images": [{"name": IMAGE, "newTag": VERSION}],
        # Generated ConfigMaps get a hash suffix, so a change rolls the pods that use them.
        "configMapGenerator": [
            {
                "name": "gateway-envoy",
                "files": ["envoy.yaml=gateway/envoy.yaml"],
                "options": {"labels": labels("gateway", "gateway", cluster)},
            },
            {
                "name": MODEL_CONFIG,
                "literals": [f"{key}={value}" for key, value in MODEL_DEFAULTS.items()],
                "options": {"labels": labels("agent", "grpc-service", cluster)},
            },
        ],
    }
