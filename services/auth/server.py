"""Wiring of the auth service."""

from __future__ import annotations

import grpc

from orchestrall.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.auth.service import AuthService
from services.kit.auth import JwtVerifier
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.server import Service

NAME = "auth"


async def build(settings: MeshSettings | None = None) -> tuple[Service, MeshSettings]:
    """The auth service; it verifies tokens against its own key table."""
    settings = settings or MeshSettings()
    db = Database(create_engine(settings, NAME))
    servicer = AuthService(db, settings.issuer, settings.audience)

    def register(server: grpc.aio.Server) -> None:
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)

    service = Service(
        name=NAME,
        descriptors=[auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"]],
        register=register,
        verifier=JwtVerifier(servicer.jwks, issuer=settings.issuer, audience=settings.audience),
        on_start=[servicer.ensure_signing_key],
        on_stop=[db.close],
    )
    return service, settings
