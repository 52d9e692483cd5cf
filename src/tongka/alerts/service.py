"""Firing an alert: once per (kind, key), by the channels the subscriber chose, in their language.

`fire` runs in the transaction of the change it tells of (a charging batch's scan, a renewal, a
password change): the event row and the messages commit with it, or not at all. The messages
are the outbox's (`notify`), rendered from `templates/messages/alert_<kind>/`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Account, Line
from tongka.alerts.models import CHANNEL_CHOICES, AlertEvent, AlertPreference
from tongka.db import new_id
from tongka.errors import Unprocessable
from tongka.i18n import _
from tongka.notify import service as notify


class UnknownAlert(Unprocessable):
    code = "alert_unknown"
    message = _("There is no such alert.")


class ChannelsInvalid(Unprocessable):
    code = "alert_channels_invalid"
    message = _("Choose SMS, email, both or none.")


class AlertRequired(Unprocessable):
    code = "alert_required"
    message = _("This alert protects your account: choose SMS, email or both.")


@dataclass(frozen=True)
class Kind:
    name: str
    default: str  # sms | email | both | none
    line: bool  # about a line (sent by SMS to its number) or the account (SMS to its lines)
    # The messages' template (templates/messages/<template>/); the account's own notices keep theirs.
    template: str = ""
    # Its email is one sent anyway by another part of tongka (the receipt email tells of a renewal):
    # the alert adds only the SMS, so one renewal never brings two emails.
    email_elsewhere: bool = False
    # A security notice: it may be moved to another channel, never turned off, or a thief holding
    # a session could silence it before changing the password or the address.
    required: bool = False

    @property
    def messages(self) -> str:
        return self.template or f"alert_{self.name}"


# Every alert a subscriber may get, and how it is sent unless they choose otherwise.
KINDS = {
    k.name: k
    for k in (
        Kind("data_used_80", "sms", True),
        Kind("data_used_90", "sms", True),
        Kind("data_used_100", "both", True),
        Kind("data_expiring_3d", "sms", True),
        Kind("data_expiring_1d", "both", True),
        Kind("overage_started", "both", True),
        Kind("overage_cap_reached", "both", True),
        Kind("renewal_confirmed", "email", True, email_elsewhere=True),
        Kind("payment_failed", "both", True),
        Kind("auto_renew_done", "both", True),
        Kind("auto_renew_failed", "both", True),
        Kind("password_changed", "email", False, template="password_changed", required=True),
        Kind("email_changed", "email", False, template="email_changed", required=True),
    )
}


def preferences(session: Session, account_id: uuid.UUID) -> dict[str, str]:
    """{kind: channels} for every kind: the subscriber's choice, else the default."""
    chosen = {
        kind: channels
        for kind, channels in session.execute(
            select(AlertPreference.kind, AlertPreference.channels).where(
                AlertPreference.account_id == account_id
            )
        )
    }
    return {name: chosen.get(name, kind.default) for name, kind in KINDS.items()}


def choose(session: Session, account_id: uuid.UUID, kind: str, channels: str) -> None:
    if kind not in KINDS:
        raise UnknownAlert()
    if channels not in CHANNEL_CHOICES:
        raise ChannelsInvalid()
    if channels == "none" and KINDS[kind].required:
        raise AlertRequired()
    row = session.get(AlertPreference, (account_id, kind))
    if row is None:
        session.add(AlertPreference(account_id=account_id, kind=kind, channels=channels))
    else:
        row.channels = channels


def fire(
    session: Session,
    *,
    account: Account,
    kind: str,
    key: str,
    line: Line | None = None,
    email_to: str | None = None,
    **params: Any,
) -> AlertEvent | None:
    """Sends alert `kind` about `key` once: None when it fired before (by this process or another);
    else the event as recorded (not held by the session).
    A subscriber who chose none gets no message, but the event is recorded. `params` fill the
    message's template; `email_to`: an address other than the account's (a changed address's
    notice goes to the old one)."""
    if kind not in KINDS:
        raise UnknownAlert()
    event = AlertEvent(
        id=new_id(),
        created_at=clock.now(),
        account_id=account.id,
        line_id=line.id if line else None,
        kind=kind,
        key=key,
        params={
            k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in params.items()
        },
    )
    # One statement whoever else inserts it (on PostgreSQL a second insert waits for the first
    # to commit, then inserts nothing), reading the subscriber's choice as it goes: it returns the
    # channels when this one tells it, nothing when it fired before.
    chosen = select(AlertPreference.channels).where(
        AlertPreference.account_id == account.id, AlertPreference.kind == kind
    )
    columns = {c.key: getattr(event, c.key) for c in AlertEvent.__table__.columns}
    columns["channels"] = func.coalesce(chosen.scalar_subquery(), KINDS[kind].default)
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    channels = session.scalar(
        insert(AlertEvent)
        .values(**columns)
        .on_conflict_do_nothing(index_elements=["kind", "key"])
        .returning(AlertEvent.channels)
    )
    if channels is None:
        return None  # fired already
    event.channels = channels
    if channels == "none":
        return event
    template = KINDS[kind].messages
    values = {"username": account.username, **params}
    if line is not None:
        values["number"] = line.hk_number or line.cn_number or ""
        values["tail"] = values["number"][-4:]  # an SMS names the line by its last four digits
    if channels in ("email", "both") and not KINDS[kind].email_elsewhere:
        notify.send_email(
            session,
            to=email_to or account.email,
            template=template,
            language=account.language,
            account_id=account.id,
            **values,
        )
    if channels in ("sms", "both"):
        numbers = line.numbers if line is not None else _account_numbers(session, account.id)
        for number in numbers[:1]:  # one SMS, to the line's first number
            notify.send_sms(
                session,
                to=number,
                template=template,
                language=account.language,
                account_id=account.id,
                **values,
            )
    return event


def password_changed(session: Session, account: Account) -> AlertEvent | None:
    """Tell the subscriber their password was changed (every change is its own event)."""
    return fire(
        session,
        account=account,
        kind="password_changed",
        key=f"password:{account.id}:{uuid.uuid4()}",
        changed_at=clock.now(),
    )


def email_changed(session: Session, account: Account, old_email: str) -> AlertEvent | None:
    """Tell the subscriber, at the address they had, that their email address was changed."""
    return fire(
        session,
        account=account,
        kind="email_changed",
        key=f"email:{account.id}:{uuid.uuid4()}",
        email_to=old_email,
        new_email=notify.mask("email", account.email),
    )


def _account_numbers(session: Session, account_id: uuid.UUID) -> list[str]:
    line = session.scalar(
        select(Line).where(Line.account_id == account_id).order_by(Line.bound_at).limit(1)
    )
    return line.numbers if line else []
