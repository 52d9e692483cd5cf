"""Coupon codes: generated in batches, read case-insensitively, hard to guess, single-use or shared, per-customer limits."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.factories import new_subscriber, order
from tests.promotion.factories import discounts, make_codes, make_offer, quote
from tongka.promotion import coupons
from tongka.promotion.models import CouponCode

pytestmark = pytest.mark.usefixtures("generic_sandbox")

CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


def test_normalisation_reads_what_people_type() -> None:
    assert coupons.normalise(" 7kqm-2xd9 ht4b ") == "7KQM2XD9HT4B"
    assert coupons.normalise("oil0") == "0110"  # Crockford look-alikes
    assert coupons.normalise("ab") is None and coupons.normalise("ABC$DEF") is None


def test_generated_codes_are_random_crockford_and_stored_only_as_keyed_hashes(
    client, sessions, settings, catalog
) -> None:
    offer_id = make_offer(sessions, kind="coupon", amount_off={"HKD": 1000})
    codes = make_codes(sessions, settings, offer_id, count=50)
    assert len(set(codes)) == 50 and all(CODE.match(c) for c in codes)
    with sessions() as s:
        stored = list(s.scalars(select(CouponCode).where(CouponCode.offer_id == offer_id)))
    assert len(stored) == 50
    for row in stored:
        assert len(row.code_hash) == 64 and not any(
            c.replace("-", "") in row.code_hash.upper() for c in codes
        )
    secret = settings.secret_key.get_secret_value()
    assert {r.code_hash for r in stored} == {
        coupons.code_hash(secret, coupons.normalise(c)) for c in codes
    }


def test_a_single_use_code_works_once_in_any_case(client, sessions, settings, who) -> None:
    offer_id = make_offer(
        sessions, code="ten-off", kind="coupon", amount_off={"HKD": 1000, "CNY": 900}
    )
    [code] = make_codes(sessions, settings, offer_id)
    q = quote(client, who.headers, who.line["id"], coupon=code.lower().replace("-", " "))
    assert discounts(q) == {"ten-off": 1000} and q["coupon_applied"] is True
    o = order(
        client, who.headers, who.line["id"], coupon_code=code
    )  # replaces the quote: the code is free again
    assert discounts(o) == {"ten-off": 1000}
    other = new_subscriber(client, sessions)
    r = quote(client, other.headers, other.line["id"], coupon=code, expect=409)
    assert r["code"] == "coupon_used_up"
    # The order is cancelled: the code can be used again.
    assert client.post(f"/api/v1/orders/{o['id']}/cancel", headers=who.headers).status_code == 200
    assert discounts(quote(client, other.headers, other.line["id"], coupon=code)) == {
        "ten-off": 1000
    }


def test_unknown_and_malformed_codes_are_refused_alike(client, sessions, settings, who) -> None:
    offer_id = make_offer(sessions, kind="coupon", amount_off={"HKD": 1000})
    make_codes(sessions, settings, offer_id)
    for guess in ("AAAA-BBBB-CCCC", "x"):
        r = quote(client, who.headers, who.line["id"], coupon=guess, expect=422)
        assert r["code"] == "coupon_invalid"
    r = order(client, who.headers, who.line["id"], coupon_code="AAAA-BBBB-CCCC", expect=422)
    assert r["code"] == "coupon_invalid"
    assert client.get("/api/v1/orders", headers=who.headers).json() == []


def test_a_code_whose_offer_does_not_apply_is_refused(client, sessions, settings, who) -> None:
    offer_id = make_offer(sessions, kind="coupon", amount_off={"HKD": 1000}, zones=["mainland"])
    [code] = make_codes(sessions, settings, offer_id)
    r = quote(client, who.headers, who.line["id"], coupon=code, expect=422)
    assert (r["code"], r["detail"]) == (
        "coupon_not_applicable",
        "This coupon cannot be used for this order.",
    )
    reader = new_subscriber(client, sessions, language="zh-Hant")
    r = quote(client, reader.headers, reader.line["id"], coupon=code, expect=422)
    assert r["detail"] == "此優惠碼不適用於本訂單。"
    assert (
        discounts(quote(client, who.headers, who.line["id"], code="mainland-5gb-30d", coupon=code))
        != {}
    )


def test_a_shared_code_with_a_per_customer_limit(client, sessions, settings, catalog) -> None:
    offer_id = make_offer(
        sessions, code="spring", kind="coupon", percent_off=10, per_customer_limit=1
    )
    assert make_codes(sessions, settings, offer_id, code="Spring26", max_uses=None) == ["SPRING26"]
    first, second = new_subscriber(client, sessions), new_subscriber(client, sessions)
    for who in (first, second):
        o = order(client, who.headers, who.line["id"], coupon_code="spring26")
        assert discounts(o) == {"spring": 580}
        f.pay(client, o["payment"]["id"])
    r = quote(client, first.headers, first.line["id"], coupon="SPRING26", expect=422)
    assert r["code"] == "coupon_not_applicable"  # once per customer
    with pytest.raises(coupons.CouponCodeTaken):
        make_codes(sessions, settings, offer_id, code="spring-26")


def test_a_coupon_that_is_not_the_best_is_not_used_up(client, sessions, settings, who) -> None:
    make_offer(sessions, code="first", kind="first_topup", percent_off=30)
    offer_id = make_offer(sessions, code="small", kind="coupon", amount_off={"HKD": 100})
    [code] = make_codes(sessions, settings, offer_id)
    q = quote(client, who.headers, who.line["id"], coupon=code)
    assert discounts(q) == {"first": 1740} and q["coupon_applied"] is False
    with sessions() as s:
        assert s.scalars(select(CouponCode.used).where(CouponCode.offer_id == offer_id)).one() == 0


def test_codes_only_for_coupon_offers(client, sessions, settings, catalog) -> None:
    offer_id = make_offer(sessions, kind="first_topup", percent_off=10)
    with pytest.raises(coupons.NotACouponOffer):
        make_codes(sessions, settings, offer_id)


def test_a_store_sale_takes_a_coupon_the_customer_presents(
    client, sessions, settings, who, operator
) -> None:
    import uuid

    offer_id = make_offer(
        sessions, code="paper", kind="coupon", amount_off={"HKD": 1500}, channels=["store"]
    )
    [code] = make_codes(sessions, settings, offer_id)
    body = {
        "line_id": who.line["id"],
        "pack_id": f.pack_id(client, "hk-5gb-30d"),
        "currency": "HKD",
        "payment_method": "cash",
        "coupon_code": code,
    }
    r = client.post(
        "/api/v1/admin/orders", json=body, headers={**operator, "Idempotency-Key": uuid.uuid4().hex}
    )
    assert r.status_code == 201, r.text
    assert (r.json()["amount"], discounts(r.json())) == (4300, {"paper": 1500})
    # The same code in the app: not this channel.
    assert (
        quote(client, who.headers, who.line["id"], coupon=code, expect=422)["code"]
        == "coupon_not_applicable"
    )
