"""Payment test helpers: what an order looks like to its owner, and what tongka took in."""

from __future__ import annotations

from sqlalchemy import func, select

from tongka.ledger.models import Bucket
from tongka.payment.models import PaymentCallback


def status(client, headers, order) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(order status, latest payment status), as the owner sees them."""
    o = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    return o["status"], o["payment"]["status"]


def bucket_count(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Bucket)) or 0


def inbox(sessions) -> list[PaymentCallback]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return list(s.scalars(select(PaymentCallback).order_by(PaymentCallback.created_at)))
