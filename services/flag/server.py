"""Wiring of the flag service."""

from __future__ import annotations

import grpc

from orchestrall.flag.v1 import flag_service_pb2, flag_service_pb2_grpc
from services.flag.models import AUDIT_OUTBOX
from services.flag.service import FlagService
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.server import Service, mesh_service

NAME = "flag"


async def build(settings: MeshSettings | None = None) -> tuple[Service, MeshSettings]:
    """Build the flag service; it verifies tokens against the auth service's JWKS, fetched over mTLS."""
    settings = settings or MeshSettings()
    db = Database(create_engine(settings, NAME))
    clients = MeshClients(settings, NAME)
    servicer = FlagService(db)

    def register(server: grpc.aio.Server) -> None:
        flag_service_pb2_grpc.add_FlagServiceServicer_to_server(servicer, server)

    service = mesh_service(
        NAME,
        settings,
        flag_service_pb2.DESCRIPTOR.services_by_name["FlagService"],
        register,
        db,
        clients,
        AUDIT_OUTBOX,
    )
    return service, settings
