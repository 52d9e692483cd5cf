"""Wallets: money an account keeps for overage, in one currency, credited once per top-up, shown
to its owner alone.

How overage spends a wallet is in tests/charging/test_overage.py.
"""

from __future__ import annotations

import uuid

import pytest

from tests import factories as tf
from tests.charging import factories as f
from tests.wallet.factories import available
from tongka.account.models import Account
from tongka.charging import overage
from tongka.db import transaction
from tongka.wallet import service as wallets


def test_a_cap_in_another_currency_than_the_wallet_is_refused(session) -> None:
    line, owner = f.overage_line(session, wallet=1_000, currency="HKD")
    with pytest.raises(wallets.WalletCurrencyMismatch):
        overage.configure(session, line, owner, enabled=True, monthly_cap=100, currency="CNY")


def test_staff_credit_wallets_from_the_cli_once_per_reference(cli, session) -> None:
    _line, owner = f.overage_line(session)
    session.commit()
    done = cli("wallets", "credit", owner.username, "5000", "HKD", "--reference", "MK01-r1")
    assert done.exit_code == 0 and "5000 HKD available" in done.output
    again = cli("wallets", "credit", owner.username, "5000", "HKD", "--reference", "MK01-r1")
    assert "5000 HKD available" in again.output  # the same top-up is credited once
    other = cli("wallets", "credit", owner.username, "100", "CNY", "--reference", "MK01-r2")
    assert other.exit_code == 2 and "HKD" in other.output
    assert cli("wallets", "credit", "nobody", "100", "HKD", "--reference", "x").exit_code == 2
    assert available(session, owner.id) == 5000


def test_the_owner_sees_a_credited_wallet_and_no_one_else_does(client, sessions) -> None:
    owner = tf.register(client)
    with transaction(sessions) as s:
        account = s.get_one(Account, uuid.UUID(owner["id"]))
        wallets.credit(s, account, 5000, "HKD", reference="MK01-r3")
    headers = tf.login(client, owner["username"])
    assert client.get("/api/v1/wallet", headers=headers).json() == {
        "currency": "HKD",
        "available": 5000,
        "held": 0,
    }
    r = client.get("/api/v1/wallet", headers=tf.subscriber(client, language="zh-Hant"))
    assert (r.status_code, r.json()["code"]) == (404, "wallet_not_found")
    assert r.json()["detail"] == "您還沒有錢包。"  # in their language
    assert client.get("/api/v1/wallet").status_code == 401
