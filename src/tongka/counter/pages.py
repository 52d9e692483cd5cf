"""The counter: store staff find a customer's line, check the identity document shown, register a new
SIM's real name, sell a pack (cash, card terminal, or a QR code the customer scans) and print the
receipt on the counter's 80 mm printer.

Who may call: store staff (agents and managers, `web.CounterDep`) for the line and sale pages; a
sale's own pages and its receipt also the operator's admins (any store). Another store's sale is
a 404. The order goes through the renewal flow (`ordering.place` under an Idempotency-Key made from
the quote on the confirm page, then `flow.confirm` for money taken at the counter), so a double
submit sells once.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tongka import clock, idempotency, web
from tongka.account import lines
from tongka.account.identity import DOCUMENT_TYPES, InvalidDocument
from tongka.account.models import Account
from tongka.catalog import service as catalog
from tongka.counter import sales
from tongka.counter.models import CounterSale
from tongka.db import transaction
from tongka.deps import ProvidersDep, SessionDep, SettingsDep
from tongka.errors import TongkaError
from tongka.i18n import _, gettext
from tongka.ledger import buckets
from tongka.order import service as orders
from tongka.payment import service as payments
from tongka.payment.providers import method_offered
from tongka.promotion import pricing
from tongka.promotion.models import Quote
from tongka.receipt import service as receipts
from tongka.renewal import flow, ordering
from tongka.staff.service import Staff
from tongka.stores.models import Store

router = APIRouter(include_in_schema=False)

CHANNEL = "store"
CURRENCIES = ("HKD", "CNY")
# The counter's ways to pay, in the order the form offers them.
METHODS = ("cash", "card_terminal", "wechat_pay", "alipay")
QR_METHODS = ("wechat_pay", "alipay")
METHOD_NAMES = {
    "cash": _("Cash"),
    "card_terminal": _("Card terminal"),
    "wechat_pay": _("WeChat Pay"),
    "alipay": _("Alipay"),
}
DOCUMENT_NAMES = {
    "hkid": _("Hong Kong identity card"),
    "passport": _("Passport"),
    "cn_resident_id": _("Mainland resident identity card"),
    "cn_exit_permit": _("Exit-entry permit for Hong Kong and Macao (mainland)"),
}


class BadForm(TongkaError):
    code = "form_invalid"
    message = _("This form was not filled in as expected. Go back and try again.")


class Document(BaseModel):
    document_type: str = Field(pattern="^(" + "|".join(DOCUMENT_TYPES) + ")$")
    document_number: str = Field(min_length=5, max_length=32)


class Registration(Document):
    holder_name: str = Field(min_length=1, max_length=100)
    document_country: str | None = Field(default=None, pattern="^[A-Za-z]{2}$")


class Choice(BaseModel):
    pack_id: uuid.UUID
    currency: str = Field(pattern="^(HKD|CNY)$")
    payment_method: str = Field(pattern="^(" + "|".join(METHODS) + ")$")


class Confirmed(Choice):
    quote_id: uuid.UUID
    key: str = Field(pattern="^[0-9a-f]{32}$")
    tendered: str | None = Field(default=None, max_length=12)  # cash, in major units: "100.50"
    approval_code: str | None = Field(default=None, pattern="^[A-Za-z0-9-]{1,32}$")


def _staff(visitor: web.Visitor) -> Staff:
    assert visitor.staff is not None
    return visitor.staff


def _fields(posted: Any) -> dict[str, str]:
    return {k: v.strip() for k, v in posted.items() if isinstance(v, str) and k != web.CSRF_FIELD}


# --- finding a line -----------------------------------------------------------------------------


@router.get("/counter", response_class=HTMLResponse)
def counter(
    request: Request, visitor: web.CounterDep, session: SessionDep, q: str = ""
) -> Response:
    """Store staff: find a line by its number or ICCID."""
    if q.strip():
        found = sales.find_line(session, q)
        if found is not None:
            return web.redirect(request, f"/counter/lines/{found.id}")
    return web.page(request, visitor, "web/counter/find.html", {"q": q, "missing": bool(q.strip())})


def _line_context(
    session: Session, line_id: uuid.UUID, language: str, **extra: Any
) -> dict[str, Any]:
    shown = sales.view(session, sales.line(session, line_id))
    packs = []
    for p in catalog.packs_on_sale(session, CHANNEL):
        prices = [web.money(a, c, language) for c in CURRENCIES if (a := p.price(c)) is not None]
        if prices:
            packs.append(
                {
                    "id": str(p.id),
                    "name": p.name(language),
                    "volume": web.data(p.volume_bytes, language),
                    "days": p.validity_days,
                    "prices": " / ".join(prices),
                }
            )
    return {
        "line": shown,
        "zones": _zones(shown.zones, language),
        "document_name": gettext(DOCUMENT_NAMES[shown.real_name.document_type], language)
        if shown.real_name
        else None,
        "documents": [(t, gettext(DOCUMENT_NAMES[t], language)) for t in DOCUMENT_TYPES],
        "packs": packs,
        "currencies": CURRENCIES,
        "methods": [(m, gettext(METHOD_NAMES[m], language)) for m in METHODS],
        "checked": None,
        "refusal": None,
        "form": {},
        "errors": {},
        **extra,
    }


def _zones(zones: dict[str, int], language: str) -> list[tuple[str, str]]:
    return [
        (gettext(pricing.ZONE_NAMES.get(zone, zone), language), web.data(left, language))
        for zone, left in sorted(zones.items())
    ]


@router.get("/counter/lines/{line_id}", response_class=HTMLResponse)
def line_page(
    line_id: uuid.UUID, request: Request, visitor: web.CounterDep, session: SessionDep
) -> Response:
    """Store staff: a line's masked numbers, real-name status, data left per zone, and the sale form."""
    context = _line_context(session, line_id, visitor.language)
    return web.page(request, visitor, "web/counter/line.html", context)


@router.post("/counter/lines/{line_id}/identity", response_class=HTMLResponse)
def check_identity(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.CounterDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Store staff: does the document the customer shows match the line's real-name record?"""
    shown, errors = web.parse(Document, _fields(posted), visitor.language)
    if shown is None:
        context = _line_context(session, line_id, visitor.language, errors=errors)
        return web.page(request, visitor, "web/counter/line.html", context, status_code=400)
    try:
        matched = sales.check_identity(
            session,
            _staff(visitor),
            line_id,
            shown.document_type,
            shown.document_number,
            settings.secret_key.get_secret_value(),
        )
    except sales.IdentityChecksUsedUp as refusal:
        return _refused_on_line(request, visitor, session, line_id, refusal)
    context = _line_context(session, line_id, visitor.language, checked=matched)
    return web.page(request, visitor, "web/counter/line.html", context)


def _refused_on_line(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    line_id: uuid.UUID,
    refusal: TongkaError,
    form: dict[str, str] | None = None,
) -> Response:
    """The line's page again, saying why the counter's request was refused (with its status)."""
    context = _line_context(
        session,
        line_id,
        visitor.language,
        refusal=refusal.detail(visitor.language),
        form=form or {},
    )
    response = web.page(
        request, visitor, "web/counter/line.html", context, status_code=refusal.status
    )
    response.headers.update(refusal.headers())
    return response


@router.post("/counter/lines/{line_id}/real-name", response_class=HTMLResponse)
def register_real_name(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.CounterDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Store staff: register the real name of a line that has none, within the document's limit of SIMs."""
    form = _fields(posted)
    shown, errors = web.parse(Registration, form, visitor.language)
    if shown is not None and shown.document_type == "passport" and not shown.document_country:
        shown, errors = (
            None,
            {
                "document_country": gettext(
                    _("Say which country issued the passport."), visitor.language
                )
            },
        )
    if shown is None:
        context = _line_context(session, line_id, visitor.language, form=form, errors=errors)
        return web.page(request, visitor, "web/counter/line.html", context, status_code=400)
    try:
        sales.register_real_name(
            session,
            _staff(visitor),
            line_id,
            document_type=shown.document_type,
            document_number=shown.document_number,
            holder_name=shown.holder_name,
            document_country=shown.document_country,
            secret=settings.secret_key.get_secret_value(),
        )
    except (sales.DocumentLimitReached, lines.RealNameExists, InvalidDocument) as refusal:
        return _refused_on_line(request, visitor, session, line_id, refusal, form)
    return web.redirect(request, f"/counter/lines/{line_id}")


# --- selling ------------------------------------------------------------------------------------


def _owner(session: Session, line_id: uuid.UUID) -> Account:
    found = sales.line(session, line_id)
    account = session.get(Account, found.account_id) if found.account_id else None
    if account is None:
        raise sales.LineNotBound()
    return account


@router.post("/counter/lines/{line_id}/sale", response_class=HTMLResponse)
def choose(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.CounterDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Store staff: price the chosen pack for the customer (the store's offers applied) before taking the money."""
    language = visitor.language
    choice, errors = web.parse(Choice, _fields(posted), language)
    if choice is None:
        context = _line_context(session, line_id, language, errors=errors)
        return web.page(request, visitor, "web/counter/line.html", context, status_code=400)
    account = _owner(session, line_id)
    if not method_offered(choice.payment_method, CHANNEL, choice.currency, account.region):
        message = _("{method} cannot be paid in {currency}. Choose another way to pay or currency.")
        errors = {
            "payment_method": gettext(
                message,
                language,
                method=gettext(METHOD_NAMES[choice.payment_method], language),
                currency=choice.currency,
            )
        }
        context = _line_context(session, line_id, language, errors=errors)
        return web.page(request, visitor, "web/counter/line.html", context, status_code=400)
    quote = flow.quote(
        session,
        account,
        line_id=line_id,
        pack_id=choice.pack_id,
        currency=choice.currency,
        channel=CHANNEL,
        secret=settings.secret_key.get_secret_value(),
    )
    return web.page(
        request,
        visitor,
        "web/counter/confirm.html",
        {
            "line_id": str(line_id),
            "choice": choice,
            "method_name": gettext(METHOD_NAMES[choice.payment_method], language),
            "lines": pricing.describe(quote.breakdown, language),
            "total": pricing.total_line(quote.breakdown, language),
            "amount": quote.amount,
            "quote_id": quote.id,
            "expires_at": quote.expires_at,
            # Bound to the quote: a second click of Sell replays the first sale.
            "key": quote.id.hex,
            "errors": {},
        },
    )


def _minor(text: str | None) -> int | None:
    """Cash tendered as the agent types it ("100", "100.5") in minor units; None: not a sum."""
    try:
        value = Decimal(text or "")
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        return None
    return int(value * 100)


@router.post("/counter/lines/{line_id}/sale/pay", response_class=HTMLResponse)
async def pay(
    line_id: uuid.UUID,
    request: Request,
    visitor: web.CounterDep,
    posted: web.FormDep,
    settings: SettingsDep,
    providers: ProvidersDep,
) -> Response:
    """Store staff: sell the confirmed pack: cash (into the open till, change given), card terminal
    (its approval code) or a QR code the customer scans; once per confirm page."""
    staff = _staff(visitor)
    confirmed, _errors = web.parse(Confirmed, _fields(posted), visitor.language)
    if confirmed is None:
        raise BadForm()
    method = confirmed.payment_method
    tendered = _minor(confirmed.tendered) if method == "cash" else None
    sessions = request.app.state.sessionmaker
    gate = request.app.state.gate

    def check() -> None:
        with transaction(sessions, read_only=True) as session:
            quote = session.get(Quote, confirmed.quote_id)
            if quote is None or quote.line_id != line_id:
                raise BadForm()
            _owner(session, line_id)
            if method == "cash":
                sales.require_shift(session, staff)
                if tendered is None or tendered < quote.amount:
                    raise sales.TenderedShort()
            if method == "card_terminal" and not confirmed.approval_code:
                raise sales.ApprovalCodeRequired()

    body = confirmed.model_dump(
        mode="json", include={"pack_id", "currency", "payment_method", "quote_id"}
    )
    try:
        async with gate.enter(False):
            await run_in_threadpool(check)
        _, order = await ordering.place(
            sessions,
            gate,
            providers,
            settings,
            ordering.Keyed(
                "counter:" + confirmed.key,
                staff.id,
                idempotency.fingerprint("POST", request.url.path, body),
            ),
            ordering.Asked(
                line_id, confirmed.pack_id, confirmed.currency, CHANNEL, method, confirmed.quote_id
            ),
            buyer=lambda session: _owner(session, line_id),
        )
    except TongkaError as refusal:
        # Said on the counter's own page, with the way back to the line (and to the till).
        return web.page(
            request,
            visitor,
            "web/counter/refused.html",
            {
                "detail": refusal.detail(visitor.language),
                "shifts": isinstance(refusal, sales.ShiftNotOpen),
                "line_id": str(line_id),
            },
            status_code=refusal.status,
        )

    def record() -> uuid.UUID:
        with transaction(sessions) as session:
            payment = payments.get(session, uuid.UUID(order["payment"]["id"]))
            made = orders.get(session, uuid.UUID(order["id"]))
            paid_at = None
            if method not in QR_METHODS and payment.provider == "store":
                if confirmed.approval_code:
                    payment.provider_reference = confirmed.approval_code
                flow.confirm(
                    session,
                    payment,
                    "succeeded",
                    payment.amount,
                    payment.currency,
                    receipt_key=settings.receipt_key,
                    store=staff.store_code,
                    staff=staff.display_name,
                )
                paid_at = clock.now()
            elif payment.status == "succeeded":  # nothing to pay: offers made it free
                paid_at = clock.now()
            sale = sales.record(
                session,
                staff,
                sales.Sold(made.id, payment.id, made.pack_id, method, made.currency, made.amount),
                tendered=tendered,
                approval_code=confirmed.approval_code if method == "card_terminal" else None,
                paid_at=paid_at,
            )
            return sale.id

    async with gate.enter(True):
        sale_id = await run_in_threadpool(record)
    return web.redirect(request, f"/counter/sales/{sale_id}")


# --- the sale and its receipt -------------------------------------------------------------------


def _sale_context(session: Session, sale: CounterSale, language: str, dev: bool) -> dict[str, Any]:
    order = orders.get(session, sale.order_id)
    payment = payments.latest_payment(session, order.id)
    method = {"wechat_pay_qr": "wechat_pay", "alipay_qr": "alipay"}.get(sale.method, sale.method)
    context: dict[str, Any] = {
        "sale": sale,
        "order": order,
        "pack": order.pack.name(language),
        "method_name": gettext(METHOD_NAMES.get(method, method), language),
        "lines": pricing.describe(pricing.of_order(order), language),
        "total": pricing.total_line(pricing.of_order(order), language),
        "paid": order.status == "fulfilled",
        "waiting": order.status == "awaiting_payment"
        and payment is not None
        and payment.status == "pending",
        "failed": (payment is not None and payment.status in ("failed", "cancelled"))
        or order.status in ("expired", "cancelled"),
        "qr_svg": None,
        "qr_url": None,
        "zones": [],
    }
    if context["waiting"] and payment is not None and payment.qr_content:
        title = gettext(_("Scan with the customer's phone to pay"), language)
        context["qr_svg"] = segno.make(payment.qr_content, error="m").svg_inline(
            border=4, omitsize=True, title=title
        )
        # In the sandbox no wallet app scans: the page the code opens, to pay it in a browser.
        context["qr_url"] = payment.checkout_url if dev else None
    if context["paid"]:
        context["zones"] = _zones(
            {
                z: v.remaining_bytes
                for z, v in buckets.line_balance(session, order.line_id).zones.items()
            },
            language,
        )
    return context


@router.get("/counter/sales/{sale_id}", response_class=HTMLResponse)
def sale_page(
    sale_id: uuid.UUID,
    request: Request,
    visitor: web.StaffDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Store staff of the sale's store (and operator admins): the sale, its change, the data now on the line."""
    sale = sales.visible_sale(session, _staff(visitor), sale_id)
    context = _sale_context(session, sale, visitor.language, settings.dev)
    return web.page(request, visitor, "web/counter/sale.html", context)


@router.get("/counter/sales/{sale_id}/status", response_class=HTMLResponse)
def sale_status(
    sale_id: uuid.UUID,
    request: Request,
    visitor: web.StaffDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Store staff of the sale's store (and operator admins): the sale page's status part, asked every 2 s."""
    sale = sales.visible_sale(session, _staff(visitor), sale_id)
    context = _sale_context(session, sale, visitor.language, settings.dev)
    return web.page(request, visitor, "web/counter/_sale_status.html", context)


@router.get("/counter/sales/{sale_id}/receipt", response_class=HTMLResponse)
def sale_receipt(
    sale_id: uuid.UUID,
    request: Request,
    visitor: web.StaffDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Store staff of the sale's store (and operator admins): the receipt for the counter's 80 mm printer."""
    language = visitor.language
    sale = sales.visible_sale(session, _staff(visitor), sale_id)
    receipt = receipts.of_payment(session, sale.payment_id) if sale.payment_id else None
    if receipt is None:
        raise receipts.ReceiptNotFound()
    store = session.get_one(Store, sale.store_id)
    url = receipts.verify_url(settings.public_base_url, receipt)
    content = receipt.content
    order = orders.get(session, sale.order_id)
    method = {"wechat_pay_qr": "wechat_pay", "alipay_qr": "alipay"}.get(sale.method, sale.method)
    return web.page(
        request,
        visitor,
        "web/counter/receipt.html",
        {
            "number": receipt.number,
            "issued_at": receipt.issued_at,
            "store_name": store.name(language),
            "store_address": store.address(language),
            "agent": content.get("staff", ""),
            "numbers": content["lines"],
            "pack": order.pack.name(language),
            "volume": web.data(order.volume_bytes, language),
            "days": order.validity_days,
            "lines": pricing.describe(pricing.of_order(order), language),
            "paid": web.money(sale.amount, sale.currency, language),
            "method_name": gettext(METHOD_NAMES.get(method, method), language),
            "reference": content["payment"]["reference"],
            "sale": sale,
            "qr_svg": segno.make(url, error="m").svg_inline(border=2, omitsize=True),
        },
    )
