"""Nothing secret in a log line; an unhandled error is one short record, written off the event loop.

The errors are real ones: the database refuses every statement (as "database is locked" did
under load), while the request carries a bearer token or a password.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from tongka import logs

TOKEN = "tok-" + secrets.token_urlsafe(24)
PASSWORD = "pw-" + secrets.token_urlsafe(18)


@pytest.fixture
def broken(app) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The app, its database refusing every statement."""

    def refuse(*_args: Any) -> None:
        raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    event.listen(app.state.engine, "before_cursor_execute", refuse)
    yield app
    event.remove(app.state.engine, "before_cursor_execute", refuse)


def crash_with_secrets(client: TestClient) -> None:
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (r.status_code, r.json()["code"]) == (500, "internal_error")
    r = client.post("/api/v1/auth/token", data={"username": "someone", "password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (500, "internal_error")


def read_until(capsys: pytest.CaptureFixture[str], records: int, timeout: float = 10) -> str:
    """What was written to stderr, once `records` unhandled errors are in it (they may come from a thread)."""
    text = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text += capsys.readouterr().err
        if text.count("unhandled_error") >= records:
            time.sleep(0.1)  # anything after the record itself
            return text + capsys.readouterr().err
        time.sleep(0.02)
    pytest.fail(
        f"{records} unhandled_error record(s) not written within {timeout}s:\n{text[-3000:]}"
    )


def test_an_unhandled_error_in_console_logs_is_one_short_record_without_secrets(
    broken, capsys
) -> None:  # type: ignore[no-untyped-def]
    logs.configure(json=False)
    with TestClient(broken, raise_server_exceptions=False) as client:
        crash_with_secrets(client)
        text = read_until(capsys, 2)
    assert TOKEN not in text and PASSWORD not in text
    records = text.split("unhandled_error")[1:]
    assert len(records) == 2
    for record in records:
        assert "OperationalError" in record and "database is locked" in record
        assert (
            len(record.strip().splitlines()) <= 2 * logs.FRAMES + 6
        )  # a few lines: no locals, innermost frames


def test_an_unhandled_error_in_json_logs_keeps_its_traceback_as_data_without_secrets(
    broken, capsys
) -> None:  # type: ignore[no-untyped-def]
    logs.configure(json=True)
    with TestClient(broken, raise_server_exceptions=False) as client:
        crash_with_secrets(client)
        text = read_until(capsys, 2)
    assert TOKEN not in text and PASSWORD not in text
    records = [json.loads(line) for line in text.splitlines() if "unhandled_error" in line]
    assert [r["path"] for r in records] == ["/api/v1/me", "/api/v1/auth/token"]
    for record in records:
        [exception] = record["exception"]
        assert (
            exception["exc_type"] == "OperationalError"
            and "database is locked" in exception["exc_value"]
        )
        assert 0 < len(exception["frames"]) <= logs.FRAMES
        assert all(
            set(frame) == {"filename", "lineno", "name"} for frame in exception["frames"]
        )  # no locals


def test_an_unhandled_error_does_not_reach_the_server(broken) -> None:  # type: ignore[no-untyped-def]
    """Raised further, uvicorn would log it a second time, whole, on the event loop, and drop the connection."""
    with TestClient(broken) as client:  # raises what escapes the app
        r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 500


class SlowStream:
    """stderr on a slow disk or a full pipe: each write takes a while."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        time.sleep(0.5)
        self.lines.append(text)

    def flush(self) -> None:
        pass


def test_the_error_is_written_off_the_event_loop(broken, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    stream = SlowStream()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure(json=False)
    with TestClient(broken, raise_server_exceptions=False) as client:
        started = time.monotonic()
        r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {TOKEN}"})
        answered = time.monotonic() - started
    assert r.status_code == 500
    assert answered < 0.4  # the answer did not wait for the write
    deadline = time.monotonic() + 5
    while (
        not any("unhandled_error" in line for line in stream.lines) and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert any("unhandled_error" in line for line in stream.lines)


@pytest.mark.parametrize("as_json", [False, True])
def test_secrets_given_to_a_log_call_never_reach_the_line(as_json: bool, capsys) -> None:  # type: ignore[no-untyped-def]
    logs.configure(json=as_json)
    structlog.get_logger().warning(
        "something_happened",
        authorization=f"Bearer {TOKEN}",
        password=PASSWORD,
        new_password=PASSWORD,
        code="482913",
        document_number="A1234563",
        stripe_webhook_secret="whsec_abc123XYZ",
        key=SecretStr("sekrit-value-42"),
        headers={"Authorization": f"Bearer {TOKEN}", "accept": "application/json"},
        error=f"401 from upstream: Authorization: Bearer {TOKEN} refused",
        request=_Repr(f"<Request headers={{'authorization': 'Bearer {TOKEN}'}}>"),
        line_id="8c3f",
        status=401,
    )
    line = capsys.readouterr().err
    for secret in (TOKEN, PASSWORD, "482913", "A1234563", "whsec_abc123XYZ", "sekrit-value-42"):
        assert secret not in line
    # What is not secret is still there.
    assert (
        "something_happened" in line
        and "8c3f" in line
        and "401" in line
        and "application/json" in line
    )


class _Repr:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def test_a_burst_of_errors_never_blocks_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the backlog, records are counted and dropped, never waited for; the next record says how many."""
    stream = SlowStream()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure(json=True)
    started = time.monotonic()
    for i in range(logs.BACKLOG + 50):
        logs.later("error", "burst", n=i)
    assert time.monotonic() - started < 1
    written = SlowStream()
    monkeypatch.setattr(written, "write", written.lines.append)  # now a fast one
    logs.configure(json=True, file=written)  # type: ignore[arg-type]
    logs.drain()
    records = [json.loads(line) for line in written.lines if line.strip()]
    assert len(records) >= logs.BACKLOG - 1
    assert sum(r.get("records_dropped", 0) for r in records) >= 49


def test_the_access_log_shows_no_query_string_and_no_receipt_link(app) -> None:  # type: ignore[no-untyped-def]
    import logging

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        (
            "127.0.0.1:5000",
            "GET",
            "/api/v1/me?access_token=Bearer%20SEKRIT&code=12345678",
            "1.1",
            200,
        ),
        None,
    )
    for f in logging.getLogger("uvicorn.access").filters:  # as create_app left them
        f.filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /api/v1/me?… HTTP/1.1" 200'
    from tongka.logs import access_path

    assert access_path("/receipts/3f2a9c1e-0000-4000-8000-000000000000") == "/receipts/…"
    assert access_path("/receipts/verify?d=abc") == "/receipts/verify?…"
    assert access_path("/receipts/public-key") == "/receipts/public-key"
