"""Notification channels over real gRPC: a real SMTP server (aiosmtpd), HTTP receivers on 127.0.0.1.

Email, Slack, signed webhooks and SMS (a local fake of Twilio's Messages API, its wire
format) deliver; a failed delivery is retried with backoff by the relay, also by
another replica after a restart; ``request_id`` makes a send idempotent; secrets are
sealed and never returned; bad channels are field violations; the workflow and billing
services send on their own identity; a workflow's notification step delivers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from aiosmtpd.controller import Controller
from google.protobuf import field_mask_pb2, struct_pb2
from sqlalchemy import select

from orchestrall.agent.v1 import agent_service_pb2 as pb
from orchestrall.agent.v1 import agent_service_pb2_grpc as pb_grpc
from orchestrall.agent.v1 import resources_pb2 as res
from orchestrall.agent.v1.resources_pb2 import NotificationChannel as Channel
from orchestrall.workflow.v1 import resources_pb2 as wf_res
from orchestrall.workflow.v1 import workflow_service_pb2 as wf_pb
from orchestrall.workflow.v1 import workflow_service_pb2_grpc as wf_grpc
from services.agent.models import NotificationChannel as ChannelTable
from services.agent.notifications.channels import split
from services.agent.notifications.handlers import MAX_MESSAGE
from services.cli.stack import free_port
from services.kit.clients import MeshClients
from services.kit.db import create_engine
from services.kit.server import RunningServer
from services.kit.timestamps import utcnow
from services.kit.webhooks import new_secret, verify
from tests.conftest import Mesh
from tests.service.helpers import (
    Tenant,
    agent_channel,
    agent_replica,
    error_info,
    field_violations,
    new_tenant,
    run_to_end,
)
from tests.service.receivers import Answer, Receiver, json_answer, receiver, twilio_answer
from tests.service.test_workflow import events_of, wait_for

SID, TOKEN = "AC0123456789abcdef0123456789abcdef", "twilio-token-4711"
SMTP_PASSWORD = "smtp-password-1234"


@dataclass
class Clock:
    """The replica's clock, moved by the test."""

    now: dt.datetime = field(default_factory=utcnow)

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Mailbox:
    """What the SMTP server received: (from, to, message) per mail."""

    mails: list[tuple[str, list[str], str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[int, Mailbox]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, mailbox
    controller.stop()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[Receiver]:
    async with receiver() as served:
        yield served


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
async def replica(mesh: Mesh, model_url: str, http: Receiver, clock: Clock) -> AsyncIterator[RunningServer]:
    """An agent replica whose SMS go to the local Twilio fake, whose retries follow ``clock``."""
    server = await agent_replica(
        mesh, model_url, clock, twilio_base_url=http.url, notification_relay_interval_seconds=0.1
    )
    yield server
    await server.stop(0)


@pytest.fixture
async def stub(mesh: Mesh, replica: RunningServer) -> AsyncIterator[pb_grpc.AgentServiceStub]:
    async with agent_channel(mesh, replica) as channel:
        yield pb_grpc.AgentServiceStub(channel)


async def _channel(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, channel_id: str, channel: Channel
) -> Channel:
    return await stub.CreateNotificationChannel(
        pb.CreateNotificationChannelRequest(
            parent=tenant.name, notification_channel=channel, notification_channel_id=channel_id
        ),
        metadata=tenant.metadata,
    )


async def _send(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, channel: str, message: str, request_id: str = ""
) -> res.NotificationDelivery:
    return await stub.SendNotification(
        pb.SendNotificationRequest(
            name=channel, subject="Order A-17", message=message, request_id=request_id
        ),
        metadata=tenant.metadata,
    )


async def _settled(
    stub: pb_grpc.AgentServiceStub, tenant: Tenant, name: str, state: int
) -> res.NotificationDelivery:
    """Asks for the delivery until it is in ``state`` (at most 10 s)."""
    for _ in range(100):
        delivery = await stub.GetNotificationDelivery(
            pb.GetNotificationDeliveryRequest(name=name), metadata=tenant.metadata
        )
        if delivery.state == state:
            return delivery
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} stayed {res.NotificationDelivery.State.Name(delivery.state)}")


def _stored_secrets(mesh: Mesh, tenant: Tenant) -> list[bytes]:
    engine = create_engine(mesh.config.settings("agent"), "agent", admin=True)
    table = ChannelTable.__table__
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(table.c.secrets_sealed).where(table.c.tenant_id == tenant.id)
            ).all()
    finally:
        engine.dispose()
    return [bytes(sealed) for (sealed,) in rows]


SUCCEEDED = res.NotificationDelivery.STATE_SUCCEEDED
PENDING = res.NotificationDelivery.STATE_PENDING
FAILED = res.NotificationDelivery.STATE_FAILED


async def test_email_over_smtp_is_delivered_and_its_password_never_returned(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, smtp: tuple[int, Mailbox]
) -> None:
    port, mailbox = smtp
    tenant = await new_tenant(mesh, "ne")
    email = Channel.Email(
        smtp_host="127.0.0.1",
        smtp_port=port,
        security=Channel.Email.SECURITY_NONE,  # plain SMTP: allowed to the stack's allow-listed 127.0.0.1
        from_address="alerts@shop.example",
        to_addresses=["ops@shop.example", "cfo@shop.example"],
    )
    created = await _channel(stub, tenant, "ops-mail", Channel(display_name="Ops", email=email))
    assert created.email.from_address == "alerts@shop.example" and created.email.password == ""

    delivery = await _send(stub, tenant, created.name, "Order A-17 shipped.")
    assert (delivery.state, delivery.attempts, delivery.last_error) == (SUCCEEDED, 1, "")
    sender, recipients, content = mailbox.mails[-1]
    assert (sender, recipients) == ("alerts@shop.example", ["ops@shop.example", "cfo@shop.example"])
    assert "Subject: Order A-17" in content and "Order A-17 shipped." in content

    # A password is stored sealed, and no read returns it.
    with_password = Channel(
        email=Channel.Email(**{**_fields(email), "username": "alerts", "password": SMTP_PASSWORD})
    )
    guarded = await _channel(stub, tenant, "guarded", with_password)
    assert guarded.email.username == "alerts" and guarded.email.password == ""
    assert all(SMTP_PASSWORD.encode() not in sealed for sealed in _stored_secrets(mesh, tenant))
    listed = await stub.ListNotificationChannels(
        pb.ListNotificationChannelsRequest(parent=tenant.name), metadata=tenant.metadata
    )
    assert {c.name for c in listed.notification_channels} == {created.name, guarded.name}
    assert all(c.email.password == "" for c in listed.notification_channels)


def _fields(message: Any) -> dict[str, Any]:
    return {f.name: v for f, v in message.ListFields()}


async def test_slack_and_sms_speak_their_wire_formats(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, http: Receiver
) -> None:
    tenant = await new_tenant(mesh, "ns")
    http.script = lambda request: (
        twilio_answer(request, SID, TOKEN) if request.path.startswith("/2010-04-01/") else Answer(200, b"ok")
    )
    slack = await _channel(
        stub, tenant, "slack", Channel(slack=Channel.Slack(webhook_url=f"{http.url}/services/T1/B2"))
    )
    assert slack.slack.webhook_url == ""  # the URL is the credential
    delivered = await _send(stub, tenant, slack.name, "Order A-17 shipped.")
    assert delivered.state == SUCCEEDED
    assert http.on("/services/T1/B2")[-1].json() == {"text": "*Order A-17*\nOrder A-17 shipped."}

    sms = Channel.Sms(
        account_sid=SID, auth_token=TOKEN, from_number="+15005550006", to_numbers=["+4915112345678"]
    )
    phone = await _channel(stub, tenant, "phone", Channel(sms=sms))
    assert phone.sms.auth_token == "" and phone.sms.provider == Channel.Sms.PROVIDER_UNSPECIFIED
    assert (await _send(stub, tenant, phone.name, "Shipped.")).state == SUCCEEDED
    form = http.on(f"/2010-04-01/Accounts/{SID}/Messages.json")[-1].form()
    assert form == {"To": "+4915112345678", "From": "+15005550006", "Body": "Order A-17: Shipped."}

    # Twilio refuses a number for good: no retry, its error recorded.
    refused = Channel(sms=Channel.Sms(**{**_fields(sms), "to_numbers": ["+15005550001"]}))
    bad_number = await _channel(stub, tenant, "bad-number", refused)
    failed = await _send(stub, tenant, bad_number.name, "Shipped.")
    assert (failed.state, failed.attempts) == (FAILED, 1)
    assert "Twilio error 21211" in failed.last_error


async def test_a_webhook_is_signed_retried_with_backoff_and_sent_once_per_request_id(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, http: Receiver, clock: Clock
) -> None:
    tenant = await new_tenant(mesh, "nw")
    secret = new_secret()
    answers = iter([json_answer({"busy": True}, 503)])
    http.script = lambda request: next(answers, Answer(204))
    hook = await _channel(
        stub, tenant, "hook", Channel(webhook=Channel.Webhook(url=f"{http.url}/hooks/orders", secret=secret))
    )
    assert hook.webhook.secret == ""

    first = await _send(stub, tenant, hook.name, "Order A-17 shipped.", request_id="alert-1")
    assert (first.state, first.attempts) == (PENDING, 1)
    assert "answered HTTP 503" in first.last_error
    assert first.next_attempt_time.ToDatetime(dt.UTC) == clock.now + dt.timedelta(seconds=2)
    # A retry of the request sends nothing and returns the same delivery.
    again = await _send(stub, tenant, hook.name, "Order A-17 shipped.", request_id="alert-1")
    assert again.name == first.name and len(http.on("/hooks/orders")) == 1

    clock.now += dt.timedelta(seconds=2)  # due: the relay attempts it again
    delivered = await _settled(stub, tenant, first.name, SUCCEEDED)
    assert (delivered.attempts, delivered.last_error) == (2, "")
    attempts = http.on("/hooks/orders")
    assert len(attempts) == 2
    assert (
        attempts[0].headers["webhook-id"] == attempts[1].headers["webhook-id"] == first.name.rsplit("/", 1)[1]
    )
    for attempt in attempts:
        headers = {k: attempt.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        verify(secret, attempt.body.decode(), headers)  # raises on a bad signature
    event = attempts[1].json()
    assert event["type"] == "notification.sent"
    assert event["data"] == {
        "channel": hook.name,
        "delivery": first.name,
        "subject": "Order A-17",
        "message": "Order A-17 shipped.",
    }
    listed = await stub.ListNotificationDeliveries(
        pb.ListNotificationDeliveriesRequest(parent=hook.name), metadata=tenant.metadata
    )
    assert [d.name for d in listed.notification_deliveries] == [first.name]


async def test_a_pending_delivery_survives_a_restart(mesh: Mesh, model_url: str, http: Receiver) -> None:
    tenant = await new_tenant(mesh, "nr")
    clock = Clock()
    http.script = lambda request: json_answer({"down": True}, 502)
    first = await agent_replica(mesh, model_url, clock, notification_relay_interval_seconds=0.1)
    async with agent_channel(mesh, first) as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        hook = Channel(webhook=Channel.Webhook(url=f"{http.url}/hooks/restart", secret=new_secret()))
        created = await _channel(stub, tenant, "hook", hook)
        pending = await _send(stub, tenant, created.name, "Order A-17 shipped.")
        assert pending.state == PENDING
    await first.stop(0)

    http.script = lambda request: Answer(200)
    clock.now += dt.timedelta(seconds=3)
    second = await agent_replica(mesh, model_url, clock, notification_relay_interval_seconds=0.1)
    try:
        async with agent_channel(mesh, second) as channel:
            delivered = await _settled(pb_grpc.AgentServiceStub(channel), tenant, pending.name, SUCCEEDED)
    finally:
        await second.stop(0)
    assert delivered.attempts == 2 and len(http.on("/hooks/restart")) == 2


async def test_internal_receivers_are_refused_for_good(mesh: Mesh, stub: pb_grpc.AgentServiceStub) -> None:
    tenant = await new_tenant(mesh, "nf")
    hook = Channel(
        webhook=Channel.Webhook(url="http://169.254.169.254/latest/meta-data", secret=new_secret())
    )
    created = await _channel(stub, tenant, "metadata", hook)
    failed = await _send(stub, tenant, created.name, "hello")
    assert (failed.state, failed.attempts) == (FAILED, 1)
    assert "a link-local address" in failed.last_error


async def test_bad_channels_are_field_violations(mesh: Mesh, stub: pb_grpc.AgentServiceStub) -> None:
    tenant = await new_tenant(mesh, "nv")
    email = Channel.Email(
        smtp_host="smtp.example.com", from_address="a@example.com", to_addresses=["b@example.com"]
    )
    cases: list[tuple[Channel, list[str]]] = [
        (Channel(display_name="no kind"), ["notification_channel"]),
        (
            Channel(
                email=Channel.Email(smtp_host="bad host", from_address="nobody", to_addresses=["x@y.z", "no"])
            ),
            [
                "notification_channel.email.smtp_host",
                "notification_channel.email.from_address",
                "notification_channel.email.to_addresses[1]",
            ],
        ),
        (
            Channel(email=Channel.Email(**{**_fields(email), "to_addresses": []})),
            ["notification_channel.email.to_addresses"],
        ),
        (
            Channel(email=Channel.Email(**{**_fields(email), "password": "pw"})),
            ["notification_channel.email.password"],
        ),
        (
            Channel(slack=Channel.Slack(webhook_url="hooks.slack.com/x")),
            ["notification_channel.slack.webhook_url"],
        ),
        (
            Channel(webhook=Channel.Webhook(url="ftp://x.example/", secret="whsec_short")),
            ["notification_channel.webhook.url", "notification_channel.webhook.secret"],
        ),
        (
            Channel(
                sms=Channel.Sms(account_sid="AC-1", auth_token="t", from_number="0151", to_numbers=["+49"])
            ),
            [
                "notification_channel.sms.account_sid",
                "notification_channel.sms.from_number",
                "notification_channel.sms.to_numbers[0]",
            ],
        ),
    ]
    for channel, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await _channel(stub, tenant, "bad", channel)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, channel
        assert field_violations(bad.value) == fields, channel
    with pytest.raises(grpc.aio.AioRpcError) as blank:
        await _send(stub, tenant, f"{tenant.name}/notificationChannels/none", " ")
    assert field_violations(blank.value) == ["message"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await _send(stub, tenant, f"{tenant.name}/notificationChannels/none", "hello")
    assert error_info(missing.value).reason == "NOTIFICATION_CHANNEL_NOT_FOUND"


async def test_an_update_replaces_the_kind_and_its_secrets(
    mesh: Mesh, stub: pb_grpc.AgentServiceStub, http: Receiver
) -> None:
    tenant = await new_tenant(mesh, "nu")
    http.script = lambda request: Answer(200)
    created = await _channel(stub, tenant, "c", Channel(slack=Channel.Slack(webhook_url=f"{http.url}/old")))
    updated = await stub.UpdateNotificationChannel(
        pb.UpdateNotificationChannelRequest(
            notification_channel=Channel(
                name=created.name,
                display_name="Orders",
                webhook=Channel.Webhook(url=f"{http.url}/new", secret=new_secret()),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "webhook"]),
        ),
        metadata=tenant.metadata,
    )
    assert updated.WhichOneof("kind") == "webhook" and updated.display_name == "Orders"
    assert (await _send(stub, tenant, created.name, "hi")).state == SUCCEEDED
    assert http.on("/new") and not http.on("/old")
    with pytest.raises(grpc.aio.AioRpcError) as unset:
        await stub.UpdateNotificationChannel(
            pb.UpdateNotificationChannelRequest(
                notification_channel=Channel(name=created.name),
                update_mask=field_mask_pb2.FieldMask(paths=["sms"]),
            ),
            metadata=tenant.metadata,
        )
    assert field_violations(unset.value) == ["notification_channel.sms"]


async def test_the_workflow_and_billing_services_send_for_a_tenant_and_others_may_not(
    mesh: Mesh, http: Receiver
) -> None:
    tenant = await new_tenant(mesh, "ni")
    http.script = lambda request: Answer(200)
    async with mesh.channel("agent") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        created = await _channel(
            stub, tenant, "alerts", Channel(slack=Channel.Slack(webhook_url=f"{http.url}/alerts"))
        )
    request = pb.SendNotificationRequest(name=created.name, message="Usage at 80% of the plan.")
    for identity in ("billing", "workflow"):
        async with mesh.channel("agent", identity=identity) as channel:
            sent = await pb_grpc.AgentServiceStub(channel).SendNotification(
                request, metadata=MeshClients.for_tenant(tenant.id)
            )
        assert sent.state == SUCCEEDED, identity
    async with mesh.channel("agent", identity="flag") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pb_grpc.AgentServiceStub(channel).SendNotification(
                request, metadata=MeshClients.for_tenant(tenant.id)
            )
    assert (
        refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    )  # not in the policy table: it needs a token
    other = await new_tenant(mesh, "nj")
    async with mesh.channel("agent", identity="billing") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await pb_grpc.AgentServiceStub(channel).SendNotification(
                request, metadata=MeshClients.for_tenant(other.id)
            )
    assert error_info(foreign.value).reason == "TENANT_MISMATCH"
    assert len(http.on("/alerts")) == 2


async def test_a_workflow_notification_step_and_the_send_notification_tool_deliver(
    mesh: Mesh, http: Receiver
) -> None:
    tenant = await new_tenant(mesh, "nk")
    http.script = lambda request: Answer(200)
    async with mesh.channel("agent") as channel:
        agents = pb_grpc.AgentServiceStub(channel)
        created = await _channel(
            agents, tenant, "ops", Channel(slack=Channel.Slack(webhook_url=f"{http.url}/ops"))
        )
        tool = await agents.CallTool(
            pb.CallToolRequest(
                name="tools/send_notification",
                parent=tenant.name,
                arguments=_struct({"channel": "ops", "message": "from a tool"}),
            ),
            metadata=tenant.metadata,
        )
        assert tool.result.struct_value["state"] == "STATE_SUCCEEDED"
        with pytest.raises(grpc.aio.AioRpcError) as too_long:
            await agents.CallTool(
                pb.CallToolRequest(
                    name="tools/send_notification",
                    parent=tenant.name,
                    arguments=_struct({"channel": "ops", "message": "x" * (MAX_MESSAGE + 1)}),
                ),
                metadata=tenant.metadata,
            )
        assert field_violations(too_long.value) == ["arguments.message"]
        # The real model calls the tool (its schema must be one the model server's grammar takes).
        agent = await agents.CreateAgent(
            pb.CreateAgentRequest(
                parent=tenant.name,
                agent=res.Agent(
                    instructions="You alert the on-call team. Send the user's text to the channel ops.",
                    tools=["tools/send_notification"],
                    tool_choice=res.TOOL_CHOICE_REQUIRED,
                    temperature=0,
                    max_output_tokens=64,
                ),
            ),
            metadata=tenant.metadata,
        )
        assert list(agent.tools) == ["tools/send_notification"]
        run = await run_to_end(
            agents,
            pb.CreateRunRequest(parent=agent.name, run=res.Run(input="Dock 7 is flooded.")),
            tenant.metadata,
        )
        assert run.state == res.Run.STATE_SUCCEEDED, run.error
        call = run.tool_calls[0]
        assert (call.tool, call.failed) == ("tools/send_notification", False), call
        assert json.loads(call.result)["state"] == "STATE_SUCCEEDED"
        by_model = json.loads(call.arguments)["message"]
    step = wf_res.Workflow.Step(
        id="tell",
        notification=wf_res.Workflow.Notification(channel=created.name, message_template="run {{ input }}"),
    )
    async with mesh.channel("workflow") as channel:
        workflows = wf_grpc.WorkflowServiceStub(channel)
        workflow = await workflows.CreateWorkflow(
            wf_pb.CreateWorkflowRequest(parent=tenant.name, workflow=wf_res.Workflow(steps=[step])),
            metadata=tenant.metadata,
        )
        run = await workflows.CreateWorkflowRun(
            wf_pb.CreateWorkflowRunRequest(
                parent=workflow.name, workflow_run=wf_res.WorkflowRun(input="A-17")
            ),
            metadata=tenant.metadata,
        )
        done = await wait_for(workflows, run.name, tenant)
        assert done.state == wf_res.RUN_STATE_SUCCEEDED, done.error
        assert ("notification.sent", "tell") in await events_of(workflows, run.name, tenant)
    texts = [r.json()["text"] for r in http.on("/ops")]
    assert texts == ["*Notification*\nfrom a tool", f"*Notification*\n{by_model}", "*Notification*\nrun A-17"]


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def test_secrets_in_settings_are_split_off() -> None:
    kind, settings, secrets = split(
        Channel(webhook=Channel.Webhook(url="https://x.example/h", secret="whsec_x"))
    )
    assert (kind, settings, secrets) == ("webhook", {"url": "https://x.example/h"}, {"secret": "whsec_x"})
    assert json.dumps(settings).find("whsec_") == -1
