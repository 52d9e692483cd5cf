"""Counters that throttle abuse (log-in failures, SMS codes, coupon guesses), kept in the database.

tongka runs as several server processes over one database, so a count kept in one process's
memory would let an attacker spread tries over the processes: every counter is a row
(scope, key). A counter counts in fixed windows that start at Hong Kong midnight (UTC+8, no
daylight saving time): a daily window is a Hong Kong day, an hourly one a clock hour. A hit
is one atomic upsert, so two processes counting the same key at once both count.

A `Limit` refuses with its `TooManyRequests` error (429, `Retry-After`) when
- the window already holds `allowed` hits, until the window ends; or, with `backoff_seconds`,
  from then on each further try waits `backoff_seconds` after the last hit, doubling with each
  hit, at most `backoff_cap_seconds` (and never past the window's end);
- or less than `spacing_seconds` have passed since the last hit (one SMS a minute).

A count that must survive its request's refusal (a wrong password) is written before an error
whose `commit_anyway` is set, with no other write before it in that transaction.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, case, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from tongka import clock
from tongka.db import Base, UTCDateTime
from tongka.errors import TooManyRequests

# Windows start at Hong Kong midnight: a daily cap is per Hong Kong day.
WINDOW_OFFSET = timedelta(hours=8)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC) - WINDOW_OFFSET
# No window is longer than a day: a counter not hit for two days is dead and goes at the next hit.
FORGET_AFTER = timedelta(days=2)


class ThrottleCounter(Base):
    __tablename__ = "throttle_counters"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    hits: Mapped[int]
    last_hit_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


@dataclass(frozen=True)
class Limit:
    scope: str
    allowed: int
    window_seconds: int
    error: type[TooManyRequests] = TooManyRequests
    backoff_seconds: float | None = None
    backoff_cap_seconds: int = 15 * 60
    spacing_seconds: int = 0
    spacing_error: type[TooManyRequests] | None = None


def _key(key: str) -> str:
    # Keys are short (a username, an address, a number, an account id); a longer one is hashed to fit.
    return key if len(key) <= 64 else hashlib.sha256(key.encode()).hexdigest()


def window_start(limit: Limit, now: datetime) -> datetime:
    elapsed = (now - _EPOCH).total_seconds()
    return _EPOCH + timedelta(seconds=(elapsed // limit.window_seconds) * limit.window_seconds)


def _insert(session: Session) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (both dialects spell it the same)."""
    return postgresql.insert if session.connection().dialect.name == "postgresql" else sqlite.insert


def _current(
    session: Session, limit: Limit, key: str, now: datetime, lock: bool = False
) -> ThrottleCounter | None:
    row = session.get(
        ThrottleCounter, (limit.scope, _key(key)), populate_existing=True, with_for_update=lock
    )
    if row is None or row.window_start != window_start(limit, now):
        return None
    return row


def wait_seconds(
    session: Session, limit: Limit, key: str, now: datetime | None = None, lock: bool = False
) -> tuple[int, bool]:
    """How long `key` must wait before its next try (0: it may go now), and whether the wait is
    only the spacing between hits."""
    now = now or clock.now()
    row = _current(session, limit, key, now, lock)
    if row is None or not row.hits:  # no row, or one `attempt` made to lock and has not counted yet
        return 0, False
    window_end = row.window_start + timedelta(seconds=limit.window_seconds)
    if row.hits >= limit.allowed:
        if limit.backoff_seconds is None:
            until = window_end
        else:
            delay = min(
                limit.backoff_seconds * 2 ** (row.hits - limit.allowed), limit.backoff_cap_seconds
            )
            until = min(row.last_hit_at + timedelta(seconds=delay), window_end)
        wait = (until - now).total_seconds()
        if wait > 0:
            return math.ceil(wait), False
    if limit.spacing_seconds:
        wait = (row.last_hit_at + timedelta(seconds=limit.spacing_seconds) - now).total_seconds()
        if wait > 0:
            return math.ceil(wait), True
    return 0, False


def check(
    session: Session, limit: Limit, key: str, now: datetime | None = None, lock: bool = False
) -> None:
    """Refuse (429 with Retry-After) if `key` may not try now. Writes nothing (`lock`: locks its row)."""
    wait, spacing = wait_seconds(session, limit, key, now, lock)
    if wait:
        raise (limit.spacing_error if spacing and limit.spacing_error else limit.error)(
            seconds=wait
        )


def hit(session: Session, limit: Limit, key: str, now: datetime | None = None) -> int:
    """Count one try of `key` in the current window; the window's count with it."""
    now = now or clock.now()
    start = window_start(limit, now)
    table = ThrottleCounter.__table__
    statement = _insert(session)(table).values(
        scope=limit.scope, key=_key(key), window_start=start, hits=1, last_hit_at=now
    )
    same_window = table.c.window_start == statement.excluded.window_start
    statement = statement.on_conflict_do_update(
        index_elements=["scope", "key"],
        set_={
            "hits": case((same_window, table.c.hits + 1), else_=1),
            "window_start": statement.excluded.window_start,
            "last_hit_at": statement.excluded.last_hit_at,
        },
    ).returning(table.c.hits)
    count = int(session.execute(statement).scalar_one())
    _forget_dead(session, now)
    return count


def _forget_dead(session: Session, now: datetime) -> None:
    """Delete up to 100 counters nobody has hit for two days (keys an attacker made up die too).
    Rows another transaction holds are skipped (PostgreSQL's SKIP LOCKED), so two transactions
    purging at once never wait on, or deadlock with, each other."""
    table = ThrottleCounter
    dead = (
        select(table.scope, table.key)
        .where(table.last_hit_at < now - FORGET_AFTER)
        .limit(100)
        .with_for_update(skip_locked=True)
    )
    session.execute(delete(table).where(tuple_(table.scope, table.key).in_(dead)))


def attempt(session: Session, limit: Limit, key: str, now: datetime | None = None) -> None:
    """Check and count one try as one step, however many tries come at once: the counter's row is
    locked first (made, empty, if need be), so a second try at the same moment sees the first
    counted. Refused while `key` must wait, and then nothing is counted (the refusal rolls back).
    For a try whose outcome is known only later (a password being checked): count it now as a
    failure, and `clear` or `uncount` it once it succeeded."""
    now = now or clock.now()
    start = window_start(limit, now)
    session.execute(
        _insert(session)(ThrottleCounter.__table__)
        .values(scope=limit.scope, key=_key(key), window_start=start, hits=0, last_hit_at=start)
        .on_conflict_do_nothing(index_elements=["scope", "key"])
    )
    check(session, limit, key, now, lock=True)
    hit(session, limit, key, now)


def uncount(session: Session, limit: Limit, key: str) -> None:
    """Take back one try `attempt` counted (it succeeded after all)."""
    session.execute(
        update(ThrottleCounter)
        .where(
            ThrottleCounter.scope == limit.scope,
            ThrottleCounter.key == _key(key),
            ThrottleCounter.hits > 0,
        )
        .values(hits=ThrottleCounter.hits - 1)
    )


def take(session: Session, limit: Limit, key: str, now: datetime | None = None) -> None:
    """Check, then count this try; refused if the window was filled meanwhile (two processes at once).
    A refused try is not counted: its transaction rolls back."""
    now = now or clock.now()
    check(session, limit, key, now)
    if hit(session, limit, key, now) > limit.allowed and limit.backoff_seconds is None:
        end = window_start(limit, now) + timedelta(seconds=limit.window_seconds)
        raise limit.error(seconds=math.ceil((end - now).total_seconds()))


def clear(session: Session, limit: Limit, key: str) -> None:
    session.execute(
        delete(ThrottleCounter).where(
            ThrottleCounter.scope == limit.scope, ThrottleCounter.key == _key(key)
        )
    )


def hits(session: Session, limit: Limit, key: str, now: datetime | None = None) -> int:
    row = _current(session, limit, key, now or clock.now())
    return row.hits if row is not None else 0
