"""Delivery receipts from a real SMSC update the outbox row that `notify.service.send_sms` wrote
(SQLite and PostgreSQL), through `record_receipt`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.notify.sms_helpers import (
    eventually,
    make_sender,
    server,  # noqa: F401  (a fixture)
    sms,
)
from tongka.db import transaction
from tongka.notify import service
from tongka.notify.models import OutboxMessage
from tongka.notify.senders import Outgoing
from tongka.sandbox import smsc


def queue(sessions: sessionmaker[Session], to: str) -> Outgoing:
    """An SMS written to the outbox as the binding flow writes it; what a worker hands the sender."""
    with transaction(sessions) as session:
        row = service.send_sms(
            session, to=to, template="bind_code", language="zh-Hans", code="12345678", minutes=10
        )
        return Outgoing(row.id, "sms", row.to, "", row.body, None, row.language)


def mark_sent(sessions: sessionmaker[Session], message_id: uuid.UUID, provider_id: str) -> None:
    """What the delivery worker records after `send` returned."""
    with transaction(sessions) as session:
        row = session.get(OutboxMessage, message_id)
        assert row is not None
        row.status, row.provider_message_id, row.sent_at = "sent", provider_id, datetime.now(UTC)


def row(sessions: sessionmaker[Session], message_id: uuid.UUID) -> OutboxMessage:
    with sessions() as session:
        found = session.get(OutboxMessage, message_id)
        assert found is not None
        return found


@pytest.mark.parametrize(
    ("to", "status"), [("+8613800138000", "delivered"), ("+85260000000", "undeliverable")]
)
def test_a_receipt_updates_the_outbox_row(
    server: smsc.Smsc, sessions: sessionmaker[Session], to: str, status: str
) -> None:
    server.undeliverable = {"85260000000"}
    message = queue(sessions, to)
    sender = make_sender(server, service.receipt_recorder(sessions))
    try:
        provider_id = sender.send(message)
        # The receipt comes a moment after the answer, maybe before the worker has committed
        # the id: the sender refuses it for now and the SMSC delivers it again.
        mark_sent(sessions, message.id, provider_id)
        eventually(lambda: row(sessions, message.id).status == status)
    finally:
        sender.close()
    done = row(sessions, message.id)
    assert done.provider_message_id == provider_id == server.received[0].message_id
    assert done.delivered_at is not None
    assert server.received[0].text == done.body  # the Chinese text, as the SMSC decoded it
    assert "您的通卡验证码是 12345678" in done.body
    assert server.receipts_delivered == [provider_id]


def test_a_receipt_that_comes_before_the_id_is_committed_is_recorded_when_it_comes_again(
    server: smsc.Smsc, sessions: sessionmaker[Session]
) -> None:
    server.receipt_retry, server.receipt_delay = 0.3, 0.0  # the receipt right behind the answer
    message = queue(sessions, "+8613800138000")
    sender = make_sender(server, service.receipt_recorder(sessions))
    try:
        provider_id = sender.send(message)
        eventually(lambda: server.receipts_refused >= 1)  # no row has the id yet
        assert row(sessions, message.id).status == "pending"
        mark_sent(sessions, message.id, provider_id)
        eventually(lambda: row(sessions, message.id).status == "delivered")
    finally:
        sender.close()
    assert server.receipts_delivered == [provider_id]


def test_a_long_message_is_delivered_when_every_part_is(
    server: smsc.Smsc, sessions: sessionmaker[Session]
) -> None:
    with transaction(sessions) as session:
        # No template is this long: the row written as a template's would be.
        written = OutboxMessage(
            channel="sms",
            to="+8613800138000",
            body="您的流量包已续订，感谢使用。" * 10,
            language="zh-Hans",
        )
        session.add(written)
        session.flush()
        message = Outgoing(written.id, "sms", written.to, "", written.body, None, "zh-Hans")
    sender = make_sender(server, service.receipt_recorder(sessions))
    try:
        provider_id = sender.send(message)
        mark_sent(sessions, message.id, provider_id)
        eventually(lambda: len(server.receipts_delivered) == len(server.received) == 3)
    finally:
        sender.close()
    assert row(sessions, message.id).status == "delivered"
    assert row(sessions, message.id).provider_message_id == server.received[0].message_id


def test_record_receipt_is_idempotent_and_knows_unknown_ids(
    sessions: sessionmaker[Session],
) -> None:
    message = queue(sessions, "+8613800138000")
    mark_sent(sessions, message.id, "abc123")
    first = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    with transaction(sessions) as session:
        assert service.record_receipt(session, "abc123", "delivered", first)
    with transaction(sessions) as session:  # repeated, then contradicted: the first stays
        assert service.record_receipt(session, "abc123", "delivered", first + timedelta(hours=1))
        assert service.record_receipt(
            session, "abc123", "undeliverable", first + timedelta(hours=2)
        )
    done = row(sessions, message.id)
    assert (done.status, done.delivered_at) == ("delivered", first)
    with transaction(sessions) as session:
        assert service.record_receipt(session, "no-such-id", "delivered", first) is False
    with transaction(sessions) as session, pytest.raises(ValueError):
        service.record_receipt(session, "abc123", "sent", first)


def test_an_unknown_receipt_is_answered_and_not_asked_again(server: smsc.Smsc) -> None:
    """A receipt for a message this process did not send (and no row has) is taken, not refused
    for ever: the SMSC stops sending it."""
    asked: list[str] = []

    def nobody_has_it(provider_message_id: str, status: str, at: datetime) -> bool:
        asked.append(provider_message_id)
        return False

    server.receipt_delay = 0.5  # comes after the other sender has gone
    other = make_sender(server)  # another process's sender, forgotten by now
    try:
        sent = other.send(sms("sent by another process"))
    finally:
        other.close()  # unbound before its receipt came
    sender = make_sender(server, nobody_has_it)
    try:
        eventually(lambda: server.receipts_delivered == [sent])
    finally:
        sender.close()
    assert asked == [sent]
