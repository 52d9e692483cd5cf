"""The pricing function on its own: each kind, stacking, rounding, conversion, and its invariants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tongka.money import GB, Money
from tongka.promotion import pricing


@dataclass
class Terms:
    code: str
    kind: str = "coupon"
    stackable: bool = False
    percent_off_bp: int | None = None
    amount_off: dict[str, int] | None = None
    tiers: list[dict[str, Any]] | None = None
    bonus_bytes: int | None = None
    bonus_zone: str | None = None
    bonus_validity_days: int | None = None
    names: dict[str, str] = field(default_factory=lambda: {"en": "An offer"})
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def HKD(amount):
    return Money(amount, "HKD")


def applied(p: pricing.Price) -> dict[str, int]:
    return {a.offer.code: a.discount for a in p.applied}


@pytest.mark.parametrize(
    ("amount", "bp", "off"),
    [
        (5800, 1000, 580),  # 10 % exactly
        (1999, 1250, 250),  # 249.875 -> 250 (half up)
        (1990, 1250, 249),  # 248.75 -> 249
        (1, 5000, 1),  # 0.5 -> 1
        (3, 3333, 1),  # 0.9999 -> 1
        (5800, 10000, 5800),  # 100 %
    ],
)
def test_percentages_round_half_up_to_the_minor_unit(amount: int, bp: int, off: int) -> None:
    assert pricing.discount_of(Terms("p", percent_off_bp=bp), HKD(amount)) == off


def test_spend_threshold_takes_the_highest_tier_reached_in_the_list_currency() -> None:
    tiers = [
        {"currency": "HKD", "min": 5000, "off": 500},
        {"currency": "HKD", "min": 9000, "off": 1200},
        {"currency": "CNY", "min": 4000, "off": 400},
    ]
    offer = Terms("mj", kind="spend_threshold", tiers=tiers)
    assert pricing.discount_of(offer, HKD(4999)) == 0
    assert pricing.discount_of(offer, HKD(5000)) == 500
    assert pricing.discount_of(offer, HKD(9800)) == 1200
    assert pricing.discount_of(offer, Money(4800, "CNY")) == 400
    assert pricing.discount_of(offer, Money(3900, "CNY")) == 0


def test_a_fixed_amount_needs_one_in_the_list_currency_and_never_exceeds_the_price() -> None:
    offer = Terms("fixed", amount_off={"HKD": 2000})
    assert pricing.discount_of(offer, HKD(5800)) == 2000
    assert pricing.discount_of(offer, HKD(1700)) == 1700
    assert pricing.discount_of(offer, Money(5200, "CNY")) == 0


def test_the_best_single_discount_wins_and_bonus_data_comes_on_top() -> None:
    offers = [
        Terms("ten", kind="first_topup", percent_off_bp=1000),  # 580
        Terms(
            "eight", kind="spend_threshold", tiers=[{"currency": "HKD", "min": 5000, "off": 800}]
        ),
        Terms("gift", kind="bonus_data", bonus_bytes=GB, bonus_zone="hk", bonus_validity_days=30),
    ]
    p = pricing.price(HKD(5800), "HKD", None, offers)  # type: ignore[arg-type]
    assert applied(p) == {"eight": 800, "gift": 0}
    assert p.total == HKD(5000) and p.breakdown["bonus_bytes"] == GB
    assert p.breakdown["offers"][1]["bonus"] == {"bytes": GB, "zone": "hk", "validity_days": 30}


def test_on_a_tie_the_offer_that_needs_no_coupon_is_used() -> None:
    offers = [
        Terms("a-coupon", amount_off={"HKD": 500}),
        Terms("b-first", kind="first_topup", amount_off={"HKD": 500}),
    ]
    assert applied(pricing.price(HKD(5800), "HKD", None, offers)) == {"b-first": 500}  # type: ignore[arg-type]


def test_stackable_offers_add_to_the_best_single_one() -> None:
    offers = [
        Terms("best", kind="first_topup", percent_off_bp=2000),  # 1160
        Terms("worse", amount_off={"HKD": 300}),
        Terms("stack-5", percent_off_bp=500, stackable=True),  # 290 of the list price
        Terms("stack-fixed", amount_off={"HKD": 100}, stackable=True),
    ]
    p = pricing.price(HKD(5800), "HKD", None, offers)  # type: ignore[arg-type]
    assert applied(p) == {"best": 1160, "stack-5": 290, "stack-fixed": 100}
    assert p.total == HKD(5800 - 1160 - 290 - 100)


def test_discounts_stop_at_zero() -> None:
    offers = [
        Terms("big", amount_off={"HKD": 5000}),
        Terms("more", amount_off={"HKD": 5000}, stackable=True),
    ]
    p = pricing.price(HKD(5800), "HKD", None, offers)  # type: ignore[arg-type]
    assert applied(p) == {"big": 5000, "more": 800} and p.total == HKD(0)


def test_discounts_apply_to_the_list_price_before_one_conversion() -> None:
    offers = [Terms("ten", percent_off_bp=1000)]
    # HK$23.50 less 10 % (2.35) = 21.15 HKD; × 0.9234 = 19.52991 CNY -> 19.53
    p = pricing.price(HKD(2350), "CNY", 923400, offers)  # type: ignore[arg-type]
    assert applied(p) == {"ten": 235}
    assert p.subtotal == HKD(2115) and p.total == Money(1953, "CNY")
    assert p.breakdown["exchange_rate"] == {"base": "HKD", "quote": "CNY", "rate": "0.923400"}
    assert p.breakdown["offers"][0]["currency"] == "HKD"


def test_the_breakdown_reads_the_same_in_each_language() -> None:
    offers = [
        Terms(
            "mj",
            kind="spend_threshold",
            tiers=[{"currency": "HKD", "min": 5000, "off": 800}],
            names={"en": "Spend 50 save 8", "zh-Hant": "滿50減8"},
        ),
        Terms(
            "gift",
            kind="bonus_data",
            bonus_bytes=GB,
            bonus_zone="hk",
            bonus_validity_days=30,
            names={"en": "1 GB free", "zh-Hant": "送1GB"},
        ),
    ]
    b = pricing.price(HKD(5800), "HKD", None, offers).breakdown  # type: ignore[arg-type]
    assert pricing.describe(b, "en") == [
        "List price: HK$58.00",
        "Spend 50 save 8: −HK$8.00",
        "1 GB free: +1 GB of Hong Kong data, valid for 30 days",
    ]
    assert pricing.total_line(b, "en") == "Total: HK$50.00"
    assert pricing.describe(b, "zh-Hant")[1:] == [
        "滿50減8：−HK$8.00",
        "送1GB：+1 GB 香港數據，有效 30 天",
    ]


offer_terms = st.builds(
    Terms,
    code=st.text("abcdefgh", min_size=1, max_size=6),
    kind=st.sampled_from(["first_topup", "coupon", "spend_threshold", "bonus_data"]),
    stackable=st.booleans(),
    percent_off_bp=st.one_of(st.none(), st.integers(1, 10000)),
    amount_off=st.one_of(
        st.none(), st.dictionaries(st.sampled_from(["HKD", "CNY"]), st.integers(0, 10**7))
    ),
    tiers=st.one_of(
        st.none(),
        st.lists(
            st.fixed_dictionaries(
                {
                    "currency": st.sampled_from(["HKD", "CNY"]),
                    "min": st.integers(1, 10**6),
                    "off": st.integers(1, 10**7),
                }
            ),
            max_size=3,
        ),
    ),
    bonus_bytes=st.one_of(st.none(), st.integers(1, 100 * GB)),
    bonus_zone=st.just("both"),
    bonus_validity_days=st.just(30),
)


@given(
    amount=st.integers(1, 10**8),
    currency=st.sampled_from(["HKD", "CNY"]),
    rate=st.one_of(st.none(), st.integers(1, 5_000_000)),
    offers=st.lists(offer_terms, max_size=6),
)
def test_the_price_is_never_below_zero_and_the_breakdown_adds_up(
    amount, currency, rate, offers
) -> None:  # type: ignore[no-untyped-def]
    listed = Money(amount, currency)
    pay_in = currency if rate is None else ("CNY" if currency == "HKD" else "HKD")
    p = pricing.price(listed, pay_in, rate, offers)
    b = p.breakdown
    assert 0 <= b["subtotal"]["amount"] <= amount and b["total"]["amount"] >= 0
    assert b["list"]["amount"] - sum(o["amount"] for o in b["offers"]) == b["subtotal"]["amount"]
    assert all(o["amount"] >= 0 and o["currency"] == currency for o in b["offers"])
    assert b["bonus_bytes"] == sum(o.get("bonus", {}).get("bytes", 0) for o in b["offers"])
    # At most one discount that is not stackable.
    by_code = {o.code: o for o in offers}
    assert sum(1 for a in p.applied if a.discount and not a.offer.stackable) <= 1
    # Nothing beats the best single discount on its own.
    best = max((pricing.discount_of(o, listed) for o in offers if not o.stackable), default=0)
    assert p.discount >= min(best, amount)
    assert {o["code"] for o in b["offers"]} <= set(by_code)
    if rate is None:
        assert b["total"] == b["subtotal"]
