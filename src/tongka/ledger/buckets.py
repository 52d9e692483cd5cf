"""Buckets: what one purchase granted to a line, and the balance of a line by zone.

A bucket is a customer ledger account plus its zone and validity. Granting data
moves bytes from the operator's `data_issued` account into the bucket; usage will
move them to `data_used`; what is left at expiry moves to `data_expired`.

Data used beyond everything a line had in a zone is owed (`LineDebt`: an account that
goes below zero) and paid back from the line's next bucket valid in that zone.

Drawing: data used or reserved in a zone comes from that zone's buckets and `both` buckets,
the soonest-expiring first, the narrower zone before `both` on a tie, then the oldest
(`drawing_order`), each giving what it has available (`draw`). Online charging
(`charging.engine`) and the usage import draw this way, on the buckets they read here
(`usable_buckets`, `buckets_between`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import (
    ScalarSelect,
    Select,
    and_,
    bindparam,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongka import clock
from tongka.db import AnyOf
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket, LedgerAccount, LineDebt

ZONES = ("mainland", "hk")  # where a line can use data; a `both` bucket counts in each


# --- drawing --------------------------------------------------------------------------------


def counts_in(bucket_zone: str, zone: str) -> bool:
    """Whether a bucket of `bucket_zone` can be drawn on in `zone`."""
    return bucket_zone in (zone, "both")


def drawing_order(
    expires_at: datetime, zone: str, created_at: datetime, bucket_id: uuid.UUID
) -> tuple[datetime, bool, datetime, uuid.UUID]:
    """Sort key of buckets drawn on together: soonest expiry, the narrower zone before `both`, the oldest."""
    return (expires_at, zone == "both", created_at, bucket_id)


class _Available(Protocol):
    @property
    def available(self) -> int: ...


class Drawable(Protocol):
    """A bucket with its ledger account as held by the caller (`batch.Account`), current."""

    @property
    def account(self) -> _Available: ...


B = TypeVar("B", bound=Drawable)


def draw(buckets: Iterable[B], amount: int) -> tuple[list[tuple[B, int]], int]:
    """What to take from each of `buckets` (usable, in drawing order) for up to `amount`: all that
    each has available until `amount` is reached; and what is left that they could not give.
    The caller moves it."""
    plan = []
    for bucket in buckets:
        if (take := min(amount, bucket.account.available)) > 0:
            plan.append((bucket, take))
            amount -= take
            if amount == 0:
                break
    return plan, amount


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


# A line's buckets in force with their balances, and its debts, in one statement built once (the
# app reads often): a debt comes as a row without a bucket id, its balance negative when owed.
# Parameters `line_id` and `now`; the rows are what `balance_of` reads. Unordered: a caller that
# makes it a subquery (the app's balance read, joined to its token) orders by `BALANCE_ORDER`.
_LEFT = LedgerAccount.credits_posted - LedgerAccount.debits_posted - LedgerAccount.debits_pending
BALANCE_ROWS = union_all(
    select(
        Bucket.id,
        Bucket.zone,
        Bucket.valid_from,
        Bucket.expires_at.label("expires_at"),
        Bucket.created_at.label("created_at"),
        LedgerAccount.credits_posted,
        _LEFT.label("left"),
        LedgerAccount.debits_pending,
    )
    .join(LedgerAccount, LedgerAccount.id == Bucket.ledger_account_id)
    .where(
        Bucket.line_id == bindparam("line_id"),
        Bucket.valid_from <= bindparam("now"),
        Bucket.expires_at > bindparam("now"),
        Bucket.unit == "bytes",
    ),
    select(
        null().cast(Bucket.id.type),
        LineDebt.zone,
        null().cast(Bucket.valid_from.type),
        null().cast(Bucket.expires_at.type),
        null().cast(Bucket.created_at.type),
        LedgerAccount.credits_posted,
        _LEFT,
        LedgerAccount.debits_pending,
    )
    .join(LedgerAccount, LedgerAccount.id == LineDebt.ledger_account_id)
    .where(LineDebt.line_id == bindparam("line_id")),
)
BALANCE_ORDER = ("expires_at", "created_at")  # the buckets' order in the answer
_BALANCE = BALANCE_ROWS.order_by(*(literal_column(c) for c in BALANCE_ORDER))


def line_balance(session: Session, line_id: uuid.UUID, now: datetime | None = None) -> LineBalance:
    """In one statement however many buckets and debts the line has, read as values (no ORM
    objects): its buckets in force with their balances, and what it owes in each zone."""
    now = now or clock.now()
    return balance_of(session.connection().execute(_BALANCE, {"line_id": line_id, "now": now}), now)


def balance_of(rows: Iterable[Any], now: datetime) -> LineBalance:
    """The balance from `BALANCE_ROWS`' rows (in `BALANCE_ORDER`), each with aware UTC datetimes."""
    views: list[BucketView] = []
    owing: dict[str, int] = {}
    for (
        bucket_id,
        zone,
        valid_from,
        expires_at,
        _created,
        total,
        left,
        pending,
    ) in rows:
        if bucket_id is None:
            owing[zone] = max(0, -left)
            continue
        views.append(
            BucketView(
                id=bucket_id,
                zone=zone,
                total_bytes=total,
                remaining_bytes=left,
                reserved_bytes=pending,
                valid_from=valid_from,
                expires_at=expires_at,
            )
        )
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


# --- reading, for charging -------------------------------------------------------------------
#
# Charging reads a batch's buckets and debts inside its own statements (one round trip for lines,
# debts and buckets): these are the parts of those statements, built once by the caller.


def debt_account_id(line_id: Any, zone: str) -> ScalarSelect[int]:
    """The ledger account of what the line `line_id` (a column) owes in `zone`, as a column (NULL: none)."""
    return (
        select(LineDebt.ledger_account_id)
        .where(LineDebt.line_id == line_id, LineDebt.zone == zone)
        .scalar_subquery()
    )


def with_usable_buckets(
    query: Select[*tuple[Any, ...]], line_id: Any, ids: str, now: str
) -> Select[*tuple[Any, ...]]:
    """`query` (over lines, `line_id` its column) with each line's data buckets usable at the
    parameter `now`: a row per bucket (one with NULLs for a line without), with its bucket_id,
    bucket_zone, bucket_expires_at, bucket_created_at and bucket_account_id.
    `ids` names the parameter holding the lines' ids, repeated so that PostgreSQL's plan looks the
    buckets up by line, not by expiry."""
    return query.add_columns(
        Bucket.id.label("bucket_id"),
        Bucket.zone.label("bucket_zone"),
        Bucket.expires_at.label("bucket_expires_at"),
        Bucket.created_at.label("bucket_created_at"),
        Bucket.ledger_account_id.label("bucket_account_id"),
    ).outerjoin(
        Bucket,
        and_(
            Bucket.line_id == line_id,
            AnyOf(Bucket.line_id, ids),
            Bucket.unit == "bytes",
            Bucket.valid_from <= bindparam(now),
            Bucket.expires_at > bindparam(now),
        ),
    )


class LineBucket(NamedTuple):
    """A data bucket of a line as the usage import reads it: its validity and ledger account."""

    id: uuid.UUID
    line_id: uuid.UUID
    zone: str
    valid_from: datetime
    expires_at: datetime
    created_at: datetime
    account_id: int


def buckets_between(
    session: Session, line_ids: Iterable[uuid.UUID], first: datetime, last: datetime
) -> list[LineBucket]:
    """The lines' data buckets valid at some time from `first` to `last`, in drawing order."""
    rows = session.execute(
        select(
            Bucket.id,
            Bucket.line_id,
            Bucket.zone,
            Bucket.valid_from,
            Bucket.expires_at,
            Bucket.created_at,
            Bucket.ledger_account_id,
        ).where(
            Bucket.line_id.in_(set(line_ids)),
            Bucket.unit == "bytes",
            Bucket.valid_from <= last,
            Bucket.expires_at > first,
        )
    )
    found = [LineBucket._make(row) for row in rows]
    return sorted(found, key=lambda b: drawing_order(b.expires_at, b.zone, b.created_at, b.id))


def debt_account_ids(session: Session, line_ids: Iterable[uuid.UUID]) -> list[int]:
    """The ledger accounts of what the lines owe, in any zone."""
    return list(
        session.scalars(
            select(LineDebt.ledger_account_id).where(LineDebt.line_id.in_(set(line_ids)))
        )
    )
