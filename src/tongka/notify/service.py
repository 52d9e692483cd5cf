"""Outgoing messages: every SMS and email is written here, in the reader's language."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tongka.db import matched, transaction
from tongka.i18n import gettext
from tongka.notify.models import OutboxMessage

log = structlog.get_logger("tongka.notify")

SMS_SIGNATURE = "【tongka】"


def send_sms(
    session: Session,
    *,
    to: str,
    text: str,
    language: str,
    account_id: uuid.UUID | None = None,
    **params: object,
) -> OutboxMessage:
    """Queue an SMS; `text` is an English message marked with `_()`, translated here."""
    body = SMS_SIGNATURE + gettext(text, language, **params)
    return _queue(session, "sms", to, "", body, language, account_id)


def send_email(
    session: Session,
    *,
    to: str,
    subject: str,
    text: str,
    language: str,
    account_id: uuid.UUID | None = None,
    **params: object,
) -> OutboxMessage:
    return _queue(
        session,
        "email",
        to,
        gettext(subject, language, **params),
        gettext(text, language, **params),
        language,
        account_id,
    )


def _queue(
    session: Session,
    channel: str,
    to: str,
    subject: str,
    body: str,
    language: str,
    account_id: uuid.UUID | None,
) -> OutboxMessage:
    message = OutboxMessage(
        channel=channel, to=to, subject=subject, body=body, language=language, account_id=account_id
    )
    session.add(message)
    session.flush()
    return message


# What a delivery receipt can say of a message: its final statuses.
RECEIPT_STATUSES = ("delivered", "undeliverable")


def record_receipt(session: Session, provider_message_id: str, status: str, at: datetime) -> bool:
    """The SMSC's delivery receipt for the SMS it knows as `provider_message_id`: the outbox row
    becomes `delivered` or `undeliverable`, with `delivered_at` = `at` (when the receipt came).

    Idempotent: the first final status stays (a receipt repeated or contradicted later changes
    nothing). Returns False when no SMS has that id (logged): the worker may not have committed it
    yet, or the SMSC reports on a message that is not ours.
    """
    if status not in RECEIPT_STATUSES:
        raise ValueError(f"a receipt's status is one of {RECEIPT_STATUSES}, not {status!r}")
    sms = (OutboxMessage.channel == "sms") & (
        OutboxMessage.provider_message_id == provider_message_id
    )
    result = session.execute(
        update(OutboxMessage)
        .where(sms, OutboxMessage.status.not_in(RECEIPT_STATUSES))
        .values(status=status, delivered_at=at)
        .execution_options(synchronize_session=False)
    )
    if matched(result):
        return True
    if session.scalar(select(OutboxMessage.id).where(sms).limit(1)) is None:
        log.warning("notify.receipt_for_unknown_sms", provider_message_id=provider_message_id)
        return False
    return True  # already final


def receipt_recorder(sessions: sessionmaker[Session]) -> Callable[[str, str, datetime], bool]:
    """The `on_receipt` an SMS sender calls from its own thread: each receipt in its own transaction."""

    def on_receipt(provider_message_id: str, status: str, at: datetime) -> bool:
        with transaction(sessions) as session:
            return record_receipt(session, provider_message_id, status, at)

    return on_receipt


def recent(session: Session, limit: int = 100) -> list[OutboxMessage]:
    return list(
        session.scalars(
            select(OutboxMessage)
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id)
            .limit(limit)
        )
    )
