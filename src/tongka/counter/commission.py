"""Commission on counter sales: rates, and the monthly statement.

**Rates** are rows of `commission_rates` in basis points (250 = 2.5 %) for a pack, a store, an
agent, or a combination. A row applies to a sale when each of its set fields is the sale's. Of the
rows that apply, the most specific level wins:

    agent + pack  >  agent  >  store + pack  >  store  >  pack

(an agent row may also name the agent's store; it stays an agent row). Within that level the row
with the latest `valid_from` at or before the sale's time (paid_at) applies: a new rate is a new
row from its date, so a sale keeps the rate it was made under, and last month's statement never
changes. No row applies: no commission (0).

**Commission** = the sale's amount × rate, in the sale's currency's minor units, rounded half up
per sale (not on the month's total).

**Refunds** reverse the commission in the month the refund succeeded (settled, else created): a
negative line at the rate of the original sale, on the amount refunded (rounded half up the same
way), so a month already statemented is never rewritten.

Months and days are Hong Kong's.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tongka import clock
from tongka.catalog.models import Pack
from tongka.counter.models import CommissionRate, CounterSale
from tongka.errors import Unprocessable
from tongka.i18n import _
from tongka.payment.models import Refund
from tongka.staff import audit
from tongka.staff.models import StaffMember
from tongka.staff.service import Staff
from tongka.stores.models import Store

HONG_KONG = ZoneInfo("Asia/Hong_Kong")
BASIS = 10_000
# Levels, most specific first (see the module's docstring).
LEVELS = {
    5: _("Agent and pack"),
    4: _("Agent"),
    3: _("Store and pack"),
    2: _("Store"),
    1: _("Pack"),
}
MAX_LINES = 10_000


class RateInvalid(Unprocessable):
    code = "commission_rate_invalid"
    message = _("Enter a rate in per cent between 0 and 100, with at most two decimals.")


class RateScopeInvalid(Unprocessable):
    code = "commission_scope_invalid"
    message = _("Name a pack, a store or an agent (or a combination) that exists.")


class MonthInvalid(Unprocessable):
    code = "month_invalid"
    message = _("Enter a month as YYYY-MM.")


_PERCENT = re.compile(r"^\s*(\d{1,3})(?:\.(\d{1,2}))?\s*%?\s*$")


def parse_percent(text: str) -> int:
    """ "2.5" (per cent) to basis points (250); above 100 % or more than two decimals refused."""
    found = _PERCENT.match(text)
    if found is None:
        raise RateInvalid()
    bp = int(found.group(1)) * 100 + int((found.group(2) or "0").ljust(2, "0"))
    if bp > BASIS:
        raise RateInvalid()
    return bp


def parse_month(text: str | None) -> date:
    """ "2026-12" as its first day; None: this month in Hong Kong."""
    if not text:
        return clock.now().astimezone(HONG_KONG).date().replace(day=1)
    found = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if found is None or not 1 <= int(found.group(2)) <= 12:
        raise MonthInvalid()
    return date(int(found.group(1)), int(found.group(2)), 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    after = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return (
        datetime.combine(month, time(), HONG_KONG),
        datetime.combine(after, time(), HONG_KONG),
    )


def commission_of(amount: int, rate_bp: int) -> int:
    """amount × rate in minor units, rounded half up (amounts here are never negative)."""
    return (amount * rate_bp + BASIS // 2) // BASIS


def level(rate: CommissionRate) -> int:
    if rate.staff_id is not None:
        return 5 if rate.pack_id is not None else 4
    if rate.store_id is not None:
        return 3 if rate.pack_id is not None else 2
    return 1 if rate.pack_id is not None else 0


def applicable(
    rates: list[CommissionRate],
    *,
    pack_id: uuid.UUID,
    store_id: uuid.UUID,
    staff_id: uuid.UUID,
    at: datetime,
) -> CommissionRate | None:
    """The rate that applies to a sale (see the module's docstring), or None."""
    best: CommissionRate | None = None
    for rate in rates:
        if (
            (rate.pack_id is not None and rate.pack_id != pack_id)
            or (rate.store_id is not None and rate.store_id != store_id)
            or (rate.staff_id is not None and rate.staff_id != staff_id)
            or rate.valid_from > at
            or level(rate) == 0
        ):
            continue
        if best is None or (level(rate), rate.valid_from, rate.created_at) > (
            level(best),
            best.valid_from,
            best.created_at,
        ):
            best = rate
    return best


def all_rates(session: Session) -> list[CommissionRate]:
    return list(session.scalars(select(CommissionRate)))


# --- setting rates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateView:
    rate: CommissionRate
    level: int
    pack_code: str | None
    store_code: str | None
    agent: str | None


def rate_views(session: Session) -> list[RateView]:
    """Every rate, newest `valid_from` first, with the names of what it applies to."""
    rows = session.execute(
        select(CommissionRate, Pack.code, Store.code, StaffMember.username)
        .outerjoin(Pack, Pack.id == CommissionRate.pack_id)
        .outerjoin(Store, Store.id == CommissionRate.store_id)
        .outerjoin(StaffMember, StaffMember.id == CommissionRate.staff_id)
        .order_by(CommissionRate.valid_from.desc(), CommissionRate.created_at.desc())
    )
    return [RateView(r, level(r), pack, store, agent) for r, pack, store, agent in rows]


def set_rate(
    session: Session,
    actor: Staff,
    *,
    rate_bp: int,
    valid_from: datetime,
    pack_code: str | None = None,
    store_code: str | None = None,
    agent_username: str | None = None,
) -> CommissionRate:
    """A new rate from `valid_from` (an admin's act, audited). Earlier rows stay: history."""
    if not 0 <= rate_bp <= BASIS:
        raise RateInvalid()
    pack_id = store_id = staff_id = None
    if pack_code:
        pack_id = session.scalar(select(Pack.id).where(Pack.code == pack_code.strip()))
        if pack_id is None:
            raise RateScopeInvalid()
    if store_code:
        store_id = session.scalar(select(Store.id).where(Store.code == store_code.strip()))
        if store_id is None:
            raise RateScopeInvalid()
    if agent_username:
        agent = session.scalar(
            select(StaffMember).where(StaffMember.username == agent_username.strip().lower())
        )
        if agent is None or agent.store_id is None:
            raise RateScopeInvalid()
        if store_id is not None and store_id != agent.store_id:
            raise RateScopeInvalid()
        staff_id = agent.id
    if pack_id is None and store_id is None and staff_id is None:
        raise RateScopeInvalid()
    rate = CommissionRate(
        pack_id=pack_id,
        store_id=store_id,
        staff_id=staff_id,
        rate_bp=rate_bp,
        valid_from=valid_from,
        created_by=actor.username,
        created_at=clock.now(),
    )
    session.add(rate)
    session.flush()
    audit.record(
        session,
        actor,
        "commission.rate",
        "commission_rate",
        rate.id,
        after={
            "rate_bp": rate_bp,
            "valid_from": valid_from.isoformat(),
            "pack": pack_code or None,
            "store": store_code or None,
            "agent": agent_username or None,
        },
    )
    return rate


# --- the monthly statement ----------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    at: datetime
    kind: str  # "sale" | "refund"
    order_id: uuid.UUID
    store_code: str
    agent: str
    pack_code: str
    currency: str
    amount: int  # the sale's amount, or minus the amount refunded
    rate_bp: int | None  # None: no rate applies
    level: int
    commission: int  # minor units, negative for a refund


@dataclass
class Sum:
    amount: int = 0
    commission: int = 0
    count: int = 0


@dataclass
class Statement:
    month: date
    lines: list[Line]
    by_agent: dict[tuple[str, str, str], Sum] = field(default_factory=dict)  # (store, agent, cur)
    by_store: dict[tuple[str, str], Sum] = field(default_factory=dict)
    by_currency: dict[str, Sum] = field(default_factory=dict)


def statement(
    session: Session,
    month: date,
    *,
    store_id: uuid.UUID | None = None,
    staff_id: uuid.UUID | None = None,
) -> Statement:
    """The month's commission lines (sales paid in it, refunds succeeded in it) and totals."""
    start, end = month_bounds(month)
    rates = all_rates(session)
    base = (
        select(CounterSale, Store.code, StaffMember.display_name, Pack.code)
        .join(Store, Store.id == CounterSale.store_id)
        .join(StaffMember, StaffMember.id == CounterSale.staff_id)
        .join(Pack, Pack.id == CounterSale.pack_id)
    )
    if store_id is not None:
        base = base.where(CounterSale.store_id == store_id)
    if staff_id is not None:
        base = base.where(CounterSale.staff_id == staff_id)
    sales = session.execute(
        base.where(
            CounterSale.paid_at.is_not(None),
            CounterSale.paid_at >= start,
            CounterSale.paid_at < end,
        )
        .order_by(CounterSale.paid_at)
        .limit(MAX_LINES)
    )
    refunded_at = func.coalesce(Refund.settled_at, Refund.created_at)
    refunds = session.execute(
        base.add_columns(Refund.amount, refunded_at)
        .join(Refund, Refund.payment_id == CounterSale.payment_id)
        .where(
            CounterSale.paid_at.is_not(None),
            Refund.status == "succeeded",
            refunded_at >= start,
            refunded_at < end,
        )
        .order_by(refunded_at)
        .limit(MAX_LINES)
    )

    def line(
        sale: CounterSale, store: str, agent: str, pack: str, kind: str, at: datetime, amount: int
    ) -> Line:
        assert sale.paid_at is not None
        rate = applicable(
            rates,
            pack_id=sale.pack_id,
            store_id=sale.store_id,
            staff_id=sale.staff_id,
            at=sale.paid_at,
        )
        bp = rate.rate_bp if rate is not None else None
        earned = commission_of(amount, bp or 0)
        sign = -1 if kind == "refund" else 1
        return Line(
            at=at,
            kind=kind,
            order_id=sale.order_id,
            store_code=store,
            agent=agent,
            pack_code=pack,
            currency=sale.currency,
            amount=sign * amount,
            rate_bp=bp,
            level=level(rate) if rate is not None else 0,
            commission=sign * earned,
        )

    lines = [
        line(s, store, agent, pack, "sale", s.paid_at or s.created_at, s.amount)
        for s, store, agent, pack in sales
    ]
    lines += [
        line(s, store, agent, pack, "refund", at, amount)
        for s, store, agent, pack, amount, at in refunds
    ]
    lines.sort(key=lambda x: x.at)
    result = Statement(month, lines)
    by_agent: defaultdict[tuple[str, str, str], Sum] = defaultdict(Sum)
    by_store: defaultdict[tuple[str, str], Sum] = defaultdict(Sum)
    by_currency: defaultdict[str, Sum] = defaultdict(Sum)
    for x in lines:
        for total in (
            by_agent[(x.store_code, x.agent, x.currency)],
            by_store[(x.store_code, x.currency)],
            by_currency[x.currency],
        ):
            total.amount += x.amount
            total.commission += x.commission
            total.count += 1 if x.kind == "sale" else 0
    result.by_agent = dict(sorted(by_agent.items()))
    result.by_store = dict(sorted(by_store.items()))
    result.by_currency = dict(sorted(by_currency.items()))
    return result
