"""What routes ask FastAPI for: the settings, a transaction, the caller, the caller's language."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tongka.account import service as accounts
from tongka.account.models import Account
from tongka.config import Settings
from tongka.db import transaction
from tongka.errors import Unauthorized
from tongka.gate import READ_METHODS
from tongka.i18n import negotiate
from tongka.payment.providers.base import Provider
from tongka.staff import service as staff_service
from tongka.staff.service import Staff


def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _admitted(request: Request) -> AsyncIterator[bool]:
    """Waits, in the event loop, for a session and, for a request that may write, its turn
    (`tongka.gate`); gives whether it may write. GET, HEAD and OPTIONS only read."""
    write = request.method not in READ_METHODS
    async with request.app.state.gate.enter(write):
        yield write


async def _session(
    request: Request, write: Annotated[bool, Depends(_admitted, scope="function")]
) -> AsyncIterator[Session]:
    # Made here in the event loop (a Session does no I/O until its first statement, in the route's
    # thread), ended in one thread hop: each hop hands the interpreter lock over, one fewer per
    # request.
    unit = transaction(request.app.state.sessionmaker, read_only=not write)
    session = unit.__enter__()
    try:
        yield session
    except BaseException as error:
        await run_in_threadpool(unit.__exit__, type(error), error, error.__traceback__)
        raise
    else:
        await run_in_threadpool(unit.__exit__, None, None, None)


def _providers(request: Request) -> dict[str, Provider]:
    return request.app.state.providers


SettingsDep = Annotated[Settings, Depends(_settings)]
# scope="function": the transaction commits before the response is sent, so a client
# never hears "done" about something that was not committed.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
ProvidersDep = Annotated[dict[str, Provider], Depends(_providers)]

_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
# The bearer token as sent, not yet checked: for a route that checks it in its own transaction.
BearerToken = Annotated[str | None, Depends(_bearer)]


def _current_account(
    request: Request, session: SessionDep, token: Annotated[str | None, Depends(_bearer)]
) -> Account:
    if not token:
        raise Unauthorized()
    account = accounts.account_for_token(session, token)
    request.state.language = account.language
    return account


CurrentAccount = Annotated[Account, Depends(_current_account)]


@dataclass(frozen=True)
class Caller:
    """Who is calling, as a route that runs its own transactions needs it."""

    account_id: uuid.UUID
    language: str


async def _signed_in(request: Request, token: BearerToken) -> Caller:
    """The bearer token's account, read in a short transaction of its own before the body is
    looked at: for a route that runs its own transactions (one held across an outbound call
    would hold its locks)."""
    if not token:
        raise Unauthorized()

    def check() -> Caller:
        with transaction(request.app.state.sessionmaker, read_only=True) as session:
            account = accounts.account_for_token(session, token)
            return Caller(account.id, account.language)

    async with request.app.state.gate.enter(False):
        caller = await run_in_threadpool(check)
    request.state.language = caller.language
    return caller


SignedIn = Annotated[Caller, Depends(_signed_in)]


def _current_token(_account: CurrentAccount, token: Annotated[str | None, Depends(_bearer)]) -> str:
    """The bearer token the caller presented, once it is known to be good (to revoke it)."""
    assert token is not None  # _current_account refused a request without one
    return token


CurrentToken = Annotated[str, Depends(_current_token)]


def request_language(request: Request) -> str:
    """The signed-in account's language, else the browser's Accept-Language."""
    return getattr(request.state, "language", None) or negotiate(
        request.headers.get("accept-language")
    )


LanguageDep = Annotated[str, Depends(request_language)]


# --- what the app's and the web site's log-in and registration share ---------------------------


def client_address(request: Request) -> str | None:
    """The client's address as the throttles count it: an IPv6 client by its /64, which one home or
    phone is given whole (counting each address would give it 2^64 fresh limits)."""
    host = request.client.host if request.client else None
    if host is None:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address)


def hashing_policy(settings: Settings) -> accounts.HashingPolicy:
    return accounts.HashingPolicy(
        slots=settings.password_hashing_slots, wait_seconds=settings.password_hashing_wait_seconds
    )


# --- staff: the admin API takes staff bearer tokens only ------------------------------------------


async def staff_session(request: Request, token: str) -> Staff:
    """The staff member of a session token (a bearer token or the staff cookie), read in a short
    transaction of its own; its last use is written now and then (idle sessions end), in a write
    turn of its own. A subscriber's token is not one."""
    settings: Settings = request.app.state.settings
    address = client_address(request)

    def check() -> staff_service.SessionCheck:
        with transaction(request.app.state.sessionmaker, read_only=True) as session:
            return staff_service.staff_for_token(
                session, token, settings.staff_session_idle_seconds, address
            )

    def touch() -> None:
        with transaction(request.app.state.sessionmaker) as session:
            staff_service.touch(session, token)

    async with request.app.state.gate.enter(False):
        found = await run_in_threadpool(check)
    if found.stale:
        async with request.app.state.gate.enter(True):
            await run_in_threadpool(touch)
    return found.staff


async def _staff_caller(request: Request, token: BearerToken) -> Staff:
    """The staff member of a bearer token from `POST /api/v1/staff/token`."""
    if not token:
        raise Unauthorized()
    return await staff_session(request, token)


StaffCaller = Annotated[Staff, Depends(_staff_caller)]


async def _counter_staff(staff: StaffCaller) -> Staff:
    """Staff who sell: an agent or manager (at their store), or an admin."""
    return staff


async def _operator_admin(staff: StaffCaller) -> Staff:
    if not staff.is_admin:
        raise staff_service.StaffRoleRefused()
    return staff


# A store sale through the API: any staff member (their own store's, unless an admin).
SignedInOperator = Annotated[Staff, Depends(_counter_staff)]
# The operator's own API (refunds, offers, messages): admins only.
CurrentOperator = Annotated[Staff, Depends(_operator_admin)]
