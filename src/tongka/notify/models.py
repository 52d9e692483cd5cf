"""The outbox of outgoing messages (SMS and email)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, IdMixin, UTCDateTime


class OutboxMessage(IdMixin, CreatedMixin, Base):
    """A message written in the same transaction as the change it tells of.

    A worker claims `pending` messages that are due after commit and delivers them, so a crash
    loses none and a rollback sends none. Statuses: `pending` (waiting, or waiting to be tried
    again at `next_attempt_at`), `sent` (the SMTP server or SMSC took it), `delivered` /
    `undeliverable` (the SMSC's delivery receipt said so), `failed` (given up after retries;
    the operator can retry it).
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_status_created", "status", "created_at"),
        Index("ix_outbox_messages_due", "status", "next_attempt_at"),
        Index("ix_outbox_messages_provider_message_id", "provider_message_id"),
    )

    channel: Mapped[str] = mapped_column(String(8))  # sms | email
    to: Mapped[str] = mapped_column(String(254))
    # Which message it is (templates/messages/<template>/): operators see the kind without the body.
    template: Mapped[str | None] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)  # SMS text, or the email's plain-text part
    html: Mapped[str | None] = mapped_column(Text)  # the email's HTML part
    language: Mapped[str] = mapped_column(String(8))
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Delivery: tries so far, when the next may start, and who holds it until when (a lease, so a
    # worker that dies mid-send gives the message back).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    # The id the SMTP server (Message-ID) or the SMSC (submit_sm_resp message_id) gave it.
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AntiPhishingCode(Base):
    """The word a subscriber chose to find at the top of every genuine message to them: a
    forger who does not know it cannot put it there. Kept as typed (it is shown in messages)."""

    __tablename__ = "anti_phishing_codes"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(16))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime())
