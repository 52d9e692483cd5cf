"""`tongka jobs list` and `tongka jobs run NAME`: the scheduled jobs, seen and run by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import typer
from sqlalchemy import select

from tongka import clock
from tongka.config import Settings, get_settings
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.jobs import registry
from tongka.jobs.models import ScheduledJob
from tongka.jobs.registry import HONG_KONG, Context
from tongka.jobs.scheduler import Busy, Scheduler

# A due job not taken this long after its time has no runner to take it (runners look each second).
LATE = timedelta(minutes=2)

jobs_app = typer.Typer(
    help="The jobs that run themselves (in `tongka worker`, or in `tongka serve` when embedded).",
    no_args_is_help=True,
)


def _context(settings: Settings) -> Context:
    from tongka.background import statement_source

    sessions = make_sessionmaker(make_engine(settings.database_url))
    return Context(settings, sessions, statement_source(settings))


def _when(at: datetime | None) -> str:
    """Hong Kong time, as the jobs' times of day are given."""
    return at.astimezone(HONG_KONG).strftime("%Y-%m-%d %H:%M:%S HKT") if at else "-"


@jobs_app.command("list")
def jobs_list() -> None:
    """Each job: its schedule, last run (when, ok or failed, its result) and next run."""
    settings = get_settings()
    ctx = _context(settings)
    with transaction(ctx.sessions, read_only=True) as session:
        rows = {row.name: row for row in session.scalars(select(ScheduledJob))}
    now = clock.now()
    for job in registry.JOBS:
        row = rows.get(job.name)
        typer.echo(f"{job.name}  ({job.schedule}): {job.summary}")
        if job.unavailable and (reason := job.unavailable(ctx)):
            typer.echo(f"  off here: {reason}")
            continue
        if row is None:
            typer.echo("  never run; the first runner to start schedules it")
            continue
        if row.last_started_at is None:
            typer.echo("  last run: none yet")
        else:
            took = (row.last_finished_at or row.last_started_at) - row.last_started_at
            typer.echo(
                f"  last run: {_when(row.last_started_at)}, {row.last_status}, "
                f"{took.total_seconds():.1f} s, on {row.last_run_by}: {row.last_result}"
            )
        if row.lease_until is not None and row.lease_until > now:
            typer.echo(f"  running now on {row.lease_owner} (lease until {_when(row.lease_until)})")
            typer.echo(f"  next run: {_when(row.next_run_at)}")
        elif row.next_run_at <= now - LATE:
            typer.echo(
                f"  next run: {_when(row.next_run_at)}, overdue: is a runner up "
                "(`tongka worker`, or `tongka serve` with TONGKA_BACKGROUND=embedded)?"
            )
        else:
            typer.echo(f"  next run: {_when(row.next_run_at)}")


@jobs_app.command("run")
def jobs_run(name: str) -> None:
    """Run the job NAME now, whatever its schedule (unless a runner is running it); recorded as its last run."""
    job = registry.find(name)
    if job is None:
        names = ", ".join(j.name for j in registry.JOBS)
        typer.echo(f"no job named {name!r}; the jobs: {names}", err=True)
        raise typer.Exit(2)
    ctx = _context(get_settings())
    if job.unavailable and (reason := job.unavailable(ctx)):
        typer.echo(f"{name} is off here: {reason}", err=True)
        raise typer.Exit(2)
    try:
        run = Scheduler(ctx).run_now(name)
    except Busy as busy:
        typer.echo(f"{name} is {busy}; try again later", err=True)
        raise typer.Exit(1) from None
    finally:
        ctx.close()
    typer.echo(f"{name}: {run.status}: {run.result}")
    if run.status != "ok":
        raise typer.Exit(1)
