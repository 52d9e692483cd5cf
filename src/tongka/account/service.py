"""Accounts: registration, password log-in and bearer tokens.

Log-in is throttled in the database (tongka.throttle), so every server process counts the
same failures: per username (`LOGIN_BY_ACCOUNT`) and per client address
(`LOGIN_BY_ADDRESS`), checked before any hashing. Hashing itself is capped per process
(`HashingPolicy`): each Argon2 check takes 64 MiB and about a quarter of a second, so
unbounded it is a denial of service on its own.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock, throttle
from tongka.account.models import AccessToken, Account
from tongka.errors import (
    Conflict,
    Forbidden,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from tongka.i18n import _
from tongka.notify import service as notify


class UsernameTaken(Conflict):
    code = "username_taken"
    message = _("This username is taken. Choose another.")
    commit_anyway = True  # the try counts against the address's registrations all the same


class WeakPassword(Unprocessable):
    code = "weak_password"
    message = _("Choose a password of at least 10 characters that is not your username.")


class BadCredentials(Unauthorized):
    code = "bad_credentials"
    message = _("The username or password is wrong.")
    commit_anyway = True  # the failure is counted although the request is refused


class WrongPassword(Forbidden):
    code = "wrong_password"
    message = _("Your current password is wrong.")
    commit_anyway = True  # counted as a failed log-in


class LoginThrottled(TooManyRequests):
    code = "login_throttled"
    message = _("Too many failed log-ins. Try again in {wait}.")


class RegistrationsUsedUp(TooManyRequests):
    code = "registrations_used_up_today"
    message = _("Too many accounts were created from this address today. Try again in {wait}.")


class HashingBusy(ServiceUnavailable):
    code = "hashing_busy"
    message = _("Too many log-ins at this moment. Try again in a few seconds.")


class InvalidToken(Unauthorized):
    code = "invalid_token"
    message = _("Your session has ended. Log in again.")


# After 5 failures for one username, each further try waits 1 s after the last failure, then
# 2, 4, ... at most 15 minutes; a success clears it. Per client address the same from 20
# failures (many subscribers share an address behind carrier NAT), and a success does not clear
# it. Counts start again each Hong Kong day.
LOGIN_BY_ACCOUNT = throttle.Limit(
    "login_account",
    allowed=5,
    window_seconds=86_400,
    backoff_seconds=1,
    backoff_cap_seconds=900,
    error=LoginThrottled,
)
LOGIN_BY_ADDRESS = throttle.Limit(
    "login_address",
    allowed=20,
    window_seconds=86_400,
    backoff_seconds=1,
    backoff_cap_seconds=900,
    error=LoginThrottled,
)
# Accounts made from one client address in a Hong Kong day: a family or a shop behind one
# address registers a few; a script making thousands (to spread its log-in guesses) is stopped.
REGISTER_BY_ADDRESS = throttle.Limit(
    "register_address", allowed=20, window_seconds=86_400, error=RegistrationsUsedUp
)


@dataclass(frozen=True)
class HashingPolicy:
    """At most `slots` password hashes at once in this process; a request that cannot start one
    within `wait_seconds` is refused with 503 rather than queued without bound."""

    slots: int = 2
    wait_seconds: float = 1.0


_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


@contextmanager
def _hashing(policy: HashingPolicy | None) -> Iterator[None]:
    if policy is None:  # the CLI and the demo loader: one process, one hash at a time
        yield
        return
    with _SLOTS_LOCK:
        slots = _SLOTS.setdefault(policy.slots, threading.BoundedSemaphore(policy.slots))
    if not slots.acquire(timeout=policy.wait_seconds):
        raise HashingBusy(seconds=1)
    try:
        yield
    finally:
        slots.release()


_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases take the same time.
DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
MIN_PASSWORD = 10


def new_password_hash(username: str, password: str, hashing: HashingPolicy | None = None) -> str:
    """The Argon2 hash of an acceptable password (the slow step, run outside any transaction)."""
    if len(password) < MIN_PASSWORD or password.lower() == username.strip().lower():
        raise WeakPassword()
    with _hashing(hashing):
        return _hasher.hash(password)


def create_account(
    session: Session,
    *,
    username: str,
    password_hash: str,
    email: str,
    language: str,
    region: str = "hk",
    address: str | None = None,
) -> Account:
    """A new subscriber account; at most `REGISTER_BY_ADDRESS` tries a day from one client `address`,
    a taken username counted too (so the limit also bounds asking which usernames exist)."""
    if address is not None:
        throttle.take(session, REGISTER_BY_ADDRESS, address)
    account = Account(
        username=username.strip().lower(),
        email=email.strip(),
        password_hash=password_hash,
        language=language,
        region=region,
    )
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:
        raise UsernameTaken() from None
    return account


def register(
    session: Session,
    *,
    username: str,
    password: str,
    email: str,
    language: str,
    region: str = "hk",
    hashing: HashingPolicy | None = None,
    address: str | None = None,
) -> Account:
    """Both steps in one transaction (the command line, the demo; the API runs them apart)."""
    password_hash = new_password_hash(username, password, hashing)
    return create_account(
        session,
        username=username,
        password_hash=password_hash,
        email=email,
        language=language,
        region=region,
        address=address,
    )


def verify_password(password_hash: str, password: str, hashing: HashingPolicy | None) -> bool:
    with _hashing(hashing):
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True)
class LoginAttempt:
    """What a log-in read before hashing: who is trying, from where, and the hash to check."""

    username: str
    address: str | None
    password_hash: str  # the account's, or a dummy one for an unknown username
    account_id: uuid.UUID | None
    at: datetime


def start_login(session: Session, username: str, *, address: str | None = None) -> LoginAttempt:
    """A log-in's first step, a short write: refused while the username or the client `address` is
    throttled, before any hashing; otherwise the try is counted now as a failure for both (an
    unknown username too, so the throttle does not tell which usernames exist), so tries made at
    the same moment cannot all pass one check (`throttle.attempt`)."""
    username = username.strip().lower()
    now = clock.now()
    throttle.attempt(session, LOGIN_BY_ACCOUNT, username, now)
    if address:
        throttle.attempt(session, LOGIN_BY_ADDRESS, address, now)
    account = session.scalar(select(Account).where(Account.username == username))
    # Checked against a dummy hash when the username is unknown, so both cases take the same time.
    if account is None:
        return LoginAttempt(username, address, DUMMY_HASH, None, now)
    return LoginAttempt(username, address, account.password_hash, account.id, now)


def password_matches(
    attempt: LoginAttempt, password: str, hashing: HashingPolicy | None = None
) -> bool:
    """The slow step (Argon2), with no transaction open: on SQLite no writer waits behind it."""
    return (
        verify_password(attempt.password_hash, password, hashing) and attempt.account_id is not None
    )


def finish_login(
    session: Session,
    attempt: LoginAttempt,
    password: str,
    right: bool,
    *,
    hashing: HashingPolicy | None = None,
) -> Account:
    """A log-in's last step: a failure stays counted; a success clears the username's count and
    takes back the address's one (only failures count there)."""
    account = session.get(Account, attempt.account_id) if right and attempt.account_id else None
    if (
        account is None or account.password_hash != attempt.password_hash
    ):  # the password changed meanwhile
        raise BadCredentials()
    throttle.clear(session, LOGIN_BY_ACCOUNT, attempt.username)
    if attempt.address:
        throttle.uncount(session, LOGIN_BY_ADDRESS, attempt.address)
    if _hasher.check_needs_rehash(account.password_hash):
        with _hashing(hashing):
            account.password_hash = _hasher.hash(password)
    return account


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    address: str | None = None,
    hashing: HashingPolicy | None = None,
) -> Account:
    """The account, if the password is right: the three steps of a log-in in one transaction (the
    command line; the API runs them apart, `account.api.token`)."""
    attempt = start_login(session, username, address=address)
    return finish_login(
        session, attempt, password, password_matches(attempt, password, hashing), hashing=hashing
    )


def change_password(
    session: Session,
    account: Account,
    current: str,
    new: str,
    *,
    hashing: HashingPolicy | None = None,
) -> None:
    """Set a new password and end every session of the account (all its tokens).

    The current password is checked as a log-in is: throttled per username before hashing,
    a wrong one counted, so a stolen token cannot be used to guess it faster."""
    now = clock.now()
    throttle.check(session, LOGIN_BY_ACCOUNT, account.username, now)
    if not verify_password(account.password_hash, current, hashing):
        throttle.hit(session, LOGIN_BY_ACCOUNT, account.username, now)
        raise WrongPassword()
    if len(new) < MIN_PASSWORD or new.lower() == account.username:
        raise WeakPassword()
    with _hashing(hashing):
        account.password_hash = _hasher.hash(new)
    throttle.clear(session, LOGIN_BY_ACCOUNT, account.username)
    end_sessions(session, account)


def set_anti_phishing_code(
    session: Session, account: Account, code: str | None, *, hashing: HashingPolicy | None = None
) -> str | None:
    """The word every genuine message to this account will carry (None or "" clears it). Never the
    username or the password: a code anyone could guess, or a password shown in every message."""
    code = (code or "").strip() or None
    if code is not None and (
        code.lower() == account.username.lower()
        or verify_password(account.password_hash, code, hashing)
    ):
        raise notify.BadAntiPhishingCode()
    notify.set_anti_phishing_code(session, account.id, code)
    return code


def change_email(
    session: Session,
    account: Account,
    password: str,
    email: str,
    *,
    hashing: HashingPolicy | None = None,
) -> str:
    """Set a new email address, proven by the current password (checked as `change_password` checks
    it: throttled, a wrong one counted), since the address is where reset links go. The old address
    is returned, for the caller to tell it (`alerts.email_changed`), so a stolen session cannot
    move the account away unnoticed."""
    now = clock.now()
    throttle.check(session, LOGIN_BY_ACCOUNT, account.username, now)
    if not verify_password(account.password_hash, password, hashing):
        throttle.hit(session, LOGIN_BY_ACCOUNT, account.username, now)
        raise WrongPassword()
    old, account.email = account.email, email.strip()
    return old


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, account: Account, ttl_seconds: int) -> str:
    token = secrets.token_urlsafe(32)
    now = clock.now()
    session.add(
        AccessToken(
            token_hash=token_digest(token),
            account_id=account.id,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    # Old tokens of this account are purged here, so the table never grows without bound.
    session.execute(
        delete(AccessToken).where(
            AccessToken.account_id == account.id, AccessToken.expires_at <= now
        )
    )
    return token


def revoke_token(session: Session, token: str) -> None:
    session.execute(delete(AccessToken).where(AccessToken.token_hash == token_digest(token)))


def end_sessions(session: Session, account: Account) -> None:
    """Every token of the account stops working now."""
    session.execute(delete(AccessToken).where(AccessToken.account_id == account.id))


# Every signed-in request asks: one statement, built once.
_BY_TOKEN = (
    select(Account)
    .join(AccessToken, AccessToken.account_id == Account.id)
    .where(AccessToken.token_hash == bindparam("digest"), AccessToken.expires_at > bindparam("now"))
)


def account_for_token(session: Session, token: str) -> Account:
    """The account of a bearer token in force."""
    account = session.scalar(_BY_TOKEN, {"digest": token_digest(token), "now": clock.now()})
    if account is None:
        raise InvalidToken()
    return account
