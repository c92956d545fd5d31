"""Wiring of the billing service."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
from envoy_api.envoy.service.ratelimit.v3 import rls_pb2_grpc
from pydantic import AliasChoices, Field

from orchestrall.agent.v1 import agent_service_pb2_grpc
from orchestrall.billing.v1 import billing_service_pb2_grpc
from services.billing import alerts, plan_store, plans, store
from services.billing.alert_service import AlertSweeper
from services.billing.counters import WindowCounters, counters_for
from services.billing.models import AUDIT_OUTBOX, NOTIFICATION_OUTBOX
from services.billing.ratelimit import PlanRates, RateLimitServicer
from services.billing.service import BillingService
from services.kit.clients import MeshClients
from services.kit.config import MeshSettings
from services.kit.db import Database, create_engine
from services.kit.outbox import OutboxRelay
from services.kit.server import Service, mesh_service
from services.kit.timestamps import utcnow

NAME = "billing"
#: Seconds between two sweeps that draft the invoices of the period just ended.
INVOICE_SWEEP_INTERVAL_SECONDS = 600.0

log = logging.getLogger(__name__)


class BillingSettings(MeshSettings):
    """Mesh settings plus where the rate limit service keeps its counts."""

    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("ORCHESTRALL_REDIS_URL", "REDIS_URL"),
        description=(
            "Redis URL (redis://host:port/db) where the rate limit service counts each tenant's "
            "requests, shared by every billing replica; unset means this process's memory."
        ),
    )


class InvoiceSweeper:
    """Drafts the invoices of the billing period just ended: at start, then every ``interval`` seconds.

    Every replica sweeps; each tenant's draft is made once (its ID is its period's,
    :func:`services.billing.plan_store.draft_invoice`), so replicas sweeping at once
    make one invoice per tenant and period.

    Args:
        servicer: The service whose :meth:`BillingService.close_periods` runs.
        interval: Seconds between sweeps.
    """

    def __init__(self, servicer: BillingService, interval: float) -> None:
        self._servicer = servicer
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts sweeping in the background (the first sweep at once)."""
        self._task = asyncio.create_task(self._loop(), name="billing-invoice-sweep")

    async def stop(self) -> None:
        """Stops sweeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                drafted = await self._servicer.close_periods()
            except Exception:  # the next sweep tries again; nothing else depends on it
                log.exception("drafting the invoices of the last period failed")
            else:
                if drafted:
                    log.info("drafted the last period's invoices of %d tenants", drafted)
            await asyncio.sleep(self._interval)


async def build(
    settings: MeshSettings | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    invoice_sweep_interval: float = INVOICE_SWEEP_INTERVAL_SECONDS,
    *,
    counters: WindowCounters | None = None,
    request_rate_of: Callable[[str], Awaitable[int]] | None = None,
    rate_clock: Callable[[], float] = time.time,
) -> tuple[Service, MeshSettings]:
    """Build the billing service; it verifies tokens against the auth service's JWKS, fetched over mTLS.

    Args:
        settings: Its settings; from the environment when None. A :class:`BillingSettings`
            with a ``redis_url`` counts the gateway's requests in Redis.
        clock: The time events are recorded in and reservations are made, expire and end
            in; the deduplication window ends at it (tests move it).
        invoice_sweep_interval: Seconds between sweeps drafting the last period's invoices.
        counters: Where the rate limit service counts; by default Redis at ``redis_url``, or
            memory.
        request_rate_of: A tenant's plan rate, requests per second, 0 none; default: its subscribed
            plan's (:func:`services.billing.plans.edge_rate_of`); tests give tenants their own.
        rate_clock: Unix seconds the rate limit windows are taken from (tests hold it still).
    """
    settings = settings or BillingSettings()
    db = Database(create_engine(settings, NAME))
    db.session_setup("postgresql", store.BATCH_TABLE_DDL)
    clients = MeshClients(settings, NAME)
    alert_sweeper = AlertSweeper(db, clock)
    servicer = BillingService(db, clock, alert_sweeper)
    invoicer = InvoiceSweeper(servicer, invoice_sweep_interval)
    # Usage alert notifications, committed with their firing, handed to the tenant's channel.
    notifications = OutboxRelay(
        "notifications-billing",
        db,
        NOTIFICATION_OUTBOX,
        alerts.ChannelDelivery(
            clients.stub(agent_service_pb2_grpc.AgentServiceStub, "agent"), settings.call_timeout_seconds
        ).deliver,
        settings.audit_relay_interval_seconds,
    )
    if counters is None:
        counters = counters_for(settings.redis_url if isinstance(settings, BillingSettings) else None)
    if request_rate_of is None:

        async def request_rate_of(tenant_id: str) -> int:
            return plans.edge_rate_of(await db.read(tenant_id, plan_store.tenant_plan))

    limiter = RateLimitServicer(PlanRates(request_rate_of), counters, rate_clock)

    def register(server: grpc.aio.Server) -> None:
        billing_service_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(limiter, server)

    service = mesh_service(
        NAME,
        settings,
        register,
        db,
        clients,
        AUDIT_OUTBOX,
        on_start=[invoicer.start, alert_sweeper.start, notifications.start],
        on_stop=[alert_sweeper.stop, invoicer.stop, notifications.stop, counters.close],
    )
    return service, settings
