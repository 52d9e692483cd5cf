"""Reading and driving the simulated providers from a test: their records, and the payer paying.

`tests.factories.pay` pays an order the way the demo does (`POST /sandbox/payments/{id}/complete`);
these are for the provider tests that need the simulator's own record, or its `complete` called
from outside the app, as a sandbox tool would call it.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
from sqlalchemy import select
from starlette.requests import Request

from tongka.config import Settings
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
