"""Orders: a pack for a line at a quoted price, paid, then fulfilled into a bucket.

This domain keeps the order's own row and its states; what a move means for the other
domains (the offers, the bucket, the receipt) is decided by the renewal flow
(renewal/flow.py), which calls these functions.

States move only along `ALLOWED`, each move a guarded
`UPDATE ... WHERE status = :from`, so two workers can never both make the same move.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, exists, select, update
from sqlalchemy.orm import Session, joinedload, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from tongka import clock
from tongka.account.models import Account
from tongka.catalog.models import Pack
from tongka.errors import Conflict, NotFound
from tongka.i18n import _
from tongka.order.models import Order

ALLOWED: dict[str, set[str]] = {
    "awaiting_payment": {"paid", "cancelled", "expired"},
    # A payment that succeeds after the order expired still buys the pack: the money arrived.
    "expired": {"paid"},
    "paid": {"fulfilled"},
    "fulfilled": set(),
    "cancelled": set(),
}


# An order shows its pack's code and names, never its prices (the order has its own price):
# load the pack with the order but not the pack's prices, unless something asks for them.
WITH_PACK = joinedload(Order.pack).lazyload(Pack.prices)


class OrderNotFound(NotFound):
    code = "order_not_found"
    message = _("No such order.")


class OrderStateConflict(Conflict):
    code = "order_state_conflict"
    message = _("This order is {status} and cannot become {target}.")


@dataclass(frozen=True)
class Price:
    """The price an order charges, as quoted (promotion's quote, copied by the flow)."""

    quote_id: uuid.UUID
    amount: int
    currency: str
    list_amount: int
    list_currency: str
    fx_rate_micros: int | None
    breakdown: dict[str, Any]


def transition(session: Session, order: Order, target: str, **values: Any) -> bool:
    """Move `order` to `target` if it is still in the state we read; False if someone else moved it first."""
    if target not in ALLOWED.get(order.status, set()):
        raise OrderStateConflict(status=order.status, target=target)
    result = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status == order.status)
        .values(status=target, **values),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(order)  # someone else moved it: show what they made of it
        return False
    # Our UPDATE is what the row now holds: set it on the object as loaded, rather than read it back.
    for key, value in {"status": target, **values}.items():
        set_committed_value(order, key, value)
    return True


def create(
    session: Session,
    account: Account,
    *,
    line_id: uuid.UUID,
    pack: Pack,
    channel: str,
    price: Price,
    payment_ttl_seconds: int,
) -> Order:
    """An order for `pack` on the line at `price`; what was sold is copied from the pack as it is now."""
    order = Order(
        account_id=account.id,
        line_id=line_id,
        pack_id=pack.id,
        channel=channel,
        status="awaiting_payment",
        amount=price.amount,
        currency=price.currency,
        list_amount=price.list_amount,
        list_currency=price.list_currency,
        fx_rate_micros=price.fx_rate_micros,
        quote_id=price.quote_id,
        breakdown=price.breakdown,
        zone=pack.zone,
        volume_bytes=pack.volume_bytes,
        validity_days=pack.validity_days,
        expires_at=clock.now() + timedelta(seconds=payment_ttl_seconds),
    )
    order.pack = pack
    session.add(order)
    session.flush()
    return order


def own_order(session: Session, account: Account, order_id: uuid.UUID) -> Order:
    order = session.get(Order, order_id, options=[WITH_PACK])
    if order is None or order.account_id != account.id:
        raise OrderNotFound()
    return order


def get(session: Session, order_id: uuid.UUID) -> Order:
    order = session.get(Order, order_id, options=[WITH_PACK])
    if order is None:
        raise OrderNotFound()
    return order


def orders_of(session: Session, account: Account, limit: int = 100) -> list[Order]:
    return list(
        session.scalars(
            select(Order)
            .options(WITH_PACK)
            .where(Order.account_id == account.id)
            .order_by(Order.created_at.desc())
            .limit(limit)
        )
    )


def packs_of_buckets(session: Session, bucket_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Pack]:
    """The pack bought into each of these buckets (by the order fulfilled into it); a bucket no
    order made (a promotion's bonus) is left out."""
    if not bucket_ids:
        return {}
    rows = session.execute(
        select(Order.bucket_id, Pack)
        .join(Pack, Pack.id == Order.pack_id)
        .options(lazyload(Pack.prices))
        .where(Order.bucket_id.in_(set(bucket_ids)))
    )
    return {bucket_id: pack for bucket_id, pack in rows if bucket_id is not None}


def lock(session: Session, order_id: uuid.UUID) -> Order | None:
    """Lock an order row (lock order: account, then order, then payment)."""
    return session.scalar(
        select(Order)
        .options(WITH_PACK)
        .where(Order.id == order_id)
        .with_for_update(of=Order)
        .execution_options(populate_existing=True)
    )


def is_new_customer(session: Session, account_id: uuid.UUID) -> bool:
    """'New' and 'first top-up': the account has never had an order fulfilled (refunded ones count too)."""
    return not session.scalar(
        select(exists().where(Order.account_id == account_id, Order.status == "fulfilled"))
    )


def unpaid_due(session: Session, now: datetime) -> list[Order]:
    """Orders left unpaid past their time, oldest deadline first."""
    return list(
        session.scalars(
            select(Order)
            .options(WITH_PACK)
            .where(Order.status == "awaiting_payment", Order.expires_at <= now)
            .order_by(Order.expires_at)
        ).all()
    )


def ids_of(account_id: uuid.UUID, line_id: uuid.UUID | None = None) -> Select[uuid.UUID]:
    """The ids of the account's orders (of one of its lines, if given), as a subquery for other domains."""
    query = select(Order.id).where(Order.account_id == account_id)
    return query if line_id is None else query.where(Order.line_id == line_id)


def statement(
    session: Session,
    account_id: uuid.UUID,
    *,
    line_id: uuid.UUID | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[Order]:
    """The account's orders made in [start, end) (of a line, in a state, if given), newest first."""
    query = select(Order).options(WITH_PACK).where(Order.account_id == account_id)
    if line_id is not None:
        query = query.where(Order.line_id == line_id)
    if start is not None:
        query = query.where(Order.created_at >= start)
    if end is not None:
        query = query.where(Order.created_at < end)
    if status is not None:
        query = query.where(Order.status == status)
    # The id breaks ties, so that pages of a list cut it in the same place every time.
    return list(
        session.scalars(query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit))
    )


def by_ids(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, Order]:
    if not ids:
        return {}
    return {
        o.id: o for o in session.scalars(select(Order).options(WITH_PACK).where(Order.id.in_(ids)))
    }
