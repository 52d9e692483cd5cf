"""Wallet top-ups through the payment providers: the renewal flow's twin for money instead of a pack.

A top-up is a `WalletTopup` (wallet) and one or more payment attempts pointing at it (payment),
opened at the provider in the same three steps as an order (`start`, then `flow.open_payment`
outside any transaction, then `flow.payment_opened`). When a payment succeeds (a callback, the
sync job: both reach `apply` through `flow.confirm` / `flow.handle_callback`), the payment is
settled, its money booked into `system:wallet_funding`, and the wallet credited from there, once:
the top-up's move to `credited` is a guarded update under its row lock and the credit is keyed on
the top-up. A failed payment credits nothing; the payer may try again (a new top-up). A top-up
left unpaid expires with the orders (`flow.expire_unpaid`) and its payment is closed at the
provider (`jobs.close_unpaid`); money that arrives for it anyway is still credited. A top-up
gets no receipt (receipts are of packs sold) and is not refunded through tongka yet.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from tongka.account.models import Account
from tongka.errors import Conflict
from tongka.i18n import _
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.payment.providers.base import Provider
from tongka.wallet import service as wallets
from tongka.wallet.models import WalletTopup


class TopupNotRefundable(Conflict):
    code = "topup_not_refundable"
    message = _("A wallet top-up cannot be refunded through tongka yet.")


def start(
    session: Session,
    account: Account,
    *,
    amount: int,
    currency: str,
    channel: str,
    method: str,
    providers: Mapping[str, Provider],
    base_url: str,
    minimum: int,
    maximum: int,
    payment_ttl_seconds: int,
) -> tuple[WalletTopup, Payment, payments.Opening | None]:
    """The top-up and its payment attempt's row, and what to ask the provider (the caller commits,
    asks outside any transaction, then records the answer: as `flow.order_with_payment`)."""
    topup = wallets.start_topup(
        session,
        account,
        amount,
        currency,
        channel=channel,
        minimum=minimum,
        maximum=maximum,
        payment_ttl_seconds=payment_ttl_seconds,
    )
    payable = payments.Payable(
        order_id=None,
        topup_id=topup.id,
        amount=topup.amount,
        currency=topup.currency,
        channel=channel,
        region=account.region,
        description="tongka wallet top-up",
    )
    payment, opening = payments.prepare(session, payable, method, providers, base_url)
    return topup, payment, opening


def apply(session: Session, payment: Payment, outcome: str, amount: int, currency: str) -> str:
    """A verified outcome of a top-up's payment: settled, and on success the wallet credited once."""
    assert payment.topup_id is not None
    topup = wallets.lock_topup(session, payment.topup_id)  # the top-up, then the payment
    payment = payments.lock(session, payment.id)
    settled = payments.settle(session, payment, outcome, amount, currency)
    if settled == "applied" and outcome == "succeeded":
        wallets.credit_topup(session, topup)
    return settled
