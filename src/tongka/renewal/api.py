"""Renewal API: quotes, orders and the providers' callbacks, each through the renewal flow.

The routes that confirm a payment commit as soon as the flow returns (the dependency's
own commit then has nothing left to do): see renewal/flow.py on the receipt counter.

Who may call: the signed-in subscriber, for their own lines, quotes and orders (another's
is 404); the callbacks: the payment provider, proven by its signature.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tongka import idempotency
from tongka.account import service as accounts
from tongka.account.models import Account
from tongka.db import transaction
from tongka.deps import CurrentAccount, ProvidersDep, SessionDep, SettingsDep, SignedInToken
from tongka.errors import TongkaError
from tongka.order import service as orders
from tongka.order.models import Order
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.payment.providers.base import Checkout
from tongka.promotion import service as promotions
from tongka.promotion.schemas import QuoteIn, QuoteOut
from tongka.renewal import flow
from tongka.renewal.schemas import OrderCreate, OrderOut

router = APIRouter(prefix="/api/v1", tags=["orders"])
callbacks = APIRouter(tags=["payments"])


@router.post(
    "/quotes", status_code=status.HTTP_201_CREATED, response_model=QuoteOut, tags=["promotions"]
)
def create_quote(
    request: Request,
    body: QuoteIn,
    account: CurrentAccount,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """The signed-in subscriber, for their own line: the price of a pack with the offers they have now.

    The quote holds for 15 minutes (`expires_at`): an order with its `quote_id` charges
    exactly `amount`, and the offers it applies are kept for it meanwhile. A new quote
    replaces the subscriber's previous one. An `Idempotency-Key` is optional here.
    """

    def produce() -> tuple[int, Any]:
        quote = flow.quote(
            session,
            account,
            line_id=body.line_id,
            pack_id=body.pack_id,
            currency=body.currency,
            channel="app",
            coupon_code=body.coupon_code,
            secret=settings.secret_key.get_secret_value(),
        )
        out = QuoteOut.of(quote, promotions.coupon_offer_code(session, quote), account.language)
        return 201, out.model_dump(mode="json")

    if idempotency_key is None:
        code, content = produce()
    else:
        fp = idempotency.fingerprint("POST", request.url.path, body.model_dump(mode="json"))
        code, content = idempotency.run_once(session, account.id, idempotency_key, fp, produce)
    return JSONResponse(content, status_code=code)


@router.post("/orders", status_code=status.HTTP_201_CREATED, response_model=OrderOut)
async def create_order(
    request: Request,
    body: OrderCreate,
    token: SignedInToken,
    settings: SettingsDep,
    providers: ProvidersDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """The signed-in subscriber, for their own line: order a pack and start its payment.

    The price is the catalog's less the offers the subscriber has now (`price` shows the
    breakdown), or exactly the quote's with `quote_id`; `coupon_code` unlocks a coupon.
    Needs an `Idempotency-Key` header: a retry with the same key and body returns the
    same order; the same key with another body is 409.
    """
    # Three steps, the provider asked between two transactions (renewal/flow.py): the order and its
    # payment's row with the key claimed; the provider's call; its answer recorded and the response
    # stored under the key. A crash or a provider that does not answer leaves the order awaiting
    # payment and the key claimed: a retry with the key carries the same order on from its note.
    gate, sessions, key = request.app.state.gate, request.app.state.sessionmaker, idempotency_key
    fp = idempotency.fingerprint("POST", request.url.path, body.model_dump(mode="json"))

    def order() -> idempotency.Claim | tuple[Account, uuid.UUID, uuid.UUID, payments.Opening]:
        with transaction(sessions) as session:
            account = accounts.account_for_token(session, token)
            request.state.language = account.language
            claim = idempotency.claim(session, account.id, key, fp)
            if claim.finished:
                return claim
            assert key is not None  # claim refused a request without one
            if claim.note is not None:
                made, payment, opening = flow.unopened(
                    session,
                    account,
                    uuid.UUID(claim.note["order_id"]),
                    uuid.UUID(claim.note["payment_id"]),
                    settings.public_base_url,
                )
            else:
                try:
                    made, payment, opening = flow.order_with_payment(
                        session,
                        account,
                        line_id=body.line_id,
                        pack_id=body.pack_id,
                        currency=body.currency,
                        channel="app",
                        method=body.payment_method,
                        providers=providers,
                        base_url=settings.public_base_url,
                        payment_ttl_seconds=settings.order_payment_ttl_seconds,
                        quote_id=body.quote_id,
                        coupon_code=body.coupon_code,
                        secret=settings.secret_key.get_secret_value(),
                        receipt_key=settings.receipt_key,
                    )
                except TongkaError as refusal:
                    if refusal.commit_anyway:
                        idempotency.release(session, account.id, key)
                    raise
                made_ids = {"order_id": str(made.id), "payment_id": str(payment.id)}
                idempotency.note(session, claim, made_ids)
            if opening is None:  # nothing to ask (a free order, or asked and answered before)
                return _finish(session, account.id, account.language, key, made, payment)
            return account, made.id, payment.id, opening

    def opened(
        account: Account, order_id: uuid.UUID, payment_id: uuid.UUID, checkout: Checkout
    ) -> idempotency.Claim:
        with transaction(sessions) as session:
            payment = flow.payment_opened(session, payment_id, checkout)
            assert key is not None
            made = orders.get(session, order_id)
            return _finish(session, account.id, account.language, key, made, payment)

    async with gate.enter(write=True):
        step = await run_in_threadpool(order)
    if not isinstance(step, idempotency.Claim):
        account, order_id, payment_id, opening = step
        checkout = await run_in_threadpool(flow.open_payment, opening, providers)
        async with gate.enter(write=True):
            step = await run_in_threadpool(opened, account, order_id, payment_id, checkout)
    assert step.status_code is not None  # a finished claim
    return JSONResponse(step.response, status_code=step.status_code)


def _finish(
    session: Session,
    account_id: uuid.UUID,
    language: str,
    key: str,
    order: Order,
    payment: Payment,
) -> idempotency.Claim:
    out = OrderOut.of(order, payment, language).model_dump(mode="json")
    idempotency.finish(session, account_id, key, 201, out)
    return idempotency.Claim(201, out)


@router.get("/orders", response_model=list[OrderOut])
def list_orders(account: CurrentAccount, session: SessionDep) -> list[OrderOut]:
    """The signed-in subscriber's orders, newest first."""
    return [
        OrderOut.of(o, payments.latest_payment(session, o.id), account.language)
        for o in orders.orders_of(session, account)
    ]


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: uuid.UUID, account: CurrentAccount, session: SessionDep) -> OrderOut:
    """The order's owner."""
    order = orders.own_order(session, account, order_id)
    return OrderOut.of(order, payments.latest_payment(session, order.id), account.language)


@router.post("/orders/{order_id}/cancel", response_model=OrderOut)
def cancel_order(order_id: uuid.UUID, account: CurrentAccount, session: SessionDep) -> OrderOut:
    """The order's owner: cancel an order that is still awaiting payment (cancelling twice is harmless)."""
    order = flow.cancel(session, account, order_id)
    return OrderOut.of(order, payments.latest_payment(session, order.id), account.language)


async def _raw_body(request: Request) -> bytes:
    # Signatures cover the exact bytes sent, so the body is read raw, never re-encoded.
    return await request.body()


@callbacks.post("/api/v1/payments/callbacks/{provider}")
def callback(
    provider: str,
    request: Request,
    body: Annotated[bytes, Depends(_raw_body)],
    session: SessionDep,
    providers: ProvidersDep,
    settings: SettingsDep,
) -> Response:
    """The payment provider, proven by its signature: a payment succeeded or failed. A bad signature is 400 and changes nothing."""
    answer = flow.handle_callback(
        session, providers, provider, dict(request.headers), body, receipt_key=settings.receipt_key
    )
    # Now, in this thread, not at the dependency's exit a thread hop later: every receipt
    # waits on the receipt counter this transaction locked last (receipt/service.py).
    session.commit()
    return Response(answer.body, status_code=answer.status_code, media_type=answer.media_type)
