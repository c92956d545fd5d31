"""Wiring of the auth service."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from pydantic import Field

from orchestrall.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.auth.models import AUDIT_OUTBOX
from services.auth.service import AuthService
from services.kit.audit import AuditLog
from services.kit.auth import JwtVerifier
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.server import Service

NAME = "auth"
log = logging.getLogger(__name__)


class AuthSettings(MeshSettings):
    """Mesh settings plus the signing key schedule."""

    key_publish_delay_seconds: float = Field(
        1500.0,
        ge=0,
        description="A new key is in the JWKS this long before it signs (Istio caches JWKS 20 min).",
    )
    key_rotation_days: float = Field(30.0, gt=0, description="The schedule rotates keys older than this.")


async def build(settings: AuthSettings | None = None) -> tuple[Service, MeshSettings]:
    """The auth service; it verifies tokens against its own key table and keeps the audit log."""
    settings = settings or AuthSettings()
    db = Database(create_engine(settings, NAME))
    servicer = AuthService(
        db, settings.issuer, settings.audience, dt.timedelta(seconds=settings.key_publish_delay_seconds)
    )
    rotation_age = dt.timedelta(days=settings.key_rotation_days)
    schedule: list[asyncio.Task[None]] = []

    async def rotate_on_schedule() -> None:
        while True:
            try:
                await servicer.rotate_if_older_than(rotation_age)
            except Exception:
                log.exception("scheduled key rotation failed")
            await asyncio.sleep(3600)

    async def start_schedule() -> None:
        await servicer.ensure_signing_key()
        schedule.append(asyncio.create_task(rotate_on_schedule(), name="key-rotation"))

    async def stop_schedule() -> None:
        for task in schedule:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def register(server: grpc.aio.Server) -> None:
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)

    async def deliver(rows: Sequence[dict[str, Any]]) -> None:
        await servicer.store_audit_events(rows)

    service = Service(
        name=NAME,
        descriptors=[auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"]],
        register=register,
        verifier=JwtVerifier(servicer.jwks, issuer=settings.issuer, audience=settings.audience),
        on_start=[start_schedule],
        on_stop=[stop_schedule, db.close],
        audit=AuditLog(NAME, db, AUDIT_OUTBOX, deliver, settings.audit_relay_interval_seconds),
    )
    return service, settings
