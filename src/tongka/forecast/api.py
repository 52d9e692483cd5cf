"""App API: a line's forecast (when each zone's data runs out) and the packs that cover a period.

Who may call: the line's owner (another subscriber's line, or nobody's, is 404).
The method is docs/FORECAST.md's (`forecast.model`).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from tongka.account import lines as line_service
from tongka.deps import CurrentAccount, SessionDep
from tongka.forecast import service as forecasts
from tongka.forecast.model import ZoneForecast
from tongka.money import Currency


class RunOutOut(BaseModel):
    day: date  # Hong Kong day the data is expected to run out
    cause: Literal["used_up", "expires"]  # expires: the data expires before it is used up
    low: date  # the range (80 %)
    high: date


class ZoneOut(BaseModel):
    left_bytes: int  # usable in the zone now (`both` packs counted in each zone)
    daily_bytes: int  # the expected rate over the coming week
    state: Literal[
        "active", "idle", "away"
    ]  # idle: unused for a week; away: used in the other zone
    since: date | None  # the first day of the use the rate is taken from
    runs_out: RunOutOut | None  # None: no run-out expected


class PackOut(BaseModel):
    pack_id: uuid.UUID
    code: str
    names: dict[str, str]
    zone: str
    volume_bytes: int
    validity_days: int
    price: dict[str, Any]  # the breakdown: list price, offers, total (as a quote's)


class MoneyOut(BaseModel):
    amount: int
    currency: str


class RecommendationOut(BaseModel):
    until: date  # covered to the end of this Hong Kong day
    found: bool  # False: no combination of packs on sale covers it
    covered_already: bool  # the data left covers the period
    expected_bytes: dict[str, int]  # by zone, over the period
    high_bytes: dict[str, int]  # the high estimate the packs cover
    packs: list[PackOut]  # a pack as many times as it is bought, the dearest first
    total: MoneyOut | None


class ForecastOut(BaseModel):
    line_id: uuid.UUID
    as_of: datetime
    zones: dict[str, ZoneOut]
    recommendation: RecommendationOut


router = APIRouter(prefix="/api/v1", tags=["accounts and lines"])


def _zone(z: ZoneForecast) -> ZoneOut:
    ran = z.run_out
    return ZoneOut(
        left_bytes=z.left,
        daily_bytes=round(z.daily),
        state=z.rate.state,
        since=z.rate.since,
        runs_out=RunOutOut(day=ran.day, cause=ran.cause, low=z.low, high=z.high)
        if ran and z.low and z.high
        else None,
    )


@router.get("/lines/{line_id}/forecast", response_model=ForecastOut)
def forecast(
    line_id: uuid.UUID,
    account: CurrentAccount,
    session: SessionDep,
    until: Annotated[
        date | None, Query(description="Last day to cover (Hong Kong time); 30 days by default")
    ] = None,
    currency: Annotated[Currency, Query(description="Currency of the packs' prices")] = "HKD",
) -> ForecastOut:
    """The line's owner: per zone, the data left, the daily rate and the day it runs out with its
    range; and the cheapest packs on sale (offers included) that cover the period at the high
    estimate."""
    line = line_service.own_line(session, account, line_id)
    found = forecasts.of_line(session, account, line, currency=currency, until=until, channel="app")
    rec = found.recommendation
    return ForecastOut(
        line_id=line.id,
        as_of=found.as_of,
        zones={zone: _zone(z) for zone, z in found.zones.items()},
        recommendation=RecommendationOut(
            until=rec.until,
            found=rec.found,
            covered_already=rec.covered_already,
            expected_bytes=rec.expected,
            high_bytes=rec.high,
            packs=[
                PackOut(
                    pack_id=p.pack.id,
                    code=p.pack.code,
                    names=p.pack.names,
                    zone=p.pack.zone,
                    volume_bytes=p.pack.volume_bytes,
                    validity_days=p.pack.validity_days,
                    price=p.price.breakdown,
                )
                for p in rec.picks
            ],
            total=MoneyOut(amount=rec.total.amount, currency=rec.total.currency)
            if rec.total
            else None,
        ),
    )
