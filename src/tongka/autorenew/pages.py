"""The auto-renew page of a line (`/settings/auto-renew/{line_id}`): the rule, as the API sets it,
a card saved for it through the card provider's page (Stripe's SetupIntent; the sandbox's form
in dev), an Alipay password-free agreement signed on Alipay's page, and a WeChat Pay 委托代扣
contract signed on WeChat's (the sandboxes' in dev).

Who may call: the line's owner (another's line is a 404).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tongka import web
from tongka.account import lines as line_service
from tongka.account.models import Account, Line
from tongka.autorenew import schemas as api
from tongka.autorenew import service as rules
from tongka.catalog import service as catalog
from tongka.db import transaction
from tongka.deps import ProvidersDep, SessionDep, SettingsDep
from tongka.errors import TongkaError
from tongka.i18n import _, gettext
from tongka.money import CURRENCIES, EXPONENT, Currency
from tongka.payment.providers.base import (
    InvalidCallback,
    ProviderUnavailable,
    SavesCards,
    SignsAgreements,
)
from tongka.wallet import service as wallets

router = APIRouter(include_in_schema=False)

SAVED = {
    "rule": _("Auto-renew is saved for this line."),
    "off": _("Auto-renew is off for this line."),
    "card": _("Your card is saved for auto-renew."),
    "alipay": _("Your Alipay agreement is signed for auto-renew."),
    "wechat": _("Your WeChat Pay contract is signed for auto-renew."),
}
STATUS_NAMES = {
    "pending": _("Paying"),
    "succeeded": _("Bought"),
    "failed": _("Payment failed"),
    "capped": _("Over the monthly limit"),
}
ZONE_NAMES = {"hk": _("Hong Kong"), "mainland": _("Mainland China")}


class RuleForm(BaseModel):
    zone: Literal["mainland", "hk"]
    threshold_percent: int = Field(ge=1, le=99)
    pack_id: uuid.UUID
    source: Literal["wallet", "card", "alipay_agreement", "wechat_agreement"]
    # In the currency's major units (HK$, ¥), as a person writes it; stored in minor units.
    monthly_cap: Decimal = Field(ge=0, le=10_000, decimal_places=2)
    currency: Currency
    forecast_days: int | None = Field(default=None, ge=1, le=30)  # empty: the threshold only


def _path(line_id: uuid.UUID) -> str:
    return f"/settings/auto-renew/{line_id}"


def _own(session: Session, visitor: web.Visitor, line_id: uuid.UUID) -> tuple[Account, Line]:
    account = session.get_one(Account, visitor.account_id)
    return account, line_service.own_line(session, account, line_id)


def _page(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    line_id: uuid.UUID,
    *,
    saved: str | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    account, line = _own(session, visitor, line_id)
    rule = rules.of_line(session, line.id)
    wallet = wallets.wallet_of(session, account.id)
    currency = rule.currency if rule else (wallet.currency if wallet else "HKD")
    card = rules.card_of(session, account.id)
    language = visitor.language
    packs = [
        {
            "id": str(p.id),
            "name": p.name(language),
            "zone": p.zone,
            "prices": {c: p.price(c) for c in CURRENCIES if p.price(c) is not None},
        }
        for p in catalog.packs_on_sale(session, "auto")
    ]
    chosen = {
        "zone": rule.zone if rule else "hk",
        "threshold_percent": str(rule.threshold_percent) if rule else "20",
        "pack_id": str(rule.pack_id) if rule else "",
        "source": rule.source if rule else "wallet",
        "monthly_cap": (
            str(Decimal(rule.monthly_cap).scaleb(-EXPONENT[rule.currency])) if rule else "100"
        ),
        "currency": currency,
        "forecast_days": str(rule.forecast_days) if rule and rule.forecast_days else "",
        **(values or {}),
    }
    return web.page(
        request,
        visitor,
        "web/account/auto_renew.html",
        {
            "line": line,
            "rule": api.view(session, rule) if rule else None,
            "card": card,
            "agreement": rules.agreement_of(session, account.id, "alipay"),
            "contract": rules.agreement_of(session, account.id, "wechat"),
            "wallet": wallet,
            "available": wallet.ledger_account.available if wallet else 0,
            "packs": packs,
            "zones": ZONE_NAMES,
            "currencies": [wallet.currency] if wallet else list(CURRENCIES),
            "v": chosen,
            "attempts": rules.attempts(session, line.id, limit=10),
            "status_names": STATUS_NAMES,
            "saved": gettext(SAVED[saved], language) if saved in SAVED else None,
            "errors": errors or {},
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/settings/auto-renew/{line_id}", response_class=HTMLResponse)
def auto_renew_page(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    session: SessionDep,
    saved: str | None = None,
) -> HTMLResponse:
    """The line's owner: the line's auto-renew rule, its recent purchases, and the saved card."""
    return _page(request, visitor, session, line_id, saved=saved)


def _text(posted: Any, name: str) -> str:
    value = posted.get(name)
    return value if isinstance(value, str) else ""


@router.post("/settings/auto-renew/{line_id}")
def save_rule(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    session: SessionDep,
) -> Response:
    """The line's owner: set the line's auto-renew rule, as `PUT /api/v1/lines/{line_id}/auto-renew`."""
    names = (
        "zone",
        "threshold_percent",
        "pack_id",
        "source",
        "monthly_cap",
        "currency",
        "forecast_days",
    )
    values = {k: _text(posted, k) for k in names}
    form, errors = web.parse(RuleForm, posted, visitor.language)
    if form is None:
        return _page(
            request, visitor, session, line_id, errors=errors, values=values, status_code=400
        )
    account, line = _own(session, visitor, line_id)
    try:
        body = api.AutoRenewIn(
            zone=form.zone,
            threshold_percent=form.threshold_percent,
            pack_id=form.pack_id,
            source=form.source,
            monthly_cap=int(form.monthly_cap.scaleb(EXPONENT[form.currency])),
            currency=form.currency,
            forecast_days=form.forecast_days,
        )
    except ValidationError:  # the form's bounds are the API's: not reached
        return _page(request, visitor, session, line_id, values=values, status_code=400)
    try:
        with session.begin_nested():
            api.set_rule(session, account, line.id, body)
    except TongkaError as refusal:
        return _page(
            request,
            visitor,
            session,
            line_id,
            error=refusal.detail(visitor.language),
            values=values,
            status_code=refusal.status,
        )
    return web.redirect(request, f"{_path(line.id)}?saved=rule")


@router.post("/settings/auto-renew/{line_id}/off")
def turn_off(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    session: SessionDep,
) -> Response:
    """The line's owner: auto-renew off for the line (its purchases stay)."""
    _account, line = _own(session, visitor, line_id)
    if rules.of_line(session, line.id) is not None:
        rules.delete(session, line.id)
    return web.redirect(request, f"{_path(line.id)}?saved=off")


@router.post("/settings/auto-renew/{line_id}/card")
async def start_saving_card(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    providers: ProvidersDep,
    settings: SettingsDep,
) -> Response:
    """The line's owner: save a card for auto-renew, on the card provider's page (then back here)."""
    sessions = request.app.state.sessionmaker

    def owner() -> tuple[str, str]:
        with transaction(sessions, read_only=True) as session:
            account, _line = _own(session, visitor, line_id)
            return str(account.id), account.email

    account_id, email = await run_in_threadpool(owner)
    provider = providers.get("stripe")
    back = f"{settings.public_base_url.rstrip('/')}{_path(line_id)}/card"
    error = None
    if not isinstance(provider, SavesCards):
        error = gettext(_("Cards cannot be saved here now."), visitor.language)
    else:
        try:  # the provider asked outside any transaction
            started = await run_in_threadpool(
                lambda: provider.start_saving(reference=account_id, email=email, return_url=back)
            )
        except ProviderUnavailable as refusal:
            error = refusal.detail(visitor.language)
        else:
            if started.url is not None:
                return web.redirect(request, started.url)
            error = gettext(_("Cards cannot be saved here now."), visitor.language)

    def refused() -> HTMLResponse:
        with transaction(sessions, read_only=True) as session:
            return _page(request, visitor, session, line_id, error=error, status_code=502)

    return await run_in_threadpool(refused)


@router.get("/settings/auto-renew/{line_id}/card")
async def card_saved(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    providers: ProvidersDep,
    setup_intent: str = "",
) -> Response:
    """The line's owner, back from the card provider's page: the card it saved is kept for auto-renew."""
    sessions = request.app.state.sessionmaker
    provider = providers.get("stripe")
    saved = None
    if isinstance(provider, SavesCards) and setup_intent.startswith("seti_"):
        try:
            saved = await run_in_threadpool(provider.saved_card, setup_intent)
        except ProviderUnavailable:
            saved = None

    def keep() -> Response:
        with transaction(sessions) as session:
            account, line = _own(session, visitor, line_id)
            if saved is None or saved.owner != str(account.id):  # not saved, or not for them
                return _page(
                    request,
                    visitor,
                    session,
                    line.id,
                    error=gettext(_("The card was not saved. Try again."), visitor.language),
                    status_code=400,
                )
            rules.save_card(
                session,
                account.id,
                provider="stripe",
                customer=saved.customer,
                method=saved.method,
                label=saved.label,
            )
            return web.redirect(request, f"{_path(line.id)}?saved=card")

    return await run_in_threadpool(keep)


def agreement_notify_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/api/v1/auto-renew/alipay/agreements"


@router.post("/settings/auto-renew/{line_id}/alipay")
async def start_alipay_agreement(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    providers: ProvidersDep,
    settings: SettingsDep,
) -> Response:
    """The line's owner: sign an Alipay password-free agreement for auto-renew, on Alipay's page."""
    sessions = request.app.state.sessionmaker

    def owner() -> str:
        with transaction(sessions, read_only=True) as session:
            account, _line = _own(session, visitor, line_id)
            return str(account.id)

    account_id = await run_in_threadpool(owner)
    provider = providers.get("alipay")
    if isinstance(provider, SignsAgreements):
        base = settings.public_base_url.rstrip("/")
        # Signed locally: nothing is asked of Alipay until the payer's browser reaches it.
        url = provider.agreement_sign_url(
            reference=account_id,
            notify_url=agreement_notify_url(base),
            return_url=f"{base}{_path(line_id)}/alipay",
        )
        return web.redirect(request, url)

    def refused() -> HTMLResponse:
        error = gettext(_("Alipay agreements cannot be signed here now."), visitor.language)
        with transaction(sessions, read_only=True) as session:
            return _page(request, visitor, session, line_id, error=error, status_code=502)

    return await run_in_threadpool(refused)


@router.get("/settings/auto-renew/{line_id}/alipay")
def alipay_agreement_signed(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    providers: ProvidersDep,
    session: SessionDep,
) -> Response:
    """The line's owner, back from Alipay's page: the agreement it signed (its signature checked) is
    kept for auto-renew."""
    account, line = _own(session, visitor, line_id)
    provider = providers.get("alipay")
    agreement = None
    if isinstance(provider, SignsAgreements):
        try:
            agreement = provider.parse_agreement(dict(request.query_params))
        except InvalidCallback:
            agreement = None
    if agreement is None or agreement.status != "NORMAL" or agreement.reference != str(account.id):
        return _page(
            request,
            visitor,
            session,
            line.id,
            error=gettext(_("The Alipay agreement was not signed. Try again."), visitor.language),
            status_code=400,
        )
    rules.save_agreement(
        session,
        account.id,
        provider="alipay",
        agreement_no=agreement.agreement_no,
        label=agreement.label,
    )
    return web.redirect(request, f"{_path(line.id)}?saved=alipay")


def contract_notify_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/api/v1/auto-renew/wechat/contracts"


@router.post("/settings/auto-renew/{line_id}/wechat")
async def start_wechat_contract(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    providers: ProvidersDep,
    settings: SettingsDep,
) -> Response:
    """The line's owner: sign a WeChat Pay 委托代扣 contract for auto-renew, on WeChat's page."""
    sessions = request.app.state.sessionmaker

    def owner() -> str:
        with transaction(sessions, read_only=True) as session:
            account, _line = _own(session, visitor, line_id)
            return str(account.id)

    account_id = await run_in_threadpool(owner)
    provider = providers.get("wechat")
    if isinstance(provider, SignsAgreements):
        base = settings.public_base_url.rstrip("/")
        try:
            # A signed call to WeChat (pre-entrust-sign): off the event loop.
            url = await run_in_threadpool(
                lambda: provider.agreement_sign_url(
                    reference=account_id,
                    notify_url=contract_notify_url(base),
                    return_url=f"{base}{_path(line_id)}/wechat",
                )
            )
            return web.redirect(request, url)
        except ProviderUnavailable:
            pass

    def refused() -> HTMLResponse:
        error = gettext(_("WeChat Pay contracts cannot be signed here now."), visitor.language)
        with transaction(sessions, read_only=True) as session:
            return _page(request, visitor, session, line_id, error=error, status_code=502)

    return await run_in_threadpool(refused)


@router.get("/settings/auto-renew/{line_id}/wechat")
def wechat_contract_signed(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    session: SessionDep,
) -> Response:
    """The line's owner, back from WeChat's page: the contract is kept by WeChat's signed
    notification, which comes first; the return itself proves nothing."""
    account, line = _own(session, visitor, line_id)
    if rules.agreement_of(session, account.id, "wechat") is None:
        return _page(
            request,
            visitor,
            session,
            line.id,
            error=gettext(
                _("The WeChat Pay contract was not signed. Try again."), visitor.language
            ),
            status_code=400,
        )
    return web.redirect(request, f"{_path(line.id)}?saved=wechat")
