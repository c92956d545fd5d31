"""``orchestrall usage``: the tenant's metered usage this period, per meter, against its plan's limits."""

from __future__ import annotations

from orchestrall.sdk import billing
from services.cli.client.common import OUTPUT, Output, client_of, logged_in, run, show_list


def usage(output: Output = OUTPUT) -> None:
    """Show this month's usage of the logged-in tenant, per meter."""
    login = logged_in(output)

    async def call() -> billing.UsageSummary:
        async with client_of(login) as client:
            return await client.billing.get_usage_summary(
                billing.GetUsageSummaryRequest(name=f"{login.tenant}/usageSummary")
            )

    summary = run(output, call)
    rows = [
        (m.meter, f"{m.quantity:g}", m.unit, f"{m.limit:g}" if m.limit else "-", str(m.event_count))
        for m in summary.meters
    ]
    period = f"{summary.start_time:%Y-%m-%d} to {summary.end_time:%Y-%m-%d}" if summary.start_time else ""
    show_list(
        output, summary, ("meter", "used", "unit", "limit", "events"), rows, title=f"{login.tenant} {period}"
    )
