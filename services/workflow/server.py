"""Wiring of the workflow service."""

from __future__ import annotations

import grpc

from orchestrall.workflow.v1 import workflow_service_pb2_grpc
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.server import Service, mesh_service
from services.workflow.executor import Executor
from services.workflow.models import AUDIT_OUTBOX
from services.workflow.service import WorkflowService

NAME = "workflow"


async def build(settings: MeshSettings | None = None) -> tuple[Service, MeshSettings]:
    """The workflow service; unfinished runs resume once it is serving."""
    settings = settings or MeshSettings()
    db = Database(create_engine(settings, NAME))
    clients = MeshClients(settings, NAME)
    executor = Executor(db, clients)
    servicer = WorkflowService(db, clients, executor)

    def register(server: grpc.aio.Server) -> None:
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(servicer, server)

    service = mesh_service(
        NAME,
        settings,
        register,
        db,
        clients,
        AUDIT_OUTBOX,
        on_start=[executor.resume],
        on_stop=[executor.stop],
    )
    return service, settings
