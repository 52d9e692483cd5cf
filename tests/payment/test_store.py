"""Payments at a store counter: staff sell a pack for a customer's line and record the money taken."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from tests import factories as f


@pytest.fixture
def customer(client, sessions, demo):  # type: ignore[no-untyped-def]
    headers, line, _ = f.new_subscriber(client, sessions, language="zh-Hant")
    return headers, line


def sell(client, operator, line_id, method="cash", code="hk-5gb-30d", currency="HKD", key=None):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/admin/orders",
        json={
            "line_id": line_id,
            "pack_id": f.pack_id(client, code),
            "currency": currency,
            "payment_method": method,
        },
        headers={**operator, "Idempotency-Key": key or uuid.uuid4().hex},
    )


def test_a_cash_sale_is_paid_when_staff_record_it(client, operator, customer) -> None:
    headers, line = customer
    r = sell(client, operator, line["id"])
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["channel"], order["status"], order["amount"]) == (
        "store",
        "awaiting_payment",
        5800,
    )
    assert order["payment"]["provider"] == "store" and order["payment"]["status"] == "pending"
    assert order["payment"]["checkout_url"] is None

    record = client.post(
        f"/api/v1/admin/payments/{order['payment']['id']}/record",
        json={"store": "mk01"},
        headers=operator,
    )
    assert record.status_code == 200, record.text
    assert (record.json()["order_status"], record.json()["receipt_number"]) == (
        "fulfilled",
        "MK01-00000001",
    )
    again = client.post(
        f"/api/v1/admin/payments/{order['payment']['id']}/record",
        json={"store": "mk01"},
        headers=operator,
    )
    assert again.json()["receipt_number"] == "MK01-00000001"

    # The customer sees it in the app: the order, the data, the receipt naming the store and staff.
    mine = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    assert mine["status"] == "fulfilled"
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    assert balance["zones"]["hk"]["remaining_bytes"] == order["pack"]["volume_bytes"]
    receipt = client.get("/api/v1/receipts/MK01-00000001", headers=headers).json()
    assert receipt["content"]["store"] == "mk01" and receipt["content"]["staff"]
    assert receipt["content"]["payment"]["method"] == "cash"


def test_card_terminal_slip_and_store_qr(client, operator, customer) -> None:
    _headers, line = customer
    card = sell(client, operator, line["id"], method="card_terminal").json()
    r = client.post(
        f"/api/v1/admin/payments/{card['payment']['id']}/record",
        json={"store": "lw01", "reference": "SLIP-004211"},
        headers=operator,
    )
    assert (
        r.json()["payment"]["provider_reference"] == "SLIP-004211"
        and r.json()["receipt_number"] == "LW01-00000001"
    )
    qr = sell(
        client, operator, line["id"], method="store_qr", currency="CNY", code="mainland-1gb-7d"
    ).json()
    assert (qr["amount"], qr["currency"]) == (1500, "CNY")
    r = client.post(
        f"/api/v1/admin/payments/{qr['payment']['id']}/record",
        json={"store": "lw01"},
        headers=operator,
    )
    assert r.json()["receipt_number"] == "LW01-00000002"


def test_a_store_refund_is_paid_out_at_the_counter(client, operator, customer) -> None:
    headers, line = customer
    order = sell(client, operator, line["id"]).json()
    client.post(
        f"/api/v1/admin/payments/{order['payment']['id']}/record",
        json={"store": "mk01"},
        headers=operator,
    )
    r = f.refund(client, operator, order["payment"]["id"], 5800, key="r", reason="changed mind")
    assert r.status_code == 201 and r.json()["status"] == "succeeded"
    assert (
        client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()["zones"]["hk"][
            "remaining_bytes"
        ]
        == 0
    )


def test_who_may_sell_and_record(client, sessions, operator, customer) -> None:
    headers, line = customer
    assert (
        sell(client, headers, line["id"]).status_code == 401
    )  # a subscriber's token is not staff's
    online = f.order(client, headers, line["id"])
    r = client.post(
        f"/api/v1/admin/payments/{online['payment']['id']}/record",
        json={"store": "mk01"},
        headers=operator,
    )
    assert (r.status_code, r.json()["code"]) == (
        404,
        "payment_not_found",
    )  # only store payments are recorded
    spare = f.spare_numbers(sessions)[0]
    with sessions() as s:
        from tongka.account.models import Line

        unbound = (
            s.scalars(select(Line).where(Line.hk_number == spare)).first()
            or s.scalars(select(Line).where(Line.cn_number == spare)).one()
        )
    r = sell(client, operator, str(unbound.id))
    assert (r.status_code, r.json()["code"]) == (404, "line_not_found")
    r = sell(client, operator, line["id"], method="wechat_pay")
    assert r.status_code == 422
    r = client.post(
        f"/api/v1/admin/payments/{uuid.uuid4()}/record",
        json={"store": "Bad Code"},
        headers=operator,
    )
    assert r.status_code == 422


def test_no_callback_can_settle_a_store_payment(client, operator, customer) -> None:
    """Only staff settle a store payment: the provider has no signature to forge, so every callback is refused."""
    headers, line = customer
    order = sell(client, operator, line["id"]).json()
    payment = order["payment"]
    body = json.dumps(
        {
            "id": "evt_1",
            "type": "payment.succeeded",
            "data": {
                "reference": "ST-00000000",
                "merchant_reference": payment["id"],
                "amount": payment["amount"],
                "currency": payment["currency"],
            },
        }
    ).encode()
    r = client.post(
        "/api/v1/payments/callbacks/store",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_callback")
    assert (
        client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()["status"]
        == "awaiting_payment"
    )
