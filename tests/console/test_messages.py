"""The console's failed messages: listed with the recipient masked, one sent again, audited."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tests.console.helpers import post
from tests.web.helpers import ACCEPT_HTML
from tongka.db import transaction
from tongka.notify.models import OutboxMessage
from tongka.staff.models import AuditEntry

PAGE = "/console/messages"


def message(sessions, to: str, status: str, channel: str = "sms") -> uuid.UUID:  # type: ignore[no-untyped-def]
    with transaction(sessions) as s:
        m = OutboxMessage(
            channel=channel,
            to=to,
            template="renewal_link",
            body="Renew at https://example.com",
            language="en",
            status=status,
            attempts=5,
            last_error="451 try later",
        )
        s.add(m)
        s.flush()
        return m.id


def test_failed_messages_are_listed_masked_and_one_is_sent_again(client, sessions, admin) -> None:
    failed = message(sessions, "+85251021014", "failed")
    undelivered = message(sessions, "ada.lovelace@example.com", "undeliverable", "email")
    sent = message(sessions, "+85251029999", "sent")
    r = client.get(PAGE, headers=ACCEPT_HTML)
    assert r.status_code == 200
    assert "+852****1014" in r.text and "a***@example.com" in r.text
    assert "51021014" not in r.text and "lovelace" not in r.text
    assert str(failed) in r.text and str(undelivered) in r.text and str(sent) not in r.text
    only = client.get(PAGE, params={"status": "failed"}, headers=ACCEPT_HTML).text
    assert str(failed) in only and str(undelivered) not in only

    r = post(client, PAGE, f"{PAGE}/{failed}/retry", {})
    assert (r.status_code, r.headers["location"]) == (303, f"{PAGE}?done={failed}")
    with sessions() as s:
        again = s.get(OutboxMessage, failed)
        assert again is not None and (again.status, again.attempts) == ("pending", 0)
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "message.retry")).one()
    assert entry.object_id == str(failed) and entry.username == admin.username
    assert entry.before == {"status": "failed", "attempts": 5}
    assert entry.after == {"status": "pending", "to": "+852****1014"}
    assert str(failed) not in client.get(PAGE, headers=ACCEPT_HTML).text

    r = post(client, PAGE, f"{PAGE}/{failed}/retry", {})  # no longer failed
    assert r.status_code == 409
    r = post(client, PAGE, f"{PAGE}/{sent}/retry", {})
    assert r.status_code == 409
    assert post(client, PAGE, f"{PAGE}/{uuid.uuid4()}/retry", {}).status_code == 404
    with sessions() as s:
        assert (
            len(s.scalars(select(AuditEntry).where(AuditEntry.action == "message.retry")).all())
            == 1
        )
