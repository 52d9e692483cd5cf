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

Every grant is settled exactly once: settling is a guarded `UPDATE ... WHERE status =
'open'`, and a grant settled twice changes nothing the second time.

Every byte reported (beyond the grant too) is also added to the line's usage of that
day (in Hong Kong time), zone and network, in the same transaction as the settling:
a grant settled twice is counted once.

Locks, in this order: the charging session row, the grant row, then the ledger
accounts (all the accounts of one call at once, ascending id, before any transfer),
then the line's usage row of the day and overage month.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload

from tongka import clock
from tongka.account.models import Line
from tongka.charging import overage
from tongka.charging.models import (
    ChargingSession,
    Grant,
    GrantReservation,
    Network,
    UsageDay,
)
from tongka.db import add_to_row, new_id
from tongka.errors import Conflict, Unprocessable
from tongka.i18n import _
from tongka.ledger import buckets
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket, Transfer


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
class ExcessCharge:
    """How usage no grant covered was charged: every byte somewhere."""

    from_buckets: int
    overage_bytes: int
    overage_amount: int  # minor units of the wallet's currency
    owed_bytes: int


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


def open_session(
    session: Session, line: Line, plmn: str, ref: str, *, notify_uri: str | None = None, create_key: str | None = None
) -> ChargingSession:
    """Open the charging session `ref` for `line` on the network `plmn`."""
    network = network_for(session, plmn)
    if line.status != "active":
        raise LineNotActive()
    charging_session = ChargingSession(
        id=new_id(), line_id=line.id, charging_data_ref=ref, plmn=network.plmn, zone=network.zone, status="open",
        notify_uri=notify_uri, create_key=create_key,
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
    line = _line(session, charging_session.line_id)
    candidates = _buckets_for(session, line.id, charging_session.zone, now)
    used = ledger.system_account(session, "data_used", "bytes")
    debt = buckets.debt_account(session, line.id, charging_session.zone)
    wallet = overage.wallet_account_for(session, line, charging_session.zone)
    sales = ledger.system_account(session, "overage_sales", wallet[0].currency) if wallet else None
    # Lock every account this grant may touch at once, in ascending id: the balances read
    # below are then current, and the transfers that follow take no new locks.
    ledger.lock_accounts(session, [b.ledger_account_id for b in candidates] + [
        a.id for a in (used, debt, sales) if a is not None
    ] + ([wallet[0].ledger_account_id] if wallet else []))
    if debt is not None:
        buckets.repay(session, debt, candidates)

    plan: list[tuple[Bucket, int]] = []
    wanted = requested_bytes
    for bucket in candidates:
        take = min(wanted, bucket.account.available)
        if take > 0:
            plan.append((bucket, take))
            wanted -= take
        if wanted == 0:
            break
    extra = None
    if wanted and wallet and sales:
        allowed = overage.allowance(session, line, *wallet, now)
        if (volume := min(wanted, allowed.volume)) > 0:
            extra = (allowed, volume)
            wanted -= volume
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
        session.add(GrantReservation(
            pending_transfer_id=pending.id, grant_id=grant.id, bucket_id=bucket.id, amount=amount, volume_bytes=amount
        ))
    if extra and sales:
        allowed, volume = extra
        money = overage.cost(volume, allowed.per_mb)
        pending = ledger.reserve(
            session, allowed.wallet.ledger_account, sales, money, reason="overage", reference=f"grant:{grant.id}",
            expires_at=grant.expires_at,
        )
        session.add(GrantReservation(
            pending_transfer_id=pending.id, grant_id=grant.id, amount=money, volume_bytes=volume, per_mb=allowed.per_mb
        ))
    session.flush()
    session.refresh(grant, ["reservations"])
    return QuotaResult(SUCCESS, granted, grant, final_unit=granted < requested_bytes)


def report_usage(session: Session, grant: Grant, used_bytes: int, *, count_usage: bool = True) -> UsageResult:
    """Settle `grant` with the volume used: post it against the reservations in order, release the rest.

    Usage beyond the grant is posted up to the grant and the excess returned as
    unreserved (for `charge_usage`); so is the share of a reservation that lapsed before
    the report. Settling a settled grant changes nothing and returns what was recorded.
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

    reservations = list(grant.reservations)
    pairs = {
        row.id: (row.debit_account_id, row.credit_account_id)
        for row in session.execute(
            select(Transfer.id, Transfer.debit_account_id, Transfer.credit_account_id)
            .where(Transfer.id.in_([r.pending_transfer_id for r in reservations]))
        )
    }
    accounts = ledger.lock_accounts(session, [account_id for pair in pairs.values() for account_id in pair])
    charging_session = session.get_one(ChargingSession, grant.charging_session_id)

    left, unreserved = used_bytes, 0
    overage_amount = overage_volume = 0
    overage_currency = ""
    for reservation in reservations:
        share = min(left, reservation.volume_bytes)
        left -= share
        amount = share if reservation.per_mb is None else overage.cost(share, reservation.per_mb)
        try:
            if amount > 0:
                ledger.post(session, reservation.pending_transfer_id, amount)
            else:
                ledger.void(session, reservation.pending_transfer_id)
        except ledger.ReservationExpired:  # past its time, the expiry job has not run yet
            ledger.void(session, reservation.pending_transfer_id, reason="usage_late")
            unreserved += share
            continue
        except ledger.ReservationResolved:  # released by the expiry job
            unreserved += share
            continue
        if reservation.per_mb is not None:
            overage_amount += amount
            overage_volume += share
            overage_currency = accounts[pairs[reservation.pending_transfer_id][0]].unit
    unreserved += left
    grant.used_bytes = used_bytes
    grant.unreserved_bytes = unreserved
    session.flush()
    if overage_amount:
        overage.record(session, charging_session.line_id, now, overage_currency, overage_amount, overage_volume)
    if used_bytes and count_usage:
        add_usage(session, charging_session.line_id, charging_session.zone, charging_session.plmn, usage_day(now), used_bytes)
    return UsageResult(grant, used_bytes, used_bytes - unreserved, unreserved, False)


def settle_usage(
    session: Session, charging_session: ChargingSession, rating_group: int, used_bytes: int
) -> ExcessCharge | None:
    """The usage reported for a rating group: settles its open grants in order, counts it once
    in the day's usage, and charges what no grant covered (`charge_usage`)."""
    left = used_bytes
    for grant in open_grants(session, charging_session, rating_group):
        left = report_usage(session, grant, left, count_usage=False).unreserved_bytes
    now = clock.now()
    if used_bytes:
        add_usage(session, charging_session.line_id, charging_session.zone, charging_session.plmn, usage_day(now), used_bytes)
    if not left:
        return None
    return charge_usage(
        session, _line(session, charging_session.line_id), charging_session.zone, left, now,
        reference=f"charging_session:{charging_session.id}",
    )


def charge_usage(session: Session, line: Line, zone: str, used_bytes: int, at: datetime, *, reference: str) -> ExcessCharge:
    """Charge usage no grant covered (beyond a grant, after it lapsed, or reported from a file).

    In order: what the line's buckets valid at `at` in `zone` still have available, then
    overage if its owner turned it on (within the wallet and the month's cap), and the rest
    is owed by the line in that zone. Does not count the usage of the day: the caller does.
    """
    if used_bytes <= 0:
        raise ValueError("charged usage is a positive volume")
    candidates = _buckets_for(session, line.id, zone, at)
    used = ledger.system_account(session, "data_used", "bytes")
    wallet = overage.wallet_account_for(session, line, zone)
    sales = ledger.system_account(session, "overage_sales", wallet[0].currency) if wallet else None
    debt = buckets.debt_account(session, line.id, zone)
    ledger.lock_accounts(session, [b.ledger_account_id for b in candidates] + [
        a.id for a in (used, debt, sales) if a is not None
    ] + ([wallet[0].ledger_account_id] if wallet else []))

    left = used_bytes
    for bucket in candidates:
        take = min(left, bucket.account.available)
        if take > 0:
            ledger.transfer(session, bucket.account, used, take, reason="usage_beyond_grant", reference=reference)
            left -= take
    from_buckets = used_bytes - left
    overage_bytes = overage_amount = 0
    if left and wallet and sales:
        allowed = overage.allowance(session, line, *wallet, at)
        if (volume := min(left, allowed.volume)) > 0:
            overage_amount = overage.cost(volume, allowed.per_mb)
            ledger.transfer(
                session, allowed.wallet.ledger_account, sales, overage_amount, reason="overage", reference=reference
            )
            overage.record(session, line.id, at, allowed.wallet.currency, overage_amount, volume)
            overage_bytes, left = volume, left - volume
    if left:
        debt = debt or buckets.debt_account(session, line.id, zone, create=True)
        assert debt is not None
        ledger.transfer(session, debt, used, left, reason="usage_owed", reference=reference)
    return ExcessCharge(from_buckets, overage_bytes, overage_amount, left)


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


def open_grants(session: Session, charging_session: ChargingSession, rating_group: int | None = None) -> list[Grant]:
    query = select(Grant).where(Grant.charging_session_id == charging_session.id, Grant.status == "open")
    if rating_group is not None:
        query = query.where(Grant.rating_group == rating_group)
    return list(session.scalars(query.order_by(Grant.created_at, Grant.id)))


# --- helpers ------------------------------------------------------------------------------


def _line(session: Session, line_id: uuid.UUID) -> Line:
    """The line, without its real-name record (charging never needs it: one query less per request)."""
    return session.get_one(Line, line_id, options=[lazyload(Line.real_name)])


def _lock_open_session(session: Session, charging_session: ChargingSession) -> None:
    """Lock the session's row and check it is still open (a release waits for a grant in progress)."""
    status = session.scalar(
        select(ChargingSession.status).where(ChargingSession.id == charging_session.id).with_for_update()
    )
    if status != "open":
        raise ChargingSessionReleased()


def add_usage(session: Session, line_id: uuid.UUID, zone: str, plmn: str, day: date, used_bytes: int) -> None:
    """Add `used_bytes` to the line's usage of (day, zone, network)."""
    add_to_row(
        session, UsageDay, {"line_id": line_id, "day": day, "zone": zone, "plmn": plmn}, {"bytes": used_bytes},
        id=new_id(),
    )


def _buckets_for(session: Session, line_id: uuid.UUID, zone: str, now: datetime) -> list[Bucket]:
    """The line's buckets usable at `now` in `zone`, in drawing order."""
    return list(
        session.scalars(
            select(Bucket)
            .where(
                Bucket.line_id == line_id,
                Bucket.zone.in_((zone, "both")),
                Bucket.unit == "bytes",
                Bucket.valid_from <= now,
                Bucket.expires_at > now,
            )
            .order_by(Bucket.expires_at, case((Bucket.zone == "both", 1), else_=0), Bucket.created_at, Bucket.id)
        )
    )
