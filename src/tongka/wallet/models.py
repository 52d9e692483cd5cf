"""Wallets: an account's money held with tongka, in one currency, spent on overage data."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime
from tongka.ledger.models import BigId, LedgerAccount


class Wallet(IdMixin, CreatedMixin, Base):
    """One per account. Its balance is its ledger account's available amount, never stored here."""

    __tablename__ = "wallets"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), unique=True)
    currency: Mapped[str] = mapped_column(String(3))  # CNY | HKD, chosen when the wallet opens
    ledger_account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("ledger_accounts.id"), unique=True
    )

    ledger_account: Mapped[LedgerAccount] = relationship(lazy="joined")


TOPUP_STATES = ("awaiting_payment", "credited", "expired")


class WalletTopup(IdMixin, CreatedMixin, Base):
    """Money asked for the wallet, paid through a provider as an order is; credited once its payment succeeds.

    Its payments point here (`payments.topup_id`) rather than at an order: a top-up sells no pack
    and grants no bucket. Never deleted.
    """

    __tablename__ = "wallet_topups"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN " + str(TOPUP_STATES), name="status"),
        Index("ix_wallet_topups_account_created", "account_id", "created_at"),
        Index("ix_wallet_topups_status_expires", "status", "expires_at"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units of `currency`
    currency: Mapped[str] = mapped_column(String(3))  # the wallet's
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(24), default="awaiting_payment")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # unpaid after this: expired
    credited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
