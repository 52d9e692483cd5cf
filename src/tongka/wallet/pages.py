"""The wallet's pages: its balance and history, and a top-up paid through the providers.

A top-up is made in three steps, as an order is (renewal/ordering.py): the top-up and its
payment's row committed, the provider asked outside any transaction, its answer recorded; then
the payer goes to the provider's page and comes back to `/wallet/topups/{id}`, which follows the
payment (htmx polling) until the wallet is credited, once (renewal/topups.py).

Who may call: the signed-in subscriber, for their own wallet and top-ups (another's is a 404).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Literal

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tongka import web
from tongka.account.models import Account
from tongka.config import Settings
from tongka.db import transaction
from tongka.deps import ProvidersDep, SessionDep, SettingsDep
from tongka.i18n import _, gettext
from tongka.money import CURRENCIES, EXPONENT
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.payment.providers import CHANNEL_METHODS, PHONE_WEB_METHODS, method_offered
from tongka.payment.providers.base import Checkout
from tongka.receipt.service import METHOD_NAMES
from tongka.renewal import flow, topups
from tongka.wallet import service as wallets
from tongka.wallet.models import WalletTopup

router = APIRouter(include_in_schema=False)

CHANNEL = "web"
HISTORY_ROWS = 50
REASONS = {"wallet_topup": _("Top-up"), "overage": _("Overage data")}
CENTS = _("Enter the amount to the cent at most, e.g. 50 or 50.5.")
CURRENCY_NAMES = {"HKD": _("Hong Kong dollars (HKD)"), "CNY": _("Renminbi (CNY)")}


class TopupForm(BaseModel):
    amount: Decimal = Field(
        gt=0, max_digits=12
    )  # to the cent: checked by _minor, with its own words
    currency: Literal["CNY", "HKD"]
    payment_method: Literal["card", "paypal", "alipay", "wechat_pay"]


def _currency(account: Account, wallet_currency: str | None, asked: str | None) -> str:
    """The currency the form shows: asked for, else the wallet's, else the customer's region's."""
    if asked in CURRENCIES:
        return str(asked)
    return wallet_currency or ("CNY" if account.region == "mainland" else "HKD")


def _context(
    session: Session, account: Account, language: str, currency: str | None
) -> dict[str, Any]:
    wallet = wallets.wallet_of(session, account.id)
    chosen = _currency(account, wallet.currency if wallet else None, currency)
    return {
        "wallet": wallet,
        "available": wallet.ledger_account.available if wallet else 0,
        "held": wallet.ledger_account.debits_pending if wallet else 0,
        "history": wallets.history(session, account.id, limit=HISTORY_ROWS),
        "reasons": REASONS,
        "currencies": CURRENCY_NAMES,
        "currency": chosen,
        "methods": [
            (m, METHOD_NAMES.get(m, m))
            for m in CHANNEL_METHODS[CHANNEL]
            if m not in PHONE_WEB_METHODS and method_offered(m, CHANNEL, chosen, account.region)
        ],
    }


@router.get("/wallet", response_class=HTMLResponse)
def wallet_page(request: Request, visitor: web.SubscriberDep, session: SessionDep) -> Response:
    """The signed-in subscriber: their wallet's balance and history, and the top-up form."""
    account = session.get_one(Account, visitor.account_id)
    settings = request.app.state.settings
    context = _context(session, account, visitor.language, request.query_params.get("currency"))
    return web.page(
        request,
        visitor,
        "web/wallet.html",
        {**context, "form": {}, "errors": {}, "limits": _limits(settings, context["currency"])},
    )


def _limits(settings: Settings, currency: str) -> tuple[int, int, str]:
    """The smallest and largest top-up, in minor units of `currency`, for the form's hint."""
    return settings.wallet_topup_min, settings.wallet_topup_max, currency


def _minor(amount: Decimal, currency: str) -> int | None:
    """Major units as typed (50, 50.5) in minor units; None if finer than the currency's cent."""
    minor = amount.scaleb(EXPONENT[currency])
    return int(minor) if minor == minor.to_integral_value() else None


@router.post("/wallet", response_class=HTMLResponse)
async def top_up(
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    providers: ProvidersDep,
    settings: SettingsDep,
) -> Response:
    """The signed-in subscriber: top up their wallet through a payment provider (then pay on its page)."""
    language = visitor.language
    sessions = request.app.state.sessionmaker
    gate = request.app.state.gate
    form, errors = web.parse(TopupForm, posted, language)
    asked = {k: v for k, v in posted.items() if isinstance(v, str)}

    def again(errors: dict[str, str]) -> Response:
        """The form again, as sent, with what to fix next to its fields."""
        with transaction(sessions, read_only=True) as session:
            account = session.get_one(Account, visitor.account_id)
            context = _context(session, account, language, asked.get("currency"))
            return web.page(
                request,
                visitor,
                "web/wallet.html",
                {
                    **context,
                    "form": asked,
                    "errors": errors,
                    "limits": _limits(settings, context["currency"]),
                },
                status_code=400,
            )

    if form is None:
        async with gate.enter(write=False):
            return await run_in_threadpool(again, errors)
    chosen = form
    amount = _minor(form.amount, form.currency)
    if amount is None:
        async with gate.enter(write=False):
            return await run_in_threadpool(again, {"amount": gettext(CENTS, language)})

    def start() -> tuple[uuid.UUID, uuid.UUID, payments.Opening | None] | dict[str, str]:
        with transaction(sessions) as session:
            account = session.get_one(Account, visitor.account_id)
            try:
                topup, payment, opening = topups.start(
                    session,
                    account,
                    amount=amount,
                    currency=chosen.currency,
                    channel=CHANNEL,
                    method=chosen.payment_method,
                    providers=providers,
                    base_url=settings.public_base_url,
                    minimum=settings.wallet_topup_min,
                    maximum=settings.wallet_topup_max,
                    payment_ttl_seconds=settings.order_payment_ttl_seconds,
                )
            except (wallets.WalletCurrencyMismatch, wallets.CurrencyNotSupported) as refusal:
                return {"currency": refusal.detail(language)}
            except wallets.TopupAmountOutOfRange as refusal:
                return {"amount": refusal.detail(language)}
            except payments.MethodUnavailable as refusal:
                return {"payment_method": refusal.detail(language)}
            return topup.id, payment.id, opening

    async with gate.enter(write=True):
        step = await run_in_threadpool(start)
    if isinstance(step, dict):
        async with gate.enter(write=False):
            return await run_in_threadpool(again, step)
    topup_id, payment_id, opening = step
    checkout: Checkout | None = None
    if opening is not None:
        checkout = await run_in_threadpool(flow.open_payment, opening, providers)

        def opened() -> None:
            with transaction(sessions) as session:
                flow.payment_opened(session, payment_id, checkout)

        async with gate.enter(write=True):
            await run_in_threadpool(opened)
    if checkout is not None and checkout.checkout_url:
        return web.redirect(request, checkout.checkout_url)
    return web.redirect(request, f"/wallet/topups/{topup_id}")


def _state(topup: WalletTopup, latest: Payment | None) -> str:
    """What the payer is told: credited, failed (try again), or still waiting for the provider."""
    if topup.status in ("credited", "expired"):
        return str(topup.status)
    if latest is not None and latest.status in ("failed", "cancelled"):
        return "failed"
    return "waiting"


@router.get("/wallet/topups/{topup_id}", response_class=HTMLResponse)
def topup_page(
    topup_id: uuid.UUID, request: Request, visitor: web.SubscriberDep, session: SessionDep
) -> Response:
    """The signed-in subscriber, for their own top-up: where its payment stands, until the wallet is credited."""
    account = session.get_one(Account, visitor.account_id)
    topup = wallets.own_topup(session, account, topup_id)
    attempts = payments.payments_of_topup(session, topup.id)
    latest = attempts[0] if attempts else None
    state = _state(topup, latest)
    wallet = wallets.wallet_of(session, account.id)
    qr = None
    if state == "waiting" and latest is not None and latest.qr_content:
        qr = segno.make(latest.qr_content, error="m").svg_inline(border=4, omitsize=True)
    return web.page(
        request,
        visitor,
        "web/topup.html",
        {
            "topup": topup,
            "payment": latest,
            "method": METHOD_NAMES.get(latest.method, latest.method) if latest else None,
            "state": state,
            "qr_svg": qr,
            "available": wallet.ledger_account.available if wallet else 0,
        },
    )
