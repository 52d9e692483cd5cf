"""Operator API for payments. Who may call: operator staff (role `operator`); anyone else is 403, no token 401."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tongka import idempotency
from tongka.deps import CurrentOperator, ProvidersDep, SessionDep
from tongka.order.models import Order
from tongka.payment import refunds
from tongka.payment.models import Payment

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class RefundIn(BaseModel):
    amount: int = Field(gt=0, description="minor units, in the payment's currency")
    reason: str = Field(min_length=3, max_length=200)


class RefundOut(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    currency: str
    status: str
    reason: str
    requested_by: str
    provider_refund_id: str | None
    bytes_withdrawn: int
    created_at: datetime
    settled_at: datetime | None


class PaymentAdminOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    provider: str
    method: str
    status: str
    amount: int
    currency: str
    provider_reference: str | None
    refundable_amount: int
    unused_bytes: int | None
    refunds: list[RefundOut]


def _payment_out(session: SessionDep, payment: Payment) -> PaymentAdminOut:
    order = session.get(Order, payment.order_id)
    assert order is not None
    allowed = refunds.refundable(session, payment, order)
    return PaymentAdminOut(
        id=payment.id, order_id=payment.order_id, provider=payment.provider, method=payment.method,
        status=payment.status, amount=payment.amount, currency=payment.currency,
        provider_reference=payment.provider_reference, refundable_amount=allowed.amount,
        unused_bytes=allowed.unused_bytes,
        refunds=[RefundOut.model_validate(r, from_attributes=True) for r in refunds.refunds_of(session, payment.id)],
    )


@router.get("/payments/{payment_id}", response_model=PaymentAdminOut)
def get_payment(payment_id: uuid.UUID, operator: CurrentOperator, session: SessionDep) -> PaymentAdminOut:
    """Operator staff: a payment, what can still be refunded, and its refunds."""
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise refunds.PaymentNotFound()
    return _payment_out(session, payment)


@router.post("/payments/{payment_id}/refunds", status_code=201, response_model=RefundOut)
def refund_payment(
    request: Request,
    payment_id: uuid.UUID,
    body: RefundIn,
    operator: CurrentOperator,
    session: SessionDep,
    providers: ProvidersDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """Operator staff: refund part or all of a payment through its provider (pro-rated to unused data).

    Needs an `Idempotency-Key`: a retry refunds once.
    """

    def produce() -> tuple[int, Any]:
        record = refunds.refund(
            session, providers, payment_id, amount=body.amount, reason=body.reason,
            requested_by=f"operator:{operator.username}",
            refund_id=uuid.uuid5(uuid.NAMESPACE_URL, f"tongka:refund:{operator.id}:{idempotency_key}"),
        )
        return 201, RefundOut.model_validate(record, from_attributes=True).model_dump(mode="json")

    fp = idempotency.fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    code, content = idempotency.run_once(session, operator.id, idempotency_key, fp, produce)
    return JSONResponse(content, status_code=code)
