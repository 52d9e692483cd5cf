"""The new subscriber's journey through the app API, as the issue describes it."""

from __future__ import annotations

from tests import factories as f
from tongka.money import GB


def test_register_bind_order_pay_and_see_the_bucket(client, sessions, demo) -> None:
    number = f.spare_numbers(sessions)[0]

    account = f.register(client, "newcomer", language="zh-Hans")
    assert account["username"] == "newcomer"
    headers = f.login(client, "newcomer")
    assert client.get("/api/v1/me", headers=headers).json()["id"] == account["id"]

    r = client.post("/api/v1/lines/bind", json={"number": number}, headers=headers)
    assert r.status_code == 202
    sms = client.get("/dev/outbox").json()[0]
    assert sms["channel"] == "sms" and sms["to"] == number and sms["body"].startswith("【tongka】")
    r = client.post(
        "/api/v1/lines/bind/confirm",
        json={"number": number, "code": f.last_code(client, number)},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    line = r.json()
    assert number in line["numbers"]
    assert [x["id"] for x in client.get("/api/v1/lines", headers=headers).json()] == [line["id"]]

    packs = client.get(f"/api/v1/packs?line_id={line['id']}&channel=app", headers=headers).json()
    pack = next(p for p in packs if p["code"] == "both-10gb-30d")
    assert pack["volume_bytes"] == 10 * GB
    hkd = next(p["amount"] for p in pack["prices"] if p["currency"] == "HKD")

    order = f.order(client, headers, line["id"], code="both-10gb-30d", method="alipay")
    assert order["status"] == "awaiting_payment"
    # The demo's offers for a newcomer on a 10 GB pack: 20 % off the first top-up, and 1 GB more.
    assert {o["code"]: o["amount"] for o in order["price"]["offers"]} == {
        "demo-first-topup": 3160,
        "demo-bonus-1gb": 0,
    }
    assert (order["amount"], order["currency"]) == (hkd - 3160, "HKD")
    assert order["payment"]["status"] == "pending"

    result = f.pay(client, order["payment"]["id"])
    assert result["callback_status"] == 200

    order = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    assert order["status"] == "fulfilled" and order["payment"]["status"] == "succeeded"
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    assert balance["zones"]["mainland"]["remaining_bytes"] == 11 * GB
    assert balance["zones"]["hk"]["remaining_bytes"] == 11 * GB
    bucket, bonus = sorted(balance["buckets"], key=lambda b: b["id"] != order["bucket_id"])
    assert (
        bucket["id"] == order["bucket_id"]
        and bucket["zone"] == "both"
        and bucket["total_bytes"] == 10 * GB
    )
    assert bonus["zone"] == "both" and bonus["total_bytes"] == GB  # a bucket of its own
