"""Wallets: money an account keeps for overage, in one currency, credited once per top-up.

How overage spends a wallet is in tests/charging/test_overage.py.
"""

from __future__ import annotations

import pytest

from tests.charging import factories as f
from tests.wallet.factories import available
from tongka.charging import overage
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
