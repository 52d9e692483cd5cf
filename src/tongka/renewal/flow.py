"""The renewal flow: the one place that says what a renewal does, from quote to receipt.

A renewal spans five domains that know nothing of each other: `promotion` (the quote
and its offers), `order` (the order and its states), `payment` (the attempt and the
money), the ledger (the bucket) and `receipt` (the signed receipt and its email). This
module calls them top to bottom, handing each plain values; they never call back up.
Every channel (the app API, the web site, the store counter, the jobs) goes through
these entry points:

- `quote`: price a pack for a customer now and hold its offers (promotion).
- `make_order`: the order at its quote's price (made on the spot if none is given);
  `order_with_payment`: that, then its payment attempt's row (an order of 0 is confirmed
  at once); `open_payment` asks the provider, outside any transaction, and
  `payment_opened` records its answer in the next (`unopened` carries on an order whose
  caller stopped in between; `renewal/ordering.py` runs the three for the app and the store
  counter); `place_order` does all three in one transaction, for the demo loader.
- `confirm`: a verified payment outcome (a provider's callback, a store's till, the
  sync job). On success, in this order: the payment is settled and the money booked as
  a sale (payment, ledger); the order is paid (an expired order first retakes its
  offers' budgets; a cancelled one cannot be paid); it is fulfilled: the pack's bucket
  is granted (ledger), the order moves to `fulfilled`, its offers are confirmed and
  their bonus buckets granted (promotion), open charging sessions of the line are told
  of the new quota (charging outbox); the receipt is numbered, signed and its email
  queued (receipt, notify outbox); a payment for an order that could not be paid is
  recorded for a full refund. A failure only marks the payment failed.
- `handle_callback`: a provider's callback: verified and stored in the inbox
  (payment), then applied by `confirm` or, for one of our refunds, by `settle_refund`.
- `refund`, `settle_refund`: money back through the provider, data taken back from the
  bucket; once the payment is refunded in full, the offers go back to their budgets.
- `cancel`, `expire_unpaid`: an unpaid order (or wallet top-up) closes; its offers go back.
- A wallet top-up's payment (no order) takes the same callback and sync paths and is applied
  by `topups.apply`: the wallet credited once, no bucket, no receipt (renewal/topups.py).

One transaction: each entry point runs inside the caller's one transaction (a request,
a job, a CLI command; see db.py) and never commits; the one outbound call, `open_payment`,
runs between two of them (renewal/api.py). Row locks are taken in one order:
the account, then the order, then the payment, then the receipt counter; the receipt is
issued last, and the routes commit as soon as the flow returns, because every receipt of
an issuer waits on its counter until then. Crash between
steps: as everything from the inbox row to the receipt and the queued messages commits
together, a crash before the commit leaves nothing (the provider calls back again, or
`tongka payments sync` asks it), and a crash after leaves everything done. Nothing is
repeated: the inbox is unique on (provider, event id), the payment and order moves are
guarded updates under their row locks, and the receipt is unique per payment. Messages
(the email, the charging notification) are outbox rows sent by workers after the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session, lazyload

from tongka import clock
from tongka.account import lines
from tongka.account.models import Account, Line
from tongka.alerts import service as alerts
from tongka.catalog import service as catalog
from tongka.catalog.models import Pack
from tongka.charging import notify as charging_notify
from tongka.counter import sales as counter_sales
from tongka.ledger import buckets
from tongka.order import service as orders
from tongka.order.models import Order
from tongka.payment import refunds
from tongka.payment import service as payments
from tongka.payment.models import Payment, Refund
from tongka.payment.providers.base import CallbackAnswer, Checkout, Provider
from tongka.promotion import pricing
from tongka.promotion import service as promotions
from tongka.promotion.models import Quote
from tongka.receipt import service as receipts
from tongka.renewal import topups
from tongka.wallet import service as wallets
from tongka.wallet.models import WalletTopup

log = structlog.get_logger()


# -- before payment ------------------------------------------------------------------------


def quote(
    session: Session,
    account: Account,
    *,
    line_id: uuid.UUID,
    pack_id: uuid.UUID,
    currency: str,
    channel: str,
    coupon_code: str | None = None,
    secret: str | None = None,
) -> Quote:
    """Price a pack for the account's own line now and hold the offers it applies (promotion)."""
    line = lines.own_line(session, account, line_id)
    pack = catalog.pack_for_sale(session, pack_id, channel)
    return _quote(session, account, line, pack, currency, channel, coupon_code, secret)


def _quote(
    session: Session,
    account: Account,
    line: Line,
    pack: Pack,
    currency: str,
    channel: str,
    coupon_code: str | None,
    secret: str | None,
) -> Quote:
    return promotions.quote(
        session,
        account,
        line=line,
        pack=pack,
        currency=currency,
        channel=channel,
        is_new_customer=lambda: orders.is_new_customer(session, account.id),
        coupon_code=coupon_code,
        secret=secret,
    )


def make_order(
    session: Session,
    account: Account,
    *,
    line_id: uuid.UUID,
    pack_id: uuid.UUID,
    currency: str,
    channel: str,
    payment_ttl_seconds: int,
    quote_id: uuid.UUID | None = None,
    coupon_code: str | None = None,
    secret: str | None = None,
) -> Order:
    """An order at the price of its quote (made now if none is given), not yet paid.

    The price is the catalog's less the offers the customer has; whatever price the client
    sent plays no part. `secret` reads coupon codes. The order takes over the quote's holds.
    """
    line = lines.own_line(session, account, line_id)
    pack = catalog.pack_for_sale(session, pack_id, channel)
    if quote_id is None:
        record = _quote(session, account, line, pack, currency, channel, coupon_code, secret)
    else:
        record = promotions.use_quote(
            session,
            account,
            quote_id,
            line=line,
            pack=pack,
            currency=currency,
            channel=channel,
            coupon_code=coupon_code,
            secret=secret,
        )
    order = orders.create(
        session,
        account,
        line_id=line.id,
        pack=pack,
        channel=channel,
        price=orders.Price(
            quote_id=record.id,
            amount=record.amount,
            currency=record.currency,
            list_amount=record.list_amount,
            list_currency=record.list_currency,
            fx_rate_micros=record.fx_rate_micros,
            breakdown=record.breakdown,
        ),
        payment_ttl_seconds=payment_ttl_seconds,
    )
    promotions.attach(session, record, order.id)
    return order


def order_with_payment(
    session: Session,
    account: Account,
    *,
    line_id: uuid.UUID,
    pack_id: uuid.UUID,
    currency: str,
    channel: str,
    method: str,
    providers: Mapping[str, Provider],
    base_url: str,
    payment_ttl_seconds: int,
    quote_id: uuid.UUID | None = None,
    coupon_code: str | None = None,
    secret: str | None = None,
    receipt_key: str | None = None,
    payer_ip: str | None = None,
) -> tuple[Order, Payment, payments.Opening | None]:
    """`make_order`, then its payment attempt's row, and what to ask the provider: the caller
    commits, asks (`open_payment`, outside any transaction), then records the answer
    (`payment_opened`) in a second transaction.

    An order that offers brought to zero asks no provider (no opening): its payment of 0
    (provider `free`) is confirmed at once, so it is fulfilled and receipted like any other.
    """
    order = make_order(
        session,
        account,
        line_id=line_id,
        pack_id=pack_id,
        currency=currency,
        channel=channel,
        payment_ttl_seconds=payment_ttl_seconds,
        quote_id=quote_id,
        coupon_code=coupon_code,
        secret=secret,
    )
    payable = _payable(order, account)
    payment, opening = payments.prepare(session, payable, method, providers, base_url, payer_ip)
    if payment.provider == "free":
        confirm(session, payment, "succeeded", 0, order.currency, receipt_key=receipt_key)
    return order, payment, opening


def unopened(
    session: Session, account: Account, order_id: uuid.UUID, payment_id: uuid.UUID, base_url: str
) -> tuple[Order, Payment, payments.Opening | None]:
    """An order made by `order_with_payment` whose caller stopped before recording the
    provider's answer (a crash, a provider that did not answer): what to ask it again, or no
    opening if the answer was recorded meanwhile."""
    order = orders.own_order(session, account, order_id)
    payment = payments.get(session, payment_id)
    if payment.provider_reference is not None or payment.provider == "free":
        return order, payment, None
    return order, payment, payments.opening_of(payment, _description(order), base_url)


def open_payment(opening: payments.Opening, providers: Mapping[str, Provider]) -> Checkout:
    """Ask the provider to open the payment: an outbound call, never inside a transaction
    (it would hold the account's row lock, a pooled connection and, on SQLite, the write lock)."""
    return payments.open_checkout(opening, providers)


def payment_opened(session: Session, payment_id: uuid.UUID, checkout: Checkout) -> Payment:
    return payments.record_checkout(session, payment_id, checkout)


def place_order(
    session: Session,
    account: Account,
    *,
    providers: Mapping[str, Provider],
    **order: Any,
) -> tuple[Order, Payment]:
    """`order_with_payment` (the same arguments) with the provider asked inside the caller's
    transaction: for the demo loader (its sandbox provider answers without the network)."""
    made, payment, opening = order_with_payment(session, account, providers=providers, **order)
    if opening is not None:
        payment = payment_opened(session, payment.id, open_payment(opening, providers))
    return made, payment


def retry_payment(
    session: Session,
    account: Account,
    order_id: uuid.UUID,
    method: str,
    providers: Mapping[str, Provider],
    base_url: str,
    payer_ip: str | None = None,
) -> tuple[Order, Payment, payments.Opening | None]:
    """Another payment attempt for the owner's order still awaiting payment, its last one failed
    (or closed); asked like `order_with_payment`'s (`open_payment`, then `payment_opened`).

    An attempt still pending is carried on instead (no opening): two attempts are never open at
    once, so one click pays once. The caller has closed the failed attempt at its provider first
    (`close_attempt`): a card provider keeps a declined payment open for another card.
    """
    order = orders.own_order(session, account, order_id)
    order = orders.lock(session, order.id) or order
    if order.status != "awaiting_payment":
        raise orders.OrderStateConflict(status=order.status, target="paid")
    latest = payments.latest_payment(session, order.id)
    if latest is not None and latest.status == "pending":
        opening = None
        if latest.provider_reference is None:  # its opening never recorded: ask again
            opening = payments.opening_of(latest, _description(order), base_url, payer_ip)
        return order, latest, opening
    payable = _payable(order, account)
    payment, opening = payments.prepare(session, payable, method, providers, base_url, payer_ip)
    return order, payment, opening


def close_attempt(payment: Payment, providers: Mapping[str, Provider]) -> None:
    """Tell a failed attempt's provider it may no longer be paid (an outbound call: outside any
    transaction), before another attempt opens for the same order."""
    provider = providers.get(payment.provider)
    if provider is not None and payment.status == "failed":
        provider.close(str(payment.id), payment.provider_reference)


def checkout_url(
    order: Order, payment: Payment, providers: Mapping[str, Provider], base_url: str
) -> str | None:
    """Where the payer's browser pays the order's pending attempt (None: nowhere, e.g. a QR code)."""
    return payments.browser_url(payment, _description(order), base_url, providers)


def _payable(order: Order, account: Account) -> payments.Payable:
    """What the payment attempt's row is made from: the order's amount, its channel, the payer's region."""
    return payments.Payable(
        order_id=order.id,
        amount=order.amount,
        currency=order.currency,
        channel=order.channel,
        region=account.region,
        description=_description(order),
    )


def _description(order: Order) -> str:
    return f"tongka {order.pack.code}"  # shown by the provider


def cancel(session: Session, account: Account, order_id: uuid.UUID) -> Order:
    """The owner gives up an unpaid order; its offers go back. A payment that still succeeds later is refunded."""
    order = orders.own_order(session, account, order_id)
    order = orders.lock(session, order.id) or order
    if order.status == "cancelled":
        return order
    if not orders.transition(session, order, "cancelled", closed_at=clock.now()):
        raise orders.OrderStateConflict(status=order.status, target="cancelled")
    promotions.release_order(session, order.id, "cancelled")
    return order


def expire_unpaid(session: Session, now: datetime | None = None) -> int:
    """Close orders left unpaid past their time (their offers go back), lapsed quotes and unpaid
    wallet top-ups (`jobs.close_unpaid` then closes their payments at the provider).

    Safe to run from several workers: each move is guarded.
    """
    now = now or clock.now()
    due = orders.unpaid_due(session, now)
    promotions.release_lapsed_quotes(session, now)
    wallets.expire_topups(session, now)  # their payments are then closed as an expired order's are
    expired = 0
    for order in due:
        if orders.transition(session, order, "expired", closed_at=now):
            promotions.release_order(session, order.id, "expired")
            expired += 1
    return expired


# -- after payment -------------------------------------------------------------------------


def handle_callback(
    session: Session,
    providers: Mapping[str, Provider],
    provider_name: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    receipt_key: str | None = None,
) -> CallbackAnswer:
    """A provider's callback: verified and stored once (payment), then applied here."""
    received = payments.receive(session, providers, provider_name, headers, body)
    event, payment, inbox = received.event, received.payment, received.inbox
    if event is None or payment is None or inbox is None:
        return received.answer  # a duplicate, or not our payment: recorded, nothing to apply
    if event.refund_id is not None:
        inbox.result = settle_refund(session, payment, event.refund_id, event.outcome, event.amount)
    elif event.outcome == "refunded":
        # A refund made outside tongka (the provider's dashboard): for review.
        inbox.result = "unknown_refund"
    else:
        inbox.result, sale = _apply(session, payment, event.outcome, event.amount, event.currency)
        if sale is not None and receipt_key is not None:
            _issue(session, sale, receipt_key, None, None)  # last: see `confirm`
    log.info(
        "payment_callback", provider=provider_name, event_id=event.event_id, result=inbox.result
    )
    return received.answer


def confirm(
    session: Session,
    payment: Payment,
    outcome: str,
    amount: int,
    currency: str,
    *,
    receipt_key: str | None = None,
    store: str | None = None,
    staff: str | None = None,
) -> str:
    """Apply a verified payment outcome (succeeded / failed) to the payment and its order.

    Returns what happened: "applied", "ignored" (already settled so), "amount_mismatch"
    (held for review) or "paid_closed_order" (money for a cancelled order: refunded). A
    success gets a receipt signed with `receipt_key` (None: no receipt), numbered in the
    `store`'s sequence when given (staff: who took the money). The receipt is the last
    step: its issuer's counter stays locked until the caller commits, which it should do
    at once.
    """
    result, sale = _apply(session, payment, outcome, amount, currency)
    if sale is not None and receipt_key is not None:
        _issue(session, sale, receipt_key, store, staff)
    return result


def _apply(
    session: Session, payment: Payment, outcome: str, amount: int, currency: str
) -> tuple[str, receipts.Sale | None]:
    """Everything `confirm` does but the receipt; gives the sale to receipt when money was taken.

    A wallet top-up's payment credits the wallet instead (renewal/topups.py): no order, no receipt."""
    if payment.topup_id is not None:
        return topups.apply(session, payment, outcome, amount, currency), None
    order, payment = _lock(session, payment)
    settled = payments.settle(session, payment, outcome, amount, currency)
    if settled == "applied" and outcome == "failed":
        _alert(
            session,
            order,
            "payment_failed",
            f"payment:{payment.id}",
            amount=payment.amount,
            currency=payment.currency,
        )
    if settled != "applied" or outcome != "succeeded":
        return settled, None
    sale = _sale(
        order, payment
    )  # money was taken, for a closed order too: the payer gets a receipt
    if order.channel == "store":  # a counter's QR sale learns here that it was paid
        counter_sales.mark_paid(session, order.id, clock.now())
    if not _pay(session, order):
        # Paid for an order the customer had cancelled, or one already paid: the money goes back
        # (sent by `payments sync`).
        log.warning(
            "payment_for_closed_order", payment_id=str(payment.id), order_status=order.status
        )
        # The pack, if any, was bought by the attempt that paid: its data stays.
        refunds.for_closed_order(session, payment, refunds.Purchase(None, order.volume_bytes))
        return "paid_closed_order", sale
    return "applied", sale


def _issue(
    session: Session, sale: receipts.Sale, key: str, store: str | None, staff: str | None
) -> receipts.Receipt:
    if store is None and sale.channel == "store":
        # A counter's QR sale, confirmed by the provider's callback: the receipt still names the
        # store and the agent who sold it.
        issuer = counter_sales.receipt_issuer(session, sale.order_id)
        if issuer is not None:
            store, staff = issuer
    return receipts.issue(
        session, sale, signing_key=key, issuer=store or receipts.ONLINE, store=store, staff=staff
    )


def _lock(session: Session, payment: Payment) -> tuple[Order, Payment]:
    """Lock the payment's order, then the payment, both fresh from the database."""
    order = orders.lock(session, _order_id(payment))
    assert order is not None
    return order, payments.lock(session, payment.id)


def _order_id(payment: Payment) -> uuid.UUID:
    """The order a payment pays; a wallet top-up's payment has none, so what needs one is refused."""
    if payment.order_id is None:
        raise orders.OrderNotFound()
    return payment.order_id


def _pay(session: Session, order: Order) -> bool:
    """Pay and fulfil a locked order: the bucket exists exactly when the order is fulfilled.

    False if the order can no longer be paid (cancelled, paid already, or expired and its offers'
    budgets spent meanwhile): the caller refunds the money rather than overspend or charge twice.
    """
    if "paid" not in orders.ALLOWED[order.status]:
        # Cancelled, or already paid by another attempt (a retry while a declined card's payment
        # was still open): either way this money is not owed.
        return False
    if order.status == "expired" and not promotions.retake(session, order.id):
        return False
    if orders.transition(session, order, "paid", paid_at=clock.now()):
        _fulfil(session, order)
    return True


def _fulfil(session: Session, order: Order) -> None:
    now = clock.now()
    bucket = buckets.grant(
        session,
        line_id=order.line_id,
        zone=order.zone,
        amount=order.volume_bytes,
        valid_from=now,
        expires_at=now + timedelta(days=order.validity_days),
        reason="pack_purchase",
        reference=f"order:{order.id}",
    )
    orders.transition(session, order, "fulfilled", fulfilled_at=now, bucket_id=bucket.id)
    promotions.fulfil(session, promotions.OrderRef(order.id, order.line_id, order.breakdown), now)
    # A session in progress on the line hears of its new quota now, not at its next update.
    charging_notify.quota_changed(session, order.line_id)
    # By SMS only: the receipt's email already tells of it (`alerts.Kind.email_elsewhere`).
    _alert(
        session,
        order,
        "renewal_confirmed",
        f"order:{order.id}",
        zone=order.zone,
        volume=order.volume_bytes,
        days=order.validity_days,
    )


def _alert(session: Session, order: Order, kind: str, key: str, **params: Any) -> None:
    # Not the line's real-name record: an alert needs only its numbers.
    line = session.get_one(Line, order.line_id, options=[lazyload(Line.real_name)])
    account = session.get_one(Account, order.account_id)
    alerts.fire(session, account=account, kind=kind, key=key, line=line, **params)


def _sale(order: Order, payment: Payment) -> receipts.Sale:
    if payment.status != "succeeded" or payment.order_id != order.id:
        raise ValueError("a receipt is issued only for a succeeded payment of this order")
    return receipts.Sale(
        payment_id=payment.id,
        order_id=order.id,
        account_id=order.account_id,
        line_id=order.line_id,
        channel=order.channel,
        pack_code=order.pack.code,
        pack_names=dict(order.pack.names),
        zone=order.zone,
        volume_bytes=order.volume_bytes,
        validity_days=order.validity_days,
        price=pricing.of_order(order),
        paid_amount=payment.amount,
        paid_currency=payment.currency,
        method=payment.method,
        provider=payment.provider,
        reference=payment.provider_reference or "",
    )


def issue_receipt(
    session: Session,
    payment: Payment,
    *,
    signing_key: str,
    issuer: str = receipts.ONLINE,
    store: str | None = None,
    staff: str | None = None,
) -> receipts.Receipt:
    """The receipt of a succeeded payment (made once): for a payment confirmed without one."""
    order = orders.get(session, _order_id(payment))
    return receipts.issue(
        session,
        _sale(order, payment),
        signing_key=signing_key,
        issuer=issuer,
        store=store,
        staff=staff,
    )


# -- refunds -------------------------------------------------------------------------------


def _purchase(order: Order) -> refunds.Purchase:
    return refunds.Purchase(bucket_id=order.bucket_id, volume_bytes=order.volume_bytes)


def purchase_of(session: Session, payment: Payment) -> refunds.Purchase:
    """What a payment bought (its order's bucket and size), for refunds; a top-up bought no data."""
    if payment.topup_id is not None:
        return refunds.Purchase(bucket_id=None, volume_bytes=0)
    return _purchase(orders.get(session, _order_id(payment)))


def refund(
    session: Session,
    providers: Mapping[str, Provider],
    payment_id: uuid.UUID,
    *,
    amount: int,
    reason: str,
    requested_by: str,
    refund_id: uuid.UUID,
) -> Refund:
    """Refund `amount` of a payment through its provider. Asking again with the same `refund_id` refunds once."""
    existing = refunds.existing(session, refund_id)
    if existing is not None:
        return existing
    payment = payments.get(session, payment_id)
    if payment.topup_id is not None:
        # Its money is in the wallet, maybe spent: refunding it means taking it back from there first.
        raise topups.TopupNotRefundable()
    order, payment = _lock(session, payment)
    record = refunds.refund(
        session,
        providers,
        payment,
        _purchase(order),
        amount=amount,
        reason=reason,
        requested_by=requested_by,
        refund_id=refund_id,
    )
    if record.status == "succeeded":
        refund_went_through(session, payment)
    return record


def settle_refund(
    session: Session, payment: Payment, refund_id: str, outcome: str, amount: int
) -> str:
    """A provider's word on one of our refunds (went through, or failed: then booked back)."""
    result = refunds.settle(
        session, payment, purchase_of(session, payment), refund_id, outcome, amount
    )
    if result == "applied" and outcome == "refunded":
        refund_went_through(session, payment)
    return result


def refund_went_through(session: Session, payment: Payment) -> None:
    """Once the whole payment is refunded, its order's offers are released and bonus data taken back."""
    if payment.order_id is not None and refunds.refunded_in_full(session, payment):
        promotions.release_refunded(session, payment.order_id)


def paid_order(session: Session, payment_id: uuid.UUID) -> tuple[Order, receipts.Receipt | None]:
    """A payment's order and its receipt (None: none issued), as the store counter shows them."""
    payment = payments.get(session, payment_id)
    return orders.get(session, _order_id(payment)), receipts.of_payment(session, payment.id)


def pending_payments(
    session: Session, older_than: datetime, *, order_statuses: tuple[str, ...] | None = None
) -> list[tuple[Payment, str | None]]:
    """Payments still pending since before `older_than` (of orders or wallet top-ups in `order_statuses`,
    if given), with their order's or top-up's status (for the payment jobs)."""
    status = func.coalesce(Order.status, WalletTopup.status)
    query = (
        select(Payment, status)
        .outerjoin(Order, Order.id == Payment.order_id)
        .outerjoin(WalletTopup, WalletTopup.id == Payment.topup_id)
        .where(Payment.status == "pending", Payment.created_at <= older_than)
        .order_by(Payment.created_at)
    )
    if order_statuses is not None:
        query = query.where(status.in_(order_statuses))
    return [(payment, status) for payment, status in session.execute(query).all()]
