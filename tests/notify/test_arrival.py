"""What a subscriber receives, end to end: the API queues, the worker delivers through the senders
the settings describe (`senders_from`, as `tongka worker` and `tongka serve` build them), a real
SMSC and a real SMTP server take the messages, and the SMSC's receipt closes the SMS."""

from __future__ import annotations

import re

from pydantic import SecretStr

from tests import factories as f
from tests.notify.sms_helpers import PASSWORD, SYSTEM_ID, eventually, server  # noqa: F401
from tongka.notify import service, worker
from tongka.notify.senders import senders_from
from tongka.sandbox import smsc
from tongka.sandbox.mail import MailServer


def test_a_bind_code_arrives_by_sms_in_the_subscribers_language_and_binds_the_line(
    client, sessions, settings, server: smsc.Smsc, mail: MailServer
) -> None:  # type: ignore[no-untyped-def]
    f.load_demo(sessions, settings)
    headers = f.subscriber(client, language="zh-Hant")
    number = f.spare_numbers(sessions)[0]
    r = client.post("/api/v1/lines/bind", json={"number": number}, headers=headers)
    assert r.status_code == 202, r.text

    configured = settings.model_copy(
        update={
            "smpp_url": SecretStr(f"smpp://{SYSTEM_ID}:{PASSWORD}@127.0.0.1:{server.port}"),
            "smtp_url": SecretStr(f"smtp://127.0.0.1:{mail.port}"),
            "mail_from": "tongka <no-reply@tongka.test>",
        }
    )
    senders = senders_from(configured, service.receipt_recorder(sessions))
    assert set(senders) == {"email", "sms"}
    try:
        assert worker.deliver_due(sessions, senders, worker_id="w1") >= 1
        # The phone's side: one SMS to the number, in Traditional Chinese, with the code.
        [text] = [text for to, text in server.messages() if "+" + to == number]
        assert "您的通卡驗證碼是" in text
        code = re.search(r"\b(\d{8})\b", text)
        assert code is not None
        # ...and the SMSC's receipt makes it delivered.
        eventually(
            lambda: (
                {m["to"]: m["status"] for m in client.get("/dev/outbox").json()}[number]
                == "delivered"
            )
        )
    finally:
        for sender in senders.values():
            sender.close()
    r = client.post(
        "/api/v1/lines/bind/confirm",
        json={"number": number, "code": code.group(1)},
        headers=headers,
    )
    assert r.status_code == 201, r.text
