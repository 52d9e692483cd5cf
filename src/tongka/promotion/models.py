"""Offers (promotions), their coupon codes and budgets, quotes, and every redemption."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime

OFFER_KINDS = ("first_topup", "spend_threshold", "bonus_data", "coupon")
OFFER_STATES = ("active", "paused", "ended")
REDEMPTION_STATES = ("held", "confirmed", "released")
QUOTE_STATES = ("open", "ordered", "replaced")


class Offer(IdMixin, CreatedMixin, Base):
    """One promotion: what it gives, to whom and when, and how much of it may be given.

    `redeemed` counts redemptions held or confirmed; it only moves by guarded UPDATEs
    (see promotion/budget.py), so it never passes `max_redemptions`.
    """

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("kind IN " + str(OFFER_KINDS), name="kind"),
        CheckConstraint("status IN " + str(OFFER_STATES), name="status"),
        CheckConstraint(
            "percent_off_bp IS NULL OR (percent_off_bp > 0 AND percent_off_bp <= 10000)",
            name="percent",
        ),
        CheckConstraint("redeemed >= 0", name="redeemed_not_negative"),
        CheckConstraint(
            "max_redemptions IS NULL OR redeemed <= max_redemptions", name="within_budget"
        ),
    )

    code: Mapped[str] = mapped_column(String(40), unique=True)  # stable, e.g. "first-topup-app"
    names: Mapped[dict[str, str]] = mapped_column(JSON)  # by language
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(8), default="active")
    stackable: Mapped[bool] = mapped_column(default=False)
    # What it gives. A discount is a percentage (basis points: 1000 = 10 %) or a fixed amount
    # per list currency ({"HKD": 1000}); 满减 tiers are [{"currency", "min", "off"}]; 买赠 is bonus data.
    percent_off_bp: Mapped[int | None]
    amount_off: Mapped[dict[str, int] | None] = mapped_column(JSON)
    tiers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    bonus_bytes: Mapped[int | None] = mapped_column(BigInteger)
    bonus_zone: Mapped[str | None] = mapped_column(String(16))
    bonus_validity_days: Mapped[int | None]
    # Conditions; None means "any".
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    time_zone: Mapped[str] = mapped_column(
        String(32), default="Asia/Hong_Kong"
    )  # how the window was given
    channels: Mapped[list[str] | None] = mapped_column(JSON)
    currencies: Mapped[list[str] | None] = mapped_column(JSON)  # the currency the customer pays in
    zones: Mapped[list[str] | None] = mapped_column(JSON)
    pack_codes: Mapped[list[str] | None] = mapped_column(JSON)
    regions: Mapped[list[str] | None] = mapped_column(JSON)  # the account's region
    new_customers_only: Mapped[bool] = mapped_column(default=False)
    per_customer_limit: Mapped[int | None]
    # Budget: redemptions (count); money per currency is in offer_budgets.
    max_redemptions: Mapped[int | None]
    redeemed: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[str] = mapped_column(String(64))

    def name(self, language: str) -> str:
        return self.names.get(language) or self.names.get("en") or self.code


class OfferBudget(Base):
    """Discount given by an offer in one currency (held or confirmed), and its cap if any."""

    __tablename__ = "offer_budgets"
    __table_args__ = (
        CheckConstraint("spent >= 0", name="spent_not_negative"),
        CheckConstraint("max_discount IS NULL OR spent <= max_discount", name="within_budget"),
    )

    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    max_discount: Mapped[int | None] = mapped_column(BigInteger)  # minor units; None: no cap
    spent: Mapped[int] = mapped_column(BigInteger, default=0)


class CouponCode(IdMixin, CreatedMixin, Base):
    """A code that unlocks a coupon offer. Only a keyed hash of the normalised code is kept."""

    __tablename__ = "coupon_codes"
    __table_args__ = (
        CheckConstraint("used >= 0", name="used_not_negative"),
        CheckConstraint("max_uses IS NULL OR used <= max_uses", name="within_uses"),
    )

    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id"), index=True)
    code_hash: Mapped[str] = mapped_column(
        String(64), unique=True
    )  # HMAC-SHA256 of the normalised code
    hint: Mapped[str] = mapped_column(
        String(8)
    )  # the last 4 characters, for people to tell codes apart
    batch: Mapped[str] = mapped_column(String(40))
    max_uses: Mapped[int | None]  # 1: single-use; None: shared, bounded by the offer's budget
    used: Mapped[int] = mapped_column(default=0)


class Quote(IdMixin, CreatedMixin, Base):
    """A price told to a customer: holds until `expires_at`; an order made from it charges exactly it."""

    __tablename__ = "quotes"
    __table_args__ = (
        CheckConstraint("status IN " + str(QUOTE_STATES), name="status"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        Index("ix_quotes_account_status", "account_id", "status"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"))
    pack_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packs.id"))
    channel: Mapped[str] = mapped_column(String(8))
    coupon_code_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("coupon_codes.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    list_amount: Mapped[int] = mapped_column(BigInteger)
    list_currency: Mapped[str] = mapped_column(String(3))
    fx_rate_micros: Mapped[int | None] = mapped_column(BigInteger)
    breakdown: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(8), default="open")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Redemption(IdMixin, CreatedMixin, Base):
    """One use of an offer: who, which quote and order, how much. Never deleted.

    `held` while its quote is open or its order unpaid, `confirmed` when the order is
    fulfilled, `released` (back to the budget) when the quote lapses, the order expires
    or is cancelled, or the payment is refunded in full.
    """

    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint("status IN " + str(REDEMPTION_STATES), name="status"),
        CheckConstraint("discount >= 0 AND bonus_bytes >= 0", name="not_negative"),
        UniqueConstraint("offer_id", "quote_id"),
        Index("ix_redemptions_offer_status", "offer_id", "status"),
        Index("ix_redemptions_account_offer", "account_id", "offer_id"),
    )

    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    quote_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quotes.id"), index=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"), index=True)
    coupon_code_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("coupon_codes.id"))
    currency: Mapped[str] = mapped_column(
        String(3)
    )  # the list currency: discounts apply before conversion
    discount: Mapped[int] = mapped_column(BigInteger)
    bonus_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="held")
    hold_expires_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime()
    )  # a quote's hold; None once ordered
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    release_reason: Mapped[str | None] = mapped_column(String(24))
    bonus_bucket_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("buckets.id"))
