"""Promotions API: the offers running now (anyone) and a quote (the signed-in subscriber, their own).

Making a quote is the renewal's first step: `POST /api/v1/quotes` is in renewal/api.py.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from tongka.deps import CurrentAccount, LanguageDep, SessionDep
from tongka.promotion import service
from tongka.promotion.schemas import OfferOut, QuoteOut

router = APIRouter(prefix="/api/v1", tags=["promotions"])


@router.get("/offers", response_model=list[OfferOut])
def running_offers(
    session: SessionDep,
    language: LanguageDep,
    channel: Annotated[str, Query(pattern="^(app|web|store)$")] = "app",
) -> list[OfferOut]:
    """Anyone: the offers in force now on a channel (first top-up, 满减, 买赠, coupons), and their conditions."""
    return [OfferOut.of(o, language) for o in service.running(session, channel)]


@router.get("/quotes/{quote_id}", response_model=QuoteOut)
def get_quote(quote_id: uuid.UUID, account: CurrentAccount, session: SessionDep) -> QuoteOut:
    """The signed-in subscriber: one of their quotes (another's is 404)."""
    quote = service.own_quote(session, account, quote_id)
    return QuoteOut.of(quote, service.coupon_offer_code(session, quote), account.language)
