"""Wiring of the agent service."""

from __future__ import annotations

import grpc
import openai
from pydantic import AliasChoices, Field

from orchestrall.agent.v1 import agent_service_pb2_grpc
from services.agent.models import AUDIT_OUTBOX
from services.agent.peers import Peers
from services.agent.service import AgentService, RunLimits
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.server import Service, mesh_service

NAME = "agent"


class AgentSettings(MeshSettings):
    """Mesh settings plus the model endpoint (any OpenAI-compatible server)."""

    openai_base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        validation_alias=AliasChoices("OPENAI_BASE_URL", "ORCHESTRALL_OPENAI_BASE_URL"),
    )
    openai_api_key: str = Field(
        "not-needed-locally", validation_alias=AliasChoices("OPENAI_API_KEY", "ORCHESTRALL_OPENAI_API_KEY")
    )
    default_model: str = Field("smollm2", description="Model for agents that name none.")
    model_timeout_seconds: float = Field(120.0, gt=0, description="Deadline of one model call.")
    run_timeout_seconds: float = Field(
        300.0, gt=0, description="Deadline of a whole run, every model call and tool included."
    )
    max_running_runs: int = Field(
        8, ge=1, description="Runs one tenant may have in progress at once, over every replica."
    )


async def build(settings: AgentSettings | None = None) -> tuple[Service, MeshSettings]:
    """The agent service."""
    settings = settings or AgentSettings()
    db = Database(create_engine(settings, NAME))
    clients = MeshClients(settings, NAME)
    model_client = openai.AsyncOpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        timeout=settings.model_timeout_seconds,
        max_retries=1,
    )
    limits = RunLimits(timeout_seconds=settings.run_timeout_seconds, max_running=settings.max_running_runs)
    servicer = AgentService(db, model_client, settings.default_model, Peers(clients), limits)

    def register(server: grpc.aio.Server) -> None:
        agent_service_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)

    service = mesh_service(
        NAME,
        settings,
        register,
        db,
        clients,
        AUDIT_OUTBOX,
        on_stop=[model_client.close],
    )
    return service, settings
