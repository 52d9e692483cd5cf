"""Promotion test helpers: offers made as an operator would, quotes as the app asks for them
(orders: tests/factories.py)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests import factories as f
from tongka.db import transaction
from tongka.promotion import coupons, offers
from tongka.promotion.models import Offer, OfferBudget, Redemption
from tongka.promotion.schemas import OfferIn


def make_offer(sessions: sessionmaker[Session], **fields: Any) -> uuid.UUID:
    spec = OfferIn(
        **{"code": f"t-{uuid.uuid4().hex[:10]}", "names": {"en": "Test offer"}, **fields}
    )
    with transaction(sessions) as s:
        return offers.create(s, spec, "test").id


def make_codes(
    sessions: sessionmaker[Session], settings, offer_id: uuid.UUID, **kw: Any
) -> list[str]:  # type: ignore[no-untyped-def]
    with transaction(sessions) as s:
        return coupons.generate(
            s, s.get(Offer, offer_id), settings.secret_key.get_secret_value(), **kw
        )


def quote(
    client: TestClient,
    headers: dict[str, str],
    line_id: str,
    code: str = "hk-5gb-30d",
    currency: str = "HKD",
    coupon: str | None = None,
    expect: int = 201,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "line_id": line_id,
        "pack_id": f.pack_id(client, code),
        "currency": currency,
    }
    if coupon is not None:
        body["coupon_code"] = coupon
    r = client.post("/api/v1/quotes", json=body, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()  # type: ignore[no-any-return]


def discounts(body: dict[str, Any]) -> dict[str, int]:
    """{offer code: discount} of an order's or a quote's breakdown."""
    return {o["code"]: o["amount"] for o in body["price"]["offers"]}


def offer_row(sessions: sessionmaker[Session], offer_id: uuid.UUID) -> tuple[int, dict[str, int]]:
    """(redeemed, {currency: spent}) as the database holds them."""
    with sessions() as s:
        offer = s.get(Offer, offer_id)
        spent = {
            b.currency: b.spent
            for b in s.scalars(select(OfferBudget).where(OfferBudget.offer_id == offer_id))
        }
        return offer.redeemed, spent


def redemption_states(sessions: sessionmaker[Session], offer_id: uuid.UUID) -> list[str]:
    with sessions() as s:
        return sorted(s.scalars(select(Redemption.status).where(Redemption.offer_id == offer_id)))
