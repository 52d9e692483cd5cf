"""The official channels the operator keeps, and what people report as scams (grouped by value)."""

from __future__ import annotations

import uuid

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin

CHANNEL_KINDS = ("phone", "web", "email", "social")
SEEN_IN = ("sms", "call", "messaging", "email", "web", "other")
CAMPAIGN_STATUSES = ("new", "reviewed", "reported_to_police")


class OfficialChannel(IdMixin, CreatedMixin, Base):
    """One of tongka's own channels. `value` is normalised (`service.normalise`): a number in
    E.164, a host in lower-case ASCII (its subdomains count as ours), an email address or
    "@domain", a social-media handle without "@" (with its `platform`; "" for the others).
    `labels` says what it is, by language ({"en", "zh-Hans", "zh-Hant"})."""

    __tablename__ = "official_channels"
    __table_args__ = (
        CheckConstraint("kind IN " + str(CHANNEL_KINDS), name="kind"),
        UniqueConstraint("kind", "platform", "value"),
    )

    kind: Mapped[str] = mapped_column(String(8))
    platform: Mapped[str] = mapped_column(String(32), default="")
    value: Mapped[str] = mapped_column(String(255))
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(default=True)

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels["en"]


class ScamCampaign(IdMixin, CreatedMixin, Base):
    """Every report of one normalised value (`key`, e.g. "phone:+85291234567"): its review status
    and the operator's note (what was blocked, the police reference)."""

    __tablename__ = "scam_campaigns"
    __table_args__ = (CheckConstraint("status IN " + str(CAMPAIGN_STATUSES), name="status"),)

    key: Mapped[str] = mapped_column(String(300), unique=True)
    status: Mapped[str] = mapped_column(String(24), default="new")
    note: Mapped[str] = mapped_column(Text, default="")


class ScamReport(IdMixin, CreatedMixin, Base):
    """One person's report: the value as they typed it, where they saw it, what it said, and a
    screenshot (PNG or JPEG, at most `service.SCREENSHOT_MAX_BYTES`)."""

    __tablename__ = "scam_reports"
    __table_args__ = (CheckConstraint("seen_in IN " + str(SEEN_IN), name="seen_in"),)

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("scam_campaigns.id"), index=True)
    value: Mapped[str] = mapped_column(String(300))
    seen_in: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    screenshot: Mapped[bytes | None] = mapped_column(LargeBinary)
    screenshot_type: Mapped[str | None] = mapped_column(String(16))
