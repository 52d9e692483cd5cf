"""The settlement statement a provider would send, made from the simulators' own records.

In the common form `payment/reconcile.py` reads. Each simulator keeps its refunds the way
its provider does; `_refunds` reads each form back to (our refund id, amount, time).
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any, TextIO

from sqlalchemy import select

from tongka.payment.reconcile import COLUMNS
from tongka.sandbox.store import SimPayment, sessions


def _uuid(text: Any) -> str:
    try:
        return str(uuid.UUID(str(text)))
    except ValueError:
        return str(text)


def _time(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _refunds(p: SimPayment) -> Iterator[tuple[str, str, int, datetime]]:
    """(provider refund reference, our refund id, amount, time) of each refund the provider made."""
    fallback = p.settled_at or p.created_at
    for r in p.refunds:
        if p.provider == "stripe":
            ours, ref, when = (r.get("metadata") or {}).get("refund_id"), r["id"], r.get("created")
        elif p.provider == "paypal":
            ours, ref, when = r.get("request_id"), r["id"], r.get("create_time")
        elif p.provider == "wechat":
            if r.get("status") != "SUCCESS":
                continue
            ours, ref, when = (
                r.get("out_refund_no"),
                r.get("refund_id"),
                r.get("success_time") or r.get("create_time"),
            )
        else:  # alipay
            ours, ref, when = r.get("out_request_no"), r.get("out_request_no"), None
        yield str(ref), _uuid(ours), int(r["amount"]), _time(when, fallback)


def rows(
    store_url: str, provider: str | None = None, day: date | None = None
) -> Iterator[dict[str, str]]:
    with sessions(store_url)() as session:
        query = (
            select(SimPayment)
            .where(SimPayment.status == "succeeded")
            .order_by(SimPayment.settled_at)
        )
        if provider:
            query = query.where(SimPayment.provider == provider)
        for p in session.scalars(query):
            settled = p.settled_at or p.created_at
            if day is None or settled.date() == day:
                yield {
                    "provider": p.provider,
                    "type": "payment",
                    "provider_reference": p.reference,
                    "merchant_reference": _uuid(p.merchant_reference),
                    "amount": str(p.amount),
                    "currency": p.currency,
                    "settled_at": settled.isoformat(),
                }
            for ref, ours, amount, when in _refunds(p):
                if day is None or when.date() == day:
                    yield {
                        "provider": p.provider,
                        "type": "refund",
                        "provider_reference": ref,
                        "merchant_reference": ours,
                        "amount": str(amount),
                        "currency": p.currency,
                        "settled_at": when.isoformat(),
                    }


def write(f: TextIO, store_url: str, provider: str | None = None, day: date | None = None) -> int:
    writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows(store_url, provider, day):
        writer.writerow(row)
        count += 1
    return count
