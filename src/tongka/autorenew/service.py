"""Auto-renew rules: set, read, removed; whether a line crossed its threshold; the month's spending.

The buying itself is the renewal flow's (`renewal/autorenew.py`): this domain knows rules and
attempts, not orders or payments.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.autorenew.models import (
    AutoRenewAgreement,
    AutoRenewAttempt,
    AutoRenewCard,
    AutoRenewRule,
)
from tongka.errors import NotFound, Unprocessable
from tongka.i18n import _
from tongka.ledger.buckets import LineBalance

HONG_KONG = timezone(timedelta(hours=8), "HKT")
PAUSE_AFTER = 3  # payment failures in a row
RETRY_AFTER = timedelta(minutes=10)  # after a failed payment, before the next try
MAX_CAP = 1_000_000  # minor units a month (HK$10,000): a typo is refused, not obeyed


class RuleNotFound(NotFound):
    code = "auto_renew_not_found"
    message = _("This line has no auto-renew.")


class CardNotSaved(Unprocessable):
    code = "auto_renew_card_not_saved"
    message = _("Save a card for auto-renew first.")


class AgreementNotSigned(Unprocessable):
    code = "auto_renew_agreement_not_signed"
    message = _("Sign an Alipay agreement for auto-renew first.")


class ContractNotSigned(AgreementNotSigned):
    message = _("Sign a WeChat Pay contract for auto-renew first.")


NOT_SIGNED: dict[str, type[AgreementNotSigned]] = {
    "alipay": AgreementNotSigned,
    "wechat": ContractNotSigned,
}


# A source paid under a wallet's agreement: the provider whose agreement it needs.
AGREEMENT_SOURCES = {"alipay_agreement": "alipay", "wechat_agreement": "wechat"}


class CapInvalid(Unprocessable):
    code = "auto_renew_cap_invalid"
    message = _("The monthly limit is between 0 and {maximum}.")


@dataclass(frozen=True)
class Spec:
    """What the owner sets (checked by the API's schema, the pack and its price by the caller)."""

    zone: str
    threshold_percent: int
    pack_id: uuid.UUID
    source: str
    monthly_cap: int
    currency: str
    forecast_days: int | None = None  # also buy when the data runs out in fewer days


def of_line(session: Session, line_id: uuid.UUID) -> AutoRenewRule | None:
    return session.scalar(select(AutoRenewRule).where(AutoRenewRule.line_id == line_id))


def put(session: Session, account_id: uuid.UUID, line_id: uuid.UUID, spec: Spec) -> AutoRenewRule:
    """Set the line's rule (made or replaced); it is active again, its failures forgotten."""
    if not 0 <= spec.monthly_cap <= MAX_CAP:
        raise CapInvalid(maximum=MAX_CAP)
    if spec.source == "card" and card_of(session, account_id) is None:
        raise CardNotSaved()
    provider = AGREEMENT_SOURCES.get(spec.source)
    if provider is not None and agreement_of(session, account_id, provider) is None:
        raise NOT_SIGNED[provider]()
    rule = of_line(session, line_id)
    if rule is None:
        rule = AutoRenewRule(account_id=account_id, line_id=line_id)
        session.add(rule)
    rule.zone, rule.threshold_percent, rule.pack_id = (
        spec.zone,
        spec.threshold_percent,
        spec.pack_id,
    )
    rule.source, rule.monthly_cap, rule.currency = spec.source, spec.monthly_cap, spec.currency
    rule.forecast_days = spec.forecast_days
    rule.active, rule.consecutive_failures, rule.last_failure_at = True, 0, None
    rule.updated_at = clock.now()
    session.flush()
    return rule


def card_of(session: Session, account_id: uuid.UUID) -> AutoRenewCard | None:
    return session.scalar(select(AutoRenewCard).where(AutoRenewCard.account_id == account_id))


def save_card(
    session: Session,
    account_id: uuid.UUID,
    *,
    provider: str,
    customer: str,
    method: str,
    label: str,
) -> AutoRenewCard:
    """The account's card for auto-renew (replacing the one saved before, if any)."""
    card = card_of(session, account_id)
    if card is None:
        card = AutoRenewCard(account_id=account_id)
        session.add(card)
    card.provider, card.customer, card.method, card.label = provider, customer, method, label[:40]
    session.flush()
    return card


def agreement_of(
    session: Session, account_id: uuid.UUID, provider: str
) -> AutoRenewAgreement | None:
    return session.scalar(
        select(AutoRenewAgreement).where(
            AutoRenewAgreement.account_id == account_id, AutoRenewAgreement.provider == provider
        )
    )


def save_agreement(
    session: Session, account_id: uuid.UUID, *, provider: str, agreement_no: str, label: str
) -> AutoRenewAgreement:
    """The account's agreement with `provider` for auto-renew (replacing an earlier one)."""
    agreement = agreement_of(session, account_id, provider)
    if agreement is None:
        agreement = AutoRenewAgreement(account_id=account_id, provider=provider)
        session.add(agreement)
    agreement.agreement_no, agreement.label = agreement_no, label[:40]
    session.flush()
    return agreement


def delete(session: Session, line_id: uuid.UUID) -> None:
    rule = of_line(session, line_id)
    if rule is None:
        raise RuleNotFound()
    session.delete(rule)
    session.flush()


def active_rule_ids(session: Session) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(AutoRenewRule.id)
            .where(AutoRenewRule.active.is_(True))
            .order_by(AutoRenewRule.id)
        )
    )


def lock(session: Session, rule_id: uuid.UUID) -> AutoRenewRule | None:
    return session.scalars(
        select(AutoRenewRule)
        .where(AutoRenewRule.id == rule_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def crossing(
    rule: AutoRenewRule,
    balance: LineBalance,
    now: datetime,
    runs_out_soon: Callable[[], bool] | None = None,
) -> str | None:
    """The crossing the line is in, if its data in the rule's zone is below the threshold, or
    `runs_out_soon()` (the forecast, asked only when the threshold is not crossed and the rule has
    `forecast_days`) says so, and the rule may try now: named by the buckets counted there, so a
    purchase (a new bucket) ends it. None: neither, nothing credited to measure against (no data
    in force: renewed by hand), or a failure too recent."""
    view = balance.zones[rule.zone]
    if view.total_bytes <= 0:
        return None
    if rule.last_failure_at is not None and now < rule.last_failure_at + RETRY_AFTER:
        return None
    below = view.remaining_bytes * 100 < rule.threshold_percent * view.total_bytes
    if not below and (rule.forecast_days is None or runs_out_soon is None or not runs_out_soon()):
        return None
    ids = sorted(str(b.id) for b in balance.buckets if b.zone in (rule.zone, "both"))
    return hashlib.sha256(",".join(ids).encode()).hexdigest()[:32]


def bought_since(session: Session, rule: AutoRenewRule, since: datetime) -> bool:
    """Whether the rule bought a pack (an attempt that succeeded or is being paid) since `since`."""
    return (
        session.scalar(
            select(AutoRenewAttempt.id)
            .where(
                AutoRenewAttempt.rule_id == rule.id,
                AutoRenewAttempt.status.in_(("pending", "succeeded")),
                AutoRenewAttempt.created_at >= since,
            )
            .limit(1)
        )
        is not None
    )


def month_of(now: datetime) -> str:
    return now.astimezone(HONG_KONG).strftime("%Y-%m")


def spent(session: Session, line_id: uuid.UUID, currency: str, month: str) -> int:
    """What auto-renew spent or is spending on the line in a Hong Kong month: succeeded and pending attempts."""
    return int(
        session.scalar(
            select(func.coalesce(func.sum(AutoRenewAttempt.amount), 0)).where(
                AutoRenewAttempt.line_id == line_id,
                AutoRenewAttempt.month == month,
                AutoRenewAttempt.currency == currency,
                AutoRenewAttempt.status.in_(("pending", "succeeded")),
            )
        )
        or 0
    )


def claim(
    session: Session, rule: AutoRenewRule, crossed: str, now: datetime
) -> AutoRenewAttempt | None:
    """The attempt for this crossing, claimed; None if another evaluation claimed it first.

    Its key is the crossing, the rule's version (its owner setting it again, a higher cap say,
    tries the crossing again) and the failed tries so far in that version (a retry after a failed
    payment is another attempt): one attempt per key, however many servers evaluate at once."""
    version = int((rule.updated_at or rule.created_at).timestamp())
    prefix = f"{crossed}:{version}:"
    tries = session.scalar(
        select(func.count()).where(
            AutoRenewAttempt.rule_id == rule.id,
            AutoRenewAttempt.crossing.startswith(prefix, autoescape=True),
            AutoRenewAttempt.status == "failed",
        )
    )
    key = f"{prefix}{tries or 0}"
    attempt = AutoRenewAttempt(
        rule_id=rule.id,
        line_id=rule.line_id,
        crossing=key,
        month=month_of(now),
        currency=rule.currency,
    )
    try:
        with session.begin_nested():
            session.add(attempt)
    except IntegrityError:
        return None
    return attempt


def succeeded(session: Session, rule: AutoRenewRule | None, attempt: AutoRenewAttempt) -> None:
    attempt.status, attempt.settled_at = "succeeded", clock.now()
    if rule is not None:
        rule.consecutive_failures, rule.last_failure_at = 0, None
    session.flush()


def failed(
    session: Session, rule: AutoRenewRule | None, attempt: AutoRenewAttempt, reason: str
) -> bool:
    """A payment failure; True if the rule is now paused (three in a row)."""
    now = clock.now()
    attempt.status, attempt.reason, attempt.settled_at = "failed", reason, now
    if rule is None:
        return False
    rule.consecutive_failures += 1
    rule.last_failure_at = now
    if rule.consecutive_failures >= PAUSE_AFTER:
        rule.active = False
    session.flush()
    return not rule.active


def capped(session: Session, attempt: AutoRenewAttempt) -> None:
    """Not bought: it would have taken the month's spending above the cap (not a payment failure)."""
    attempt.status, attempt.reason, attempt.amount = "capped", "monthly_cap", 0
    attempt.settled_at = clock.now()
    session.flush()


def attempts(session: Session, line_id: uuid.UUID, limit: int = 20) -> list[AutoRenewAttempt]:
    return list(
        session.scalars(
            select(AutoRenewAttempt)
            .where(AutoRenewAttempt.line_id == line_id)
            .order_by(AutoRenewAttempt.created_at.desc())
            .limit(limit)
        )
    )


class PackNotForZone(Unprocessable):
    code = "auto_renew_pack_zone"
    message = _("This pack does not give data where the rule watches it.")


class PackNotPriced(Unprocessable):
    code = "auto_renew_pack_currency"
    message = _("This pack has no price in {currency}.")
