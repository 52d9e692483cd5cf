"""Accounts: registration, password log-in and bearer tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import AccessToken, Account
from tongka.errors import Conflict, Unauthorized, Unprocessable
from tongka.i18n import _


class UsernameTaken(Conflict):
    code = "username_taken"
    message = _("This username is taken. Choose another.")


class WeakPassword(Unprocessable):
    code = "weak_password"
    message = _("Choose a password of at least 10 characters that is not your username.")


class BadCredentials(Unauthorized):
    code = "bad_credentials"
    message = _("The username or password is wrong.")


class InvalidToken(Unauthorized):
    code = "invalid_token"
    message = _("Your session has ended. Log in again.")


_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
MIN_PASSWORD = 10


def register(
    session: Session, *, username: str, password: str, email: str, language: str, region: str = "hk"
) -> Account:
    username = username.strip().lower()
    if len(password) < MIN_PASSWORD or password.lower() == username:
        raise WeakPassword()
    account = Account(
        username=username, email=email.strip(), password_hash=_hasher.hash(password), language=language,
        region=region,
    )
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:
        raise UsernameTaken() from None
    return account


def authenticate(session: Session, username: str, password: str) -> Account:
    account = session.scalar(select(Account).where(Account.username == username.strip().lower()))
    try:
        _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise BadCredentials() from None
    if account is None:
        raise BadCredentials()
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = _hasher.hash(password)
    return account


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, account: Account, ttl_seconds: int) -> str:
    token = secrets.token_urlsafe(32)
    now = clock.now()
    session.add(AccessToken(token_hash=_digest(token), account_id=account.id, expires_at=now + timedelta(seconds=ttl_seconds)))
    # Old tokens of this account are purged here, so the table never grows without bound.
    session.execute(delete(AccessToken).where(AccessToken.account_id == account.id, AccessToken.expires_at <= now))
    return token


def account_for_token(session: Session, token: str) -> Account:
    row = session.get(AccessToken, _digest(token))
    if row is None or row.expires_at <= clock.now():
        raise InvalidToken()
    account = session.get(Account, row.account_id)
    if account is None:
        raise InvalidToken()
    return account
