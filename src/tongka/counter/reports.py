"""A store's end-of-day report for one Hong Kong date: its counter sales paid that day (counted and
summed by method, by pack and by agent, each per currency: amounts of different currencies are
never added), the shifts opened that day with their cash, and the refunds of its counter sales
made that day."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongka.catalog.models import Pack
from tongka.counter import shifts
from tongka.counter.models import CounterSale
from tongka.payment.models import Refund
from tongka.staff.models import StaffMember

K = TypeVar("K")
HONG_KONG = ZoneInfo("Asia/Hong_Kong")


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """A Hong Kong date as the instants [start, end)."""
    start = datetime.combine(day, time(), HONG_KONG)
    return start, datetime.combine(day + timedelta(days=1), time(), HONG_KONG)


@dataclass(frozen=True)
class SaleRow:
    at: datetime
    order_id: uuid.UUID
    method: str
    pack_code: str
    pack_names: dict[str, str]
    agent: str
    currency: str
    amount: int
    tendered: int | None
    change: int | None


@dataclass(frozen=True)
class RefundRow:
    at: datetime
    order_id: uuid.UUID
    method: str
    agent: str
    currency: str
    amount: int
    status: str
    reason: str


@dataclass
class Total:
    count: int = 0
    amount: int = 0


@dataclass
class DayReport:
    day: date
    sales: list[SaleRow]
    refunds: list[RefundRow]
    shifts: list[shifts.ShiftView]
    # {(key, currency): Total}: key is the method, the pack's code or the agent's name.
    by_method: dict[tuple[str, str], Total] = field(default_factory=dict)
    by_pack: dict[tuple[str, str], Total] = field(default_factory=dict)
    by_agent: dict[tuple[str, str], Total] = field(default_factory=dict)
    by_currency: dict[str, Total] = field(default_factory=dict)
    refunded: dict[str, Total] = field(default_factory=dict)

    def pack_name(self, code: str, language: str) -> str:
        """A pack of the day's sales by its name in `language` (the code if it has none)."""
        names = next((s.pack_names for s in self.sales if s.pack_code == code), {})
        return names.get(language) or names.get("en") or code


def _add(totals: defaultdict[K, Total], key: K, amount: int) -> None:
    totals[key].count += 1
    totals[key].amount += amount


def day_report(session: Session, store_id: uuid.UUID, day: date) -> DayReport:
    start, end = day_bounds(day)
    rows = session.execute(
        select(CounterSale, Pack.code, Pack.names, StaffMember.display_name)
        .join(Pack, Pack.id == CounterSale.pack_id)
        .join(StaffMember, StaffMember.id == CounterSale.staff_id)
        .where(
            CounterSale.store_id == store_id,
            CounterSale.paid_at >= start,
            CounterSale.paid_at < end,
        )
        .order_by(CounterSale.paid_at)
    )
    sales = [
        SaleRow(
            s.paid_at or s.created_at,
            s.order_id,
            s.method,
            code,
            names,
            agent,
            s.currency,
            s.amount,
            s.tendered,
            s.change,
        )
        for s, code, names, agent in rows
    ]
    refund_rows = session.execute(
        select(Refund, CounterSale.order_id, CounterSale.method, StaffMember.display_name)
        .join(CounterSale, CounterSale.payment_id == Refund.payment_id)
        .join(StaffMember, StaffMember.id == CounterSale.staff_id)
        .where(
            CounterSale.store_id == store_id,
            Refund.created_at >= start,
            Refund.created_at < end,
        )
        .order_by(Refund.created_at)
    )
    refunds = [
        RefundRow(r.created_at, order_id, method, agent, r.currency, r.amount, r.status, r.reason)
        for r, order_id, method, agent in refund_rows
    ]
    report = DayReport(day, sales, refunds, shifts.of_day(session, store_id, start, end))
    by_method: defaultdict[tuple[str, str], Total] = defaultdict(Total)
    by_pack: defaultdict[tuple[str, str], Total] = defaultdict(Total)
    by_agent: defaultdict[tuple[str, str], Total] = defaultdict(Total)
    by_currency: defaultdict[str, Total] = defaultdict(Total)
    refunded: defaultdict[str, Total] = defaultdict(Total)
    for sale in sales:
        _add(by_method, (sale.method, sale.currency), sale.amount)
        _add(by_pack, (sale.pack_code, sale.currency), sale.amount)
        _add(by_agent, (sale.agent, sale.currency), sale.amount)
        _add(by_currency, sale.currency, sale.amount)
    for refund in refunds:
        if refund.status == "succeeded":
            _add(refunded, refund.currency, refund.amount)
    report.by_method = dict(sorted(by_method.items()))
    report.by_pack = dict(sorted(by_pack.items()))
    report.by_agent = dict(sorted(by_agent.items()))
    report.by_currency = dict(sorted(by_currency.items()))
    report.refunded = dict(sorted(refunded.items()))
    return report
