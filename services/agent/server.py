"""Wiring of the agent service."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
from collections.abc import Callable

import grpc
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from orchestrall.agent.v1 import agent_service_pb2_grpc
from services.agent.execution import RunLeases, RunLimits
from services.agent.flags import AgentFlags
from services.agent.knowledge.embedding import Embedder, OpenAIEmbedder, StaticEmbedder
from services.agent.knowledge.index import VectorIndex
from services.agent.knowledge.ingest import Ingestor
from services.agent.knowledge.search import Searcher
from services.agent.knowledge.service import Knowledge
from services.agent.mcp import McpClient
from services.agent.mcp_server import CatalogServer
from services.agent.models import AUDIT_OUTBOX, USAGE_OUTBOX
from services.agent.notifications.outbox import Notifier
from services.agent.notifications.senders import Senders, TwilioProvider
from services.agent.peers import Peers
from services.agent.routing import ModelRouter, RetryPolicy, Route, RouteEndpoint, RouteName, Sleep
from services.agent.service import AgentService
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.egress import EgressPolicy, parse_networks
from services.kit.metrics import RpcMetrics
from services.kit.mtls import TlsFiles
from services.kit.names import new_id
from services.kit.outbox import OutboxRelay
from services.kit.relay import Relay
from services.kit.sealing import Sealer
from services.kit.server import Service, mesh_service
from services.kit.timestamps import utcnow
from services.kit.usage import deliver_to_billing

NAME = "agent"


class AgentSettings(MeshSettings):
    """Mesh settings plus the model endpoint (any OpenAI-compatible server) and the model routes.

    ``ORCHESTRALL_MODEL_ROUTES`` is JSON, validated here at start-up: a malformed value, an
    unknown key, a bad route name or an ``api_key_env`` that is not set fails start-up.
    Its validation errors never echo the input, which may hold API keys.
    """

    model_config = SettingsConfigDict(**MeshSettings.model_config, hide_input_in_errors=True)

    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        validation_alias=AliasChoices("OPENAI_BASE_URL", "ORCHESTRALL_OPENAI_BASE_URL"),
    )
    openai_api_key: str = Field(
        "not-needed-locally", validation_alias=AliasChoices("OPENAI_API_KEY", "ORCHESTRALL_OPENAI_API_KEY")
    )
    default_model: str = Field("smollm2", description="Model for agents that name none.")
    model_timeout_seconds: float = Field(
        120.0,
        gt=0,
        description="Deadline of the deployment endpoint's first chunk, and the most between two chunks.",
    )
    model_routes: dict[RouteName, Route] = Field(
        default_factory=dict,
        description=(
            "Model routes agents may name as routes/{route}: a JSON object of route name to "
            '{"endpoints": [{"base_url", "model", "name"?, "api_key"? or "api_key_env"?, '
            '"timeout_seconds"?}, ...], "retry"?: {"attempts", "backoff_base_seconds", '
            '"backoff_max_seconds"}} (see services/agent/routing.py); "default" replaces the '
            "deployment's endpoint for agents that name no model."
        ),
    )
    run_timeout_seconds: float = Field(
        300.0, gt=0, description="Deadline of a whole run, every model call and tool included."
    )
    max_running_runs: int = Field(
        8, ge=1, description="Runs one tenant may have in progress at once, over every replica."
    )
    thread_history_tokens: int = Field(
        2000,
        ge=0,
        description="The most estimated tokens (characters / 4) of a thread's history a run on it sees.",
    )
    run_lease_seconds: float = Field(30.0, gt=0, description="Lease of a run on the replica executing it.")
    run_heartbeat_seconds: float = Field(
        10.0, gt=0, description="How often a replica renews its runs' leases."
    )
    run_sweep_seconds: float = Field(
        15.0, gt=0, description="How often a replica fails runs whose lease expired (RUN_INTERRUPTED)."
    )
    mcp_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Deadline of one request to a tenant's MCP server (listing its tools, or one tool call).",
    )
    mcp_listen: str | None = Field(
        None,
        description=(
            '"host:port" where the built-in tool catalog is served as an MCP server (streamable HTTP '
            "at /mcp, mTLS with the agent certificate, bearer tokens); unset: not served."
        ),
    )

    embedding_base_url: str | None = Field(
        None,
        description=(
            "An OpenAI-compatible endpoint (base URL, e.g. https://api.example.com/v1) whose "
            "/embeddings embed knowledge bases' chunks; unset: the packaged local static model."
        ),
    )
    embedding_model: str = Field(
        "text-embedding-3-small", description="The model asked of embedding_base_url."
    )
    embedding_api_key: SecretStr = Field(
        SecretStr("not-needed-locally"), description="API key of embedding_base_url."
    )
    embedding_timeout_seconds: float = Field(
        30.0, gt=0, le=300, description="Deadline of one embedding request."
    )
    knowledge_lease_seconds: float = Field(
        60.0, gt=0, description="How long a replica's claim on a document it ingests holds without a renewal."
    )
    knowledge_poll_seconds: float = Field(
        2.0, gt=0, le=60, description="How often a replica looks for documents waiting for ingestion."
    )
    knowledge_cache_chunks: int = Field(
        500_000,
        ge=0,
        description="The most chunks a replica keeps in memory for searches, over all knowledge bases.",
    )

    egress_allowed_networks: list[str] = Field(
        default_factory=list,
        description=(
            "JSON list of networks (CIDR, or one address) that tenants' HTTP tools and notification "
            "channels may reach although they are loopback, private, link-local or otherwise not "
            'global, e.g. ["10.20.0.0/16"]; empty allows only global addresses (services/kit/egress.py).'
        ),
    )
    notification_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Deadline of one attempt to deliver a notification."
    )
    notification_relay_interval_seconds: float = Field(
        1.0, gt=0, description="How often a replica looks for notification deliveries due for a retry."
    )
    twilio_base_url: str = Field(
        "https://api.twilio.com", description="Origin of Twilio's API, which SMS channels are sent through."
    )

    @model_validator(mode="after")
    def _networks_parse(self) -> AgentSettings:
        parse_networks(self.egress_allowed_networks)  # ValueError names the bad value
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> AgentSettings:
        if self.run_heartbeat_seconds * 2 > self.run_lease_seconds:
            raise ValueError("run_heartbeat_seconds must be at most half of run_lease_seconds")
        return self


async def build(
    settings: AgentSettings | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    backoff_sleep: Sleep = asyncio.sleep,
) -> tuple[Service, MeshSettings]:
    """The agent service.

    Args:
        settings: Its settings; from the environment when None.
        clock: The time run leases and notification retries are measured in (tests move it).
        backoff_sleep: Waits the backoffs between attempts of a model call (tests record them).
    """
    settings = settings or AgentSettings()
    db = Database(create_engine(settings, NAME))
    clients = MeshClients(settings, NAME)
    metrics = RpcMetrics(NAME)
    router = ModelRouter(
        settings.model_routes,
        RouteEndpoint(
            base_url=settings.openai_base_url,
            model=settings.default_model,
            api_key=SecretStr(settings.openai_api_key),
            timeout_seconds=settings.model_timeout_seconds,
        ),
        RetryPolicy(),  # two attempts, as the openai client's max_retries=1 made before routes
        read_timeout_seconds=settings.model_timeout_seconds,
        sleep=backoff_sleep,
        metrics=metrics.model_calls(),
    )
    limits = RunLimits(
        timeout_seconds=settings.run_timeout_seconds,
        max_running=settings.max_running_runs,
        history_tokens=settings.thread_history_tokens,
    )
    executor_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{new_id()}"
    flags = AgentFlags(settings, NAME, domain=f"{NAME}:{executor_id}")
    leases = RunLeases(
        lease_seconds=settings.run_lease_seconds,
        heartbeat_seconds=settings.run_heartbeat_seconds,
        sweep_seconds=settings.run_sweep_seconds,
        executor=executor_id,
        clock=clock,
    )
    embedder: Embedder
    if settings.embedding_base_url:
        embedder = OpenAIEmbedder(
            settings.embedding_base_url,
            settings.embedding_model,
            settings.embedding_api_key.get_secret_value(),
            settings.embedding_timeout_seconds,
        )
    else:
        embedder = StaticEmbedder()
    ingestor = Ingestor(
        db,
        embedder,
        leases.executor,
        lease_seconds=settings.knowledge_lease_seconds,
        poll_seconds=settings.knowledge_poll_seconds,
        clock=clock,
    )
    knowledge = Knowledge(
        embedder, Searcher(db, embedder, VectorIndex(settings.knowledge_cache_chunks)), ingestor
    )
    key = settings.encryption_key
    sealer = Sealer.from_hex(key.get_secret_value() if key is not None else None)
    egress = EgressPolicy(parse_networks(settings.egress_allowed_networks))
    senders = Senders(egress, TwilioProvider(settings.twilio_base_url), settings.notification_timeout_seconds)
    notifier = Notifier(db, sealer, senders, clock)
    servicer = AgentService(
        db,
        router,
        settings.default_model,
        Peers(clients),
        flags,
        limits,
        leases,
        McpClient(settings.mcp_timeout_seconds, egress),
        sealer,
        egress,
        notifier,
        knowledge,
        outcomes=metrics.run_outcomes("agent"),
    )
    relay = Relay("notifications", notifier.relay_once, settings.notification_relay_interval_seconds)

    def register(server: grpc.aio.Server) -> None:
        agent_service_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)

    # Runs' usage events, committed with the run state they meter, ingested by billing.
    usage_relay = OutboxRelay(
        f"usage-{NAME}",
        db,
        USAGE_OUTBOX,
        deliver_to_billing(lambda: clients.channel("billing"), clients.timeout),
        settings.audit_relay_interval_seconds,
    )

    service = mesh_service(
        NAME,
        settings,
        register,
        db,
        clients,
        AUDIT_OUTBOX,
        on_start=[
            flags.start,
            servicer.executor.start_sweeping,
            usage_relay.start,
            ingestor.start,
            relay.start,
        ],
        on_stop=[
            relay.stop,
            servicer.executor.stop,
            ingestor.stop,
            usage_relay.stop,
            router.close,
            embedder.close,
            flags.stop,
        ],
        metrics=metrics,
    )
    if settings.mcp_listen:
        # Behind Istio's sidecar the MCP server is plaintext to it, as the gRPC server is.
        tls = None if settings.mesh_tls == "istio" else TlsFiles.of(settings.tls_dir, NAME)
        catalog = CatalogServer(settings.mcp_listen, service.verifier, settings.issuer, tls)
        service.on_start.append(catalog.start)
        service.on_stop.insert(0, catalog.stop)
    return service, settings
