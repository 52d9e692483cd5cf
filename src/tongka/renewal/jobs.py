"""Payment jobs: settle what callbacks never told us, close what may no longer be paid.

`tongka payments sync` and the scheduled jobs (`tongka.jobs`: `payments-sync`, and `orders-expire`
with `close_unpaid`) run them (part of the renewal flow: a payment settled here is
confirmed by `flow.confirm`, as a callback's would be); each is safe to run from several workers at once
(every change goes through the same guarded paths as a callback) and to run again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from tongka import clock
from tongka.payment import refunds
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.payment.providers.base import Provider, ProviderUnavailable
from tongka.renewal import flow

log = structlog.get_logger()


@dataclass
class SyncReport:
    settled: int = 0  # pending payments the provider said succeeded or failed
    closed: int = 0  # pending payments of closed orders, closed at the provider
    refunds_sent: int = 0  # refunds recorded but not yet accepted by the provider
    unreachable: int = 0


def sync(
    session: Session,
    providers: Mapping[str, Provider],
    *,
    older_than: timedelta = timedelta(minutes=2),
    receipt_key: str | None = None,
    now: datetime | None = None,
) -> SyncReport:
    now = now or clock.now()
    report = SyncReport()
    for payment, order_status in flow.pending_payments(session, now - older_than):
        _ask(session, providers, payment, order_status, report, receipt_key, now)

    for record in refunds.unsent(session):
        payment = payments.get(session, record.payment_id)
        try:
            refunds.send(providers, record, payment)
            if record.status == "succeeded":
                session.flush()
                flow.refund_went_through(session, payment)
            report.refunds_sent += 1
        except ProviderUnavailable:
            report.unreachable += 1
    return report


def close_unpaid(
    session: Session,
    providers: Mapping[str, Provider],
    *,
    receipt_key: str | None = None,
    now: datetime | None = None,
) -> SyncReport:
    """The pending payments of expired or cancelled orders, however young: each provider is asked
    first (a payment made at the last moment is settled, as `sync` would), the rest closed there."""
    now = now or clock.now()
    report = SyncReport()
    for payment, order_status in flow.pending_payments(
        session, now, order_statuses=("expired", "cancelled")
    ):
        _ask(session, providers, payment, order_status, report, receipt_key, now)
    return report


def _ask(
    session: Session,
    providers: Mapping[str, Provider],
    payment: Payment,
    order_status: str | None,
    report: SyncReport,
    receipt_key: str | None,
    now: datetime,
) -> None:
    """Ask the payment's provider where it stands: settle it if it succeeded or failed there; close it
    there if its order may no longer be paid."""
    provider = providers.get(payment.provider)
    if provider is None:
        return
    try:
        status = provider.query(str(payment.id), payment.provider_reference)
        if status.status == "succeeded":
            # The callback never came (or was lost): settle as if it had, with the provider's figures.
            flow.confirm(
                session,
                payment,
                "succeeded",
                status.amount if status.amount is not None else payment.amount,
                status.currency or payment.currency,
                receipt_key=receipt_key,
            )
            report.settled += 1
        elif status.status in ("failed", "closed"):
            flow.confirm(session, payment, "failed", payment.amount, payment.currency)
            report.settled += 1
        elif order_status in ("expired", "cancelled"):
            provider.close(str(payment.id), payment.provider_reference)
            payment.status, payment.settled_at = "cancelled", now
            report.closed += 1
    except ProviderUnavailable:
        report.unreachable += 1
        log.warning(
            "payment_sync_unreachable", payment_id=str(payment.id), provider=payment.provider
        )
