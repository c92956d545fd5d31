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
from services.agent.mcp import McpClient
from services.agent.mcp_server import CatalogServer
from services.agent.models import AUDIT_OUTBOX
from services.agent.notifications.outbox import Notifier
from services.agent.notifications.senders import Senders, TwilioProvider
from services.agent.peers import Peers
from services.agent.routing import ModelRouter, RetryPolicy, Route, RouteEndpoint, RouteName, Sleep
from services.agent.service import AgentService
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.egress import EgressPolicy, parse_networks
from services.kit.mtls import TlsFiles
from services.kit.names import new_id
from services.kit.relay import Relay
from services.kit.sealing import Sealer
from services.kit.server import Service, mesh_service
from services.kit.timestamps import utcnow

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
    )
    limits = RunLimits(
        timeout_seconds=settings.run_timeout_seconds,
        max_running=settings.max_running_runs,
        history_tokens=settings.thread_history_tokens,
    )
    leases = RunLeases(
        lease_seconds=settings.run_lease_seconds,
        heartbeat_seconds=settings.run_heartbeat_seconds,
        sweep_seconds=settings.run_sweep_seconds,
        executor=f"{socket.gethostname()[:40]}:{os.getpid()}:{new_id()}",
        clock=clock,
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
        limits,
        leases,
        McpClient(settings.mcp_timeout_seconds),
        sealer,
        egress,
        notifier,
    )
    relay = Relay("notifications", notifier.relay_once, settings.notification_relay_interval_seconds)

    def register(server: grpc.aio.Server) -> None:
        agent_service_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)

    service = mesh_service(
        NAME,
        settings,
        register,
        db,
        clients,
        AUDIT_OUTBOX,
        on_start=[servicer.executor.start_sweeping, relay.start],
        on_stop=[relay.stop, servicer.executor.stop, router.close],
    )
    if settings.mcp_listen:
        catalog = CatalogServer(
            settings.mcp_listen, service.verifier, settings.issuer, TlsFiles.of(settings.tls_dir, NAME)
        )
        service.on_start.append(catalog.start)
        service.on_stop.insert(0, catalog.stop)
    return service, settings
