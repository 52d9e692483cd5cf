"""Fixtures of the delivery tests: real SMTP servers (aiosmtpd) on this machine, a throwaway CA for
their certificates, a clock moved by hand, and messages queued as the domains queue them."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import trustme
from sqlalchemy.orm import Session, sessionmaker

from tongka import clock
from tongka.db import transaction
from tongka.notify import service
from tongka.notify.email import SmtpSender, SmtpServer
from tongka.sandbox.mail import MailServer

MAIL_FROM = "tongka <no-reply@mail.tongka.test>"
DOMAIN = "mail.tongka.test"


@dataclass
class FrozenClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(clock, "now", frozen)
    return frozen


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The SMTP servers' side: a certificate for 127.0.0.1 and localhost, issued by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """tongka's side: trusts the test CA only (as TONGKA_SMTP_CA_FILE would make it)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def mail() -> Iterator[MailServer]:
    """A plain SMTP server, no log-in."""
    server = MailServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp(mail: MailServer) -> Iterator[SmtpSender]:
    sender = SmtpSender(SmtpServer.parse(mail.url), MAIL_FROM, timeout=5)
    yield sender
    sender.close()


def queue_email(
    sessions: sessionmaker[Session], to: str = "ada@example.com", language: str = "en"
) -> uuid.UUID:
    """A receipt email as the receipt service queues one, committed."""
    with transaction(sessions) as session:
        message = service.send_email(
            session,
            to=to,
            template="receipt",
            language=language,
            number="ONL-00000042",
            volume=5 * 1024**3,
            lines=["+85251021014"],
            pack="5 GB · 30 days",
            days=30,
            breakdown=["List price: HK$98.00", "Paid: HK$98.00 by Alipay"],
            issued_at="2026-12-06T08:00:00Z",
        )
        return message.id
