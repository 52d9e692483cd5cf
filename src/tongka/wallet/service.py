"""Wallets: money an account keeps with tongka, in one currency, spent on overage data.

The balance is the wallet's ledger account (a customer account: it never goes below
zero, and a reservation holds money so it cannot be spent twice). Money comes in from
`system:wallet_funding:<currency>` (a top-up recorded by staff, later paid through a
provider) and leaves to `system:overage_sales:<currency>` when overage data is used.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka.account.models import Account
from tongka.errors import Conflict, NotFound, Unprocessable
from tongka.i18n import _
from tongka.ledger import service as ledger
from tongka.money import CURRENCIES
from tongka.wallet.models import Wallet


class WalletNotFound(NotFound):
    code = "wallet_not_found"
    message = _("You have no wallet yet.")


class WalletCurrencyMismatch(Conflict):
    code = "wallet_currency_mismatch"
    message = _("Your wallet is in {currency}; amounts for it must be in {currency} too.")


class CurrencyNotSupported(Unprocessable):
    code = "currency_not_supported"
    message = _("The currency {currency} is not supported.")


def wallet_of(session: Session, account_id: uuid.UUID) -> Wallet | None:
    return session.scalar(select(Wallet).where(Wallet.account_id == account_id))


def open_wallet(session: Session, account: Account, currency: str) -> Wallet:
    """The account's wallet, opened in `currency` if it has none; one in another currency is refused."""
    if currency not in CURRENCIES:
        raise CurrencyNotSupported(currency=currency)
    wallet = wallet_of(session, account.id)
    if wallet is None:
        try:
            with session.begin_nested():
                money = ledger.open_account(session, unit=currency, kind="wallet")
                wallet = Wallet(
                    account_id=account.id, currency=currency, ledger_account_id=money.id
                )
                session.add(wallet)
        except IntegrityError:  # opened at the same moment by another request
            wallet = session.scalars(select(Wallet).where(Wallet.account_id == account.id)).one()
    if wallet.currency != currency:
        raise WalletCurrencyMismatch(currency=wallet.currency)
    return wallet


def credit(
    session: Session, account: Account, amount: int, currency: str, *, reference: str
) -> Wallet:
    """Put `amount` into the account's wallet (opened in `currency` if need be). Once per `reference`."""
    wallet = open_wallet(session, account, currency)
    if not ledger.credited(session, wallet.ledger_account, f"wallet_topup:{reference}"):
        ledger.transfer(
            session,
            ledger.system_account(session, "wallet_funding", currency),
            wallet.ledger_account,
            amount,
            reason="wallet_topup",
            reference=f"wallet_topup:{reference}",
        )
    session.refresh(wallet.ledger_account)
    return wallet
