"""Reconciliation: a provider's settlement statement against tongka's own records.

The statement is CSV with the columns
`provider,type,provider_reference,merchant_reference,amount,currency,settled_at`
(`type` is `payment` or `refund`; `merchant_reference` is tongka's payment or refund id;
`amount` in minor units; `settled_at` ISO 8601). Each provider's own report is turned
into this form by its adapter; the sandbox writes it directly (`tongka sandbox statement`).
Every difference is listed; nothing is changed.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.payment.models import Payment, Refund

COLUMNS = (
    "provider",
    "type",
    "provider_reference",
    "merchant_reference",
    "amount",
    "currency",
    "settled_at",
)


@dataclass(frozen=True)
class Difference:
    kind: str  # missing_at_tongka | missing_in_statement | amount_differs | not_settled_at_tongka | bad_row
    reference: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.reference}: {self.detail}"


@dataclass(frozen=True)
class Line:
    provider: str
    type: str
    provider_reference: str
    merchant_reference: str
    amount: int
    currency: str
    settled_at: datetime


def read(f: TextIO) -> tuple[list[Line], list[Difference]]:
    lines, bad = [], []
    reader = csv.DictReader(f)
    missing = set(COLUMNS) - set(reader.fieldnames or ())
    if missing:
        return [], [
            Difference("bad_row", "header", f"missing columns: {', '.join(sorted(missing))}")
        ]
    for row in reader:
        try:
            settled = datetime.fromisoformat(row["settled_at"])
            lines.append(
                Line(
                    provider=row["provider"],
                    type=row["type"],
                    provider_reference=row["provider_reference"],
                    merchant_reference=row["merchant_reference"],
                    amount=int(row["amount"]),
                    currency=row["currency"],
                    settled_at=settled if settled.tzinfo else settled.replace(tzinfo=UTC),
                )
            )
            if row["type"] not in ("payment", "refund"):
                raise ValueError(f"unknown type {row['type']!r}")
        except (ValueError, KeyError, TypeError) as e:
            bad.append(Difference("bad_row", f"line {reader.line_num}", str(e)))
    return lines, bad


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def reconcile(session: Session, lines: Iterable[Line]) -> list[Difference]:
    """Compare; the period is the whole UTC days the statement covers, for the providers it names."""
    lines = list(lines)
    if not lines:
        return []
    providers = {line.provider for line in lines}
    start = datetime.combine(
        min(line.settled_at for line in lines).astimezone(UTC).date(), time(), UTC
    )
    end = datetime.combine(
        max(line.settled_at for line in lines).astimezone(UTC).date(), time(), UTC
    ) + timedelta(days=1)
    differences: list[Difference] = []
    seen_payments: set[uuid.UUID] = set()
    seen_refunds: set[uuid.UUID] = set()

    for line in lines:
        ref = _uuid(line.merchant_reference)
        record = (
            (session.get(Payment, ref) if line.type == "payment" else session.get(Refund, ref))
            if ref
            else None
        )
        if record is None:
            differences.append(
                Difference(
                    "missing_at_tongka",
                    line.provider_reference,
                    f"{line.type} of {line.amount} {line.currency}",
                )
            )
            continue
        (seen_payments if line.type == "payment" else seen_refunds).add(record.id)
        if (record.amount, record.currency) != (line.amount, line.currency):
            differences.append(
                Difference(
                    "amount_differs",
                    line.merchant_reference,
                    f"tongka {record.amount} {record.currency}, statement {line.amount} {line.currency}",
                )
            )
        if record.status != "succeeded":
            differences.append(
                Difference(
                    "not_settled_at_tongka", line.merchant_reference, f"tongka says {record.status}"
                )
            )

    for payment in session.scalars(
        select(Payment).where(
            Payment.provider.in_(providers),
            Payment.status == "succeeded",
            Payment.settled_at >= start,
            Payment.settled_at < end,
        )
    ):
        if payment.id not in seen_payments:
            differences.append(
                Difference(
                    "missing_in_statement",
                    str(payment.id),
                    f"payment of {payment.amount} {payment.currency}",
                )
            )
    for refund, provider in session.execute(
        select(Refund, Payment.provider)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            Payment.provider.in_(providers),
            Refund.status == "succeeded",
            Refund.settled_at >= start,
            Refund.settled_at < end,
        )
    ):
        if refund.id not in seen_refunds:
            differences.append(
                Difference(
                    "missing_in_statement",
                    str(refund.id),
                    f"{provider} refund of {refund.amount} {refund.currency}",
                )
            )
    return differences
