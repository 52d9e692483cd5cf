"""Closing charging sessions whose network element went silent (the `charging-silent` job).

An SMF reports before each grant's validity time ends (TS 32.291 `validityTime`); one that
crashed, or lost its state, never does. Its grants' reservations lapse a little after the
validity time (`engine.RESERVATION_MARGIN`, then `tongka ledger expire`), but the session
would stay open for ever: its grants open, every renewal queueing a REAUTHORIZATION for an
element that is gone. So a session that has sent nothing for the validity time of its open
grants plus a grace period (`TONGKA_CHARGING_SILENCE_GRACE_SECONDS`) is released exactly as
an SMF's release would release it (`engine.ChargingBatch.release`): each open grant settled
with no further usage, its reservations voided (or, if the expiry job took them already,
left as it resolved them), the session `released`. Usage the element never reported is not
charged: there is no report to charge.

A session holding no grant (its last answer granted nothing: no data left, waiting for a
renewal's REAUTHORIZATION) has no validity time and holds nothing; it is closed after
`QUIET_WITHOUT_QUOTA` of silence, so an SMF waiting for a renewal is not cut off soon.

"Heard" is the newest request the session answered (`charging_answers`), or its creation.
The sessions are locked (the batch's own lock order: sessions, then ledger accounts) and
checked again before each is closed, so a request that arrived meanwhile keeps it open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from tongka import clock
from tongka.charging.engine import RESERVATION_MARGIN, ChargingBatch
from tongka.charging.models import ChargingAnswer, ChargingSession, Grant

log = structlog.get_logger()

QUIET_WITHOUT_QUOTA = timedelta(hours=24)
BATCH = 64  # sessions per charging batch


@dataclass(frozen=True)
class Silence:
    session_id: uuid.UUID
    heard_at: datetime  # the last request answered, or the session's creation
    validity_end: datetime | None  # when its open grants' validity time ends; None: no open grant

    def deadline(self, grace: timedelta) -> datetime:
        """When the session counts as silent (`close_silent`)."""
        if self.validity_end is None:
            return self.heard_at + QUIET_WITHOUT_QUOTA
        return max(self.validity_end, self.heard_at) + grace


def _silences(
    session: Session,
    where: list[ColumnElement[bool]],
    *,
    due: tuple[datetime, timedelta] | None = None,
    limit: int | None = None,
) -> list[Silence]:
    """Open sessions (`where`) with when they were last heard and their open grants' validity end;
    `due` (now, grace): only those silent past their deadline, as `Silence.deadline` says, in SQL so
    that a `limit` is not used up by sessions that still talk."""
    heard = func.coalesce(
        select(func.max(ChargingAnswer.created_at))
        .where(ChargingAnswer.charging_session_id == ChargingSession.id)
        .scalar_subquery(),
        ChargingSession.created_at,
    )
    grants_end = (
        select(func.max(Grant.expires_at))
        .where(Grant.charging_session_id == ChargingSession.id, Grant.status == "open")
        .scalar_subquery()
    )
    query = select(ChargingSession.id, heard, grants_end).where(
        ChargingSession.status == "open", *where
    )
    if due is not None:
        now, grace = due
        query = query.where(
            or_(
                and_(
                    grants_end.is_not(None),
                    heard <= now - grace,
                    grants_end <= now - grace + RESERVATION_MARGIN,
                ),
                and_(grants_end.is_(None), heard <= now - QUIET_WITHOUT_QUOTA),
            )
        )
    query = query.order_by(ChargingSession.created_at, ChargingSession.id)
    if limit is not None:
        query = query.limit(limit)
    found = []
    for session_id, heard_at, end in session.execute(query):
        # The reservations outlive the validity time by the margin (engine.request_quota).
        validity_end = end - RESERVATION_MARGIN if end is not None else None
        found.append(Silence(session_id, heard_at, validity_end))
    return found


def silent_sessions(
    session: Session, *, grace: timedelta, now: datetime | None = None, limit: int = 1000
) -> list[Silence]:
    """Open sessions silent past their deadline, oldest first, at most `limit` (not locked)."""
    now = now or clock.now()
    found = _silences(session, [], due=(now, grace), limit=limit)
    return [s for s in found if s.deadline(grace) <= now]


def close_silent(
    session: Session, *, grace: timedelta, now: datetime | None = None, limit: int = 1000
) -> int:
    """Release every open charging session silent past its validity time plus `grace` (see the module's
    docstring); returns how many were closed. In the caller's transaction, never committed here."""
    now = now or clock.now()
    due = [s.session_id for s in silent_sessions(session, grace=grace, now=now, limit=limit)]
    closed = 0
    for start in range(0, len(due), BATCH):
        ids = due[start : start + BATCH]
        batch = ChargingBatch(session, now)
        batch.load(session_ids=ids)  # locked: a request answered meanwhile is seen below
        still = {
            s.session_id: s
            for s in _silences(session, [ChargingSession.id.in_(ids)])
            if s.deadline(grace) <= now
        }
        for session_id, silence in still.items():
            state = batch.sessions.get(session_id)
            if state is None or state.status != "open":
                continue
            settled = batch.release(state)
            closed += 1
            log.info(
                "charging_session_closed_silent",
                ref=state.ref,
                line_id=str(state.line_id),
                heard_at=silence.heard_at.isoformat(),
                grants_settled=settled,
            )
        batch.flush()
    return closed
