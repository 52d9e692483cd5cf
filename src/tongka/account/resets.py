"""Password reset by email: a link that works once, for `password_reset_ttl_seconds`.

Asking for a link answers the same whether or not an account has the address (nobody learns
which addresses are customers'); the asking is capped per address asked about and per client
address (tongka.throttle), counted either way. The link's token is random; only its SHA-256 is
stored. Setting the new password marks the link used with a guarded UPDATE (of two tries at
once, one wins), ends every session of the account and tells its owner by email.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from tongka import clock, throttle
from tongka.account.models import Account, PasswordReset
from tongka.account.service import LOGIN_BY_ACCOUNT, end_sessions
from tongka.errors import BadRequest, TooManyRequests
from tongka.i18n import _
from tongka.notify import service as notify


class ResetLinkInvalid(BadRequest):
    code = "reset_link_invalid"
    message = _("This reset link does not work: it was used already, has expired or is incomplete.")


class ResetsUsedUp(TooManyRequests):
    code = "password_resets_used_up"
    message = _("Too many reset links were asked for. Try again in {wait}.")


# Links asked for a Hong Kong day: per email address (one a minute, so nobody floods a mailbox) and
# per client address (a script trying addresses one after another).
RESET_BY_EMAIL = throttle.Limit(
    "reset_email", allowed=5, window_seconds=86_400, spacing_seconds=60, error=ResetsUsedUp
)
RESET_BY_ADDRESS = throttle.Limit(
    "reset_address", allowed=20, window_seconds=86_400, error=ResetsUsedUp
)
# Accounts one address may hold (email is not unique): each gets its own link, up to this many.
MAX_ACCOUNTS_PER_EMAIL = 5


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_reset(
    session: Session,
    email: str,
    *,
    address: str | None,
    ttl_seconds: int,
    base_url: str,
) -> int:
    """Email a reset link to each account whose address is `email`; how many were sent (the caller
    tells the person the same thing whatever it is)."""
    email = email.strip()
    now = clock.now()
    throttle.take(session, RESET_BY_EMAIL, email.lower(), now)
    if address:
        throttle.take(session, RESET_BY_ADDRESS, address, now)
    found = session.scalars(
        select(Account)
        .where(func.lower(Account.email) == email.lower())
        .order_by(Account.created_at)
        .limit(MAX_ACCOUNTS_PER_EMAIL)
    ).all()
    for account in found:
        token = secrets.token_urlsafe(32)
        session.add(
            PasswordReset(
                account_id=account.id,
                token_hash=_digest(token),
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
        )
        notify.send_email(
            session,
            to=account.email,
            template="password_reset",
            language=account.language,
            account_id=account.id,
            username=account.username,
            link=f"{base_url.rstrip('/')}/password/reset?token={token}",
            minutes=ttl_seconds // 60,
        )
    return len(found)


@dataclass(frozen=True)
class ResetClaim:
    """The account a reset link in force is for."""

    account_id: uuid.UUID
    username: str


def _in_force(token: str) -> ColumnElement[bool]:
    return (
        (PasswordReset.token_hash == _digest(token))
        & PasswordReset.used_at.is_(None)
        & (PasswordReset.expires_at > clock.now())
    )


def pending_reset(session: Session, token: str) -> ResetClaim:
    """Whose password the link `token` may set; refused if it is unknown, used or expired."""
    row = session.execute(
        select(Account.id, Account.username)
        .join(PasswordReset, PasswordReset.account_id == Account.id)
        .where(_in_force(token))
    ).first()
    if row is None:
        raise ResetLinkInvalid()
    return ResetClaim(row[0], row[1])


def complete_reset(session: Session, token: str, password_hash: str) -> Account:
    """Set the password (already hashed by `service.new_password_hash`) through the link `token`, once.

    Every other link of the account stops working too, every session ends, the log-in throttle of
    the username is lifted (the owner proved they read its email), and the owner is told."""
    now = clock.now()
    claimed = session.execute(
        update(PasswordReset)
        .where(_in_force(token))
        .values(used_at=now)
        .returning(PasswordReset.account_id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if claimed is None:
        raise ResetLinkInvalid()
    account = session.get_one(Account, claimed)
    account.password_hash = password_hash
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.account_id == account.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    throttle.clear(session, LOGIN_BY_ACCOUNT, account.username)
    end_sessions(session, account)
    # The caller tells the subscriber (alerts.password_changed), by the channels they chose.
    return account
