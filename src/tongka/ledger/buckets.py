"""Buckets: what one purchase granted to a line, and the balance of a line by zone.

A bucket is a customer ledger account plus its zone and validity. Granting data
moves bytes from the operator's `data_issued` account into the bucket; usage will
move them to `data_used`; what is left at expiry moves to `data_expired`.

Data used beyond everything a line had in a zone is owed (`LineDebt`: an account that
goes below zero) and paid back from the line's next bucket valid in that zone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket, LedgerAccount, LineDebt

ZONES = ("mainland", "hk")  # where a line can use data; a `both` bucket counts in each


def grant(
    session: Session,
    *,
    line_id: uuid.UUID,
    zone: str,
    amount: int,
    valid_from: datetime,
    expires_at: datetime,
    reason: str,
    reference: str,
    unit: str = "bytes",
) -> Bucket:
    if zone not in (*ZONES, "both"):
        raise ValueError(f"unknown zone {zone}")
    if expires_at <= valid_from:
        raise ValueError("a bucket expires after it starts")
    account = ledger.open_account(session, unit=unit, kind="bucket")
    ledger.transfer(
        session,
        ledger.system_account(session, "data_issued", unit),
        account,
        amount,
        reason=reason,
        reference=reference,
    )
    bucket = Bucket(
        line_id=line_id,
        ledger_account_id=account.id,
        zone=zone,
        unit=unit,
        valid_from=valid_from,
        expires_at=expires_at,
        reason=reason,
        reference=reference,
    )
    session.add(bucket)
    session.flush()
    return bucket


@dataclass(frozen=True)
class BucketView:
    id: uuid.UUID
    zone: str
    total_bytes: int
    remaining_bytes: int
    reserved_bytes: int
    valid_from: datetime
    expires_at: datetime


@dataclass(frozen=True)
class ZoneView:
    remaining_bytes: int
    total_bytes: int
    reserved_bytes: int
    bucket_count: int
    next_expiry: datetime | None
    owed_bytes: int = 0  # used beyond everything the line had here: comes out of the next bucket


@dataclass(frozen=True)
class LineBalance:
    zones: dict[str, ZoneView]
    buckets: list[BucketView]
    as_of: datetime


def active_buckets(session: Session, line_id: uuid.UUID, now: datetime) -> list[Bucket]:
    """Buckets in force now, soonest expiry first."""
    return list(
        session.scalars(
            select(Bucket)
            .where(
                Bucket.line_id == line_id,
                Bucket.valid_from <= now,
                Bucket.expires_at > now,
                Bucket.unit == "bytes",
            )
            .order_by(Bucket.expires_at, Bucket.created_at)
        )
    )


# A line's buckets in force with their balances, and its debts: built once (the app reads often).
_IN_FORCE = (
    select(
        Bucket.id,
        Bucket.zone,
        Bucket.valid_from,
        Bucket.expires_at,
        LedgerAccount.credits_posted,
        LedgerAccount.debits_posted,
        LedgerAccount.debits_pending,
    )
    .join(LedgerAccount, LedgerAccount.id == Bucket.ledger_account_id)
    .where(
        Bucket.line_id == bindparam("line_id"),
        Bucket.valid_from <= bindparam("now"),
        Bucket.expires_at > bindparam("now"),
        Bucket.unit == "bytes",
    )
    .order_by(Bucket.expires_at, Bucket.created_at)
)
_DEBTS = (
    select(
        LineDebt.zone,
        LedgerAccount.credits_posted - LedgerAccount.debits_posted - LedgerAccount.debits_pending,
    )
    .join(LedgerAccount, LedgerAccount.id == LineDebt.ledger_account_id)
    .where(LineDebt.line_id == bindparam("line_id"))
)


def line_balance(session: Session, line_id: uuid.UUID, now: datetime | None = None) -> LineBalance:
    """In two statements however many buckets and debts the line has, read as values (no ORM
    objects): its buckets in force with their balances, and what it owes in each zone."""
    now = now or clock.now()
    views = [
        BucketView(
            id=r.id,
            zone=r.zone,
            total_bytes=r.credits_posted,
            remaining_bytes=r.credits_posted - r.debits_posted - r.debits_pending,
            reserved_bytes=r.debits_pending,
            valid_from=r.valid_from,
            expires_at=r.expires_at,
        )
        for r in session.execute(_IN_FORCE, {"line_id": line_id, "now": now})
    ]
    owing = {
        zone: max(0, -available)
        for zone, available in session.execute(_DEBTS, {"line_id": line_id})
    }
    zones = {}
    for zone in ZONES:
        counted = [v for v in views if v.zone in (zone, "both")]
        zones[zone] = ZoneView(
            remaining_bytes=sum(v.remaining_bytes for v in counted),
            total_bytes=sum(v.total_bytes for v in counted),
            reserved_bytes=sum(v.reserved_bytes for v in counted),
            owed_bytes=owing.get(zone, 0),
            bucket_count=len(counted),
            next_expiry=min((v.expires_at for v in counted if v.remaining_bytes > 0), default=None),
        )
    return LineBalance(zones=zones, buckets=views, as_of=now)


def expire_buckets(session: Session, now: datetime | None = None) -> int:
    """Move what is left in each expired bucket to `data_expired`. Returns how many buckets it emptied."""
    now = now or clock.now()
    ledger.expire_reservations(session, now)
    count = 0
    left = LedgerAccount.credits_posted - LedgerAccount.debits_posted - LedgerAccount.debits_pending
    due = (
        select(Bucket)
        .join(Bucket.account)
        .where(Bucket.expires_at <= now, left > 0)
        .order_by(Bucket.expires_at)
    )
    for bucket in session.scalars(due).unique().all():
        moved = ledger.sweep(
            session,
            bucket.account,
            ledger.system_account(session, "data_expired", bucket.unit),
            reason="bucket_expiry",
            reference=f"bucket:{bucket.id}",
        )
        count += moved > 0
    return count


def debt_account(
    session: Session, line_id: uuid.UUID, zone: str, *, create: bool = False
) -> LedgerAccount | None:
    """The ledger account of what the line owes in `zone` (it goes below zero), made on first need."""
    found = session.get(LineDebt, (line_id, zone))
    if found is None and create:
        try:
            with session.begin_nested():
                account = ledger.open_account(
                    session, unit="bytes", kind="debt", must_not_go_negative=False
                )
                found = LineDebt(line_id=line_id, zone=zone, ledger_account_id=account.id)
                session.add(found)
        except IntegrityError:  # made at the same moment by another transaction
            found = session.get_one(LineDebt, (line_id, zone))
    return session.get_one(LedgerAccount, found.ledger_account_id) if found else None


def owed(session: Session, line_id: uuid.UUID, zone: str) -> int:
    """Bytes the line owes in `zone`."""
    debt = debt_account(session, line_id, zone)
    return max(0, -debt.available) if debt is not None else 0


def repay(session: Session, debt: LedgerAccount, candidates: list[Bucket]) -> None:
    """Pay back what is owed from `candidates` (buckets, in drawing order); call with the accounts locked."""
    for bucket in candidates:
        if debt.available >= 0:
            return
        pay = min(-debt.available, bucket.account.available)
        if pay > 0:
            ledger.transfer(
                session,
                bucket.account,
                debt,
                pay,
                reason="usage_owed_repaid",
                reference=f"bucket:{bucket.id}",
            )
