"""Online charging: which network a line is on, and quota granted from its buckets.

A charging session is opened for a line on a network; its zone (mainland or hk) is
the network's. Each request for quota (one rating group) becomes a grant: volume
reserved in the ledger from the line's buckets valid in that zone — that zone's
buckets and `both` buckets, the soonest-expiring first, the narrower zone before
`both` on a tie — possibly across several buckets, never beyond their available
balance. If the owner turned overage on, what the buckets cannot give is granted from
the wallet, up to the month's cap (`overage.py`). Reported usage posts against the
grant's reservations in the same order; what is left is released. Usage beyond the
grant (or reported after its reservations lapsed) is still charged, never free
(`charge_usage`): from what the buckets have left, then overage, and the rest is owed
by the line in that zone (`LineDebt`) and paid back from its next bucket before any new
quota is granted there.

A session's zone is the zone of the network it is on now: a border crossing mid-session
moves it (`engine.ChargingBatch.cross`), the usage before it charged in the old zone and the
usage after it in the new. Rating groups the operator made zero-rated (`set_rating_group`)
are granted without buckets and never charged; any other group is internet data.

The decisions are made by `engine.ChargingBatch`, which the network's API runs for many
requests per transaction; the functions here run it for one call each (the usage
import, the CLI, the tests). Every grant is settled exactly once; every byte reported
(beyond the grant too) is added to the line's usage of that day (in Hong Kong time),
zone and network in the same transaction as the settling.

Locks, in this order: the charging session row, then the ledger accounts (all the
accounts of one call at once, ascending id, before any transfer), then the line's usage
row of the day and overage month.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Line
from tongka.charging import engine
from tongka.charging.engine import (  # noqa: F401  (part of this module's interface)
    HONG_KONG,
    QUOTA_LIMIT_REACHED,
    RESERVATION_MARGIN,
    SUCCESS,
    ExcessCharge,
    usage_day,
)
from tongka.charging.models import (
    ChargingSession,
    Grant,
    Network,
    RatingGroup,
    UsageDay,
)
from tongka.db import add_rows, new_id
from tongka.errors import Conflict, Unprocessable
from tongka.i18n import _


class UnknownNetwork(Unprocessable):
    code = "unknown_network"
    message = _("The network {plmn} is not known to tongka.")


class NetworkNotServed(Unprocessable):
    code = "network_not_served"
    message = _("The network {plmn} is not served at the moment.")


class LineNotActive(Conflict):
    code = "line_not_active"
    message = _("This line is not active.")


class ChargingSessionExists(Conflict):
    code = "charging_session_exists"
    message = _("A charging session with this reference already exists.")


class ChargingSessionReleased(Conflict):
    code = "charging_session_released"
    message = _("This charging session has ended.")


@dataclass(frozen=True)
class QuotaResult:
    result_code: str  # SUCCESS | QUOTA_LIMIT_REACHED
    granted_bytes: int
    grant: Grant | None  # None when nothing was granted
    final_unit: bool  # True when this is all the line has left in the zone (granted < requested)


@dataclass(frozen=True)
class UsageResult:
    grant: Grant
    used_bytes: int  # as reported
    charged_bytes: int  # posted from the reservations
    unreserved_bytes: int  # used but not charged here: beyond the grant, or after it lapsed
    already_settled: bool  # this grant had been settled before: nothing changed


# --- networks -----------------------------------------------------------------------------


def network_for(session: Session, plmn: str) -> Network:
    """The active network with this PLMN ("460-00"); unknown or inactive ones are refused."""
    network = session.get(Network, plmn)
    if network is None:
        raise UnknownNetwork(plmn=plmn)
    if not network.active:
        raise NetworkNotServed(plmn=plmn)
    return network


def networks(session: Session) -> list[Network]:
    return list(session.scalars(select(Network).order_by(Network.zone, Network.plmn)))


# --- rating groups --------------------------------------------------------------------------


def rating_groups(session: Session) -> list[RatingGroup]:
    """The rating groups the operator configured. Any other group the network names is charged as internet data."""
    return list(session.scalars(select(RatingGroup).order_by(RatingGroup.rating_group)))


def set_rating_group(session: Session, number: int, name: str, *, zero_rated: bool) -> RatingGroup:
    """Name a rating group and say whether it is zero-rated; applies to usage reported and quota asked from now on."""
    if not 0 <= number <= 2**32 - 1 or not name.strip() or len(name) > 64:
        raise ValueError("a rating group is a uint32 with a name of 1 to 64 characters")
    now = clock.now()
    group = session.get(RatingGroup, number, with_for_update=True)
    if group is None:
        group = RatingGroup(rating_group=number, created_at=now)
        session.add(group)
    group.name, group.zero_rated, group.updated_at = name.strip(), zero_rated, now
    session.flush()
    return group


# --- sessions -----------------------------------------------------------------------------


def open_session(
    session: Session,
    line: Line,
    plmn: str,
    ref: str,
    *,
    notify_uri: str | None = None,
    create_key: str | None = None,
) -> ChargingSession:
    """Open the charging session `ref` for `line` on the network `plmn`."""
    network = network_for(session, plmn)
    if line.status != "active":
        raise LineNotActive()
    charging_session = ChargingSession(
        id=new_id(),
        line_id=line.id,
        charging_data_ref=ref,
        plmn=network.plmn,
        zone=network.zone,
        status="open",
        notify_uri=notify_uri,
        create_key=create_key,
    )
    try:
        with session.begin_nested():
            session.add(charging_session)
    except IntegrityError:
        raise ChargingSessionExists() from None
    return charging_session


def request_quota(
    session: Session,
    charging_session: ChargingSession,
    rating_group: int,
    requested_bytes: int,
    validity_seconds: int,
    now: datetime,
) -> QuotaResult:
    """Grant up to `requested_bytes` from the line's buckets in the session's zone, reserved in the ledger."""
    batch, state = _batch_for(session, charging_session, now)
    if state.status != "open":
        raise ChargingSessionReleased()
    batch.load_rating_groups([rating_group])
    result = batch.request_quota(state, rating_group, requested_bytes, validity_seconds)
    batch.flush()
    grant = session.get_one(Grant, result.grant_id) if result.grant_id else None
    return QuotaResult(result.result_code, result.granted_bytes, grant, result.final_unit)


def report_usage(
    session: Session, grant: Grant, used_bytes: int, *, count_usage: bool = True
) -> UsageResult:
    """Settle `grant` with the volume used: post it against the reservations in order, release the rest.

    Usage beyond the grant is posted up to the grant and the excess returned as
    unreserved (for `charge_usage`); so is the share of a reservation that lapsed before
    the report. Settling a settled grant changes nothing and returns what was recorded.
    """
    batch, state = _batch_for(
        session, session.get_one(ChargingSession, grant.charging_session_id), clock.now()
    )
    found = next((g for g in state.grants if g.id == grant.id), None)
    if found is None:  # settled already: as recorded
        row = session.execute(
            select(Grant.used_bytes, Grant.unreserved_bytes).where(Grant.id == grant.id)
        ).one()
        found = engine.GrantState(
            grant.id,
            state.id,
            grant.rating_group,
            grant.granted_bytes,
            grant.expires_at,
            grant.created_at,
            [],
            status="settled",
            used_bytes=row[0],
            unreserved_bytes=row[1],
        )
    result = batch.report_usage(found, used_bytes, count_usage=count_usage)
    batch.flush()
    return UsageResult(
        session.get_one(Grant, grant.id),
        result.used_bytes,
        result.charged_bytes,
        result.unreserved_bytes,
        result.already_settled,
    )


def settle_usage(
    session: Session, charging_session: ChargingSession, rating_group: int, used_bytes: int
) -> ExcessCharge | None:
    """The usage reported for a rating group: settles its open grants in order, counts it once
    in the day's usage, and charges what no grant covered (`charge_usage`)."""
    batch, state = _batch_for(session, charging_session, clock.now())
    batch.load_rating_groups([rating_group])
    excess = batch.settle_usage(state, rating_group, used_bytes)
    batch.flush()
    return excess


def charge_usage(
    session: Session, line: Line, zone: str, used_bytes: int, at: datetime, *, reference: str
) -> ExcessCharge:
    """Charge usage no grant covered (beyond a grant, after it lapsed, or reported from a file).

    In order: what the line's buckets valid at `at` in `zone` still have available, then
    overage if its owner turned it on (within the wallet and the month's cap), and the rest
    is owed by the line in that zone. Does not count the usage of the day: the caller does.
    """
    batch = engine.ChargingBatch(session, at)
    batch.load(line_ids=[line.id])
    excess = batch.charge_usage(batch.lines[line.id], zone, used_bytes, reference=reference)
    batch.flush()
    return excess


def release(session: Session, charging_session: ChargingSession) -> int:
    """End the session: its open grants are settled with no further usage. Returns how many were settled.

    Report the final usage first (`report_usage`); releasing twice changes nothing.
    """
    batch, state = _batch_for(session, charging_session, clock.now())
    settled = batch.release(state)
    batch.flush()
    return settled


@dataclass(frozen=True)
class NetworkUsage:
    day: date
    zone: str
    plmn: str
    operator: str
    bytes: int


def usage_between(
    session: Session, line_id: uuid.UUID, first: date, last: date
) -> list[NetworkUsage]:
    """The line's usage per day, zone and network from `first` to `last` (Hong Kong days, both included),
    newest day first, then the most used network first."""
    rows = session.execute(
        select(UsageDay.day, UsageDay.zone, UsageDay.plmn, Network.operator, UsageDay.bytes)
        .join(Network, Network.plmn == UsageDay.plmn)
        .where(
            UsageDay.line_id == line_id,
            UsageDay.day >= first,
            UsageDay.day <= last,
            UsageDay.bytes > 0,
        )
        .order_by(UsageDay.day.desc(), UsageDay.bytes.desc(), UsageDay.plmn, UsageDay.zone)
    ).all()
    return [NetworkUsage(*row) for row in rows]


def open_grants(
    session: Session, charging_session: ChargingSession, rating_group: int | None = None
) -> list[Grant]:
    query = select(Grant).where(
        Grant.charging_session_id == charging_session.id, Grant.status == "open"
    )
    if rating_group is not None:
        query = query.where(Grant.rating_group == rating_group)
    return list(session.scalars(query.order_by(Grant.created_at, Grant.id)))


# --- helpers ------------------------------------------------------------------------------


def _batch_for(
    session: Session, charging_session: ChargingSession, now: datetime
) -> tuple[engine.ChargingBatch, engine.SessionState]:
    """A batch of one call, with the charging session (locked), its open grants and its line loaded."""
    batch = engine.ChargingBatch(session, now)
    batch.load(session_ids=[charging_session.id])
    return batch, batch.sessions[charging_session.id]


def add_usage(
    session: Session, line_id: uuid.UUID, zone: str, plmn: str, day: date, used_bytes: int
) -> None:
    """Add `used_bytes` to the line's usage of (day, zone, network)."""
    add_rows(
        session,
        UsageDay,
        ("line_id", "day", "zone", "plmn"),
        ("bytes",),
        [
            {
                "id": new_id(),
                "line_id": line_id,
                "day": day,
                "zone": zone,
                "plmn": plmn,
                "bytes": used_bytes,
            }
        ],
    )
