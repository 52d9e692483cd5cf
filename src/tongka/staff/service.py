"""Staff members: created, logged in with a password and a TOTP code, and their sessions.

A log-in runs in three steps like a subscriber's (`account.signing_in`): a short write that counts
the try (throttled per username and per address), the password's Argon2 check and the code's
check with no transaction open, then a short write that uses the code (once) and opens the session.
A staff member not yet enrolled proves the password, then scans the QR code of a new secret and
confirms it with a first code; until then they reach nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock, throttle
from tongka.account import service as accounts
from tongka.errors import (
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from tongka.i18n import _
from tongka.staff.models import ROLES, StaffMember, StaffSession
from tongka.stores.models import Store

ISSUER = "tongka"
# A code is accepted one 30-second step early or late (a phone's clock a little off).
TOTP_WINDOW = 1


class StaffLoginFailed(Unauthorized):
    code = "staff_login_failed"
    message = _("The username, password or code is not right.")


class StaffLoginThrottled(TooManyRequests):
    code = "login_throttled"
    message = _("Too many failed log-ins. Try again in {wait}.")


class StaffSessionEnded(Unauthorized):
    code = "staff_session_invalid"
    message = _("This is not a staff session in force. Log in as staff.")


class NotEnrolled(Forbidden):
    code = "totp_not_enrolled"
    message = _("Set up your authenticator app first: log in on the web to scan its QR code.")


class StaffRoleRefused(Forbidden):
    code = "staff_role_refused"
    message = _("Your role does not allow this.")


class StaffNotFound(NotFound):
    code = "staff_not_found"
    message = _("There is no such staff member.")


class StaffUsernameTaken(Conflict):
    code = "staff_username_taken"
    message = _("That username is taken.")


class StaffInvalid(Unprocessable):
    code = "staff_invalid"
    message = _("An agent or a manager works at one store; an admin at none.")


class StoreUnknown(Unprocessable):
    code = "store_unknown"
    message = _("There is no store with the code {code}.")


LOGIN_BY_USERNAME = throttle.Limit(
    "staff_login",
    allowed=5,
    window_seconds=86_400,
    backoff_seconds=1,
    backoff_cap_seconds=900,
    error=StaffLoginThrottled,
)
LOGIN_BY_ADDRESS = throttle.Limit(
    "staff_login_address",
    allowed=20,
    window_seconds=86_400,
    backoff_seconds=1,
    backoff_cap_seconds=900,
    error=StaffLoginThrottled,
)


@dataclass(frozen=True)
class Staff:
    """Who a staff request is from, as routes and the audit log need it."""

    id: uuid.UUID
    username: str
    display_name: str
    role: str  # agent | manager | admin
    store_id: uuid.UUID | None
    store_code: str | None
    address: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_manager(self) -> bool:
        """A store manager, or an admin (who may do whatever a manager does, for any store)."""
        return self.role in ("manager", "admin")

    def may_see_store(self, store_id: uuid.UUID | None) -> bool:
        return self.is_admin or (store_id is not None and store_id == self.store_id)


# --- sealing the TOTP secret ---------------------------------------------------------------------


def _sealing_key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), b"tongka:staff-totp", hashlib.sha256).digest()


def seal(secret_key: str, totp_secret: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key(secret_key)).encrypt(nonce, totp_secret.encode(), b"totp")
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(secret_key: str, sealed: str) -> str:
    raw = base64.urlsafe_b64decode(sealed.encode())
    return AESGCM(_sealing_key(secret_key)).decrypt(raw[:12], raw[12:], b"totp").decode()


# --- staff members -------------------------------------------------------------------------------


def add(
    session: Session,
    *,
    username: str,
    display_name: str,
    role: str,
    store_code: str | None,
    password_hash: str,
) -> StaffMember:
    """A new staff member, not yet enrolled (the first log-in on the web shows the QR code)."""
    if role not in ROLES:
        raise StaffInvalid()
    store_id = None
    if store_code:
        store = session.scalar(select(Store).where(Store.code == store_code))
        if store is None:
            raise StoreUnknown(code=store_code)
        store_id = store.id
    if (role == "admin") != (store_id is None):
        raise StaffInvalid()
    member = StaffMember(
        username=username.strip().lower(),
        display_name=display_name.strip() or username,
        password_hash=password_hash,
        role=role,
        store_id=store_id,
    )
    try:
        with session.begin_nested():
            session.add(member)
    except IntegrityError:
        raise StaffUsernameTaken() from None
    return member


def by_username(session: Session, username: str) -> StaffMember | None:
    return session.scalar(
        select(StaffMember).where(StaffMember.username == username.strip().lower())
    )


def as_staff(session: Session, member: StaffMember, address: str | None = None) -> Staff:
    code = (
        session.scalar(select(Store.code).where(Store.id == member.store_id))
        if member.store_id
        else None
    )
    return Staff(
        member.id, member.username, member.display_name, member.role, member.store_id, code, address
    )


def start_enrolment(session: Session, member: StaffMember, secret_key: str) -> str:
    """A new TOTP secret for `member`, kept pending until a code from it is confirmed: its
    otpauth:// URI, which the enrolment page shows as a QR code."""
    secret = pyotp.random_base32()
    member.totp_pending = seal(secret_key, secret)
    return provisioning_uri(member.username, secret)


def provisioning_uri(username: str, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def pending_uri(member: StaffMember, secret_key: str) -> str | None:
    if member.totp_pending is None:
        return None
    return provisioning_uri(member.username, unseal(secret_key, member.totp_pending))


def _step(secret: str, code: str, now: datetime) -> int | None:
    """The time step `code` belongs to (within the window), or None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    for offset in range(-TOTP_WINDOW, TOTP_WINDOW + 1):
        at = now + timedelta(seconds=offset * totp.interval)
        if hmac.compare_digest(totp.at(at), code):
            return int(at.timestamp()) // totp.interval
    return None


def confirm_enrolment(session: Session, member: StaffMember, secret_key: str, code: str) -> bool:
    """The pending secret becomes the member's when `code` is one of its codes."""
    if member.totp_pending is None:
        return False
    step = _step(unseal(secret_key, member.totp_pending), code, clock.now())
    if step is None:
        return False
    member.totp_sealed, member.totp_pending, member.totp_last_step = member.totp_pending, None, step
    return True


def enrol_directly(member: StaffMember, secret_key: str) -> str:
    """A new secret confirmed at once, returned (base32): for the demo's staff, who have no phone
    (`tongka staff code` shows their codes in dev), and for tests playing an authenticator app."""
    secret = pyotp.random_base32()
    member.totp_sealed, member.totp_pending = seal(secret_key, secret), None
    return secret


def current_code(member: StaffMember, secret_key: str) -> str:
    """The member's code right now (dev's `tongka staff code`, and tests: an authenticator app)."""
    if member.totp_sealed is None:
        raise NotEnrolled()
    return pyotp.TOTP(unseal(secret_key, member.totp_sealed)).at(clock.now())


# --- logging in ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginAttempt:
    username: str
    address: str | None
    password_hash: str
    staff_id: uuid.UUID | None


def start_login(session: Session, username: str, address: str | None) -> LoginAttempt:
    """First step, a short write: refused while throttled; the try counted as a failure until the
    last step clears it."""
    username = username.strip().lower()
    now = clock.now()
    throttle.attempt(session, LOGIN_BY_USERNAME, username, now)
    if address:
        throttle.attempt(session, LOGIN_BY_ADDRESS, address, now)
    member = by_username(session, username)
    if member is None or not member.active:
        return LoginAttempt(username, address, accounts.DUMMY_HASH, None)
    return LoginAttempt(username, address, member.password_hash, member.id)


def password_matches(
    attempt: LoginAttempt, password: str, hashing: accounts.HashingPolicy | None
) -> bool:
    """Second step, with no transaction open."""
    return (
        accounts.verify_password(attempt.password_hash, password, hashing)
        and attempt.staff_id is not None
    )


def finish_login(
    session: Session, attempt: LoginAttempt, code: str | None, secret_key: str
) -> StaffMember:
    """Last step: the TOTP code checked and used (a code works once). A member not yet enrolled
    gets no code check here and no session: the caller shows enrolment instead."""
    member = session.get(StaffMember, attempt.staff_id, with_for_update=True)
    if member is None or not member.active:
        raise StaffLoginFailed()
    if member.enrolled:
        assert member.totp_sealed is not None
        step = _step(unseal(secret_key, member.totp_sealed), code or "", clock.now())
        if step is None or step <= member.totp_last_step:
            raise StaffLoginFailed()
        member.totp_last_step = step
    throttle.clear(session, LOGIN_BY_USERNAME, attempt.username)
    return member


# --- sessions ------------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    session: Session, member: StaffMember, ttl_seconds: int, address: str | None
) -> str:
    if not member.enrolled:
        raise NotEnrolled()
    token = secrets.token_urlsafe(32)
    now = clock.now()
    session.add(
        StaffSession(
            token_hash=_digest(token),
            staff_id=member.id,
            expires_at=now + timedelta(seconds=ttl_seconds),
            last_seen_at=now,
            address=address,
        )
    )
    session.execute(
        delete(StaffSession).where(
            StaffSession.staff_id == member.id, StaffSession.expires_at <= now
        )
    )
    return token


def close_session(session: Session, token: str) -> None:
    session.execute(delete(StaffSession).where(StaffSession.token_hash == _digest(token)))


def end_sessions(session: Session, staff_id: uuid.UUID) -> None:
    """Every session of the member ends now (a password change, a role change, deactivation)."""
    session.execute(delete(StaffSession).where(StaffSession.staff_id == staff_id))


@dataclass(frozen=True)
class SessionCheck:
    staff: Staff
    stale: bool  # last seen long enough ago that the caller should write `touch`


# How often a session's last-seen time is written: not on every request (a read would write).
TOUCH_SECONDS = 60


def staff_for_token(
    session: Session, token: str, idle_seconds: int, address: str | None = None
) -> SessionCheck:
    """The staff member of a session in force: not past its end, not idle too long, still active."""
    now = clock.now()
    row = session.execute(
        select(StaffSession, StaffMember)
        .join(StaffMember, StaffMember.id == StaffSession.staff_id)
        .where(StaffSession.token_hash == _digest(token))
    ).first()
    if row is None:
        raise StaffSessionEnded()
    record, member = row
    if (
        record.expires_at <= now
        or (now - record.last_seen_at).total_seconds() > idle_seconds
        or not member.active
    ):
        raise StaffSessionEnded()
    stale = (now - record.last_seen_at).total_seconds() >= TOUCH_SECONDS
    return SessionCheck(as_staff(session, member, address), stale)


def touch(session: Session, token: str) -> None:
    session.execute(
        update(StaffSession)
        .where(StaffSession.token_hash == _digest(token))
        .values(last_seen_at=clock.now())
    )


def members(session: Session, store_id: uuid.UUID | None = None) -> list[StaffMember]:
    query = select(StaffMember).order_by(StaffMember.username)
    if store_id is not None:
        query = query.where(StaffMember.store_id == store_id)
    return list(session.scalars(query))


# --- looking after members (the console) ---------------------------------------------------------


class StaffSelfRefused(Conflict):
    code = "staff_self_refused"
    message = _("You cannot deactivate yourself or change your own role.")


def get(session: Session, staff_id: uuid.UUID, *, lock: bool = False) -> StaffMember:
    """The member; `lock`: their row locked until the transaction ends (a change to make)."""
    member = session.get(StaffMember, staff_id, with_for_update=lock)
    if member is None:
        raise StaffNotFound()
    return member


def _store_id(session: Session, role: str, store_code: str | None) -> uuid.UUID | None:
    if role not in ROLES:
        raise StaffInvalid()
    store_id = None
    if store_code:
        store_id = session.scalar(select(Store.id).where(Store.code == store_code))
        if store_id is None:
            raise StoreUnknown(code=store_code)
    if (role == "admin") != (store_id is None):
        raise StaffInvalid()
    return store_id


def change_role(
    session: Session, actor: Staff, member: StaffMember, role: str, store_code: str | None
) -> bool:
    """A new role and store (an admin has none); the member's sessions end. False: no change."""
    if member.id == actor.id:
        raise StaffSelfRefused()
    store_id = _store_id(session, role, store_code)
    if (member.role, member.store_id) == (role, store_id):
        return False
    member.role, member.store_id = role, store_id
    session.flush()
    end_sessions(session, member.id)
    return True


def reset_totp(session: Session, member: StaffMember) -> None:
    """The member sets up their authenticator app again at their next log-in; sessions end now."""
    member.totp_sealed = member.totp_pending = None
    end_sessions(session, member.id)


def set_password(session: Session, member: StaffMember, password_hash: str) -> None:
    """A password set by an admin (the hash made outside the transaction); sessions end now."""
    member.password_hash = password_hash
    end_sessions(session, member.id)


def set_active(session: Session, actor: Staff, member: StaffMember, active: bool) -> bool:
    """Deactivate (sessions end, no log-in) or activate again; nobody deactivates themselves."""
    if member.id == actor.id and not active:
        raise StaffSelfRefused()
    if member.active == active:
        return False
    member.active = active
    if not active:
        end_sessions(session, member.id)
    return True
