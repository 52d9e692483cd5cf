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

from tongka import idempotency
from tongka.account.models import Account
from tongka.deps import CurrentAccount, ProvidersDep, SessionDep, SettingsDep, SignedIn
from tongka.order import service as orders
from tongka.payment import service as payments
from tongka.promotion import service as promotions
from tongka.promotion.schemas import QuoteIn, QuoteOut
from tongka.renewal import flow, ordering
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
    caller: SignedIn,
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

    fp = idempotency.fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    code, content = await ordering.place(
        request.app.state.sessionmaker,
        request.app.state.gate,
        providers,
        settings,
        ordering.Keyed(idempotency_key, caller.account_id, fp),
        ordering.Asked(
            body.line_id,
            body.pack_id,
            body.currency,
            "app",
            body.payment_method,
            body.quote_id,
            body.coupon_code,
        ),
        buyer=lambda session: session.get_one(Account, caller.account_id),
    )
    return JSONResponse(content, status_code=code)


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
