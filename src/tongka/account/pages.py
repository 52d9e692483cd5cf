"""Web pages of an account: register, log in and out, a new password by email, settings.

Who may call: registering, logging in and the password reset pages, anyone; settings, the
signed-in subscriber (their own lines only: another's is a 404 page).

The pages run the app's flows (`account/api.py`): the same registration limit per client
address, the same log-in throttles per username and per client address, Argon2 outside any
transaction (`tongka.gate`), and a web session that is an access token like the app's.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tongka import web
from tongka.account import lines as line_service
from tongka.account import resets, service, signing_in
from tongka.account.models import Account
from tongka.account.schemas import AccountCreate
from tongka.alerts import service as alerts
from tongka.charging import notify as charging_notify
from tongka.charging import overage
from tongka.db import transaction
from tongka.deps import SessionDep, SettingsDep, client_address, hashing_policy
from tongka.errors import TongkaError, TooManyRequests
from tongka.i18n import LANGUAGES, Language, _, gettext
from tongka.money import CURRENCIES, EXPONENT, GB, MB, Currency
from tongka.notify import service as notify
from tongka.wallet import service as wallets

router = APIRouter(tags=["web: account"])

# What a settings form says after it saved (/settings?saved=<part>).
SAVED = {
    "language": _("Your language is saved."),
    "email": _("Your email address is changed. A notice went to your old address."),
    "password": _("Your password is changed. Every other device was logged out."),
    "overage": _("Overage is saved for this line."),
    "anti_phishing": _(
        "Your anti-phishing code is saved. Every message from tongka will carry it."
    ),
    "anti_phishing_removed": _("Your anti-phishing code is removed."),
    "alerts": _("Your alert choices are saved."),
}

# The settings page's name of each alert (tongka.alerts.service.KINDS), and of each choice.
ALERT_NAMES = {
    "data_used_80": _("Data 80 % used"),
    "data_used_90": _("Data 90 % used"),
    "data_used_100": _("Data used up"),
    "data_expiring_3d": _("Data expires in 3 days"),
    "data_expiring_1d": _("Data expires within a day"),
    "overage_started": _("Overage started"),
    "overage_cap_reached": _("Overage cap reached"),
    "renewal_confirmed": _("Renewal confirmed (the receipt always comes by email)"),
    "payment_failed": _("Payment failed"),
    "auto_renew_done": _("Auto-renew bought a pack"),
    "auto_renew_failed": _("Auto-renew failed"),
    "password_changed": _("Password changed"),
    "email_changed": _("Email address changed (told at the old address)"),
}
ALERT_CHANNELS = {
    "sms": _("SMS"),
    "email": _("Email"),
    "both": _("SMS and email"),
    "none": _("Neither"),
}


class LoginForm(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class ForgotForm(BaseModel):
    email: EmailStr


class ResetForm(BaseModel):
    token: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=256)


class LanguageForm(BaseModel):
    language: Language


class EmailForm(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class PasswordForm(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class AntiPhishingForm(BaseModel):
    code: str = Field(default="", max_length=16)


class OverageForm(BaseModel):
    enabled: bool = False  # a checkbox: absent when unticked
    # In the currency's major units (HK$, ¥), as a person writes it; stored in minor units.
    monthly_cap: Decimal = Field(default=Decimal(0), ge=0, le=100_000, decimal_places=2)
    currency: Currency


def _text(posted: Any, name: str) -> str:
    value = posted.get(name)
    return value if isinstance(value, str) else ""


def _refused(
    request: Request,
    visitor: web.Visitor,
    template: str,
    context: dict[str, Any],
    refusal: TongkaError,
) -> HTMLResponse:
    """The form again, with a refusal the person can act on (its status, and Retry-After if any)."""
    response = web.page(
        request,
        visitor,
        template,
        {**context, "error": refusal.detail(visitor.language)},
        status_code=refusal.status,
    )
    response.headers.update(refusal.headers())
    return response


# --- register -----------------------------------------------------------------------------------

REGISTER = "web/account/register.html"


def _register_context(values: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    return {"values": values, "errors": errors, "language_names": web.LANGUAGE_NAMES}


@router.get("/register", response_class=HTMLResponse, include_in_schema=False)
def register_form(request: Request, visitor: web.VisitorDep) -> HTMLResponse:
    """Anyone: the form to create an account."""
    return web.page(
        request, visitor, REGISTER, _register_context({"language": visitor.language}, {})
    )


@router.post("/register", include_in_schema=False)
async def register(
    request: Request, visitor: web.VisitorDep, posted: web.FormDep, settings: SettingsDep
) -> Response:
    """Anyone: create a subscriber account (as `POST /api/v1/accounts`), signed in at once."""
    values = {k: _text(posted, k) for k in ("username", "email", "language")}
    body, errors = web.parse(AccountCreate, posted, visitor.language)
    if body is None:
        return web.page(
            request, visitor, REGISTER, _register_context(values, errors), status_code=400
        )

    def signed_in(session: Session, account: Account) -> Response:
        response = web.redirect(request, "/lines/bind")
        web.sign_in(request, response, session, account, settings.access_token_ttl_seconds)
        return response

    context = _register_context(values, {})
    try:
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
            then=signed_in,
        )
    except service.WeakPassword as refusal:
        context["errors"] = {"password": refusal.detail(visitor.language)}
        return web.page(request, visitor, REGISTER, context, status_code=400)
    except service.UsernameTaken as refusal:
        context["errors"] = {"username": refusal.detail(visitor.language)}
        return web.page(request, visitor, REGISTER, context, status_code=400)
    except service.RegistrationsUsedUp as refusal:
        return _refused(request, visitor, REGISTER, context, refusal)


# --- log in and out -----------------------------------------------------------------------------

LOGIN = "web/account/login.html"


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(request: Request, visitor: web.VisitorDep, next: str | None = None) -> HTMLResponse:
    """Anyone: the log-in form; `next` is where to go after it (a path on this site)."""
    return web.page(
        request, visitor, LOGIN, {"next": web.safe_next(next), "values": {}, "errors": {}}
    )


@router.post("/login", include_in_schema=False)
async def login(
    request: Request, visitor: web.VisitorDep, posted: web.FormDep, settings: SettingsDep
) -> Response:
    """Anyone: log in with username and password (throttled as `POST /api/v1/auth/token`)."""
    target = web.safe_next(_text(posted, "next"))
    context: dict[str, Any] = {
        "next": target,
        "values": {"username": _text(posted, "username")},
        "errors": {},
    }
    form, context["errors"] = web.parse(LoginForm, posted, visitor.language)
    if form is None:
        return web.page(request, visitor, LOGIN, context, status_code=400)

    def signed_in(session: Session, account: Account) -> Response:
        response = web.redirect(request, target)
        web.sign_in(request, response, session, account, settings.access_token_ttl_seconds)
        return response

    try:
        return await signing_in.log_in(
            request.app.state.sessionmaker,
            request.app.state.gate,
            username=form.username,
            password=form.password,
            address=client_address(request),
            hashing=hashing_policy(settings),
            then=signed_in,
        )
    except service.BadCredentials as refusal:  # never says which of the two was wrong
        context["error"] = refusal.detail(visitor.language)
        return web.page(request, visitor, LOGIN, context, status_code=400)
    except service.LoginThrottled as refusal:
        return _refused(request, visitor, LOGIN, context, refusal)


@router.post("/logout", include_in_schema=False)
def logout(
    request: Request, visitor: web.VisitorDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """The signed-in subscriber: end this browser's session (its token stops working); then home."""
    response = web.redirect(request, "/")
    web.sign_out(request, session, response)
    return response


# --- a new password by email --------------------------------------------------------------------

FORGOT = "web/account/forgot.html"
RESET = "web/account/reset.html"
RESET_INVALID = "web/account/reset_invalid.html"


@router.get("/password/forgot", response_class=HTMLResponse, include_in_schema=False)
def forgot_form(request: Request, visitor: web.VisitorDep, sent: bool = False) -> HTMLResponse:
    """Anyone: ask for a link to set a new password."""
    return web.page(request, visitor, FORGOT, {"sent": sent, "values": {}, "errors": {}})


@router.post("/password/forgot", include_in_schema=False)
def forgot(
    request: Request,
    visitor: web.VisitorDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Anyone: email a reset link to the account with this address, if there is one; the same
    answer either way."""
    context: dict[str, Any] = {"sent": False, "values": {"email": _text(posted, "email")}}
    form, context["errors"] = web.parse(ForgotForm, posted, visitor.language)
    if form is None:
        return web.page(request, visitor, FORGOT, context, status_code=400)
    try:
        resets.request_reset(
            session,
            str(form.email),
            address=client_address(request),
            ttl_seconds=settings.password_reset_ttl_seconds,
            base_url=settings.public_base_url,
        )
    except resets.ResetsUsedUp as refusal:
        session.rollback()  # a refused request counts for nothing (tongka.throttle.take)
        return _refused(request, visitor, FORGOT, context, refusal)
    return web.redirect(request, "/password/forgot?sent=1")


def _reset_invalid(request: Request, visitor: web.Visitor) -> HTMLResponse:
    return web.page(
        request,
        visitor,
        RESET_INVALID,
        {"detail": resets.ResetLinkInvalid().detail(visitor.language)},
        status_code=400,
    )


@router.get("/password/reset", response_class=HTMLResponse, include_in_schema=False)
def reset_form(
    request: Request, visitor: web.VisitorDep, session: SessionDep, token: str = ""
) -> HTMLResponse:
    """Anyone holding a reset link in force: the form for a new password."""
    try:
        claim = resets.pending_reset(session, token)
    except resets.ResetLinkInvalid:
        return _reset_invalid(request, visitor)
    return web.page(
        request, visitor, RESET, {"token": token, "username": claim.username, "errors": {}}
    )


@router.post("/password/reset", include_in_schema=False)
async def reset(
    request: Request, visitor: web.VisitorDep, posted: web.FormDep, settings: SettingsDep
) -> Response:
    """Anyone holding a reset link in force: set the new password; every session of the account
    ends, and this browser is signed in."""
    token = _text(posted, "token")
    form, errors = web.parse(ResetForm, posted, visitor.language)
    gate, sessions = request.app.state.gate, request.app.state.sessionmaker

    def claimed() -> resets.ResetClaim:
        with transaction(sessions, read_only=True) as session:
            return resets.pending_reset(session, token)

    def complete(password_hash: str) -> Response:
        with transaction(sessions) as session:
            account = resets.complete_reset(session, token, password_hash)
            alerts.password_changed(session, account)
            response = web.redirect(request, "/account")
            web.sign_in(request, response, session, account, settings.access_token_ttl_seconds)
            return response

    try:
        async with gate.enter(write=False):
            claim = await run_in_threadpool(claimed)
        context = {"token": token, "username": claim.username, "errors": errors}
        if form is None:
            return web.page(request, visitor, RESET, context, status_code=400)
        # The rules of change_password (WeakPassword), Argon2 outside any transaction.
        password_hash = await run_in_threadpool(
            service.new_password_hash, claim.username, form.password, hashing_policy(settings)
        )
        async with gate.enter(write=True):
            return await run_in_threadpool(complete, password_hash)
    except resets.ResetLinkInvalid:
        return _reset_invalid(request, visitor)
    except service.WeakPassword as refusal:
        context["errors"] = {"password": refusal.detail(visitor.language)}
        return web.page(request, visitor, RESET, context, status_code=400)


# --- settings -----------------------------------------------------------------------------------

SETTINGS = "web/account/settings.html"


def _account(session: Session, visitor: web.Visitor) -> Account:
    return session.get_one(Account, visitor.account_id)


def _settings_page(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    *,
    saved: str | None = None,
    part: str | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The settings page; after a refused form, that form (`part`) with its errors and values."""
    account = _account(session, visitor)
    wallet = wallets.wallet_of(session, account.id)
    lines = []
    for line in line_service.lines_of(session, account):
        chosen = overage.settings_of(session, line.id)
        lines.append(
            {
                "id": str(line.id),
                "numbers": line.numbers,
                "enabled": bool(chosen and chosen.enabled),
                "cap": (
                    Decimal(chosen.monthly_cap).scaleb(-EXPONENT[chosen.currency]) if chosen else ""
                ),
                "currency": chosen.currency if chosen else None,
            }
        )
    rates = [
        {
            "zone": r.zone,
            "currency": r.currency,
            "per_mb": r.per_mb,
            "per_gb": r.per_mb * (GB // MB),
        }
        for r in overage.rates(session)
    ]
    return web.page(
        request,
        visitor,
        SETTINGS,
        {
            "account": account,
            "anti_phishing_code": notify.anti_phishing_code(session, account.id),
            "lines": lines,
            "rates": rates,
            # Overage is charged to the wallet, in its one currency once it is open.
            "currencies": [wallet.currency] if wallet else list(CURRENCIES),
            "default_currency": wallet.currency
            if wallet
            else ("CNY" if account.region == "mainland" else "HKD"),
            "language_names": web.LANGUAGE_NAMES,
            "languages_order": LANGUAGES,
            "alerts": alerts.preferences(session, account.id),
            "alert_names": ALERT_NAMES,
            "alert_required": {k for k, kind in alerts.KINDS.items() if kind.required},
            "alert_channels": ALERT_CHANNELS,
            "saved": gettext(SAVED[saved], visitor.language) if saved and saved in SAVED else None,
            "part": part,
            "errors": errors or {},
            "error": error,
            "values": values or {},
        },
        status_code=status_code,
    )


@router.get("/settings", response_class=HTMLResponse, include_in_schema=False)
def settings_page(
    request: Request,
    visitor: web.SubscriberDep,
    session: SessionDep,
    saved: str | None = None,
) -> HTMLResponse:
    """The signed-in subscriber: their language, email address, password, and each line's overage."""
    return _settings_page(request, visitor, session, saved=saved)


@router.post("/settings/language", include_in_schema=False)
def save_language(
    request: Request, visitor: web.SubscriberDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """The signed-in subscriber: the language of their pages and messages."""
    form, errors = web.parse(LanguageForm, posted, visitor.language)
    if form is None:
        return _settings_page(
            request, visitor, session, part="language", errors=errors, status_code=400
        )
    _account(session, visitor).language = form.language
    # ?lang= also replaces a language the browser chose before, so the next page speaks this one.
    return web.redirect(request, f"/settings?saved=language&lang={form.language}")


@router.post("/settings/email", include_in_schema=False)
def save_email(
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The signed-in subscriber: a new email address, with their password; the old address is told."""
    values = {"email": _text(posted, "email")}
    form, errors = web.parse(EmailForm, posted, visitor.language)
    if form is None:
        return _settings_page(
            request, visitor, session, part="email", errors=errors, values=values, status_code=400
        )
    account = _account(session, visitor)
    try:
        old = service.change_email(
            session, account, form.password, str(form.email), hashing=hashing_policy(settings)
        )
    except service.WrongPassword as refusal:  # counted (the transaction still commits)
        errors = {"password": refusal.detail(visitor.language)}
        return _settings_page(
            request, visitor, session, part="email", errors=errors, values=values, status_code=400
        )
    except service.LoginThrottled as refusal:
        return _settings_refused(request, visitor, session, "email", refusal, values)
    if old.lower() != account.email.lower():
        alerts.email_changed(session, account, old)
    return web.redirect(request, "/settings?saved=email")


@router.post("/settings/alerts", include_in_schema=False)
def save_alerts(
    request: Request, visitor: web.SubscriberDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """The signed-in subscriber: how each alert reaches them (SMS, email, both or neither)."""
    account = _account(session, visitor)
    chosen = {kind: _text(posted, kind) for kind in ALERT_NAMES if _text(posted, kind)}
    try:
        with session.begin_nested():  # all the choices or none of them
            for kind, channels in chosen.items():
                alerts.choose(session, account.id, kind, channels)
    except TongkaError as refusal:
        error = refusal.detail(visitor.language)
        return _settings_page(
            request, visitor, session, part="alerts", error=error, status_code=400
        )
    return web.redirect(request, "/settings?saved=alerts#alert-settings")


def _settings_refused(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    part: str,
    refusal: TooManyRequests,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    response = _settings_page(
        request,
        visitor,
        session,
        part=part,
        error=refusal.detail(visitor.language),
        values=values,
        status_code=refusal.status,
    )
    response.headers.update(refusal.headers())
    return response


@router.post("/settings/anti-phishing", include_in_schema=False)
def save_anti_phishing(
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The signed-in subscriber: the word every genuine email and SMS to them starts with (empty: none)."""
    values = {"code": _text(posted, "code")}
    form, errors = web.parse(AntiPhishingForm, posted, visitor.language)
    if form is None:
        return _settings_page(
            request,
            visitor,
            session,
            part="anti_phishing",
            errors=errors,
            values=values,
            status_code=400,
        )
    try:
        code = service.set_anti_phishing_code(
            session, _account(session, visitor), form.code, hashing=hashing_policy(settings)
        )
    except notify.BadAntiPhishingCode as refusal:
        errors = {"code": refusal.detail(visitor.language)}
        return _settings_page(
            request,
            visitor,
            session,
            part="anti_phishing",
            errors=errors,
            values=values,
            status_code=422,
        )
    saved = "anti_phishing" if code else "anti_phishing_removed"
    return web.redirect(request, f"/settings?saved={saved}")


@router.post("/settings/password", include_in_schema=False)
def save_password(
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The signed-in subscriber: a new password, with the current one. Every session ends; this
    browser gets a new one."""
    form, errors = web.parse(PasswordForm, posted, visitor.language)
    if form is None:
        return _settings_page(
            request, visitor, session, part="password", errors=errors, status_code=400
        )
    account = _account(session, visitor)
    try:
        service.change_password(
            session,
            account,
            form.current_password,
            form.new_password,
            hashing=hashing_policy(settings),
        )
    except service.WrongPassword as refusal:  # counted (the transaction still commits)
        errors = {"current_password": refusal.detail(visitor.language)}
        return _settings_page(
            request, visitor, session, part="password", errors=errors, status_code=400
        )
    except service.WeakPassword as refusal:
        errors = {"new_password": refusal.detail(visitor.language)}
        return _settings_page(
            request, visitor, session, part="password", errors=errors, status_code=400
        )
    except service.LoginThrottled as refusal:
        return _settings_refused(request, visitor, session, "password", refusal)
    alerts.password_changed(session, account)
    response = web.redirect(request, "/settings?saved=password")
    web.sign_in(request, response, session, account, settings.access_token_ttl_seconds)
    return response


@router.post("/settings/overage/{line_id}", include_in_schema=False)
def save_overage(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    session: SessionDep,
) -> Response:
    """The line's owner: overage on (with a monthly cap, in the wallet's currency) or off, as
    `PUT /api/v1/lines/{line_id}/overage`."""
    account = _account(session, visitor)
    line = line_service.own_line(session, account, line_id)
    part = f"overage-{line.id}"
    values = {k: _text(posted, k) for k in ("enabled", "monthly_cap", "currency")}
    form, errors = web.parse(OverageForm, posted, visitor.language)
    if form is None:
        return _settings_page(
            request, visitor, session, part=part, errors=errors, values=values, status_code=400
        )
    cap = int(form.monthly_cap.scaleb(EXPONENT[form.currency]))
    try:
        overage.configure(
            session,
            line,
            account,
            enabled=form.enabled,
            monthly_cap=cap,
            currency=form.currency,
        )
    except (overage.OverageCapInvalid, wallets.WalletCurrencyMismatch) as refusal:
        field = "currency" if isinstance(refusal, wallets.WalletCurrencyMismatch) else "monthly_cap"
        errors = {field: refusal.detail(visitor.language)}
        return _settings_page(
            request, visitor, session, part=part, errors=errors, values=values, status_code=400
        )
    if form.enabled:  # a session in progress hears of new quota at once
        charging_notify.quota_changed(session, line.id)
    return web.redirect(request, "/settings?saved=overage")
