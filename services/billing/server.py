"""Wiring of the billing service."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import grpc

from orchestrall.billing.v1 import billing_service_pb2_grpc
from services.billing import store
from services.billing.models import AUDIT_OUTBOX
from services.billing.service import BillingService
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.server import Service, mesh_service
from services.kit.timestamps import utcnow

NAME = "billing"


async def build(
    settings: MeshSettings | None = None, clock: Callable[[], dt.datetime] = utcnow
) -> tuple[Service, MeshSettings]:
    """Build the billing service; it verifies tokens against the auth service's JWKS, fetched over mTLS.

    Args:
        settings: Its settings; from the environment when None.
        clock: The time reservations are made, expire and end in (tests move it).
    """
    settings = settings or MeshSettings()
    db = Database(create_engine(settings, NAME))
    db.session_setup("postgresql", store.BATCH_TABLE_DDL)
    clients = MeshClients(settings, NAME)
    servicer = BillingService(db, clock)

    def register(server: grpc.aio.Server) -> None:
        billing_service_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)

    service = mesh_service(
        NAME,
        settings,
        register,
        db,
        clients,
        AUDIT_OUTBOX,
    )
    return service, settings
