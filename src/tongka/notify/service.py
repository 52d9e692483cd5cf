"""Outgoing messages: every SMS and email is written here, from its template in the reader's language.

A message is rendered when it is queued (`render.py`), in the transaction of the change it tells
of, so the row holds exactly what will be sent; the delivery worker (`worker.py`) sends it after
the commit. Operators list messages and send a failed one again (`tongka messages`, the admin API).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import phonenumbers
import structlog
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from tongka import clock
from tongka.db import matched, transaction
from tongka.errors import Conflict, NotFound, Unprocessable
from tongka.i18n import _
from tongka.notify import render
from tongka.notify.models import AntiPhishingCode, OutboxMessage

log = structlog.get_logger("tongka.notify")


class MessageNotFound(NotFound):
    code = "message_not_found"
    message = _("No such message.")


class BadAntiPhishingCode(Unprocessable):
    code = "bad_anti_phishing_code"
    message = _("Use 2 to 16 letters, digits or Chinese characters, not your username or password.")


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
    """Queue SMS `template` (templates/messages/<template>/<language>.sms) to an E.164 number;
    to an account with an anti-phishing code, the code comes first ("[code] ...")."""
    body = render.sms(template, language, **params)
    code = anti_phishing_code(session, account_id)
    if code:
        body = f"[{code}] {body}"
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
    """Queue email `template`: its subject, plain text and HTML, in `language`; to an account
    with an anti-phishing code, both parts start with it."""
    mail = render.email(
        template, language, anti_phishing_code=anti_phishing_code(session, account_id), **params
    )
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


# --- anti-phishing codes -------------------------------------------------------------------------

# Letters (any script: Chinese characters are letters to Unicode) and digits; no space or mark,
# so it reads the same in an SMS's GSM-7 or UCS-2 and in an email's header line.
_CODE = re.compile(r"[^\W_]{2,16}")


def anti_phishing_code(session: Session, account_id: uuid.UUID | None) -> str | None:
    if account_id is None:
        return None
    return session.scalar(
        select(AntiPhishingCode.code).where(AntiPhishingCode.account_id == account_id)
    )


def set_anti_phishing_code(session: Session, account_id: uuid.UUID, code: str | None) -> None:
    """Set (or, with None or "", clear) the account's code. The caller refuses the username and
    the password (`account.service`); here only its form is checked."""
    code = (code or "").strip()
    found = session.get(AntiPhishingCode, account_id)
    if not code:
        if found is not None:
            session.delete(found)
        return
    if not _CODE.fullmatch(code):
        raise BadAntiPhishingCode()
    if found is None:
        session.add(AntiPhishingCode(account_id=account_id, code=code, set_at=clock.now()))
    else:
        found.code, found.set_at = code, clock.now()


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
