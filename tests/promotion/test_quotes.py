"""Offers through the app: each kind and condition, quotes that hold, orders that charge what was quoted."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from tests import factories as f
from tests.factories import new_subscriber, order
from tests.promotion.factories import discounts, make_offer, quote
from tongka import clock
from tongka.account.models import Account
from tongka.db import transaction
from tongka.money import GB
from tongka.order import service as orders

pytestmark = pytest.mark.usefixtures("generic_sandbox")

MJ_TIERS = [
    {"currency": "HKD", "min": 5000, "off": 500},
    {"currency": "HKD", "min": 9000, "off": 1500},
    {"currency": "CNY", "min": 4500, "off": 450},
]


def test_without_offers_the_quote_is_the_list_price(client, who) -> None:
    q = quote(client, who.headers, who.line["id"])
    assert (q["amount"], q["currency"], q["price"]["offers"], q["coupon_applied"]) == (
        5800,
        "HKD",
        [],
        None,
    )
    assert q["lines"] == ["List price: HK$58.00", "Total: HK$58.00"]
    expires = datetime.fromisoformat(q["expires_at"])
    assert timedelta(minutes=14) < expires - clock.now() <= timedelta(minutes=15)


def test_first_top_up_is_for_an_accounts_first_fulfilled_order_only(client, sessions, who) -> None:
    make_offer(sessions, code="first", kind="first_topup", percent_off=20, channels=["app"])
    first = order(client, who.headers, who.line["id"])
    assert discounts(first) == {"first": 1160} and first["amount"] == 4640
    assert first["payment"]["amount"] == 4640
    # While the first order is open its redemption is held: once per account.
    assert discounts(quote(client, who.headers, who.line["id"])) == {}
    f.pay(client, first["payment"]["id"])
    assert discounts(order(client, who.headers, who.line["id"])) == {}
    # The demo subscriber renewed before: not new.
    demo = f.login(client, "demo", "demo-password")
    demo_line = client.get("/api/v1/lines", headers=demo).json()[0]
    assert discounts(quote(client, demo, demo_line["id"])) == {}


def test_an_expired_first_order_gives_the_first_top_up_back(client, sessions, who) -> None:
    make_offer(sessions, code="first", kind="first_topup", amount_off={"HKD": 1000})
    first = order(client, who.headers, who.line["id"])
    assert (
        client.post(f"/api/v1/orders/{first['id']}/cancel", headers=who.headers).status_code == 200
    )
    assert discounts(quote(client, who.headers, who.line["id"])) == {"first": 1000}


def test_spend_threshold_tiers_per_currency(client, sessions, who) -> None:
    make_offer(sessions, code="mj", kind="spend_threshold", tiers=MJ_TIERS)
    assert (
        discounts(quote(client, who.headers, who.line["id"], code="hk-1gb-7d")) == {}
    )  # HK$18 < 50
    assert discounts(quote(client, who.headers, who.line["id"], code="hk-5gb-30d")) == {
        "mj": 500
    }  # HK$58
    assert discounts(quote(client, who.headers, who.line["id"], code="both-5gb-30d")) == {
        "mj": 1500
    }  # HK$98
    q = quote(client, who.headers, who.line["id"], code="hk-5gb-30d", currency="CNY")  # ¥52
    assert discounts(q) == {"mj": 450} and q["amount"] == 5200 - 450


def test_bonus_data_arrives_as_a_bucket_of_its_own(client, sessions, who) -> None:
    make_offer(
        sessions,
        code="gift",
        kind="bonus_data",
        bonus_bytes=GB,
        bonus_zone="both",
        bonus_validity_days=60,
        pack_codes=["hk-5gb-30d"],
    )
    assert discounts(quote(client, who.headers, who.line["id"], code="hk-1gb-7d")) == {}
    o = order(client, who.headers, who.line["id"])
    assert o["amount"] == 5800 and o["price"]["bonus_bytes"] == GB
    f.pay(client, o["payment"]["id"])
    balance = client.get(f"/api/v1/lines/{who.line['id']}/balance", headers=who.headers).json()
    sizes = sorted((b["zone"], b["total_bytes"]) for b in balance["buckets"])
    assert sizes == [("both", GB), ("hk", 5 * GB)]
    bonus = next(b for b in balance["buckets"] if b["zone"] == "both")
    assert (
        timedelta(days=59, hours=23)
        < datetime.fromisoformat(bonus["expires_at"]) - clock.now()
        <= timedelta(days=60)
    )


def test_the_best_single_discount_plus_stackable_ones_plus_bonus(client, sessions, who) -> None:
    make_offer(sessions, code="mj", kind="spend_threshold", tiers=MJ_TIERS)
    make_offer(sessions, code="first", kind="first_topup", percent_off=10)
    make_offer(sessions, code="extra", kind="first_topup", amount_off={"HKD": 200}, stackable=True)
    make_offer(
        sessions,
        code="gift",
        kind="bonus_data",
        bonus_bytes=GB,
        bonus_zone="hk",
        bonus_validity_days=30,
    )
    q = quote(client, who.headers, who.line["id"])  # HK$58: 10 % = 5.80 beats 5.00; 2.00 stacks
    assert discounts(q) == {"first": 580, "extra": 200, "gift": 0}
    assert q["amount"] == 5800 - 780


@pytest.mark.parametrize("time_zone", ["Asia/Hong_Kong", "Asia/Shanghai"])
def test_a_time_window_is_read_in_its_time_zone(
    client, sessions, who, frozen_clock, time_zone
) -> None:
    local_now = (
        clock.now().astimezone(ZoneInfo(time_zone)).replace(tzinfo=None)
    )  # as the operator typed it
    make_offer(
        sessions,
        code="soon",
        kind="first_topup",
        amount_off={"HKD": 100},
        time_zone=time_zone,
        starts_at=(local_now + timedelta(hours=1)).isoformat(),
        ends_at=(local_now + timedelta(hours=2)).isoformat(),
    )
    assert discounts(quote(client, who.headers, who.line["id"])) == {}
    frozen_clock.advance(hours=1, minutes=1)
    assert discounts(quote(client, who.headers, who.line["id"])) == {"soon": 100}
    frozen_clock.advance(hours=1)  # two hours and a minute on: over
    assert discounts(quote(client, who.headers, who.line["id"])) == {}


@pytest.mark.parametrize(
    ("condition", "matching", "other"),
    [
        ({"currencies": ["CNY"]}, {"currency": "CNY"}, {"currency": "HKD"}),
        ({"zones": ["mainland"]}, {"code": "mainland-5gb-30d"}, {"code": "hk-5gb-30d"}),
        ({"pack_codes": ["both-1gb-7d"]}, {"code": "both-1gb-7d"}, {"code": "both-5gb-30d"}),
    ],
)
def test_currency_zone_and_pack_conditions(
    client, sessions, who, condition, matching, other
) -> None:
    make_offer(sessions, code="cond", kind="first_topup", percent_off=10, **condition)
    assert "cond" in discounts(quote(client, who.headers, who.line["id"], **matching))
    assert discounts(quote(client, who.headers, who.line["id"], **other)) == {}


def test_channel_condition_app_only(client, sessions, who, operator) -> None:
    make_offer(sessions, code="app-only", kind="first_topup", percent_off=10, channels=["app"])
    assert "app-only" in discounts(quote(client, who.headers, who.line["id"]))
    r = client.post(
        "/api/v1/admin/orders",
        json={
            "line_id": who.line["id"],
            "pack_id": f.pack_id(client, "hk-5gb-30d"),
            "currency": "HKD",
            "payment_method": "cash",
        },
        headers={**operator, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201 and r.json()["amount"] == 5800 and r.json()["price"]["offers"] == []


def test_region_condition(client, sessions, who) -> None:
    make_offer(
        sessions, code="mainlanders", kind="first_topup", percent_off=10, regions=["mainland"]
    )
    assert discounts(quote(client, who.headers, who.line["id"])) == {}
    with transaction(sessions) as s:
        s.execute(update(Account).where(Account.username == who.username).values(region="mainland"))
    assert discounts(quote(client, who.headers, who.line["id"])) == {"mainlanders": 580}


def test_new_customers_only_on_any_kind(client, sessions, who) -> None:
    make_offer(
        sessions,
        code="welcome-gift",
        kind="bonus_data",
        bonus_bytes=GB,
        bonus_zone="hk",
        bonus_validity_days=7,
        new_customers_only=True,
    )
    o = order(client, who.headers, who.line["id"])
    assert "welcome-gift" in discounts(o)
    f.pay(client, o["payment"]["id"])
    assert discounts(quote(client, who.headers, who.line["id"])) == {}


def test_paused_and_ended_offers_give_nothing(client, sessions, who, operator) -> None:
    offer_id = make_offer(sessions, code="pausable", kind="first_topup", percent_off=10)
    assert (
        client.post(f"/api/v1/admin/offers/{offer_id}/pause", headers=operator).json()["status"]
        == "paused"
    )
    assert discounts(quote(client, who.headers, who.line["id"])) == {}
    assert (
        client.post(f"/api/v1/admin/offers/{offer_id}/resume", headers=operator).json()["status"]
        == "active"
    )
    assert discounts(quote(client, who.headers, who.line["id"])) == {"pausable": 580}
    assert (
        client.post(f"/api/v1/admin/offers/{offer_id}/end", headers=operator).json()["status"]
        == "ended"
    )
    assert discounts(quote(client, who.headers, who.line["id"])) == {}
    r = client.post(f"/api/v1/admin/offers/{offer_id}/resume", headers=operator)
    assert (r.status_code, r.json()["code"]) == (409, "offer_state_conflict")


def test_an_order_from_a_quote_charges_what_was_quoted(client, sessions, who, frozen_clock) -> None:
    offer_id = make_offer(sessions, code="first", kind="first_topup", percent_off=15)
    q = quote(client, who.headers, who.line["id"])
    # Meanwhile the offer is paused and the catalog price rises: the quote still holds.
    pack_id = uuid.UUID(f.pack_id(client, "hk-5gb-30d"))
    with transaction(sessions) as s:
        from tongka.catalog import service as catalog
        from tongka.catalog.models import Pack
        from tongka.promotion.models import Offer

        s.get(Offer, offer_id).status = "paused"
        pack = s.get(Pack, pack_id)
        catalog.upsert_pack(
            s,
            code=pack.code,
            names=pack.names,
            zone=pack.zone,
            volume_bytes=pack.volume_bytes,
            validity_days=pack.validity_days,
            prices={"HKD": 9900},
            channels=pack.channels,
        )
    frozen_clock.advance(minutes=14)
    o = order(client, who.headers, who.line["id"], quote_id=q["id"])
    assert (o["amount"], o["quote_id"], o["price"]) == (q["amount"], q["id"], q["price"])
    assert o["amount"] == 5800 - 870
    # A quote is used once.
    r = client.post(
        "/api/v1/orders",
        json={
            "line_id": who.line["id"],
            "pack_id": f.pack_id(client, "hk-5gb-30d"),
            "currency": "HKD",
            "payment_method": "alipay",
            "quote_id": q["id"],
        },
        headers={**who.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert (r.status_code, r.json()["code"]) == (409, "quote_used")


def test_quotes_lapse_and_must_match_the_order(client, sessions, who, frozen_clock) -> None:
    make_offer(sessions, code="first", kind="first_topup", percent_off=15, max_redemptions=1)
    q = quote(client, who.headers, who.line["id"])
    o = order(client, who.headers, who.line["id"], code="hk-1gb-7d", quote_id=q["id"], expect=409)
    assert o["code"] == "quote_mismatch"
    o = order(client, who.headers, who.line["id"], currency="CNY", quote_id=q["id"], expect=409)
    assert o["code"] == "quote_mismatch"
    stranger = new_subscriber(client, sessions)
    o = order(client, stranger.headers, stranger.line["id"], quote_id=q["id"], expect=404)
    assert o["code"] == "quote_not_found"
    assert client.get(f"/api/v1/quotes/{q['id']}", headers=stranger.headers).status_code == 404
    assert (
        client.get(f"/api/v1/quotes/{q['id']}", headers=who.headers).json()["amount"] == q["amount"]
    )
    frozen_clock.advance(minutes=15, seconds=1)
    o = order(client, who.headers, who.line["id"], quote_id=q["id"], expect=409)
    assert o["code"] == "quote_expired"
    # Its hold went back when someone else needed the offer.
    assert discounts(quote(client, stranger.headers, stranger.line["id"])) == {"first": 870}


def test_a_new_quote_replaces_the_last(client, sessions, who) -> None:
    make_offer(sessions, code="first", kind="first_topup", percent_off=15)
    old = quote(client, who.headers, who.line["id"])
    new = quote(client, who.headers, who.line["id"], code="both-5gb-30d")
    assert discounts(new) == {
        "first": 1470
    }  # the old quote's hold did not count against the limit of one
    o = order(client, who.headers, who.line["id"], quote_id=old["id"], expect=409)
    assert o["code"] == "quote_used"


def test_the_offer_applies_to_the_list_price_before_conversion(client, sessions, who) -> None:
    f.hkd_only_pack(sessions, 2350)
    make_offer(sessions, code="first", kind="first_topup", percent_off=10)
    o = order(client, who.headers, who.line["id"], code="hk-only-2gb", currency="CNY")
    assert discounts(o) == {"first": 235}  # of HK$23.50
    assert o["price"]["subtotal"] == {"amount": 2115, "currency": "HKD"}
    assert (o["amount"], o["currency"], o["list_amount"], o["exchange_rate"]) == (
        1953,
        "CNY",
        2350,
        "0.923400",
    )


def test_a_free_order_is_fulfilled_without_a_provider(client, sessions, who) -> None:
    make_offer(sessions, code="all", kind="first_topup", percent_off=100)
    o = order(client, who.headers, who.line["id"])
    assert (o["amount"], o["status"]) == (0, "fulfilled")
    assert (o["payment"]["provider"], o["payment"]["status"], o["payment"]["amount"]) == (
        "free",
        "succeeded",
        0,
    )
    [receipt] = client.get("/api/v1/receipts", headers=who.headers).json()
    assert receipt["content"]["price"]["paid"] == {"amount": 0, "currency": "HKD"}


def test_is_new_customer_counts_refunded_orders(sessions, client, who, operator) -> None:
    o = order(client, who.headers, who.line["id"])
    f.pay(client, o["payment"]["id"])
    r = f.refund(client, operator, o["payment"]["id"], 5800, key="r1", reason="test")
    assert r.status_code == 201, r.text
    with sessions() as s:
        account_id = s.query(Account.id).filter(Account.username == who.username).scalar()
        assert (
            orders.is_new_customer(s, account_id) is False
        )  # a refunded first order does not make one new again
