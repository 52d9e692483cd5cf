"""The forecast's arithmetic, on plain values (no database): rates, run-out, the covering packs.

The method (docs/FORECAST.md says why and how well it does):

* History: each zone's data used per Hong Kong day over the last `WINDOW` complete days (today,
  half over, is left out). A zone unused for the last `IDLE_DAYS` days is idle: no run-out is
  expected. A zone whose use stopped when the line's use began in the other zone (a trip across
  the border) is away, idle too. Otherwise its spell is the days since its last gap of
  `IDLE_DAYS` unused days (or the window's start).
* Rate: the mean of the spell's weekdays and of its weekend days (Saturday, Sunday), each kind
  from the whole spell when it has fewer than two days of that kind.
* Projection: the line's buckets drawn as charging draws them (soonest expiry first, the zone's
  own before `both`), each day's use spread evenly over the day; today counts for what is left of
  it. The data runs out on the day a zone's use cannot be met: used up, or expired first.
* Range: `SIMULATIONS` futures (a fixed seed), each from the spell resampled (the rate is itself
  uncertain), its days drawn at random from that resample's days of the same kind; the 10th and
  90th percentile of their run-out days, never narrower than a day either side of the estimate.
* Cover: the packs to buy now so that, at the high estimate (the 90th percentile of the
  simulated use over the period), no zone runs out before the period ends; cheapest first,
  ties to fewer packs, each pack at most `MAX_EACH` times and `MAX_PACKS` in all.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from tongka.charging.engine import HONG_KONG, usage_day

ZONES = ("mainland", "hk")
WINDOW = 28  # days of history read
IDLE_DAYS = 7  # a zone unused this long is idle
SIMULATIONS = 200
LOW_Q, HIGH_Q = 0.1, 0.9  # the range: an 80 % interval
MAX_DAYS = 400  # no projection looks further
MAX_EACH = 4
MAX_PACKS = 6
DAY = timedelta(days=1)


def weekend(day: date) -> bool:
    return day.weekday() >= 5


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), HONG_KONG)


# --- rates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """How a zone is being used: `state` active, idle or away; its spell's days by kind."""

    state: str
    since: date | None = None  # the spell's first day
    weekdays: tuple[int, ...] = ()
    weekends: tuple[int, ...] = ()

    def samples(self, day: date) -> tuple[int, ...]:
        return self.weekends if weekend(day) else self.weekdays

    def mean(self, day: date) -> float:
        days = self.samples(day)
        return sum(days) / len(days) if days else 0.0

    @property
    def active(self) -> bool:
        return self.state == "active"


def _spell_start(used: Sequence[int]) -> int | None:
    """Index of the first day after the last run of IDLE_DAYS unused days (0: the window's start)."""
    start, zeros = 0, 0
    for i, b in enumerate(used):
        if b:
            if zeros >= IDLE_DAYS or (zeros == i):  # a long gap, or the unused days before any use
                start = i
            zeros = 0
        else:
            zeros += 1
    return start if any(used) else None


def rates(
    history: Mapping[str, Sequence[int]],
    yesterday: date,
    today: Mapping[str, int] | None = None,
    today_share: float = 0.0,
) -> dict[str, Rate]:
    """Each zone's rate from its daily use, oldest first, the last being `yesterday`'s. A zone
    otherwise idle that was used `today` (`today_share` of the day gone, an hour at least) is
    taken at today's pace: a rough guide for a new line, or one back from a quiet week."""
    starts = {z: _spell_start(history[z]) for z in ZONES}
    found = {}
    for zone in ZONES:
        used = list(history[zone])
        first = yesterday - timedelta(days=len(used) - 1)
        start = starts[zone]
        if start is None or not any(used[-IDLE_DAYS:]):
            so_far = (today or {}).get(zone, 0)
            if so_far and today_share >= 1 / 24:
                pace = (round(so_far / today_share),)
                found[zone] = Rate("active", yesterday + DAY, pace, pace)
            else:
                found[zone] = Rate("idle")
            continue
        last_use = max(i for i, b in enumerate(used) if b)
        other = next(z for z in ZONES if z != zone)
        began = starts[other]
        if began is not None and began > last_use and any(history[other][began:]):
            found[zone] = Rate("away")  # the line went to the other zone and stayed
            continue
        spell = [(first + timedelta(days=i), b) for i, b in enumerate(used) if i >= start]
        weekdays = tuple(b for d, b in spell if not weekend(d))
        weekends = tuple(b for d, b in spell if weekend(d))
        every = tuple(b for _d, b in spell)
        found[zone] = Rate(
            "active",
            since=spell[0][0],
            weekdays=weekdays if len(weekdays) >= 2 else every,
            weekends=weekends if len(weekends) >= 2 else every,
        )
    return found


# --- projection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """Data a line can use: a bucket's left, or a pack bought now."""

    zone: str  # mainland, hk or both
    left: int
    expires_at: datetime


@dataclass(frozen=True)
class RunOut:
    day: date
    cause: str  # used_up | expires


Use = Callable[[str, date], float]  # bytes a zone uses on a day


def project(
    pools: Sequence[Pool],
    use: Use,
    zones: Sequence[str],
    now: datetime,
    until: datetime | None = None,
    trace: list[dict[str, float]] | None = None,
) -> dict[str, RunOut]:
    """When each of `zones` runs out (absent: not before `until`, or not within MAX_DAYS).
    `trace`: appended the data left in each zone at the end of each day (the chart's line)."""
    order = sorted(pools, key=lambda p: (p.expires_at, p.zone == "both"))
    left = [float(p.left) for p in order]
    end = until or now + MAX_DAYS * DAY
    out: dict[str, RunOut] = {}
    t = now
    while t < end and (len(out) < len(zones) or trace is not None):
        day = usage_day(t)
        expiries = [p.expires_at for p, x in zip(order, left, strict=True) if p.expires_at > t]
        step = min([day_start(day + DAY), end, *expiries])
        share = (step - t) / DAY
        for zone in zones:
            if zone in out:
                continue
            need = use(zone, day) * share
            for i, p in enumerate(order):
                if need <= 0:
                    break
                if p.zone in (zone, "both") and p.expires_at > t and left[i] > 0:
                    taken = min(need, left[i])
                    left[i] -= taken
                    need -= taken
            if need > 0.5:  # half a byte: rounding, not a shortfall
                out[zone] = RunOut(day, "used_up")
        t = step
        if trace is not None and t == day_start(day + DAY):
            trace.append({z: _left(order, left, z, t) for z in zones})
        if t >= end:  # what expires as the period ends is no shortfall within it
            break
        for zone in zones:  # the zone's last data expired at `t`, unused
            usable = [i for i, p in enumerate(order) if p.zone in (zone, "both")]
            if (
                zone not in out
                and any(order[i].expires_at == t and left[i] > 0.5 for i in usable)
                and not any(order[i].expires_at > t and left[i] > 0.5 for i in usable)
            ):
                out[zone] = RunOut(usage_day(t - timedelta(microseconds=1)), "expires")
    return out


def _left(order: Sequence[Pool], left: Sequence[float], zone: str, at: datetime) -> float:
    return sum(
        x
        for p, x in zip(order, left, strict=True)
        if p.zone in (zone, "both") and p.expires_at > at
    )


def remaining(
    pools: Sequence[Pool], rate_of: Mapping[str, Rate], now: datetime, days: int
) -> dict[str, list[int]]:
    """The data left in each active zone now and as each of the next `days` days starts, at the
    expected rate: the projection the centre's chart draws."""
    active = [z for z in ZONES if rate_of[z].active]
    trace: list[dict[str, float]] = []
    end = day_start(usage_day(now) + timedelta(days=days))
    project(pools, _mean_use(rate_of), active, now, end, trace)
    return {
        z: [round(_left(pools, [p.left for p in pools], z, now))]
        + [max(0, round(left[z])) for left in trace]
        for z in active
    }


@dataclass(frozen=True)
class ZoneForecast:
    zone: str
    rate: Rate
    left: int  # bytes usable in the zone now (`both` buckets counted)
    daily: float  # the mean rate over the coming week, bytes a day
    run_out: RunOut | None  # None: not expected
    low: date | None = None  # the range of the run-out day
    high: date | None = None


def _quantile(values: Sequence[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, math.ceil(q * len(ranked)) - 1))]


def _futures(rate_of: Mapping[str, Rate], seed: int = 16) -> list[Use]:
    """SIMULATIONS random futures. Each first resamples its zone's spell (the rate itself is only
    an estimate from a few weeks), then draws each day from that resample's days of the same kind."""
    rng = random.Random(seed)
    futures: list[Use] = []
    for _ in range(SIMULATIONS):
        drawn: dict[tuple[str, date], float] = {}
        spells = {
            (z, kind): rng.choices(days, k=len(days)) if days else []
            for z in ZONES
            for kind, days in ((True, rate_of[z].weekends), (False, rate_of[z].weekdays))
        }

        def use(
            zone: str,
            day: date,
            drawn: dict[tuple[str, date], float] = drawn,
            spells: dict[tuple[str, bool], list[int]] = spells,
        ) -> float:
            if (zone, day) not in drawn:
                days = spells[zone, weekend(day)]
                drawn[zone, day] = float(rng.choice(days)) if days else 0.0
            return drawn[zone, day]

        futures.append(use)
    return futures


def _mean_use(rate_of: Mapping[str, Rate]) -> Use:
    return lambda zone, day: rate_of[zone].mean(day)


def expected_run_out(
    pools: Sequence[Pool], rate_of: Mapping[str, Rate], zone: str, now: datetime, until: datetime
) -> RunOut | None:
    """The zone's expected run-out (at its mean rate, no simulated range) if before `until`;
    None if later, or the zone is not being used."""
    if not rate_of[zone].active:
        return None
    return project(pools, _mean_use(rate_of), [zone], now, until).get(zone)


def forecast(
    pools: Sequence[Pool], rate_of: Mapping[str, Rate], now: datetime
) -> dict[str, ZoneForecast]:
    """Each zone's expected run-out day and its range."""
    active = [z for z in ZONES if rate_of[z].active]
    expected = project(pools, _mean_use(rate_of), active, now)
    runs: dict[str, list[int]] = {z: [] for z in active}
    today = usage_day(now)
    for future in _futures(rate_of):
        ends = project(pools, future, active, now)
        for zone in active:
            ran = ends.get(zone)
            runs[zone].append((ran.day - today).days if ran else MAX_DAYS)
    result = {}
    for zone in ZONES:
        rate = rate_of[zone]
        left = sum(p.left for p in pools if p.zone in (zone, "both"))
        week = [today + timedelta(days=i) for i in range(7)]
        daily = sum(rate.mean(d) for d in week) / 7
        run_out = expected.get(zone) if rate.active else None
        low = high = None
        if run_out is not None:
            est = (run_out.day - today).days
            lo = min(est - 1, int(_quantile(runs[zone], LOW_Q)))
            hi = max(est + 1, int(_quantile(runs[zone], HIGH_Q)))
            low = today + timedelta(days=max(0, lo))
            high = today + timedelta(days=hi)
            if run_out.cause == "expires":  # the data cannot last beyond its expiry
                high = min(high, run_out.day)
        result[zone] = ZoneForecast(zone, rate, left, daily, run_out, low, high)
    return result


# --- the packs that cover a period ----------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A pack on sale, as bought now."""

    key: str  # the pack's code
    zone: str
    volume: int
    validity_days: int


@dataclass(frozen=True)
class Cover:
    packs: tuple[str, ...]  # codes, a pack as many times as it is bought
    price: int  # minor units of the currency asked
    need: dict[str, int] = field(default_factory=dict)  # the high estimate's use over the period


def high_use(
    pools: Sequence[Pool], rate_of: Mapping[str, Rate], now: datetime, until: datetime
) -> tuple[Use, dict[str, int], dict[str, int]]:
    """The high estimate: each zone's mean rate scaled up to the 90th percentile of the simulated
    use over the period; with the expected and the high total of each zone."""
    days = [usage_day(now) + timedelta(days=i) for i in range((until - now).days + 2)]

    def total(use: Use, zone: str) -> float:
        spent = 0.0
        for day in days:
            start, end = max(now, day_start(day)), min(until, day_start(day + DAY))
            if end > start:
                spent += use(zone, day) * ((end - start) / DAY)
        return spent

    mean = _mean_use(rate_of)
    expected, high, scale = {}, {}, {}
    for zone in ZONES:
        expected[zone] = total(mean, zone)
        sims = [total(f, zone) for f in _futures(rate_of)] if rate_of[zone].active else [0.0]
        high[zone] = max(expected[zone], _quantile(sims, HIGH_Q))
        scale[zone] = high[zone] / expected[zone] if expected[zone] else 0.0

    def use(zone: str, day: date) -> float:
        return mean(zone, day) * scale[zone]

    return use, {z: round(v) for z, v in expected.items()}, {z: round(v) for z, v in high.items()}


def covers(
    pools: Sequence[Pool],
    bought: Sequence[Candidate],
    use: Use,
    zones: Sequence[str],
    now: datetime,
    until: datetime,
) -> bool:
    """Whether, with `bought` added now, none of `zones` runs out before `until`."""
    added = [Pool(c.zone, c.volume, now + timedelta(days=c.validity_days)) for c in bought]
    return not project([*pools, *added], use, zones, now, until)


def cheapest(
    candidates: Sequence[Candidate],
    price_of: Callable[[tuple[Candidate, ...]], int | None],
    enough: Callable[[tuple[Candidate, ...]], bool],
) -> tuple[tuple[Candidate, ...], int] | None:
    """The cheapest combination for which `enough` holds (ties: fewer packs; nothing at all if
    nothing is needed), searched cheapest first: adding a pack never lowers a price nor loses
    coverage. `price_of` None: that combination cannot be bought."""
    heap: list[tuple[int, int, tuple[int, ...]]] = [(0, 0, ())]
    seen = set()
    while heap:
        price, count, picks = heapq.heappop(heap)
        combo = tuple(candidates[i] for i in picks)
        if enough(combo):
            return combo, price
        if count == MAX_PACKS:
            continue
        for i in range(picks[-1] if picks else 0, len(candidates)):
            if picks.count(i) == MAX_EACH:
                continue
            more = (*picks, i)
            if more in seen:
                continue
            seen.add(more)
            cost = price_of(tuple(candidates[j] for j in more))
            if cost is not None:
                heapq.heappush(heap, (cost, count + 1, more))
    return None
