"""Telling the network of new quota: Nchf_ConvergedCharging Notify (REAUTHORIZATION) to a session's notifyUri.

When a renewal or turning overage on gives a line quota, every open charging session
of the line that gave a `notifyUri` is told, so the packet core asks for quota at once
instead of waiting for its next update (or for ever, after a final unit). The
notification is written in the same transaction as the change (an outbox) and sent
after the commit: by the background runner's loop (`run`: in `tongka worker`, or in `tongka
serve` when its background is embedded) every `TONGKA_CHARGING_NOTIFY_EVERY_SECONDS`, or by
`tongka charging notify`. A 2xx answer is done; a 3xx (redirects are not followed) or
another 4xx is given up (logged); no answer or a 5xx is tried again later, with growing
pauses, up to `MAX_ATTEMPTS`. Only a network function's address is ever called
(`outbound.py`, `TONGKA_NF_NOTIFY_ALLOW`): any other is given up unsent.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tongka import clock, outbound
from tongka.charging.models import ChargingAnswer, ChargingNotification, ChargingSession, Grant
from tongka.config import Settings
from tongka.db import matched, transaction

log = structlog.get_logger()

MAX_ATTEMPTS = 8
LEASE = timedelta(
    seconds=30
)  # a sender claims a notification for this long: two senders never both send it
TIMEOUT_SECONDS = 5.0


def quota_changed(session: Session, line_id: uuid.UUID) -> int:
    """Queue a REAUTHORIZATION for each open session of the line that can be told. Returns how many."""
    now = clock.now()
    queued = 0
    for charging_session in session.scalars(
        select(ChargingSession).where(
            ChargingSession.line_id == line_id,
            ChargingSession.status == "open",
            ChargingSession.notify_uri.is_not(None),
        )
    ):
        groups = _rating_groups(session, charging_session)
        body: dict[str, object] = {"notificationType": "REAUTHORIZATION"}
        if groups:  # without details, every rating group of the session is meant
            body["reauthorizationDetails"] = [{"ratingGroup": g} for g in groups]
        assert charging_session.notify_uri is not None
        session.add(
            ChargingNotification(
                charging_session_id=charging_session.id,
                uri=charging_session.notify_uri,
                body=body,
                next_attempt_at=now,
            )
        )
        queued += 1
    session.flush()
    return queued


def _rating_groups(session: Session, charging_session: ChargingSession) -> list[int]:
    """The rating groups the session was granted, and those its last answer refused (QUOTA_LIMIT_REACHED)."""
    groups = set(
        session.scalars(
            select(Grant.rating_group).where(Grant.charging_session_id == charging_session.id)
        )
    )
    last = session.scalars(
        select(ChargingAnswer.answer)
        .where(
            ChargingAnswer.charging_session_id == charging_session.id,
            ChargingAnswer.answer.is_not(None),
        )
        .order_by(
            ChargingAnswer.created_at.desc(), ChargingAnswer.invocation_sequence_number.desc()
        )
        .limit(1)
    ).first()
    groups.update(unit["ratingGroup"] for unit in (last or {}).get("multipleUnitInformation", []))
    return sorted(groups)


def run(stop: threading.Event, settings: Settings, sessions: sessionmaker[Session]) -> None:
    """Send what is due every `charging_notify_every_seconds` until `stop` (one of the background
    runner's loops; 0 seconds: not at all). Several runners may send at once: each notification is
    claimed before it is sent (`_claim`)."""
    every = settings.charging_notify_every_seconds
    if every <= 0:
        return
    allowed = outbound.allowed(settings)
    # No proxy from the environment: the address outbound checked is the one connected to.
    with httpx.Client(trust_env=False) as http:
        while not stop.is_set():
            try:
                deliver_due(sessions, http, allowed=allowed)
            except Exception as error:  # a database hiccup must not end the loop
                log.error("charging_notify_loop_error", exc_info=error)
            stop.wait(every)


@dataclass
class Delivery:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def deliver_due(
    sessions: sessionmaker[Session],
    http: httpx.Client,
    *,
    allowed: outbound.Allowed,
    limit: int = 100,
) -> Delivery:
    """Send the notifications that are due, to the addresses `allowed`. No database transaction is open
    while a request is in flight."""
    now = clock.now()
    # A read (db.READ_ONLY): polled every second, it takes SQLite's write lock only when something is due.
    with transaction(sessions, read_only=True) as session:
        due = session.scalars(
            select(ChargingNotification.id)
            .where(
                ChargingNotification.status == "pending",
                ChargingNotification.next_attempt_at <= now,
            )
            .order_by(ChargingNotification.next_attempt_at)
            .limit(limit)
        ).all()
    report = Delivery()
    for notification_id in due:
        claimed = _claim(sessions, notification_id, now)
        if claimed is None:
            continue  # another sender has it
        uri, body, attempts = claimed
        error = _post(http, uri, body, allowed)
        with sessions.begin() as session:
            notification = session.get_one(ChargingNotification, notification_id)
            notification.attempts = attempts
            if error is None:
                notification.status, notification.sent_at, notification.last_error = (
                    "sent",
                    clock.now(),
                    None,
                )
                report.sent += 1
            elif error.permanent or attempts >= MAX_ATTEMPTS:
                notification.status, notification.last_error = "failed", error.text[:500]
                report.failed += 1
                log.warning("charging_notify_failed", uri=uri, error=error.text, attempts=attempts)
            else:
                notification.last_error = error.text[:500]
                notification.next_attempt_at = clock.now() + timedelta(seconds=2**attempts)
                report.retrying += 1
    return report


def _claim(
    sessions: sessionmaker[Session], notification_id: uuid.UUID, now: datetime
) -> tuple[str, object, int] | None:
    with sessions.begin() as session:
        notification = session.get_one(ChargingNotification, notification_id)
        claimed = matched(
            session.execute(
                update(ChargingNotification)
                .where(
                    ChargingNotification.id == notification_id,
                    ChargingNotification.status == "pending",
                    ChargingNotification.next_attempt_at == notification.next_attempt_at,
                    ChargingNotification.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + LEASE)
                .execution_options(synchronize_session=False)
            )
        )
        return (
            (notification.uri, notification.body, notification.attempts + 1)
            if claimed == 1
            else None
        )


@dataclass(frozen=True)
class _Error:
    text: str
    permanent: bool


def _post(http: httpx.Client, uri: str, body: object, allowed: outbound.Allowed) -> _Error | None:
    try:
        target = outbound.resolve(uri, allowed)
        answer = outbound.post(http, target, body, timeout=TIMEOUT_SECONDS)
    except outbound.Refused as error:
        return _Error(f"refused: {error}", permanent=True)
    except httpx.InvalidURL as error:  # never sendable: given up, not left to stall the queue
        return _Error(f"refused: {error}", permanent=True)
    except OSError as error:  # the name did not resolve now
        return _Error(f"{type(error).__name__}: {error}", permanent=False)
    except httpx.HTTPError as error:
        return _Error(f"{type(error).__name__}: {error}", permanent=False)
    if answer.is_success:
        return None
    if (
        answer.is_redirect
    ):  # followed, it could lead anywhere: the network is told to give its own address
        return _Error(f"HTTP {answer.status_code}: a redirect, not followed", permanent=True)
    return _Error(
        f"HTTP {answer.status_code}: {answer.text[:200]}", permanent=400 <= answer.status_code < 500
    )
