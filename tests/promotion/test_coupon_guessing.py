"""Wrong coupon codes are throttled per account: ten an hour, wherever a code is read (quotes, orders)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests import factories as f
from tests.factories import new_subscriber, order
from tests.promotion.factories import discounts, make_codes, make_offer, quote

pytestmark = pytest.mark.usefixtures("generic_sandbox")


def test_ten_wrong_codes_an_hour_then_every_code_waits(
    client, sessions, settings, who, frozen_clock
) -> None:
    offer_id = make_offer(sessions, code="ten-off", kind="coupon", amount_off={"HKD": 1000})
    [good] = make_codes(sessions, settings, offer_id)
    today = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    frozen_clock.now = today
    for n in range(6):
        assert (
            quote(client, who.headers, who.line["id"], coupon=f"AAAA-BBBB-{n:04d}", expect=422)[
                "code"
            ]
            == "coupon_invalid"
        )
    for n in range(4):  # orders count too, and a refused order's key is free again
        key = uuid.uuid4().hex
        body = {
            "line_id": who.line["id"],
            "pack_id": f.pack_id(client, "hk-5gb-30d"),
            "currency": "HKD",
            "payment_method": "alipay",
            "coupon_code": f"CCCC-DDDD-{n:04d}",
        }
        r = client.post(
            "/api/v1/orders", json=body, headers={**who.headers, "Idempotency-Key": key}
        )
        assert (r.status_code, r.json()["code"]) == (422, "coupon_invalid")
    assert client.get("/api/v1/orders", headers=who.headers).json() == []

    frozen_clock.now = today + timedelta(minutes=20)
    r = client.post(
        "/api/v1/quotes",
        json={
            "line_id": who.line["id"],
            "pack_id": f.pack_id(client, "hk-5gb-30d"),
            "currency": "HKD",
            "coupon_code": good,
        },
        headers=who.headers,
    )
    assert (r.status_code, r.json()["code"]) == (429, "coupon_guesses_used_up")  # even a good code
    assert r.headers["Retry-After"] == str(40 * 60) and "40 minutes" in r.json()["detail"]
    r = order(client, who.headers, who.line["id"], coupon_code=good, expect=429)
    assert r["code"] == "coupon_guesses_used_up"
    assert discounts(quote(client, who.headers, who.line["id"])) == {}  # no code: no limit

    other = new_subscriber(client, sessions)
    assert discounts(quote(client, other.headers, other.line["id"], coupon=good)) == {
        "ten-off": 1000
    }

    frozen_clock.now = today + timedelta(hours=1)
    assert discounts(quote(client, who.headers, who.line["id"], coupon=good)) == {"ten-off": 1000}


def test_a_wrong_code_leaves_the_open_quote_alone(client, sessions, settings, who) -> None:
    held = quote(client, who.headers, who.line["id"])
    assert (
        quote(client, who.headers, who.line["id"], coupon="AAAA-BBBB-CCCC", expect=422)["code"]
        == "coupon_invalid"
    )
    r = client.get(f"/api/v1/quotes/{held['id']}", headers=who.headers)
    assert r.json()["status"] == "open"


def test_a_quote_needs_a_signed_in_subscriber(client, sessions, who) -> None:
    body = {
        "line_id": who.line["id"],
        "pack_id": f.pack_id(client, "hk-5gb-30d"),
        "currency": "HKD",
        "coupon_code": "AAAA-BBBB-CCCC",
    }
    r = client.post("/api/v1/quotes", json=body)
    assert (r.status_code, r.json()["code"]) == (401, "not_authenticated")
