"""Invoices as documents: PDF (fpdf2) and CSV of their line items (RFC 4180).

The PDF is drawn with fpdf2's core Helvetica font (no font files to ship); text
outside Latin-1, which that font cannot show, is replaced by ``?``. Its metadata
dates are the invoice's own, so one invoice renders to the same bytes each time.
"""

from __future__ import annotations

import csv
import io

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from services.billing.currencies import format_minor
from services.billing.models import InvoiceRow

#: The columns of the CSV export, in order.
CSV_COLUMNS = (
    "invoice",
    "number",
    "state",
    "period_start",
    "period_end",
    "currency_code",
    "kind",
    "plan",
    "meter",
    "description",
    "quantity",
    "included_quantity",
    "amount",
)


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def pdf(invoice: InvoiceRow) -> bytes:
    """Returns the invoice as a one-or-more-page PDF: header, line items, subtotal and total.

    Amounts are shown in major units of the currency (``123.45 USD``); a draft is titled
    ``DRAFT INVOICE`` and has no number.
    """
    document = FPDF(format="A4")
    document.set_creation_date(invoice.finalize_time or invoice.create_time)
    document.set_title(f"Invoice {invoice.number or invoice.id}")
    document.set_author("Orchestrall")
    document.add_page()
    document.set_font("Helvetica", "B", 16)
    title = "INVOICE" if invoice.number else f"{invoice.state} INVOICE"
    document.cell(0, 10, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    document.set_font("Helvetica", size=10)
    header = [
        f"Number: {invoice.number or '(none: draft)'}",
        f"Tenant: tenants/{invoice.tenant_id}",
        f"Invoice: tenants/{invoice.tenant_id}/invoices/{invoice.id}",
        f"Period: {invoice.period_start.date().isoformat()} to {invoice.period_end.date().isoformat()} (UTC)",
        f"Plan: plans/{invoice.plan_id}",
        f"State: {invoice.state}",
    ]
    for text in header:
        document.cell(0, 6, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    document.ln(4)
    document.set_font("Helvetica", "B", 10)
    widths = (100, 30, 0)
    for width, text in zip(widths, ("Description", "Quantity", "Amount"), strict=True):
        document.cell(width, 7, text, border="B")
    document.ln()
    document.set_font("Helvetica", size=9)
    for line in invoice.lines:
        quantity = f"{line['quantity']:g}"
        cells = (line["description"], quantity, format_minor(line["amount"], invoice.currency_code))
        for width, text in zip(widths, cells, strict=True):
            document.cell(width, 6, _latin1(text)[:70])
        document.ln()
        for tier in line["tiers"]:
            document.cell(widths[0], 5, f"    tier {tier['tier'] + 1}: {tier['quantity']:g} units")
            document.cell(widths[1], 5, "")
            document.cell(0, 5, f"{tier['amount']} (minor units)")
            document.ln()
    document.ln(2)
    document.set_font("Helvetica", "B", 10)
    for label, amount in (("Subtotal", invoice.subtotal), ("Total", invoice.total)):
        document.cell(widths[0] + widths[1], 7, label, border="T" if label == "Subtotal" else 0)
        document.cell(
            0, 7, format_minor(amount, invoice.currency_code), border="T" if label == "Subtotal" else 0
        )
        document.ln()
    return bytes(document.output())


def csv_of(rows: list[InvoiceRow]) -> bytes:
    """Returns the line items of ``rows`` as CSV (RFC 4180, CRLF rows, a header), in the order given.

    Amounts are integer minor units and quantities numbers, so a spreadsheet sums them exactly.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        for line in row.lines:
            writer.writerow(
                (
                    f"tenants/{row.tenant_id}/invoices/{row.id}",
                    row.number or "",
                    row.state,
                    row.period_start.isoformat(),
                    row.period_end.isoformat(),
                    row.currency_code,
                    line["kind"],
                    f"plans/{line['plan_id']}",
                    line["meter"],
                    line["description"],
                    f"{line['quantity']:g}",
                    f"{line['included_quantity']:g}",
                    line["amount"],
                )
            )
    return out.getvalue().encode()
