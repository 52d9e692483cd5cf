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
from tongka.errors import Forbidden, Unauthorized
from tongka.gate import READ_METHODS
from tongka.i18n import negotiate
from tongka.payment.providers.base import Provider


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
    role: str  # subscriber | operator


async def _signed_in(request: Request, token: BearerToken) -> Caller:
    """The bearer token's account, read in a short transaction of its own before the body is
    looked at: for a route that runs its own transactions (one held across an outbound call
    would hold its locks)."""
    if not token:
        raise Unauthorized()

    def check() -> Caller:
        with transaction(request.app.state.sessionmaker, read_only=True) as session:
            account = accounts.account_for_token(session, token)
            return Caller(account.id, account.language, account.role)

    async with request.app.state.gate.enter(False):
        caller = await run_in_threadpool(check)
    request.state.language = caller.language
    return caller


SignedIn = Annotated[Caller, Depends(_signed_in)]


async def _signed_in_operator(caller: SignedIn) -> Caller:
    if caller.role != "operator":
        raise Forbidden()
    return caller


SignedInOperator = Annotated[Caller, Depends(_signed_in_operator)]


def _current_token(_account: CurrentAccount, token: Annotated[str | None, Depends(_bearer)]) -> str:
    """The bearer token the caller presented, once it is known to be good (to revoke it)."""
    assert token is not None  # _current_account refused a request without one
    return token


CurrentToken = Annotated[str, Depends(_current_token)]


def _current_operator(account: CurrentAccount) -> Account:
    if account.role != "operator":
        raise Forbidden()
    return account


CurrentOperator = Annotated[Account, Depends(_current_operator)]


def request_language(request: Request) -> str:
    """The signed-in account's language, else the browser's Accept-Language."""
    return getattr(request.state, "language", None) or negotiate(
        request.headers.get("accept-language")
    )


LanguageDep = Annotated[str, Depends(request_language)]


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
