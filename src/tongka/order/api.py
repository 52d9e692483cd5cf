"""Orders API. Who may call: the signed-in subscriber, for their own lines and orders (another's is 404)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, status
from fastapi.responses import JSONResponse

from tongka import idempotency
from tongka.deps import CurrentAccount, ProvidersDep, SessionDep, SettingsDep
from tongka.order import service
from tongka.order.schemas import OrderCreate, OrderOut
from tongka.payment import service as payments

router = APIRouter(prefix="/api/v1", tags=["orders"])


@router.post("/orders", status_code=status.HTTP_201_CREATED, response_model=OrderOut)
def create_order(
    request: Request,
    body: OrderCreate,
    account: CurrentAccount,
    session: SessionDep,
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

    def produce() -> tuple[int, Any]:
        order = service.create(
            session,
            account,
            line_id=body.line_id,
            pack_id=body.pack_id,
            currency=body.currency,
            channel="app",
            payment_ttl_seconds=settings.order_payment_ttl_seconds,
            quote_id=body.quote_id,
            coupon_code=body.coupon_code,
            secret=settings.secret_key.get_secret_value(),
        )
        payment = payments.start(
            session,
            order,
            body.payment_method,
            providers,
            settings.public_base_url,
            receipt_key=settings.receipt_key,
        )
        return 201, OrderOut.of(order, payment, account.language).model_dump(mode="json")

    fp = idempotency.fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    code, content = idempotency.run_once(session, account.id, idempotency_key, fp, produce)
    return JSONResponse(content, status_code=code)


@router.get("/orders", response_model=list[OrderOut])
def list_orders(account: CurrentAccount, session: SessionDep) -> list[OrderOut]:
    """The signed-in subscriber's orders, newest first."""
    return [
        OrderOut.of(o, payments.latest_payment(session, o.id), account.language)
        for o in service.orders_of(session, account)
    ]


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: uuid.UUID, account: CurrentAccount, session: SessionDep) -> OrderOut:
    """The order's owner."""
    order = service.own_order(session, account, order_id)
    return OrderOut.of(order, payments.latest_payment(session, order.id), account.language)


@router.post("/orders/{order_id}/cancel", response_model=OrderOut)
def cancel_order(order_id: uuid.UUID, account: CurrentAccount, session: SessionDep) -> OrderOut:
    """The order's owner: cancel an order that is still awaiting payment (cancelling twice is harmless)."""
    order = service.cancel(session, account, order_id)
    return OrderOut.of(order, payments.latest_payment(session, order.id), account.language)
