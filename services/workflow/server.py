"""Wiring of the workflow service."""

from __future__ import annotations

import functools

import grpc
from pydantic import Field

from orchestrall.workflow.v1 import workflow_service_pb2_grpc
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.sandbox import Sandbox
from services.kit.sealing import Sealer
from services.kit.server import Service, mesh_service
from services.workflow import schedules
from services.workflow.executor import Executor
from services.workflow.models import AUDIT_OUTBOX
from services.workflow.service import WorkflowService

NAME = "workflow"


class WorkflowSettings(MeshSettings):
    """Mesh settings plus the bounds of tenant-written step templates."""

    template_timeout_seconds: float = Field(
        1.0, gt=0, le=30, description="How long a step's input template may take to render."
    )
    template_memory_megabytes: int = Field(
        256, ge=64, description="Address space of the process that renders templates."
    )


async def build(settings: MeshSettings | None = None) -> tuple[Service, MeshSettings]:
    """The workflow service; unfinished runs resume once it is serving."""
    settings = WorkflowSettings() if settings is None else WorkflowSettings(**settings.model_dump())
    db = Database(create_engine(settings, NAME))
    clients = MeshClients(settings, NAME)
    sandbox = Sandbox(workers=2, memory_bytes=settings.template_memory_megabytes * 1024 * 1024)
    executor = Executor(db, clients, sandbox, settings.template_timeout_seconds)
    key = settings.encryption_key
    sealer = Sealer.from_hex(key.get_secret_value() if key is not None else None)
    servicer = WorkflowService(db, clients, executor, sealer)

    async def sync() -> None:
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
        on_start=[executor.resume, functools.partial(schedules.launch_dbos, settings), sync],
        on_stop=[executor.stop, schedules.shutdown_dbos, sandbox.close],
    )
    return service, settings
