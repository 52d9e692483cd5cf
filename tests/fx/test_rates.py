"""Paying a pack in the other currency, at a rate set by the operator and locked on the order."""

from __future__ import annotations

import pytest

from tests import factories as f
from tongka.db import transaction
from tongka.fx import service as fx
from tongka.money import Money


@pytest.mark.parametrize(
    ("amount", "rate", "expected"),
    [
        (1000, 923400, 923),
        (1050, 923400, 970),
        (5, 900000, 5),
        (15, 100000, 2),
        (1, 500000, 1),
        (3, 500000, 2),
    ],
)
def test_convert_rounds_half_up_to_the_minor_unit(amount: int, rate: int, expected: int) -> None:
    assert fx.convert(Money(amount, "HKD"), "CNY", rate) == Money(expected, "CNY")


@pytest.mark.parametrize("text", ["0", "-1", "abc", "0.1234567", ""])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        fx.parse_rate(text)


def test_cli_sets_and_lists_rates(cli) -> None:
    assert cli("rates", "set", "hkd", "cny", "0.9234").exit_code == 0
    result = cli("rates", "list")
    assert "1 HKD = 0.923400 CNY" in result.output
    assert cli("rates", "set", "HKD", "HKD", "1").exit_code == 2
    assert cli("rates", "set", "HKD", "CNY", "0.12345678").exit_code == 2


def test_an_order_in_the_other_currency_locks_the_rate(client, sessions, demo) -> None:
    f.hkd_only_pack(sessions, 2350)
    headers, line, _ = f.new_subscriber(client, sessions)
    order = f.order(client, headers, line["id"], code="hk-only-2gb", currency="CNY")
    # 23.50 HKD × 0.9234 = 21.6999 CNY -> 21.70
    assert (order["amount"], order["currency"]) == (2170, "CNY")
    assert (order["list_amount"], order["list_currency"], order["exchange_rate"]) == (
        2350,
        "HKD",
        "0.923400",
    )
    assert order["payment"]["amount"] == 2170 and order["payment"]["currency"] == "CNY"

    with transaction(sessions) as s:  # a new rate does not touch the order already made
        fx.set_rate(s, "HKD", "CNY", 950000, set_by="test")
    again = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    assert again["amount"] == 2170 and again["exchange_rate"] == "0.923400"
    f.pay(client, order["payment"]["id"])
    assert (
        client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()["status"] == "fulfilled"
    )
    newer = f.order(client, headers, line["id"], code="hk-only-2gb", currency="CNY")
    assert newer["amount"] == 2233  # 23.50 × 0.95 = 22.325 -> 22.33
