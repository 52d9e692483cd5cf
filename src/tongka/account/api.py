"""App API: accounts, log-in, lines, binding, balance.

Who may call: `POST /accounts` and `POST /auth/token` anyone; everything else the
signed-in subscriber, on their own lines only (another's line is 404).

The client address that log-in and SMS codes are throttled by is `request.client.host`:
the peer, or, behind a proxy, what uvicorn takes from `X-Forwarded-For` when started with
`--proxy-headers` and the proxy's address in `--forwarded-allow-ips` (trust no other).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account import balance as balance_read
from tongka.account import lines as line_service
from tongka.account import service, signing_in
from tongka.account.models import Account, Line
from tongka.account.schemas import (
    AccountCreate,
    AccountOut,
    AntiPhishingIn,
    AntiPhishingOut,
    BalanceOut,
    BindConfirm,
    BindRequest,
    BindRequested,
    LineOut,
    PasswordChange,
    RealNameIn,
    RealNameOut,
    TokenOut,
)
from tongka.alerts import service as alerts
from tongka.config import Settings
from tongka.db import Together
from tongka.deps import (
    CurrentAccount,
    CurrentToken,
    SessionDep,
    SettingsDep,
    client_address,
    hashing_policy,
)
from tongka.errors import Unauthorized
from tongka.notify import service as notify

router = APIRouter(prefix="/api/v1", tags=["accounts and lines"])
# The balance read, the app's most frequent call, on a router of its own that the app factory
# matches first after /healthz: FastAPI tries an app's routes one after another, each try
# costing a few µs, and the account router's other routes came before it.
reads = APIRouter(prefix="/api/v1", tags=["accounts and lines"])


def account_out(account: Account) -> AccountOut:
    return AccountOut.model_validate(account, from_attributes=True)


def line_out(line: Line) -> LineOut:
    record = line.real_name
    return LineOut(
        id=line.id,
        iccid=line.iccid,
        numbers=line.numbers,
        status=line.status,
        bound_at=line.bound_at,
        real_name=RealNameOut(
            document_type=record.document_type,
            document_country=record.document_country,
            document_number=record.document_number_masked,
            holder_name=record.holder_name_masked,
        )
        if record
        else None,
    )


def new_token(session: Session, settings: Settings, account: Account) -> TokenOut:
    ttl = settings.access_token_ttl_seconds
    return TokenOut(access_token=service.issue_token(session, account, ttl), expires_in=ttl)


@router.post("/accounts", status_code=status.HTTP_201_CREATED, response_model=AccountOut)
async def register(request: Request, body: AccountCreate, settings: SettingsDep) -> AccountOut:
    """Anyone: create a subscriber account (at most 20 tries a day from one client address)."""
    return await signing_in.register(
        request.app.state.sessionmaker,
        request.app.state.gate,
        username=body.username,
        password=body.password,
        email=str(body.email),
        language=body.language,
        region=body.region,
        address=client_address(request),
        hashing=hashing_policy(settings),
        then=lambda _session, account: account_out(account),
    )


@router.post("/auth/token", response_model=TokenOut)
async def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], settings: SettingsDep
) -> TokenOut:
    """Anyone: the OAuth2 password flow; returns a bearer token (8 hours for staff, 24 for subscribers).

    Throttled per username and per client address: 429 with Retry-After (docs/SECURITY.md).
    """
    return await signing_in.log_in(
        request.app.state.sessionmaker,
        request.app.state.gate,
        username=form.username,
        password=form.password,
        address=client_address(request),
        hashing=hashing_policy(settings),
        then=lambda session, account: new_token(session, settings, account),
    )


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def logout(token: CurrentToken, session: SessionDep) -> Response:
    """The signed-in subscriber or staff member: end this session (the token presented stops working)."""
    service.revoke_token(session, token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/account/password", response_model=TokenOut)
def change_password(
    body: PasswordChange, account: CurrentAccount, session: SessionDep, settings: SettingsDep
) -> TokenOut:
    """The signed-in subscriber or staff member: change their password with the current one.

    Every session of the account ends, this one included; the answer is a fresh token for
    this device. A wrong current password counts as a failed log-in.
    """
    service.change_password(
        session, account, body.current_password, body.new_password, hashing=hashing_policy(settings)
    )
    alerts.password_changed(session, account)
    return new_token(session, settings, account)


@router.get("/account/anti-phishing", response_model=AntiPhishingOut)
def get_anti_phishing(account: CurrentAccount, session: SessionDep) -> AntiPhishingOut:
    """The signed-in subscriber: the anti-phishing code their messages carry (null: none)."""
    return AntiPhishingOut(code=notify.anti_phishing_code(session, account.id))


@router.put("/account/anti-phishing", response_model=AntiPhishingOut)
def set_anti_phishing(
    body: AntiPhishingIn, account: CurrentAccount, session: SessionDep, settings: SettingsDep
) -> AntiPhishingOut:
    """The signed-in subscriber: set the word every genuine email and SMS to them starts with, so a
    message without it is not from tongka (null or "" removes it)."""
    code = service.set_anti_phishing_code(
        session, account, body.code, hashing=hashing_policy(settings)
    )
    return AntiPhishingOut(code=code)


@router.get("/me", response_model=AccountOut)
def me(account: CurrentAccount) -> AccountOut:
    """The signed-in subscriber."""
    return account_out(account)


@router.post("/lines/bind", status_code=status.HTTP_202_ACCEPTED, response_model=BindRequested)
def bind(
    request: Request,
    body: BindRequest,
    account: CurrentAccount,
    session: SessionDep,
    settings: SettingsDep,
) -> BindRequested:
    """The signed-in subscriber: send a one-time code by SMS to a line's number.

    The same 202 whether or not the number is a line that can be bound (no code is sent if not).
    Capped a day per number, per account and per client address (429 with Retry-After).
    """
    challenge = line_service.request_bind(
        session,
        account,
        body.number,
        line_service.bind_policy(settings),
        address=client_address(request),
    )
    return BindRequested(
        number=challenge.number,
        code_expires_at=challenge.expires_at,
        code_length=line_service.CODE_DIGITS,
    )


@router.post("/lines/bind/confirm", status_code=status.HTTP_201_CREATED, response_model=LineOut)
def bind_confirm(
    body: BindConfirm, account: CurrentAccount, session: SessionDep, settings: SettingsDep
) -> LineOut:
    """The signed-in subscriber: prove the code and take the line."""
    return line_out(
        line_service.confirm_bind(
            session, account, body.number, body.code, line_service.bind_policy(settings)
        )
    )


@router.get("/lines", response_model=list[LineOut])
def my_lines(account: CurrentAccount, session: SessionDep) -> list[LineOut]:
    """The signed-in subscriber's lines."""
    return [line_out(line) for line in line_service.lines_of(session, account)]


@router.get("/lines/{line_id}", response_model=LineOut)
def get_line(line_id: uuid.UUID, account: CurrentAccount, session: SessionDep) -> LineOut:
    """The line's owner."""
    return line_out(line_service.own_line(session, account, line_id))


@router.put(
    "/lines/{line_id}/real-name", status_code=status.HTTP_201_CREATED, response_model=LineOut
)
def set_real_name(
    line_id: uuid.UUID,
    body: RealNameIn,
    account: CurrentAccount,
    session: SessionDep,
    settings: SettingsDep,
) -> LineOut:
    """The line's owner, once: register the identity document of a line that has none."""
    line = line_service.own_line(session, account, line_id)
    line_service.set_real_name(
        session,
        line,
        document_type=body.document_type,
        document_number=body.document_number,
        holder_name=body.holder_name,
        document_country=body.document_country,
        secret=settings.secret_key.get_secret_value(),
        source="app",
    )
    return line_out(line)


@reads.get(
    "/lines/{line_id}/balance",
    response_model=BalanceOut,
    # the bearer token read below as `BearerToken` reads it, said in the docs as it says it
    openapi_extra={"security": [{"OAuth2PasswordBearer": []}]},
)
async def balance(line_id: uuid.UUID, request: Request) -> Response:
    """The line's owner: remaining data by zone (a `both` bucket counts in each) and the buckets in force."""
    return await _balance(request, line_id)


async def balance_lean(request: Request) -> Response:
    """`balance` as a plain Starlette route, matched before FastAPI's (`app.py`): the same answer
    without FastAPI's work per request. A path whose id is not a UUID does not match it and gets
    FastAPI's route, its 422 and its place in the OpenAPI document (bench/README.md)."""
    return await _balance(request, request.path_params["line_id"])


BALANCE_PATH = "/api/v1/lines/{line_id:uuid}/balance"


async def _balance(request: Request, line_id: uuid.UUID) -> Response:
    # The app's most frequent call: one statement from the token to the buckets, awaited in the
    # event loop on PostgreSQL, and its JSON made directly (`account.balance`). The token is read
    # here, not by a dependency FastAPI would solve for each read (bench/README.md).
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if not token or scheme.lower() != "bearer":
        raise Unauthorized()
    now = clock.now()
    rows = await _read(request, balance_read.TOGETHER, balance_read.parameters(token, line_id, now))
    language, view = balance_read.balance_of(rows, now)
    request.state.language = language
    if view is None:  # someone else's or nobody's: the same answer
        raise line_service.LineNotFound()
    return Response(balance_read.answer(line_id, view), media_type="application/json")


async def _read(request: Request, together: Together, parameters: dict[str, Any]) -> Sequence[Any]:
    """The rows of one read-only statement, read with the other reads of it waiting: on PostgreSQL
    from the event loop as one statement (`db.AsyncReads`); on SQLite, or before the app's lifespan
    has opened those connections, in one hop to a worker thread (`db.ThreadReads`)."""
    reads = request.app.state.reads or request.app.state.thread_reads
    return await reads.rows_together(together, parameters)
