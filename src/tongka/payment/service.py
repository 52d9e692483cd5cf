"""Payments: start an attempt with a provider, take in the provider's callbacks exactly once,
and settle an attempt (its state and the money in the ledger).

This domain knows payments, not orders: it is given what to charge as a `Payable` and
reports what happened as plain strings and records. What a settled payment means for the
order (fulfilment, the offers, the receipt) is the renewal flow's (renewal/flow.py).

A callback is verified by its provider and stored in the inbox under (provider, event
id) in the transaction that applies it. A duplicate meets the inbox's unique key and
changes nothing; a concurrent duplicate waits on that key and then finds it taken.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime

import structlog
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from tongka import clock
from tongka.errors import NotFound, Unprocessable
from tongka.i18n import _
from tongka.ledger import service as ledger
from tongka.payment.models import Payment, PaymentCallback, Refund
from tongka.payment.providers import METHOD_PROVIDER, method_offered
from tongka.payment.providers.base import (
    CallbackAnswer,
    Checkout,
    PaymentEvent,
    PaymentRequest,
    Provider,
)

log = structlog.get_logger()


class MethodUnavailable(Unprocessable):
    code = "payment_method_unavailable"
    message = _("{method} cannot be used here. Choose another way to pay.")


class ProviderUnknown(NotFound):
    code = "provider_unknown"
    message = _("No such payment provider.")


class PaymentNotFound(NotFound):
    code = "payment_not_found"
    message = _("No such payment.")


@dataclass(frozen=True)
class Payable:
    """What a payment is asked to collect, and for what (given by the flow, from an order or a
    wallet top-up: exactly one of the two ids)."""

    order_id: uuid.UUID | None
    amount: int
    currency: str
    channel: str
    region: str  # the payer's: which methods are offered
    description: str  # shown by the provider, e.g. "tongka both-5gb-30d"
    topup_id: uuid.UUID | None = None


@dataclass
class Callback:
    """A verified provider callback, stored in the inbox: what the flow applies."""

    answer: CallbackAnswer  # what the provider must be told, whatever happens next
    event: PaymentEvent | None = None  # None: a duplicate, or a payment we do not know
    payment: Payment | None = None
    inbox: PaymentCallback | None = None


@dataclass(frozen=True)
class Opening:
    """A payment attempt written but not yet opened at its provider: what the provider is asked."""

    provider: str
    request: PaymentRequest


def prepare(
    session: Session,
    payable: Payable,
    method: str,
    providers: Mapping[str, Provider],
    base_url: str,
    payer_ip: str | None = None,
) -> tuple[Payment, Opening | None]:
    """The attempt's row for `payable` with the provider carrying `method`, and what to ask that
    provider (`open_checkout`, outside any transaction; then `record_checkout`).

    Nothing to pay (offers brought it to zero) asks no provider: the attempt, provider `free`,
    is left pending for the caller to settle at once, and no opening is returned.
    """
    if not method_offered(method, payable.channel, payable.currency, payable.region):
        raise MethodUnavailable(method=method)
    if payable.amount == 0:
        free = Payment(
            id=uuid.uuid4(),
            order_id=payable.order_id,
            topup_id=payable.topup_id,
            provider="free",
            method=method,
            amount=0,
            currency=payable.currency,
        )
        session.add(free)
        session.flush()
        return free, None
    # The method's provider, or in sandbox mode (the only one with a "sandbox") the generic sandbox.
    provider = providers.get(METHOD_PROVIDER.get(method, "")) or providers.get("sandbox")
    if provider is None:
        raise MethodUnavailable(method=method)
    payment = Payment(
        id=uuid.uuid4(),
        order_id=payable.order_id,
        topup_id=payable.topup_id,
        provider=provider.name,
        method=method,
        amount=payable.amount,
        currency=payable.currency,
    )
    session.add(payment)
    session.flush()
    return payment, opening_of(payment, payable.description, base_url, payer_ip)


def opening_of(
    payment: Payment, description: str, base_url: str, payer_ip: str | None = None
) -> Opening:
    """What the provider is asked for `payment` (the same each time: the provider keys it on our id).
    `payer_ip`: the payer's address, which WeChat Pay H5 must be given (not kept: an attempt asked
    again after a crash goes without it, and WeChat refuses it)."""
    base = base_url.rstrip("/")
    # Where the payer comes back to: the page that follows what they paid for.
    back = (
        f"/orders/{payment.order_id}"
        if payment.topup_id is None
        else f"/wallet/topups/{payment.topup_id}"
    )
    return Opening(
        provider=payment.provider,
        request=PaymentRequest(
            payment_id=str(payment.id),
            amount=payment.amount,
            currency=payment.currency,
            method=payment.method,
            description=description,
            notify_url=f"{base}/api/v1/payments/callbacks/{payment.provider}",
            return_url=base + back,
            payer_ip=payer_ip,
        ),
    )


def open_checkout(opening: Opening, providers: Mapping[str, Provider]) -> Checkout:
    """Ask the provider to open the payment (an outbound call: outside any transaction).

    Asking again for the same payment is safe: every provider keys the attempt on our payment
    id (Stripe's idempotency key, PayPal-Request-Id, Alipay's and WeChat Pay's out_trade_no)."""
    provider = providers.get(opening.provider)
    if provider is None:
        raise MethodUnavailable(method=opening.request.method)
    return provider.start(opening.request)


# Methods whose provider signs the browser's page afresh each time (a URL too long to keep): Alipay's
# web cashier (page pay, which sends the payer back to the order) and its mobile-web cashier.
SIGNED_PAGES = {"alipay": "page_pay_url", "alipay_wap": "wap_pay_url"}


def browser_url(
    payment: Payment, description: str, base_url: str, providers: Mapping[str, Provider]
) -> str | None:
    """Where the payer's browser pays a pending attempt: the page its provider signs afresh, or its
    checkout page; None: none (a QR code only). Alipay's precreate link (kept for the app) is a QR
    code's content, which returns nobody to the order; its web cashier does."""
    signer = SIGNED_PAGES.get(payment.method)
    sign = getattr(providers.get(payment.provider), signer, None) if signer else None
    if sign is not None:
        return str(sign(opening_of(payment, description, base_url).request))
    return payment.checkout_url


def record_checkout(session: Session, payment_id: uuid.UUID, checkout: Checkout) -> Payment:
    """Keep where the payer pays (the provider's reference, its page or QR code)."""
    payment = get(session, payment_id)
    payment.provider_reference = checkout.provider_reference
    payment.checkout_url = checkout.checkout_url
    payment.qr_content = checkout.qr_content
    session.flush()
    return payment


def get(session: Session, payment_id: uuid.UUID) -> Payment:
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise PaymentNotFound()
    return payment


def latest_payment(session: Session, order_id: uuid.UUID) -> Payment | None:
    return session.scalar(
        select(Payment)
        .where(Payment.order_id == order_id)
        .order_by(Payment.created_at.desc())
        .limit(1)
    )


def lock(session: Session, payment_id: uuid.UUID) -> Payment:
    """Lock a payment row, fresh from the database (lock order: account, then order, then payment).

    FOR NO KEY UPDATE: it must not wait on the key-share lock that another callback's
    inbox row (which references the payment) holds while that one waits for the order.
    """
    return session.scalars(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()


def receive(
    session: Session,
    providers: Mapping[str, Provider],
    provider_name: str,
    headers: Mapping[str, str],
    body: bytes,
) -> Callback:
    """Verify a callback and store it in the inbox; the flow then applies it and sets `inbox.result`."""
    provider = providers.get(provider_name)
    if provider is None:
        raise ProviderUnknown()
    try:
        event = provider.parse_callback(headers, body)
    except Exception:
        log.warning("payment_callback_refused", provider=provider_name, size=len(body))
        raise
    answer = provider.acknowledge()
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
        return Callback(answer)

    payment = session.get(Payment, payment_id) if payment_id else None
    if payment is None or payment.provider != provider_name:
        inbox.result = "unknown_payment"
        log.warning(
            "payment_callback_unknown_payment", provider=provider_name, event_id=event.event_id
        )
        return Callback(answer)
    inbox.payment_id = payment.id
    return Callback(answer, event, payment, inbox)


def settle(session: Session, payment: Payment, outcome: str, amount: int, currency: str) -> str:
    """Apply a verified outcome (succeeded / failed) to a locked payment; returns what happened.

    "applied" on a change, "ignored" if the payment was already settled so, and
    "amount_mismatch" (held for review) if the money is not what was asked for. A success
    books the money the provider now owes us: as a sale, or for a wallet top-up into
    `wallet_funding`, which the wallet is credited from (revenue only once overage spends it).
    A payer may try again after a decline (a card provider keeps the payment open), so a
    success also settles a payment we had marked failed.
    """
    if outcome not in ("succeeded", "failed"):
        raise ValueError(f"not a payment outcome: {outcome}")
    settles = ("pending", "failed") if outcome == "succeeded" else ("pending",)
    if payment.status not in settles:
        return "ignored"
    if (amount, currency) != (payment.amount, payment.currency):
        return "amount_mismatch"
    payment.status, payment.settled_at = outcome, clock.now()
    if outcome == "succeeded" and payment.amount > 0:
        ledger.transfer(
            session,
            ledger.system_account(session, f"clearing.{payment.provider}", payment.currency),
            ledger.system_account(session, income_account(payment), payment.currency),
            payment.amount,
            reason="payment",
            reference=f"payment:{payment.id}",
        )
    return "applied"


def income_account(payment: Payment) -> str:
    """The operator's account a payment's money goes into: sales, or the wallets' funding for a top-up."""
    return "sales" if payment.topup_id is None else "wallet_funding"


def payments_of_order(session: Session, order_id: uuid.UUID) -> list[Payment]:
    """An order's payment attempts, newest first."""
    return list(
        session.scalars(
            select(Payment).where(Payment.order_id == order_id).order_by(Payment.created_at.desc())
        )
    )


def payments_of_topup(session: Session, topup_id: uuid.UUID) -> list[Payment]:
    return list(
        session.scalars(
            select(Payment).where(Payment.topup_id == topup_id).order_by(Payment.created_at.desc())
        )
    )


def _paid_for(
    order_ids: Select[uuid.UUID], topup_ids: Select[uuid.UUID] | None
) -> ColumnElement[bool]:
    condition = Payment.order_id.in_(order_ids)
    return condition if topup_ids is None else condition | Payment.topup_id.in_(topup_ids)


def statement(
    session: Session,
    *,
    order_ids: Select[uuid.UUID],
    topup_ids: Select[uuid.UUID] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[Payment]:
    """The payments of these orders and top-ups made in [start, end) (in a state, if given), newest first."""
    query = select(Payment).where(_paid_for(order_ids, topup_ids))
    if start is not None:
        query = query.where(Payment.created_at >= start)
    if end is not None:
        query = query.where(Payment.created_at < end)
    if status is not None:
        query = query.where(Payment.status == status)
    # The id breaks ties, so that pages of a list cut it in the same place every time.
    return list(
        session.scalars(query.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit))
    )


def refund_statement(
    session: Session,
    *,
    order_ids: Select[uuid.UUID],
    topup_ids: Select[uuid.UUID] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[tuple[Refund, Payment]]:
    """The refunds of these orders' and top-ups' payments asked in [start, end), with their payment, newest first."""
    query = (
        select(Refund, Payment)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(_paid_for(order_ids, topup_ids))
    )
    if start is not None:
        query = query.where(Refund.created_at >= start)
    if end is not None:
        query = query.where(Refund.created_at < end)
    if status is not None:
        query = query.where(Refund.status == status)
    rows = session.execute(
        query.order_by(Refund.created_at.desc(), Refund.id.desc()).limit(limit)
    ).all()
    return [(refund, payment) for refund, payment in rows]
