"""The jobs that run themselves: each one's name, when it runs, and what it does.

A job is a plain function of a `Context` that does its work in its own transactions and
returns one line saying what it did (kept as the run's result, shown by `tongka jobs list`).
The work itself lives in the domains and the renewal flow; a job only calls it. Every job is
safe to run twice at once (each change it makes is a guarded one), which is what makes a
lease that ran out harmless (`scheduler.py`).

Times of day are Hong Kong time (UTC+8, no daylight saving), as the business counts days.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone

import httpx
import structlog
from sqlalchemy.orm import Session, sessionmaker

from tongka import clock, outbound
from tongka.alerts import scan as alerts_scan
from tongka.charging import stale
from tongka.config import Settings
from tongka.db import transaction
from tongka.ledger import buckets
from tongka.ledger import service as ledger
from tongka.payment import providers as payment_providers
from tongka.payment import reconcile
from tongka.payment.providers.base import Provider
from tongka.renewal import autorenew, flow
from tongka.renewal import jobs as payment_jobs

log = structlog.get_logger()

HONG_KONG = timezone(timedelta(hours=8), "HKT")


@dataclass
class Context:
    """What a job may use. `statement`: the settlement statement of a UTC day as CSV (the form
    `payment.reconcile` reads), where one can be had: the payment sandbox's, in dev."""

    settings: Settings
    sessions: sessionmaker[Session]
    statement: Callable[[date], str] | None = None
    http: httpx.Client | None = None  # carries the providers' calls (tests: in-process)
    _providers: dict[str, Provider] | None = field(default=None, init=False, repr=False)
    _own_http: httpx.Client | None = field(default=None, init=False, repr=False)

    def providers(self) -> Mapping[str, Provider]:
        """The configured payment providers, built at the first call and kept for the runner's life
        (building reads every provider's keys: not a thing to do each minute, nor inside a
        transaction, which on SQLite holds the one write lock)."""
        if self._providers is None:
            if self.http is None:
                self._own_http = outbound.client()
            http = self.http or self._own_http
            assert http is not None
            self._providers = payment_providers.build(self.settings, http=http)
        return self._providers

    def close(self) -> None:
        if self._own_http is not None:
            self._own_http.close()
        self._providers = self._own_http = None


@dataclass(frozen=True)
class Job:
    name: str
    summary: str
    run: Callable[[Context], str]
    every: timedelta | None = None  # or:
    daily_at: time | None = None  # Hong Kong time
    # How long a claim holds: a runner that dies mid-run leaves the job to others after this.
    lease: timedelta = timedelta(minutes=10)
    # Whether the job can run here (None: always); the reason it cannot, else None.
    unavailable: Callable[[Context], str | None] | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.daily_at is None):
            raise ValueError("a job runs either every so often or daily at a time")

    @property
    def schedule(self) -> str:
        if self.every is not None:
            seconds = int(self.every.total_seconds())
            return f"every {seconds // 60} min" if seconds % 60 == 0 else f"every {seconds} s"
        assert self.daily_at is not None
        return f"daily {self.daily_at:%H:%M} HKT"

    def next_after(self, at: datetime) -> datetime:
        """The first time the job is due after a run that started at `at`."""
        if self.every is not None:
            return at + self.every
        assert self.daily_at is not None
        local = at.astimezone(HONG_KONG)
        due = datetime.combine(local.date(), self.daily_at, HONG_KONG)
        if due <= at:
            due += timedelta(days=1)
        return due.astimezone(UTC)

    def first_run(self, now: datetime) -> datetime:
        """When a job met for the first time is due: at once, or at its next time of day."""
        return now if self.every is not None else self.next_after(now)


# --- the jobs ------------------------------------------------------------------------------


def _orders_expire(ctx: Context) -> str:
    with transaction(ctx.sessions) as session:
        expired = flow.expire_unpaid(session)
    # Committed first: a provider that cannot be reached does not keep the orders open.
    providers = ctx.providers()
    with transaction(ctx.sessions) as session:
        report = payment_jobs.close_unpaid(session, providers, receipt_key=ctx.settings.receipt_key)
    return (
        f"expired {expired} order(s); pending payments of closed orders: closed at the provider "
        f"{report.closed}, settled {report.settled}, provider unreachable {report.unreachable}"
    )


def _ledger_expire(ctx: Context) -> str:
    with transaction(ctx.sessions) as session:
        released = ledger.expire_reservations(session)
        emptied = buckets.expire_buckets(session)
    return (
        f"released {released} reservation(s) past their time, emptied {emptied} expired bucket(s)"
    )


def _charging_silent(ctx: Context) -> str:
    grace = timedelta(seconds=ctx.settings.charging_silence_grace_seconds)
    with transaction(ctx.sessions) as session:
        closed = stale.close_silent(session, grace=grace)
    return f"closed {closed} silent charging session(s)"


def _payments_sync(ctx: Context) -> str:
    providers = ctx.providers()
    with transaction(ctx.sessions) as session:
        report = payment_jobs.sync(session, providers, receipt_key=ctx.settings.receipt_key)
    return (
        f"settled {report.settled}, closed {report.closed}, refunds sent {report.refunds_sent}, "
        f"provider unreachable {report.unreachable}"
    )


def _auto_renew(ctx: Context) -> str:
    return autorenew.run(ctx.sessions, ctx.providers(), ctx.settings).line()


def _alerts_scan(ctx: Context) -> str:
    with transaction(ctx.sessions) as session:
        fired = alerts_scan.scan(session)
    return f"fired {fired} alert(s) of data used, data expiring and overage"


def _no_statement(ctx: Context) -> str | None:
    if ctx.statement is None:
        return "no settlement statement to read here (the payment sandbox's, in dev)"
    return None


def _payments_reconcile(ctx: Context) -> str:
    assert ctx.statement is not None
    day = clock.now().astimezone(UTC).date() - timedelta(days=1)  # the last whole UTC day
    lines, differences = reconcile.read(io.StringIO(ctx.statement(day)))
    with transaction(ctx.sessions, read_only=True) as session:
        differences += reconcile.reconcile(session, lines)
    for difference in differences:
        log.warning(
            "reconcile_difference",
            day=day.isoformat(),
            kind=difference.kind,
            reference=difference.reference,
            detail=difference.detail,
        )
    return f"{day}: {len(lines)} statement line(s), {len(differences)} difference(s)"


JOBS: tuple[Job, ...] = (
    Job(
        "orders-expire",
        "close orders left unpaid past their time (their offers go back), then their payments at the provider",
        _orders_expire,
        every=timedelta(minutes=1),
        lease=timedelta(minutes=30),  # asks providers, each call bounded by its timeout
    ),
    Job(
        "ledger-expire",
        "release reservations past their time, move what is left in expired buckets to data_expired",
        _ledger_expire,
        every=timedelta(minutes=1),
    ),
    Job(
        "charging-silent",
        "close charging sessions silent past their validity time plus the grace, releasing what they hold",
        _charging_silent,
        every=timedelta(minutes=1),
    ),
    Job(
        "payments-sync",
        "ask providers about payments pending over two minutes, close those of closed orders, send queued refunds",
        _payments_sync,
        every=timedelta(minutes=1),
        lease=timedelta(minutes=30),
    ),
    Job(
        "autorenew",
        "lines whose data in a zone fell below their auto-renew threshold buy their pack, within the monthly cap",
        _auto_renew,
        every=timedelta(seconds=30),
        lease=timedelta(minutes=30),  # charges saved cards, each call bounded by its timeout
    ),
    Job(
        "alerts-scan",
        "tell subscribers of data used (80/90/100 %), data expiring (3 days, 1 day) and overage, each once",
        _alerts_scan,
        every=timedelta(minutes=1),
    ),
    Job(
        "payments-reconcile",
        "compare yesterday's (UTC) settlement statement with tongka's records; log every difference",
        _payments_reconcile,
        daily_at=time(9, 0),
        lease=timedelta(minutes=30),
        unavailable=_no_statement,
    ),
)


def find(name: str) -> Job | None:
    return next((job for job in JOBS if job.name == name), None)
