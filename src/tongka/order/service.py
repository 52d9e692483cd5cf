"""Renewals: an order for a pack on a line, paid, then fulfilled into a bucket.

States move only along `ALLOWED`, each move a guarded
`UPDATE ... WHERE status = :from`, so two workers can never both make the same move.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account import lines
from tongka.account.models import Account
from tongka.catalog import service as catalog
from tongka.charging import notify as charging_notify
from tongka.errors import Conflict, NotFound
from tongka.i18n import _
from tongka.ledger import buckets
from tongka.order.models import Order
from tongka.promotion import service as promotions

ALLOWED: dict[str, set[str]] = {
    "awaiting_payment": {"paid", "cancelled", "expired"},
    # A payment that succeeds after the order expired still buys the pack: the money arrived.
    "expired": {"paid"},
    "paid": {"fulfilled"},
    "fulfilled": set(),
    "cancelled": set(),
}


class OrderNotFound(NotFound):
    code = "order_not_found"
    message = _("No such order.")


class OrderStateConflict(Conflict):
    code = "order_state_conflict"
    message = _("This order is {status} and cannot become {target}.")


def transition(session: Session, order: Order, target: str, **values: object) -> bool:
    """Move `order` to `target` if it is still in the state we read; False if someone else moved it first."""
    if target not in ALLOWED.get(order.status, set()):
        raise OrderStateConflict(status=order.status, target=target)
    result = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status == order.status)
        .values(status=target, **values)
    )
    session.refresh(order)
    moved = result.rowcount == 1  # type: ignore[attr-defined]
    if moved and target in ("expired", "cancelled"):
        promotions.release_order(session, order.id, target)  # its offers go back to their budgets
    return moved


def create(
    session: Session,
    account: Account,
    *,
    line_id: uuid.UUID,
    pack_id: uuid.UUID,
    currency: str,
    channel: str,
    payment_ttl_seconds: int,
    quote_id: uuid.UUID | None = None,
    coupon_code: str | None = None,
    secret: str | None = None,
) -> Order:
    """An order at the price of its quote (made now if none is given): the catalog's price less the
    offers the customer has; whatever price the client sent plays no part. `secret` reads coupon codes."""
    line = lines.own_line(session, account, line_id)
    pack = catalog.pack_for_sale(session, pack_id, channel)
    asked = {
        "line": line,
        "pack": pack,
        "currency": currency,
        "channel": channel,
        "coupon_code": coupon_code,
        "secret": secret,
    }
    if quote_id is None:
        quote = promotions.quote(session, account, **asked)  # type: ignore[arg-type]
    else:
        quote = promotions.use_quote(session, account, quote_id, **asked)  # type: ignore[arg-type]
    order = Order(
        account_id=account.id,
        line_id=line.id,
        pack_id=pack.id,
        channel=channel,
        status="awaiting_payment",
        amount=quote.amount,
        currency=quote.currency,
        list_amount=quote.list_amount,
        list_currency=quote.list_currency,
        fx_rate_micros=quote.fx_rate_micros,
        quote_id=quote.id,
        breakdown=quote.breakdown,
        zone=pack.zone,
        volume_bytes=pack.volume_bytes,
        validity_days=pack.validity_days,
        expires_at=clock.now() + timedelta(seconds=payment_ttl_seconds),
    )
    session.add(order)
    session.flush()
    promotions.attach(session, quote, order)
    return order


def own_order(session: Session, account: Account, order_id: uuid.UUID) -> Order:
    order = session.get(Order, order_id)
    if order is None or order.account_id != account.id:
        raise OrderNotFound()
    return order


def orders_of(session: Session, account: Account, limit: int = 100) -> list[Order]:
    return list(
        session.scalars(
            select(Order)
            .where(Order.account_id == account.id)
            .order_by(Order.created_at.desc())
            .limit(limit)
        )
    )


def lock(session: Session, order_id: uuid.UUID) -> Order | None:
    """Lock an order row (lock order: account, then order, then payment)."""
    return session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update(of=Order)
        .execution_options(populate_existing=True)
    )


def mark_paid_and_fulfil(session: Session, order: Order) -> bool:
    """Pay and fulfil a locked order in one transaction: the bucket exists exactly when the order is fulfilled.

    False if the order can no longer be paid (it was cancelled): the caller keeps the
    money on record for a refund.
    """
    if "paid" not in ALLOWED[order.status]:
        return order.status in ("paid", "fulfilled")
    if order.status == "expired" and not promotions.retake(session, order):
        return False  # its offers' budgets were spent meanwhile: the money goes back rather than overspend
    if transition(session, order, "paid", paid_at=clock.now()):
        fulfil(session, order)
    return True


def cancel(session: Session, account: Account, order_id: uuid.UUID) -> Order:
    """The owner gives up an unpaid order. A payment that still succeeds later is kept for a refund."""
    order = own_order(session, account, order_id)
    order = lock(session, order.id) or order
    if order.status == "cancelled":
        return order
    if not transition(session, order, "cancelled", closed_at=clock.now()):
        raise OrderStateConflict(status=order.status, target="cancelled")
    return order


def fulfil(session: Session, order: Order) -> None:
    now = clock.now()
    bucket = buckets.grant(
        session,
        line_id=order.line_id,
        zone=order.zone,
        amount=order.volume_bytes,
        valid_from=now,
        expires_at=now + timedelta(days=order.validity_days),
        reason="pack_purchase",
        reference=f"order:{order.id}",
    )
    transition(session, order, "fulfilled", fulfilled_at=now, bucket_id=bucket.id)
    promotions.fulfil(session, order, now)
    # A session in progress on the line hears of its new quota now, not at its next update.
    charging_notify.quota_changed(session, order.line_id)


def expire_unpaid(session: Session, now: datetime | None = None) -> int:
    """Close orders left unpaid past their time. Safe to run from several workers."""
    now = now or clock.now()
    due = session.scalars(
        select(Order)
        .where(Order.status == "awaiting_payment", Order.expires_at <= now)
        .order_by(Order.expires_at)
    ).all()
    promotions.release_lapsed_quotes(session, now)
    return sum(1 for order in due if transition(session, order, "expired", closed_at=now))
