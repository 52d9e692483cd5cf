"""Promotions API: the offers running now (anyone) and quotes (the signed-in subscriber, for their own lines)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse

from tongka import idempotency
from tongka.account import lines
from tongka.catalog import service as catalog
from tongka.deps import CurrentAccount, LanguageDep, SessionDep, SettingsDep
from tongka.promotion import service
from tongka.promotion.models import CouponCode, Offer, Quote
from tongka.promotion.schemas import OfferOut, QuoteIn, QuoteOut

router = APIRouter(prefix="/api/v1", tags=["promotions"])


@router.get("/offers", response_model=list[OfferOut])
def running_offers(
    session: SessionDep,
    language: LanguageDep,
    channel: Annotated[str, Query(pattern="^(app|web|store)$")] = "app",
) -> list[OfferOut]:
    """Anyone: the offers in force now on a channel (first top-up, 满减, 买赠, coupons), and their conditions."""
    return [OfferOut.of(o, language) for o in service.running(session, channel)]


def _out(session: SessionDep, quote: Quote, language: str) -> QuoteOut:
    coupon = session.get(CouponCode, quote.coupon_code_id) if quote.coupon_code_id else None
    offer = session.get(Offer, coupon.offer_id) if coupon else None
    return QuoteOut.of(quote, offer.code if offer else None, language)


@router.post("/quotes", status_code=status.HTTP_201_CREATED, response_model=QuoteOut)
def create_quote(
    request: Request,
    body: QuoteIn,
    account: CurrentAccount,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """The signed-in subscriber, for their own line: the price of a pack with the offers they have now.

    The quote holds for 15 minutes (`expires_at`): an order with its `quote_id` charges
    exactly `amount`, and the offers it applies are kept for it meanwhile. A new quote
    replaces the subscriber's previous one. An `Idempotency-Key` is optional here.
    """

    def produce() -> tuple[int, Any]:
        line = lines.own_line(session, account, body.line_id)
        pack = catalog.pack_for_sale(session, body.pack_id, "app")
        quote = service.quote(
            session,
            account,
            line=line,
            pack=pack,
            currency=body.currency,
            channel="app",
            coupon_code=body.coupon_code,
            secret=settings.secret_key.get_secret_value(),
        )
        return 201, _out(session, quote, account.language).model_dump(mode="json")

    if idempotency_key is None:
        code, content = produce()
    else:
        fp = idempotency.fingerprint("POST", request.url.path, body.model_dump(mode="json"))
        code, content = idempotency.run_once(session, account.id, idempotency_key, fp, produce)
    return JSONResponse(content, status_code=code)


@router.get("/quotes/{quote_id}", response_model=QuoteOut)
def get_quote(quote_id: uuid.UUID, account: CurrentAccount, session: SessionDep) -> QuoteOut:
    """The signed-in subscriber: one of their quotes (another's is 404)."""
    return _out(session, service.own_quote(session, account, quote_id), account.language)
