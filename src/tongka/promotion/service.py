"""Promotions in the life of an order: quote, hold, attach, confirm at fulfilment, release.

A quote prices one pack for one customer (promotion/pricing.py) and **holds** what it
promised for `QUOTE_TTL`: each offer applied is counted against its budget at once, as a
`held` redemption. An order made from the quote (or, without `quote_id`, from a quote made
on the spot) takes those holds over; fulfilment confirms them and grants bonus data as a
bucket of its own; expiry or cancellation of the order, a quote that lapses unused, or a
full refund release them back to the budget. A customer has one open quote at a time: a
new one replaces the last, whose holds go back.

Lock order: the account row (so one customer's quotes and per-customer limits are
decided one at a time), then lapsed holds, then the offers by id (budget.take).

This domain knows nothing of orders and payments: the renewal flow (renewal/flow.py)
tells it of an order as plain values (`OrderRef`) and calls it at each step.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tongka import clock, throttle
from tongka.account.models import Account, Line
from tongka.catalog import service as catalog
from tongka.catalog.models import Pack
from tongka.errors import Conflict, NotFound, TooManyRequests, Unprocessable
from tongka.fx import service as fx
from tongka.i18n import _
from tongka.ledger import buckets
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket
from tongka.money import CURRENCIES, Money
from tongka.promotion import budget, coupons, pricing
from tongka.promotion.models import CouponCode, Offer, Quote, Redemption

QUOTE_TTL = timedelta(minutes=15)


class QuoteNotFound(NotFound):
    code = "quote_not_found"
    message = _("No such quote.")


class QuoteExpired(Conflict):
    code = "quote_expired"
    message = _("This quote has expired. Ask for a new one.")


class QuoteUsed(Conflict):
    code = "quote_used"
    message = _("This quote was already used or replaced by a newer one. Ask for a new one.")


class QuoteMismatch(Conflict):
    code = "quote_mismatch"
    message = _("This quote is for another line, pack, currency or coupon.")


class CouponInvalid(Unprocessable):
    code = "coupon_invalid"
    message = _("This coupon code is not valid.")
    commit_anyway = True  # the wrong guess is counted although the request is refused (nothing else is written before)


class CouponGuessesUsedUp(TooManyRequests):
    code = "coupon_guesses_used_up"
    message = _("Too many wrong coupon codes. Try again in {wait}.")


# Wrong coupon codes per account per clock hour; then every code is refused (429) until the hour
# ends. Codes are 12 Crockford characters (60 bits), so guessing is hopeless anyway; this keeps
# anyone from trying.
COUPON_WRONG_PER_ACCOUNT = throttle.Limit(
    "coupon_wrong", allowed=10, window_seconds=3600, error=CouponGuessesUsedUp
)


class CouponNotApplicable(Unprocessable):
    code = "coupon_not_applicable"
    message = _("This coupon cannot be used for this order.")


class CouponUsedUp(Conflict):
    code = "coupon_used_up"
    message = _("This coupon has been used up.")


@dataclass(frozen=True)
class Customer:
    """What offers' conditions look at, besides the pack."""

    account: Account
    channel: str
    currency: str  # paid in
    new: bool  # no fulfilled order yet


@dataclass(frozen=True)
class OrderRef:
    """What promotions need of an order: its id, its line, and the breakdown it was sold with."""

    order_id: uuid.UUID
    line_id: uuid.UUID
    breakdown: dict[str, Any] | None


def in_force(offer: Offer, now: datetime) -> bool:
    return (
        offer.status == "active"
        and (offer.starts_at is None or offer.starts_at <= now)
        and (offer.ends_at is None or now < offer.ends_at)
    )


def conditions_met(offer: Offer, pack: Pack, who: Customer, now: datetime) -> bool:
    """Every condition but budgets and per-customer limits (those are counted)."""

    def allows(allowed: list[str] | None, value: str) -> bool:
        return allowed is None or value in allowed

    return (
        in_force(offer, now)
        and allows(offer.channels, who.channel)
        and allows(offer.currencies, who.currency)
        and allows(offer.zones, pack.zone)
        and allows(offer.pack_codes, pack.code)
        and allows(offer.regions, who.account.region)
        and (who.new or not (offer.new_customers_only or offer.kind == "first_topup"))
    )


def _used_by(session: Session, account_id: uuid.UUID, offer_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.count()).where(
                Redemption.account_id == account_id,
                Redemption.offer_id == offer_id,
                Redemption.status.in_(("held", "confirmed")),
            )
        )
        or 0
    )


def _within_customer_limit(session: Session, offer: Offer, account_id: uuid.UUID) -> bool:
    return (
        offer.per_customer_limit is None
        or _used_by(session, account_id, offer.id) < offer.per_customer_limit
    )


def _lock_account(session: Session, account_id: uuid.UUID) -> None:
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())


def list_price(session: Session, pack: Pack, currency: str) -> tuple[Money, int | None]:
    """The catalog price to start from, and the rate to convert it at (None: no conversion)."""
    prices = [p for c in CURRENCIES if (p := catalog.list_price(pack, c)) is not None]
    quoted = fx.price_in(session, prices, currency)
    if quoted is None:
        raise catalog.CurrencyNotOffered(currency=currency)
    listed, _converted, rate = quoted
    return listed, rate


def _coupon(
    session: Session, account_id: uuid.UUID, secret: str | None, text: str | None
) -> CouponCode | None:
    """The coupon a code names, throttled per account: call it before anything else writes,
    since a wrong code's count is committed with whatever the transaction did so far."""
    if not text:
        return None
    now = clock.now()
    throttle.check(session, COUPON_WRONG_PER_ACCOUNT, str(account_id), now)
    found = coupons.find(session, secret or "", text) if secret else None
    if found is None:
        throttle.hit(session, COUPON_WRONG_PER_ACCOUNT, str(account_id), now)
        raise CouponInvalid()
    return found


def _replace_open_quotes(session: Session, account_id: uuid.UUID, now: datetime) -> None:
    for quote in session.scalars(
        select(Quote).where(Quote.account_id == account_id, Quote.status == "open")
    ).all():
        if session.execute(
            update(Quote)
            .where(Quote.id == quote.id, Quote.status == "open")
            .values(status="replaced"),
            execution_options={"synchronize_session": False},
        ).rowcount:  # type: ignore[attr-defined]
            for r in session.scalars(
                select(Redemption).where(
                    Redemption.quote_id == quote.id, Redemption.status == "held"
                )
            ):
                budget.release(session, r, "quote_replaced", now=now)


def quote(
    session: Session,
    account: Account,
    *,
    line: Line,
    pack: Pack,
    currency: str,
    channel: str,
    is_new_customer: Callable[[], bool],
    coupon_code: str | None = None,
    secret: str | None = None,
    now: datetime | None = None,
) -> Quote:
    """Price the pack for this customer now and hold the offers it applies for QUOTE_TTL.

    `is_new_customer` answers whether the account never had an order fulfilled; it is
    asked once the account's row is locked, so two quotes of one customer agree.
    """
    now = now or clock.now()
    coupon = _coupon(session, account.id, secret, coupon_code)
    listed, rate = list_price(session, pack, currency)
    _lock_account(session, account.id)
    _replace_open_quotes(session, account.id, now)
    who = Customer(account, channel, currency, is_new_customer())
    candidates = [
        o
        for o in session.scalars(select(Offer).where(Offer.status == "active").order_by(Offer.id))
        if conditions_met(o, pack, who, now)
        and (o.kind != "coupon" or (coupon is not None and coupon.offer_id == o.id))
        and pricing.gives_something(o, listed)
    ]
    if coupon is not None and not any(o.id == coupon.offer_id for o in candidates):
        raise CouponNotApplicable()
    candidates = [o for o in candidates if _within_customer_limit(session, o, account.id)]
    if coupon is not None and not any(o.id == coupon.offer_id for o in candidates):
        raise CouponNotApplicable()
    budget.reclaim_lapsed(session, [o.id for o in candidates], now)

    record = Quote(
        id=uuid.uuid4(),
        account_id=account.id,
        line_id=line.id,
        pack_id=pack.id,
        channel=channel,
        coupon_code_id=coupon.id if coupon else None,
        amount=0,
        currency=currency,
        list_amount=listed.amount,
        list_currency=listed.currency,
        fx_rate_micros=rate,
        breakdown={},
        status="open",
        expires_at=now + QUOTE_TTL,
    )
    session.add(record)
    session.flush()
    # Price, then count each offer applied against its budget; an offer whose budget is
    # spent drops out and the price is made again without it.
    while True:
        result = pricing.price(listed, currency, rate, candidates)
        spent = _hold(session, record, result, coupon, now)
        if spent is None:
            break
        candidates = [o for o in candidates if o.id != spent]
        if coupon is not None and spent == coupon.offer_id:
            raise CouponUsedUp()
    record.amount = result.total.amount
    record.breakdown = result.breakdown
    session.flush()
    return record


def _hold(
    session: Session, record: Quote, result: pricing.Price, coupon: CouponCode | None, now: datetime
) -> uuid.UUID | None:
    """Count every applied offer (in offer id order); the id of the first whose budget is spent, or None."""
    with session.begin_nested() as savepoint:
        for applied in sorted(result.applied, key=lambda a: a.offer.id):  # type: ignore[attr-defined]
            offer: Offer = applied.offer  # type: ignore[assignment]
            code_id = coupon.id if coupon is not None and coupon.offer_id == offer.id else None
            if not budget.take(
                session, offer.id, result.list_price.currency, applied.discount, code_id
            ):
                savepoint.rollback()
                return offer.id
            session.add(
                Redemption(
                    offer_id=offer.id,
                    account_id=record.account_id,
                    quote_id=record.id,
                    coupon_code_id=code_id,
                    currency=result.list_price.currency,
                    discount=applied.discount,
                    bonus_bytes=applied.bonus_bytes,
                    status="held",
                    hold_expires_at=record.expires_at,
                )
            )
        session.flush()
    return None


def own_quote(session: Session, account: Account, quote_id: uuid.UUID) -> Quote:
    found = session.get(Quote, quote_id)
    if found is None or found.account_id != account.id:
        raise QuoteNotFound()
    return found


def coupon_offer_code(session: Session, record: Quote) -> str | None:
    """The code of the offer the quote's coupon unlocks (None: no coupon given)."""
    coupon = session.get(CouponCode, record.coupon_code_id) if record.coupon_code_id else None
    offer = session.get(Offer, coupon.offer_id) if coupon else None
    return offer.code if offer else None


def use_quote(
    session: Session,
    account: Account,
    quote_id: uuid.UUID,
    *,
    line: Line,
    pack: Pack,
    currency: str,
    channel: str,
    coupon_code: str | None = None,
    secret: str | None = None,
) -> Quote:
    """The open quote an order is being made from, checked against what the order asks for."""
    own_quote(session, account, quote_id)
    given = _coupon(session, account.id, secret, coupon_code)
    record = session.scalars(
        select(Quote)
        .where(Quote.id == quote_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    asked = (line.id, pack.id, currency, channel)
    if (record.line_id, record.pack_id, record.currency, record.channel) != asked:
        raise QuoteMismatch()
    if given is not None and given.id != record.coupon_code_id:
        raise QuoteMismatch()
    if record.status != "open":
        raise QuoteUsed()
    if record.expires_at <= clock.now():
        raise QuoteExpired()
    return record


def attach(session: Session, record: Quote, order_id: uuid.UUID) -> None:
    """The order takes over the quote's holds; from now on the order's fate decides them."""
    if not session.execute(
        update(Quote).where(Quote.id == record.id, Quote.status == "open").values(status="ordered"),
        execution_options={"synchronize_session": False},
    ).rowcount:  # type: ignore[attr-defined]
        raise QuoteUsed()
    expected = len(record.breakdown.get("offers", []))
    moved = session.execute(
        update(Redemption)
        .where(Redemption.quote_id == record.id, Redemption.status == "held")
        .values(order_id=order_id, hold_expires_at=None),
        execution_options={"synchronize_session": False},
    ).rowcount  # type: ignore[attr-defined]
    if moved != expected:  # a hold lapsed at the very moment the quote did
        raise QuoteExpired()
    session.refresh(record)


def redemptions_of(session: Session, order_id: uuid.UUID) -> list[Redemption]:
    return list(
        session.scalars(
            select(Redemption)
            .where(Redemption.order_id == order_id)
            .order_by(Redemption.id)
            .execution_options(populate_existing=True)
        )
    )


def bonus_offers(session: Session, bucket_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Offer]:
    """The offer whose bonus data each of these buckets is; a bucket no offer granted is left out."""
    if not bucket_ids:
        return {}
    rows = session.execute(
        select(Redemption.bonus_bucket_id, Offer)
        .join(Offer, Offer.id == Redemption.offer_id)
        .where(Redemption.bonus_bucket_id.in_(set(bucket_ids)))
    )
    return {bucket_id: offer for bucket_id, offer in rows if bucket_id is not None}


def fulfil(session: Session, order: OrderRef, now: datetime) -> None:
    """At fulfilment: confirm the order's redemptions and grant each bonus as a bucket of its own."""
    for r in redemptions_of(session, order.order_id):
        if r.status == "held":
            r.status, r.settled_at = "confirmed", now
        if r.status == "confirmed" and r.bonus_bytes and r.bonus_bucket_id is None:
            offer = session.get(Offer, r.offer_id)
            assert offer is not None and offer.bonus_zone and offer.bonus_validity_days
            zone, days = _bonus_terms(order, offer.code)
            bonus = buckets.grant(
                session,
                line_id=order.line_id,
                zone=zone or offer.bonus_zone,
                amount=r.bonus_bytes,
                valid_from=now,
                expires_at=now + timedelta(days=days or offer.bonus_validity_days),
                reason="promotion_bonus",
                reference=f"order:{order.order_id}:offer:{offer.code}",
            )
            r.bonus_bucket_id = bonus.id
    session.flush()


def _bonus_terms(order: OrderRef, offer_code: str) -> tuple[str | None, int | None]:
    """The bonus's zone and validity as the customer was told them (the offer may have changed since)."""
    for entry in (order.breakdown or {}).get("offers", []):
        if entry["code"] == offer_code and (bonus := entry.get("bonus")):
            return bonus["zone"], bonus["validity_days"]
    return None, None


def retake(session: Session, order_id: uuid.UUID) -> bool:
    """A payment arrived for an expired order: count its redemptions again. False if a budget ran out meanwhile."""
    with session.begin_nested() as savepoint:
        for r in redemptions_of(session, order_id):
            if not budget.retake(session, r):
                savepoint.rollback()
                return False
    return True


def release_order(session: Session, order_id: uuid.UUID, reason: str) -> int:
    """An order expired, was cancelled or refunded in full: its redemptions go back to the budgets."""
    return sum(budget.release(session, r, reason) for r in redemptions_of(session, order_id))


def release_refunded(session: Session, order_id: uuid.UUID) -> None:
    """The order's payment was refunded in full: its offers are released and what is left of
    its bonus data is taken back. (A partial refund keeps them: the flow does not call this.)"""
    for r in redemptions_of(session, order_id):
        if budget.release(session, r, "refunded") and r.bonus_bucket_id is not None:
            bucket = session.get(Bucket, r.bonus_bucket_id)
            assert bucket is not None
            ledger.sweep(
                session,
                bucket.account,
                ledger.system_account(session, "data_refunded", bucket.unit),
                reason="refund",
                reference=f"order:{order_id}:bonus",
            )


def release_lapsed_quotes(session: Session, now: datetime | None = None) -> int:
    """Close quotes left unused past their time and release their holds (also done lazily when taking)."""
    now = now or clock.now()
    lapsed = session.scalars(
        select(Redemption.offer_id)
        .where(
            Redemption.status == "held",
            Redemption.order_id.is_(None),
            Redemption.hold_expires_at <= now,
        )
        .distinct()
    ).all()
    return budget.reclaim_lapsed(session, list(lapsed), now)


def running(session: Session, channel: str, now: datetime | None = None) -> list[Offer]:
    """Offers in force now on a channel, coupons included (their codes are not)."""
    now = now or clock.now()
    offers = session.scalars(
        select(Offer).where(Offer.status == "active").order_by(Offer.created_at, Offer.code)
    )
    return [o for o in offers if in_force(o, now) and (o.channels is None or channel in o.channels)]


def offers_for(
    session: Session,
    account: Account,
    pack: Pack,
    *,
    currency: str,
    channel: str,
    new: bool,
    now: datetime | None = None,
) -> list[tuple[Offer, int | None]]:
    """The offers a quote would apply to the pack now without a coupon (budgets not counted),
    each with how many more times this customer may have it (None: no limit). Holds nothing:
    for an estimate (the forecast's covering packs), never for a price charged."""
    now = now or clock.now()
    listed, _rate = list_price(session, pack, currency)
    who = Customer(account, channel, currency, new)
    found = []
    for offer in session.scalars(
        select(Offer).where(Offer.status == "active", Offer.kind != "coupon").order_by(Offer.id)
    ):
        if conditions_met(offer, pack, who, now) and pricing.gives_something(offer, listed):
            limit = offer.per_customer_limit
            times = None if limit is None else limit - _used_by(session, account.id, offer.id)
            if times is None or times > 0:
                found.append((offer, times))
    return found
