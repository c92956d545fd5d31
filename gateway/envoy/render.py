"""Renders the Envoy configuration of the Orchestrall API gateway.

One template (``envoy.yaml.j2``) serves local use and the cluster. The gateway
listens on one port for REST/JSON, which the ``grpc_json_transcoder`` filter
turns into gRPC from the ``google.api.http`` annotations, and for native gRPC,
which passes through. ``jwt_authn`` verifies bearer tokens against auth's JWKS,
fetched through the gateway itself.

Edge protection: a token bucket per tenant (the verified ``tenant`` claim) and
one per client address on the anonymous credential RPCs (sign-up, token), in
each Envoy process, answered with HTTP 429 and ``Retry-After``; then the tenant's
plan rate, counted for every gateway replica together by the rate limit service
(the billing service, Envoy's ``envoy.service.ratelimit.v3`` protocol,
:mod:`services.billing.ratelimit`), which Envoy asks over mTLS on its own
identity; when that service cannot answer in time the request goes on and the
local bucket alone holds (``failure_mode_deny: false``);
CORS for the browser console's origins; a request body cap (413) and a request
header cap (431). The buckets and the CORS origins are settings from the
environment (:class:`gateway.envoy.settings.GatewaySettings`); :func:`render`
takes each as a keyword, the other limits default to the module constants below.
Verified tokens are cached by jwt_authn (:data:`JWT_CACHE_SIZE` per worker).

Which RPCs need no token and which are internal (not exposed at all) is read
from the generated descriptors, the same source the services' auth interceptor
uses (:func:`services.kit.auth.method_rules`): an RPC with
``(orchestrall.api.v1.access).anonymous = true`` is anonymous, an RPC without
``google.api.http`` is internal (AIP-127). RPCs of protocols a service adopts
(flagd's, :mod:`services.kit.contracts`) have no REST binding and are not
internal: they pass through as native gRPC, with a token, and are not transcoded.
Server-streaming RPCs (flagd's ``EventStream``) get a route without a timeout.

Usage::

    python -m gateway.envoy.render --listen-port 8080 --admin-port 9901 --tls-dir .state/tls > envoy.yaml
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
from google.api import annotations_pb2 as http_annotations
from google.api import http_pb2
from google.protobuf.descriptor import ServiceDescriptor

from gateway.docs import CONTENT_SECURITY_POLICY, DocsFiles, docs_routes
from gateway.docs import MAX_BODY_BYTES as DOCS_MAX_BODY_BYTES
from gateway.envoy.local_replies import local_replies
from gateway.envoy.settings import GatewaySettings, TokenBucket
from orchestrall.api.v1 import annotations_pb2 as access_annotations
from services.kit.auth import TENANT_METADATA_KEY
from services.kit.config import SERVICES
from services.kit.contracts import adopted_permissions, descriptors_of
from services.kit.mtls import TlsFiles, spiffe_id

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "envoy.yaml.j2"
DEFAULT_DESCRIPTOR_SET = ROOT / "gen" / "orchestrall.binpb"

#: Route timeout in seconds per service; model calls make agent and workflow slow.
ROUTE_TIMEOUT_SECONDS: dict[str, int] = {"agent": 300, "workflow": 300}
DEFAULT_ROUTE_TIMEOUT_SECONDS = 30
#: Where MCP clients reach the built-in tool catalog (services.agent.mcp_server.MCP_PATH).
MCP_PATH = "/mcp"
MCP_CLUSTER = "agent_mcp"
#: The RPC whose REST binding also takes form-encoded OAuth token requests (services.auth.oauth).
TOKEN_RPC = "/orchestrall.auth.v1.AuthService/IssueToken"
#: Cluster of the auth service's form-encoded token endpoint (services.auth.oauth).
OAUTH_CLUSTER = "auth_oauth"
#: The content type OAuth clients send token requests in (RFC 6749 sections 4.3.2, 4.4.2).
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

#: Server reflection's two names (grpcurl, Postman): routed to the auth service, which answers the
#: gateway's calls with the public API (services.kit.reflection); a token is required as anywhere.
REFLECTION_SERVICES = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
REFLECTION_UPSTREAM = "auth"

#: Cluster that reaches this gateway's own listener (for the JWKS fetch).
SELF_CLUSTER = "gateway_self"
JWT_PROVIDER = "orchestrall"
JWKS_PATH = "/.well-known/jwks.json"
JWKS_CACHE_SECONDS = 300
#: Verified tokens kept per Envoy worker thread (jwt_authn's LRU JWT cache, about 7 KiB each,
#: so at most 14 MiB per worker); see the template.
JWT_CACHE_SIZE = 2_000
#: Leeway on a token's exp and nbf, the services' own (services.auth.tokens.CLOCK_SKEW).
JWT_CLOCK_SKEW_SECONDS = 60

#: Request header carrying the verified ``tenant`` claim (written by jwt_authn,
#: read by the rate limiter, removed before a service sees it).
TENANT_HEADER = "x-orchestrall-tenant"
#: Path prefix of OFREP's endpoints (``orchestrall.flag.v1.OfrepService``'s REST bindings).
OFREP_PREFIX = "/ofrep/"
#: Response header in which the flag service names an OFREP answer's HTTP status
#: (``services.flag.ofrep.STATUS_HEADER``; the gateway does not load the service).
OFREP_STATUS_HEADER = "x-ofrep-status"
#: The HTTP statuses an OFREP answer may name in its status header (services/flag/ofrep.py).
OFREP_STATUSES = (200, 304, 400, 404)
#: Cluster without endpoints behind the REST catch-all route (see the template).
UNROUTED_CLUSTER = "unrouted"
#: Cluster of Envoy's own admin interface (loopback), behind the two paths below only.
ADMIN_CLUSTER = "envoy_admin"
#: Readiness on the gateway's listener (the admin's ``/ready``: 200 once serving, 503 draining).
READY_PATH = "/ready"
#: Envoy's metrics in Prometheus' text format, the one path the stats listener serves.
STATS_PATH = "/stats/prometheus"


@dataclass(frozen=True)
class EdgeTls:
    """The certificate the gateway's listener serves TLS with, as PEM files.

    The names are those of a ``kubernetes.io/tls`` Secret, which cert-manager writes
    (``tls.crt``, ``tls.key``, ``ca.crt``); locally the local CA's files.

    Attributes:
        cert: Certificate chain, leaf first.
        key: Its private key.
        ca: The CA that signed the chain: the gateway trusts it when it fetches the JWKS
            through its own listener.
    """

    cert: Path
    key: Path
    ca: Path


#: The rate limit service's domain (``RateLimitRequest.domain``), and the descriptor entry that
#: names the tenant (``services.billing.ratelimit`` reads the same names).
RATE_LIMIT_DOMAIN = "orchestrall"
RATE_LIMIT_TENANT_KEY = "tenant"
#: Cluster of the rate limit service (the billing service's address, its own connection pool).
RATE_LIMIT_CLUSTER = "ratelimit"
#: How long Envoy waits for the rate limit service before letting the request through, in
#: milliseconds (Envoy's default is 20): one billing round trip, with room for a busy core.
RATE_LIMIT_TIMEOUT_MS = 100
#: Response headers of the rate limit filter (``enable_x_ratelimit_headers: DRAFT_VERSION_03``,
#: draft-ietf-httpapi-ratelimit-headers-03): the plan's limit, what is left of it, seconds to reset.
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")

#: Distinct tenants / addresses whose buckets are kept (LRU); an evicted one restarts full.
MAX_DYNAMIC_DESCRIPTORS = 10_000
CORS_ALLOW_METHODS = ("GET", "POST", "PATCH", "DELETE", "OPTIONS")
CORS_ALLOW_HEADERS = ("authorization", "content-type", "if-none-match", "x-request-id")
#: Response headers a browser script may read (Retry-After on a 429, an OFREP bulk answer's ETag).
CORS_EXPOSE_HEADERS = ("etag", "retry-after", "x-request-id", *RATE_LIMIT_HEADERS)
CORS_MAX_AGE_SECONDS = 600
#: Largest request body (REST JSON or gRPC message); larger gets 413.
MAX_REQUEST_BYTES = 1024 * 1024
#: Largest gRPC response the transcoder turns into JSON: four List pages' worth
#: (services.kit.pagination.MAX_PAGE_BYTES), so any page and any single resource fits.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
#: Largest request line and header block in KiB; larger gets 431. Services accept twice this
#: in metadata (services.kit.server.MAX_METADATA_BYTES): the transcoder forwards the path twice.
MAX_REQUEST_HEADERS_KB = 32


def _otlp_address(endpoint: str | None) -> dict[str, object] | None:
    """The collector's host and port from an OTLP endpoint URL; None when there is none.

    Raises:
        ValueError: The URL has no host, or a scheme other than http (the gateway exports in plaintext).
    """
    if not endpoint:
        return None
    url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"the OTLP endpoint must be http://host:port, got {endpoint!r}")
    return {"host": url.hostname, "port": url.port or 4317}


#: Packages of our own contracts (in the descriptor set, transcoded); adopted ones pass through.
_OURS = frozenset(f"orchestrall.{name}.v1" for name in SERVICES)
_VARIABLE = re.compile(r"\{[^}=]+(?:=([^}]*))?\}")


@dataclass(frozen=True)
class HttpBinding:
    """One REST binding of an RPC (``google.api.HttpRule``).

    Attributes:
        method: HTTP method, upper case (``GET``).
        template: Path template, e.g. ``/v1/{name=tenants/*}``.
        body: The request field the HTTP body maps to (``*``: the whole request; empty: none).
        response_body: The response field the HTTP body is (empty: the whole response).

    """

    method: str
    template: str
    body: str = ""
    response_body: str = ""

    @property
    def exact_path(self) -> str | None:
        """The path itself when the template has no variables or wildcards, else None."""
        return None if any(c in self.template for c in "{*") else self.template

    @property
    def path_regex(self) -> str:
        """An RE2 regex matching the whole path (query string removed) of the template."""
        return path_template_regex(self.template)


@dataclass(frozen=True)
class Rpc:
    """One RPC and how the gateway admits callers to it.

    Attributes:
        service: Orchestrall service name (``auth``).
        grpc_path: ``/package.Service/Method``.
        anonymous: The RPC needs no token.
        internal: The RPC has no ``google.api.http`` annotation and is not of an adopted
            protocol; the gateway refuses it.
        bindings: Its REST bindings (primary first, then additional bindings).
        streaming: The RPC streams its responses (no route timeout).

    """

    service: str
    grpc_path: str
    anonymous: bool
    internal: bool
    bindings: tuple[HttpBinding, ...]
    streaming: bool = False


def path_template_regex(template: str) -> str:
    """Translate a ``google.api.http`` path template into an RE2 regex.

    Follows the template grammar of ``google/api/http.proto``: ``*`` matches one
    segment, ``**`` any number of segments, ``{var}`` is ``{var=*}`` and a
    trailing ``:verb`` is literal.

    Args:
        template: A path template such as ``/v1/{name=tenants/*/agents/*}:cancel``.

    Returns:
        A regex that must match the whole path (Envoy's ``safe_regex`` semantics).

    """
    expanded = _VARIABLE.sub(lambda m: m.group(1) or "*", template)
    head, _, last = expanded.rpartition("/")
    verb = ""
    if ":" in last:
        last, verb = last.split(":", 1)
        verb = ":" + verb
    parts = []
    for segment in [*head.split("/"), last]:
        if segment == "*":
            parts.append("[^/]+")
        elif segment == "**":
            parts.append(".*")
        else:
            parts.append(re.escape(segment))
    return "/".join(parts) + re.escape(verb)


def _bindings(rule: http_pb2.HttpRule) -> list[HttpBinding]:
    kind = rule.WhichOneof("pattern")
    found: list[HttpBinding] = []
    if kind == "custom":
        found.append(HttpBinding(rule.custom.kind.upper(), rule.custom.path, rule.body, rule.response_body))
    elif kind:
        found.append(HttpBinding(kind.upper(), getattr(rule, kind), rule.body, rule.response_body))
    for extra in rule.additional_bindings:
        found.extend(_bindings(extra))
    return found


def service_descriptors(services: Iterable[str]) -> dict[str, list[ServiceDescriptor]]:
    """Returns the gRPC services of each mesh service in ``services`` (:mod:`services.kit.contracts`).

    Raises:
        ValueError: A name is not one of :data:`~services.kit.config.SERVICES`.
    """
    found: dict[str, list[ServiceDescriptor]] = {}
    for name in services:
        if name not in SERVICES:
            raise ValueError(f"unknown service {name!r}; expected one of {sorted(SERVICES)}")
        found[name] = descriptors_of(name)
    return found


def rpcs_of(descriptors: Mapping[str, Sequence[ServiceDescriptor]]) -> list[Rpc]:
    """Read every RPC's REST bindings and access rule from its method options.

    Args:
        descriptors: Service name -> its gRPC service descriptors.

    Returns:
        The RPCs in descriptor order.

    """
    rpcs = []
    adopted = adopted_permissions()
    for name, services in descriptors.items():
        for service in services:
            for method in service.methods:
                options = method.GetOptions()
                has_http = options.HasExtension(http_annotations.http)
                bindings = _bindings(options.Extensions[http_annotations.http]) if has_http else []
                grpc_path = f"/{service.full_name}/{method.name}"
                rpcs.append(
                    Rpc(
                        service=name,
                        grpc_path=grpc_path,
                        anonymous=options.Extensions[access_annotations.access].anonymous,
                        internal=not has_http and grpc_path not in adopted,
                        bindings=tuple(bindings),
                        streaming=method.server_streaming,
                    )
                )
    return rpcs


def _token_path(rpcs: Iterable[Rpc]) -> str | None:
    """``IssueToken``'s REST path among ``rpcs``, or None when it is not one of them."""
    return next(
        (b.exact_path for r in rpcs if r.grpc_path == TOKEN_RPC for b in r.bindings if b.method == "POST"),
        None,
    )


def token_path() -> str:
    """Returns the token endpoint's path, ``IssueToken``'s REST binding in the contract.

    Raises:
        ValueError: The contract binds ``IssueToken`` to no fixed POST path.
    """
    path = _token_path(rpcs_of(service_descriptors(["auth"])))
    if path is None:
        raise ValueError(f"{TOKEN_RPC} has no POST binding without variables")
    return path


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def render(
    *,
    listen_port: int,
    admin_port: int,
    upstreams: dict[str, tuple[str, int]],
    tls_dir: Path | None,
    descriptor_set: Path,
    issuer: str,
    audience: str,
    trust_domain: str,
    namespace: str,
    tenant_rate_limit: TokenBucket,
    anonymous_rate_limit: TokenBucket,
    cors_origins: Sequence[str],
    listen_address: str = "127.0.0.1",
    max_dynamic_descriptors: int = MAX_DYNAMIC_DESCRIPTORS,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    max_request_headers_kb: int = MAX_REQUEST_HEADERS_KB,
    jwt_cache_size: int = JWT_CACHE_SIZE,
    jwt_clock_skew_seconds: int = JWT_CLOCK_SKEW_SECONDS,
    otlp_endpoint: str | None = None,
    trace_sampling: float = 100.0,
    edge_tls: EdgeTls | None = None,
    mcp_upstream: tuple[str, int] | None = None,
    oauth_upstream: tuple[str, int] | None = None,
    docs: DocsFiles | None = None,
    stats_port: int | None = None,
    stats_address: str = "127.0.0.1",
    rate_limit_upstream: tuple[str, int] | None = None,
    rate_limit_timeout_ms: int = RATE_LIMIT_TIMEOUT_MS,
) -> str:
    """Render the gateway's Envoy configuration (bootstrap YAML).

    Args:
        listen_port: Port of the one listener (REST/JSON and native gRPC).
        admin_port: Port of the admin interface, bound to 127.0.0.1.
        upstreams: Service name -> ``(host, port)`` of its gRPC server; a subset
            of :data:`~services.kit.config.SERVICES`. Only these services are routed and transcoded.
        tls_dir: Folder with ``ca.pem``, ``gateway.pem`` and ``gateway-key.pem``;
            upstream connections then use mTLS and check each upstream's SPIFFE ID.
            None means plaintext upstreams (in a cluster the Istio sidecar does mTLS).
        descriptor_set: ``FileDescriptorSet`` with imports (``gen/orchestrall.binpb``).
        issuer: Required ``iss`` of tokens; the JWKS is fetched from
            ``{issuer}/.well-known/jwks.json`` through this gateway's own listener.
        audience: Required ``aud`` of tokens.
        trust_domain: SPIFFE trust domain of the upstreams' identities.
        namespace: Namespace in the upstreams' SPIFFE IDs.
        tenant_rate_limit: Bucket per tenant (the token's ``tenant`` claim), over all
            its authenticated calls (``GatewaySettings.tenant_rate_limit``).
        anonymous_rate_limit: Bucket per client address over the anonymous RPCs that
            are not GETs (sign-up, token). The address is the TCP peer
            (``use_remote_address``, no trusted proxy hops)
            (``GatewaySettings.anonymous_rate_limit``).
        cors_origins: Exact origins allowed to call from a browser (CORS); may be empty.
        listen_address: Address the listener binds (``0.0.0.0`` in a container).
        max_dynamic_descriptors: Buckets kept per limiter (LRU).
        max_request_bytes: Largest request body; larger gets HTTP 413.
        max_request_headers_kb: Largest request header block; larger gets HTTP 431.
        jwt_cache_size: Verified tokens jwt_authn keeps per worker thread.
        jwt_clock_skew_seconds: Leeway on ``exp`` and ``nbf``, in seconds.
        otlp_endpoint: OTLP/gRPC collector (``http://host:port``, as in
            ``OTEL_EXPORTER_OTLP_ENDPOINT``): the gateway then starts a W3C trace for
            every request that does not carry one, continues one that does, passes
            ``traceparent`` upstream and exports its spans there. None: no tracing.
        trace_sampling: Percent of requests the gateway samples (Envoy's ``random_sampling``;
            it decides afresh even when a caller's ``traceparent`` says sampled). Unsampled
            requests still carry a ``traceparent``, which tells the services not to record.
        edge_tls: The certificate the listener serves TLS with (1.2 and 1.3, HTTP/2 or
            HTTP/1.1 by ALPN). None: plain HTTP (loopback only).
        mcp_upstream: ``(host, port)`` of the agent service's MCP server (the built-in tool
            catalog over streamable HTTP, :mod:`services.agent.mcp_server`); requests to
            :data:`MCP_PATH` go there (HTTP/1.1; mTLS checking the agent's SPIFFE ID when
            ``tls_dir`` is given), bearer token required like every other route, the
            transcoder off for them. None: not routed.
        oauth_upstream: ``(host, port)`` of the auth service's token endpoint for OAuth clients
            (:mod:`services.auth.oauth`): a POST to ``IssueToken``'s REST path whose content type
            is ``application/x-www-form-urlencoded`` goes there (HTTP/1.1, the transcoder off;
            mTLS checking auth's SPIFFE ID when ``tls_dir`` is given), counted by the anonymous
            bucket like the JSON request; JSON ones are transcoded as before. None: not routed.
        docs: The OpenAPI document and Swagger UI's files; the gateway then serves
            ``/openapi.json`` and ``/docs`` itself, without a token (:mod:`gateway.docs`).
            None: not served.
        stats_port: Port of a second listener that serves Envoy's own metrics at
            :data:`STATS_PATH` (Prometheus text, from the admin interface, which stays on
            loopback) and answers 404 to any other path. None: no such listener.
        stats_address: Address the stats listener binds (``0.0.0.0`` in a container).
        rate_limit_upstream: ``(host, port)`` of the rate limit service, the billing service
            (mTLS checking billing's SPIFFE ID when ``tls_dir`` is given): every request with a
            verified tenant is counted there against the tenant's plan rate, after the local
            bucket let it pass. None: the local buckets only.
        rate_limit_timeout_ms: How long a request waits for the rate limit service before it
            goes on uncounted by it (the local bucket still applies).

    Returns:
        The YAML text, for ``envoy -c``.

    Raises:
        ValueError: An upstream names an unknown service, or a limit is not positive.

    """
    if (
        min(
            max_request_bytes,
            max_request_headers_kb,
            max_dynamic_descriptors,
            jwt_cache_size,
            rate_limit_timeout_ms,
        )
        < 1
    ):
        raise ValueError("request size limits, max_dynamic_descriptors and jwt_cache_size must be positive")
    # Envoy reads 0 as "not set" (60 s).
    if jwt_clock_skew_seconds < 1:
        raise ValueError("jwt_clock_skew_seconds must be positive")
    descriptors = service_descriptors(upstreams)
    rpcs = rpcs_of(descriptors)
    issuer = issuer.rstrip("/")
    gateway_files = TlsFiles.of(tls_dir.resolve(), "gateway") if tls_dir is not None else None
    clusters = [
        {
            "name": name,
            "host": host,
            "port": port,
            "dns": "STATIC" if _is_ip(host) else "STRICT_DNS",
            "sni": name,
            "spiffe_id": spiffe_id(trust_domain, namespace, name),
            # A service whose every RPC is internal (Envoy's rate limit protocol) is not routed at all.
            "grpc_services": [
                s.full_name
                for s in descriptors[name]
                if any(not r.internal for r in rpcs if r.grpc_path.startswith(f"/{s.full_name}/"))
            ],
            "streaming": [r.grpc_path for r in rpcs if r.service == name and r.streaming and not r.internal],
            "timeout": ROUTE_TIMEOUT_SECONDS.get(name, DEFAULT_ROUTE_TIMEOUT_SECONDS),
        }
        for name, (host, port) in upstreams.items()
    ]
    if rate_limit_upstream is not None:
        host, port = rate_limit_upstream
        clusters.append(
            {
                "name": RATE_LIMIT_CLUSTER,
                "host": host,
                "port": port,
                "dns": "STATIC" if _is_ip(host) else "STRICT_DNS",
                "sni": "billing",
                "spiffe_id": spiffe_id(trust_domain, namespace, "billing"),
                "grpc_services": [],
                "streaming": [],
                "timeout": DEFAULT_ROUTE_TIMEOUT_SECONDS,
            }
        )
    # Anonymous RPCs of auth that change state (sign-up, token): targets of credential stuffing.
    # Webhook deliveries (workflow's DeliverWebhook) are not counted: each is checked by its
    # trigger's signature, and one bucket per address would throttle every tenant whose
    # webhooks come from the same sender's addresses.
    credential_paths = [
        r.grpc_path
        for r in rpcs
        if r.service == "auth"
        and r.anonymous
        and not r.internal
        and any(b.method != "GET" for b in r.bindings)
    ]
    token_path = _token_path(rpcs)
    if oauth_upstream is not None and token_path is None:
        raise ValueError("oauth_upstream needs the auth service among the upstreams")
    oauth = (
        {
            "what": "The auth service's form-encoded token endpoint",
            "path": token_path,
            "content_type": FORM_CONTENT_TYPE,
            "cluster": OAUTH_CLUSTER,
            "host": oauth_upstream[0],
            "port": oauth_upstream[1],
            "dns": "STATIC" if _is_ip(oauth_upstream[0]) else "STRICT_DNS",
            "sni": "auth",
            "spiffe_id": spiffe_id(trust_domain, namespace, "auth"),
            "timeout": DEFAULT_ROUTE_TIMEOUT_SECONDS,
        }
        if oauth_upstream is not None and token_path is not None
        else None
    )
    # The anonymous bucket's paths: the gRPC paths (after the transcoder, REST and native gRPC
    # alike), and the token endpoint's REST path, which the form route keeps (no transcoder).
    limited_paths = [*credential_paths, *([token_path] if oauth is not None and token_path else [])]
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # JSON strings are YAML strings; this quotes every value that comes from outside.
    environment.filters["q"] = _quote
    return environment.get_template(TEMPLATE).render(
        listen_address=listen_address,
        listen_port=listen_port,
        admin_port=admin_port,
        clusters=clusters,
        tls=gateway_files,
        descriptor_set=descriptor_set.resolve(),
        transcoded_services=[
            s.full_name for services in descriptors.values() for s in services if s.file.package in _OURS
        ],
        anonymous=[r for r in rpcs if r.anonymous and not r.internal],
        internal=[r for r in rpcs if r.internal],
        issuer=issuer,
        audience=audience,
        jwks_uri=issuer + JWKS_PATH,
        jwks_cache_seconds=JWKS_CACHE_SECONDS,
        jwt_cache_size=jwt_cache_size,
        jwt_clock_skew_seconds=jwt_clock_skew_seconds,
        jwt_provider=JWT_PROVIDER,
        self_cluster=SELF_CLUSTER,
        unrouted_cluster=UNROUTED_CLUSTER,
        tenant_header=TENANT_HEADER,
        mesh_tenant_header=TENANT_METADATA_KEY,
        ofrep_prefix=OFREP_PREFIX,
        ofrep_status_header=OFREP_STATUS_HEADER,
        ofrep_statuses=" or ".join(f'status == "{code}"' for code in OFREP_STATUSES),
        rate_limiters=[
            {
                "name": "tenant_rate_limit",
                "key": "tenant",
                "paths": [],
                "bucket": tenant_rate_limit,
            },
            {
                "name": "anonymous_rate_limit",
                "key": "remote_address",
                "group": "anonymous_credentials",
                "paths": credential_paths,
                # Whole-path match (RE2); a query string must not slip past it.
                "paths_regex": "(?:" + "|".join(re.escape(p) for p in limited_paths) + r")(?:\?.*)?",
                "bucket": anonymous_rate_limit,
            },
        ],
        max_dynamic_descriptors=max_dynamic_descriptors,
        rate_limit=(
            {
                "domain": RATE_LIMIT_DOMAIN,
                "key": RATE_LIMIT_TENANT_KEY,
                "cluster": RATE_LIMIT_CLUSTER,
                "timeout": f"{rate_limit_timeout_ms / 1000:g}s",  # JSON duration: seconds only
            }
            if rate_limit_upstream is not None
            else None
        ),
        cors_origins=list(cors_origins),
        cors_allow_methods=", ".join(CORS_ALLOW_METHODS),
        cors_allow_headers=", ".join(CORS_ALLOW_HEADERS),
        cors_expose_headers=", ".join(CORS_EXPOSE_HEADERS),
        cors_max_age_seconds=CORS_MAX_AGE_SECONDS,
        max_request_bytes=max_request_bytes,
        max_response_bytes=MAX_RESPONSE_BYTES,
        otlp=_otlp_address(otlp_endpoint),
        trace_sampling=trace_sampling,
        edge_tls=(
            {"cert": str(edge_tls.cert), "key": str(edge_tls.key), "ca": str(edge_tls.ca)}
            if edge_tls
            else None
        ),
        admin_cluster=ADMIN_CLUSTER,
        ready_path=READY_PATH,
        stats_path=STATS_PATH,
        stats_port=stats_port,
        stats_address=stats_address,
        oauth=oauth,
        mcp=(
            {
                "what": "The agent service's MCP server",
                "path": MCP_PATH,
                "cluster": MCP_CLUSTER,
                "host": mcp_upstream[0],
                "port": mcp_upstream[1],
                "dns": "STATIC" if _is_ip(mcp_upstream[0]) else "STRICT_DNS",
                "sni": "agent",
                "spiffe_id": spiffe_id(trust_domain, namespace, "agent"),
                "timeout": DEFAULT_ROUTE_TIMEOUT_SECONDS,
            }
            if mcp_upstream
            else None
        ),
        max_request_headers_kb=max_request_headers_kb,
        reflection=(
            {"cluster": REFLECTION_UPSTREAM, "prefixes": [f"/{name}/" for name in REFLECTION_SERVICES]}
            if REFLECTION_UPSTREAM in upstreams
            else None
        ),
        docs=docs_routes(docs) if docs else [],
        docs_max_body_bytes=DOCS_MAX_BODY_BYTES,
        docs_csp=CONTENT_SECURITY_POLICY,
        local_replies=local_replies(
            max_request_bytes=max_request_bytes, max_request_headers_kb=max_request_headers_kb
        ),
    )


def _quote(value: object) -> str:
    return json.dumps(str(value))


def _parse_upstream(text: str) -> tuple[str, tuple[str, int]]:
    name, sep, address = text.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not colon or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}")
    return name, (host, int(port))


def main(argv: Sequence[str] | None = None) -> None:
    """Print a rendered configuration; see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.envoy.render",
        description="Render the Orchestrall gateway's Envoy configuration to stdout. Rate limits and "
        "CORS origins come from the ORCHESTRALL_GATEWAY_* environment variables (gateway/envoy/settings.py).",
    )
    parser.add_argument("--listen-port", type=int, default=8080, help="REST and gRPC port (default 8080).")
    parser.add_argument("--listen-address", default="127.0.0.1", help="Listener address (default 127.0.0.1).")
    parser.add_argument("--admin-port", type=int, default=9901, help="Admin port (default 9901).")
    parser.add_argument(
        "--base-port",
        type=int,
        default=50051,
        help="Services listen on 127.0.0.1 from this port on, in the order auth, agent, workflow, flag, "
        "billing (default 50051).",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        type=_parse_upstream,
        metavar="NAME=HOST:PORT",
        help="Overrides one service's address; repeatable.",
    )
    parser.add_argument("--tls-dir", type=Path, help="Local CA folder; omit for plaintext (cluster).")
    parser.add_argument("--descriptor-set", type=Path, default=DEFAULT_DESCRIPTOR_SET, help="Descriptor set.")
    parser.add_argument("--issuer", help="Token issuer (default http://127.0.0.1:<listen-port>).")
    parser.add_argument("--audience", default="orchestrall", help="Token audience (default orchestrall).")
    parser.add_argument("--trust-domain", default="orchestrall.local", help="SPIFFE trust domain.")
    parser.add_argument("--namespace", default="orchestrall", help="Namespace in SPIFFE IDs.")
    args = parser.parse_args(argv)
    edge = GatewaySettings()
    upstreams = {name: ("127.0.0.1", args.base_port + i) for i, name in enumerate(SERVICES)}
    upstreams.update(dict(args.upstream))
    sys.stdout.write(
        render(
            listen_port=args.listen_port,
            admin_port=args.admin_port,
            upstreams=upstreams,
            tls_dir=args.tls_dir,
            descriptor_set=args.descriptor_set,
            issuer=args.issuer or f"http://127.0.0.1:{args.listen_port}",
            audience=args.audience,
            trust_domain=args.trust_domain,
            namespace=args.namespace,
            listen_address=args.listen_address,
            tenant_rate_limit=edge.tenant_rate_limit,
            anonymous_rate_limit=edge.anonymous_rate_limit,
            cors_origins=edge.cors_origins,
        )
    )


if __name__ == "__main__":
    main()
