"""Operating offers: create, list, pause, resume, end; redemptions and the report per offer.

Used by the operator API (promotion/admin.py) and the CLI (`tongka offers ...`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tongka.account.models import Account
from tongka.errors import Conflict, NotFound
from tongka.i18n import _
from tongka.money import CURRENCIES
from tongka.promotion.models import CouponCode, Offer, OfferBudget, Redemption
from tongka.promotion.schemas import OfferIn, ReportRow

# Allowed moves; `ended` is final (its redemptions stay on record).
MOVES = {
    "pause": ("active", "paused"),
    "resume": ("paused", "active"),
    "end": (("active", "paused"), "ended"),
}


class OfferNotFound(NotFound):
    code = "offer_not_found"
    message = _("No such offer.")


class OfferCodeTaken(Conflict):
    code = "offer_code_taken"
    message = _("An offer with this code already exists.")


class OfferStateConflict(Conflict):
    code = "offer_state_conflict"
    message = _("This offer is {status}: it cannot {action}.")


def create(session: Session, spec: OfferIn, created_by: str) -> Offer:
    if session.scalar(select(Offer.id).where(Offer.code == spec.code)) is not None:
        raise OfferCodeTaken()
    first = spec.kind == "first_topup"
    offer = Offer(
        id=uuid.uuid4(),
        code=spec.code,
        names=dict(spec.names),
        kind=spec.kind,
        status="active",
        stackable=spec.stackable,
        percent_off_bp=None if spec.percent_off is None else round(spec.percent_off * 100),
        amount_off=spec.amount_off or None,
        tiers=[t.model_dump() for t in spec.tiers] if spec.tiers else None,
        bonus_bytes=spec.bonus_bytes,
        bonus_zone=spec.bonus_zone,
        bonus_validity_days=spec.bonus_validity_days,
        starts_at=spec.local(spec.starts_at).astimezone(UTC) if spec.starts_at else None,
        ends_at=spec.local(spec.ends_at).astimezone(UTC) if spec.ends_at else None,
        time_zone=spec.time_zone,
        channels=spec.channels,
        currencies=spec.currencies,
        zones=spec.zones,
        pack_codes=spec.pack_codes,
        regions=spec.regions,
        # A first top-up is for new customers, once each, whatever else was asked.
        new_customers_only=spec.new_customers_only or first,
        per_customer_limit=1 if first else spec.per_customer_limit,
        max_redemptions=spec.max_redemptions,
        redeemed=0,
        created_by=created_by[:64],
    )
    session.add(offer)
    session.flush()
    caps = spec.max_discount or {}
    for currency in CURRENCIES:
        session.add(
            OfferBudget(
                offer_id=offer.id, currency=currency, max_discount=caps.get(currency), spent=0
            )
        )
    session.flush()
    return offer


def all_offers(session: Session) -> list[Offer]:
    return list(session.scalars(select(Offer).order_by(Offer.created_at, Offer.code)))


def get(session: Session, offer_id: uuid.UUID | str) -> Offer:
    """By id, or by code (the CLI's way)."""
    try:
        offer = session.get(Offer, uuid.UUID(str(offer_id)))
    except ValueError:
        offer = session.scalar(select(Offer).where(Offer.code == str(offer_id)))
    if offer is None:
        raise OfferNotFound()
    return offer


def move(session: Session, offer: Offer, action: str) -> Offer:
    """Pause, resume or end an offer, with a guarded UPDATE. Doing it twice is harmless."""
    sources, target = MOVES[action]
    sources = (sources,) if isinstance(sources, str) else sources
    if offer.status == target:
        return offer
    moved = session.execute(
        update(Offer).where(Offer.id == offer.id, Offer.status.in_(sources)).values(status=target),
        execution_options={"synchronize_session": False},
    ).rowcount  # type: ignore[attr-defined]
    session.refresh(offer)
    if not moved and offer.status != target:
        raise OfferStateConflict(status=offer.status, action=action)
    return offer


def budgets(session: Session, offer_id: uuid.UUID) -> list[OfferBudget]:
    return list(
        session.scalars(
            select(OfferBudget)
            .where(OfferBudget.offer_id == offer_id)
            .order_by(OfferBudget.currency)
            .execution_options(populate_existing=True)
        )
    )


def redemptions(
    session: Session, offer_id: uuid.UUID, limit: int = 1000
) -> list[tuple[Redemption, str, str | None]]:
    """The offer's redemptions, newest first, with the customer's username and the coupon's hint."""
    rows = session.execute(
        select(Redemption, Account.username, CouponCode.hint)
        .join(Account, Account.id == Redemption.account_id)
        .outerjoin(CouponCode, CouponCode.id == Redemption.coupon_code_id)
        .where(Redemption.offer_id == offer_id)
        .order_by(Redemption.created_at.desc(), Redemption.id)
        .limit(limit)
    ).all()
    return [(r, username, hint) for r, username, hint in rows]


def report(session: Session) -> list[ReportRow]:
    """Per offer: redemptions by state, discount given and held per currency, bonus data given."""
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    given: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    held: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    bonus: dict[uuid.UUID, int] = defaultdict(int)
    grouped = session.execute(
        select(
            Redemption.offer_id,
            Redemption.status,
            Redemption.currency,
            func.count(),
            func.sum(Redemption.discount),
            func.sum(Redemption.bonus_bytes),
        ).group_by(Redemption.offer_id, Redemption.status, Redemption.currency)
    ).all()
    for offer_id, status, currency, count, discount, data in grouped:
        counts[offer_id][status] += count
        if status == "confirmed":
            given[offer_id][currency] += int(discount)
            bonus[offer_id] += int(data)
        elif status == "held":
            held[offer_id][currency] += int(discount)
    return [
        ReportRow(
            code=o.code,
            kind=o.kind,
            status=o.status,
            confirmed=counts[o.id]["confirmed"],
            held=counts[o.id]["held"],
            released=counts[o.id]["released"],
            discount_given=dict(given[o.id]),
            discount_held=dict(held[o.id]),
            bonus_bytes_given=bonus[o.id],
            max_redemptions=o.max_redemptions,
            redemptions_left=None if o.max_redemptions is None else o.max_redemptions - o.redeemed,
        )
        for o in all_offers(session)
    ]
