"""The delivery worker over a real database and a real SMTP server: once each, retries, leases, operators."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from structlog.testing import capture_logs

from tests import factories as f
from tests.factories import new_subscriber
from tests.notify.conftest import DOMAIN, MAIL_FROM, FrozenClock, queue_email
from tongka import config
from tongka.config import Settings
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.notify import service, worker
from tongka.notify.email import SmtpSender, SmtpServer
from tongka.notify.models import OutboxMessage
from tongka.sandbox.mail import MailServer

ROOT = Path(__file__).resolve().parents[2]


def row(sessions: sessionmaker[Session], message_id: uuid.UUID) -> OutboxMessage:
    with sessions() as s:
        message = s.get(OutboxMessage, message_id)
        assert message is not None
        s.expunge(message)
        return message


def deliver(
    sessions, smtp: SmtpSender, policy: worker.Policy | None = None, worker_id: str = "w1"
) -> int:  # type: ignore[no-untyped-def]
    return worker.deliver_due(sessions, {"email": smtp}, worker_id=worker_id, policy=policy)


def received_ids(mail: MailServer) -> list[str]:
    return [r.parsed()["Message-ID"] for r in mail.received]


# --- what arrives -----------------------------------------------------------------------------


def test_a_renewal_confirmation_arrives_in_the_subscribers_language(
    client, sessions, settings, mail: MailServer, smtp: SmtpSender
) -> None:
    f.load_demo(sessions, settings)
    who = new_subscriber(client, sessions, language="zh-Hant")
    order = f.order(client, who.headers, who.line["id"], code="both-5gb-30d")
    f.pay(client, order["payment"]["id"])
    address = f"{who.username}@example.com"
    with sessions() as s:
        [queued] = s.scalars(select(OutboxMessage).where(OutboxMessage.to == address))
        assert (queued.status, queued.template, queued.attempts) == ("pending", "receipt", 0)

    assert deliver(sessions, smtp) >= 1  # the demo subscriber's receipt email goes too
    [arrived] = [r for r in mail.received if r.rcpt_tos == [address]]
    parsed = arrived.parsed()
    assert parsed["Message-ID"] == f"<{queued.id}@{DOMAIN}>"
    assert parsed["Subject"].startswith("您的數據已到賬 · 收據 ONL-")
    plain, html = parsed.iter_parts()
    for part in (plain.get_content(), html.get_content()):
        assert "內地+香港 5 GB · 30 天" in part and "實付：HK$98.00（支付寶）" in part
        assert "通卡絕不會" in part
    sent = row(sessions, queued.id)
    assert sent.status == "sent" and sent.attempts == 1 and sent.sent_at is not None
    assert sent.provider_message_id == f"<{queued.id}@{DOMAIN}>"
    assert sent.claimed_by is None and sent.claimed_until is None and sent.last_error is None
    assert deliver(sessions, smtp) == 0  # sent is sent


def test_a_bind_code_is_in_the_subscribers_language_and_waits_for_an_sms_sender(
    client, sessions, settings, mail: MailServer, smtp: SmtpSender
) -> None:
    f.load_demo(sessions, settings)
    headers = f.subscriber(client, language="zh-Hans")
    number = f.spare_numbers(sessions)[0]
    assert (
        client.post("/api/v1/lines/bind", json={"number": number}, headers=headers).status_code
        == 202
    )
    [sms] = [m for m in client.get("/dev/outbox").json() if m["to"] == number]
    assert sms["body"].startswith("【tongka】您的通卡验证码是 ") and "10 分钟内有效" in sms["body"]
    assert sms["status"] == "pending"

    deliver(sessions, smtp)  # email only: no SMS sender here
    outbox = {m["to"]: m for m in client.get("/dev/outbox").json()}
    assert outbox[number]["status"] == "pending"
    assert {m["status"] for m in outbox.values() if m["channel"] == "email"} == {"sent"}
    with sessions() as s:
        waiting = s.scalars(select(OutboxMessage).where(OutboxMessage.to == number)).one()
        assert waiting.attempts == 0 and waiting.claimed_by is None


# --- retries, giving up, operators ------------------------------------------------------------


def test_temporary_failures_back_off_exponentially_with_jitter_then_give_up(
    sessions, mail: MailServer, smtp: SmtpSender, frozen_clock: FrozenClock
) -> None:
    mail.refuse["busy@example.com"] = "451 4.3.0 mailbox busy"
    message_id = queue_email(sessions, "busy@example.com")
    policy = worker.Policy(max_attempts=5, retry_base_seconds=30, retry_cap_seconds=100)
    for attempt, ceiling in enumerate((30, 60, 100, 100), start=1):
        assert deliver(sessions, smtp, policy) == 0
        waiting = row(sessions, message_id)
        assert (waiting.status, waiting.attempts) == ("pending", attempt)
        assert "451" in (waiting.last_error or "")
        assert waiting.next_attempt_at is not None
        pause = (waiting.next_attempt_at - frozen_clock.now).total_seconds()
        assert ceiling / 2 <= pause <= ceiling, (attempt, pause)
        frozen_clock.now = waiting.next_attempt_at - timedelta(seconds=1)
        assert deliver(sessions, smtp, policy) == 0  # not yet due: not tried
        assert row(sessions, message_id).attempts == attempt
        frozen_clock.now = waiting.next_attempt_at
    assert deliver(sessions, smtp, policy) == 0
    given_up = row(sessions, message_id)
    assert (given_up.status, given_up.attempts) == ("failed", 5) and "451" in (
        given_up.last_error or ""
    )
    frozen_clock.advance(10_000)
    assert deliver(sessions, smtp, policy) == 0 and row(sessions, message_id).attempts == 5
    assert mail.received == []


def test_a_permanent_refusal_fails_at_once(sessions, mail: MailServer, smtp: SmtpSender) -> None:
    mail.refuse["gone@example.com"] = "550 5.1.1 no such mailbox"
    message_id = queue_email(sessions, "gone@example.com")
    other = queue_email(sessions, "ada@example.com")
    assert deliver(sessions, smtp) == 1
    failed = row(sessions, message_id)
    assert (failed.status, failed.attempts) == ("failed", 1) and "550" in (failed.last_error or "")
    assert row(sessions, other).status == "sent"


def test_an_operator_lists_failed_messages_masked_and_sends_one_again(
    client, operator, sessions, mail: MailServer, smtp: SmtpSender
) -> None:
    mail.refuse["ada.lovelace@example.com"] = "550 5.2.1 mailbox disabled"
    message_id = queue_email(sessions, "ada.lovelace@example.com", language="en")
    deliver(sessions, smtp)

    url = "/api/v1/admin/messages"
    assert client.get(url, params={"status": "failed"}).status_code == 401
    subscriber = f.subscriber(client)
    r = client.get(url, params={"status": "failed"}, headers=subscriber)
    assert (r.status_code, r.json()["code"]) == (401, "staff_session_invalid")
    assert client.post(f"{url}/{message_id}/retry", headers=subscriber).status_code == 401

    r = client.get(url, params={"status": "failed"}, headers=operator)
    assert r.status_code == 200, r.text
    [listed] = r.json()
    assert listed["id"] == str(message_id) and listed["to"] == "a***@example.com"
    assert listed["template"] == "receipt" and "550" in listed["last_error"]
    assert "ONL-00000042" in listed["body"]  # the text, for staff
    assert client.get(url, params={"status": "sent"}, headers=operator).json() == []
    assert client.get(url, params={"status": "lost"}, headers=operator).status_code == 422

    r = client.post(f"{url}/{message_id}/retry", headers=operator)
    assert r.status_code == 200 and (r.json()["status"], r.json()["attempts"]) == ("pending", 0)
    r = client.post(f"{url}/{message_id}/retry", headers=operator)
    assert (r.status_code, r.json()["code"]) == (409, "message_not_failed")
    r = client.post(f"{url}/{uuid.uuid4()}/retry", headers=operator)
    assert (r.status_code, r.json()["code"]) == (404, "message_not_found")

    del mail.refuse["ada.lovelace@example.com"]
    assert deliver(sessions, smtp) == 1
    assert received_ids(mail) == [f"<{message_id}@{DOMAIN}>"]  # the same message, the same id
    assert row(sessions, message_id).status == "sent"


def test_the_cli_lists_failed_messages_retries_one_and_delivers(
    cli, sessions, mail: MailServer, smtp: SmtpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail.refuse["+bob@example.com"] = "550 5.1.1 no such mailbox"
    message_id = queue_email(sessions, "+bob@example.com")
    queue_email(sessions, "carol@example.com")
    deliver(sessions, smtp)

    listed = cli("messages", "list", "--failed")
    assert listed.exit_code == 0
    [line] = listed.output.splitlines()
    assert str(message_id) in line and "+***@example.com" in line and "550" in line
    assert "failed" in line and "carol" not in listed.output
    assert len(cli("messages", "list").output.splitlines()) == 2

    assert cli("messages", "retry", str(message_id)).exit_code == 0
    refused = cli("messages", "retry", str(message_id))
    assert refused.exit_code == 2 and "Only a message that failed" in refused.output
    assert cli("messages", "retry", "not-an-id").exit_code == 2

    del mail.refuse["+bob@example.com"]
    monkeypatch.setenv("TONGKA_SMTP_URL", mail.url)
    monkeypatch.setenv("TONGKA_MAIL_FROM", MAIL_FROM)
    config.get_settings.cache_clear()  # read again, with the SMTP server
    delivered = cli("messages", "deliver")
    assert delivered.exit_code == 0 and "sent 1 message(s)" in delivered.output
    assert "sms: no sender configured" in delivered.output
    assert row(sessions, message_id).status == "sent"


def test_a_delivery_receipt_is_the_final_status(sessions, frozen_clock: FrozenClock) -> None:
    with transaction(sessions) as s:
        message = service.send_sms(
            s, to="+85251021014", template="bind_code", language="en", code="12345678", minutes=10
        )
        message_id = message.id
    record = service.receipt_recorder(sessions)  # what the SMS sender is given
    now = frozen_clock.now
    assert not record("smsc-0042", "delivered", now)  # not sent yet: unknown
    with transaction(sessions) as s:
        message = s.get_one(OutboxMessage, message_id)
        message.status, message.provider_message_id = "sent", "smsc-0042"
    assert record("smsc-0042", "undeliverable", now)
    gone = row(sessions, message_id)
    assert (gone.status, gone.delivered_at) == ("undeliverable", frozen_clock.now)
    assert record("smsc-0042", "delivered", now)  # known, but final already
    assert row(sessions, message_id).status == "undeliverable"
    assert not record("smsc-unknown", "delivered", now)
    with pytest.raises(ValueError):
        record("smsc-0042", "sent", now)
    with transaction(sessions) as s:  # an undeliverable message can be sent again
        assert service.retry(s, message_id).status == "pending"


# --- once each, and leases --------------------------------------------------------------------


def test_two_workers_in_two_threads_deliver_each_message_exactly_once(
    settings: Settings, sessions, mail: MailServer
) -> None:
    ids = [queue_email(sessions, f"reader{n}@example.com") for n in range(30)]
    policy = worker.Policy(batch_size=3)
    start = threading.Barrier(2)
    sent: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        engine = make_engine(settings.database_url)
        own = make_sessionmaker(engine)  # each worker its own connections
        sender = SmtpSender(SmtpServer.parse(mail.url), MAIL_FROM, timeout=10)
        try:
            start.wait()
            sent[name] = worker.deliver_due(own, {"email": sender}, worker_id=name, policy=policy)
        except BaseException as error:
            errors.append(error)
        finally:
            sender.close()
            engine.dispose()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sum(sent.values()) == len(ids)
    arrived = received_ids(mail)
    assert sorted(arrived) == sorted(f"<{i}@{DOMAIN}>" for i in ids)  # each once, none twice
    with sessions() as s:
        rows = s.scalars(select(OutboxMessage)).all()
        assert {(m.status, m.attempts) for m in rows} == {("sent", 1)}


def test_a_claimed_batch_is_skipped_by_another_worker_until_its_lease_ends(
    sessions, mail: MailServer, smtp: SmtpSender, frozen_clock: FrozenClock
) -> None:
    ids = []
    for n in range(5):  # oldest first
        ids.append(queue_email(sessions, f"r{n}@example.com"))
        frozen_clock.advance(1)
    policy = worker.Policy(batch_size=3, lease=timedelta(seconds=120))
    held = worker.claim(sessions, ["email"], worker_id="stalled", policy=policy)
    assert [c.message.id for c in held] == ids[:3] and {c.attempts for c in held} == {1}
    assert deliver(sessions, smtp, policy, worker_id="other") == 2  # the two not held
    frozen_clock.advance(119)
    assert deliver(sessions, smtp, policy, worker_id="other") == 0  # the lease still holds
    frozen_clock.advance(2)
    assert deliver(sessions, smtp, policy, worker_id="other") == 3  # given back by time
    assert sorted(received_ids(mail)) == sorted(f"<{i}@{DOMAIN}>" for i in ids)
    assert [row(sessions, i).attempts for i in ids] == [2, 2, 2, 1, 1]


def test_a_worker_killed_mid_send_leaves_the_message_to_another_after_its_lease(
    settings: Settings, sessions, mail: MailServer, smtp: SmtpSender, frozen_clock: FrozenClock
) -> None:
    message_id = queue_email(sessions)
    mail.handler.paused.set()  # the first send hangs in the middle: data sent, no answer yet
    doomed = subprocess.Popen(
        [sys.executable, "-m", "tests.notify.worker_process", settings.database_url, mail.url],
        cwd=ROOT,
        env={**os.environ, "TONGKA_ENV": "dev"},
    )
    try:
        assert mail.handler.holding.wait(120), "the worker process never sent"
        claimed = row(sessions, message_id)
        assert (claimed.status, claimed.claimed_by, claimed.attempts) == ("pending", "doomed", 1)
        doomed.kill()  # SIGKILL: nothing recorded, the lease left on the row
        doomed.wait(30)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    mail.handler.paused.clear()  # the server never took that copy (451 to a closed connection)

    assert deliver(sessions, smtp, worker_id="survivor") == 0  # the dead worker's lease holds
    assert claimed.claimed_until is not None
    frozen_clock.now = claimed.claimed_until + timedelta(seconds=1)
    assert deliver(sessions, smtp, worker_id="survivor") == 1
    assert received_ids(mail) == [f"<{message_id}@{DOMAIN}>"]  # once
    done = row(sessions, message_id)
    assert (done.status, done.attempts, done.claimed_by) == ("sent", 2, None)


def test_run_sends_at_once_what_this_process_queues_and_stops_when_told(
    settings: Settings, sessions, mail: MailServer
) -> None:
    configured = settings.model_copy(
        update={
            "smtp_url": SecretStr(mail.url),
            "mail_from": MAIL_FROM,
            "message_poll_seconds": 60.0,
        }
    )
    stop = threading.Event()
    with capture_logs() as logs:
        runner = threading.Thread(target=worker.run, args=(stop, configured, sessions))
        runner.start()
        try:
            time.sleep(0.5)  # past its first look (nothing due then): only a wake-up sends now
            began = time.monotonic()
            message_id = queue_email(sessions)
            assert [r.parsed()["Message-ID"] for r in mail.wait_for(1, 15)] == [
                f"<{message_id}@{DOMAIN}>"
            ]
            assert time.monotonic() - began < 15  # well before the 60 s poll
        finally:
            stop.set()
            runner.join(10)
    assert not runner.is_alive()
    events = [(e["event"], e.get("channel")) for e in logs]
    assert ("message_channel_off", "sms") in events and (
        "message_channel_off",
        "email",
    ) not in events
    assert ("message_worker_stopped", None) in events


def test_addresses_are_masked_for_operators() -> None:
    assert service.mask("sms", "+85251021014") == "+852****1014"
    assert service.mask("sms", "+8613800138000") == "+86*******8000"
    assert service.mask("sms", "12345") == "***"
    assert service.mask("email", "ada.lovelace@example.com") == "a***@example.com"
