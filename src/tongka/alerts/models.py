"""Which channels a subscriber wants per alert, and the alerts fired (each once per key)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime

CHANNEL_CHOICES = ("sms", "email", "both", "none")


class AlertPreference(Base):
    """A subscriber's choice for one kind of alert; absent: the kind's default (`service.KINDS`)."""

    __tablename__ = "alert_preferences"
    __table_args__ = (CheckConstraint("channels IN " + str(CHANNEL_CHOICES), name="channels"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    channels: Mapped[str] = mapped_column(String(8))


class AlertEvent(IdMixin, CreatedMixin, Base):
    """An alert that fired. `key` names what it is about (a bucket and a threshold, an order, a
    password change): unique with the kind, so two workers that see the same crossing at once
    fire it once (the second insert fails and sends nothing)."""

    __tablename__ = "alert_events"
    __table_args__ = (UniqueConstraint("kind", "key"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(120))
    channels: Mapped[str] = mapped_column(String(8))  # what was chosen when it fired
    params: Mapped[dict[str, Any]] = mapped_column(JSON)


class AlertScan(Base):
    """Where the alerts scan got to: the ledger transfers and the expiry times it has looked at,
    and where the scan before it got to (each scan starts there: see `scan.py`)."""

    __tablename__ = "alert_scans"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    transfer_id: Mapped[int] = mapped_column(BigInteger)
    previous_transfer_id: Mapped[int] = mapped_column(BigInteger)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    previous_scanned_at: Mapped[datetime] = mapped_column(UTCDateTime())
