"""The charging worker process (`charging/worker.py`, what `tongka serve` runs), on each backend:
the clock it is given, a worker killed mid-batch, stopping with work in flight, a client that goes
away. test_api.py runs the whole Nchf API against it as well.

To catch a batch inside the worker, a test holds the database's writes from another connection
(`writes_held`) and waits until the worker is waiting for them (`until_the_worker_waits`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tests.charging import factories as f
from tests.charging.test_api import BASE, msisdn, remaining, request
from tests.conftest import nf_headers
from tests.ledger.factories import T0
from tongka.charging import worker
from tongka.charging.nchf_app import create_nchf_app
from tongka.db import normalise_url
from tongka.money import MB


@pytest.fixture
def charging_worker() -> str:
    return "process"


def line_with_data(session):  # type: ignore[no-untyped-def]
    """A line with 100 MB for Hong Kong, committed (the worker reads it on its own connection):
    its bucket and its GPSI."""
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB)
    session.commit()
    return hk, msisdn(line)


def alive(pid: int | None) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended


def until(done: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.02)


@contextmanager
def writes_held(url: str, *, tables: str = "ledger_accounts") -> Iterator[Callable[[], None]]:
    """The database's writes held by another connection until the block ends or `release()`:
    SQLite's write lock (a batch begins with BEGIN IMMEDIATE), or on PostgreSQL `tables` locked
    EXCLUSIVE (a batch locks the accounts it charges FOR UPDATE before it writes; on
    `charging_sessions` a create waits at its INSERT, its commit already sent with it)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        lite = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")
        release = lite.rollback
    else:
        pg = psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
        pg.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
        release = pg.rollback
    try:
        yield release
    finally:
        release()
        (lite if url.startswith("sqlite") else pg).close()


def until_the_worker_waits(url: str, pid: int | None, *, waiters: int = 1) -> None:
    """Until a batch inside the worker waits for the writes held: on PostgreSQL `waiters` backends
    wait for a lock (that of a worker killed waits on: PostgreSQL sees its client gone only when it
    answers); on SQLite the worker has the database open (it connects only to run a batch)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = os.path.realpath(make_url(url).database or "")

        def waiting() -> bool:
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                return False
            return any(_target(fd) == path for fd in fds)

    else:
        pg_url = make_url(url).set(drivername="postgresql").render_as_string(False)

        def waiting() -> bool:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                ).fetchone()
            return bool(row and row[0] >= waiters)

    until(waiting, "a batch in the worker waits for the database")


def _target(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def test_a_session_is_charged_in_the_worker_process_which_ends_with_the_server(
    settings, session, nchf_app
) -> None:
    hk, gpsi = line_with_data(session)
    charging = nchf_app.state.charging
    with TestClient(nchf_app, headers=nf_headers(settings)) as client:
        pid = charging.pid
        assert pid != os.getpid() and alive(pid)  # started with the server, a process of its own
        first = client.post(BASE, json=request(1, gpsi=gpsi, requested=30 * MB))
        assert first.status_code == 201, first.text
        again = client.post(BASE, json=request(1, gpsi=gpsi, requested=30 * MB))  # sent again
        assert (again.status_code, again.json(), again.headers["location"]) == (
            201,
            first.json(),
            first.headers["location"],
        )
        ref = first.headers["location"].rsplit("/", 1)[1]
        update = request(2, gpsi=gpsi, requested=30 * MB, used=20 * MB)
        answers = [client.post(f"{BASE}/{ref}/update", json=update) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json() == answers[1].json()
        release = request(3, gpsi=gpsi, used=5 * MB)
        assert client.post(f"{BASE}/{ref}/release", json=release).status_code == 204
        assert client.post(f"{BASE}/{ref}/update", json=update).json() == answers[0].json()
        assert charging.pid == pid  # one worker throughout
    assert not alive(pid)
    assert remaining(session, hk) == 75 * MB  # 20 + 5 used, each once


def test_the_worker_process_charges_at_the_servers_clock(
    settings, session, nchf_app, frozen_clock
) -> None:
    # The bucket is valid from T0 (2030): on its own clock the worker would find none.
    _hk, gpsi = line_with_data(session)
    with TestClient(nchf_app, headers=nf_headers(settings)) as client:
        r = client.post(BASE, json=request(1, gpsi=gpsi, requested=30 * MB))
        assert r.status_code == 201, r.text
        assert T0.isoformat() == "2030-01-15T08:00:00+00:00"
        assert r.json()["invocationTimeStamp"] == "2030-01-15T08:00:00Z"
        assert r.json()["multipleUnitInformation"][0]["grantedUnit"] == {"totalVolume": 30 * MB}
        ref = r.headers["location"].rsplit("/", 1)[1]
        frozen_clock.advance(days=31)  # past the bucket's 30 days
        r = client.post(f"{BASE}/{ref}/update", json=request(2, requested=30 * MB, used=MB))
        assert r.json()["invocationTimeStamp"] == "2030-02-15T08:00:00Z"
        assert "grantedUnit" not in r.json()["multipleUnitInformation"][0], r.json()


@pytest.mark.parametrize("tables", ["ledger_accounts", "charging_sessions"])
def test_a_worker_killed_mid_batch_is_replaced_and_the_batch_charged_once(
    settings, session, nchf_app, tables
) -> None:
    """Accounts held: the worker dies before its batch commits. Sessions held (PostgreSQL): its
    create waits at its INSERT with its commit already sent, which PostgreSQL may carry out after
    the worker is gone; the batch sent again then finds the session (by its create key: read, or
    refused as a duplicate and run again alone) and answers from it."""
    if tables != "ledger_accounts" and settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite: a batch waits for the write lock before it does anything")
    hk, gpsi = line_with_data(session)
    charging = nchf_app.state.charging
    url = settings.database_url
    with TestClient(nchf_app, headers=nf_headers(settings)) as client:
        first_pid = charging.pid
        with httpx_thread(client.post, BASE, json=request(1, gpsi=gpsi, requested=10 * MB)) as r:
            with writes_held(url, tables=tables):
                until_the_worker_waits(url, first_pid)
                os.kill(first_pid, signal.SIGKILL)
                until(lambda: charging.pid not in (None, first_pid), "a new worker")
                # The batch sent again waits too (for what the dead one's transaction holds).
                until_the_worker_waits(url, charging.pid, waiters=2)
        assert r.result().status_code == 201, r.result().text
        assert alive(charging.pid) and not alive(first_pid)
        ref = r.result().headers["location"]
        again = client.post(BASE, json=request(1, gpsi=gpsi, requested=10 * MB))
        assert (again.status_code, again.headers["location"]) == (201, ref)
    assert remaining(session, hk) == 90 * MB  # reserved once


def test_an_update_whose_worker_died_with_its_commit_sent_is_charged_once(
    settings, session, nchf_app
) -> None:
    """The update waits at its kept answer's INSERT, its commit sent with it; the worker dies. The
    update sent again waits for the session row the dead one's transaction locked, and may read
    the session without the answer that transaction commits: its own answer's key is then refused
    as a duplicate, and the op, run again alone, finds the answer kept."""
    if settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite: a batch waits for the write lock before it does anything")
    hk, gpsi = line_with_data(session)
    charging = nchf_app.state.charging
    url = settings.database_url
    with TestClient(nchf_app, headers=nf_headers(settings)) as client:
        created = client.post(BASE, json=request(1, gpsi=gpsi, requested=30 * MB))
        ref = created.headers["location"].rsplit("/", 1)[1]
        update = request(2, requested=30 * MB, used=20 * MB)
        first_pid = charging.pid
        with httpx_thread(client.post, f"{BASE}/{ref}/update", json=update) as r:
            with writes_held(url, tables="charging_answers"):
                until_the_worker_waits(url, first_pid)
                os.kill(first_pid, signal.SIGKILL)
                until(lambda: charging.pid not in (None, first_pid), "a new worker")
                # The batch sent again waits too (for what the dead one's transaction holds).
                until_the_worker_waits(url, charging.pid, waiters=2)
        assert r.result().status_code == 200, r.result().text
        again = client.post(f"{BASE}/{ref}/update", json=update)
        assert (again.status_code, again.json()) == (200, r.result().json())
    assert remaining(session, hk) == 50 * MB  # 20 used once, 30 granted once


def test_a_batch_whose_worker_dies_twice_fails_and_the_next_request_gets_a_new_worker(
    settings, session, nchf_app
) -> None:
    hk, gpsi = line_with_data(session)
    charging = nchf_app.state.charging
    url = settings.database_url
    with TestClient(
        nchf_app, headers=nf_headers(settings), raise_server_exceptions=False
    ) as client:
        with httpx_thread(client.post, BASE, json=request(1, gpsi=gpsi, requested=10 * MB)) as r:
            with writes_held(url):
                first = charging.pid
                until_the_worker_waits(url, first)
                os.kill(first, signal.SIGKILL)
                until(lambda: charging.pid not in (None, first), "a new worker")
                until_the_worker_waits(url, charging.pid, waiters=2)  # the batch sent again
                os.kill(charging.pid, signal.SIGKILL)
                until(r.done, "the request answered")
        assert r.result().status_code == 500
        assert r.result().json()["cause"] == "SYSTEM_FAILURE"
        assert remaining(session, hk) == 100 * MB  # nothing charged
        again = client.post(BASE, json=request(1, gpsi=gpsi, requested=10 * MB))
        assert again.status_code == 201, again.text  # a third worker answered it
        assert alive(charging.pid)
    assert remaining(session, hk) == 90 * MB


def test_a_database_busy_past_its_timeout_is_a_503_the_smf_may_retry(settings, session) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's lock has a busy timeout; PostgreSQL's row locks wait")
    hk, gpsi = line_with_data(session)
    app = create_nchf_app(
        settings.model_copy(update={"charging_worker": "process", "db_busy_timeout_seconds": 0.2})
    )
    with TestClient(app, headers=nf_headers(settings)) as client:
        with writes_held(settings.database_url):
            r = client.post(BASE, json=request(1, gpsi=gpsi, requested=10 * MB))
        assert (r.status_code, r.json()["cause"], r.headers["retry-after"]) == (
            503,
            "NF_CONGESTION",
            "1",
        )
        again = client.post(BASE, json=request(1, gpsi=gpsi, requested=10 * MB))
        assert again.status_code == 201, again.text
    assert remaining(session, hk) == 90 * MB


def test_stop_answers_what_the_worker_holds_and_refuses_what_comes_after(settings, session) -> None:
    lines = [line_with_data(session) for _ in range(5)]
    url = settings.database_url

    async def scenario() -> tuple[list[httpx.Response], httpx.Response, int | None]:
        async with running_app(settings) as (app, client):
            charging: worker.ChargingWorker = app.state.charging
            with writes_held(url) as release:
                held = [asyncio.create_task(create(client, gpsi, 10 * MB)) for _hk, gpsi in lines]
                await asyncio.to_thread(until_the_worker_waits, url, charging.pid)
                stopping = asyncio.create_task(charging.stop())
                await asyncio.sleep(0.2)
                assert not stopping.done()  # it waits for the batch
                late = await create(client, lines[0][1], 20 * MB)
                release()
                await stopping
            return [await answer for answer in held], late, charging.pid

    answers, late, pid = asyncio.run(scenario())
    assert [a.status_code for a in answers] == [201] * 5, [a.text for a in answers]
    assert (late.status_code, late.json()["cause"]) == (500, "SYSTEM_FAILURE")  # after stop began
    assert not alive(pid)
    assert [remaining(session, hk) for hk, _gpsi in lines] == [90 * MB] * 5


def test_stop_is_time_boxed_a_stuck_worker_is_killed_and_its_ops_fail(settings, session) -> None:
    hk, gpsi = line_with_data(session)
    url = settings.database_url

    async def scenario() -> tuple[httpx.Response, float, int | None]:
        async with running_app(settings) as (app, client):
            charging: worker.ChargingWorker = app.state.charging
            with writes_held(url):
                stuck = asyncio.create_task(create(client, gpsi, 10 * MB))
                await asyncio.to_thread(until_the_worker_waits, url, charging.pid)
                began = time.monotonic()
                await charging.stop(timeout=1)
                took = time.monotonic() - began
                return await stuck, took, charging.pid

    failed, took, pid = asyncio.run(scenario())
    assert (failed.status_code, failed.json()["cause"]) == (500, "SYSTEM_FAILURE")
    assert 1 <= took < 8, took
    assert not alive(pid)
    assert remaining(session, hk) == 100 * MB


def test_a_request_whose_client_goes_away_does_not_break_its_batch(settings, session) -> None:
    (hk_a, gpsi_a), (hk_b, gpsi_b), (hk_c, gpsi_c), (hk_d, gpsi_d) = [
        line_with_data(session) for _ in range(4)
    ]
    url = settings.database_url

    async def scenario() -> list[httpx.Response]:
        async with running_app(settings) as (app, client):
            charging: worker.ChargingWorker = app.state.charging
            with writes_held(url) as release:
                # A and B go out (one batch or two); at most two batches are out at once, so by the
                # time D comes it waits for one to come back.
                a = asyncio.create_task(create(client, gpsi_a, 10 * MB))
                b = asyncio.create_task(create(client, gpsi_b, 10 * MB))
                await asyncio.to_thread(until_the_worker_waits, url, charging.pid)
                c = asyncio.create_task(create(client, gpsi_c, 10 * MB))
                await asyncio.sleep(0.2)
                d = asyncio.create_task(create(client, gpsi_d, 10 * MB))
                await asyncio.sleep(0.2)
                a.cancel()  # their clients go away: A's op is in the worker, D's not yet sent
                d.cancel()
                release()
                answers = [await b, await c]
            assert a.cancelled() and d.cancelled()
            # A was charged with its batch: its retransmission gets its answer.
            answers.append(await create(client, gpsi_a, 10 * MB))
            return answers

    b, c, a_again = asyncio.run(scenario())
    assert [r.status_code for r in (b, c, a_again)] == [201] * 3, [r.text for r in (b, c, a_again)]
    assert [remaining(session, hk) for hk in (hk_a, hk_b, hk_c, hk_d)] == [
        90 * MB,
        90 * MB,
        90 * MB,
        100 * MB,  # never sent
    ]


def test_a_worker_process_ends_when_its_server_is_killed(tmp_path) -> None:
    script = tmp_path / "server.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys, time
            from tongka.charging.renew_link import RenewLinks
            from tongka.charging.worker import ChargingWorker

            async def main():
                links = RenewLinks("http://testserver", b"key", 3600)
                charging = ChargingWorker("process", sys.argv[1], links)
                await charging.start()
                print(charging.pid, flush=True)
                time.sleep(60)

            if __name__ == "__main__":  # not again in the worker, which imports this module
                asyncio.run(main())
            """
        )
    )
    server = subprocess.Popen(
        # No database: the worker connects only to answer a batch.
        [sys.executable, str(script), f"sqlite:///{tmp_path / 'unused.db'}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        pid = int(server.stdout.readline())
        assert alive(pid)
    finally:
        server.kill()
        server.wait()
    until(lambda: not alive(pid), "the worker ends with its server")


# --- helpers ------------------------------------------------------------------------------


@contextmanager
def httpx_thread(
    post: Callable[..., httpx.Response], *args: Any, **kwargs: Any
) -> Iterator[Future[httpx.Response]]:
    """A request sent from another thread while the test goes on; `.result()` once the block ends."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(post, *args, **kwargs)
        yield future
        future.result(timeout=60)


@asynccontextmanager
async def running_app(settings: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The process-mode Nchf app on this event loop, its lifespan run, with an SMF's client."""
    app = create_nchf_app(settings.model_copy(update={"charging_worker": "process"}))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=nf_headers(settings)
        ) as client,
    ):
        yield app, client


async def create(client: httpx.AsyncClient, gpsi: str, requested: int) -> httpx.Response:
    response = await client.post(BASE, json=request(1, gpsi=gpsi, requested=requested))
    return response
