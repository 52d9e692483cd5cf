"""The sandbox provider: a stand-in for a real one, with a real signature check.

Wire format (the simulator in `sandbox/generic.py` sends it): a JSON event
`{"id", "type": "payment.succeeded" | "payment.failed", "created", "data": {"reference",
"merchant_reference", "amount", "currency"}}` with the header
`Tongka-Sandbox-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under a
shared secret from the settings; events older than five minutes are refused (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping

from tongka.payment.providers.base import (
    CallbackAnswer,
    Checkout,
    EventOutcome,
    InvalidCallback,
    PaymentEvent,
    PaymentRequest,
    PaymentStatus,
    RefundRequest,
    RefundResult,
)

SIGNATURE_HEADER = "tongka-sandbox-signature"
TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class SandboxProvider:
    name = "sandbox"

    def __init__(self, secret: str, base_url: str) -> None:
        self._secret = secret
        self._base_url = base_url.rstrip("/")

    def start(self, request: PaymentRequest) -> Checkout:
        reference = "sbx_" + secrets.token_hex(12)
        url = f"{self._base_url}/sandbox/payments/{request.payment_id}"
        return Checkout(provider_reference=reference, checkout_url=url, qr_content=url)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> PaymentEvent:
        header = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER, "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            timestamp = int(parts["t"])
        except (KeyError, ValueError):
            raise InvalidCallback() from None
        expected = sign(self._secret, body, timestamp).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            raise InvalidCallback()
        if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
            raise InvalidCallback()
        try:
            event = json.loads(body)
            data = event["data"]
            outcomes: dict[str, EventOutcome] = {
                "payment.succeeded": "succeeded",
                "payment.failed": "failed",
            }
            outcome = outcomes[event["type"]]
            return PaymentEvent(
                event_id=str(event["id"]),
                payment_id=str(data["merchant_reference"]),
                provider_reference=str(data["reference"]),
                outcome=outcome,
                amount=int(data["amount"]),
                currency=str(data["currency"]),
            )
        except (ValueError, KeyError, TypeError):
            raise InvalidCallback() from None

    def acknowledge(self) -> CallbackAnswer:
        return CallbackAnswer(200, '{"received": true}')

    # The generic sandbox keeps no records of its own: it only ever answers "not settled yet",
    # closes without complaint and refunds at once.
    def query(self, payment_id: str, provider_reference: str | None) -> PaymentStatus:
        return PaymentStatus("pending", provider_reference)

    def close(self, payment_id: str, provider_reference: str | None) -> None:
        return None

    def refund(self, request: RefundRequest) -> RefundResult:
        return RefundResult(
            provider_refund_id=f"sbx_re_{request.refund_id.replace('-', '')[:20]}",
            status="succeeded",
        )
