"""What the SMS tests share: a real SMSC on a free port, a sender bound to it, and waiting for a condition."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from tongka.notify.senders import Outgoing
from tongka.notify.sms import OnReceipt, SmppSender
from tongka.sandbox import smsc

SYSTEM_ID, PASSWORD = "tongka", "s3cret!"
NUMBER = "+8613800138000"


@pytest.fixture
def server() -> Iterator[smsc.Smsc]:
    server = smsc.start("127.0.0.1", 0, SYSTEM_ID, PASSWORD, receipt_delay=0.02, receipt_retry=0.1)
    yield server
    server.stop()


def make_sender(
    server: smsc.Smsc,
    on_receipt: OnReceipt | None = None,
    *,
    password: str = PASSWORD,
    system_id: str = SYSTEM_ID,
    enquire_link_seconds: float = 30.0,
    response_timeout: float = 2.0,
) -> SmppSender:
    return SmppSender(
        host="127.0.0.1",
        port=server.port,
        system_id=system_id,
        password=password,
        source="tongka",
        on_receipt=on_receipt or (lambda _id, _status, _at: True),
        enquire_link_seconds=enquire_link_seconds,
        response_timeout=response_timeout,
        rebind_max_seconds=1.0,
    )


class Receipts:
    """An on_receipt that keeps what it was given."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, datetime]] = []

    def __call__(self, provider_message_id: str, status: str, at: datetime) -> bool:
        self.got.append((provider_message_id, status, at))
        return True


def sms(text: str, to: str = NUMBER, message_id: uuid.UUID | None = None) -> Outgoing:
    return Outgoing(
        id=message_id or uuid.uuid4(),
        channel="sms",
        to=to,
        subject="",
        text=text,
        html=None,
        language="zh-Hans",
    )


def eventually(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """Wait until `condition()` is true (receipts come on the sender's thread, a moment later)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds} s")
        time.sleep(0.02)
