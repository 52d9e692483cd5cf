"""Reading and driving the simulated providers from a test: their records, the payer paying, and
the generic sandbox provider's signed callbacks.

`tests.factories.pay` pays an order the way the demo does (`POST /sandbox/payments/{id}/complete`);
these are for the provider tests that need the simulator's own record, or its `complete` called
from outside the app, as a sandbox tool would call it.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import anyio
from sqlalchemy import select
from starlette.requests import Request

from tongka.config import Settings
from tongka.payment.providers.sandbox import SIGNATURE_HEADER, sign
from tongka.sandbox import generic
from tongka.sandbox.store import SimPayment, sessions


def record(settings: Settings, provider: str, reference: str) -> SimPayment:
    """The simulator's record by the provider's own id (Stripe's PaymentIntent, PayPal's order)."""
    with sessions(settings.sandbox_store_url)() as s:
        found = s.get(SimPayment, (provider, reference))
    assert found is not None, (provider, reference)
    return found


def record_of(settings: Settings, provider: str, payment_id: str) -> SimPayment:
    """The simulator's record of one of our payments: WeChat and Alipay know it by its 32 hex digits."""
    with sessions(settings.sandbox_store_url)() as s:
        return s.scalars(
            select(SimPayment).where(
                SimPayment.provider == provider,
                SimPayment.merchant_reference == uuid.UUID(payment_id).hex,
            )
        ).one()


def complete(app: Any, sim: SimPayment, outcome: str = "succeeded") -> int:
    """The payer pays (or fails) at the provider: its simulator's `complete`, from outside the app."""
    request = Request({"type": "http", "app": app, "method": "POST", "path": "/", "headers": []})
    simulator = generic.SIMULATORS[sim.provider]
    status: int = anyio.run(simulator.complete, request, sim, outcome)
    return status


def event(
    order: dict[str, Any], outcome: str = "succeeded", event_id: str | None = None, **data: object
) -> bytes:
    """The generic sandbox provider's callback about an order's payment (`data` overrides its fields)."""
    payment = order["payment"]
    body = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": f"payment.{outcome}",
        "created": int(time.time()),
        "data": {
            "reference": "sbx_x",
            "merchant_reference": payment["id"],
            "amount": payment["amount"],
            "currency": payment["currency"],
            **data,
        },
    }
    return json.dumps(body).encode()


def signed(settings: Settings, body: bytes, at: int | None = None) -> dict[str, str]:
    """The headers the sandbox provider signs a callback with, at `at` (now unless told)."""
    secret = settings.sandbox_payment_secret.get_secret_value()
    return {
        SIGNATURE_HEADER: sign(secret, body, at or int(time.time())),
        "content-type": "application/json",
    }
