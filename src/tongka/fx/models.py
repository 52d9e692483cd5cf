"""Exchange rates between the currencies tongka sells in, set by the operator."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin


class ExchangeRate(CreatedMixin, Base):
    """From `created_at` on, 1 `base` = rate_micros / 10^6 `quote`. The newest row is in force; none is changed."""

    __tablename__ = "exchange_rates"
    __table_args__ = (
        CheckConstraint("rate_micros > 0", name="positive"),
        Index("ix_exchange_rates_pair_created", "base", "quote", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    base: Mapped[str] = mapped_column(String(3))
    quote: Mapped[str] = mapped_column(String(3))
    rate_micros: Mapped[int] = mapped_column(BigInteger)
    set_by: Mapped[str] = mapped_column(String(64))
