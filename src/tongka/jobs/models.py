"""The scheduler's one table: a row per job, holding when it runs next, its last run and its lease."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from tongka.db import Base, CreatedMixin, UTCDateTime


class ScheduledJob(CreatedMixin, Base):
    """One job of the registry (`jobs/registry.py`), made by the first runner that meets it.

    A runner claims the row (`lease_owner`, `lease_until`) before running the job and clears
    the lease when it records the result; a lease that ran out (the runner died) may be
    claimed again, so the job runs again later.
    """

    __tablename__ = "scheduled_jobs"
    __table_args__ = (CheckConstraint("last_status IN ('ok', 'failed')", name="last_status"),)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Who runs it now ("host:pid:claim"), and until when the claim holds.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_result: Mapped[str | None] = mapped_column(String(500))  # one line
    last_run_by: Mapped[str | None] = mapped_column(String(128))
