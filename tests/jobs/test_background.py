"""The background runner: where it runs by default, a loop that raises is started again, a clean stop."""

from __future__ import annotations

import threading

import pytest

from tests.jobs.conftest import wait_for
from tongka import background
from tongka.config import Settings


@pytest.mark.parametrize(
    ("url", "chosen", "embedded"),
    [
        ("sqlite:///var/tongka.db", None, True),  # make run: nothing more to start
        ("postgresql://tongka@db/tongka", None, False),  # production: tongka worker
        ("postgresql://tongka@db/tongka", "embedded", True),
        ("sqlite:///var/tongka.db", "off", False),
    ],
)
def test_where_the_background_work_runs_by_default(
    url: str, chosen: str | None, embedded: bool
) -> None:
    settings = Settings(
        database_url=url,
        secret_key="x" * 43,
        background=chosen,
        _env_file=None,  # type: ignore[call-arg]
    )
    assert settings.background_embedded is embedded


def test_a_loop_that_raises_is_started_again_and_every_loop_stops(
    settings, sessions, monkeypatch
) -> None:
    monkeypatch.setattr(background, "RESTART_SECONDS", 0.01)
    starts: list[int] = []

    def flaky(stop: threading.Event, _settings: Settings, _sessions: object) -> None:
        starts.append(1)
        if len(starts) < 3:
            raise RuntimeError("the database went away")
        stop.wait()

    def patient(stop: threading.Event, _settings: Settings, _sessions: object) -> None:
        stop.wait()

    runner = background.Background(settings, sessions, [("flaky", flaky), ("patient", patient)])
    runner.start()
    wait_for(lambda: len(starts) == 3, "the third start")
    assert all(t.is_alive() for t in runner.threads)
    assert runner.stop(timeout=10)
    assert not any(t.is_alive() for t in runner.threads)
