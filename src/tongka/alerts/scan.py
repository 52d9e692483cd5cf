"""The alerts the ledger tells of: data used (80, 90, 100 %), data expiring (in 3 days, in 1 day),
overage started and its monthly cap reached. Run every minute by the job `alerts-scan`.

What a scan reads, so it never walks every bucket there is:
- buckets in force whose ledger account was debited since the scan before the last one (a
  transfer id above the cursor: usage and reservations are debits of the bucket's account);
- buckets whose 3-day or 1-day mark passed since the scan before the last one;
- this Hong Kong month's overage rows (one per line that used overage this month).
The cursor is the previous scan's, not this one's, so each window is read twice: a charging
transaction that took its transfer id before a scan but committed after it is seen by the next
one. Both sets come in one statement; the events already fired are then left out in a second.

Each alert is fired once however many scans see it (two workers, a window read twice): the
event's (kind, key) is unique (`service.fire`), keys `bucket:<id>:80`, `bucket:<id>:exp3`,
`overage:<line>:<month>`, `overage_cap:<line>:<month>`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.account.models import Account, Line
from tongka.alerts import service
from tongka.alerts.models import AlertEvent, AlertScan
from tongka.charging.models import LineOverage, OverageMonth
from tongka.charging.overage import month_of
from tongka.ledger.models import Bucket, LedgerAccount, Transfer

CURSOR = "ledger"
THRESHOLDS = (80, 90, 100)  # % of a bucket used (credited less available)
EXPIRY = {"exp3": timedelta(days=3), "exp1": timedelta(days=1)}
_USED_KIND = {80: "data_used_80", 90: "data_used_90", 100: "data_used_100"}
_EXPIRY_KIND = {"exp3": "data_expiring_3d", "exp1": "data_expiring_1d"}


@dataclass(frozen=True)
class Due:
    kind: str
    key: str
    line_id: uuid.UUID
    params: dict[str, Any]


def scan(session: Session, now: datetime | None = None) -> int:
    """Fire every alert the ledger shows due since the last scans; returns how many fired."""
    now = now or clock.now()
    since_transfer, since_time = _advance(session, now)
    due = _bucket_alerts(session, now, since_transfer, since_time) + _overage_alerts(session, now)
    due = _not_fired(session, due)
    fired = 0
    lines: dict[uuid.UUID, Line] = {}
    accounts: dict[uuid.UUID, Account] = {}
    for alert in due:
        line = lines.get(alert.line_id) or session.get_one(Line, alert.line_id)
        lines[line.id] = line
        if line.account_id is None:
            continue  # not bound to anyone: nobody to tell
        account = accounts.get(line.account_id) or session.get_one(Account, line.account_id)
        accounts[account.id] = account
        event = service.fire(
            session, account=account, kind=alert.kind, key=alert.key, line=line, **alert.params
        )
        fired += event is not None
    return fired


def _advance(session: Session, now: datetime) -> tuple[int, datetime]:
    """Move the cursor to now; gives where the scan before this one started from."""
    last = session.scalar(select(func.max(Transfer.id))) or 0
    cursor = session.get(AlertScan, CURSOR)
    if cursor is None:
        # The first scan ever reads every bucket in force once.
        try:
            with session.begin_nested():
                session.add(
                    AlertScan(
                        name=CURSOR,
                        transfer_id=last,
                        previous_transfer_id=0,
                        scanned_at=now,
                        previous_scanned_at=now - EXPIRY["exp3"],
                    )
                )
            return 0, now - EXPIRY["exp3"]
        except IntegrityError:  # another worker made it at the same moment
            cursor = session.get_one(AlertScan, CURSOR)
    since = cursor.previous_transfer_id, cursor.previous_scanned_at
    # Two scans at once may both move it: either's values hold, and the next scan reads from the
    # older of the two windows anyway.
    cursor.previous_transfer_id, cursor.previous_scanned_at = (
        cursor.transfer_id,
        cursor.scanned_at,
    )
    cursor.transfer_id, cursor.scanned_at = (
        max(last, cursor.transfer_id),
        max(now, cursor.scanned_at),
    )
    return since


def _bucket_alerts(
    session: Session, now: datetime, since_transfer: int, since_time: datetime
) -> list[Due]:
    debited = select(Transfer.debit_account_id).where(Transfer.id > since_transfer)
    marks = [
        Bucket.expires_at.between(since_time + window, now + window) for window in EXPIRY.values()
    ]
    rows = session.execute(
        select(
            Bucket.id,
            Bucket.line_id,
            Bucket.zone,
            Bucket.valid_from,
            Bucket.expires_at,
            LedgerAccount.credits_posted,
            LedgerAccount.debits_posted + LedgerAccount.debits_pending,
        )
        .join(LedgerAccount, LedgerAccount.id == Bucket.ledger_account_id)
        .where(
            Bucket.unit == "bytes",
            Bucket.valid_from <= now,
            Bucket.expires_at > now,
            or_(Bucket.ledger_account_id.in_(debited), *marks),
        )
    ).all()
    due: list[Due] = []
    for bucket_id, line_id, zone, valid_from, expires_at, credited, used in rows:
        if credited <= 0:
            continue
        left = max(0, credited - used)
        params = {"zone": zone, "total": credited, "left": left}
        for percent in THRESHOLDS:
            if used * 100 >= credited * percent:
                due.append(
                    Due(_USED_KIND[percent], f"bucket:{bucket_id}:{percent}", line_id, params)
                )
        remaining = expires_at - now
        for mark in ("exp1", "exp3") if left > 0 else ():
            window = EXPIRY[mark]
            # Only a bucket that had more time than that (a 1-day pack is not "expiring" at once).
            if remaining <= window and expires_at - valid_from > window:
                params = {"zone": zone, "left": left, "expires_at": expires_at.isoformat()}
                due.append(Due(_EXPIRY_KIND[mark], f"bucket:{bucket_id}:{mark}", line_id, params))
                break  # within a day, "3 days" is no longer news
    return due


def _overage_alerts(session: Session, now: datetime) -> list[Due]:
    month = month_of(now)
    rows = session.execute(
        select(
            OverageMonth.line_id,
            OverageMonth.currency,
            OverageMonth.charged,
            LineOverage.monthly_cap,
        )
        .join(LineOverage, LineOverage.line_id == OverageMonth.line_id)
        .where(OverageMonth.month == month, OverageMonth.charged > 0)
    ).all()
    due: list[Due] = []
    for line_id, currency, charged, cap in rows:
        params = {"charged": charged, "cap": cap, "currency": currency}
        due.append(Due("overage_started", f"overage:{line_id}:{month:%Y-%m}", line_id, params))
        if cap > 0 and charged >= cap:
            key = f"overage_cap:{line_id}:{month:%Y-%m}"
            due.append(Due("overage_cap_reached", key, line_id, params))
    return due


def _not_fired(session: Session, due: list[Due]) -> list[Due]:
    """`due` less what fired already: one statement, by the events' unique (kind, key)."""
    if not due:
        return []
    fired: set[tuple[str, str]] = set()
    for part in range(0, len(due), 500):
        chunk = due[part : part + 500]
        fired.update(
            (kind, key)
            for kind, key in session.execute(
                select(AlertEvent.kind, AlertEvent.key).where(
                    AlertEvent.kind.in_({d.kind for d in chunk}),
                    AlertEvent.key.in_({d.key for d in chunk}),
                )
            )
        )
    return [d for d in due if (d.kind, d.key) not in fired]
