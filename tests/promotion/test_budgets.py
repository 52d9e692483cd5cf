"""Budgets: redemptions and money per offer, held by quotes and open orders, released when they lapse,
expire, are cancelled or refunded in full; and what a late payment does."""

from __future__ import annotations

import uuid

import pytest

from tests import factories as f
from tests.factories import new_subscriber, order
from tests.promotion.factories import (
    discounts,
    make_offer,
    offer_row,
    quote,
    redemption_states,
)
from tongka.db import transaction
from tongka.money import GB
from tongka.renewal import flow

pytestmark = pytest.mark.usefixtures("generic_sandbox")


def expire_orders(sessions) -> int:  # type: ignore[no-untyped-def]
    with transaction(sessions) as s:
        return flow.expire_unpaid(s)


def test_at_most_max_redemptions(client, sessions, catalog) -> None:
    offer_id = make_offer(
        sessions, code="two", kind="first_topup", amount_off={"HKD": 500}, max_redemptions=2
    )
    got = [
        discounts(order(client, w.headers, w.line["id"]))
        for w in (new_subscriber(client, sessions) for _ in range(3))
    ]
    assert got == [{"two": 500}, {"two": 500}, {}]
    assert offer_row(sessions, offer_id) == (2, {"CNY": 0, "HKD": 1000})


def test_at_most_max_discount_per_currency(client, sessions, catalog) -> None:
    offer_id = make_offer(
        sessions, code="cap", kind="first_topup", percent_off=10, max_discount={"HKD": 1000}
    )
    a, b, c = (new_subscriber(client, sessions) for _ in range(3))
    assert discounts(order(client, a.headers, a.line["id"])) == {"cap": 580}
    assert discounts(order(client, b.headers, b.line["id"])) == {}  # 580 more would pass HK$10.00
    assert discounts(order(client, b.headers, b.line["id"], code="hk-1gb-7d")) == {
        "cap": 180
    }  # 760 ≤ 1000
    assert discounts(order(client, c.headers, c.line["id"], currency="CNY")) == {
        "cap": 520
    }  # CNY has no cap
    assert offer_row(sessions, offer_id)[1] == {"CNY": 520, "HKD": 760}


def test_expired_and_cancelled_orders_give_their_redemptions_back(
    client, sessions, who, frozen_clock
) -> None:
    offer_id = make_offer(
        sessions,
        code="one",
        kind="bonus_data",
        bonus_bytes=GB,
        bonus_zone="hk",
        bonus_validity_days=7,
        max_redemptions=1,
    )
    cancelled = order(client, who.headers, who.line["id"])
    assert discounts(cancelled) == {"one": 0} and offer_row(sessions, offer_id)[0] == 1
    client.post(f"/api/v1/orders/{cancelled['id']}/cancel", headers=who.headers)
    assert offer_row(sessions, offer_id)[0] == 0
    unpaid = order(client, who.headers, who.line["id"])
    assert discounts(unpaid) == {"one": 0}
    frozen_clock.advance(minutes=31)
    assert expire_orders(sessions) == 1
    assert offer_row(sessions, offer_id)[0] == 0
    assert redemption_states(sessions, offer_id) == ["released", "released"]


def test_a_lapsed_quote_gives_its_hold_back(client, sessions, who, frozen_clock) -> None:
    offer_id = make_offer(
        sessions, code="one", kind="first_topup", amount_off={"HKD": 500}, max_redemptions=1
    )
    quote(client, who.headers, who.line["id"])
    assert offer_row(sessions, offer_id) == (1, {"CNY": 0, "HKD": 500})
    frozen_clock.advance(minutes=16)
    expire_orders(sessions)  # the job closes lapsed quotes too
    assert offer_row(sessions, offer_id) == (0, {"CNY": 0, "HKD": 0})
    assert redemption_states(sessions, offer_id) == ["released"]


def test_a_partial_refund_keeps_the_redemption_a_full_one_releases_it_and_takes_the_bonus_back(
    client, sessions, who, operator
) -> None:
    offer_id = make_offer(
        sessions,
        code="gift",
        kind="bonus_data",
        bonus_bytes=GB,
        bonus_zone="hk",
        bonus_validity_days=30,
        max_redemptions=5,
    )
    o = order(client, who.headers, who.line["id"])
    f.pay(client, o["payment"]["id"])
    assert redemption_states(sessions, offer_id) == ["confirmed"]
    assert f.refund(client, operator, o["payment"]["id"], 1000).status_code == 201
    assert (
        redemption_states(sessions, offer_id) == ["confirmed"]
        and offer_row(sessions, offer_id)[0] == 1
    )
    assert f.refund(client, operator, o["payment"]["id"], 4800).status_code == 201
    assert (
        redemption_states(sessions, offer_id) == ["released"]
        and offer_row(sessions, offer_id)[0] == 0
    )
    balance = client.get(f"/api/v1/lines/{who.line['id']}/balance", headers=who.headers).json()
    assert (
        balance["zones"]["hk"]["remaining_bytes"] == 0
    )  # the pack's data and the bonus both went back


def test_a_late_payment_for_an_expired_order_keeps_its_offer_while_the_budget_allows(
    client, sessions, who, frozen_clock
) -> None:
    offer_id = make_offer(
        sessions, code="one", kind="first_topup", amount_off={"HKD": 500}, max_redemptions=1
    )
    o = order(client, who.headers, who.line["id"])
    frozen_clock.advance(minutes=31)
    expire_orders(sessions)
    assert offer_row(sessions, offer_id)[0] == 0
    f.pay(client, o["payment"]["id"])  # the payer pays at the provider all the same
    after = client.get(f"/api/v1/orders/{o['id']}", headers=who.headers).json()
    assert after["status"] == "fulfilled" and after["amount"] == 5300
    assert offer_row(sessions, offer_id)[0] == 1 and redemption_states(sessions, offer_id) == [
        "confirmed"
    ]


def test_a_late_payment_is_refunded_when_the_budget_went_to_someone_else(
    client, sessions, who, frozen_clock
) -> None:
    offer_id = make_offer(
        sessions, code="one", kind="first_topup", amount_off={"HKD": 500}, max_redemptions=1
    )
    o = order(client, who.headers, who.line["id"])
    frozen_clock.advance(minutes=31)
    expire_orders(sessions)
    other = new_subscriber(client, sessions)
    assert discounts(order(client, other.headers, other.line["id"])) == {"one": 500}
    f.pay(client, o["payment"]["id"])
    after = client.get(f"/api/v1/orders/{o['id']}", headers=who.headers).json()
    assert after["status"] == "expired" and after["bucket_id"] is None
    assert offer_row(sessions, offer_id)[0] == 1  # never past the budget
    with sessions() as s:
        from sqlalchemy import select

        from tongka.payment.models import Refund

        [back] = s.scalars(select(Refund).where(Refund.payment_id == uuid.UUID(o["payment"]["id"])))
        assert (back.amount, back.requested_by) == (5300, "system:closed_order")
