"""What the delivery worker hands a message to: one sender per channel (email over SMTP, SMS over SMPP).

A sender delivers one message and returns the id its server gave it (the SMTP Message-ID, the
SMSC's message_id), or raises: `TemporaryFailure` when trying again later may work (a dropped
connection, a busy server), `PermanentFailure` when it never will (an address the server refuses).
The worker records the outcome on the outbox row; a sender writes nothing to the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tongka.config import Settings


@dataclass(frozen=True)
class Outgoing:
    """One message as a sender needs it; `id` is the outbox row's, stable across retries."""

    id: uuid.UUID
    channel: str  # sms | email
    to: str  # E.164 number, or an email address
    subject: str
    text: str  # the SMS, or the email's plain-text part
    html: str | None
    language: str


class TemporaryFailure(Exception):
    """Not delivered this time; the worker tries again later."""


class PermanentFailure(Exception):
    """Never deliverable as it is; the worker gives up at once."""


class Sender(Protocol):
    channel: str

    def send(self, message: Outgoing) -> str:
        """Deliver `message`; return the server's id for it."""
        ...

    def close(self) -> None: ...


# Told of an SMSC's delivery receipt: (the message id the SMSC gave, "delivered" | "undeliverable",
# when it came) -> whether a message has that id (service.record_receipt).
OnReceipt = Callable[[str, str, datetime], bool | None]


def senders_from(settings: Settings, on_receipt: OnReceipt | None = None) -> dict[str, Sender]:
    """A sender for each channel the settings configure; a channel without one keeps its messages pending."""
    from tongka.notify import email, sms  # they import this module

    senders: dict[str, Sender] = {}
    if (mail := email.sender_from(settings)) is not None:
        senders["email"] = mail
    if on_receipt is not None and (phone := sms.sms_sender_from(settings, on_receipt)) is not None:
        senders["sms"] = phone
    return senders
