"""App API: a line's data usage per day, zone and network.

Who may call: the line's owner (another subscriber's line, or nobody's, is 404).
Days are calendar days in Hong Kong time (UTC+8); usage counts on the day it was
reported by the network, every byte of it (beyond the line's quota too).
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from tongka import clock
from tongka.account import lines as line_service
from tongka.charging import service as charging
from tongka.deps import CurrentAccount, SessionDep
from tongka.errors import Unprocessable
from tongka.i18n import _

DEFAULT_DAYS = 30
MAX_DAYS = 366
ZONES = ("mainland", "hk")


class UsageRangeInvalid(Unprocessable):
    code = "usage_range_invalid"
    message = _("The period must end on or after its first day and span at most {max_days} days.")


class NetworkUsageOut(BaseModel):
    plmn: str
    operator: str
    zone: str
    bytes: int


class UsageDayOut(BaseModel):
    day: date
    total_bytes: int
    zones: dict[str, int]  # mainland, hk: every zone, 0 when unused
    networks: list[NetworkUsageOut]  # the most used first


class UsageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    line_id: uuid.UUID
    from_: date = Field(alias="from")
    to: date
    total_bytes: int
    days: list[UsageDayOut]  # newest first; only days with usage


router = APIRouter(prefix="/api/v1", tags=["accounts and lines"])


@router.get("/lines/{line_id}/usage", response_model=UsageOut)
def usage(
    line_id: uuid.UUID,
    account: CurrentAccount,
    session: SessionDep,
    first: Annotated[
        date | None, Query(alias="from", description="First day (Hong Kong time), included")
    ] = None,
    last: Annotated[
        date | None, Query(alias="to", description="Last day (Hong Kong time), included")
    ] = None,
) -> UsageOut:
    """The line's owner: data used per day (Hong Kong time), per zone and per network, newest day first.

    Both dates are included; `to` defaults to today and `from` to 29 days before `to` (30 days).
    At most 366 days at once.
    """
    line = line_service.own_line(session, account, line_id)
    last = last or charging.usage_day(clock.now())
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last or (last - first).days + 1 > MAX_DAYS:
        raise UsageRangeInvalid(max_days=MAX_DAYS)

    days: dict[date, UsageDayOut] = {}
    for row in charging.usage_between(session, line.id, first, last):
        day = days.setdefault(
            row.day,
            UsageDayOut(day=row.day, total_bytes=0, zones=dict.fromkeys(ZONES, 0), networks=[]),
        )
        day.total_bytes += row.bytes
        day.zones[row.zone] = day.zones.get(row.zone, 0) + row.bytes
        day.networks.append(
            NetworkUsageOut(plmn=row.plmn, operator=row.operator, zone=row.zone, bytes=row.bytes)
        )
    return UsageOut(
        line_id=line.id,
        from_=first,
        to=last,
        total_bytes=sum(d.total_bytes for d in days.values()),
        days=list(days.values()),  # in the order read: newest first
    )
