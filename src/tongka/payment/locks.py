"""Row locks of a payment, in the one order every writer takes them: the order, then the payment."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.order import service as orders
from tongka.order.models import Order
from tongka.payment.models import Payment


def order_and_payment(session: Session, payment: Payment) -> tuple[Order, Payment]:
    """Lock the payment's order, then the payment, both fresh from the database.

    The payment takes FOR NO KEY UPDATE: it must not wait on the key-share lock that
    another callback's inbox row (which references the payment) holds while that one
    waits for the order.
    """
    order = orders.lock(session, payment.order_id)
    assert order is not None
    locked = session.scalars(
        select(Payment)
        .where(Payment.id == payment.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()
    return order, locked
