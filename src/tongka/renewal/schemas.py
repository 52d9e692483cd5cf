"""Request and response shapes of the renewal routes: an order with its latest payment."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tongka.order.models import Order
from tongka.payment.models import Payment
from tongka.promotion import pricing


class OrderCreate(BaseModel):
    line_id: uuid.UUID
    pack_id: uuid.UUID
    currency: str = Field(pattern="^(CNY|HKD)$")
    payment_method: str = Field(pattern="^[a-z_]{2,16}$")
    quote_id: uuid.UUID | None = Field(
        default=None, description="charge exactly this quote (POST /api/v1/quotes) while it holds"
    )
    coupon_code: str | None = Field(
        default=None, max_length=40, description="case-insensitive; hyphens optional"
    )


class PaymentOut(BaseModel):
    id: uuid.UUID
    status: str
    provider: str
    method: str
    amount: int
    currency: str
    checkout_url: str | None
    qr_content: str | None
    created_at: datetime
    settled_at: datetime | None


class OrderPackOut(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    zone: str
    volume_bytes: int
    validity_days: int


class OrderOut(BaseModel):
    id: uuid.UUID
    status: str
    line_id: uuid.UUID
    channel: str
    pack: OrderPackOut
    amount: int
    currency: str
    # The catalog price it came from, and the rate locked when the order was made (when paid in another currency).
    list_amount: int
    list_currency: str
    exchange_rate: str | None = Field(
        description='quote units per list-currency unit, e.g. "0.923400"'
    )
    price: dict[str, Any] = Field(
        description="the breakdown: list price, offers applied (discounts in the list currency, bonus data), "
        "subtotal, exchange_rate when converted, total; the same on the receipt"
    )
    quote_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    fulfilled_at: datetime | None
    bucket_id: uuid.UUID | None
    payment: PaymentOut | None

    @classmethod
    def of(cls, order: Order, payment: Payment | None, language: str) -> OrderOut:
        return cls(
            id=order.id,
            status=order.status,
            line_id=order.line_id,
            channel=order.channel,
            pack=OrderPackOut(
                id=order.pack_id,
                code=order.pack.code,
                name=order.pack.name(language),
                zone=order.zone,
                volume_bytes=order.volume_bytes,
                validity_days=order.validity_days,
            ),
            amount=order.amount,
            currency=order.currency,
            list_amount=order.list_amount,
            list_currency=order.list_currency,
            exchange_rate=None
            if order.fx_rate_micros is None
            else f"{order.fx_rate_micros / 1_000_000:.6f}",
            price=pricing.of_order(order),
            quote_id=order.quote_id,
            created_at=order.created_at,
            expires_at=order.expires_at,
            paid_at=order.paid_at,
            fulfilled_at=order.fulfilled_at,
            bucket_id=order.bucket_id,
            payment=PaymentOut.model_validate(payment, from_attributes=True) if payment else None,
        )


def order_json(order: Order, payment: Payment | None, language: str) -> Any:
    """An order as the API answers it, in its buyer's language (stored under an Idempotency-Key)."""
    return OrderOut.of(order, payment, language).model_dump(mode="json")
