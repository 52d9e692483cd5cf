"""Operator API for sales and payments: the store counter and refunds, through the renewal flow.

Who may call: staff, with a staff bearer token (`POST /api/v1/staff/token`): a store sale any
staff member, for their own store; refunds and payments admins only. A subscriber's token is 401.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tongka import idempotency
from tongka.account.lines import LineNotFound
from tongka.account.models import Account, Line
from tongka.counter import sales as counter_sales
from tongka.db import transaction
from tongka.deps import CurrentOperator, ProvidersDep, SessionDep, SettingsDep, SignedInOperator
from tongka.errors import Unprocessable
from tongka.i18n import _
from tongka.payment import refunds
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.renewal import flow, ordering
from tongka.renewal.schemas import OrderOut
from tongka.staff import audit
from tongka.staff import service as staff_service

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class StoreRequired(Unprocessable):
    code = "store_required"
    message = _("Say which store took the money.")


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
    order_id: uuid.UUID | None  # None: a wallet top-up's payment
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
    allowed = (
        refunds.refundable(session, payment, flow.purchase_of(session, payment))
        if payment.topup_id is None
        else refunds.Refundable(0, None)  # a wallet top-up is not refunded through tongka yet
    )
    return PaymentAdminOut(
        id=payment.id,
        order_id=payment.order_id,
        provider=payment.provider,
        method=payment.method,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        provider_reference=payment.provider_reference,
        refundable_amount=allowed.amount,
        unused_bytes=allowed.unused_bytes,
        refunds=[
            RefundOut.model_validate(r, from_attributes=True)
            for r in refunds.refunds_of(session, payment.id)
        ],
    )


class StoreSaleIn(BaseModel):
    line_id: uuid.UUID
    pack_id: uuid.UUID
    currency: str = Field(pattern="^(CNY|HKD)$")
    payment_method: str = Field(pattern="^(cash|card_terminal|store_qr)$")
    coupon_code: str | None = Field(
        default=None, max_length=40, description="a coupon the customer presents"
    )


class RecordIn(BaseModel):
    store: str | None = Field(
        default=None,
        pattern="^[a-z0-9][a-z0-9-]{0,31}$",
        description="the store's code, which numbers its receipts: an agent's or manager's own"
        " store (the default), any store for an admin",
    )
    reference: str | None = Field(
        default=None, max_length=64, description="the terminal slip or QR transaction number"
    )


class RecordOut(BaseModel):
    payment: PaymentAdminOut
    order_status: str
    receipt_number: str | None


@router.post("/orders", status_code=201, response_model=OrderOut)
async def store_sale(
    request: Request,
    body: StoreSaleIn,
    operator: SignedInOperator,
    settings: SettingsDep,
    providers: ProvidersDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """Store staff, at their store: sell a pack for a customer's bound line, paid at the counter (cash, card terminal, QR).

    Needs an `Idempotency-Key`. The payment stays pending until staff record it. A QR's
    provider is asked outside any transaction (`renewal/ordering.py`).
    """

    def owner(session: Session) -> Account:
        line = session.get(Line, body.line_id)
        found = session.get(Account, line.account_id) if line and line.account_id else None
        if found is None:
            raise LineNotFound()
        return found

    fp = idempotency.fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    code, content = await ordering.place(
        request.app.state.sessionmaker,
        request.app.state.gate,
        providers,
        settings,
        ordering.Keyed(idempotency_key, operator.id, fp),
        ordering.Asked(
            body.line_id,
            body.pack_id,
            body.currency,
            "store",
            body.payment_method,
            coupon_code=body.coupon_code,
        ),
        buyer=owner,
    )
    if code == 201 and operator.store_id is not None:
        # The counter's row of the sale, as the counter's page writes it: the store's till,
        # reports and commission count it, and only that store's staff record its payment.
        def counted() -> None:
            with transaction(request.app.state.sessionmaker) as session:
                counter_sales.record(
                    session,
                    operator,
                    counter_sales.Sold(
                        uuid.UUID(content["id"]),
                        uuid.UUID(content["payment"]["id"]),
                        uuid.UUID(content["pack"]["id"]),
                        body.payment_method,
                        content["currency"],
                        content["amount"],
                    ),
                )

        async with request.app.state.gate.enter(True):
            await run_in_threadpool(counted)
    return JSONResponse(content, status_code=code)


@router.post("/payments/{payment_id}/record", response_model=RecordOut)
def record_store_payment(
    payment_id: uuid.UUID,
    body: RecordIn,
    operator: SignedInOperator,
    session: SessionDep,
    settings: SettingsDep,
) -> RecordOut:
    """Store staff, at their store: the money is in the till (or the terminal slip printed); the order is paid.

    Recording twice changes nothing. The receipt is numbered in the store's own sequence.
    """
    store = body.store or operator.store_code
    if store is None:
        raise StoreRequired()
    if not operator.is_admin and store != operator.store_code:
        raise staff_service.StaffRoleRefused()
    payment = session.get(Payment, payment_id)
    if payment is None or payment.provider != "store":
        raise payments.PaymentNotFound()
    if not operator.is_admin:  # another store's sale is as unknown as none
        sale = counter_sales.sale_of_order(session, payment.order_id) if payment.order_id else None
        if sale is None or sale.store_id != operator.store_id:
            raise payments.PaymentNotFound()
    if body.reference:
        payment.provider_reference = body.reference
    flow.confirm(
        session,
        payment,
        "succeeded",
        payment.amount,
        payment.currency,
        receipt_key=settings.receipt_key,
        store=store,
        staff=operator.display_name,
    )
    order, receipt = flow.paid_order(session, payment.id)
    out = RecordOut(
        payment=_payment_out(session, payment),
        order_status=order.status,
        receipt_number=receipt.number if receipt else None,
    )
    session.commit()  # now, in this thread: the store's receipt counter is locked until then
    return out


@router.get("/payments/{payment_id}", response_model=PaymentAdminOut)
def get_payment(
    payment_id: uuid.UUID, operator: CurrentOperator, session: SessionDep
) -> PaymentAdminOut:
    """Operator admins: a payment, what can still be refunded, and its refunds."""
    return _payment_out(session, payments.get(session, payment_id))


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
    """Operator admins: refund part or all of a payment through its provider (pro-rated to unused data).

    Needs an `Idempotency-Key`: a retry refunds once.
    """

    def produce() -> tuple[int, Any]:
        record = flow.refund(
            session,
            providers,
            payment_id,
            amount=body.amount,
            reason=body.reason,
            requested_by=f"operator:{operator.username}",
            refund_id=uuid.uuid5(
                uuid.NAMESPACE_URL, f"tongka:refund:{operator.id}:{idempotency_key}"
            ),
        )
        audit.record(
            session,
            operator,
            "payment.refund",
            "payment",
            payment_id,
            after={"refund_id": record.id, "amount": record.amount, "reason": record.reason},
        )
        return 201, RefundOut.model_validate(record, from_attributes=True).model_dump(mode="json")

    fp = idempotency.fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    code, content = idempotency.run_once(session, operator.id, idempotency_key, fp, produce)
    return JSONResponse(content, status_code=code)
