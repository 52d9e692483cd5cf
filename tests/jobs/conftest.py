"""Fixtures of the jobs tests: the network registry, and a background runner to start."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.charging.factories import ensure_networks
from tongka.background import Background, Loop
from tongka.config import Settings
from tongka.jobs.models import ScheduledJob

WAIT_SECONDS = 30.0  # real time for a background thread to get something done, on a busy machine


@pytest.fixture
def networks(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        ensure_networks(s)
        s.commit()


@pytest.fixture
def background(
    settings: Settings, sessions: sessionmaker[Session]
) -> Iterator[Callable[..., Background]]:
    """Start the background runner with the given loops (and settings changed from the test's, if
    given); it is stopped when the test ends."""
    started: list[Background] = []

    def start(loops: list[tuple[str, Loop]], changed: Settings | None = None) -> Background:
        runner = Background(changed or settings, sessions, loops)
        runner.start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        assert runner.stop(timeout=WAIT_SECONDS), "a loop did not stop"


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` in real time until it holds (the clock the code sees is the fake one)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS} s: {what}")
        time.sleep(0.02)


def finished_runs(sessions: sessionmaker[Session]) -> dict[str, datetime | None]:
    """Each job's last finished run, as recorded."""
    with sessions() as s:
        return {row.name: row.last_finished_at for row in s.scalars(select(ScheduledJob)).all()}
