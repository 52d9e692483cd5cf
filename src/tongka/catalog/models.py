"""Packs (套餐) and their prices."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime


class Pack(IdMixin, CreatedMixin, Base):
    __tablename__ = "packs"
    __table_args__ = (
        CheckConstraint("zone IN ('mainland', 'hk', 'both')", name="zone"),
        CheckConstraint("volume_bytes > 0 AND validity_days > 0", name="positive"),
    )

    code: Mapped[str] = mapped_column(String(40), unique=True)  # stable, e.g. "hk-5gb-30d"
    names: Mapped[dict[str, str]] = mapped_column(
        JSON
    )  # by language: {"en": ..., "zh-Hans": ..., "zh-Hant": ...}
    zone: Mapped[str] = mapped_column(String(16))
    volume_bytes: Mapped[int] = mapped_column(BigInteger)
    validity_days: Mapped[int]
    channels: Mapped[list[str]] = mapped_column(JSON)  # app | web | store
    sale_starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sale_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(default=True)

    prices: Mapped[list[PackPrice]] = relationship(
        lazy="selectin", order_by="PackPrice.currency", cascade="all, delete-orphan"
    )

    def name(self, language: str) -> str:
        return self.names.get(language) or self.names.get("en") or self.code

    def price(self, currency: str) -> int | None:
        return next((p.amount for p in self.prices if p.currency == currency), None)


class PackPrice(Base):
    __tablename__ = "pack_prices"
    __table_args__ = (
        UniqueConstraint("pack_id", "currency"),
        CheckConstraint("amount > 0", name="positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    pack_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packs.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units


class OverageRate(CreatedMixin, Base):
    """The published price of data beyond a line's packs, per MB (1 MB = 1,048,576 bytes), by zone and currency.

    Charged only to lines whose owner turned overage on, from the account's wallet.
    """

    __tablename__ = "overage_rates"
    __table_args__ = (
        CheckConstraint("zone IN ('mainland', 'hk')", name="zone"),
        CheckConstraint("per_mb > 0", name="positive"),
    )

    zone: Mapped[str] = mapped_column(String(16), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    per_mb: Mapped[int] = mapped_column(BigInteger)  # minor units per MB


class PackPriceChange(Base):
    """One change of a pack's list price (append-only). Orders copy their price when placed, so a
    change here never alters an order already made."""

    __tablename__ = "pack_price_changes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    pack_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packs.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    old_amount: Mapped[int | None] = mapped_column(BigInteger)  # None: the first price in it
    new_amount: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    changed_by: Mapped[str] = mapped_column(String(32))  # the staff member's username, or "cli"
