"""A line's forecast, read from the database: when each zone's data runs out, and the cheapest
packs on sale (offers included) that cover a period. The arithmetic is `forecast.model`'s."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Account, Line
from tongka.catalog import service as catalog
from tongka.catalog.models import Pack
from tongka.charging import service as charging
from tongka.charging.engine import usage_day
from tongka.errors import Unprocessable
from tongka.forecast import model
from tongka.forecast.model import ZONES, Candidate, Pool, ZoneForecast
from tongka.i18n import _
from tongka.ledger import buckets
from tongka.money import Currency, Money
from tongka.order import service as orders
from tongka.promotion import pricing
from tongka.promotion import service as promotions
from tongka.promotion.models import Offer

PERIOD_DAYS = 30  # covered when the customer names no date
MAX_PERIOD_DAYS = 366


class PeriodInvalid(Unprocessable):
    code = "forecast_period_invalid"
    message = _("The date to cover must be after today and at most {max_days} days ahead.")


@dataclass(frozen=True)
class Pick:
    """A pack of the recommendation, at its price for this customer."""

    pack: Pack
    price: pricing.Price


@dataclass(frozen=True)
class Recommendation:
    until: date  # the period's last Hong Kong day (30 days from now ends in its middle)
    currency: str
    expected: dict[str, int]  # bytes each zone is expected to use over the period
    high: dict[str, int]  # the high estimate, which the packs cover
    picks: list[Pick] = field(default_factory=list)
    total: Money | None = None
    found: bool = True  # False: no combination within the limits covers it

    @property
    def covered_already(self) -> bool:
        return self.found and not self.picks


@dataclass(frozen=True)
class LineForecast:
    line_id: uuid.UUID
    as_of: datetime
    zones: dict[str, ZoneForecast]
    recommendation: Recommendation


def history(session: Session, line_id: uuid.UUID, yesterday: date) -> dict[str, list[int]]:
    """Bytes used a day in each zone over the forecast's window, oldest first."""
    first = yesterday - timedelta(days=model.WINDOW - 1)
    used = {z: [0] * model.WINDOW for z in ZONES}
    for row in charging.usage_between(session, line_id, first, yesterday):
        used[row.zone][(row.day - first).days] += row.bytes
    return used


def rates_of(session: Session, line_id: uuid.UUID, now: datetime) -> dict[str, model.Rate]:
    """The line's rate in each zone: its last weeks' use, and today's so far for a zone without."""
    today = usage_day(now)
    so_far = {z: 0 for z in ZONES}
    for row in charging.usage_between(session, line_id, today, today):
        so_far[row.zone] += row.bytes
    share = (now - model.day_start(today)) / timedelta(days=1)
    yesterday = today - timedelta(days=1)
    return model.rates(history(session, line_id, yesterday), yesterday, so_far, share)


def pools(session: Session, line_id: uuid.UUID, now: datetime) -> list[Pool]:
    balance = buckets.line_balance(session, line_id, now)
    return [Pool(b.zone, b.remaining_bytes, b.expires_at) for b in balance.buckets]


def days_left(
    session: Session, line_id: uuid.UUID, zone: str, now: datetime, *, within: int
) -> int | None:
    """Whole Hong Kong days from today to the day the zone's data is expected to run out, if
    fewer than `within` (0: today); None otherwise. The expected day only, without the range's
    simulations: cheap enough for auto-renew's evaluation."""
    today = usage_day(now)
    # One day past the limit: data expiring at the limit's midnight runs out the day before it.
    until = model.day_start(today + timedelta(days=within + 1))
    ran = model.expected_run_out(
        pools(session, line_id, now), rates_of(session, line_id, now), zone, now, until
    )
    if ran is None or (ran.day - today).days >= within:
        return None
    return (ran.day - today).days


def period_end(until: date | None, now: datetime) -> datetime:
    """The end of the period to cover: the end of the Hong Kong day `until`, or 30 days from now."""
    if until is None:
        return now + timedelta(days=PERIOD_DAYS)
    today = usage_day(now)
    if until <= today or (until - today).days > MAX_PERIOD_DAYS:
        raise PeriodInvalid(max_days=MAX_PERIOD_DAYS)
    return model.day_start(until + timedelta(days=1))


def of_line(
    session: Session,
    account: Account,
    line: Line,
    *,
    currency: Currency,
    until: date | None = None,
    channel: str = "web",
    now: datetime | None = None,
) -> LineForecast:
    """The line's forecast, and the packs that cover it to the end of `until` (30 days by default)."""
    now = now or clock.now()
    end = period_end(until, now)
    rates = rates_of(session, line.id, now)
    held = pools(session, line.id, now)
    zones = model.forecast(held, rates, now)
    return LineForecast(
        line.id,
        now,
        zones,
        recommend(session, account, held, rates, currency, end, now, channel),
    )


def recommend(
    session: Session,
    account: Account,
    held: Sequence[Pool],
    rates: dict[str, model.Rate],
    currency: Currency,
    end: datetime,
    now: datetime,
    channel: str,
) -> Recommendation:
    until = usage_day(end - timedelta(microseconds=1))
    use, expected, high = model.high_use(held, rates, now, end)
    needed = [z for z in ZONES if high[z] > 0]
    packs, priced = _priced_packs(session, account, currency, channel, now)
    candidates = [Candidate(p.code, p.zone, p.volume_bytes, p.validity_days) for p in packs]
    by_code = {p.code: p for p in packs}

    def enough(combo: tuple[Candidate, ...]) -> bool:
        for zone in needed:  # cheap first: enough bytes at all, whatever their expiry
            have = sum(p.left for p in held if p.zone in (zone, "both"))
            have += sum(c.volume for c in combo if c.zone in (zone, "both"))
            if have < high[zone]:
                return False
        return model.covers(held, combo, use, needed, now, end)

    def price_of(combo: tuple[Candidate, ...]) -> int | None:
        return sum(p.price.total.amount for p in priced([by_code[c.key] for c in combo]))

    best = model.cheapest(candidates, price_of, enough)
    if best is None:
        return Recommendation(until, currency, expected, high, found=False)
    combo, total = best
    picks = priced([by_code[c.key] for c in combo])
    paid = Money(total, currency) if picks else None
    return Recommendation(until, currency, expected, high, picks, paid)


Pricer = Callable[[Sequence[Pack]], list[Pick]]


def _priced_packs(
    session: Session, account: Account, currency: Currency, channel: str, now: datetime
) -> tuple[list[Pack], Pricer]:
    """The packs on sale that can be paid in `currency`, and a function pricing a set of them
    bought one after another: an offer a customer may have a few times (or only as a new
    customer, on a first order) goes to the dearest packs first."""
    new = orders.is_new_customer(session, account.id)
    packs: list[Pack] = []
    terms: dict[str, tuple[Money, int | None, list[tuple[Offer, int | None]]]] = {}
    dearest: dict[str, int] = {}  # the price without offers: once-only offers go to the dearest
    for pack in catalog.packs_on_sale(session, channel, now):
        try:
            listed, rate = promotions.list_price(session, pack, currency)
        except catalog.CurrencyNotOffered:
            continue
        offers = promotions.offers_for(
            session, account, pack, currency=currency, channel=channel, new=new, now=now
        )
        packs.append(pack)
        terms[pack.code] = (listed, rate, offers)
        dearest[pack.code] = pricing.price(listed, currency, rate, []).total.amount

    def priced(chosen: Sequence[Pack]) -> list[Pick]:
        times: dict[str, int | None] = {}  # by offer code: how many more times (None: any)
        first = new
        out = []
        for pack in sorted(chosen, key=lambda p: (-dearest[p.code], p.code)):
            listed, rate, offers = terms[pack.code]
            usable = [
                o
                for o, left in offers
                if (times.setdefault(o.code, left) is None or (times[o.code] or 0) > 0)
                and (first or not (o.new_customers_only or o.kind == "first_topup"))
            ]
            price = pricing.price(listed, currency, rate, usable)
            for applied in price.applied:
                if (times_left := times.get(applied.offer.code)) is not None:
                    times[applied.offer.code] = times_left - 1
            first = False
            out.append(Pick(pack, price))
        return out

    return packs, priced
