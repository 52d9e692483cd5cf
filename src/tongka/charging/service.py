"""Online charging: which network a line is on, and quota granted from its buckets.

A charging session is opened for a line on a network; its zone (mainland or hk) is
the network's. Each request for quota (one rating group) becomes a grant: volume
reserved in the ledger from the line's buckets valid in that zone — that zone's
buckets and `both` buckets, the soonest-expiring first, the narrower zone before
`both` on a tie — possibly across several buckets, never beyond their available
balance. Reported usage posts against the grant's reservations in the same order;
what is left is released. Usage beyond the grant (or reported after the grant's
reservations lapsed) is not taken from the buckets here: it is returned to the caller
as unreserved usage, to be charged some other way.

Every grant is settled exactly once: settling is a guarded `UPDATE ... WHERE status =
'open'`, and a grant settled twice changes nothing the second time.

Every byte reported (beyond the grant too) is also added to the line's usage of that
day (in Hong Kong time), zone and network, in the same transaction as the settling:
a grant settled twice is counted once.

Locks, in this order: the charging session row, the grant row, then the ledger
accounts (all the accounts of one call at once, ascending id, before any transfer),
then the line's usage row of the day.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Line
from tongka.charging.models import (
    ChargingSession,
    Grant,
    GrantReservation,
    Network,
    UsageDay,
)
from tongka.db import new_id
from tongka.errors import Conflict, Unprocessable
from tongka.i18n import _
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket


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


# A grant's reservations outlive its validity time by this much, so a network element that
# reports a little late is still charged from them, and one that crashed frees them soon after.
RESERVATION_MARGIN = timedelta(seconds=60)

# Usage is counted by calendar day in Hong Kong time (UTC+8 all year: no daylight saving).
HONG_KONG = timezone(timedelta(hours=8), "HKT")

SUCCESS = "SUCCESS"  # 3GPP TS 32.291 resultCode values
QUOTA_LIMIT_REACHED = "QUOTA_LIMIT_REACHED"


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
    charged_bytes: int  # posted from the buckets
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


# --- sessions -----------------------------------------------------------------------------


def open_session(session: Session, line: Line, plmn: str, ref: str) -> ChargingSession:
    """Open the charging session `ref` for `line` on the network `plmn`."""
    network = network_for(session, plmn)
    if line.status != "active":
        raise LineNotActive()
    charging_session = ChargingSession(
        id=new_id(), line_id=line.id, charging_data_ref=ref, plmn=network.plmn, zone=network.zone, status="open"
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
    if requested_bytes <= 0 or validity_seconds <= 0:
        raise ValueError("quota is requested for a positive volume and validity time")
    _lock_open_session(session, charging_session)
    candidates = _buckets_for(session, charging_session, now)
    used = ledger.system_account(session, "data_used", "bytes")
    # Lock every account this grant may touch at once, in ascending id: the balances read
    # below are then current, and the reservations that follow take no new locks.
    ledger.lock_accounts(session, [b.ledger_account_id for b in candidates] + [used.id])

    plan: list[tuple[Bucket, int]] = []
    wanted = requested_bytes
    for bucket in candidates:
        take = min(wanted, bucket.account.available)
        if take > 0:
            plan.append((bucket, take))
            wanted -= take
        if wanted == 0:
            break
    granted = requested_bytes - wanted
    if granted == 0:
        return QuotaResult(QUOTA_LIMIT_REACHED, 0, None, final_unit=True)

    grant = Grant(
        id=new_id(),
        charging_session_id=charging_session.id,
        rating_group=rating_group,
        granted_bytes=granted,
        status="open",
        expires_at=now + timedelta(seconds=validity_seconds) + RESERVATION_MARGIN,
    )
    session.add(grant)
    session.flush()
    for bucket, amount in plan:  # in drawing order, so the transfer ids keep it
        pending = ledger.reserve(
            session, bucket.account, used, amount, reason="usage", reference=f"grant:{grant.id}",
            expires_at=grant.expires_at,
        )
        session.add(GrantReservation(pending_transfer_id=pending.id, grant_id=grant.id, bucket_id=bucket.id, amount=amount))
    session.flush()
    session.refresh(grant, ["reservations"])
    return QuotaResult(SUCCESS, granted, grant, final_unit=granted < requested_bytes)


def report_usage(session: Session, grant: Grant, used_bytes: int) -> UsageResult:
    """Settle `grant` with the volume used: post it against the reservations in order, release the rest.

    Usage beyond the grant is posted up to the grant and the excess returned as
    unreserved; so is the share of a reservation that lapsed before the report.
    Settling a settled grant changes nothing and returns what was recorded.
    """
    if not isinstance(used_bytes, int) or isinstance(used_bytes, bool) or used_bytes < 0:
        raise ValueError("used volume is a non-negative integer")
    now = clock.now()
    claimed = session.execute(
        update(Grant)
        .where(Grant.id == grant.id, Grant.status == "open")
        .values(status="settled", settled_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(grant)
    if claimed != 1:
        return UsageResult(grant, grant.used_bytes, grant.used_bytes - grant.unreserved_bytes, grant.unreserved_bytes, True)

    used = ledger.system_account(session, "data_used", "bytes")
    reservations = list(grant.reservations)
    accounts = session.execute(
        select(Bucket.id, Bucket.ledger_account_id).where(Bucket.id.in_([r.bucket_id for r in reservations]))
    ).all()
    ledger.lock_accounts(session, [account_id for _bucket, account_id in accounts] + [used.id])

    left, unreserved = used_bytes, 0
    for reservation in reservations:
        share = min(left, reservation.amount)
        left -= share
        try:
            if share > 0:
                ledger.post(session, reservation.pending_transfer_id, share)
            else:
                ledger.void(session, reservation.pending_transfer_id)
        except ledger.ReservationExpired:  # past its time, the expiry job has not run yet
            ledger.void(session, reservation.pending_transfer_id, reason="usage_late")
            unreserved += share
        except ledger.ReservationResolved:  # released by the expiry job
            unreserved += share
    unreserved += left
    grant.used_bytes = used_bytes
    grant.unreserved_bytes = unreserved
    session.flush()
    if used_bytes:
        charging_session = session.get_one(ChargingSession, grant.charging_session_id)
        _add_usage(session, charging_session, usage_day(now), used_bytes)
    return UsageResult(grant, used_bytes, used_bytes - unreserved, unreserved, False)


def release(session: Session, charging_session: ChargingSession) -> int:
    """End the session: its open grants are settled with no further usage. Returns how many were settled.

    Report the final usage first (`report_usage`); releasing twice changes nothing.
    """
    claimed = session.execute(
        update(ChargingSession)
        .where(ChargingSession.id == charging_session.id, ChargingSession.status == "open")
        .values(status="released", released_at=clock.now())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(charging_session)
    if claimed != 1:
        return 0
    settled = 0
    for grant in open_grants(session, charging_session):
        settled += not report_usage(session, grant, 0).already_settled
    return settled


def usage_day(at: datetime) -> date:
    """The calendar day in Hong Kong of the instant `at` (timezone-aware)."""
    return at.astimezone(HONG_KONG).date()


@dataclass(frozen=True)
class NetworkUsage:
    day: date
    zone: str
    plmn: str
    operator: str
    bytes: int


def usage_between(session: Session, line_id: uuid.UUID, first: date, last: date) -> list[NetworkUsage]:
    """The line's usage per day, zone and network from `first` to `last` (Hong Kong days, both included),
    newest day first, then the most used network first."""
    rows = session.execute(
        select(UsageDay.day, UsageDay.zone, UsageDay.plmn, Network.operator, UsageDay.bytes)
        .join(Network, Network.plmn == UsageDay.plmn)
        .where(UsageDay.line_id == line_id, UsageDay.day >= first, UsageDay.day <= last, UsageDay.bytes > 0)
        .order_by(UsageDay.day.desc(), UsageDay.bytes.desc(), UsageDay.plmn, UsageDay.zone)
    ).all()
    return [NetworkUsage(*row) for row in rows]


def open_grants(session: Session, charging_session: ChargingSession) -> list[Grant]:
    return list(
        session.scalars(
            select(Grant)
            .where(Grant.charging_session_id == charging_session.id, Grant.status == "open")
            .order_by(Grant.created_at, Grant.id)
        )
    )


# --- helpers ------------------------------------------------------------------------------


def _lock_open_session(session: Session, charging_session: ChargingSession) -> None:
    """Lock the session's row and check it is still open (a release waits for a grant in progress)."""
    status = session.scalar(
        select(ChargingSession.status).where(ChargingSession.id == charging_session.id).with_for_update()
    )
    if status != "open":
        raise ChargingSessionReleased()


def _add_usage(session: Session, charging_session: ChargingSession, day: date, used_bytes: int) -> None:
    """Add `used_bytes` to the line's row of (day, zone, network), creating it if need be.

    Safe under concurrency: add to the row if it exists; else insert it in a savepoint, and if
    another transaction inserted it first (unique violation), add to that one.
    """
    key = (
        UsageDay.line_id == charging_session.line_id,
        UsageDay.day == day,
        UsageDay.zone == charging_session.zone,
        UsageDay.plmn == charging_session.plmn,
    )
    add = (
        update(UsageDay)
        .where(*key)
        .values(bytes=UsageDay.bytes + used_bytes)
        .execution_options(synchronize_session=False)
    )
    if session.execute(add).rowcount == 1:
        return
    try:
        with session.begin_nested():
            session.execute(insert(UsageDay).values(
                id=new_id(), line_id=charging_session.line_id, day=day, zone=charging_session.zone,
                plmn=charging_session.plmn, bytes=used_bytes,
            ))
        return
    except IntegrityError:  # inserted meanwhile by another transaction, now committed
        pass
    if session.execute(add).rowcount != 1:
        raise RuntimeError("the usage row was neither updated nor inserted")


def _buckets_for(session: Session, charging_session: ChargingSession, now: datetime) -> list[Bucket]:
    """The line's buckets usable now in the session's zone, in drawing order."""
    zone = charging_session.zone
    return list(
        session.scalars(
            select(Bucket)
            .where(
                Bucket.line_id == charging_session.line_id,
                Bucket.zone.in_((zone, "both")),
                Bucket.unit == "bytes",
                Bucket.valid_from <= now,
                Bucket.expires_at > now,
            )
            .order_by(Bucket.expires_at, case((Bucket.zone == "both", 1), else_=0), Bucket.created_at, Bucket.id)
        )
    )
