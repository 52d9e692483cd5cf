"""The network's requests decided in a charging process of the server's own (`tongka serve`'s way), on each backend.

The charging process keeps its own clock (the real one), so the buckets here are valid now.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection

import httpx
from fastapi.testclient import TestClient

from tests.charging import factories as f
from tests.charging.test_api import BASE, msisdn, remaining, request
from tests.conftest import nf_headers
from tongka.charging import nchf
from tongka.charging.nchf_app import create_nchf_app
from tongka.money import MB

NOW = datetime.now(UTC) - timedelta(days=1)


def process_app(settings):  # type: ignore[no-untyped-def]
    return create_nchf_app(settings.model_copy(update={"charging_worker": "process"}))


def line_with_data(session):  # type: ignore[no-untyped-def]
    """A line with 100 MB for Hong Kong, committed (the charging process reads it on its own
    connection): its bucket and its GPSI."""
    line = f.line(session)
    hk = f.bucket(session, line, "hk", 100 * MB, valid_from=NOW)
    session.commit()
    return hk, msisdn(line)


def test_a_session_is_charged_through_the_process_and_the_process_stops_with_the_server(
    settings, session
) -> None:
    hk, gpsi = line_with_data(session)
    app = process_app(settings)
    charging = app.state.charging
    assert isinstance(charging, nchf.ChargingProcess)

    with TestClient(app, headers=nf_headers(settings)) as client:
        assert (
            charging._process is not None and charging._process.is_alive()
        )  # started with the server
        first = client.post(BASE, json=request(1, gpsi=gpsi, requested=30 * MB))
        assert first.status_code == 201, first.text
        again = client.post(
            BASE, json=request(1, gpsi=gpsi, requested=30 * MB)
        )  # the same create, sent again
        assert (again.status_code, again.json(), again.headers["location"]) == (
            201,
            first.json(),
            first.headers["location"],
        )
        ref = first.headers["location"].rsplit("/", 1)[1]

        update = request(2, gpsi=gpsi, requested=30 * MB, used=20 * MB)
        answers = [
            client.post(f"{BASE}/{ref}/update", json=update) for _ in range(2)
        ]  # and a retransmission
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json() == answers[1].json()
        assert (
            client.post(
                f"{BASE}/{ref}/release", json=request(3, gpsi=gpsi, used=5 * MB)
            ).status_code
            == 204
        )
        assert (
            client.post(f"{BASE}/{ref}/update", json=update).json()["cause"] == "CONTEXT_NOT_FOUND"
        )
        process = charging._process

    assert not process.is_alive()
    assert remaining(session, hk) == 75 * MB  # 20 + 5 used, each once


def test_a_charging_process_that_dies_fails_what_it_held_and_the_next_request_starts_another(
    settings, session
) -> None:
    _hk, gpsi = line_with_data(session)
    app = process_app(settings)
    with TestClient(app, headers=nf_headers(settings), raise_server_exceptions=False) as client:
        charging = app.state.charging
        charging._process.kill()
        charging._process.join()
        r = client.post(BASE, json=request(1, gpsi=gpsi, requested=10 * MB))
        assert r.status_code == 201, r.text  # a new process answered
        assert charging._process.is_alive()


def test_a_request_that_finds_the_pipe_broken_before_the_reader_noticed_goes_to_a_new_process(
    settings, session
) -> None:
    hk, gpsi = line_with_data(session)
    app = process_app(settings)
    with TestClient(app, headers=nf_headers(settings), raise_server_exceptions=False) as client:
        charging = app.state.charging
        dead = charging._conn
        charging._process.kill()
        charging._process.join()
        for _ in range(500):  # the reader sees the end and clears the pipe...
            if charging._conn is None:
                break
            time.sleep(0.01)
        charging._conn = (
            dead  # ...which a request can come before: it still sends down the dead pipe
        )
        r = client.post(BASE, json=request(1, gpsi=gpsi, requested=10 * MB))
        assert r.status_code == 201, r.text
        assert charging._conn is not dead and charging._process.is_alive()
        assert remaining(session, hk) == 90 * MB  # reserved once


def test_requests_arriving_together_go_to_the_process_together_and_each_is_answered_once(
    settings, session
) -> None:
    buckets, gpsis = zip(*(line_with_data(session) for _ in range(12)), strict=True)
    app = process_app(settings)
    charging = app.state.charging
    sent: list[int] = []
    send = charging._send
    charging._send = lambda ops: (sent.append(len(ops)), send(ops))[1]

    async def together() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=nf_headers(settings)
        ) as client:
            return await asyncio.gather(
                *(
                    client.post(BASE, json=request(1, gpsi=gpsi, requested=10 * MB))
                    for gpsi in gpsis
                )
            )

    try:
        answers = asyncio.run(together())
    finally:
        charging.stop()
    assert [a.status_code for a in answers] == [201] * 12, [a.text for a in answers]
    assert len({a.headers["location"] for a in answers}) == 12  # a session each
    assert sum(sent) == 12 and len(sent) < 12, sent  # fewer writes to the pipe than requests
    assert [remaining(session, b) for b in buckets] == [90 * MB] * 12  # each line reserved once


def test_a_process_that_dies_while_an_op_is_being_written_to_it_does_not_fail_that_op(
    settings, session, monkeypatch
) -> None:
    # What CI hit: the reader saw the end while the op was being written to the dead pipe, failed
    # the op, and the op's second try (to a new process) was answered to nobody.
    _hk, gpsi = line_with_data(session)
    app = process_app(settings)
    with TestClient(app, headers=nf_headers(settings), raise_server_exceptions=False) as client:
        charging = app.state.charging
        dying, process = charging._conn, charging._process
        send = Connection.send

        def dies_meanwhile(conn: Connection, obj: object) -> None:
            if conn is dying:
                process.kill()
                process.join()
                deadline = time.monotonic() + 2
                while (
                    charging._conn is dying and time.monotonic() < deadline
                ):  # the reader's turn, if it may
                    time.sleep(0.01)
            send(conn, obj)

        monkeypatch.setattr(Connection, "send", dies_meanwhile)
        r = client.post(BASE, json=request(1, gpsi=gpsi, requested=10 * MB))
        assert r.status_code == 201, r.text
        assert charging._conn is not dying and charging._process.is_alive()
