"""Wiring of the flag service."""

from __future__ import annotations

import grpc
from pydantic import Field

from orchestrall.flag.v1 import flag_service_pb2_grpc
from services.flag import flagd, ofrep
from services.flag.flagsets import FlagSets
from services.flag.models import AUDIT_OUTBOX
from services.flag.service import FlagService
from services.flag.usage import UsageCounter
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.server import Service, mesh_service

NAME = "flag"


class FlagSettings(MeshSettings):
    """Mesh settings plus how fast other replicas' flag changes are picked up and counts are written."""

    flag_poll_interval_seconds: float = Field(
        0.2, gt=0, le=1, description="How often a replica looks for flag changes made elsewhere."
    )
    flag_usage_flush_seconds: float = Field(
        5.0, gt=0, le=60, description="How often a replica adds its evaluation counts to the database."
    )


async def build(settings: MeshSettings | None = None) -> tuple[Service, MeshSettings]:
    """Build the flag service, flagd's protocol and OFREP included; every tenant's flags load first."""
    settings = FlagSettings() if settings is None else FlagSettings(**settings.model_dump())
    db = Database(create_engine(settings, NAME))
    clients = MeshClients(settings, NAME)
    flag_sets = FlagSets(db, settings.flag_poll_interval_seconds)
    usage = UsageCounter(db, settings.flag_usage_flush_seconds)
    servicer = FlagService(db, flag_sets, usage)

    def register(server: grpc.aio.Server) -> None:
        flag_service_pb2_grpc.add_FlagServiceServicer_to_server(servicer, server)
        flagd.register(server, flag_sets, usage)
        ofrep.register(server, flag_sets, usage)

    service = mesh_service(
        NAME,
        settings,
        register,
        db,
        clients,
        AUDIT_OUTBOX,
        on_start=[flag_sets.start, usage.start],
        on_stop=[usage.stop, flag_sets.stop],
    )
    return service, settings
