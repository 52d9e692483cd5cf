"""Wallets: an account's money held with tongka, in one currency, spent on overage data."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tongka.db import Base, CreatedMixin, IdMixin
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
