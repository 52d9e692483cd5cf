"""The payment jobs and reconciliation, against the Alipay simulator (the app's default method here)."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.payment.factories import status
from tongka import clock
from tongka.db import transaction
from tongka.payment import reconcile as rec
from tongka.payment.models import Payment, Refund
from tongka.renewal import jobs
from tongka.sandbox import alipay as alipay_sim
from tongka.sandbox import statement


@pytest.fixture
def subscriber(client, sessions, demo):  # type: ignore[no-untyped-def]
    headers, line, _ = f.new_subscriber(client, sessions)
    return headers, line


def sync(app, sessions, settings, **kw):  # type: ignore[no-untyped-def]
    with transaction(sessions) as s:
        return jobs.sync(
            s,
            app.state.providers,
            older_than=timedelta(0),
            receipt_key=settings.receipt_signing_key.get_secret_value(),
            **kw,
        )


def test_a_payment_whose_notification_was_lost_is_settled_by_asking(
    client, app, sessions, settings, subscriber, monkeypatch
) -> None:
    headers, line = subscriber
    order = f.order(client, headers, line["id"])
    assert order["payment"]["provider"] == "alipay"

    async def lost(*_args, **_kwargs) -> int:  # the notification never arrives
        return 0

    monkeypatch.setattr(alipay_sim, "deliver", lost)
    f.pay(client, order["payment"]["id"])
    assert status(client, headers, order) == ("awaiting_payment", "pending")
    report = sync(app, sessions, settings)
    assert report.settled == 1 and report.unreachable == 0
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    assert len(client.get("/api/v1/receipts", headers=headers).json()) == 1
    assert sync(app, sessions, settings).settled == 0  # nothing left to settle


def test_payments_of_expired_orders_are_closed_at_the_provider(
    client, app, sessions, settings, subscriber, cli, frozen_clock
) -> None:
    headers, line = subscriber
    order = f.order(client, headers, line["id"])
    frozen_clock.advance(hours=1)
    assert cli("orders", "expire").exit_code == 0
    report = sync(app, sessions, settings)
    assert report.closed == 1
    assert status(client, headers, order) == ("expired", "cancelled")
    provider = app.state.providers["alipay"]
    assert provider.query(order["payment"]["id"], None).status == "closed"


def test_money_for_a_cancelled_order_goes_back(client, app, sessions, settings, subscriber) -> None:
    headers, line = subscriber
    order = f.order(client, headers, line["id"])
    assert client.post(f"/api/v1/orders/{order['id']}/cancel", headers=headers).status_code == 200
    f.pay(client, order["payment"]["id"])  # the payer had the cashier open and paid anyway
    with sessions() as s:
        [refund] = s.scalars(select(Refund)).all()
        assert (refund.amount, refund.status, refund.provider_refund_id) == (
            order["amount"],
            "pending",
            None,
        )
    report = sync(app, sessions, settings)
    assert report.refunds_sent == 1
    with sessions() as s:
        refund = s.scalars(select(Refund)).one()
        assert refund.provider_refund_id and refund.status == "succeeded"
    assert sync(app, sessions, settings).refunds_sent == 0


def test_reconciliation_of_the_providers_statement(
    client, sessions, settings, subscriber, operator, cli, tmp_path
) -> None:
    headers, line = subscriber
    paid = [f.order(client, headers, line["id"], code=c) for c in ("hk-1gb-7d", "hk-5gb-30d")]
    for o in paid:
        f.pay(client, o["payment"]["id"])
    f.order(client, headers, line["id"], code="hk-10gb-30d")  # never paid: in neither record
    r = f.refund(client, operator, paid[1]["payment"]["id"], 1000, key="r1", reason="goodwill")
    assert r.status_code == 201 and r.json()["status"] == "succeeded"

    text = io.StringIO()
    statement.write(text, settings.sandbox_store_url, "alipay")
    csv_text = text.getvalue()
    assert csv_text.count("\n") == 1 + 3  # header, two payments, one refund
    good = tmp_path / "statement.csv"
    good.write_text(csv_text)
    result = cli("payments", "reconcile", str(good))
    assert result.exit_code == 0 and "0 difference(s)" in result.output, result.output

    lines = csv_text.splitlines()
    tampered = [
        lines[0],
        lines[1].replace(f",{paid[0]['amount']},", f",{paid[0]['amount'] + 1},"),
        lines[3],
    ]
    foreign = f"alipay,payment,2026000000000001,{uuid.uuid4()},500,HKD,{clock.now().isoformat()}"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*tampered, foreign]) + "\n")
    with sessions() as s, bad.open() as fh:
        found, problems = rec.read(fh)
        differences = problems + rec.reconcile(s, found)
    kinds = sorted(d.kind for d in differences)
    assert kinds == ["amount_differs", "missing_at_tongka", "missing_in_statement"], differences
    result = cli("payments", "reconcile", str(bad))
    assert result.exit_code == 1 and "3 difference(s)" in result.output
    with sessions() as s:
        assert (
            s.scalar(
                select(Payment).where(Payment.id == uuid.UUID(paid[0]["payment"]["id"]))
            ).status
            == "succeeded"
        )
