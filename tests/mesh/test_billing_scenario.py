"""Billing as a tenant lives it, through Envoy: a graduated plan, real agent runs, an alert at 80 %,
refusals at the hard limit under a parallel burst, usage by day and model, and a PDF invoice.

The operator (the CLI's mTLS identity) makes the plan and finalizes the invoice over
gRPC, as ``orchestrall plans create`` and ``orchestrall invoices finalize`` do; the
tenant does everything else over REST, and its runs call the real model. The
period-end sweep runs on a clock a month ahead, on the stack's billing database. The
totals are computed by hand from the plan and the usage the tenant reads.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pypdf
import pytest

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import billing_service_pb2_grpc as pb_grpc
from orchestrall.billing.v1 import resources_pb2 as res
from services.cli.stack import MODEL_ALIAS, Stack
from services.kit.timestamps import utcnow
from tests.mesh.conftest import auth
from tests.mesh.test_access_gateway import sign_up
from tests.mesh.test_invoices_gateway import close_this_period, operator_channel

pytestmark = pytest.mark.mesh
RUNS_LIMIT = 5
BURST = 8
Model = res.Charge.Model


def plan() -> res.Plan:
    """USD cents: agent runs graduated (2 free, then $1.00 each) up to a hard limit of 5, soft 4;
    output tokens $0.01 each; no fixed fee."""
    return res.Plan(
        display_name="Graduated",
        currency_code="USD",
        request_rate=50,
        charges=[
            res.Charge(
                meter="agent_runs",
                model=Model.MODEL_GRADUATED,
                tiers=[res.PriceTier(up_to=2, unit_amount="0"), res.PriceTier(unit_amount="100")],
                hard_limit=RUNS_LIMIT,
                soft_limit=RUNS_LIMIT - 1,
            ),
            res.Charge(meter="model_output_tokens", model=Model.MODEL_PER_UNIT, unit_amount="1"),
        ],
    )


def rfc3339(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_a_tenant_on_a_graduated_plan_is_alerted_refused_at_its_limit_and_invoiced(
    stack: Stack,
) -> None:
    with httpx.Client(base_url=stack.config.gateway_url, timeout=120) as http:
        owner = sign_up(http, "billed")
        t, headers = f"/v1/tenants/{owner.tenant}", auth(owner.token)
        async with operator_channel(stack) as channel:
            made = await pb_grpc.BillingServiceStub(channel).CreatePlan(
                pb.CreatePlanRequest(plan=plan(), plan_id=f"graduated-{owner.tenant}")
            )
        changed = http.patch(
            f"{t}/subscription", params={"updateMask": "plan"}, json={"plan": made.name}, headers=headers
        )
        assert changed.status_code == 200, changed.text
        thresholds = [
            {"type": "TYPE_PERCENT", "value": 80},
            {"type": "TYPE_SOFT_LIMIT_PERCENT", "value": 100},
        ]
        alert = {"meter": "agent_runs", "thresholds": thresholds}
        created = http.post(f"{t}/usageAlerts", params={"usageAlertId": "runs"}, json=alert, headers=headers)
        assert created.status_code == 200, created.text
        agent = {"instructions": "Answer in a few words.", "temperature": 0, "maxOutputTokens": 8}
        assert http.post(f"{t}/agents", params={"agentId": "brief"}, json=agent, headers=headers).is_success

        def start(i: int) -> httpx.Response:
            return http.post(
                f"{t}/agents/brief/runs", json={"input": f"Name a colour, {i}."}, headers=headers
            )

        with ThreadPoolExecutor(BURST) as pool:
            burst = list(pool.map(start, range(BURST)))
        statuses = sorted(response.status_code for response in burst)
        assert statuses == [200] * RUNS_LIMIT + [429] * (BURST - RUNS_LIMIT), [r.text for r in burst]
        refused = next(r for r in burst if r.status_code == 429).json()
        assert refused["details"][0]["reason"] == "QUOTA_EXCEEDED"
        for response in burst:
            if response.status_code == 200:
                ended = http.post(f"/v1/{response.json()['name']}:wait", json={}, headers=headers)
                assert ended.json()["state"] == "STATE_SUCCEEDED", ended.text

        # 80 % of the hard limit and all of the soft limit are both 4 runs: each fires once.
        deadline = time.monotonic() + 10
        while (
            len(
                events := http.get(f"{t}/usageAlerts/runs/events", headers=headers)
                .json()
                .get("usageAlertEvents", [])
            )
            < 2
        ):
            assert time.monotonic() < deadline, f"the alert's thresholds did not both fire: {events}"
            time.sleep(0.1)
        assert sorted((e["threshold"]["type"], e["thresholdQuantity"], e["limit"]) for e in events) == [
            ("TYPE_PERCENT", 4, RUNS_LIMIT),
            ("TYPE_SOFT_LIMIT_PERCENT", 4, RUNS_LIMIT - 1),
        ]

        today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        usage = http.post(
            f"{t}/meters/model_output_tokens:queryUsage",
            json={
                "startTime": rfc3339(today),
                "endTime": rfc3339(today + dt.timedelta(days=1)),
                "windowSize": "WINDOW_SIZE_DAY",
                "timeZone": "UTC",
                "groupBy": ["model"],
            },
            headers=headers,
        )
        assert usage.status_code == 200, usage.text
        ((window),) = usage.json()["windows"]
        assert window["startTime"] == rfc3339(today) and window["groupBy"] == {"model": MODEL_ALIAS}
        tokens = int(window["value"])
        assert 0 < tokens <= RUNS_LIMIT * 8

        # By hand: 5 runs, 2 free then 3 x 100 cents; every output token 1 cent.
        runs_amount, tokens_amount = 3 * 100, tokens * 1
        total = runs_amount + tokens_amount
        await close_this_period(stack)
        (invoice,) = http.get(f"{t}/invoices", headers=headers).json()["invoices"]
        lines = {line["meter"]: int(line["amount"]) for line in invoice["lines"]}
        assert lines == {"agent_runs": runs_amount, "model_output_tokens": tokens_amount}
        async with operator_channel(stack) as channel:
            final = await pb_grpc.BillingServiceStub(channel).FinalizeInvoice(
                pb.FinalizeInvoiceRequest(name=invoice["name"])
            )
        assert final.state == res.Invoice.STATE_OPEN and final.total == total and final.number
        pdf = http.get(f"/v1/{invoice['name']}:pdf", headers=headers)
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
        assert final.number in text and f"{total / 100:.2f} USD" in text and "3.00 USD" in text
