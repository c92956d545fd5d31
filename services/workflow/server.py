"""Wiring of the workflow service."""

from __future__ import annotations

import grpc
from pydantic import Field

from orchestrall.workflow.v1 import workflow_service_pb2_grpc
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.metrics import RpcMetrics
from services.kit.sandbox import Sandbox
from services.kit.sealing import Sealer
from services.kit.server import Service, mesh_service
from services.workflow import engine, schedules, templates
from services.workflow.models import AUDIT_OUTBOX
from services.workflow.service import WorkflowService, resume_runs

NAME = "workflow"


class WorkflowSettings(MeshSettings):
    """Mesh settings plus the bounds of tenant-written step templates."""

    template_timeout_seconds: float = Field(
        1.0, gt=0, le=30, description="How long a step's input template may take to render."
    )
    template_memory_megabytes: int = Field(
        256, ge=64, description="Address space of the process that renders templates."
    )
    runs_per_replica: int = Field(
        100, ge=1, le=10_000, description="The most workflow runs this replica executes at once."
    )
    executor_id: str = Field(
        "local",
        min_length=1,
        max_length=63,
        description="This replica's name in the durable engine: it recovers the runs it was running when"
        " it stopped. Give each replica on one database its own, stable across restarts (a"
        " StatefulSet pod's name).",
    )


async def build(settings: MeshSettings | None = None) -> tuple[Service, MeshSettings]:
    """The workflow service; the durable engine starts, and recovers unfinished runs, once it is serving."""
    settings = WorkflowSettings() if settings is None else WorkflowSettings(**settings.model_dump())
    db = Database(create_engine(settings, NAME))
    clients = MeshClients(settings, NAME)
    sandbox = Sandbox(
        workers=2,
        memory_bytes=settings.template_memory_megabytes * 1024 * 1024,
        preload=[templates.__name__],
    )
    metrics = RpcMetrics(NAME)
    durable = engine.Engine(
        db, clients, sandbox, settings.template_timeout_seconds, outcomes=metrics.run_outcomes("workflow")
    )
    key = settings.encryption_key
    servicer = WorkflowService(
        db, clients, Sealer.from_hex(key.get_secret_value() if key is not None else None)
    )

    async def launch() -> None:
        await engine.launch(durable, settings, settings.executor_id, settings.runs_per_replica)
        await resume_runs(db)
        await schedules.sync_schedules(db)

    def register(server: grpc.aio.Server) -> None:
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(servicer, server)

    service = mesh_service(
        NAME,
        settings,
        register,
        db,
        clients,
        AUDIT_OUTBOX,
        on_start=[launch],
        on_stop=[engine.shutdown, sandbox.close],
        metrics=metrics,
    )
    return service, settings
