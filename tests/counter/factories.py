"""Counter sales for the till's tests: a store order placed and paid through the admin API (as the
counter does), and the `counter_sales` row the counter's pages would write beside it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests import factories as f
from tongka import clock
from tongka.counter.models import CounterSale
from tongka.db import transaction
from tongka.order.models import Order
from tongka.payment.models import Refund
from tongka.staff.models import StaffMember


def as_staff(client: httpx.Client, who: f.StaffLogin) -> None:
    """`client` is now `who`'s browser: their session cookie (one client holds one)."""
    client.cookies.set("tongka_staff", who.headers["Authorization"].removeprefix("Bearer "))


def member(sessions: sessionmaker[Session], username: str) -> StaffMember:
    with sessions() as s:
        found = s.scalars(select(StaffMember).where(StaffMember.username == username)).one()
        s.expunge(found)
        return found


def sale(
    client: httpx.Client,
    sessions: sessionmaker[Session],
    operator: dict[str, str],
    line_id: str,
    seller: f.StaffLogin,
    *,
    shift_id: uuid.UUID | None = None,
    method: str = "cash",
    tendered: int | None = None,
    change: int | None = None,
    paid_at: datetime | None = None,
    pack: str = "hk-5gb-30d",
) -> dict[str, Any]:
    """One paid counter sale by `seller`; returns {"order_id", "payment_id", "amount", "sale_id"}."""
    r = client.post(
        "/api/v1/admin/orders",
        json={
            "line_id": line_id,
            "pack_id": f.pack_id(client, pack),
            "currency": "HKD",
            "payment_method": "card_terminal" if method == "card_terminal" else "cash",
        },
        headers={**operator, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    order = r.json()
    recorded = client.post(
        f"/api/v1/admin/payments/{order['payment']['id']}/record",
        json={"store": "lw01", "reference": "SLIP-1" if method == "card_terminal" else None},
        headers=operator,
    )
    assert recorded.status_code == 200, recorded.text
    staff = member(sessions, seller.username)
    with transaction(sessions) as s:
        row = s.get_one(Order, uuid.UUID(order["id"]))
        counter_sale = CounterSale(
            order_id=row.id,
            payment_id=uuid.UUID(order["payment"]["id"]),
            store_id=staff.store_id,
            staff_id=staff.id,
            shift_id=shift_id,
            pack_id=row.pack_id,
            method=method,
            currency=row.currency,
            amount=row.amount,
            tendered=tendered,
            change=change,
            paid_at=paid_at or clock.now(),
        )
        s.add(counter_sale)
        s.flush()
        sale_id = counter_sale.id
        amount = row.amount
    return {
        "order_id": order["id"],
        "payment_id": order["payment"]["id"],
        "amount": amount,
        "sale_id": sale_id,
    }


def refund(
    sessions: sessionmaker[Session],
    payment_id: str,
    amount: int,
    *,
    at: datetime | None = None,
    status: str = "succeeded",
) -> None:
    """A refund of a counter sale's payment as the refund flow records it (its row only)."""
    with transaction(sessions) as s:
        s.add(
            Refund(
                payment_id=uuid.UUID(payment_id),
                amount=amount,
                currency="HKD",
                status=status,
                reason="customer changed their mind",
                requested_by="operator:test",
                created_at=at or clock.now(),
                settled_at=(at or clock.now()) if status == "succeeded" else None,
            )
        )
