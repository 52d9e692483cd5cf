"""The console's operations pages: refunds (with the unused-data rule shown before confirming),
the network (PLMN) registry and rating groups, exchange rates, and failed messages.

Who may open them: operator admins. Every change is written to the audit log in the change's
own transaction, with what it was before and after.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka import web
from tongka.charging import service as charging
from tongka.charging.models import Network, RatingGroup
from tongka.deps import ProvidersDep, SessionDep
from tongka.errors import TongkaError
from tongka.fx import service as fx
from tongka.fx.models import ExchangeRate
from tongka.i18n import _, gettext
from tongka.money import CURRENCIES, EXPONENT
from tongka.notify import service as notify
from tongka.notify.models import OutboxMessage
from tongka.order import service as orders
from tongka.payment import refunds
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.receipt import service as receipts
from tongka.receipt.models import Receipt
from tongka.renewal import flow
from tongka.staff import audit
from tongka.staff.service import Staff

router = APIRouter(include_in_schema=False)

NOT_FOUND = _("No payment, order or receipt has that number.")
CENTS = _("Enter the amount to the cent, e.g. 29 or 29.50.")
TOO_MUCH = _("At most {amount} can be refunded.")
RATE_WRONG = _("Enter a positive rate with at most six decimals, e.g. 0.9234.")
SAME_CURRENCY = _("Choose two different currencies.")
STATUSES = {
    "pending": _("Pending"),
    "succeeded": _("Succeeded"),
    "failed": _("Failed"),
    "undeliverable": _("Undeliverable"),
    "sent": _("Sent"),
    "delivered": _("Delivered"),
}
ZONES = {"mainland": _("Mainland China"), "hk": _("Hong Kong")}
RATE_HISTORY = 50
MESSAGES_SHOWN = 100


def _staff(visitor: web.Visitor) -> Staff:
    assert visitor.staff is not None  # AdminDep let only staff through
    return visitor.staff


# --- refunds ------------------------------------------------------------------------------------


def _find_payment(session: Session, text: str) -> Payment | None:
    """A payment by its id, its order's id (the order's paid payment, else its latest) or its
    receipt's number."""
    text = text.strip()
    try:
        wanted = uuid.UUID(text)
    except ValueError:
        receipt = session.scalar(select(Receipt).where(Receipt.number == text.upper()))
        return session.get(Payment, receipt.payment_id) if receipt else None
    payment = session.get(Payment, wanted)
    if payment is not None:
        return payment
    attempts = payments.payments_of_order(session, wanted)
    return next((p for p in attempts if p.status == "succeeded"), attempts[0] if attempts else None)


def _refund_context(session: Session, payment: Payment) -> dict[str, Any]:
    """The payment, its order and receipt, its refunds, and what can still be refunded and why."""
    order = orders.get(session, payment.order_id) if payment.order_id else None
    allowed = (
        refunds.refundable(session, payment, flow.purchase_of(session, payment))
        if order is not None
        else refunds.Refundable(0, None)  # a wallet top-up is not refunded through tongka yet
    )
    made = refunds.refunds_of(session, payment.id)
    return {
        "payment": payment,
        "order": order,
        "receipt": receipts.of_payment(session, payment.id),
        "refunds": made,
        "refunded": sum(r.amount for r in made if r.status != "failed"),
        "refundable": allowed.amount,
        "unused_bytes": allowed.unused_bytes,
        "statuses": STATUSES,
        "zones": ZONES,
    }


def _minor(text: str, currency: str) -> int | None:
    """Major units as typed ("29", "29.5") in minor units; None if not an amount to the cent."""
    if not re.fullmatch(r"\s*\d{1,9}(\.\d{1,2})?\s*", text):
        return None
    minor = Decimal(text.strip()).scaleb(EXPONENT[currency])
    return int(minor) if minor == minor.to_integral_value() else None


class RefundForm(BaseModel):
    amount: str = Field(min_length=1, max_length=14)
    reason: str = Field(min_length=3, max_length=200)
    key: str = Field(pattern=r"^[0-9a-f]{32}$")


def _refund_id(staff: Staff, key: str) -> uuid.UUID:
    """The refund's id from the form's key: a second submit of the same form names the same refund."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"tongka:refund:{staff.id}:{key}")


@router.get("/console/refunds", response_class=HTMLResponse)
def refunds_find(
    request: Request,
    visitor: web.AdminDep,
    session: SessionDep,
    q: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """Operator admins: find a payment to refund by payment id, order id or receipt number."""
    if q.strip():
        payment = _find_payment(session, q)
        if payment is not None:
            return web.redirect(request, f"/console/refunds/{payment.id}")
    error = gettext(NOT_FOUND, visitor.language) if q.strip() else None
    return web.page(
        request,
        visitor,
        "web/console/refund_find.html",
        {"q": q, "error": error},
        status_code=404 if error else 200,
    )


@router.get("/console/refunds/{payment_id}", response_class=HTMLResponse)
def refund_payment_page(
    request: Request, payment_id: uuid.UUID, visitor: web.AdminDep, session: SessionDep
) -> Response:
    """Operator admins: a payment, what was refunded, what can still be, and the refund form."""
    payment = payments.get(session, payment_id)
    context = _refund_context(session, payment)
    shown = request.query_params.get("refund")
    return web.page(
        request,
        visitor,
        "web/console/refund_payment.html",
        {
            **context,
            "form": {"key": uuid.uuid4().hex},
            "errors": {},
            "just_made": shown,
        },
    )


def _checked(
    session: Session, payment: Payment, posted: Any, language: str
) -> tuple[RefundForm | None, int, dict[str, str], dict[str, Any]]:
    """The refund form read and held against what can be refunded: (form, amount, errors, context)."""
    context = _refund_context(session, payment)
    form, errors = web.parse(RefundForm, posted, language)
    amount = 0
    if form is not None:
        minor = _minor(form.amount, payment.currency)
        if minor is None or minor <= 0:
            errors["amount"] = gettext(CENTS, language)
        elif minor > context["refundable"]:
            errors["amount"] = gettext(
                TOO_MUCH,
                language,
                amount=web.money(context["refundable"], payment.currency, language),
            )
        amount = minor or 0
    return (form if not errors else None), amount, errors, context


@router.post("/console/refunds/{payment_id}/check", response_class=HTMLResponse)
def refund_check(
    request: Request,
    payment_id: uuid.UUID,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
) -> Response:
    """Operator admins: the refund as it will be made, to confirm (nothing is refunded yet)."""
    payment = payments.get(session, payment_id)
    form, amount, errors, context = _checked(session, payment, posted, visitor.language)
    values = {k: v for k, v in posted.items() if isinstance(v, str)}
    if form is None:
        return web.page(
            request,
            visitor,
            "web/console/refund_payment.html",
            {**context, "form": values, "errors": errors, "just_made": None},
            status_code=400,
        )
    return web.page(
        request,
        visitor,
        "web/console/refund_confirm.html",
        {**context, "form": values, "amount": amount},
    )


@router.post("/console/refunds/{payment_id}", response_class=HTMLResponse)
def refund_confirm(
    request: Request,
    payment_id: uuid.UUID,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    providers: ProvidersDep,
) -> Response:
    """Operator admins: refund the confirmed amount through the payment's provider (a second submit of the same form refunds once)."""
    staff = _staff(visitor)
    key = posted.get("key")
    if isinstance(key, str) and re.fullmatch(r"[0-9a-f]{32}", key):
        made = refunds.existing(session, _refund_id(staff, key))
        if made is not None:  # a second click, a reload: the refund the first one made
            return web.redirect(request, f"/console/refunds/{made.payment_id}?refund={made.id}")
    payment = payments.get(session, payment_id)
    form, amount, errors, context = _checked(session, payment, posted, visitor.language)
    values = {k: v for k, v in posted.items() if isinstance(v, str)}
    if form is None:
        return web.page(
            request,
            visitor,
            "web/console/refund_payment.html",
            {**context, "form": values, "errors": errors, "just_made": None},
            status_code=400,
        )
    try:
        record = flow.refund(
            session,
            providers,
            payment.id,
            amount=amount,
            reason=form.reason,
            requested_by=f"operator:{staff.username}",
            refund_id=_refund_id(staff, form.key),
        )
    except TongkaError as refusal:
        session.rollback()  # nothing of a refused refund is kept
        return web.page(
            request,
            visitor,
            "web/console/refund_payment.html",
            {
                **_refund_context(session, payments.get(session, payment_id)),
                "form": values,
                "errors": {"form": refusal.detail(visitor.language)},
                "just_made": None,
            },
            status_code=refusal.status,
        )
    audit.record(
        session,
        staff,
        "payment.refund",
        "payment",
        payment.id,
        before={
            "refunded": context["refunded"],
            "refundable": context["refundable"],
            "unused_bytes": context["unused_bytes"],
        },
        after={
            "refund_id": record.id,
            "amount": record.amount,
            "currency": record.currency,
            "status": record.status,
            "bytes_withdrawn": record.bytes_withdrawn,
            "reason": record.reason,
        },
    )
    return web.redirect(request, f"/console/refunds/{payment_id}?refund={record.id}")


# --- networks and rating groups -----------------------------------------------------------------


class NetworkForm(BaseModel):
    plmn: str = Field(pattern=r"^\s*\d{3}[\s-]?\d{2,3}\s*$")
    operator: str = Field(min_length=1, max_length=64)
    zone: Literal["mainland", "hk"]
    active: bool = False  # an unticked box is not sent


class NetworkChangeForm(BaseModel):
    operator: str = Field(min_length=1, max_length=64)
    zone: Literal["mainland", "hk"]
    active: bool = False


class RatingGroupForm(BaseModel):
    rating_group: int = Field(ge=0, le=2**32 - 1)
    name: str = Field(min_length=1, max_length=64)
    zero_rated: bool = False


def _network(n: Network) -> dict[str, Any]:
    return {"operator": n.operator, "zone": n.zone, "active": n.active}


def _networks_page(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    group_form: dict[str, Any] | None = None,
    group_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return web.page(
        request,
        visitor,
        "web/console/networks_list.html",
        {
            "networks": charging.networks(session),
            "groups": charging.rating_groups(session),
            "zones": ZONES,
            "form": form if form is not None else {"active": "on"},
            "errors": errors or {},
            "group_form": group_form or {},
            "group_errors": group_errors or {},
            "done": request.query_params.get("done"),
        },
        status_code=status_code,
    )


@router.get("/console/networks", response_class=HTMLResponse)
def networks_page(request: Request, visitor: web.AdminDep, session: SessionDep) -> Response:
    """Operator admins: the network (PLMN) registry and the rating groups, with forms to add and change them."""
    return _networks_page(request, visitor, session)


def _values(posted: Any) -> dict[str, str]:
    return {k: v for k, v in posted.items() if isinstance(v, str)}


@router.post("/console/networks", response_class=HTMLResponse)
def network_add(
    request: Request, visitor: web.AdminDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """Operator admins: add a network to the registry."""
    form, errors = web.parse(NetworkForm, posted, visitor.language)
    if form is not None:
        try:
            network = charging.add_network(
                session, form.plmn, operator=form.operator, zone=form.zone, active=form.active
            )
        except (charging.NetworkExists, charging.PlmnInvalid) as refusal:
            errors = {"plmn": refusal.detail(visitor.language)}
        else:
            audit.record(
                session,
                _staff(visitor),
                "network.add",
                "network",
                network.plmn,
                after=_network(network),
            )
            return web.redirect(request, f"/console/networks?done={network.plmn}")
    return _networks_page(
        request, visitor, session, form=_values(posted), errors=errors, status_code=400
    )


@router.get("/console/networks/{plmn}", response_class=HTMLResponse)
def network_page(
    request: Request, plmn: str, visitor: web.AdminDep, session: SessionDep
) -> Response:
    """Operator admins: one network, to change its operator's name, zone or whether it is served."""
    network = session.get(Network, plmn)
    if network is None:
        raise charging.NetworkNotFound(plmn=plmn[:8])
    return web.page(
        request,
        visitor,
        "web/console/networks_edit.html",
        {"network": network, "form": _network(network), "errors": {}, "zones": ZONES},
    )


@router.post("/console/networks/{plmn}", response_class=HTMLResponse)
def network_change(
    request: Request, plmn: str, visitor: web.AdminDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """Operator admins: change a network (from the next charging request on)."""
    network = session.get(Network, plmn)
    if network is None:
        raise charging.NetworkNotFound(plmn=plmn[:8])
    form, errors = web.parse(NetworkChangeForm, posted, visitor.language)
    if form is None:
        return web.page(
            request,
            visitor,
            "web/console/networks_edit.html",
            {"network": network, "form": _values(posted), "errors": errors, "zones": ZONES},
            status_code=400,
        )
    before = _network(network)
    charging.change_network(
        session, plmn, operator=form.operator, zone=form.zone, active=form.active
    )
    audit.record(
        session,
        _staff(visitor),
        "network.change",
        "network",
        plmn,
        before=before,
        after=_network(network),
    )
    return web.redirect(request, f"/console/networks?done={plmn}")


@router.post("/console/rating-groups", response_class=HTMLResponse)
def rating_group_set(
    request: Request, visitor: web.AdminDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """Operator admins: name a rating group and make it zero-rated or charged."""
    form, errors = web.parse(RatingGroupForm, posted, visitor.language)
    if form is None:
        return _networks_page(
            request,
            visitor,
            session,
            group_form=_values(posted),
            group_errors=errors,
            status_code=400,
        )
    old = session.get(RatingGroup, form.rating_group)
    before = {"name": old.name, "zero_rated": old.zero_rated} if old else None
    group = charging.set_rating_group(
        session, form.rating_group, form.name, zero_rated=form.zero_rated
    )
    audit.record(
        session,
        _staff(visitor),
        "rating_group.set",
        "rating_group",
        group.rating_group,
        before=before,
        after={"name": group.name, "zero_rated": group.zero_rated},
    )
    return web.redirect(request, f"/console/networks?done=rg{group.rating_group}")


# --- exchange rates -----------------------------------------------------------------------------


class RateForm(BaseModel):
    base: Literal["CNY", "HKD"]
    quote: Literal["CNY", "HKD"]
    rate: str = Field(min_length=1, max_length=20)


def _rates_page(
    request: Request,
    visitor: web.Visitor,
    session: Session,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    history = session.scalars(
        select(ExchangeRate)
        .order_by(ExchangeRate.created_at.desc(), ExchangeRate.id.desc())
        .limit(RATE_HISTORY)
    ).all()
    return web.page(
        request,
        visitor,
        "web/console/rates_list.html",
        {
            "current": fx.rates(session),
            "history": history,
            "scale": fx.SCALE,
            "currencies": CURRENCIES,
            "form": form or {"base": "HKD", "quote": "CNY"},
            "errors": errors or {},
            "done": request.query_params.get("done"),
        },
        status_code=status_code,
    )


@router.get("/console/rates", response_class=HTMLResponse)
def rates_page(request: Request, visitor: web.AdminDep, session: SessionDep) -> Response:
    """Operator admins: the exchange rates in force, their history, and the form to set a new one."""
    return _rates_page(request, visitor, session)


@router.post("/console/rates", response_class=HTMLResponse)
def rate_set(
    request: Request, visitor: web.AdminDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """Operator admins: set a new exchange rate (orders made from now on lock it; past orders keep theirs)."""
    form, errors = web.parse(RateForm, posted, visitor.language)
    micros = 0
    if form is not None:
        if form.base == form.quote:
            errors["quote"] = gettext(SAME_CURRENCY, visitor.language)
        try:
            micros = fx.parse_rate(form.rate.strip())
        except ValueError:
            errors["rate"] = gettext(RATE_WRONG, visitor.language)
    if form is None or errors:
        return _rates_page(request, visitor, session, _values(posted), errors, 400)
    staff = _staff(visitor)
    old = fx.current_rate(session, form.base, form.quote)
    rate = fx.set_rate(session, form.base, form.quote, micros, set_by=f"staff:{staff.username}")
    audit.record(
        session,
        staff,
        "fx.rate",
        "exchange_rate",
        f"{form.base}-{form.quote}",
        before={"rate": str(Decimal(old.rate_micros) / fx.SCALE)} if old else None,
        after={"rate": str(Decimal(rate.rate_micros) / fx.SCALE), "id": rate.id},
    )
    return web.redirect(request, f"/console/rates?done={form.base}-{form.quote}")


# --- failed messages ----------------------------------------------------------------------------


@router.get("/console/messages", response_class=HTMLResponse)
def messages_page(
    request: Request,
    visitor: web.AdminDep,
    session: SessionDep,
    status: Literal["failed", "undeliverable"] | None = None,
) -> Response:
    """Operator admins: messages that could not be sent (or were not delivered), newest first, to send again."""
    shown = [status] if status else list(notify.RETRYABLE)
    found = sorted(
        (m for s in shown for m in notify.listed(session, s, MESSAGES_SHOWN)),
        key=lambda m: m.created_at,
        reverse=True,
    )[:MESSAGES_SHOWN]
    return web.page(
        request,
        visitor,
        "web/console/messages_list.html",
        {
            "messages": [(m, notify.mask(m.channel, m.to)) for m in found],
            "status": status,
            "statuses": STATUSES,
            "done": request.query_params.get("done"),
        },
    )


@router.post("/console/messages/{message_id}/retry", response_class=HTMLResponse)
def message_retry(
    request: Request,
    message_id: uuid.UUID,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
) -> Response:
    """Operator admins: send a failed message again (the same message, its tries counted afresh)."""
    old = session.get(OutboxMessage, message_id)
    before = {"status": old.status, "attempts": old.attempts} if old else None
    message = notify.retry(session, message_id)
    audit.record(
        session,
        _staff(visitor),
        "message.retry",
        "message",
        message.id,
        before=before,
        after={"status": message.status, "to": notify.mask(message.channel, message.to)},
    )
    return web.redirect(request, f"/console/messages?done={message.id}")
