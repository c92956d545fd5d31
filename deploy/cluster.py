"""What one installation is: its namespace, trust domain and issuer, and the names all objects share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from gateway.envoy.settings import GatewaySettings

#: Version of the image and the ``app.kubernetes.io/version`` label (pyproject.toml's).
VERSION = "0.1.0"
PART_OF = "orchestrall"
#: Image name in the manifests; an overlay's ``images:`` sets registry, tag or digest.
IMAGE = "orchestrall"
#: Numeric user and group of every container (the Containerfile's ``USER``).
UID = 10001
#: Where the image keeps the code (``WORKDIR``) and the descriptor set Envoy transcodes with.
IMAGE_ROOT = Path("/app")
#: The image's virtualenv (the Containerfile's ``/opt/orchestrall``) and its packages.
IMAGE_VENV = Path("/opt/orchestrall")
IMAGE_SITE_PACKAGES = IMAGE_VENV / "lib" / "python3.11" / "site-packages"

SERVICE_PORT = 50051
#: Where the agent service serves the built-in tool catalog as an MCP server (streamable
#: HTTP at /mcp; services.agent.mcp_server), routed by the gateway.
MCP_PORT = 8081
#: Where the auth service serves the token endpoint as OAuth clients call it (form-encoded,
#: HTTP Basic; services.auth.oauth), routed by the gateway.
OAUTH_PORT = 8082


@dataclass(frozen=True)
class HttpPort:
    """An HTTP port a service serves beside its gRPC port, for the gateway.

    Attributes:
        name: The port's name in the pod and the Service (``http-`` prefix: Istio's protocol).
        number: The port.
        setting: The environment variable that binds it (``0.0.0.0:<number>``).
    """

    name: str
    number: int
    setting: str


#: The HTTP ports per service: the agent's MCP catalog, auth's form-encoded token endpoint.
HTTP_PORTS: dict[str, HttpPort] = {
    "agent": HttpPort("http-mcp", MCP_PORT, "ORCHESTRALL_MCP_LISTEN"),
    "auth": HttpPort("http-oauth", OAUTH_PORT, "ORCHESTRALL_OAUTH_LISTEN"),
}
#: Where each service serves Prometheus metrics (services.kit.metrics; OpenTelemetry's
#: Prometheus exporter port).
METRICS_PORT = 9464
GATEWAY_PORT = 8080
#: Port of the gateway's Kubernetes Service (the edge, HTTPS).
GATEWAY_SERVICE_PORT = 443
ENVOY_ADMIN_PORT = 9901
#: Where Envoy serves its own metrics (``/stats/prometheus`` only; the admin port stays on loopback).
ENVOY_STATS_PORT = 9902
#: Where an Istio sidecar serves the workload's metrics merged with its own (Istio's metrics
#: merging rewrites the ``prometheus.io`` annotations to it), what Prometheus scrapes in the mesh.
ISTIO_MERGED_METRICS_PORT = 15020
#: The ``kubernetes.io/tls`` Secret with the gateway's edge certificate (``tls.crt``, ``tls.key``,
#: ``ca.crt``): what a cert-manager ``Certificate`` writes (see the README), or ``kubectl create
#: secret tls`` plus ``ca.crt``.
EDGE_TLS_SECRET = "gateway-edge-tls"
EDGE_TLS_DIR = "/etc/orchestrall/edge-tls"
ENVOY_CONFIG_DIR = "/etc/orchestrall/gateway"
ENVOY_CONCURRENCY = 2
STATE_DIR = "/var/lib/orchestrall"

#: Settings that put a service behind the Istio sidecar: listen and dial in plaintext (the
#: sidecars do mTLS) and take the caller's SPIFFE ID from the sidecar's
#: ``x-forwarded-client-cert`` header (``services.kit.config.MeshSettings.mesh_tls``).
SIDECAR_TRANSPORT = {"ORCHESTRALL_MESH_TLS": "istio"}

#: Kubernetes Secret the operator creates (see the README): services' and migrations' URLs.
DATABASE_SECRET = "orchestrall-database"
#: Secret the operator creates: the key that signs page tokens, the same for every replica
#: (``MeshSettings.page_token_key``).
PAGE_TOKEN_SECRET = "orchestrall-page-tokens"
#: Secret the operator creates: the AES-256-GCM key (64 hex characters) that encrypts the
#: secrets the agent service stores, MCP servers' headers (``MeshSettings.encryption_key``).
ENCRYPTION_SECRET = "orchestrall-encryption"
#: Optional Secret with the model endpoint's API key.
MODEL_SECRET = "orchestrall-model"
#: ConfigMap with the model endpoint (an overlay replaces its values).
MODEL_CONFIG = "orchestrall-model"
MODEL_DEFAULTS = {
    "OPENAI_BASE_URL": "http://vllm.models.svc.cluster.local:8000/v1",
    "ORCHESTRALL_DEFAULT_MODEL": "smollm2",
}

#: Requests and limits per workload (the app container; Istio adds its sidecar's own).
RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "default": {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    # Runs hold model replies and tool results in memory while they stream.
    "agent": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "768Mi"}},
    "workflow": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "768Mi"}},
    # Envoy with ENVOY_CONCURRENCY workers, each with its JWT cache (at most 14 MiB, see the template).
    "gateway": {"requests": {"cpu": "200m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "512Mi"}},
    "migrate": {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
}
MIN_REPLICAS = 2
MAX_REPLICAS = 10
TARGET_CPU_PERCENT = 70

#: Checkov checks skipped on purpose, and why (written as annotations on the objects concerned,
#: so each exception sits next to what it excuses).
CHECKOV_SKIPS: dict[str, str] = {
    "CKV_K8S_43": "the image is referenced by name and tag; an overlay's images: pins the registry digest",
    "CKV_K8S_35": "the services read configuration from the environment only (DESIGN.md); Secret "
    "values reach them through secretKeyRef, never in a manifest",
}


@dataclass(frozen=True)
class Cluster:
    """What differs between installations.

    Attributes:
        namespace: Namespace of every object; also in SPIFFE IDs and Service DNS names.
        trust_domain: Istio's trust domain (``meshConfig.trustDomain``, ``cluster.local`` by default).
        issuer: ``iss`` of tokens: the gateway's public base URL, where clients discover auth
            (``/.well-known/openid-configuration``).
        audience: ``aud`` of tokens.
        edge: The gateway's rate limits and CORS origins.
        monitoring_namespace: The namespace whose Prometheus scrapes the metrics ports (the
            network policies let it, and nothing else from outside, reach them).
    """

    namespace: str = "orchestrall"
    trust_domain: str = "cluster.local"
    issuer: str = "https://gateway.orchestrall.svc.cluster.local"
    audience: str = "orchestrall"
    edge: GatewaySettings = field(default_factory=lambda: default_edge())
    monitoring_namespace: str = "monitoring"

    def host(self, name: str) -> str:
        """Cluster DNS name of a Service in this namespace."""
        return f"{name}.{self.namespace}.svc.cluster.local"

    def principal(self, account: str) -> str:
        """Istio principal of a ServiceAccount (its SPIFFE ID without ``spiffe://``)."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{account}"

    @property
    def jwks_uri(self) -> str:
        """Where istiod fetches auth's JWKS: the gateway's Service inside the cluster, over HTTPS.

        istiod checks the gateway's certificate against its own trust store, so the edge
        certificate must name ``gateway.<namespace>.svc.cluster.local`` and chain to a CA
        istiod trusts (see the README).
        """
        return f"https://{self.host('gateway')}/.well-known/jwks.json"


class _DefaultGatewaySettings(GatewaySettings):
    """The gateway settings' defaults, whatever the environment says."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def default_edge() -> GatewaySettings:
    """Returns :class:`GatewaySettings` with its defaults, ignoring ``ORCHESTRALL_GATEWAY_*``."""
    return _DefaultGatewaySettings()


# --- labels and common pieces ---------------------------------------------------------------


def labels(name: str, component: str, cluster: Cluster) -> dict[str, str]:
    """Kubernetes' recommended labels (``app.kubernetes.io/*``) of one workload's objects."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": f"{cluster.namespace}-{name}",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/version": VERSION,
        "app.kubernetes.io/managed-by": "kustomize",
    }


def selector(name: str, cluster: Cluster) -> dict[str, str]:
    """The labels that select one workload's pods (a subset of :func:`labels` that never changes)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": f"{cluster.namespace}-{name}"}
