"""Orders: a pack for a line, paid, then fulfilled into a bucket. Never deleted."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tongka.catalog.models import Pack
from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime

ORDER_STATES = ("awaiting_payment", "paid", "fulfilled", "cancelled", "expired")


class Order(IdMixin, CreatedMixin, Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("status IN " + str(ORDER_STATES), name="status"),
        Index("ix_orders_account_created", "account_id", "created_at"),
        Index("ix_orders_status_expires", "status", "expires_at"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), index=True)
    pack_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packs.id"))
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(24), default="awaiting_payment")
    amount: Mapped[int] = mapped_column(BigInteger)  # what the customer pays, minor units
    currency: Mapped[str] = mapped_column(String(3))
    # The catalog price it came from; differs from amount/currency when paid in the other currency.
    list_amount: Mapped[int] = mapped_column(BigInteger)
    list_currency: Mapped[str] = mapped_column(String(3))
    # The rate locked when the order was made: currency units per list-currency unit, × 10^6.
    fx_rate_micros: Mapped[int | None] = mapped_column(BigInteger)
    # What was sold, as it was when ordered: a later catalog change does not alter it.
    zone: Mapped[str] = mapped_column(String(16))
    volume_bytes: Mapped[int] = mapped_column(BigInteger)
    validity_days: Mapped[int]
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # unpaid after this: expired
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fulfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    bucket_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("buckets.id"))
    # The quote it was made from and its price breakdown (list price, offers, rate, total),
    # copied here as the customer saw it; None for orders made before promotions.
    quote_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("quotes.id"), unique=True)
    breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    pack: Mapped[Pack] = relationship(lazy="joined")
