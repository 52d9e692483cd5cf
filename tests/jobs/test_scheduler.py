"""The scheduler's claims: one runner per due job, a lease that runs out runs the job again, failures kept."""

from __future__ import annotations

import threading
import time as wall
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tongka.config import Settings
from tongka.db import make_engine, make_sessionmaker
from tongka.jobs.models import ScheduledJob
from tongka.jobs.registry import Context, Job
from tongka.jobs.scheduler import RETRY_AFTER, Busy, Scheduler

HOUR = timedelta(hours=1)


class Counter:
    """A job's body that counts its runs (and takes a little real time, so that runs could overlap)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.runs = 0
        self.seconds = seconds
        self.lock = threading.Lock()

    def __call__(self, _ctx: Context) -> str:
        with self.lock:
            self.runs += 1
            runs = self.runs
        wall.sleep(self.seconds)
        return f"run {runs}"


def scheduler_for(
    settings: Settings, job: Job, name: str
) -> tuple[Scheduler, sessionmaker[Session]]:
    """A runner with its own engine and connections, as another process would have."""
    sessions = make_sessionmaker(make_engine(settings.database_url))
    return Scheduler(Context(settings, sessions), [job], name=name), sessions


def row(sessions: sessionmaker[Session], name: str) -> ScheduledJob:
    with sessions() as s:
        return s.get_one(ScheduledJob, name)


def test_two_schedulers_at_once_run_a_due_job_once(settings, frozen_clock) -> None:
    counter = Counter(seconds=0.05)
    job = Job("count", "counts", counter, every=HOUR)
    runners = [scheduler_for(settings, job, f"runner-{i}") for i in range(2)]
    start = threading.Barrier(len(runners))
    errors: list[BaseException] = []

    def race(scheduler: Scheduler) -> None:
        try:
            start.wait()
            for _ in range(20):  # each looks again and again while the other may be running it
                scheduler.run_due()
        except BaseException as error:
            errors.append(error)

    def round_() -> None:
        threads = [threading.Thread(target=race, args=(s,)) for s, _ in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

    round_()
    assert counter.runs == 1
    first = row(runners[0][1], "count")
    assert (first.last_status, first.last_result, first.lease_owner) == ("ok", "run 1", None)
    assert first.next_run_at == frozen_clock.now + HOUR

    frozen_clock.advance(hours=1)  # due again: once more, by one of them
    round_()
    assert counter.runs == 2
    for _, sessions in runners:
        sessions.kw["bind"].dispose()


def test_two_claims_at_the_same_instant_one_wins(settings, frozen_clock) -> None:
    """The claim itself: FOR UPDATE SKIP LOCKED on PostgreSQL, the conditional UPDATE on SQLite."""
    job = Job("count", "counts", Counter(), every=HOUR)
    runners = [scheduler_for(settings, job, f"runner-{i}") for i in range(2)]
    runners[0][0].ensure_rows(frozen_clock.now)

    def claim(
        scheduler: Scheduler, start: threading.Barrier, now: datetime, claims: list[object]
    ) -> None:
        start.wait()
        claims.append(scheduler.claim(["count"], now))

    for attempt in range(10):
        now = frozen_clock.advance(hours=2)  # due again, and any lease run out
        start = threading.Barrier(len(runners))
        claims: list[object] = []
        threads = [threading.Thread(target=claim, args=(s, start, now, claims)) for s, _ in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len([c for c in claims if c is not None]) == 1, f"attempt {attempt}: {claims}"
    for _, sessions in runners:
        sessions.kw["bind"].dispose()


def test_a_crashed_runs_lease_runs_out_and_the_job_runs_again(settings, frozen_clock) -> None:
    counter = Counter()
    job = Job("count", "counts", counter, every=HOUR, lease=timedelta(minutes=10))
    crashed, sessions = scheduler_for(settings, job, "crashed")
    other, _ = scheduler_for(settings, job, "other")
    crashed.ensure_rows(frozen_clock.now)
    claim = crashed.claim(["count"], frozen_clock.now)  # claimed, then the process died mid-run
    assert claim is not None and counter.runs == 0

    assert other.run_due() == []  # leased: not run twice
    frozen_clock.advance(minutes=9)
    assert other.run_due() == []
    frozen_clock.advance(minutes=1)  # the lease has run out: still due, so it runs again
    [run] = other.run_due()
    assert (run.status, run.recorded, counter.runs) == ("ok", True, 1)
    assert row(sessions, "count").last_run_by == "other"
    assert other.run_due() == []  # and once only

    # Had the first runner only been slow, its record is refused: the job is another's now.
    late = crashed.execute(claim)
    assert not late.recorded
    assert row(sessions, "count").last_run_by == "other"
    for s in (crashed, other):
        s.sessions.kw["bind"].dispose()


def test_a_failed_run_is_kept_and_tried_again_soon(settings, frozen_clock) -> None:
    def boom(_ctx: Context) -> str:
        raise RuntimeError("the provider said no\nsecond line")

    job = Job("daily", "fails", boom, daily_at=time(9, 0))
    scheduler, sessions = scheduler_for(settings, job, "runner")
    scheduler.ensure_rows(frozen_clock.now)
    run = scheduler.run_now("daily")
    found = row(sessions, "daily")
    assert (found.last_status, found.last_result) == (
        "failed",
        "RuntimeError: the provider said no",
    )
    assert run.status == "failed"
    # A daily job that failed does not wait a day: at the latest RETRY_AFTER.
    assert found.next_run_at <= frozen_clock.now + RETRY_AFTER
    assert found.lease_until is None
    sessions.kw["bind"].dispose()


def test_run_by_hand_waits_for_no_one_but_a_runner_holding_the_job(settings, frozen_clock) -> None:
    counter = Counter()
    job = Job("count", "counts", counter, every=HOUR)
    holder, sessions = scheduler_for(settings, job, "holder")
    holder.ensure_rows(frozen_clock.now)
    assert holder.claim(["count"], frozen_clock.now) is not None
    with pytest.raises(Busy) as busy:
        Scheduler(Context(settings, sessions), [job], name="hand").run_now("count")
    assert busy.value.owner and busy.value.owner.startswith("holder:")
    assert counter.runs == 0
    sessions.kw["bind"].dispose()


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # 16:00 in Hong Kong: tomorrow 09:00 HKT (01:00 UTC).
        (datetime(2030, 1, 15, 8, 0, tzinfo=UTC), datetime(2030, 1, 16, 1, 0, tzinfo=UTC)),
        # 08:30 in Hong Kong: today, half an hour later.
        (datetime(2030, 1, 15, 0, 30, tzinfo=UTC), datetime(2030, 1, 15, 1, 0, tzinfo=UTC)),
        # 09:00 exactly: the next day (a run at the time has just been made).
        (datetime(2030, 1, 15, 1, 0, tzinfo=UTC), datetime(2030, 1, 16, 1, 0, tzinfo=UTC)),
    ],
)
def test_a_daily_job_is_due_at_its_hong_kong_time(at: datetime, expected: datetime) -> None:
    job = Job("daily", "daily", lambda _ctx: "", daily_at=time(9, 0))
    assert job.next_after(at) == expected
    assert job.first_run(at) == expected
    assert Job("often", "often", lambda _ctx: "", every=HOUR).first_run(at) == at
