"""The demo has a first top-up (app only), a 满减, a 买赠 and a coupon, and loading it twice changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests import factories as f
from tests.factories import new_subscriber
from tests.promotion.factories import discounts, quote
from tongka import demo
from tongka.promotion.models import CouponCode, Offer

pytestmark = pytest.mark.usefixtures("generic_sandbox")


def test_a_new_user_sees_the_demo_offers(client, sessions, settings) -> None:
    f.load_demo(sessions, settings)
    f.load_demo(sessions, settings)  # idempotent
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Offer)) == 4
        assert s.scalar(select(func.count()).select_from(CouponCode)) == 1
    running = {o["code"]: o for o in client.get("/api/v1/offers?channel=app").json()}
    assert {o["kind"] for o in running.values()} == {
        "first_topup",
        "spend_threshold",
        "bonus_data",
        "coupon",
    }
    assert running["demo-first-topup"]["channels"] == ["app"]
    web = {o["code"] for o in client.get("/api/v1/offers?channel=web").json()}
    assert "demo-first-topup" not in web and "demo-spend-150-save-15" not in web

    who = new_subscriber(client, sessions)
    q = quote(
        client, who.headers, who.line["id"], code="both-10gb-30d", coupon=demo.DEMO_COUPON.lower()
    )
    assert discounts(q) == {"demo-first-topup": 3160, "demo-coupon": 1000, "demo-bonus-1gb": 0}
    assert q["amount"] == 15800 - 3160 - 1000
    # Someone who renewed before gets the 满减 instead of the first top-up.
    demo_headers = f.login(client, demo.DEMO_USERNAME, demo.DEMO_PASSWORD)
    line = client.get("/api/v1/lines", headers=demo_headers).json()[0]
    assert discounts(
        quote(client, demo_headers, line["id"], code="both-10gb-30d", currency="CNY")
    ) == {
        "demo-spend-150-save-15": 1400,
        "demo-bonus-1gb": 0,
    }
    # The smaller packs keep their list prices.
    assert discounts(quote(client, who.headers, who.line["id"], code="hk-5gb-30d")) == {}
