"""Outgoing messages: every SMS and email is written here, from its template in the reader's language.

A message is rendered when it is queued (`render.py`), in the transaction of the change it tells
of, so the row holds exactly what will be sent; the delivery worker (`worker.py`) sends it after
the commit. Operators list messages and send a failed one again (`tongka messages`, the admin API).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import phonenumbers
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from tongka.db import matched
from tongka.errors import Conflict, NotFound
from tongka.i18n import _
from tongka.notify import render
from tongka.notify.models import OutboxMessage


class MessageNotFound(NotFound):
    code = "message_not_found"
    message = _("No such message.")


class MessageNotFailed(Conflict):
    code = "message_not_failed"
    message = _("Only a message that failed can be sent again; this one is {status}.")


STATUSES = ("pending", "sent", "delivered", "undeliverable", "failed")
RETRYABLE = ("failed", "undeliverable")

# Set after a commit that queued a message, so a worker in this process sends it at once instead of
# at its next poll (workers in other processes find it when they poll).
queued = threading.Event()
_QUEUED = "tongka_outbox_queued"


def send_sms(
    session: Session,
    *,
    to: str,
    template: str,
    language: str,
    account_id: uuid.UUID | None = None,
    **params: Any,
) -> OutboxMessage:
    """Queue SMS `template` (templates/messages/<template>/<language>.sms) to an E.164 number."""
    body = render.sms(template, language, **params)
    return _queue(session, "sms", to, template, "", body, None, language, account_id)


def send_email(
    session: Session,
    *,
    to: str,
    template: str,
    language: str,
    account_id: uuid.UUID | None = None,
    **params: Any,
) -> OutboxMessage:
    """Queue email `template`: its subject, plain text and HTML, in `language`."""
    mail = render.email(template, language, **params)
    return _queue(
        session, "email", to, template, mail.subject, mail.text, mail.html, language, account_id
    )


def _queue(
    session: Session,
    channel: str,
    to: str,
    template: str,
    subject: str,
    body: str,
    html: str | None,
    language: str,
    account_id: uuid.UUID | None,
) -> OutboxMessage:
    message = OutboxMessage(
        channel=channel,
        to=to,
        template=template,
        subject=subject,
        body=body,
        html=html,
        language=language,
        account_id=account_id,
        status="pending",
        attempts=0,
    )
    session.add(message)
    session.flush()
    session.info[_QUEUED] = True
    return message


@event.listens_for(Session, "after_commit")
def _wake_workers(session: Session) -> None:
    if session.info.pop(_QUEUED, False):
        queued.set()


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _previous: Any) -> None:
    session.info.pop(_QUEUED, None)


def recent(session: Session, limit: int = 100) -> list[OutboxMessage]:
    return list(
        session.scalars(
            select(OutboxMessage)
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id)
            .limit(limit)
        )
    )


def listed(session: Session, status: str | None = None, limit: int = 100) -> list[OutboxMessage]:
    """Messages newest first, of one status if given."""
    query = select(OutboxMessage)
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    return list(
        session.scalars(
            query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id).limit(limit)
        )
    )


def retry(session: Session, message_id: uuid.UUID) -> OutboxMessage:
    """Send a failed (or undeliverable) message again: pending at once, with a fresh count of tries.

    The row is the same, so the email keeps its Message-ID and a reader can tell it is the same message.
    A guarded UPDATE: of two operators retrying at once, one moves it, the other is told its status.
    """
    moved = matched(
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.status.in_(RETRYABLE))
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=None,
                claimed_by=None,
                claimed_until=None,
                delivered_at=None,
            )
            .execution_options(synchronize_session=False)
        )
    )
    message = session.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .execution_options(populate_existing=True)
    )
    if message is None:
        raise MessageNotFound()
    if not moved:
        raise MessageNotFailed(status=message.status)
    session.info[_QUEUED] = True
    return message


def mask(channel: str, to: str) -> str:
    """An address as an operator's list shows it: enough to tell messages apart, not to reuse.

    +85251021014 -> +852****1014; +8613800138000 -> +86*******8000; ada@example.com -> a***@example.com.
    """
    if channel == "email":
        local, _at, domain = to.rpartition("@")
        return f"{local[:1]}***@{domain}" if local else "***"
    try:
        head = f"+{phonenumbers.parse(to).country_code}"
    except phonenumbers.NumberParseException:
        head = ""
    rest = to.removeprefix(head)
    if len(rest) < 7:  # too short to show any of it
        return head + "***"
    return head + "*" * (len(rest) - 4) + rest[-4:]
