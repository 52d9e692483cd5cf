"""The console's refunds: find a payment, see what may be refunded and why, confirm, refunded once."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.console.helpers import post, text
from tests.web.helpers import ACCEPT_HTML
from tongka.db import transaction
from tongka.ledger import service as ledger
from tongka.ledger.models import Bucket
from tongka.money import GB
from tongka.payment.models import Refund
from tongka.receipt.models import Receipt
from tongka.staff.models import AuditEntry


@pytest.fixture
def paid(client, sessions, demo):  # type: ignore[no-untyped-def]
    """A subscriber's fulfilled 5 GB HK order (HK$58.00), paid: the order as the API shows it."""
    headers, line, _ = f.new_subscriber(client, sessions)
    order = f.order(client, headers, line["id"], code="hk-5gb-30d")
    f.pay(client, order["payment"]["id"])
    return client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()


def use(sessions, order, amount: int) -> None:  # type: ignore[no-untyped-def]
    """The customer uses `amount` bytes of the order's pack."""
    with transaction(sessions) as s:
        bucket = s.get(Bucket, uuid.UUID(order["bucket_id"]))
        ledger.transfer(
            s,
            bucket.account,
            ledger.system_account(s, "data_used", "bytes"),
            amount,
            reason="usage",
            reference="test",
        )


def key_of(html: str) -> str:
    found = re.search(r'name="key" value="([0-9a-f]{32})"', html)
    assert found
    return found.group(1)


def test_a_payment_is_found_by_its_id_its_orders_id_or_its_receipt(
    client, sessions, admin, paid
) -> None:
    payment_id = paid["payment"]["id"]
    with sessions() as s:
        number = s.scalars(
            select(Receipt.number).where(Receipt.payment_id == uuid.UUID(payment_id))
        ).one()
    for q in (payment_id, paid["id"], number, number.lower()):
        r = client.get(
            "/console/refunds", params={"q": q}, headers=ACCEPT_HTML, follow_redirects=False
        )
        assert (r.status_code, r.headers["location"]) == (303, f"/console/refunds/{payment_id}"), q
    r = client.get("/console/refunds", params={"q": str(uuid.uuid4())}, headers=ACCEPT_HTML)
    assert r.status_code == 404 and "No payment, order or receipt has that number." in r.text
    r = client.get("/console/refunds", params={"q": "ONL-99999999"}, headers=ACCEPT_HTML)
    assert r.status_code == 404


def test_the_unused_data_rule_is_shown_before_confirming(client, sessions, admin, paid) -> None:
    payment_id = paid["payment"]["id"]
    page = f"/console/refunds/{payment_id}"
    r = client.get(page, headers=ACCEPT_HTML)
    assert "5 GB of 5 GB unused: at most HK$58.00 can be refunded." in text(r.text)
    use(sessions, paid, 5 * GB // 2)
    r = client.get(page, headers=ACCEPT_HTML)
    assert "2.5 GB of 5 GB unused: at most HK$29.00 can be refunded." in text(r.text)
    key = key_of(r.text)
    r = post(
        client,
        page,
        f"{page}/check",
        {"amount": "29", "reason": "customer asked", "key": key},
    )
    assert r.status_code == 200, r.text
    shown = text(r.text)
    assert "Refund HK$29.00?" in shown
    assert "2.5 GB of 5 GB unused: at most HK$29.00 can be refunded." in shown
    assert f'name="key" value="{key}"' in r.text
    with sessions() as s:  # nothing is refunded until it is confirmed
        assert s.scalars(select(Refund)).all() == []


def test_a_refund_beyond_the_unused_data_is_refused(client, sessions, admin, paid) -> None:
    payment_id = paid["payment"]["id"]
    page = f"/console/refunds/{payment_id}"
    use(sessions, paid, 5 * GB // 2)
    key = key_of(client.get(page, headers=ACCEPT_HTML).text)
    for action in (f"{page}/check", page):
        r = post(client, page, action, {"amount": "29.01", "reason": "customer asked", "key": key})
        assert r.status_code == 400 and "At most HK$29.00 can be refunded." in r.text
    for amount in ("abc", "0", "1.234", "-5"):
        r = post(client, page, f"{page}/check", {"amount": amount, "reason": "why", "key": key})
        assert r.status_code == 400 and "Enter the amount to the cent" in r.text, amount
    r = post(client, page, f"{page}/check", {"amount": "1", "reason": "x", "key": key})
    assert r.status_code == 400  # a reason of a few words at least
    with sessions() as s:
        assert s.scalars(select(Refund)).all() == []
        assert (
            s.scalars(select(AuditEntry).where(AuditEntry.action == "payment.refund")).all() == []
        )


def test_confirming_twice_refunds_once_and_shows_the_refund(client, sessions, admin, paid) -> None:
    payment_id = paid["payment"]["id"]
    page = f"/console/refunds/{payment_id}"
    key = key_of(client.get(page, headers=ACCEPT_HTML).text)
    form = {"amount": "20.50", "reason": "customer asked", "key": key}
    first = post(client, page, page, form)
    second = post(client, page, page, form)  # a double click, or the form sent again
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    with sessions() as s:
        made = s.scalars(select(Refund)).one()
        assert (made.amount, made.status, made.requested_by) == (
            2050,
            "succeeded",
            f"operator:{admin.username}",
        )
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "payment.refund")).one()
    assert first.headers["location"] == f"{page}?refund={made.id}"
    assert (entry.username, entry.role, entry.object_id) == (admin.username, "admin", payment_id)
    assert entry.before == {"refunded": 0, "refundable": 5800, "unused_bytes": 5 * GB}
    assert entry.after is not None and entry.after["amount"] == 2050
    r = client.get(first.headers["location"], headers=ACCEPT_HTML)
    assert 'data-testid="refund-made"' in r.text and "Succeeded" in r.text
    assert "HK$37.50 can be refunded" in text(r.text)


def test_an_unpaid_payment_offers_no_refund(client, sessions, admin, demo) -> None:
    headers, line, _ = f.new_subscriber(client, sessions)
    order = f.order(client, headers, line["id"], code="hk-1gb-7d")
    page = f"/console/refunds/{order['payment']['id']}"
    r = client.get(page, headers=ACCEPT_HTML)
    assert "Only a payment that succeeded can be refunded." in r.text
    assert "/check" not in r.text
    r = client.get(f"/console/refunds/{uuid.uuid4()}", headers=ACCEPT_HTML)
    assert r.status_code == 404


def test_a_provider_that_does_not_answer_leaves_nothing_behind(
    client, app, sessions, admin, paid
) -> None:
    payment_id = paid["payment"]["id"]
    page = f"/console/refunds/{payment_id}"
    key = key_of(client.get(page, headers=ACCEPT_HTML).text)
    providers = app.state.providers
    app.state.providers = {}  # none of them reachable
    try:
        r = post(client, page, page, {"amount": "10", "reason": "customer asked", "key": key})
    finally:
        app.state.providers = providers
    assert r.status_code == 502 and "The payment provider did not answer." in r.text
    with sessions() as s:
        assert s.scalars(select(Refund)).all() == []
        assert (
            s.scalars(select(AuditEntry).where(AuditEntry.action == "payment.refund")).all() == []
        )
    # The same form, sent again once the provider answers, refunds.
    assert (
        post(
            client, page, page, {"amount": "10", "reason": "customer asked", "key": key}
        ).status_code
        == 303
    )
    with sessions() as s:
        assert s.scalars(select(Refund.amount)).all() == [1000]
