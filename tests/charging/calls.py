"""Charging one call at a time, for the tests: each function runs an `engine.ChargingBatch` for a
single request in the caller's session, as the Nchf API runs one for many (`charging.nchf`).

The batch writes past the ORM and expires the caller's copies of what it wrote, so the rows the
tests hold (grants, charging sessions, ledger accounts) are read again when next used.
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
from tongka.charging.engine import ExcessCharge
from tongka.charging.models import ChargingSession, Grant, UsageDay
from tongka.charging.service import LineNotActive, network_for
from tongka.db import add_rows, new_id
from tongka.errors import Conflict
from tongka.i18n import _


class ChargingSessionExists(Conflict):
    code = "charging_session_exists"
    message = _("A charging session with this reference already exists.")


class ChargingSessionReleased(Conflict):
    code = "charging_session_released"
    message = _("This charging session has ended.")


@dataclass(frozen=True)
class QuotaGranted:
    """`engine.QuotaResult` with the grant's row, for callers that hold rows."""

    result_code: str  # SUCCESS | QUOTA_LIMIT_REACHED | END_USER_SERVICE_DENIED
    granted_bytes: int
    grant: Grant | None  # None when nothing was granted
    final_unit: bool  # True when this is all the line has left in the zone (granted < requested)


@dataclass(frozen=True)
class UsageReported:
    """`engine.UsageResult` with the grant's row, for callers that hold rows."""

    grant: Grant
    used_bytes: int  # as reported
    charged_bytes: int  # posted from the reservations
    unreserved_bytes: int  # used but not charged here: beyond the grant, or after it lapsed
    already_settled: bool  # this grant had been settled before: nothing changed


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
) -> QuotaGranted:
    """Grant up to `requested_bytes` from the line's buckets in the session's zone, reserved in the ledger."""
    batch, state = _batch_for(session, charging_session, now)
    if state.status != "open":
        raise ChargingSessionReleased()
    batch.load_rating_groups([rating_group])
    result = batch.request_quota(state, rating_group, requested_bytes, validity_seconds)
    batch.flush()
    grant = session.get_one(Grant, result.grant_id) if result.grant_id else None
    return QuotaGranted(result.result_code, result.granted_bytes, grant, result.final_unit)


def report_usage(
    session: Session, grant: Grant, used_bytes: int, *, count_usage: bool = True
) -> UsageReported:
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
    return UsageReported(
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
