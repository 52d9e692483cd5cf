"""Counter sales, shifts (a till's float, sales and count) and commission rates."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime

SALE_METHODS = ("cash", "card_terminal", "store_qr", "wechat_pay_qr", "alipay_qr")


class Shift(IdMixin, Base):
    """One agent's till from opening (the cash float) to closing (the cash counted by
    denomination). Expected cash = float + cash taken − change given; a difference is recorded,
    and a manager acknowledges it."""

    __tablename__ = "shifts"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed', 'acknowledged')", name="status"),
        CheckConstraint("float_amount >= 0", name="float"),
        # One open till per agent.
        Index(
            "uq_shifts_open_staff",
            "staff_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), index=True)
    staff_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_members.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3), default="HKD")
    status: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    float_amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # {"50000": 3, "10000": 7, ...}: minor units of the note or coin -> how many were counted
    counted_denominations: Mapped[dict[str, int] | None] = mapped_column(JSON)
    counted_amount: Mapped[int | None] = mapped_column(BigInteger)
    expected_amount: Mapped[int | None] = mapped_column(BigInteger)
    difference: Mapped[int | None] = mapped_column(BigInteger)  # counted - expected
    close_note: Mapped[str | None] = mapped_column(String(200))
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_members.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledge_note: Mapped[str | None] = mapped_column(String(200))


class CounterSale(IdMixin, CreatedMixin, Base):
    """A sale made at a counter: which store, which agent, in which shift, paid how. The order and
    payment are the renewal flow's own; this row is what tills, reports and commission read."""

    __tablename__ = "counter_sales"
    __table_args__ = (
        CheckConstraint("method IN " + str(SALE_METHODS), name="method"),
        CheckConstraint("amount > 0", name="amount"),
        Index("ix_counter_sales_store_created", "store_id", "created_at"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), unique=True)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payments.id"))
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    staff_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_members.id"), index=True)
    shift_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("shifts.id"), index=True)
    pack_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packs.id"))
    method: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)  # what the order cost, minor units
    tendered: Mapped[int | None] = mapped_column(BigInteger)  # cash handed over
    change: Mapped[int | None] = mapped_column(BigInteger)  # cash given back
    approval_code: Mapped[str | None] = mapped_column(String(32))  # the card terminal's slip
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # None until the money is in


class CommissionRate(IdMixin, CreatedMixin, Base):
    """A commission rate in basis points of the sale's amount (250 = 2.5 %), for a pack, a store
    or an agent (any of them, or a combination); the most specific rate in force applies. A new
    rate is a new row from `valid_from`: past months keep the rate they had."""

    __tablename__ = "commission_rates"
    __table_args__ = (CheckConstraint("rate_bp >= 0 AND rate_bp <= 10000", name="rate"),)

    pack_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("packs.id"))
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    staff_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_members.id"))
    rate_bp: Mapped[int]
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(32))
