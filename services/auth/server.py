"""Wiring of the auth service."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from pydantic import Field, model_validator

from orchestrall.auth.v1 import auth_service_pb2_grpc
from services.auth.keyring import KeyRing
from services.auth.models import AUDIT_OUTBOX
from services.auth.oauth import OAuthServer, loopback_address
from services.auth.service import AuthService
from services.kit.audit import AuditLog
from services.kit.auth import JwtVerifier
from services.kit.config import MeshSettings
from services.kit.contracts import descriptors_of
from services.kit.db import Database, create_engine
from services.kit.mtls import TlsFiles
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
    key_refresh_seconds: float = Field(
        1.0,
        gt=0,
        description="How often a replica reloads the signing keys (to learn keys other replicas made).",
    )

    oauth_listen: str | None = Field(
        None,
        description=(
            '"host:port" where the token endpoint is served as OAuth clients send it (form-urlencoded, '
            "HTTP Basic, RFC 6749 errors; services/auth/oauth.py), behind the gateway's /v1/oauth2/token; "
            "mTLS with the auth certificate. Needs a fixed gRPC port (ORCHESTRALL_LISTEN). Unset: not served."
        ),
    )

    @model_validator(mode="after")
    def _refresh_before_signing(self) -> AuthSettings:
        # A replica must know a key another replica made before that key signs.
        if 0 < self.key_publish_delay_seconds <= self.key_refresh_seconds:
            raise ValueError("key_refresh_seconds must be shorter than key_publish_delay_seconds")
        return self

    @model_validator(mode="after")
    def _oauth_dials_a_known_port(self) -> AuthSettings:
        # The token endpoint calls IssueToken on the service's own port, so it must be known now.
        if self.oauth_listen:
            loopback_address(self.listen)
        return self


async def build(settings: AuthSettings | None = None) -> tuple[Service, MeshSettings]:
    """The auth service; it verifies tokens against its own keys and keeps the audit log."""
    settings = settings or AuthSettings()
    db = Database(create_engine(settings, NAME))
    keys = KeyRing(db, dt.timedelta(seconds=settings.key_publish_delay_seconds), settings.key_refresh_seconds)
    servicer = AuthService(db, keys, settings.issuer, settings.audience)
    rotation_age = dt.timedelta(days=settings.key_rotation_days)
    schedule: list[asyncio.Task[None]] = []

    async def rotate_on_schedule() -> None:
        while True:
            try:
                await keys.rotate_if_older_than(rotation_age)
            except Exception:
                log.exception("scheduled key rotation failed")
            await asyncio.sleep(3600)

    async def start_schedule() -> None:
        await keys.start()
        schedule.append(asyncio.create_task(rotate_on_schedule(), name="key-rotation"))

    async def stop_schedule() -> None:
        for task in schedule:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await keys.stop()

    def register(server: grpc.aio.Server) -> None:
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)

    async def deliver(rows: Sequence[dict[str, Any]]) -> None:
        await servicer.store_audit_events(rows)

    service = Service(
        name=NAME,
        descriptors=descriptors_of(NAME),
        register=register,
        verifier=JwtVerifier(keys.fresh_jwks, issuer=settings.issuer, audience=settings.audience),
        on_start=[start_schedule],
        on_stop=[stop_schedule, db.close],
        audit=AuditLog(NAME, db, AUDIT_OUTBOX, deliver, settings.audit_relay_interval_seconds),
        db=db,
        # The gateway routes reflection here: the public API for calls on its identity.
        public_reflection=True,
    )
    if settings.oauth_listen:
        # Behind Istio's sidecar the endpoint is plaintext to it, as the gRPC server is.
        tls = None if settings.mesh_tls == "istio" else TlsFiles.of(settings.tls_dir, NAME)
        endpoint = OAuthServer(settings.oauth_listen, settings.listen, tls)
        service.on_start.append(endpoint.start)
        service.on_stop.insert(0, endpoint.stop)
    return service, settings
