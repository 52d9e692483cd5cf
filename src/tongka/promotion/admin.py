"""Operator API for offers. Who may call: operator staff (role `operator`); anyone else is 403, no token 401."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from tongka.deps import CurrentOperator, SessionDep, SettingsDep
from tongka.promotion import coupons, offers
from tongka.promotion.models import Offer
from tongka.promotion.schemas import (
    BudgetOut,
    CodesIn,
    CodesOut,
    OfferAdminOut,
    OfferIn,
    RedemptionOut,
    ReportRow,
)

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def admin_out(session: SessionDep, offer: Offer) -> OfferAdminOut:
    return OfferAdminOut(
        **OfferAdminOut.fields_of(offer, "en"),
        id=offer.id,
        status=offer.status,
        per_customer_limit=offer.per_customer_limit,
        max_redemptions=offer.max_redemptions,
        redeemed=offer.redeemed,
        budgets=[
            BudgetOut(currency=b.currency, max_discount=b.max_discount, spent=b.spent)
            for b in offers.budgets(session, offer.id)
        ],
        created_by=offer.created_by,
        created_at=offer.created_at,
    )


@router.post("/offers", status_code=201, response_model=OfferAdminOut)
def create_offer(body: OfferIn, operator: CurrentOperator, session: SessionDep) -> OfferAdminOut:
    """Operator admins: create an offer, active at once within its time window. Its `code` is unique (a retry is 409)."""
    return admin_out(session, offers.create(session, body, f"operator:{operator.username}"))


@router.get("/offers", response_model=list[OfferAdminOut])
def list_offers(operator: CurrentOperator, session: SessionDep) -> list[OfferAdminOut]:
    """Operator admins: every offer, with its budget and what has been redeemed."""
    return [admin_out(session, o) for o in offers.all_offers(session)]


@router.get("/offers/report", response_model=list[ReportRow])
def offers_report(operator: CurrentOperator, session: SessionDep) -> list[ReportRow]:
    """Operator admins: per offer, redemptions by state and the discount given and held, per currency."""
    return offers.report(session)


@router.get("/offers/{offer_id}", response_model=OfferAdminOut)
def get_offer(offer_id: uuid.UUID, operator: CurrentOperator, session: SessionDep) -> OfferAdminOut:
    """Operator admins: one offer."""
    return admin_out(session, offers.get(session, offer_id))


def _move(offer_id: uuid.UUID, session: SessionDep, action: str) -> OfferAdminOut:
    return admin_out(session, offers.move(session, offers.get(session, offer_id), action))


@router.post("/offers/{offer_id}/pause", response_model=OfferAdminOut)
def pause_offer(
    offer_id: uuid.UUID, operator: CurrentOperator, session: SessionDep
) -> OfferAdminOut:
    """Operator admins: stop giving an offer for now (quotes already made keep it until they lapse)."""
    return _move(offer_id, session, "pause")


@router.post("/offers/{offer_id}/resume", response_model=OfferAdminOut)
def resume_offer(
    offer_id: uuid.UUID, operator: CurrentOperator, session: SessionDep
) -> OfferAdminOut:
    """Operator admins: give a paused offer again."""
    return _move(offer_id, session, "resume")


@router.post("/offers/{offer_id}/end", response_model=OfferAdminOut)
def end_offer(offer_id: uuid.UUID, operator: CurrentOperator, session: SessionDep) -> OfferAdminOut:
    """Operator admins: end an offer for good; its redemptions stay on record."""
    return _move(offer_id, session, "end")


@router.post("/offers/{offer_id}/codes", status_code=201, response_model=CodesOut)
def make_codes(
    offer_id: uuid.UUID,
    body: CodesIn,
    operator: CurrentOperator,
    session: SessionDep,
    settings: SettingsDep,
) -> CodesOut:
    """Operator admins: make a batch of coupon codes (or one shared code) for a coupon offer; shown only in this answer."""
    offer = offers.get(session, offer_id)
    batch = body.batch or f"{offer.code}-{uuid.uuid4().hex[:8]}"
    codes = coupons.generate(
        session,
        offer,
        settings.secret_key.get_secret_value(),
        count=1 if body.code else body.count,
        max_uses=body.max_uses,
        code=body.code,
        batch=batch,
    )
    return CodesOut(batch=batch[:40], codes=codes)


@router.get("/offers/{offer_id}/redemptions", response_model=list[RedemptionOut])
def offer_redemptions(
    offer_id: uuid.UUID, operator: CurrentOperator, session: SessionDep
) -> list[RedemptionOut]:
    """Operator admins: every redemption of an offer, newest first: who, which quote and order, how much, its state."""
    offer = offers.get(session, offer_id)
    return [
        RedemptionOut(
            id=r.id,
            offer_id=r.offer_id,
            account_id=r.account_id,
            username=username,
            quote_id=r.quote_id,
            order_id=r.order_id,
            coupon_hint=hint,
            currency=r.currency,
            discount=r.discount,
            bonus_bytes=r.bonus_bytes,
            status=r.status,
            release_reason=r.release_reason,
            created_at=r.created_at,
            settled_at=r.settled_at,
        )
        for r, username, hint in offers.redemptions(session, offer.id)
    ]
