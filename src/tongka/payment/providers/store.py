"""Payments taken at a store counter: cash, the card terminal, or a QR code scanned at the till.

No provider calls back: staff record the payment (`POST /api/v1/admin/payments/{id}/record`)
once the money is in the till or the terminal's slip is printed, and that record is the
payment's confirmation. A refund at a store is paid out at the counter, so it is done as
soon as it is recorded.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import httpx

from tongka.config import Settings
from tongka.payment.providers.base import (
    CallbackAnswer,
    Checkout,
    InvalidCallback,
    PaymentEvent,
    PaymentRequest,
    PaymentStatus,
    RefundRequest,
    RefundResult,
)

METHODS = ("cash", "card_terminal", "store_qr")


class StoreProvider:
    name = "store"

    def start(self, request: PaymentRequest) -> Checkout:
        # What staff key into the till or terminal, so the slip and the payment can be matched.
        return Checkout(provider_reference="ST-" + secrets.token_hex(4).upper())

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        raise InvalidCallback()  # nothing calls back for a store payment

    def acknowledge(self) -> CallbackAnswer:
        return CallbackAnswer(200, "")

    def query(self, payment_id: str, provider_reference: str | None) -> PaymentStatus:
        return PaymentStatus(
            "pending", provider_reference
        )  # only staff know: their record settles it

    def close(self, payment_id: str, provider_reference: str | None) -> None:
        return None

    def refund(self, request: RefundRequest) -> RefundResult:
        return RefundResult(
            provider_refund_id="ST-RF-" + request.refund_id.replace("-", "")[:12].upper(),
            status="succeeded",
        )


def build(settings: Settings, http: httpx.Client) -> StoreProvider:
    return StoreProvider()
