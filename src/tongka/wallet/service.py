"""Wallets: money an account keeps with tongka, in one currency, spent on overage data.

The balance is the wallet's ledger account (a customer account: it never goes below
zero, and a reservation holds money so it cannot be spent twice). Money comes in from
`system:wallet_funding:<currency>` (a top-up recorded by staff, or a `WalletTopup` paid
through a provider: its payment is booked into that account) and leaves to
`system:overage_sales:<currency>` when overage data is used.

A top-up moves `awaiting_payment` -> `credited` once, by a guarded update under its row lock,
and its credit is made once per reference (`topup:<id>`), so a replayed callback, the sync job
and a second worker credit it once between them. Left unpaid past its time it is `expired` (its
payment is then closed at the provider); money that still arrives for it is credited all the same.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Account
from tongka.errors import Conflict, NotFound, Unprocessable
from tongka.i18n import _
from tongka.ledger import service as ledger
from tongka.money import CURRENCIES, Money
from tongka.money import currency as as_currency
from tongka.wallet.models import Wallet, WalletTopup


class WalletNotFound(NotFound):
    code = "wallet_not_found"
    message = _("You have no wallet yet.")


class WalletCurrencyMismatch(Conflict):
    code = "wallet_currency_mismatch"
    message = _("Your wallet is in {currency}; amounts for it must be in {currency} too.")


class TopupNotFound(NotFound):
    code = "topup_not_found"
    message = _("No such top-up.")


class TopupAmountOutOfRange(Unprocessable):
    code = "topup_amount_out_of_range"
    message = _("A top-up is between {minimum} and {maximum}.")


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


# -- top-ups paid through a provider ---------------------------------------------------------


def start_topup(
    session: Session,
    account: Account,
    amount: int,
    currency: str,
    *,
    channel: str,
    minimum: int,
    maximum: int,
    payment_ttl_seconds: int,
) -> WalletTopup:
    """A top-up of `amount` awaiting its payment. The wallet opens now in `currency` (a wallet in
    another one refuses it), so the credit can never meet a wallet in another currency."""
    open_wallet(session, account, currency)
    if not minimum <= amount <= maximum:
        raise TopupAmountOutOfRange(
            minimum=Money(minimum, as_currency(currency)).format(),
            maximum=Money(maximum, as_currency(currency)).format(),
        )
    topup = WalletTopup(
        account_id=account.id,
        amount=amount,
        currency=currency,
        channel=channel,
        expires_at=clock.now() + timedelta(seconds=payment_ttl_seconds),
    )
    session.add(topup)
    session.flush()
    return topup


def own_topup(session: Session, account: Account, topup_id: uuid.UUID) -> WalletTopup:
    """The account's top-up, or 404: the same answer whether it is someone else's or nobody's."""
    topup = session.get(WalletTopup, topup_id)
    if topup is None or topup.account_id != account.id:
        raise TopupNotFound()
    return topup


def lock_topup(session: Session, topup_id: uuid.UUID) -> WalletTopup:
    """Lock a top-up row, fresh (lock order: account, then the order or top-up, then the payment)."""
    return session.scalars(
        select(WalletTopup)
        .where(WalletTopup.id == topup_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def credit_topup(session: Session, topup: WalletTopup) -> bool:
    """Credit a locked top-up whose payment succeeded; False if it was credited already."""
    if topup.status == "credited":
        return False
    now = clock.now()
    moved = session.execute(
        update(WalletTopup)
        .where(WalletTopup.id == topup.id, WalletTopup.status.in_(("awaiting_payment", "expired")))
        .values(status="credited", credited_at=now),
        execution_options={"synchronize_session": False},
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(topup)
        return False
    session.refresh(topup)
    account = session.get_one(Account, topup.account_id)
    credit(session, account, topup.amount, topup.currency, reference=f"topup:{topup.id}")
    return True


def expire_topups(session: Session, now: datetime) -> int:
    """Top-ups left unpaid past their time become `expired`; safe from several workers (one guarded update)."""
    moved = session.execute(
        update(WalletTopup)
        .where(WalletTopup.status == "awaiting_payment", WalletTopup.expires_at <= now)
        .values(status="expired"),
        execution_options={"synchronize_session": False},
    )
    return int(moved.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Movement:
    """One posted movement of a wallet: + money in (a top-up), - money out (overage data)."""

    at: datetime
    amount: int
    currency: str
    reason: str  # wallet_topup | overage | ...
    reference: str


def history(
    session: Session,
    account_id: uuid.UUID,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
) -> list[Movement]:
    """The wallet's movements in [start, end), newest first, from its ledger entries; none without a wallet."""
    wallet = wallet_of(session, account_id)
    if wallet is None:
        return []
    return [
        Movement(e.at, e.amount, wallet.currency, e.reason, e.reference)
        for e in ledger.entries(
            session, wallet.ledger_account_id, start=start, end=end, limit=limit
        )
    ]


def topup_ids_of(account_id: uuid.UUID) -> Select[uuid.UUID]:
    """The ids of the account's top-ups, as a subquery for other domains."""
    return select(WalletTopup.id).where(WalletTopup.account_id == account_id)


def pay(
    session: Session, account_id: uuid.UUID, amount: int, currency: str, *, reference: str
) -> None:
    """Take `amount` from the account's wallet for a payment (`reference`: `payment:<id>`), into
    `system:clearing.wallet`, from where the payment's settlement books it as a sale. Refused
    (`ledger.InsufficientBalance`, a Conflict) when the wallet cannot cover it; `WalletNotFound`
    without a wallet, `WalletCurrencyMismatch` in another currency."""
    wallet = wallet_of(session, account_id)
    if wallet is None:
        raise WalletNotFound()
    if wallet.currency != currency:
        raise WalletCurrencyMismatch(currency=wallet.currency)
    ledger.transfer(
        session,
        wallet.ledger_account,
        ledger.system_account(session, "clearing.wallet", currency),
        amount,
        reason="wallet_payment",
        reference=reference,
    )
