"""Auto-renew rules (one per line) and their attempts (one per crossing of the threshold)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime

SOURCES = ("wallet", "card", "alipay_agreement", "wechat_agreement")
ATTEMPT_STATES = ("pending", "succeeded", "failed", "capped")


class AutoRenewRule(IdMixin, CreatedMixin, Base):
    """ "When the line's data in `zone` falls below `threshold_percent` % of what its buckets there were
    credited, buy `pack_id`", paid from the wallet or a saved card, never above `monthly_cap` a
    Hong Kong month. Paused (`active` false) after three payment failures in a row."""

    __tablename__ = "auto_renew_rules"
    __table_args__ = (
        CheckConstraint("threshold_percent BETWEEN 1 AND 99", name="threshold_percent"),
        CheckConstraint("monthly_cap >= 0", name="monthly_cap_not_negative"),
        CheckConstraint("source IN " + str(SOURCES), name="source"),
        CheckConstraint("zone IN ('mainland', 'hk')", name="zone"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), unique=True)
    zone: Mapped[str] = mapped_column(String(16))
    threshold_percent: Mapped[int]
    # Also buy when the forecast says the data runs out in fewer days than this (None: % only).
    forecast_days: Mapped[int | None]
    pack_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packs.id"))
    # wallet | card (the account's `AutoRenewCard`) | alipay_agreement or wechat_agreement (its
    # `AutoRenewAgreement` with that wallet)
    source: Mapped[str] = mapped_column(String(24))
    monthly_cap: Mapped[int] = mapped_column(BigInteger)  # minor units of `currency`
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(default=True)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AutoRenewCard(IdMixin, CreatedMixin, Base):
    """The card an account saved for auto-renew (one; saving another replaces it): the customer and
    payment method the card provider keeps (Stripe's cus_ and pm_), never the card's number."""

    __tablename__ = "auto_renew_cards"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), unique=True)
    provider: Mapped[str] = mapped_column(String(16))
    customer: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(40))  # e.g. "visa 4242", as the provider tells it


class AutoRenewAgreement(IdMixin, CreatedMixin, Base):
    """A password-free agreement an account signed with a wallet for auto-renew (one per provider;
    signing again replaces it): the wallet's agreement number, charged without the payer."""

    __tablename__ = "auto_renew_agreements"
    __table_args__ = (UniqueConstraint("account_id", "provider"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    provider: Mapped[str] = mapped_column(String(16))  # alipay
    agreement_no: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(40))  # the payer's masked wallet account


class AutoRenewAttempt(IdMixin, CreatedMixin, Base):
    """One purchase tried for one crossing of a rule's threshold. Unique per (rule, crossing), so
    two servers that see the same crossing at once buy once: the second insert fails.

    `crossing` names the line's buckets in the zone when it fell below (a purchase adds one, so
    the next fall is another crossing) and the rule's failures so far (a retry after a failure is
    another attempt). `rule_id` is kept without a foreign key: a rule deleted leaves its attempts,
    which count against the month's cap."""

    __tablename__ = "auto_renew_attempts"
    __table_args__ = (
        UniqueConstraint("rule_id", "crossing"),
        CheckConstraint("status IN " + str(ATTEMPT_STATES), name="status"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        Index("ix_auto_renew_attempts_line_month", "line_id", "month"),
    )

    rule_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"))
    crossing: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM, Hong Kong time
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    reason: Mapped[str | None] = mapped_column(String(64))  # why it failed or was not made
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
