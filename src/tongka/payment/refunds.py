"""Refunds: part or all of a succeeded payment, through its provider, with the data taken back.

Policy (pro-rated): money buys data at the pack's price per byte. Counting all refunds of
a payment together, refunding R in all takes back ceil(R × pack bytes / price) of the
bucket, so R can be at most floor((unused + taken back before) × price / pack bytes).
Data already used is never refunded; rounding is against the customer by under one
byte's worth, and refunding everything that is left takes back everything that is left.
A payment for an order that was not fulfilled (cancelled) can be refunded in full.
Once a payment is refunded in full (counting refunds that went through, `refunded_in_full`),
the renewal flow gives the order's offers back to their budgets and takes back what is
left of its bonus data; a partial refund keeps both.

What the payment bought comes in as a `Purchase` (the bucket and its size), given by the
renewal flow from the order: this module knows nothing else of orders. The caller holds
the order's and the payment's locks (renewal/flow.py `refund`).

A refund is a record of its own. The ledger moves the money back (`sales` → the
provider's clearing account) and the bytes out of the bucket (→ `data_refunded`) in the
same transaction that records the refund and asks the provider; if the provider cannot
be reached nothing is kept, and asking again with the same refund id refunds once
(providers take it as their idempotency key).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tongka import clock
from tongka.errors import Conflict, Unprocessable
from tongka.i18n import _
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket
from tongka.money import Money
from tongka.payment.models import Payment, Refund
from tongka.payment.providers.base import Provider, ProviderUnavailable, RefundRequest

log = structlog.get_logger()


class NotRefundable(Conflict):
    code = "payment_not_refundable"
    message = _("Only a payment that succeeded can be refunded.")


class RefundTooLarge(Conflict):
    code = "refund_exceeds_refundable"
    message = _(
        "At most {refundable} can be refunded: the rest paid for data already used or refunded."
    )


class RefundAmountInvalid(Unprocessable):
    code = "refund_amount_invalid"
    message = _("A refund is a positive amount in minor units.")


@dataclass(frozen=True)
class Purchase:
    """What a payment bought: the order's bucket (None: not fulfilled) and its size in bytes."""

    bucket_id: uuid.UUID | None
    volume_bytes: int


@dataclass(frozen=True)
class Refundable:
    amount: int  # minor units that can still be refunded
    unused_bytes: int | None  # None: the order has no bucket


def _refunded(session: Session, payment: Payment) -> tuple[int, int]:
    """(money, bytes) taken back by the payment's refunds so far."""
    money, data = session.execute(
        select(
            func.coalesce(func.sum(Refund.amount), 0),
            func.coalesce(func.sum(Refund.bytes_withdrawn), 0),
        ).where(Refund.payment_id == payment.id, Refund.status != "failed")
    ).one()
    return int(money), int(data)


def refundable(session: Session, payment: Payment, purchase: Purchase) -> Refundable:
    if payment.status != "succeeded":
        return Refundable(0, None)
    money_back, bytes_back = _refunded(session, payment)
    left = payment.amount - money_back
    bucket = session.get(Bucket, purchase.bucket_id) if purchase.bucket_id else None
    if bucket is None:
        return Refundable(max(left, 0), None)
    unused = bucket.account.available
    by_data = (unused + bytes_back) * payment.amount // purchase.volume_bytes - money_back
    return Refundable(max(min(left, by_data), 0), unused)


def bytes_for(total_refunded: int, payment: Payment, purchase: Purchase) -> int:
    """The data that `total_refunded` money buys back: rounded up, so no refunded money leaves data behind."""
    return -(-total_refunded * purchase.volume_bytes // payment.amount)


def refund(
    session: Session,
    providers: Mapping[str, Provider],
    payment: Payment,
    purchase: Purchase,
    *,
    amount: int,
    reason: str,
    requested_by: str,
    refund_id: uuid.UUID,
) -> Refund:
    """Refund `amount` of a locked payment (the caller checked `existing(refund_id)` first)."""
    if payment.status != "succeeded":
        raise NotRefundable()
    if not isinstance(amount, int) or amount <= 0:
        raise RefundAmountInvalid()
    allowed = refundable(session, payment, purchase)
    if amount > allowed.amount:
        raise RefundTooLarge(refundable=Money(allowed.amount, payment.currency).format())  # type: ignore[arg-type]

    record = Refund(
        id=refund_id,
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        reason=reason[:200],
        requested_by=requested_by[:64],
    )
    session.add(record)
    session.flush()
    _book(session, record, payment, purchase)
    send(providers, record, payment)
    return record


def existing(session: Session, refund_id: uuid.UUID) -> Refund | None:
    """The refund already made with this id, if any: asking again refunds once."""
    return session.get(Refund, refund_id)


def refunded_in_full(session: Session, payment: Payment) -> bool:
    """Whether refunds that went through now cover the whole (non-zero) payment."""
    if payment.amount <= 0:
        return False
    refunded = session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment.id, Refund.status == "succeeded"
        )
    )
    return int(refunded or 0) >= payment.amount


def _book(
    session: Session, record: Refund, payment: Payment, purchase: Purchase, *, reverse: bool = False
) -> None:
    reference = f"refund:{record.id}"
    sales = ledger.system_account(session, "sales", payment.currency)
    clearing = ledger.system_account(session, f"clearing.{payment.provider}", payment.currency)
    if reverse:
        ledger.transfer(
            session, clearing, sales, record.amount, reason="refund_failed", reference=reference
        )
        bucket = session.get(Bucket, purchase.bucket_id) if purchase.bucket_id else None
        if bucket is not None and record.bytes_withdrawn > 0:
            ledger.transfer(
                session,
                ledger.system_account(session, "data_refunded", bucket.unit),
                bucket.account,
                record.bytes_withdrawn,
                reason="refund_failed",
                reference=reference,
            )
        return
    ledger.transfer(session, sales, clearing, record.amount, reason="refund", reference=reference)
    bucket = session.get(Bucket, purchase.bucket_id) if purchase.bucket_id else None
    if bucket is not None:
        money_back, bytes_back = _refunded(session, payment)  # this refund included (it is flushed)
        record.bytes_withdrawn = min(
            bytes_for(money_back, payment, purchase) - bytes_back, bucket.account.available
        )
        if record.bytes_withdrawn > 0:
            ledger.transfer(
                session,
                bucket.account,
                ledger.system_account(session, "data_refunded", bucket.unit),
                record.bytes_withdrawn,
                reason="refund",
                reference=reference,
            )


def send(providers: Mapping[str, Provider], record: Refund, payment: Payment) -> None:
    """Ask the provider to carry out a recorded refund (again, if need be: it is idempotent on our id)."""
    provider = providers.get(payment.provider)
    if provider is None:
        raise ProviderUnavailable()
    result = provider.refund(
        RefundRequest(
            refund_id=str(record.id),
            payment_id=str(payment.id),
            provider_reference=payment.provider_reference or "",
            amount=record.amount,
            currency=record.currency,
            payment_amount=payment.amount,
            reason=record.reason,
        )
    )
    record.provider_refund_id = result.provider_refund_id
    if result.status == "succeeded":
        record.status, record.settled_at = "succeeded", clock.now()
    elif result.status == "failed":
        # The provider said no: nothing was refunded, and the caller's rollback undoes the refund's entries.
        raise ProviderUnavailable()
    log.info(
        "refund_requested", refund_id=str(record.id), status=record.status, amount=record.amount
    )


def settle(
    session: Session,
    payment: Payment,
    purchase: Purchase,
    refund_id: str,
    outcome: str,
    amount: int,
) -> str:
    """A provider's word on one of our refunds: it went through ("refunded") or it did not ("failed")."""
    try:
        record = session.get(Refund, uuid.UUID(refund_id))
    except ValueError:
        record = None
    if record is None or record.payment_id != payment.id:
        log.warning("refund_notification_unknown", payment_id=str(payment.id), refund_id=refund_id)
        return "unknown_refund"
    if record.status != "pending":
        return "ignored"
    if outcome == "refunded":
        if record.amount != amount:
            return "amount_mismatch"
        record.status, record.settled_at = "succeeded", clock.now()
        session.flush()
        return "applied"
    # The provider gave up: the money stays with us, so the refund's entries are reversed
    # by new ones (never edited) and the data goes back to the bucket.
    record.status, record.settled_at = "failed", clock.now()
    _book(session, record, payment, purchase, reverse=True)
    return "applied"


def for_closed_order(session: Session, payment: Payment, purchase: Purchase) -> Refund:
    """Money that arrived for an order the customer had cancelled goes back in full.

    Recorded (and booked) now; `tongka payments sync` asks the provider, after this commit.
    """
    record = Refund(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"tongka:refund:closed-order:{payment.id}"),
        payment_id=payment.id,
        amount=payment.amount,
        currency=payment.currency,
        reason="payment arrived after the order was cancelled",
        requested_by="system:closed_order",
    )
    if session.get(Refund, record.id) is not None:
        return record
    session.add(record)
    session.flush()
    _book(session, record, payment, purchase)
    return record


def unsent(session: Session) -> list[Refund]:
    """Refunds recorded but not yet accepted by their provider, oldest first."""
    return list(
        session.scalars(
            select(Refund)
            .where(Refund.status == "pending", Refund.provider_refund_id.is_(None))
            .order_by(Refund.created_at)
        ).all()
    )


def refunds_of(session: Session, payment_id: uuid.UUID) -> list[Refund]:
    return list(
        session.scalars(
            select(Refund).where(Refund.payment_id == payment_id).order_by(Refund.created_at)
        )
    )
