"""The outbox of outgoing messages (SMS and email)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime


class OutboxMessage(IdMixin, CreatedMixin, Base):
    """A message written in the same transaction as the change it tells of.

    A worker delivers `pending` messages after commit, so a crash loses none and a
    rollback sends none. In dev mode nothing is delivered: `/dev/outbox` shows them.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_status_created", "status", "created_at"),)

    channel: Mapped[str] = mapped_column(String(8))  # sms | email
    to: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
