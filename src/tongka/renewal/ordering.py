"""Placing an order over the network in three transactions, so that none is open while the payment
provider is asked (its call can take seconds; a transaction across it would hold the account's row
lock, a pooled connection and, on SQLite, the one write lock):

1. the order and its payment's row (`flow.order_with_payment`), with the Idempotency-Key claimed
   and a note of both ids, committed;
2. the provider asked (`flow.open_payment`), outside any transaction;
3. its answer recorded (`flow.payment_opened`) and the response stored under the key, committed.

A crash, or a provider that does not answer, leaves the order awaiting payment and the key claimed:
a retry with the key carries that order on from its note (`flow.unopened`), the provider asked again
for the same payment id, which every provider keys the attempt on. A free order, or one whose
answer was recorded before, needs no step 2. The app's API and the store counter go through
`place`; the web site will too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from tongka import idempotency
from tongka.account.models import Account
from tongka.config import Settings
from tongka.db import transaction
from tongka.errors import TongkaError
from tongka.gate import Gate
from tongka.order import service as orders
from tongka.order.models import Order
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.payment.providers.base import Checkout, Provider
from tongka.renewal import flow
from tongka.renewal.schemas import order_json

# The account the order is for, read (and its right to it checked) in step 1's transaction.
Buyer = Callable[[Session], Account]


@dataclass(frozen=True)
class Keyed:
    """The request's Idempotency-Key, whose keys it is (the caller's account), and its fingerprint."""

    key: str | None
    caller_id: uuid.UUID
    fingerprint: str


@dataclass(frozen=True)
class Asked:
    """What the customer asks for, as the channel's form or body gives it."""

    line_id: uuid.UUID
    pack_id: uuid.UUID
    currency: str
    channel: str
    method: str
    quote_id: uuid.UUID | None = None
    coupon_code: str | None = None
    payer_ip: str | None = None  # the payer's address (WeChat Pay H5 asks for it)


async def place(
    sessions: sessionmaker[Session],
    gate: Gate,
    providers: Mapping[str, Provider],
    settings: Settings,
    keyed: Keyed,
    asked: Asked,
    buyer: Buyer,
) -> tuple[int, Any]:
    """The three steps; (201, the order as the API shows it) or the response stored under the key."""
    base_url = settings.public_base_url

    def make(session: Session, account: Account) -> tuple[Order, Payment, payments.Opening | None]:
        return flow.order_with_payment(
            session,
            account,
            line_id=asked.line_id,
            pack_id=asked.pack_id,
            currency=asked.currency,
            channel=asked.channel,
            method=asked.method,
            providers=providers,
            base_url=base_url,
            payment_ttl_seconds=settings.order_payment_ttl_seconds,
            quote_id=asked.quote_id,
            coupon_code=asked.coupon_code,
            secret=settings.secret_key.get_secret_value(),
            receipt_key=settings.receipt_key,
            payer_ip=asked.payer_ip,
        )

    def order() -> idempotency.Claim | tuple[str, uuid.UUID, uuid.UUID, payments.Opening]:
        with transaction(sessions) as session:
            claim = idempotency.claim(session, keyed.caller_id, keyed.key, keyed.fingerprint)
            if claim.finished:
                return claim
            account = buyer(session)
            if claim.note is not None:
                made, payment, opening = flow.unopened(
                    session,
                    account,
                    uuid.UUID(claim.note["order_id"]),
                    uuid.UUID(claim.note["payment_id"]),
                    base_url,
                )
            else:
                try:
                    made, payment, opening = make(session, account)
                except TongkaError as refusal:
                    if refusal.commit_anyway:  # its own count kept, the key given back
                        idempotency.release(session, keyed.caller_id, str(keyed.key))
                    raise
                ids = {"order_id": str(made.id), "payment_id": str(payment.id)}
                idempotency.note(session, claim, ids)
            if opening is None:  # nothing to ask: a free order, or asked and answered before
                return _finish(session, keyed, order_json(made, payment, account.language))
            return account.language, made.id, payment.id, opening

    def opened(
        language: str, order_id: uuid.UUID, payment_id: uuid.UUID, checkout: Checkout
    ) -> idempotency.Claim:
        with transaction(sessions) as session:
            payment = flow.payment_opened(session, payment_id, checkout)
            made = orders.get(session, order_id)
            return _finish(session, keyed, order_json(made, payment, language))

    async with gate.enter(write=True):
        step = await run_in_threadpool(order)
    if not isinstance(step, idempotency.Claim):
        language, order_id, payment_id, opening = step
        checkout = await run_in_threadpool(flow.open_payment, opening, providers)
        async with gate.enter(write=True):
            step = await run_in_threadpool(opened, language, order_id, payment_id, checkout)
    assert step.status_code is not None  # a finished claim
    return step.status_code, step.response


def _finish(session: Session, keyed: Keyed, body: Any) -> idempotency.Claim:
    idempotency.finish(session, keyed.caller_id, str(keyed.key), 201, body)
    return idempotency.Claim(201, body)
