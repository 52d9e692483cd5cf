"""Renewing on the web: choose a pack and a way to pay, confirm the price, pay at the provider,
then follow the order on its own page until the data has arrived.

Who may call: the line's owner, signed in, for /renew/{line_id}; the order's owner for
/orders/{order_id} and its actions. Another subscriber's line or order is a 404 page; a visitor
is sent to /login. The network sends a phone whose data ran out to /renew/{line_id} with a link
signed by tongka (charging/renew_link.py): with it, anyone renews that line for its owner's account
and pays in the phone's browser (WeChat Pay H5, Alipay WAP), seeing only the masked number; the
browser that paid then follows that order (a signed cookie), its status only, never the balance.
An unsigned or lapsed link asks for a log-in; a bad signature is the page of a line that does not
exist.

Every step goes through the flows the app's API uses: the price is `flow.quote`'s (the same
breakdown as the API's quote, the receipt and the email), the order is placed by
`ordering.place` with channel "web" under an Idempotency-Key made on the confirm page from the
quote, so a double click or a reload of the Pay POST places one order.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tongka import clock, idempotency, web
from tongka.account import lines
from tongka.account.identity import mask
from tongka.account.models import Account, Line
from tongka.catalog import service as catalog
from tongka.catalog.models import Pack
from tongka.charging import renew_link
from tongka.config import Settings
from tongka.db import transaction
from tongka.deps import ProvidersDep, SessionDep, SettingsDep
from tongka.errors import TongkaError
from tongka.i18n import _, gettext
from tongka.ledger import buckets
from tongka.order import service as orders
from tongka.order.models import Order
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.payment.providers import (
    CHANNEL_METHODS,
    METHOD_CURRENCIES,
    PHONE_WEB_METHODS,
    method_offered,
)
from tongka.promotion import pricing
from tongka.promotion import service as promotions
from tongka.receipt import service as receipts
from tongka.receipt.service import METHOD_NAMES
from tongka.renewal import flow, ordering

router = APIRouter(tags=["web: renewal"])

CHANNEL = "web"
CURRENCIES = ("HKD", "CNY")
# The ways to pay on the web, in the order the form offers them: the line's owner signed in, and a
# phone holding the network's signed link (paying in its own browser, without a log-in).
OWNER_METHODS = ("alipay", "wechat_pay", "card", "paypal")
# The phone that paid through the signed link may follow its order: "<order id>.<exp>.<sig>".
GRANT_COOKIE = "tongka_order"
CURRENCY_NAMES = {"HKD": _("Hong Kong dollars (HK$)"), "CNY": _("Renminbi (¥)")}
ORDER_STATUS = {
    "awaiting_payment": _("Awaiting payment"),
    "paid": _("Paid: adding the data"),
    "fulfilled": _("Done: the data is on your line"),
    "cancelled": _("Cancelled"),
    "expired": _("Expired: the payment was not completed in time"),
}
PAYMENT_STATUS = {
    "pending": _("Waiting for the payment"),
    "succeeded": _("Paid"),
    "failed": _("The payment failed. Nothing was charged."),
    "cancelled": _("The payment was closed. Nothing was charged."),
    "refunded": _("Refunded"),
}
COUPON_ERRORS = (
    promotions.CouponInvalid,
    promotions.CouponNotApplicable,
    promotions.CouponUsedUp,
    promotions.CouponGuessesUsedUp,
)


class Choice(BaseModel):
    """The choose form; field names fixed by the issue."""

    pack_id: uuid.UUID
    currency: str = Field(pattern="^(HKD|CNY)$")
    payment_method: str = Field(
        pattern="^(alipay|wechat_pay|card|paypal|wechat_pay_h5|alipay_wap)$"
    )
    coupon_code: str | None = Field(default=None, max_length=40)
    # The network's signed link, when a phone renews without a log-in.
    exp: str | None = Field(default=None, max_length=12)
    sig: str | None = Field(default=None, max_length=64)


class Confirmed(Choice):
    """The confirm page's Pay form: the choice, the quote it priced, and the key that makes Pay once."""

    quote_id: uuid.UUID
    key: str = Field(pattern="^[0-9a-f]{32}$")


class Retry(BaseModel):
    payment_method: str | None = Field(
        default=None, pattern="^(alipay|wechat_pay|card|paypal|wechat_pay_h5|alipay_wap)$"
    )


# --- reading -------------------------------------------------------------------------------------


def _number(line: Line) -> str:
    return mask(line.hk_number or line.cn_number or line.iccid)


def _method_rows(methods: tuple[str, ...], language: str) -> list[dict[str, Any]]:
    """The payer's methods, each with the currencies it is offered in (said when one is not)."""
    rows = []
    for method in methods:
        if method not in CHANNEL_METHODS[CHANNEL]:
            continue
        currencies = [c for c in CURRENCIES if c in METHOD_CURRENCIES.get(method, ())]
        note = None
        if len(currencies) < len(CURRENCIES):
            note = gettext(
                _("Only in {currencies}."),
                language,
                currencies=", ".join(gettext(CURRENCY_NAMES[c], language) for c in currencies),
            )
        rows.append(
            {
                "value": method,
                "name": gettext(METHOD_NAMES[method], language),
                "currencies": currencies,
                "note": note,
            }
        )
    return rows


def _pack_groups(packs: list[Pack], language: str) -> list[dict[str, Any]]:
    """Packs on sale on the web, grouped per zone, each with its prices."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in packs:
        prices = [
            web.money(amount, c, language) for c in CURRENCIES if (amount := p.price(c)) is not None
        ]
        if not prices:
            continue
        groups.setdefault(p.zone, []).append(
            {
                "id": str(p.id),
                "name": p.name(language),
                "volume": web.data(p.volume_bytes, language),
                "days": p.validity_days,
                "prices": prices,
            }
        )
    return [
        {"zone": gettext(pricing.ZONE_NAMES.get(zone, zone), language), "packs": rows}
        for zone, rows in groups.items()
    ]


@dataclass(frozen=True)
class Payer:
    """Who renews a line: its owner signed in, or a phone holding the network's signed link to it
    (`link`: its exp and sig), which renews for the owner's account without a log-in."""

    account_id: uuid.UUID
    link: tuple[str, str] | None = None

    @property
    def methods(self) -> tuple[str, ...]:
        return PHONE_WEB_METHODS if self.link else OWNER_METHODS


def _link_key(settings: Settings) -> bytes:
    return renew_link.link_key(settings.secret_key.get_secret_value())


def _payer(
    session: Session,
    settings: Settings,
    visitor: web.Visitor,
    line_id: uuid.UUID,
    exp: str | None,
    sig: str | None,
) -> tuple[Payer, Line]:
    """The line's owner; else anyone with a valid signed link; else a visitor logs in (an unsigned or
    lapsed link); a bad signature, a line that does not exist or another's line: not found."""
    line = session.get(Line, line_id)
    owner = line.account_id if line is not None else None
    if line is not None and owner is not None and owner == visitor.account_id:
        return Payer(owner), line
    if exp or sig:
        verdict = renew_link.check(_link_key(settings), line_id, exp or "", sig or "", clock.now())
        if verdict == "bad":
            raise lines.LineNotFound()  # the same page as a line that does not exist
        if verdict == "valid":
            if line is None or line.account_id is None:
                raise lines.LineNotFound()
            return Payer(line.account_id, (exp or "", sig or "")), line
    if not visitor.signed_in:
        raise web.LoginRequired()
    raise lines.LineNotFound()


def _choose_context(
    session: Session,
    line: Line,
    payer: Payer,
    language: str,
    form: dict[str, str],
    errors: dict[str, str],
) -> dict[str, Any]:
    return {
        "line_id": str(line.id),
        "number": _number(line),
        "link": payer.link,
        "groups": _pack_groups(catalog.packs_on_sale(session, CHANNEL), language),
        "methods": _method_rows(payer.methods, language),
        "currencies": [(c, gettext(CURRENCY_NAMES[c], language)) for c in CURRENCIES],
        "form": form,
        "errors": errors,
    }


def _fields(posted: Any) -> dict[str, str]:
    return {k: v for k, v in posted.items() if isinstance(v, str) and k != web.CSRF_FIELD}


def _account(session: Session, visitor: web.Visitor) -> Account:
    assert visitor.account_id is not None
    return session.get_one(Account, visitor.account_id)


# --- choose, confirm, pay ------------------------------------------------------------------------


@router.get("/renew/{line_id}", response_class=HTMLResponse, include_in_schema=False)
def choose(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.VisitorDep,
    session: SessionDep,
    settings: SettingsDep,
    pack_id: str = "",
    exp: str = "",
    sig: str = "",
) -> Response:
    """The line's owner: choose a pack, a currency, a way to pay and a coupon for this line.
    Anyone holding the network's signed link to it (its data ran out): the same, paid in the phone's
    browser without a log-in, showing the masked number only (never the balance or the owner)."""
    payer, line = _payer(session, settings, visitor, line_id, exp, sig)
    form = {"currency": "CNY" if visitor.language == "zh-Hans" else "HKD", "pack_id": pack_id}
    context = _choose_context(session, line, payer, visitor.language, form, {})
    return web.page(request, visitor, "web/renew.html", context)


@dataclass(frozen=True)
class _Priced:
    lines: list[str]
    total: str
    quote_id: uuid.UUID
    expires_at: Any
    coupon_applied: bool | None


@router.post("/renew/{line_id}", response_class=HTMLResponse, include_in_schema=False)
async def confirm(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.VisitorDep,
    posted: web.FormDep,
    settings: SettingsDep,
) -> Response:
    """The line's owner, or anyone holding its signed link: the price of what they chose, offers and
    coupon applied, and the Pay button."""
    language = visitor.language
    form = _fields(posted)
    choice, errors = web.parse(Choice, form, language)
    sessions = request.app.state.sessionmaker
    exp, sig = form.get("exp"), form.get("sig")

    def price(choice: Choice) -> _Priced:
        with transaction(sessions) as session:
            payer, _line = _payer(session, settings, visitor, line_id, exp, sig)
            account = session.get_one(Account, payer.account_id)
            if choice.payment_method not in payer.methods or not method_offered(
                choice.payment_method, CHANNEL, choice.currency, account.region
            ):
                raise payments.MethodUnavailable(method=choice.payment_method)
            quote = flow.quote(
                session,
                account,
                line_id=line_id,
                pack_id=choice.pack_id,
                currency=choice.currency,
                channel=CHANNEL,
                coupon_code=choice.coupon_code,
                secret=settings.secret_key.get_secret_value(),
            )
            codes = [o["code"] for o in quote.breakdown.get("offers", [])]
            coupon = promotions.coupon_offer_code(session, quote)
            return _Priced(
                pricing.describe(quote.breakdown, language),
                pricing.total_line(quote.breakdown, language),
                quote.id,
                quote.expires_at,
                None if quote.coupon_code_id is None else coupon in codes,
            )

    async def again(errors: dict[str, str]) -> Response:
        def read() -> dict[str, Any]:
            with transaction(sessions, read_only=True) as session:
                payer, line = _payer(session, settings, visitor, line_id, exp, sig)
                return _choose_context(session, line, payer, language, form, errors)

        async with request.app.state.gate.enter(False):
            context = await run_in_threadpool(read)
        return web.page(request, visitor, "web/renew.html", context, status_code=400)

    if choice is None:
        return await again(errors)
    try:
        async with request.app.state.gate.enter(True):
            priced = await run_in_threadpool(price, choice)
    except payments.MethodUnavailable:
        message = _("{method} cannot be paid in {currency}. Choose another way to pay or currency.")
        return await again(
            {
                "payment_method": gettext(
                    message,
                    language,
                    method=gettext(METHOD_NAMES[choice.payment_method], language),
                    currency=choice.currency,
                )
            }
        )
    except COUPON_ERRORS as refusal:
        return await again({"coupon_code": refusal.detail(language)})
    except catalog.CurrencyNotOffered as refusal:
        return await again({"currency": refusal.detail(language)})
    return web.page(
        request,
        visitor,
        "web/renew_confirm.html",
        {
            "line_id": str(line_id),
            "choice": choice,
            "method_name": gettext(METHOD_NAMES[choice.payment_method], language),
            "priced": priced,
            # Bound to the quote: a reload or second click of Pay replays the first order.
            "key": priced.quote_id.hex,
        },
    )


@router.post("/renew/{line_id}/pay", include_in_schema=False)
async def pay(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.VisitorDep,
    posted: web.FormDep,
    settings: SettingsDep,
    providers: ProvidersDep,
) -> Response:
    """The line's owner, or anyone holding its signed link: place the order at the confirmed price,
    then go and pay it at the provider."""
    confirmed, _errors = web.parse(Confirmed, _fields(posted), visitor.language)
    if confirmed is None:
        raise BadForm()
    sessions = request.app.state.sessionmaker

    def who() -> Payer:
        with transaction(sessions, read_only=True) as session:
            payer, _line = _payer(session, settings, visitor, line_id, confirmed.exp, confirmed.sig)
            return payer

    async with request.app.state.gate.enter(False):
        payer = await run_in_threadpool(who)
    if confirmed.payment_method not in payer.methods:
        raise BadForm()
    body = confirmed.model_dump(mode="json", exclude={"key"})
    _, order = await ordering.place(
        sessions,
        request.app.state.gate,
        providers,
        settings,
        ordering.Keyed(
            "web-renew:" + confirmed.key,
            payer.account_id,
            idempotency.fingerprint("POST", request.url.path, body),
        ),
        ordering.Asked(
            line_id,
            confirmed.pack_id,
            confirmed.currency,
            CHANNEL,
            confirmed.payment_method,
            confirmed.quote_id,
            confirmed.coupon_code,
            payer_ip=request.client.host if request.client else None,
        ),
        buyer=lambda session: session.get_one(Account, payer.account_id),
    )
    response = web.redirect(request, _payment_target(order["id"], order["payment"]))
    if payer.link:  # the phone follows its order without a log-in
        _grant(request, response, settings, uuid.UUID(order["id"]))
    return response


class BadForm(TongkaError):
    code = "form_invalid"
    message = _("This form was not filled in as expected. Go back and try again.")


def _payment_target(order_id: str, payment: dict[str, Any] | None) -> str:
    """The provider's checkout page (through ours when it is signed afresh each time), or our order
    page (it shows WeChat Pay's QR code, or the result)."""
    if payment and payment["status"] == "pending" and payment["method"] != "wechat_pay":
        return f"/orders/{order_id}/checkout"
    return f"/orders/{order_id}"


def _grant_key(settings: Settings) -> bytes:
    return hmac.new(
        settings.secret_key.get_secret_value().encode(), b"tongka:order-grant", hashlib.sha256
    ).digest()


def _grant(request: Request, response: Response, settings: Settings, order_id: uuid.UUID) -> None:
    """Lets this browser follow `order_id` (its status, never the balance) for the signed link's time."""
    ttl = settings.renew_link_ttl_seconds
    expires = int(clock.now().timestamp()) + ttl
    value = f"{order_id}.{expires}.{renew_link.signature(_grant_key(settings), order_id, expires)}"
    response.set_cookie(
        GRANT_COOKIE, value, max_age=ttl, httponly=True, samesite="lax", secure=not settings.dev
    )


def _granted(request: Request, settings: Settings, order_id: uuid.UUID) -> bool:
    parts = request.cookies.get(GRANT_COOKIE, "").split(".")
    if len(parts) != 3 or parts[0] != str(order_id):
        return False
    key = _grant_key(settings)
    return renew_link.check(key, order_id, parts[1], parts[2], clock.now()) == "valid"


# --- the order -----------------------------------------------------------------------------------


def _order_context(
    session: Session, order: Order, owner: bool, language: str, dev: bool
) -> dict[str, Any]:
    """The order page's facts; `owner` False (the phone that paid through the signed link): its status
    and price only, never the line's balance."""
    payment = payments.latest_payment(session, order.id)
    breakdown = pricing.of_order(order)
    context: dict[str, Any] = {
        "order": order,
        "owner": owner,
        "status": gettext(ORDER_STATUS.get(order.status, order.status), language),
        "pack": order.pack.name(language),
        "breakdown": pricing.describe(breakdown, language),
        "total": pricing.total_line(breakdown, language),
        "payment": payment,
        "method_name": gettext(METHOD_NAMES.get(payment.method, payment.method), language)
        if payment
        else None,
        "payment_status": gettext(PAYMENT_STATUS.get(payment.status, payment.status), language)
        if payment
        else None,
        "following": order.status in ("awaiting_payment", "paid")
        and not (payment and payment.status == "failed"),
        "qr_svg": None,
        "checkout_url": None,
        "balance": None,
        "receipt_url": None,
    }
    if order.status == "awaiting_payment" and payment and payment.status == "pending":
        context["checkout_url"] = f"/orders/{order.id}/checkout"
        if payment.method == "wechat_pay" and payment.qr_content:
            qr = segno.make(payment.qr_content, error="m")
            title = gettext(_("Scan with WeChat to pay"), language)
            context["qr_svg"] = qr.svg_inline(border=4, omitsize=True, title=title)
            # Only the simulator's page can be opened in place of scanning.
            context["checkout_url"] = payment.checkout_url if dev else None
    if order.status == "fulfilled" and owner:
        zone = buckets.line_balance(session, order.line_id).zones.get(order.zone)
        context["balance"] = {
            "zone": gettext(pricing.ZONE_NAMES.get(order.zone, order.zone), language),
            "remaining": web.data(zone.remaining_bytes if zone else 0, language),
        }
        if payment is not None and (receipt := receipts.of_payment(session, payment.id)):
            context["receipt_url"] = f"/receipts/{receipt.id}"
    return context


def _viewer(
    session: Session,
    request: Request,
    settings: Settings,
    visitor: web.Visitor,
    order_id: uuid.UUID,
) -> tuple[Order, bool]:
    """The order and whether the visitor owns it; else the browser that paid it through the signed
    link; a visitor logs in; anyone else: not found."""
    if visitor.signed_in:
        try:
            return orders.own_order(session, _account(session, visitor), order_id), True
        except orders.OrderNotFound:
            if not _granted(request, settings, order_id):
                raise
    if _granted(request, settings, order_id):
        return orders.get(session, order_id), False
    raise web.LoginRequired()


@router.get("/orders/{order_id}", response_class=HTMLResponse, include_in_schema=False)
def order_page(
    order_id: uuid.UUID,
    request: Request,
    visitor: web.VisitorDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The order's owner (or the phone that paid it through the line's signed link, its status only):
    the order's status, price breakdown and payment; where it stands now."""
    order, owner = _viewer(session, request, settings, visitor, order_id)
    context = _order_context(session, order, owner, visitor.language, settings.dev)
    return web.page(request, visitor, "web/order.html", context)


@router.get("/orders/{order_id}/status", response_class=HTMLResponse, include_in_schema=False)
def order_status(
    order_id: uuid.UUID,
    request: Request,
    visitor: web.VisitorDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The order's owner (or the phone that paid it through the signed link): the order page's status
    part, which the page asks for every 2 s while it waits."""
    order, owner = _viewer(session, request, settings, visitor, order_id)
    context = _order_context(session, order, owner, visitor.language, settings.dev)
    return web.page(request, visitor, "web/_order_status.html", context)


@router.get("/orders/{order_id}/checkout", include_in_schema=False)
def checkout(
    order_id: uuid.UUID,
    request: Request,
    visitor: web.VisitorDep,
    session: SessionDep,
    settings: SettingsDep,
    providers: ProvidersDep,
) -> Response:
    """The order's owner (or the phone that paid it through the signed link): on to the provider's
    page for its payment still open, else back to the order."""
    order, _owner = _viewer(session, request, settings, visitor, order_id)
    payment = payments.latest_payment(session, order.id)
    url = None
    if order.status == "awaiting_payment" and payment is not None and payment.status == "pending":
        url = flow.checkout_url(order, payment, providers, settings.public_base_url)
    return web.redirect(request, url or f"/orders/{order_id}")


@router.post("/orders/{order_id}/cancel", include_in_schema=False)
def cancel(
    order_id: uuid.UUID,
    request: Request,
    visitor: web.SubscriberDep,
    posted: web.FormDep,
    session: SessionDep,
) -> Response:
    """The order's owner: give up an order still awaiting payment (its offers go back)."""
    flow.cancel(session, _account(session, visitor), order_id)
    return web.redirect(request, f"/orders/{order_id}")


@router.post("/orders/{order_id}/retry", include_in_schema=False)
async def retry(
    order_id: uuid.UUID,
    request: Request,
    visitor: web.VisitorDep,
    posted: web.FormDep,
    settings: SettingsDep,
    providers: ProvidersDep,
) -> Response:
    """The order's owner (or the phone that paid it through the signed link): pay again after a
    failed payment: a new attempt for the same order while it awaits payment (never a second one
    while one is open), or, for the owner, a new order once it expired."""
    asked, _errors = web.parse(Retry, _fields(posted), visitor.language)
    if asked is None:
        raise BadForm()
    sessions = request.app.state.sessionmaker
    gate = request.app.state.gate
    base_url = settings.public_base_url

    def read() -> tuple[Order, bool, Payment | None]:
        with transaction(sessions, read_only=True) as session:
            order, owner = _viewer(session, request, settings, visitor, order_id)
            session.expunge(order)
            payment = payments.latest_payment(session, order.id)
            if payment is not None:
                session.expunge(payment)
            return order, owner, payment

    async with gate.enter(False):
        order, owner, latest = await run_in_threadpool(read)
    if order.status in ("expired", "cancelled"):  # a new order, for the same pack, chosen again
        if not owner:
            return web.redirect(request, f"/orders/{order_id}")
        return web.redirect(request, f"/renew/{order.line_id}?pack_id={order.pack_id}")
    if latest is not None and latest.status == "failed":
        await run_in_threadpool(flow.close_attempt, latest, providers)
    method = asked.payment_method or (latest.method if latest else "alipay")
    payer_ip = request.client.host if request.client else None

    def attempt() -> tuple[uuid.UUID, payments.Opening | None, dict[str, Any]]:
        with transaction(sessions) as session:
            account = session.get_one(Account, order.account_id)
            _made, payment, opening = flow.retry_payment(
                session, account, order_id, method, providers, base_url, payer_ip
            )
            return payment.id, opening, _payment_json(payment)

    def opened(payment_id: uuid.UUID, checkout: Any) -> dict[str, Any]:
        with transaction(sessions) as session:
            return _payment_json(flow.payment_opened(session, payment_id, checkout))

    async with gate.enter(True):
        payment_id, opening, payment = await run_in_threadpool(attempt)
    if opening is not None:
        checkout = await run_in_threadpool(flow.open_payment, opening, providers)
        async with gate.enter(True):
            payment = await run_in_threadpool(opened, payment_id, checkout)
    return web.redirect(request, _payment_target(str(order_id), payment))


def _payment_json(payment: Payment) -> dict[str, Any]:
    return {
        "status": payment.status,
        "method": payment.method,
        "checkout_url": payment.checkout_url,
    }
