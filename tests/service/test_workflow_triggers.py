"""Webhook deliveries over native gRPC: the Standard Webhooks headers as call metadata, no token."""

from __future__ import annotations

import datetime as dt
import json

import grpc
import pytest
from google.api import httpbody_pb2
from standardwebhooks.webhooks import Webhook

from orchestrall.workflow.v1 import resources_pb2 as res
from orchestrall.workflow.v1 import workflow_service_pb2 as pb
from orchestrall.workflow.v1 import workflow_service_pb2_grpc as pb_grpc
from tests.conftest import Mesh
from tests.service.helpers import Tenant, error_info, new_tenant, one_step_workflow


async def _trigger(mesh: Mesh, tenant: Tenant) -> res.Trigger:
    workflow = await one_step_workflow(mesh, tenant, "intake")
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        return await stub.CreateTrigger(
            pb.CreateTriggerRequest(parent=workflow, trigger_id="orders"), metadata=tenant.metadata
        )


def _signed(secret: str, delivery: str, body: str) -> tuple[tuple[str, str], ...]:
    now = dt.datetime.now(dt.UTC)
    return (
        ("webhook-id", delivery),
        ("webhook-timestamp", str(int(now.timestamp()))),
        ("webhook-signature", Webhook(secret).sign(delivery, now, body)),
    )


async def test_a_delivery_over_grpc_starts_its_run_once(mesh: Mesh) -> None:
    tenant = await new_tenant(mesh)
    trigger = await _trigger(mesh, tenant)
    body = '{"order": 1}'
    request = pb.DeliverWebhookRequest(name=trigger.name, body=httpbody_pb2.HttpBody(data=body.encode()))
    async with mesh.channel("workflow") as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        first = await stub.DeliverWebhook(request, metadata=_signed(trigger.secret, "msg_1", body))
        again = await stub.DeliverWebhook(request, metadata=_signed(trigger.secret, "msg_1", body))
        assert first.content_type == "application/json"
        run_name = json.loads(first.data)["run"]
        assert json.loads(again.data)["run"] == run_name
        run = await stub.GetWorkflowRun(pb.GetWorkflowRunRequest(name=run_name), metadata=tenant.metadata)
        assert (run.input, run.trigger) == (body, trigger.name)


async def test_another_tenants_secret_does_not_sign_for_this_trigger(mesh: Mesh) -> None:
    tenant, other = await new_tenant(mesh), await new_tenant(mesh)
    trigger, others = await _trigger(mesh, tenant), await _trigger(mesh, other)
    body = "hello"
    async with mesh.channel("workflow") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.WorkflowServiceStub(channel).DeliverWebhook(
                pb.DeliverWebhookRequest(name=trigger.name, body=httpbody_pb2.HttpBody(data=body.encode())),
                metadata=_signed(others.secret, "msg_x", body),
            )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "INVALID_SIGNATURE"
    async with mesh.channel("workflow") as channel:  # the secret is never read back
        got = await pb_grpc.WorkflowServiceStub(channel).GetTrigger(
            pb.GetTriggerRequest(name=trigger.name), metadata=tenant.metadata
        )
    assert got.secret == "" and got.url_path == f"/v1/{trigger.name}:deliver"
