"""Usage alerts: thresholds fire once per threshold and billing period, audited and notified.

Through the real billing server over mTLS: the tenant's admin manages alerts, usage is
ingested as the agent service ingests it, and the firings are read back with
``ListUsageAlertEvents``. Concurrent sweeps run straight on the billing database, as
replicas sweeping at once would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import select

from orchestrall.agent.v1 import agent_service_pb2 as agent_pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as agent_grpc
from orchestrall.agent.v1.resources_pb2 import NotificationChannel as Channel
from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from services.billing import alerts
from services.billing.models import NOTIFICATION_OUTBOX
from services.billing.plans import FREE_LIMITS
from services.kit.db import Database, Tx, create_engine
from services.kit.timestamps import utcnow
from services.kit.usage import meter_event, to_messages
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, field_violations, new_tenant
from tests.service.receivers import receiver
from tests.service.test_principals import audit_events

RUNS = "agent_runs"
PERCENT = res.UsageAlert.Threshold.TYPE_PERCENT
QUANTITY = res.UsageAlert.Threshold.TYPE_QUANTITY


@pytest.fixture
async def billing(mesh: Mesh) -> AsyncIterator[pb_grpc.BillingServiceStub]:
    async with mesh.channel("billing") as channel:
        yield pb_grpc.BillingServiceStub(channel)


@pytest.fixture
async def billing_db(mesh: Mesh) -> AsyncIterator[Database]:
    """The billing database, connected as the service connects."""
    db = Database(create_engine(mesh.config.settings("billing"), "billing"))
    yield db
    await db.close()


async def ingest(mesh: Mesh, tenant: Tenant, first: int, count: int) -> None:
    """Records ``count`` agent runs of the tenant (events ``first`` on), as the agent service does."""
    now = utcnow()
    rows = [
        meter_event(tenant.id, "//agent.orchestrall.dev/test", f"run-{i}", RUNS, 1, "", now, {})
        for i in range(first, first + count)
    ]
    async with mesh.channel("billing", identity="agent") as channel:
        await pb_grpc.BillingServiceStub(channel).IngestUsageEvents(
            pb.IngestUsageEventsRequest(events=to_messages(rows))
        )


async def fired(
    billing: pb_grpc.BillingServiceStub, tenant: Tenant, alert: str, count: int
) -> list[res.UsageAlertEvent]:
    """The alert's firings once there are ``count`` (sweeps follow ingestion asynchronously)."""
    for _ in range(100):
        listed = await billing.ListUsageAlertEvents(
            pb.ListUsageAlertEventsRequest(parent=alert), metadata=tenant.metadata
        )
        if len(listed.usage_alert_events) >= count:
            return list(listed.usage_alert_events)
        await asyncio.sleep(0.05)
    return list(listed.usage_alert_events)


def _notifications(tx: Tx, tenant_id: str) -> list[str]:
    query = select(NOTIFICATION_OUTBOX.c.event_id).where(NOTIFICATION_OUTBOX.c.tenant_id == tenant_id)
    return [event_id for (event_id,) in tx.execute(query)]


async def test_thresholds_fire_once_per_period_audited_and_notified(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub, billing_db: Database
) -> None:
    tenant = await new_tenant(mesh)
    limit = FREE_LIMITS[RUNS]
    alert = await billing.CreateUsageAlert(
        pb.CreateUsageAlertRequest(
            parent=tenant.name,
            usage_alert_id="runs",
            usage_alert=res.UsageAlert(
                display_name="Runs",
                meter=RUNS,
                thresholds=[
                    res.UsageAlert.Threshold(type=PERCENT, value=80),
                    res.UsageAlert.Threshold(type=PERCENT, value=100),
                    res.UsageAlert.Threshold(type=QUANTITY, value=5),
                ],
            ),
            request_id="alert-1",
        ),
        metadata=tenant.metadata,
    )
    assert alert.name == f"{tenant.name}/usageAlerts/runs"
    again = await billing.CreateUsageAlert(
        pb.CreateUsageAlertRequest(
            parent=tenant.name, usage_alert_id="runs", usage_alert=alert, request_id="alert-1"
        ),
        metadata=tenant.metadata,
    )
    assert again == alert, "a retry returns the first"

    await ingest(mesh, tenant, 0, 4)
    assert await fired(billing, tenant, alert.name, 1) == []
    await ingest(mesh, tenant, 4, 1)  # 5 runs: the quantity threshold
    first = await fired(billing, tenant, alert.name, 1)
    assert [(e.threshold.type, e.threshold.value, e.quantity) for e in first] == [(QUANTITY, 5, 5)]
    await ingest(mesh, tenant, 0, 5)  # the same events again: duplicates, nothing fires
    await ingest(mesh, tenant, 5, int(0.8 * limit) - 5)  # 80 % of the limit
    second = await fired(billing, tenant, alert.name, 2)
    assert [(e.threshold.type, e.threshold.value) for e in second] == [(PERCENT, 80), (QUANTITY, 5)]
    assert (second[0].threshold_quantity, second[0].limit) == (0.8 * limit, limit)

    # Replicas sweeping at once, and again: each threshold fired once in the period.
    limits = lambda _tx, _tenant: alerts.Limits(hard=FREE_LIMITS, soft={})  # noqa: E731
    sweeps = await asyncio.gather(
        *(billing_db.system(alerts.fire_crossed, utcnow(), limits) for _ in range(4))
    )
    assert [e for sweep in sweeps for e in sweep if e.tenant_id == tenant.id] == []
    await ingest(mesh, tenant, int(0.8 * limit), int(0.2 * limit))  # 100 %
    third = await fired(billing, tenant, alert.name, 3)
    assert sorted((e.threshold.type, e.threshold.value) for e in third) == [
        (PERCENT, 80),
        (PERCENT, 100),
        (QUANTITY, 5),
    ]
    # Each firing is in the tenant's audit log and was handed to the notification channel.
    for _ in range(100):
        audited = [e for e in await audit_events(mesh, tenant, resource=alert.name) if e.subject == "billing"]
        if len(audited) >= 3:
            break
        await asyncio.sleep(0.05)
    assert [e.method for e in audited] == [alerts.CROSSED_TYPE] * 3
    for _ in range(100):
        if not await billing_db.read(tenant.id, _notifications, tenant.id):
            break
        await asyncio.sleep(0.05)
    assert await billing_db.read(tenant.id, _notifications, tenant.id) == []

    listed = await billing.ListUsageAlerts(
        pb.ListUsageAlertsRequest(parent=tenant.name), metadata=tenant.metadata
    )
    assert [a.name for a in listed.usage_alerts] == [alert.name]
    await billing.DeleteUsageAlert(pb.DeleteUsageAlertRequest(name=alert.name), metadata=tenant.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await billing.GetUsageAlert(pb.GetUsageAlertRequest(name=alert.name), metadata=tenant.metadata)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(gone.value).reason == "USAGE_ALERT_NOT_FOUND"


async def test_bad_alerts_are_refused_and_other_tenants_alerts_are_out_of_reach(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    ok = res.UsageAlert.Threshold(type=PERCENT, value=80)
    cases = [
        (res.UsageAlert(meter="gpu_hours", thresholds=[ok]), "runs", "UNKNOWN_METER", ["usage_alert.meter"]),
        (
            res.UsageAlert(meter=RUNS, thresholds=[ok, ok]),
            "runs",
            "INVALID_ARGUMENT",
            ["usage_alert.thresholds[1]"],
        ),
        (res.UsageAlert(meter=RUNS, thresholds=[ok]), "Runs!", "INVALID_ARGUMENT", ["usage_alert_id"]),
    ]
    for alert, alert_id, reason, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await billing.CreateUsageAlert(
                pb.CreateUsageAlertRequest(parent=tenant.name, usage_alert_id=alert_id, usage_alert=alert),
                metadata=tenant.metadata,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert (error_info(refused.value).reason, field_violations(refused.value)) == (reason, fields)
    made = await billing.CreateUsageAlert(
        pb.CreateUsageAlertRequest(
            parent=other.name, usage_alert_id="runs", usage_alert=res.UsageAlert(meter=RUNS, thresholds=[ok])
        ),
        metadata=other.metadata,
    )
    with pytest.raises(grpc.aio.AioRpcError) as exists:
        await billing.CreateUsageAlert(
            pb.CreateUsageAlertRequest(
                parent=other.name,
                usage_alert_id="runs",
                usage_alert=res.UsageAlert(meter=RUNS, thresholds=[ok]),
            ),
            metadata=other.metadata,
        )
    assert error_info(exists.value).reason == "USAGE_ALERT_ALREADY_EXISTS"
    for call in (
        billing.GetUsageAlert(pb.GetUsageAlertRequest(name=made.name), metadata=tenant.metadata),
        billing.ListUsageAlertEvents(
            pb.ListUsageAlertEventsRequest(parent=made.name), metadata=tenant.metadata
        ),
        billing.DeleteUsageAlert(pb.DeleteUsageAlertRequest(name=made.name), metadata=tenant.metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await call
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await billing.ListUsageAlertEvents(
            pb.ListUsageAlertEventsRequest(parent=f"{tenant.name}/usageAlerts/none"), metadata=tenant.metadata
        )
    assert error_info(missing.value).reason == "USAGE_ALERT_NOT_FOUND"


async def test_a_firing_is_sent_once_on_each_of_the_alerts_channels(
    mesh: Mesh, billing: pb_grpc.BillingServiceStub
) -> None:
    tenant = await new_tenant(mesh, "ac")
    async with receiver() as http, mesh.channel("agent") as channel:
        agent = agent_grpc.AgentServiceStub(channel)
        slack = await agent.CreateNotificationChannel(
            agent_pb.CreateNotificationChannelRequest(
                parent=tenant.name,
                notification_channel_id="ops",
                notification_channel=Channel(slack=Channel.Slack(webhook_url=f"{http.url}/services/T/B")),
            ),
            metadata=tenant.metadata,
        )
        alert = await billing.CreateUsageAlert(
            pb.CreateUsageAlertRequest(
                parent=tenant.name,
                usage_alert_id="runs",
                usage_alert=res.UsageAlert(
                    display_name="Run budget",
                    meter=RUNS,
                    thresholds=[res.UsageAlert.Threshold(type=QUANTITY, value=3)],
                    notification_channels=[slack.name],
                ),
            ),
            metadata=tenant.metadata,
        )
        assert list(alert.notification_channels) == [slack.name]
        await ingest(mesh, tenant, 0, 3)
        assert len(await fired(billing, tenant, alert.name, 1)) == 1
        for _ in range(200):  # the notification relay sends after the firing committed
            if http.on("/services/T/B"):
                break
            await asyncio.sleep(0.05)
        await ingest(mesh, tenant, 3, 2)  # past the threshold again: no second firing, no second message
        await asyncio.sleep(0.5)
        posts = http.on("/services/T/B")
        assert len(posts) == 1
        assert posts[0].json()["text"].startswith("*Usage alert: Run budget reached 3*\nagent_runs is at 3 ")

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await billing.CreateUsageAlert(
                pb.CreateUsageAlertRequest(
                    parent=tenant.name,
                    usage_alert_id="other",
                    usage_alert=res.UsageAlert(
                        meter=RUNS,
                        thresholds=[res.UsageAlert.Threshold(type=QUANTITY, value=3)],
                        notification_channels=[
                            "tenants/someone-else/notificationChannels/ops",
                            slack.name,
                            slack.name,
                            "notificationChannels/ops",
                        ],
                    ),
                ),
                metadata=tenant.metadata,
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(field_violations(refused.value)) == [
        "usage_alert.notification_channels[0]",
        "usage_alert.notification_channels[2]",
        "usage_alert.notification_channels[3]",
    ]
