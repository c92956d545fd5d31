"""Builds and runs one service's gRPC server.

Every service gets the same shape: mTLS with client certificates required (or, behind
Istio's sidecar, plaintext to it and the caller's identity from its header),
every handler inside the kit's guard (admission, errors, audit; wrapped once,
at registration), ``grpc.health.v1`` and reflection, and a graceful stop on
SIGTERM/SIGINT (health goes NOT_SERVING first, then in-flight RPCs get
``shutdown_grace_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import Table

from services.kit import auth, pagination, reflection
from services.kit.audit import AuditLog, deliver_to_auth
from services.kit.auth import JwtVerifier, method_rules
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.contracts import descriptors_of
from services.kit.db import Database
from services.kit.errors import DomainError, Unauthenticated, domain_of
from services.kit.interceptors import Guard, GuardedRegistrar, PeerIdentity, abort_with, caller_identity
from services.kit.jwks import auth_jwks_fetcher
from services.kit.logs import configure_logging
from services.kit.metrics import RpcMetrics
from services.kit.mtls import TlsFiles, server_credentials
from services.kit.tracing import configure_tracing, flush_traces

log = logging.getLogger(__name__)

#: The largest request a service accepts, in bytes (the gateway caps REST bodies at 1 MiB; a
#: larger gRPC message is refused by the transport with RESOURCE_EXHAUSTED).
MAX_REQUEST_BYTES = 2 * 1024 * 1024
#: The largest request metadata a service accepts, in bytes. The gateway caps a REST request's
#: line and headers at 32 KiB and forwards them with the client's path a second time
#: (x-envoy-original-path), so up to twice that arrives; gRPC's own default (8 KiB soft,
#: 16 KiB hard) would refuse a long URL with RESOURCE_EXHAUSTED naming the sizes.
MAX_METADATA_BYTES = 80 * 1024


@dataclass
class Service:
    """What a service's ``server.py`` hands to the kit.

    Attributes:
        name: Service name (``agent``); names its certificate and error domain.
        descriptors: The gRPC services it implements.
        register: Adds the servicers to a server (through the guard's registrar).
        verifier: Verifies bearer tokens.
        on_start: Awaited after the server starts (e.g. resume durable work).
        on_stop: Awaited after the server stopped (close pools, channels).
        audit: The audit log; its relay runs while the server does.
        db: The service's database, if it has one.
        metrics: Its metrics registry, which its domain's metrics share; a new one when None.
        public_reflection: Reflection answers a call on the gateway's identity, which must carry
            a valid bearer token, with the platform's public API
            (:func:`services.kit.reflection.public_catalog`); other peers get the service's own.
    """

    name: str
    descriptors: Sequence[ServiceDescriptor]
    register: Callable[[grpc.aio.Server], None]
    verifier: JwtVerifier
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    audit: AuditLog | None = None
    db: Database | None = None
    metrics: RpcMetrics | None = None
    public_reflection: bool = False


def mesh_service(
    name: str,
    settings: MeshSettings,
    register: Callable[[grpc.aio.Server], None],
    db: Database,
    clients: MeshClients,
    outbox: Table,
    *,
    on_start: Sequence[Callable[[], Awaitable[None]]] = (),
    on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
    metrics: RpcMetrics | None = None,
) -> Service:
    """A service other than auth: it verifies tokens against auth's JWKS and relays its audit log to auth.

    Args:
        name: The service name; its gRPC services are the contract's (:func:`descriptors_of`).
        settings: Its settings (issuer, audience, audit relay interval).
        register: Adds its servicer to a server.
        db: Its database; closed on stop.
        clients: Its mTLS channels; closed on stop, after ``on_stop``.
        outbox: Its ``audit_outbox`` table.
        on_start: Extra start hooks.
        on_stop: Extra stop hooks, run before the database and channels close.
        metrics: The registry its domain's metrics are in (:class:`RpcMetrics`); None: a new one.
    """
    return Service(
        name=name,
        descriptors=descriptors_of(name),
        register=register,
        verifier=JwtVerifier(auth_jwks_fetcher(clients), issuer=settings.issuer, audience=settings.audience),
        on_start=list(on_start),
        on_stop=[*on_stop, db.close, clients.close],
        audit=AuditLog(
            name,
            db,
            outbox,
            deliver_to_auth(lambda: clients.channel("auth"), clients.timeout),
            settings.audit_relay_interval_seconds,
        ),
        db=db,
        metrics=metrics,
    )


@dataclass
class RunningServer:
    """A started server, its health servicer and the guard its handlers run in."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service: Service
    guard: Guard
    metrics: RpcMetrics
    metrics_server: WSGIServer | None = None

    async def stop(self, grace: float) -> None:
        """Marks every service NOT_SERVING, then stops with ``grace`` seconds for in-flight RPCs."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        flush_traces()
        if self.service.audit is not None:
            await self.service.audit.stop()
        for hook in self.service.on_stop:
            await hook()


async def start(service: Service, settings: MeshSettings) -> RunningServer:
    """Starts ``service`` on ``settings.listen`` and marks it SERVING.

    Returns:
        The running server; ``port`` is the bound port (useful with port 0).
    """
    key = settings.page_token_key
    pagination.use_key(key.get_secret_value().encode() if key is not None else None)
    rules = method_rules(service.descriptors)
    metrics = service.metrics or RpcMetrics(service.name)
    if service.db is not None:
        metrics.watch_database(service.db)
    guard = Guard(
        domain_of(service.name),
        rules,
        service.verifier,
        settings.trust_domain,
        service.audit,
        settings.tenant_concurrency,
        metrics,
        peer_identity=caller_identity(settings, service.name),
    )
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
        ],
    )
    registrar = GuardedRegistrar(server, guard)
    service.register(registrar)  # type: ignore[arg-type]  # the registrar stands in for the server
    registrar.check()
    missing = set(rules) - registrar.methods
    if missing:
        raise TypeError(f"{service.name} implements no handler for {sorted(missing)}")
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [d.full_name for d in service.descriptors]
    reflection.enable(
        server,
        reflection.own_catalog(service.descriptors, [health.SERVICE_NAME]),
        _public_for_gateway(service, settings) if service.public_reflection else None,
    )
    if settings.mesh_tls == "istio":  # plaintext to the sidecar in front, which does the mTLS
        port = server.add_insecure_port(settings.listen)
    else:
        port = server.add_secure_port(
            settings.listen, server_credentials(TlsFiles.of(settings.tls_dir, service.name))
        )
    if service.audit is not None:
        await service.audit.start()
    for hook in service.on_start:  # before the port serves: load state, resume work
        await hook()
    await server.start()
    metrics_server = metrics.serve(settings.metrics_listen) if settings.metrics_listen else None
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s serving on port %d", service.name, port)
    return RunningServer(server, port, health_servicer, service, guard, metrics, metrics_server)


def _public_for_gateway(service: Service, settings: MeshSettings) -> reflection.Chooser:
    """Chooses the public catalog for reflection calls on the gateway's identity, with a token.

    Returns:
        A chooser for :func:`services.kit.reflection.enable`: the gateway's calls get
        :func:`~services.kit.reflection.public_catalog` once their bearer token is verified
        (RFC 6750 section 2.1), and end UNAUTHENTICATED (``MISSING_CREDENTIALS``, or the
        verifier's reason) without a valid one; any other peer gets the service's own.
    """
    peer_identity: PeerIdentity = caller_identity(settings, service.name)
    own = reflection.own_catalog(service.descriptors, [health.SERVICE_NAME])
    domain = domain_of(service.name)

    async def choose(context: grpc.aio.ServicerContext) -> reflection.Catalog:
        if auth.service_name_of(peer_identity(context), settings.trust_domain) != "gateway":
            return own
        try:
            token = auth.bearer_token(context.invocation_metadata() or ())
            if token is None:
                raise Unauthenticated("MISSING_CREDENTIALS", "a bearer token is required (RFC 6750)")
            if service.verifier.cached(token) is None:
                await service.verifier.verify(token)
        except DomainError as error:
            await abort_with(context, error.to_status(domain))
        return reflection.public_catalog()

    return choose


async def serve_forever(build: Callable[[], Awaitable[tuple[Service, MeshSettings]]]) -> None:
    """Builds, starts and runs a service until SIGTERM or SIGINT."""
    service, settings = await build()
    configure_tracing(service.name)
    running = await start(service, settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("%s stopping (grace %.1fs)", service.name, settings.shutdown_grace_seconds)
    await running.stop(settings.shutdown_grace_seconds)


def main(build: Callable[[], Awaitable[tuple[Service, MeshSettings]]]) -> None:
    """Entry point of a service's ``__main__``."""
    configure_logging()
    asyncio.run(serve_forever(build))
