"""The scheduler: runs each due job of the registry in one runner only, however many run.

Every runner (a `tongka worker`, or `tongka serve`'s embedded background) polls the table
`scheduled_jobs`, one row per job. To run a due job a runner **claims** its row in a short
transaction of its own: it writes its name and a lease (`lease_owner`, `lease_until`) where
the row is due (`next_run_at <= now`) and not leased (`lease_until` empty or past). On
PostgreSQL the row is taken with `SELECT … FOR UPDATE SKIP LOCKED` (a runner never waits for
another's claim: it takes the next due job, or none); on SQLite the claim is one conditional
`UPDATE … WHERE` those conditions hold, whose row count says whether it won (SQLite has one
writer at a time). The claim commits before the job runs, so no transaction is held through
the job. When the job ends, the runner records its status, one-line result and next run, and
clears the lease, only where the lease is still its own.

The guarantee: while a run lasts less than its job's lease, no two runners run the same job
at once, and each due time runs once. A runner that dies mid-run leaves its lease to run
out; the row is still due, so another runner (or it, restarted) runs the job again then.
A run that outlives its lease may overlap the next runner's: harmless, as every job's
changes are guarded (an order expires once, a reservation is resolved once: the ledger's
unique `pending_id`), and the first runner's record is refused (its lease is gone) and logged.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import httpx
import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from tongka import clock
from tongka.config import Settings
from tongka.db import matched, transaction
from tongka.jobs.models import ScheduledJob
from tongka.jobs.registry import JOBS, Context, Job

log = structlog.get_logger()

POLL_SECONDS = 1.0  # how often a runner looks for due jobs (one read; a write only when one is due)
RETRY_AFTER = timedelta(minutes=5)  # a failed run is tried again at the latest this long after
RESULT_LENGTH = 500


def runner_name() -> str:
    """This process, as `lease_owner` and `last_run_by` show it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Claim:
    job: Job
    owner: str  # the runner's name and this claim's own token: only this claim may record the run
    started_at: datetime


@dataclass(frozen=True)
class Run:
    job: str
    status: str  # ok | failed
    result: str
    started_at: datetime
    finished_at: datetime
    recorded: bool  # False: the lease ran out and another runner claimed the job meanwhile


class Busy(Exception):
    """The job is leased to another runner (`run_now`)."""

    def __init__(self, owner: str | None, until: datetime | None) -> None:
        super().__init__(f"running on {owner} (lease until {until})")
        self.owner, self.until = owner, until


class Scheduler:
    def __init__(
        self, ctx: Context, jobs: Sequence[Job] = JOBS, *, name: str | None = None
    ) -> None:
        self.ctx = ctx
        self.sessions = ctx.sessions
        # The jobs that can run here (the reconciliation needs a statement: the sandbox's, in dev).
        self.jobs = {
            job.name: job for job in jobs if not (job.unavailable and job.unavailable(ctx))
        }
        self.name = name or runner_name()
        self._known: set[str] = set()

    # --- the rows ---------------------------------------------------------------------------

    def ensure_rows(self, now: datetime) -> None:
        """A row for each job not met before (first due: at once, or at its time of day); a row made at
        the same moment by another runner is left as it is."""
        missing = [name for name in self.jobs if name not in self._known]
        if not missing:
            return
        with transaction(self.sessions, read_only=True) as session:
            found = set(
                session.scalars(select(ScheduledJob.name).where(ScheduledJob.name.in_(missing)))
            )
        new = [name for name in missing if name not in found]
        if new:
            with transaction(self.sessions) as session:
                dialect = session.get_bind().dialect.name
                make = pg_insert if dialect == "postgresql" else sqlite_insert
                session.execute(
                    make(ScheduledJob)
                    .values(
                        [
                            {
                                "name": name,
                                "next_run_at": self.jobs[name].first_run(now),
                                "created_at": now,
                            }
                            for name in new
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["name"])
                )
        self._known.update(missing)

    def due(self, now: datetime) -> list[str]:
        """The names of the jobs due and not leased, soonest first (a read: no write lock on SQLite)."""
        with transaction(self.sessions, read_only=True) as session:
            return list(
                session.scalars(
                    select(ScheduledJob.name)
                    .where(ScheduledJob.name.in_(list(self.jobs)), *_claimable(now))
                    .order_by(ScheduledJob.next_run_at, ScheduledJob.name)
                )
            )

    # --- claiming, running, recording ---------------------------------------------------------

    def claim(self, names: Sequence[str], now: datetime, *, due_only: bool = True) -> Claim | None:
        """Claim the first of `names` that is claimable now (due, unless `due_only` is False, and not
        leased), in a transaction of its own; None if another runner has them all."""
        owner = f"{self.name}:{secrets.token_hex(4)}"
        conditions = _claimable(now) if due_only else _claimable(now)[1:]
        with transaction(self.sessions) as session:
            if session.get_bind().dialect.name == "postgresql":
                name = session.scalars(
                    select(ScheduledJob.name)
                    .where(ScheduledJob.name.in_(list(names)), *conditions)
                    .order_by(ScheduledJob.next_run_at, ScheduledJob.name)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                candidates = [name] if name is not None else []
            else:
                candidates = list(names)  # SQLite: the conditional UPDATE decides
            for name in candidates:
                won = matched(
                    session.execute(
                        update(ScheduledJob)
                        .where(ScheduledJob.name == name, *conditions)
                        .values(lease_owner=owner, lease_until=now + self.jobs[name].lease)
                        .execution_options(synchronize_session=False)
                    )
                )
                if won == 1:
                    return Claim(self.jobs[name], owner, now)
        return None

    def execute(self, claim: Claim) -> Run:
        """Run the claimed job, log what it did and record it (status, result, next run) under the claim."""
        job = claim.job
        began = time.monotonic()
        try:
            result, status = job.run(self.ctx), "ok"
        except Exception as error:  # recorded and retried; the runner goes on with the next job
            result, status = f"{type(error).__name__}: {error}", "failed"
            log.error("job_failed", job=job.name, exc_info=error)
        result = (result.splitlines() or [""])[0][:RESULT_LENGTH]
        finished = clock.now()
        next_run = max(job.next_after(claim.started_at), finished)
        if status == "failed":
            next_run = min(next_run, finished + RETRY_AFTER)
        with transaction(self.sessions) as session:
            recorded = matched(
                session.execute(
                    update(ScheduledJob)
                    .where(ScheduledJob.name == job.name, ScheduledJob.lease_owner == claim.owner)
                    .values(
                        next_run_at=next_run,
                        lease_owner=None,
                        lease_until=None,
                        last_started_at=claim.started_at,
                        last_finished_at=finished,
                        last_status=status,
                        last_result=result,
                        last_run_by=self.name,
                    )
                    .execution_options(synchronize_session=False)
                )
            )
        log.info(
            "job_run",
            job=job.name,
            status=status,
            result=result,
            seconds=round(time.monotonic() - began, 3),
            next_run_at=next_run.isoformat(),
        )
        if not recorded:
            log.warning("job_lease_lost", job=job.name, owner=claim.owner)
        return Run(job.name, status, result, claim.started_at, finished, bool(recorded))

    def run_due(self, stop: threading.Event | None = None) -> list[Run]:
        """Run every job due now that no other runner has, one after another, until none is left."""
        runs: list[Run] = []
        now = clock.now()
        self.ensure_rows(now)
        due = self.due(now)
        while due and not (stop is not None and stop.is_set()):
            claim = self.claim(due, clock.now())
            if claim is None:
                break
            runs.append(self.execute(claim))
            due = [name for name in due if name != claim.job.name]
        return runs

    def run_now(self, name: str) -> Run:
        """Run the job `name` now, due or not (by hand: `tongka jobs run`), unless another runner has it
        (`Busy`); recorded as any run."""
        now = clock.now()
        self.ensure_rows(now)
        claim = self.claim([name], now, due_only=False)
        if claim is None:
            with transaction(self.sessions, read_only=True) as session:
                row = session.get_one(ScheduledJob, name)
                raise Busy(row.lease_owner, row.lease_until)
        return self.execute(claim)


def _claimable(now: datetime) -> list[ColumnElement[bool]]:
    """Due (first: `claim` drops it for a run by hand), and not leased to a runner still in time."""
    return [
        ScheduledJob.next_run_at <= now,
        or_(ScheduledJob.lease_until.is_(None), ScheduledJob.lease_until <= now),
    ]


def run(
    stop: threading.Event,
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    statement: Callable[[date], str] | None = None,
    poll: float = POLL_SECONDS,
    jobs: Sequence[Job] = JOBS,
    http: httpx.Client | None = None,
) -> None:
    """The scheduler's loop (one of `background.py`'s): run what is due, wait `poll` seconds, until `stop`.
    `http`: what carries the providers' calls (default: a client per run; the tests' is in-process)."""
    ctx = Context(settings, sessions, statement, http)
    scheduler = Scheduler(ctx, jobs)
    log.info("scheduler_started", runner=scheduler.name, jobs=sorted(scheduler.jobs))
    try:
        while not stop.is_set():
            try:
                scheduler.run_due(stop)
            except Exception as error:  # the database away for a moment must not end the loop
                log.error("scheduler_error", exc_info=error)
            stop.wait(poll)
    finally:
        ctx.close()
