"""Outgoing messages: every SMS and email is written here, in the reader's language."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.i18n import gettext
from tongka.notify.models import OutboxMessage

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


def recent(session: Session, limit: int = 100) -> list[OutboxMessage]:
    return list(
        session.scalars(
            select(OutboxMessage)
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id)
            .limit(limit)
        )
    )
