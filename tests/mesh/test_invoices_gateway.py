"""A tenant on a graduated plan, billed through Envoy: usage in, preview, finalized invoice and its PDF out.

The operator (the CLI's mTLS identity) makes the plan and finalizes the invoice over
gRPC, as ``orchestrall plans create`` and ``orchestrall invoices finalize`` do; the
tenant does everything else over REST. The period-end sweep runs on a clock a month
ahead, on the stack's billing database. Totals are computed by hand in the test.
"""

from __future__ import annotations

import datetime as dt
import io
import json

import grpc
import httpx
import pypdf
import pytest

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from services.billing.plans import period_of
from services.billing.service import BillingService
from services.cli.stack import CLI_IDENTITY, Stack
from services.kit.db import Database, create_engine
from services.kit.mtls import TlsFiles, channel_credentials
from services.kit.timestamps import utcnow
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up
from tests.service.test_billing_invoices import graduated_plan

pytestmark = pytest.mark.mesh


def operator_channel(stack: Stack) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        f"127.0.0.1:{stack.config.service_ports['billing']}",
        channel_credentials(TlsFiles.of(stack.config.tls_dir, CLI_IDENTITY)),
        options=[("grpc.ssl_target_name_override", "billing")],
    )


async def close_this_period(stack: Stack) -> None:
    """Runs the period-end sweep on the stack's billing database, on a clock just past this period."""
    _, end = period_of(utcnow())
    db = Database(create_engine(stack.config.settings("billing"), "billing"))
    try:
        await BillingService(db, lambda: end + dt.timedelta(minutes=5)).close_periods()
    finally:
        await db.close()


def usage_event(event_id: str, meter: str, quantity: float) -> dict:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "//erp.example.com/usage",
        "type": f"dev.orchestrall.usage.{meter}",
        "time": utcnow().isoformat(),
        "datacontenttype": "application/json",
        "data": {"quantity": quantity},
    }


async def test_a_finalized_invoice_pdf_has_the_hand_computed_totals(stack: Stack) -> None:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        owner = sign_up(http, "inv")
        async with operator_channel(stack) as channel:
            plan = await pb_grpc.BillingServiceStub(channel).CreatePlan(
                pb.CreatePlanRequest(plan=graduated_plan(fixed_fee=0), plan_id=f"mesh-{owner.tenant}")
            )
        changed = http.patch(
            f"/v1/tenants/{owner.tenant}/subscription",
            params={"updateMask": "plan"},
            json={"plan": plan.name},
            headers=auth(owner.token),
        )
        assert changed.status_code == 200, changed.text
        events = [
            usage_event("r", "agent_runs", 25),
            usage_event("i", "model_input_tokens", 12_345_678),
            usage_event("o", "model_output_tokens", 2001),
        ]
        ingested = http.post(
            f"/v1/tenants/{owner.tenant}/usageEvents:ingest",
            content=json.dumps(events).encode(),
            headers={**auth(owner.token), "content-type": "application/cloudevents-batch+json"},
        )
        assert ingested.status_code == 200, ingested.text
        # By hand: runs 10 free, 15 x 100 = 1500 cents; input tokens (12,345,678 - 1,000) x 0.0002 =
        # 2468.9356, one rounding half up: 2469; output 3 started packages of 1,000 x 500 = 1500.
        expected = {"agent_runs": 1500, "model_input_tokens": 2469, "model_output_tokens": 1500}
        preview = http.get(f"/v1/tenants/{owner.tenant}/invoices:preview", headers=auth(owner.token))
        assert preview.status_code == 200, preview.text
        lines = {line["meter"]: int(line["amount"]) for line in preview.json()["lines"]}
        assert lines == expected and int(preview.json()["total"]) == 5469

        await close_this_period(stack)
        listed = http.get(f"/v1/tenants/{owner.tenant}/invoices", headers=auth(owner.token))
        assert listed.status_code == 200, listed.text
        (invoice,) = listed.json()["invoices"]
        assert invoice["state"] == "STATE_DRAFT" and int(invoice["total"]) == 5469
        async with operator_channel(stack) as channel:
            final = await pb_grpc.BillingServiceStub(channel).FinalizeInvoice(
                pb.FinalizeInvoiceRequest(name=invoice["name"])
            )
        assert final.total == 5469 and final.number

        pdf = http.get(f"/v1/{invoice['name']}:pdf", headers=auth(owner.token))
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
        assert final.number in text and "54.69 USD" in text and "15.00 USD" in text and "24.69 USD" in text
        exported = http.get(f"/v1/tenants/{owner.tenant}/invoices:export", headers=auth(owner.token))
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        assert final.number in exported.text
        other = sign_up(http, "inv-other")
        stolen = http.get(f"/v1/{invoice['name']}:pdf", headers=auth(other.token))
        assert stolen.status_code == 403, stolen.text
