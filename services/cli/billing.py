"""``orchestrall plans`` and ``orchestrall invoices``: the price list and invoices of a running stack.

Reads go through the gateway with a tenant's token, as any client's; the operator's
writes (plans, finalizing, paying, voiding) go to the billing service over mTLS with the
CLI's certificate, the operator identity of the kit's policy table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import httpx
import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from orchestrall.billing.v1 import billing_service_pb2 as pb
from orchestrall.billing.v1 import resources_pb2 as res
from orchestrall.billing.v1.billing_service_pb2_grpc import BillingServiceStub
from services.billing.currencies import format_minor
from services.kit.mtls import CLI_IDENTITY, TlsFiles, channel_credentials

console = Console(highlight=False)
plans_app = typer.Typer(
    help="The price list: read it (gateway) or change it (operator).", no_args_is_help=True
)
invoices_app = typer.Typer(
    help="Invoices: fetch them (gateway) or finalize them (operator).", no_args_is_help=True
)

T = TypeVar("T")
STATE_DIR = typer.Option(Path(".state"), help="Where `up` keeps the local CA and certificates.")
BILLING_ADDRESS = typer.Option("127.0.0.1:50055", help="The billing service's gRPC address.")
URL = typer.Option("http://127.0.0.1:8080", help="Gateway of a running stack.")
TOKEN = typer.Option(..., envvar="ORCHESTRALL_TOKEN", help="A bearer token of the tenant.")
PLAN_FILE = typer.Argument(..., help="The plan as JSON (the Plan resource's JSON form).")
PDF_FILE = typer.Option(None, help="Also write the invoice's PDF to this file.")


def _operator(state_dir: Path, address: str, call: Callable[[BillingServiceStub], T]) -> T:
    """Returns ``call``'s answer from the billing service, called as the operator (the CLI's certificate)."""
    credentials = channel_credentials(TlsFiles.of(state_dir / "tls", CLI_IDENTITY))
    with grpc.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", "billing")]
    ) as channel:
        try:
            return call(BillingServiceStub(channel))
        except grpc.RpcError as error:
            console.print(f"[bold red]failed:[/] {error.code().name} {error.details()}")
            raise typer.Exit(1) from None


def _get(url: str, token: str, path: str) -> httpx.Response:
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30) as http:
        answer = http.get(path)
    if not answer.is_success:
        console.print(f"[bold red]{path}:[/] {answer.status_code} {answer.text[:300]}")
        raise typer.Exit(1)
    return answer


@plans_app.command("list")
def plans_list(url: str = URL, token: str = TOKEN) -> None:
    """Print the plans of the price list."""
    found = _get(url, token, "/v1/plans?pageSize=1000").json().get("plans", [])
    table = Table("plan", "currency", "fixed fee", "charges", "request rate", "default")
    for plan in found:
        fee = format_minor(int(plan.get("fixedFee", 0)), plan["currencyCode"])
        charges = ", ".join(c["meter"] for c in plan.get("charges", []))
        table.add_row(
            plan["name"],
            plan["currencyCode"],
            fee,
            charges,
            str(plan.get("requestRate", 0)),
            str(plan.get("default", False)),
        )
    console.print(table)


@plans_app.command("create")
def plans_create(
    plan_id: str = typer.Argument(..., help="The plan ID, e.g. pro."),
    file: Path = PLAN_FILE,
    state_dir: Path = STATE_DIR,
    address: str = BILLING_ADDRESS,
) -> None:
    """Create a plan from a JSON file (operator)."""
    plan = json_format.Parse(file.read_text(), res.Plan())
    made = _operator(
        state_dir,
        address,
        lambda stub: stub.CreatePlan(pb.CreatePlanRequest(plan=plan, plan_id=plan_id), timeout=10),
    )
    console.print(f"Created {made.name}.")


@invoices_app.command("get")
def invoices_get(
    name: str = typer.Argument(..., help="The invoice, tenants/{t}/invoices/{i}."),
    pdf: Path | None = PDF_FILE,
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Print an invoice's lines and totals; with --pdf, save its PDF."""
    invoice = _get(url, token, f"/v1/{name}").json()
    table = Table(
        "line", "quantity", "amount", title=f"{name} {invoice.get('number', '')} {invoice['state']}"
    )
    code = invoice["currencyCode"]
    for line in invoice.get("lines", []):
        table.add_row(
            line["description"], str(line.get("quantity", 0)), format_minor(int(line.get("amount", 0)), code)
        )
    table.add_row("Total", "", format_minor(int(invoice.get("total", 0)), code))
    console.print(table)
    if pdf is not None:
        pdf.write_bytes(_get(url, token, f"/v1/{name}:pdf").content)
        console.print(f"Wrote {pdf}.")


@invoices_app.command("finalize")
def invoices_finalize(
    name: str = typer.Argument(..., help="The invoice, tenants/{t}/invoices/{i}."),
    state_dir: Path = STATE_DIR,
    address: str = BILLING_ADDRESS,
) -> None:
    """Finalize a draft invoice: number it and make it immutable (operator; idempotent)."""
    done = _operator(
        state_dir,
        address,
        lambda stub: stub.FinalizeInvoice(pb.FinalizeInvoiceRequest(name=name), timeout=10),
    )
    console.print(f"{done.name} is {done.number}, {format_minor(done.total, done.currency_code)}.")
