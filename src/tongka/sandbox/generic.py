"""The sandbox provider's own side: its checkout page and its callbacks, for the demo and the tests.

It plays the provider: `complete` signs an event with the shared sandbox secret and
POSTs it to tongka's callback URL over HTTP (in-process, through the ASGI app), so the
real verification path runs. Who may call: anyone, and only when the sandbox is on
(never in production); payment ids are random UUIDs, as a provider's checkout links are.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from tongka.db import transaction
from tongka.order.models import Order
from tongka.payment.models import Payment
from tongka.payment.providers.sandbox import SIGNATURE_HEADER, sign
from tongka.payment.service import ProviderUnknown
from tongka.sandbox import alipay, paypal, stripe, wechat
from tongka.sandbox.delivery import deliver
from tongka.sandbox.store import SimPayment, price, store_sessions
from tongka.templating import templates

router = APIRouter(prefix="/sandbox", tags=["sandbox"])

# The providers played here, by provider name; each is mounted at /sandbox/<name>.
SIMULATORS = {"wechat": wechat, "alipay": alipay, "stripe": stripe, "paypal": paypal}

METHOD_NAMES = {
    "wechat_pay": "WeChat Pay 微信支付",
    "alipay": "Alipay 支付宝",
    "card": "Card",
    "paypal": "PayPal",
}


class CompleteIn(BaseModel):
    outcome: Literal["succeeded", "failed"] = "succeeded"


class CompleteOut(BaseModel):
    provider: str
    event_id: str | None  # the generic sandbox's; a real provider's simulator keeps its own
    outcome: str
    callback_status: (
        int  # 0: the provider sends no notification for this outcome (WeChat on a failure)
    )


def _load(
    request: Request, payment_id: uuid.UUID, provider: str | None = "sandbox"
) -> tuple[Payment, Order | None]:
    """The payment and its order (None: a wallet top-up's payment)."""
    with transaction(request.app.state.sessionmaker, read_only=True) as session:
        payment = session.get(Payment, payment_id)
        if payment is None or (provider is not None and payment.provider != provider):
            raise ProviderUnknown("No such sandbox payment.")
        order = session.get(Order, payment.order_id) if payment.order_id else None
        session.expunge_all()
        return payment, order


async def _deliver(request: Request, payment: Payment, outcome: str) -> CompleteOut:
    # The same payment and outcome always make the same event id: a repeat is a provider's retry.
    event_id = "evt_" + hashlib.sha256(f"{payment.id}:{outcome}".encode()).hexdigest()[:24]
    event = {
        "id": event_id,
        "type": f"payment.{outcome}",
        "created": int(time.time()),
        "data": {
            "reference": payment.provider_reference,
            "merchant_reference": str(payment.id),
            "amount": payment.amount,
            "currency": payment.currency,
        },
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    secret = request.app.state.settings.sandbox_secret
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
    }
    url = f"{request.app.state.settings.public_base_url.rstrip('/')}/api/v1/payments/callbacks/sandbox"
    status = await deliver(request, url, body, headers)
    return CompleteOut(
        provider="sandbox", event_id=event_id, outcome=outcome, callback_status=status
    )


async def _simulate(request: Request, payment: Payment, outcome: str) -> CompleteOut:
    """The payer pays at the payment's own provider: that provider's simulator sends its own callback."""
    simulator = SIMULATORS.get(payment.provider)
    if simulator is None:
        raise ProviderUnknown("No such sandbox payment.")

    def find() -> SimPayment | None:
        with store_sessions(request)() as session:
            return session.scalar(
                select(SimPayment).where(
                    SimPayment.provider == payment.provider,
                    SimPayment.merchant_reference.in_((str(payment.id), payment.id.hex)),
                )
            )

    sim = await run_in_threadpool(find)
    if sim is None:
        raise ProviderUnknown("No such sandbox payment.")
    status = await simulator.complete(request, sim, outcome)
    return CompleteOut(
        provider=payment.provider, event_id=None, outcome=outcome, callback_status=status
    )


@router.post("/payments/{payment_id}/complete", response_model=CompleteOut)
async def complete(
    payment_id: uuid.UUID, request: Request, body: Annotated[CompleteIn | None, Body()] = None
) -> CompleteOut:
    """Anyone, in sandbox mode: the payer pays (or declines) at the payment's provider, which sends its signed callback.

    Works for every provider in the sandbox: the generic one, or a real one's simulator.
    """
    payment, _order = await run_in_threadpool(_load, request, payment_id, None)
    outcome = (body or CompleteIn()).outcome
    if payment.provider == "sandbox":
        return await _deliver(request, payment, outcome)
    return await _simulate(request, payment, outcome)


@router.get("/payments/{payment_id}", response_class=HTMLResponse)
async def checkout_page(payment_id: uuid.UUID, request: Request) -> Response:
    """Anyone, in sandbox mode: the provider's checkout page, as the payer sees it."""
    payment, order = await run_in_threadpool(_load, request, payment_id)
    return templates.TemplateResponse(
        request,
        "sandbox/checkout.html",
        {
            "payment": payment,
            "order": order,
            "price": price(payment.amount, payment.currency, "en"),
            "method_name": METHOD_NAMES.get(payment.method, payment.method),
        },
    )


@router.post("/payments/{payment_id}/pay", include_in_schema=False)
async def pay_from_page(
    payment_id: uuid.UUID,
    request: Request,
    outcome: Annotated[Literal["succeeded", "failed"], Form()],
) -> Response:
    payment, _order = await run_in_threadpool(_load, request, payment_id)
    await _deliver(request, payment, outcome)
    return RedirectResponse(f"/sandbox/payments/{payment_id}", status_code=303)
