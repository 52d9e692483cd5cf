"""Ledger tables: accounts with their cached balances, append-only transfers, and buckets.

Double entry in the TigerBeetle manner: every transfer debits one account and credits
another of the same unit by the same amount, so each unit sums to zero. An account
keeps four running totals (posted and pending, debits and credits), written only by
`ledger.service` and recomputable from the transfers by `tongka ledger verify`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime

# 64-bit ids on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class LedgerAccount(CreatedMixin, Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint(
            "NOT must_not_go_negative OR debits_posted + debits_pending <= credits_posted",
            name="not_negative",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # A stable name for the operator's own accounts ("system:data_issued:bytes"); NULL for customers'.
    code: Mapped[str | None] = mapped_column(String(120), unique=True)
    unit: Mapped[str] = mapped_column(String(16))  # bytes | seconds | messages | CNY | HKD
    kind: Mapped[str] = mapped_column(String(16))  # bucket | wallet | system
    # Customer balances can never be spent (posted or reserved) beyond what was credited.
    must_not_go_negative: Mapped[bool]
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)

    @property
    def available(self) -> int:
        """What can still be spent or reserved (credit-normal: credits less debits and reservations)."""
        return self.credits_posted - self.debits_posted - self.debits_pending


class Transfer(CreatedMixin, Base):
    """One append-only ledger entry. Never updated, never deleted.

    kind:
      posted          moves `amount` now
      pending         reserves `amount` until posted, voided or expired (`expires_at`)
      post_pending    resolves `pending_id`, moving `amount` (at most the reserved amount)
      void_pending    resolves `pending_id`, moving nothing (`amount` is what was released)
      expire_pending  as void, done by the expiry job after `expires_at`
    A resolution carries the same two accounts as its reservation; `pending_id` is
    unique, so a reservation is resolved exactly once.
    """

    __tablename__ = "ledger_transfers"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        CheckConstraint(
            "kind IN ('posted', 'pending', 'post_pending', 'void_pending', 'expire_pending')",
            name="kind",
        ),
        CheckConstraint(
            "(kind IN ('posted', 'pending')) = (pending_id IS NULL)",
            name="resolution_names_pending",
        ),
        Index("ix_ledger_transfers_open_pending", "kind", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    pending_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transfers.id"), unique=True)
    # Why (pack_purchase, usage, payment, refund, correction, bucket_expiry, ...) and for what ("order:<id>").
    reason: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(120), index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Bucket(IdMixin, CreatedMixin, Base):
    """The data (or, later, minutes or messages) granted to a line by one purchase.

    Its remaining amount is its ledger account's available balance; its total is what
    was credited to it. Neither is stored here.
    """

    __tablename__ = "buckets"
    # A line's usable buckets, found by line and expiry (charging reads them for many lines at once).
    __table_args__ = (Index("ix_buckets_line_id_expires_at", "line_id", "expires_at"),)

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"))
    ledger_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), unique=True)
    zone: Mapped[str] = mapped_column(String(16))  # mainland | hk | both
    unit: Mapped[str] = mapped_column(String(16))  # bytes, for now
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(120))

    account: Mapped[LedgerAccount] = relationship(lazy="joined")


class LineDebt(Base):
    """Data a line used in a zone beyond everything it had (buckets, overage): owed, never free.

    A ledger account that may go negative (debited by usage); the next bucket valid in the
    zone pays it back before any new quota is granted.
    """

    __tablename__ = "line_debts"

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), primary_key=True)
    zone: Mapped[str] = mapped_column(String(16), primary_key=True)  # mainland | hk
    ledger_account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("ledger_accounts.id"), unique=True
    )
