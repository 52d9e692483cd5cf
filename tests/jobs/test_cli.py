"""`tongka jobs list`, `tongka jobs run NAME`, and `tongka worker` stopping cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import factories as f
from tests.jobs.conftest import WAIT_SECONDS, finished_runs, wait_for
from tongka import config
from tongka.jobs import registry


@pytest.fixture
def sandbox_store(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The command line reads the statement of this test's payment sandbox."""
    monkeypatch.setenv("TONGKA_SANDBOX_STORE_URL", settings.sandbox_store_url)
    config.get_settings.cache_clear()


def test_jobs_list_shows_each_jobs_last_run_result_and_next_run(cli, frozen_clock) -> None:
    listing = cli("jobs", "list")
    assert listing.exit_code == 0
    for job in registry.JOBS:
        assert f"{job.name}  ({job.schedule}): {job.summary}" in listing.output
    assert "never run; the first runner to start schedules it" in listing.output

    run = cli("jobs", "run", "ledger-expire")
    assert run.exit_code == 0, run.output
    # The last line (the log's line of the run comes before it).
    assert run.output.splitlines()[-1].startswith("ledger-expire: ok: released 0 reservation(s)")
    listing = cli("jobs", "list").output
    section = listing.split("ledger-expire  (every 1 min)")[1].split("charging-silent")[0]
    assert ", ok, " in section and "emptied 0 expired bucket(s)" in section
    # The next run is a minute after this one began, in Hong Kong time.
    nxt = (frozen_clock.now + registry.JOBS[1].every).astimezone(registry.HONG_KONG)  # type: ignore[operator]
    assert f"next run: {nxt:%Y-%m-%d %H:%M:%S} HKT" in section

    unknown = cli("jobs", "run", "tidy-up")
    assert unknown.exit_code == 2 and "no job named 'tidy-up'" in unknown.output


def test_the_daily_reconciliation_by_hand(
    client, sessions, settings, cli, frozen_clock, sandbox_store
) -> None:
    f.load_demo(sessions, settings)
    headers = f.subscriber(client)
    line = f.bind(client, headers, f.spare_numbers(sessions)[0])
    order = f.order(client, headers, line["id"])
    f.pay(client, order["payment"]["id"])
    paid_on = frozen_clock.now.date()
    frozen_clock.advance(days=1)  # the job reads yesterday's statement
    run = cli("jobs", "run", "payments-reconcile")
    assert run.exit_code == 0, run.output
    assert run.output.splitlines()[-1] == (
        f"payments-reconcile: ok: {paid_on}: 1 statement line(s), 0 difference(s)"
    )


def test_the_reconciliation_is_off_without_a_statement(cli, monkeypatch) -> None:
    monkeypatch.setenv("TONGKA_PAYMENT_SANDBOX", "false")
    config.get_settings.cache_clear()
    run = cli("jobs", "run", "payments-reconcile")
    assert run.exit_code == 2 and "payments-reconcile is off here" in run.output
    assert "off here: no settlement statement" in cli("jobs", "list").output


def test_a_worker_runs_the_jobs_and_stops_cleanly_on_sigterm(settings, sessions, tmp_path) -> None:
    env = {
        **os.environ,
        "TONGKA_ENV": "dev",
        "TONGKA_DATABASE_URL": settings.database_url,
        "TONGKA_SECRET_KEY": settings.secret_key.get_secret_value(),
        "TONGKA_SANDBOX_PAYMENT_SECRET": settings.sandbox_payment_secret.get_secret_value(),
        "TONGKA_SANDBOX_STORE_URL": settings.sandbox_store_url,
        "TONGKA_NRF_DEV_KEY_FILE": settings.nrf_dev_key_file,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "tongka", "worker"],
        env=env,
        cwd=tmp_path,  # no var/tongka.env of this checkout
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: all(finished_runs(sessions).get(j.name) for j in registry.JOBS if j.every),
            "the worker's first runs",
        )
        began = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=WAIT_SECONDS) == 0
        assert time.monotonic() - began < 10  # its loops were idle: it stops at once
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = worker.stdout.read().decode() if worker.stdout else ""
    assert "background_started" in output and "background_stopped" in output


def test_jobs_list_says_when_no_runner_takes_a_due_job(cli, frozen_clock) -> None:
    assert cli("jobs", "run", "ledger-expire").exit_code == 0
    frozen_clock.advance(minutes=5)  # due for four minutes, and nobody ran it
    section = cli("jobs", "list").output.split("ledger-expire  (every 1 min)")[1]
    assert "overdue: is a runner up (`tongka worker`" in section.split("charging-silent")[0]
