"""Payments: start an attempt with a provider, and take in the provider's callbacks exactly once.

A callback is verified by its provider, stored in the inbox under (provider, event
id), and applied in the same transaction: the payment succeeds, the order is paid and
fulfilled, the money is booked. A duplicate meets the inbox's unique key and changes
nothing; a concurrent duplicate waits on that key and then finds it taken.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Account
from tongka.errors import NotFound, Unprocessable
from tongka.i18n import _
from tongka.ledger import service as ledger
from tongka.order import service as orders
from tongka.order.models import Order
from tongka.payment import locks, refunds
from tongka.payment.models import Payment, PaymentCallback
from tongka.payment.providers import METHOD_PROVIDER, method_offered
from tongka.payment.providers.base import CallbackAnswer, PaymentRequest, Provider
from tongka.receipt import service as receipts

log = structlog.get_logger()


class MethodUnavailable(Unprocessable):
    code = "payment_method_unavailable"
    message = _("{method} cannot be used here. Choose another way to pay.")


class ProviderUnknown(NotFound):
    code = "provider_unknown"
    message = _("No such payment provider.")


def start(
    session: Session,
    order: Order,
    method: str,
    providers: Mapping[str, Provider],
    base_url: str,
    *,
    receipt_key: str | None = None,
) -> Payment:
    """A payment attempt for the order with the provider carrying `method`.

    An order that offers brought to zero asks no provider: its payment of 0 succeeds at
    once (provider `free`), so it is fulfilled and gets its receipt like any other.
    """
    account = session.get(Account, order.account_id)
    if not method_offered(
        method, order.channel, order.currency, account.region if account else "hk"
    ):
        raise MethodUnavailable(method=method)
    if order.amount == 0:
        free = Payment(
            id=uuid.uuid4(),
            order_id=order.id,
            provider="free",
            method=method,
            amount=0,
            currency=order.currency,
        )
        session.add(free)
        session.flush()
        apply(session, free, "succeeded", 0, order.currency, receipt_key=receipt_key)
        return free
    # The method's provider, or in sandbox mode (the only one with a "sandbox") the generic sandbox.
    provider = providers.get(METHOD_PROVIDER.get(method, "")) or providers.get("sandbox")
    if provider is None:
        raise MethodUnavailable(method=method)
    payment = Payment(
        id=uuid.uuid4(),
        order_id=order.id,
        provider=provider.name,
        method=method,
        amount=order.amount,
        currency=order.currency,
    )
    checkout = provider.start(
        PaymentRequest(
            payment_id=str(payment.id),
            amount=payment.amount,
            currency=payment.currency,
            method=method,
            description=f"tongka {order.pack.code}",
            notify_url=f"{base_url.rstrip('/')}/api/v1/payments/callbacks/{provider.name}",
            return_url=f"{base_url.rstrip('/')}/orders/{order.id}",
        )
    )
    payment.provider_reference = checkout.provider_reference
    payment.checkout_url = checkout.checkout_url
    payment.qr_content = checkout.qr_content
    session.add(payment)
    session.flush()
    return payment


def latest_payment(session: Session, order_id: uuid.UUID) -> Payment | None:
    return session.scalar(
        select(Payment)
        .where(Payment.order_id == order_id)
        .order_by(Payment.created_at.desc())
        .limit(1)
    )


def handle_callback(
    session: Session,
    providers: Mapping[str, Provider],
    provider_name: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    receipt_key: str | None = None,
) -> CallbackAnswer:
    provider = providers.get(provider_name)
    if provider is None:
        raise ProviderUnknown()
    try:
        event = provider.parse_callback(headers, body)
    except Exception:
        log.warning("payment_callback_refused", provider=provider_name, size=len(body))
        raise
    try:
        payment_id: uuid.UUID | None = uuid.UUID(event.payment_id)
    except ValueError:
        payment_id = None
    inbox = PaymentCallback(
        provider=provider_name,
        event_id=event.event_id,
        payload=json.dumps(asdict(event)),
        result="received",
    )
    try:
        with session.begin_nested():
            session.add(inbox)
    except IntegrityError:
        log.info("payment_callback_duplicate", provider=provider_name, event_id=event.event_id)
        return provider.acknowledge()

    payment = session.get(Payment, payment_id) if payment_id else None
    if payment is None or payment.provider != provider_name:
        inbox.result = "unknown_payment"
        log.warning(
            "payment_callback_unknown_payment", provider=provider_name, event_id=event.event_id
        )
        return provider.acknowledge()
    inbox.payment_id = payment.id
    if event.refund_id is not None:
        inbox.result = refunds.settle(
            session, payment, event.refund_id, event.outcome, event.amount
        )
    elif event.outcome == "refunded":
        inbox.result = (
            "unknown_refund"  # a refund made outside tongka (the provider's dashboard): for review
        )
    else:
        inbox.result = apply(
            session, payment, event.outcome, event.amount, event.currency, receipt_key=receipt_key
        )
    log.info(
        "payment_callback", provider=provider_name, event_id=event.event_id, result=inbox.result
    )
    return provider.acknowledge()


def apply(
    session: Session,
    payment: Payment,
    outcome: str,
    amount: int,
    currency: str,
    *,
    receipt_key: str | None = None,
    store: str | None = None,
    staff: str | None = None,
) -> str:
    """Apply a verified payment outcome (succeeded / failed) to a payment and its order; returns what happened.

    A success gets a receipt signed with `receipt_key` (None: no receipt). A payer may try
    again after a decline (a card provider keeps the payment open), so a success also
    settles a payment we had marked failed.
    """
    if outcome not in ("succeeded", "failed"):
        raise ValueError(f"not a payment outcome: {outcome}")
    order, payment = locks.order_and_payment(session, payment)
    settles = ("pending", "failed") if outcome == "succeeded" else ("pending",)
    if payment.status not in settles:
        return "ignored"
    if (amount, currency) != (payment.amount, payment.currency):
        # Held for review: the money that arrived is not what was asked for.
        return "amount_mismatch"
    now = clock.now()
    if outcome == "failed":
        payment.status, payment.settled_at = "failed", now
        return "applied"
    payment.status, payment.settled_at = "succeeded", now
    if payment.amount > 0:  # the money the provider now owes us, booked as a sale
        ledger.transfer(
            session,
            ledger.system_account(session, f"clearing.{payment.provider}", payment.currency),
            ledger.system_account(session, "sales", payment.currency),
            payment.amount,
            reason="payment",
            reference=f"payment:{payment.id}",
        )
    fulfilled = orders.mark_paid_and_fulfil(session, order)
    if receipt_key is not None:  # money was taken, for a closed order too: the payer gets a receipt
        receipts.issue(
            session,
            payment,
            order,
            signing_key=receipt_key,
            issuer=store or receipts.ONLINE,
            store=store,
            staff=staff,
        )
    if not fulfilled:
        # Paid for an order the customer had cancelled: the money goes back (sent by `payments sync`).
        log.warning(
            "payment_for_closed_order", payment_id=str(payment.id), order_status=order.status
        )
        refunds.for_closed_order(session, payment)
        return "paid_closed_order"
    return "applied"
