"""Auto-renew: a line whose data in a zone fell below its rule's threshold (or, with the rule's
`forecast_days`, is forecast to run out in fewer days) buys the rule's pack.

`run` (the `autorenew` job, every 30 s) evaluates each active rule in a transaction of its own:

1. the rule locked; the line's balance read (`ledger.buckets.line_balance`); below the threshold
   (or, above it, the forecast's expected run-out fewer than `forecast_days` Hong Kong days away),
   the crossing's attempt is claimed (unique per rule and crossing: two servers evaluating at once
   buy once, the second's insert fails); the order made through the flow (channel `auto`) with its
   payment; over the month's cap (succeeded and pending attempts of the Hong Kong month, this
   order included) it is undone and the customer told, once per crossing;
2. from the wallet: the money moved and the payment confirmed in that same transaction
   (`wallet.service.pay`, then `flow.confirm`: bucket, receipt, as any renewal); the wallet too
   poor: the payment fails, the order is cancelled.

Each result is told to the customer (`alerts.fire`: `auto_renew_done` or `auto_renew_failed`,
keyed by the attempt). Three payment failures in a row pause the rule (`active` false) until its
owner sets it again.

A saved card (source `card`, the account's `AutoRenewCard`) is charged in the three steps of
`renewal/ordering.py`: step 1 commits the order, its payment and the attempt (pending, so it
counts against the cap); `charge` asks the card provider outside any transaction (an
off-session PaymentIntent confirmed at once with the saved PaymentMethod), then records the
outcome in a transaction of its own. The provider's webhook, which may come before or after,
is applied once by the same guarded settlement.

An Alipay agreement (source `alipay_agreement`, the account's `AutoRenewAgreement`) is charged
in the same three steps: `alipay.trade.pay` with the agreement number (GENERAL_WITHHOLDING),
outside any transaction; a decline is a payment failure, counted as a card's. A WeChat Pay
委托代扣 contract (source `wechat_agreement`) likewise: `/v3/papay/pay/transactions/apply` with
the contract id, its outcome read back by query.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.orm import Session, sessionmaker

from tongka import clock
from tongka.account.models import Account, Line
from tongka.alerts import service as alerts
from tongka.autorenew import service as rules
from tongka.autorenew.models import AutoRenewAttempt, AutoRenewRule
from tongka.config import Settings
from tongka.db import transaction
from tongka.errors import TongkaError
from tongka.forecast import service as forecasts
from tongka.ledger import buckets
from tongka.money import Money, format_bytes
from tongka.money import currency as as_currency
from tongka.order import service as orders
from tongka.order.models import Order
from tongka.payment import service as payments
from tongka.payment.models import Payment
from tongka.payment.providers.base import (
    Checkout,
    PaymentRequest,
    Provider,
    ProviderUnavailable,
    SavesCards,
    SignsAgreements,
)
from tongka.renewal import flow
from tongka.wallet import service as wallets

log = structlog.get_logger()

METHODS = {
    "wallet": "wallet",
    "card": "saved_card",
    "alipay_agreement": "alipay_agreement",
    "wechat_agreement": "wechat_agreement",
}


@dataclass
class Report:
    bought: int = 0
    failed: int = 0
    capped: int = 0
    paused: int = 0

    def line(self) -> str:
        return (
            f"bought {self.bought}, payment failed {self.failed}, over the cap {self.capped}, "
            f"rules paused {self.paused}"
        )


def run(
    sessions: sessionmaker[Session], providers: Mapping[str, Provider], settings: Settings
) -> Report:
    """Evaluate every active rule, each in its own transaction (one failing leaves the others)."""
    with transaction(sessions, read_only=True) as session:
        ids = rules.active_rule_ids(session)
    report = Report()
    for rule_id in ids:
        try:
            with transaction(sessions) as session:
                made = evaluate(session, rule_id, providers, settings, report)
            if isinstance(made, Charge):
                charge(sessions, providers, settings, made, report)
        except Exception:  # one rule's trouble (logged) never stops the others'
            log.exception("auto_renew_failed", rule_id=str(rule_id))
    return report


FORECAST_PURCHASE_SPACING = timedelta(days=1)


def evaluate(
    session: Session,
    rule_id: uuid.UUID,
    providers: Mapping[str, Provider],
    settings: Settings,
    report: Report,
) -> AutoRenewAttempt | Charge | None:
    """One rule: the attempt made for its line's crossing now, or None (above the threshold,
    paused, or the crossing's attempt made before, here or by another server); for a saved card,
    the charge to make once this transaction has committed."""
    rule = rules.lock(session, rule_id)
    if rule is None or not rule.active:
        return None
    now = clock.now()
    balance = buckets.line_balance(session, rule.line_id, now)

    def runs_out_soon() -> bool:
        # A forecast's purchase at most once a day: a pack too small to push the run-out past D
        # days would otherwise buy again at the next run, every 30 s, up to the cap.
        if rules.bought_since(session, rule, now - FORECAST_PURCHASE_SPACING):
            return False
        days = rule.forecast_days or 0
        return forecasts.days_left(session, rule.line_id, rule.zone, now, within=days) is not None

    key = rules.crossing(rule, balance, now, runs_out_soon)
    if key is None:
        return None
    attempt = rules.claim(session, rule, key, now)
    if attempt is None:
        return None
    account = session.get_one(Account, rule.account_id)
    line = session.get_one(Line, rule.line_id)
    made = session.begin_nested()  # undone if the order would pass the cap
    try:
        order, payment, opening = flow.order_with_payment(
            session,
            account,
            line_id=rule.line_id,
            pack_id=rule.pack_id,
            currency=rule.currency,
            channel="auto",
            method=METHODS[rule.source],
            providers=providers,
            base_url=settings.public_base_url,
            payment_ttl_seconds=settings.order_payment_ttl_seconds,
            secret=settings.secret_key.get_secret_value(),
            receipt_key=settings.receipt_key,
        )
    except TongkaError as refusal:  # the pack no longer sold, no price in the currency, ...
        made.rollback()
        _failed(session, account, line, rule, attempt, refusal.code, report)
        return attempt
    amount = order.amount
    if rules.spent(session, rule.line_id, rule.currency, attempt.month) + amount > rule.monthly_cap:
        made.rollback()  # the order, its payment and its quote's holds: never made
        rules.capped(session, attempt)
        _tell_failed(session, account, line, rule, attempt, "monthly_cap", amount)
        report.capped += 1
        return attempt
    made.commit()
    attempt.order_id, attempt.payment_id, attempt.amount = order.id, payment.id, order.amount
    if payment.provider == "free":  # offers brought it to 0: confirmed already
        return _done(session, account, line, rule, attempt, order, report)
    if rule.source == "card":
        card = rules.card_of(session, account.id)
        provider = providers.get(payment.provider)
        if card is None or opening is None or not isinstance(provider, SavesCards):
            _fail_payment(session, account, order.id, payment)
            _failed(session, account, line, rule, attempt, "card_unavailable", report)
            return attempt
        # Committed first (with the attempt pending, counted against the cap); the card is
        # charged after, outside any transaction (`charge`).
        return Charge(attempt.id, rule.id, payment.id, opening.request, card.customer, card.method)
    if rule.source in rules.AGREEMENT_SOURCES:
        agreement = rules.agreement_of(session, account.id, rules.AGREEMENT_SOURCES[rule.source])
        provider = providers.get(payment.provider)
        if agreement is None or opening is None or not isinstance(provider, SignsAgreements):
            _fail_payment(session, account, order.id, payment)
            _failed(session, account, line, rule, attempt, "agreement_unavailable", report)
            return attempt
        return Charge(
            attempt.id,
            rule.id,
            payment.id,
            opening.request,
            "",
            agreement.agreement_no,
            provider=payment.provider,
        )
    try:
        with session.begin_nested():
            wallets.pay(
                session,
                account.id,
                payment.amount,
                payment.currency,
                reference=f"payment:{payment.id}",
            )
    except TongkaError as refusal:  # too poor, no wallet, or one in another currency
        _fail_payment(session, account, order.id, payment)
        _failed(session, account, line, rule, attempt, refusal.code, report)
        return attempt
    flow.confirm(
        session,
        payment,
        "succeeded",
        payment.amount,
        payment.currency,
        receipt_key=settings.receipt_key,
    )
    return _done(session, account, line, rule, attempt, order, report)


@dataclass(frozen=True)
class Charge:
    """A saved card to charge for a committed attempt: asked outside any transaction."""

    attempt_id: uuid.UUID
    rule_id: uuid.UUID
    payment_id: uuid.UUID
    request: PaymentRequest
    customer: str
    method: str  # the saved card's id, or the agreement's number
    provider: str = "stripe"  # the card provider, or the wallet of an agreement


def charge(
    sessions: sessionmaker[Session],
    providers: Mapping[str, Provider],
    settings: Settings,
    due: Charge,
    report: Report,
) -> None:
    """Charge the saved card (no transaction open), then record the outcome in one: the bucket and
    receipt as any renewal's, or the failure. A provider that does not answer is a failure too;
    should its charge have gone through after all, its webhook finds the order cancelled and the
    money is refunded (`flow.confirm`)."""
    provider = providers.get(due.provider)
    try:
        if isinstance(provider, SignsAgreements) and due.provider != "stripe":
            status = provider.charge_agreement(due.request, due.method)
        else:
            assert isinstance(provider, SavesCards)
            status = provider.charge_saved(due.request, due.customer, due.method)
        outcome, reference = status.status, status.provider_reference
    except ProviderUnavailable:
        outcome, reference = "unavailable", None
    with transaction(sessions) as session:
        attempt = session.get_one(AutoRenewAttempt, due.attempt_id)
        rule = rules.lock(session, due.rule_id)
        payment = payments.get(session, due.payment_id)
        if reference and payment.provider_reference is None:
            flow.payment_opened(session, payment.id, Checkout(provider_reference=reference))
        line = session.get_one(Line, attempt.line_id)
        account = session.get_one(Account, line.account_id)
        order = orders.get(session, payment.order_id) if payment.order_id else None
        assert order is not None
        if outcome == "succeeded":
            flow.confirm(
                session,
                payment,
                "succeeded",
                payment.amount,
                payment.currency,
                receipt_key=settings.receipt_key,
            )
            if rule is None:  # removed meanwhile: the purchase still stands
                rules.succeeded(session, None, attempt)
                return
            _done(session, account, line, rule, attempt, order, report)
            return
        _fail_payment(session, account, order.id, payment)
        declined = "card_declined" if due.provider == "stripe" else "agreement_declined"
        reason = declined if outcome == "failed" else "provider_unavailable"
        if rule is None:  # removed meanwhile: the attempt still ends
            rules.failed(session, None, attempt, reason)
            return
        _failed(session, account, line, rule, attempt, reason, report)


def _fail_payment(
    session: Session, account: Account, order_id: uuid.UUID, payment: Payment
) -> None:
    """The attempt's payment failed: its order is cancelled (its offers go back)."""
    flow.confirm(session, payment, "failed", payment.amount, payment.currency)
    flow.cancel(session, account, order_id)


def _price(amount: int, currency: str, language: str) -> str:
    return Money(amount, as_currency(currency)).format(language)


def _done(
    session: Session,
    account: Account,
    line: Line,
    rule: AutoRenewRule,
    attempt: AutoRenewAttempt,
    order: Order,
    report: Report,
) -> AutoRenewAttempt:
    rules.succeeded(session, rule, attempt)
    alerts.fire(
        session,
        account=account,
        kind="auto_renew_done",
        key=f"auto_renew:{attempt.id}",
        line=line,
        pack=order.pack.name(account.language),
        volume=format_bytes(order.volume_bytes),
        amount=_price(attempt.amount, attempt.currency, account.language),
    )
    report.bought += 1
    log.info("auto_renew_bought", rule_id=str(rule.id), order_id=str(attempt.order_id))
    return attempt


def _failed(
    session: Session,
    account: Account,
    line: Line,
    rule: AutoRenewRule,
    attempt: AutoRenewAttempt,
    reason: str,
    report: Report,
) -> None:
    paused = rules.failed(session, rule, attempt, reason[:64])
    _tell_failed(session, account, line, rule, attempt, reason, attempt.amount, paused)
    report.failed += 1
    report.paused += paused
    log.info("auto_renew_payment_failed", rule_id=str(rule.id), reason=reason, paused=paused)


def _tell_failed(
    session: Session,
    account: Account,
    line: Line,
    rule: AutoRenewRule,
    attempt: AutoRenewAttempt,
    reason: str,
    amount: int,
    paused: bool = False,
) -> None:
    alerts.fire(
        session,
        account=account,
        kind="auto_renew_failed",
        key=f"auto_renew:{attempt.id}",
        line=line,
        reason="cap"
        if reason == "monthly_cap"
        else ("card" if rule.source == "card" else rule.source),
        paused=paused,
        amount=_price(amount, attempt.currency, account.language),
        cap=_price(rule.monthly_cap, rule.currency, account.language),
    )
