"""Payment attempts of an order, and the inbox of provider callbacks."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime

PAYMENT_STATES = ("pending", "succeeded", "failed", "cancelled")


class Payment(IdMixin, CreatedMixin, Base):
    """One attempt to pay an order, or a wallet top-up; either may have several. Never deleted."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("status IN " + str(PAYMENT_STATES), name="status"),
        CheckConstraint("(order_id IS NULL) <> (topup_id IS NULL)", name="order_or_topup"),
    )

    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"), index=True)
    topup_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("wallet_topups.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    provider_reference: Mapped[str | None] = mapped_column(String(64), index=True)
    checkout_url: Mapped[str | None] = mapped_column(String(500))
    qr_content: Mapped[str | None] = mapped_column(String(500))
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Refund(IdMixin, CreatedMixin, Base):
    """A refund of part or all of a succeeded payment: a record of its own, never deleted."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="positive"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str] = mapped_column(String(200))
    requested_by: Mapped[str] = mapped_column(
        String(64)
    )  # "operator:<username>", "system:late_payment", "cli"
    provider_refund_id: Mapped[str | None] = mapped_column(String(64))
    # Data taken back from the bucket with the money (bytes), by the ledger.
    bytes_withdrawn: Mapped[int] = mapped_column(BigInteger, default=0)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PaymentCallback(IdMixin, CreatedMixin, Base):
    """The inbox: each verified provider event once, unique on (provider, event id).

    A replayed or duplicated callback meets the unique key and changes nothing.
    """

    __tablename__ = "payment_callbacks"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(128))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payments.id"), index=True)
    payload: Mapped[str] = mapped_column(Text)
    result: Mapped[str] = mapped_column(
        String(32)
    )  # applied | ignored | amount_mismatch | unknown_payment | paid_closed_order
