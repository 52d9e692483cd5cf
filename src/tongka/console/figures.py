"""The console's report figures: plain reads over orders, payments, refunds, counter sales and
usage, by Hong Kong day. Money stays in minor units per currency (never summed across
currencies); data in bytes. Rows are read with their instant and grouped by Hong Kong day here,
the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tongka.catalog.models import Pack
from tongka.charging.engine import HONG_KONG, usage_day
from tongka.charging.models import UsageDay
from tongka.counter.models import CounterSale
from tongka.order.models import Order
from tongka.payment.models import Payment, Refund
from tongka.staff.models import StaffMember
from tongka.stores.models import Store
from tongka.wallet.models import WalletTopup

TOP = 10  # stores and agents shown in the top lists
FAILED = (
    "failed",
    "cancelled",
)  # an attempt that ended without the money (cancelled: expired or closed)


@dataclass(frozen=True)
class Period:
    """Hong Kong days from `first` to `last`, both included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), HONG_KONG).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The instant after the last day (excluded)."""
        return datetime.combine(self.last + timedelta(days=1), time(), HONG_KONG).astimezone(UTC)

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


@dataclass(frozen=True)
class Revenue:
    day: date
    channel: str  # app | web | store
    currency: str
    method: str
    amount: int  # succeeded payments minus succeeded refunds, minor units
    payments: int
    refunds: int


@dataclass(frozen=True)
class Renewals:
    pack: str  # the pack's code
    name: dict[str, str]
    currency: str
    orders: int
    amount: int


@dataclass(frozen=True)
class ZoneData:
    zone: str  # mainland | hk | both (a pack for both zones; usage is always in one)
    sold: int  # bytes issued by the orders fulfilled in the period
    used: int  # bytes used (charged) in the period


@dataclass(frozen=True)
class Seller:
    key: str  # the store's code, or the agent's username
    name: str  # the store's code again, or the agent's display name
    store: str  # the store's code
    store_names: dict[str, str]  # the store's name per language
    currency: str
    sales: int
    amount: int


@dataclass(frozen=True)
class Failures:
    day: date
    provider: str
    attempts: int
    failed: int  # failed or cancelled

    @property
    def rate_permille(self) -> int:
        """Failures per thousand attempts, rounded half up."""
        return (self.failed * 2000 + self.attempts) // (2 * self.attempts) if self.attempts else 0


def revenue(session: Session, period: Period) -> list[Revenue]:
    """Money in per Hong Kong day, channel, currency and method: succeeded payments (orders and
    wallet top-ups) on the day they settled, minus succeeded refunds on the day they settled."""
    channel = func.coalesce(Order.channel, WalletTopup.channel)
    paid = session.execute(
        select(Payment.settled_at, channel, Payment.currency, Payment.method, Payment.amount)
        .outerjoin(Order, Order.id == Payment.order_id)
        .outerjoin(WalletTopup, WalletTopup.id == Payment.topup_id)
        .where(
            Payment.status == "succeeded",
            Payment.settled_at >= period.start,
            Payment.settled_at < period.end,
        )
    ).all()
    refunded = session.execute(
        select(Refund.settled_at, channel, Refund.currency, Payment.method, Refund.amount)
        .join(Payment, Payment.id == Refund.payment_id)
        .outerjoin(Order, Order.id == Payment.order_id)
        .outerjoin(WalletTopup, WalletTopup.id == Payment.topup_id)
        .where(
            Refund.status == "succeeded",
            Refund.settled_at >= period.start,
            Refund.settled_at < period.end,
        )
    ).all()
    totals: dict[tuple[date, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for at, chan, currency, method, amount in paid:
        assert at is not None  # settled: in the period
        total = totals[(usage_day(at), chan, currency, method)]
        total[0] += amount
        total[1] += 1
    for at, chan, currency, method, amount in refunded:
        assert at is not None
        total = totals[(usage_day(at), chan, currency, method)]
        total[0] -= amount
        total[2] += 1
    return [Revenue(*key, *value) for key, value in sorted(totals.items())]


def renewals(session: Session, period: Period) -> list[Renewals]:
    """Orders fulfilled in the period per pack and currency, the most renewed pack first."""
    rows = session.execute(
        select(Order.pack_id, Order.currency, func.count(), func.sum(Order.amount))
        .where(
            Order.status == "fulfilled",
            Order.fulfilled_at >= period.start,
            Order.fulfilled_at < period.end,
        )
        .group_by(Order.pack_id, Order.currency)
    ).all()
    # Names are JSON, which PostgreSQL cannot group by: read them apart.
    packs = {
        p.id: p for p in session.scalars(select(Pack).where(Pack.id.in_({r[0] for r in rows})))
    }
    found = [
        Renewals(packs[pack_id].code, packs[pack_id].names, cur, n, int(amount))
        for pack_id, cur, n, amount in rows
    ]
    per_pack: dict[str, int] = defaultdict(int)
    for r in found:
        per_pack[r.pack] += r.orders
    return sorted(found, key=lambda r: (-per_pack[r.pack], r.pack, r.currency))


def data(session: Session, period: Period) -> list[ZoneData]:
    """Per zone: the bytes the period's fulfilled orders issued, and the bytes used in it (every
    charged byte reported by the network, on its Hong Kong day)."""
    sold: dict[str, int] = dict(
        session.execute(
            select(Order.zone, func.sum(Order.volume_bytes))
            .where(
                Order.status == "fulfilled",
                Order.fulfilled_at >= period.start,
                Order.fulfilled_at < period.end,
            )
            .group_by(Order.zone)
        ).all()
    )
    used: dict[str, int] = dict(
        session.execute(
            select(UsageDay.zone, func.sum(UsageDay.bytes))
            .where(UsageDay.day >= period.first, UsageDay.day <= period.last)
            .group_by(UsageDay.zone)
        ).all()
    )
    zones = ["mainland", "hk"] + (["both"] if sold.get("both") else [])
    return [ZoneData(z, int(sold.get(z) or 0), int(used.get(z) or 0)) for z in zones]


def _sellers(session: Session, period: Period, by_agent: bool) -> list[Seller]:
    who = CounterSale.staff_id if by_agent else CounterSale.store_id
    rows = session.execute(
        select(
            who,
            CounterSale.store_id,
            CounterSale.currency,
            func.count(),
            func.sum(CounterSale.amount),
        )
        .where(CounterSale.paid_at >= period.start, CounterSale.paid_at < period.end)
        .group_by(who, CounterSale.store_id, CounterSale.currency)
    ).all()
    stores = {
        s.id: s for s in session.scalars(select(Store).where(Store.id.in_({r[1] for r in rows})))
    }
    agents = {
        m.id: m
        for m in session.scalars(
            select(StaffMember).where(StaffMember.id.in_({r[0] for r in rows} if by_agent else ()))
        )
    }
    found = [
        Seller(
            agents[key].username if by_agent else stores[store_id].code,
            agents[key].display_name if by_agent else stores[store_id].code,
            stores[store_id].code,
            stores[store_id].names,
            cur,
            count,
            int(amount),
        )
        for key, store_id, cur, count, amount in rows
    ]
    # An agent who moved store has rows for each: one line per agent and currency still.
    merged: dict[tuple[str, str], Seller] = {}
    for r in found:
        had = merged.get((r.key, r.currency))
        merged[(r.key, r.currency)] = (
            r
            if had is None
            else Seller(
                r.key,
                r.name,
                had.store,
                had.store_names,
                r.currency,
                had.sales + r.sales,
                had.amount + r.amount,
            )
        )
    sales: dict[str, int] = defaultdict(int)
    for r in merged.values():
        sales[r.key] += r.sales
    top = sorted(sales, key=lambda k: (-sales[k], k))[:TOP]
    return sorted(
        (r for r in merged.values() if r.key in top), key=lambda r: (top.index(r.key), r.currency)
    )


def top_stores(session: Session, period: Period) -> list[Seller]:
    """The stores that made the most counter sales paid in the period (count and amount per currency)."""
    return _sellers(session, period, by_agent=False)


def top_agents(session: Session, period: Period) -> list[Seller]:
    """The staff members who made the most counter sales paid in the period."""
    return _sellers(session, period, by_agent=True)


def failures(session: Session, period: Period) -> list[Failures]:
    """Payment attempts per provider and Hong Kong day they were made, and how many of them failed
    or were cancelled (expired with their order, or closed)."""
    rows = session.execute(
        select(Payment.created_at, Payment.provider, Payment.status).where(
            Payment.created_at >= period.start, Payment.created_at < period.end
        )
    ).all()
    counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for at, provider, status in rows:
        count = counts[(usage_day(at), provider)]
        count[0] += 1
        count[1] += status in FAILED
    return [Failures(day, provider, *c) for (day, provider), c in sorted(counts.items())]
