"""Budgets that hold under concurrency: every count moves by one guarded UPDATE.

Taking a redemption is `UPDATE offers SET redeemed = redeemed + 1 WHERE id = :id AND
redeemed < max_redemptions` (and the same for the money in `offer_budgets` and the uses of
a coupon code), checked by its row count, inside a savepoint so that a later refusal undoes
the earlier counts. On PostgreSQL concurrent takers queue on the offer's row and each
re-reads the count when it gets it; SQLite runs one writer at a time. Either way no count
passes its maximum, and the CHECK constraints on the tables say so too.

A release is the reverse, once: the redemption's own guarded status change decides, and
only the transaction that changed it gives the counts back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tongka import clock
from tongka.promotion.models import CouponCode, Offer, OfferBudget, Redemption

_NO_SYNC = {"synchronize_session": False}


def take(
    session: Session,
    offer_id: object,
    currency: str,
    discount: int,
    coupon_code_id: object | None,
    *,
    only_active: bool = True,
) -> bool:
    """Count one redemption of `discount` against the offer (and the coupon code); False if a budget is spent."""
    with session.begin_nested() as savepoint:
        counted = update(Offer).where(
            Offer.id == offer_id,
            (Offer.max_redemptions.is_(None)) | (Offer.redeemed < Offer.max_redemptions),
        )
        if only_active:
            counted = counted.where(Offer.status == "active")
        steps = [
            counted.values(redeemed=Offer.redeemed + 1),
            update(OfferBudget)
            .where(
                OfferBudget.offer_id == offer_id,
                OfferBudget.currency == currency,
                (OfferBudget.max_discount.is_(None))
                | (OfferBudget.spent + discount <= OfferBudget.max_discount),
            )
            .values(spent=OfferBudget.spent + discount),
        ]
        if coupon_code_id is not None:
            steps.append(
                update(CouponCode)
                .where(
                    CouponCode.id == coupon_code_id,
                    (CouponCode.max_uses.is_(None)) | (CouponCode.used < CouponCode.max_uses),
                )
                .values(used=CouponCode.used + 1)
            )
        for step in steps:
            if session.execute(step, execution_options=_NO_SYNC).rowcount != 1:  # type: ignore[attr-defined]
                savepoint.rollback()
                return False
    return True


def give_back(session: Session, redemption: Redemption) -> None:
    session.execute(
        update(Offer).where(Offer.id == redemption.offer_id).values(redeemed=Offer.redeemed - 1),
        execution_options=_NO_SYNC,
    )
    session.execute(
        update(OfferBudget)
        .where(
            OfferBudget.offer_id == redemption.offer_id, OfferBudget.currency == redemption.currency
        )
        .values(spent=OfferBudget.spent - redemption.discount),
        execution_options=_NO_SYNC,
    )
    if redemption.coupon_code_id is not None:
        session.execute(
            update(CouponCode)
            .where(CouponCode.id == redemption.coupon_code_id)
            .values(used=CouponCode.used - 1),
            execution_options=_NO_SYNC,
        )


def release(
    session: Session, redemption: Redemption, reason: str, *, now: datetime | None = None
) -> bool:
    """Give a held or confirmed redemption back to its budgets, exactly once; False if it was already released."""
    moved = session.execute(
        update(Redemption)
        .where(Redemption.id == redemption.id, Redemption.status.in_(("held", "confirmed")))
        .values(status="released", settled_at=now or clock.now(), release_reason=reason),
        execution_options=_NO_SYNC,
    ).rowcount  # type: ignore[attr-defined]
    if moved != 1:
        return False
    give_back(session, redemption)
    session.refresh(redemption)
    return True


def retake(session: Session, redemption: Redemption, *, now: datetime | None = None) -> bool:
    """Count a released redemption again and confirm it (a late payment for an expired order); False if spent."""
    if redemption.status != "released":
        return redemption.status in ("held", "confirmed")
    if not take(
        session,
        redemption.offer_id,
        redemption.currency,
        redemption.discount,
        redemption.coupon_code_id,
        only_active=False,
    ):
        return False
    moved = session.execute(
        update(Redemption)
        .where(Redemption.id == redemption.id, Redemption.status == "released")
        .values(status="confirmed", settled_at=now or clock.now(), release_reason=None),
        execution_options=_NO_SYNC,
    ).rowcount  # type: ignore[attr-defined]
    if moved != 1:  # someone else retook it first: undo ours
        give_back(session, redemption)
    session.refresh(redemption)
    return True


def reclaim_lapsed(session: Session, offer_ids: list[object], now: datetime) -> int:
    """Release the holds of quotes that lapsed unused, for these offers (done before taking from them).

    The holds are locked all at once, skipping any another transaction is releasing right
    now: two takers never wait on each other's holds while holding an offer's row.
    """
    if not offer_ids:
        return 0
    lapsed = session.scalars(
        select(Redemption)
        .where(
            Redemption.offer_id.in_(offer_ids),
            Redemption.status == "held",
            Redemption.order_id.is_(None),
            Redemption.hold_expires_at <= now,
        )
        .order_by(Redemption.id)
        .with_for_update(skip_locked=True)
    ).all()
    return sum(release(session, r, "quote_lapsed", now=now) for r in lapsed)
