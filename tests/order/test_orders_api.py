"""Orders through the app API: price from the catalog, idempotency, refusals, ownership, expiry."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from tests import factories as f
from tongka import clock
from tongka.catalog import service as catalog
from tongka.catalog.models import Pack
from tongka.db import transaction
from tongka.money import GB


@pytest.fixture
def owner(client, sessions, demo):  # type: ignore[no-untyped-def]
    """A subscriber with one bound line, on the demo catalog."""
    headers, line, _ = f.new_subscriber(client, sessions)
    return headers, line


def test_the_price_is_the_catalogs_whatever_the_client_sends(client, owner) -> None:
    headers, line = owner
    pack = next(p for p in client.get("/api/v1/packs").json() if p["code"] == "mainland-5gb-30d")
    r = client.post(
        "/api/v1/orders",
        json={
            "line_id": line["id"],
            "pack_id": pack["id"],
            "currency": "CNY",
            "payment_method": "wechat_pay",
            "amount": 1,
            "price": 1,
        },
        headers={**headers, "Idempotency-Key": "k1"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (
        body["amount"]
        == next(p["amount"] for p in pack["prices"] if p["currency"] == "CNY")
        == 4800
    )
    assert body["currency"] == "CNY" and body["status"] == "awaiting_payment"
    assert body["payment"]["amount"] == 4800 and body["payment"]["status"] == "pending"
    assert body["payment"]["provider"] == "wechat" and body["payment"]["checkout_url"]
    assert body["pack"]["volume_bytes"] == 5 * GB


def test_same_key_same_body_returns_the_same_order(client, owner) -> None:
    headers, line = owner
    first = f.order(client, headers, line["id"], key="same-key")
    again = f.order(client, headers, line["id"], key="same-key")
    assert again == first
    assert [o["id"] for o in client.get("/api/v1/orders", headers=headers).json()] == [first["id"]]


def test_same_key_other_body_is_409(client, owner) -> None:
    headers, line = owner
    f.order(client, headers, line["id"], key="k")
    r = client.post(
        "/api/v1/orders",
        json={
            "line_id": line["id"],
            "pack_id": f.pack_id(client, "hk-1gb-7d"),
            "currency": "HKD",
            "payment_method": "alipay",
        },
        headers={**headers, "Idempotency-Key": "k"},
    )
    assert r.status_code == 409 and r.json()["code"] == "idempotency_key_reused"
    assert len(client.get("/api/v1/orders", headers=headers).json()) == 1


def test_keys_belong_to_one_account(client, sessions, owner) -> None:
    headers, line = owner
    other, other_line, _ = f.new_subscriber(client, sessions)
    mine = f.order(client, headers, line["id"], key="shared")
    theirs = f.order(client, other, other_line["id"], key="shared")
    assert mine["id"] != theirs["id"]


def test_missing_idempotency_key_is_refused(client, owner) -> None:
    headers, line = owner
    r = client.post(
        "/api/v1/orders",
        json={
            "line_id": line["id"],
            "pack_id": f.pack_id(client, "hk-1gb-7d"),
            "currency": "HKD",
            "payment_method": "alipay",
        },
        headers=headers,
    )
    assert r.status_code == 400 and r.json()["code"] == "idempotency_key_missing"
    assert client.get("/api/v1/orders", headers=headers).json() == []


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"currency": "USD"}, 422, "validation_error"),
        ({"pack_id": "not-a-uuid"}, 422, "validation_error"),
        ({"pack_id": str(uuid.uuid4())}, 404, "pack_not_found"),
        ({"line_id": str(uuid.uuid4())}, 404, "line_not_found"),
        ({"payment_method": "cash"}, 422, "payment_method_unavailable"),
        ({"payment_method": "bitcoin"}, 422, "payment_method_unavailable"),
    ],
)
def test_bad_orders_are_refused_and_nothing_is_kept(client, owner, change, status, code) -> None:
    headers, line = owner
    body = {
        "line_id": line["id"],
        "pack_id": f.pack_id(client, "hk-1gb-7d"),
        "currency": "HKD",
        "payment_method": "alipay",
    }
    r = client.post(
        "/api/v1/orders",
        json={**body, **change},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.headers["content-type"] == "application/problem+json"
    if code == "validation_error":
        field = next(iter(change))
        assert field in r.json()["detail"] and r.json()["errors"][0]["field"] == field
    assert client.get("/api/v1/orders", headers=headers).json() == []


def test_pack_without_a_price_in_the_currency(client, sessions, owner) -> None:
    headers, line = owner
    with transaction(sessions) as s:
        pack = catalog.upsert_pack(
            s,
            code="hk-only",
            names={"en": "HK only"},
            zone="hk",
            volume_bytes=GB,
            validity_days=7,
            prices={"HKD": 1000},
            channels=["app"],
        )
        pack_id = str(pack.id)
    r = client.post(
        "/api/v1/orders",
        json={
            "line_id": line["id"],
            "pack_id": pack_id,
            "currency": "CNY",
            "payment_method": "alipay",
        },
        headers={**headers, "Idempotency-Key": "x"},
    )
    assert (r.status_code, r.json()["code"]) == (422, "currency_not_offered")
    assert "CNY" in r.json()["detail"]


def test_packs_off_sale_or_off_channel_cannot_be_ordered(client, sessions, owner) -> None:
    headers, line = owner
    with transaction(sessions) as s:
        ended = s.query(Pack).filter_by(code="hk-1gb-7d").one()
        ended.sale_ends_at = clock.now() - timedelta(minutes=1)
        store_only = s.query(Pack).filter_by(code="hk-5gb-30d").one()
        store_only.channels = ["store"]
    codes = [p["code"] for p in client.get("/api/v1/packs?channel=app").json()]
    assert "hk-1gb-7d" not in codes and "hk-5gb-30d" not in codes
    assert "hk-5gb-30d" in [p["code"] for p in client.get("/api/v1/packs?channel=store").json()]
    for code in ("hk-1gb-7d", "hk-5gb-30d"):
        r = client.post(
            "/api/v1/orders",
            json={
                "line_id": line["id"],
                "pack_id": f.pack_id_any(sessions, code),
                "currency": "HKD",
                "payment_method": "alipay",
            },
            headers={**headers, "Idempotency-Key": code},
        )
        assert (r.status_code, r.json()["code"]) == (409, "pack_not_on_sale")


def test_orders_are_listed_newest_first_and_only_to_their_owner(
    client, sessions, owner, frozen_clock
) -> None:
    headers, line = owner
    first = f.order(client, headers, line["id"])
    frozen_clock.advance(5)
    second = f.order(client, headers, line["id"], code="mainland-1gb-7d")
    assert [o["id"] for o in client.get("/api/v1/orders", headers=headers).json()] == [
        second["id"],
        first["id"],
    ]

    stranger = f.subscriber(client)
    assert client.get("/api/v1/orders", headers=stranger).json() == []
    theirs = client.get(f"/api/v1/orders/{first['id']}", headers=stranger)
    nobodys = client.get(f"/api/v1/orders/{uuid.uuid4()}", headers=stranger)
    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.json() == nobodys.json()
    r = client.post(
        "/api/v1/orders",
        json={
            "line_id": line["id"],
            "pack_id": f.pack_id(client, "hk-1gb-7d"),
            "currency": "HKD",
            "payment_method": "alipay",
        },
        headers={**stranger, "Idempotency-Key": "steal"},
    )
    assert (r.status_code, r.json()["code"]) == (404, "line_not_found")


def test_two_renewals_make_two_buckets(client, owner) -> None:
    headers, line = owner
    for code in ("hk-1gb-7d", "mainland-5gb-30d"):
        f.pay(client, f.order(client, headers, line["id"], code=code)["payment"]["id"])
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    assert balance["zones"]["hk"]["remaining_bytes"] == GB
    assert balance["zones"]["mainland"]["remaining_bytes"] == 5 * GB
    assert sorted(b["zone"] for b in balance["buckets"]) == ["hk", "mainland"]


def test_unpaid_orders_expire_and_a_late_payment_still_delivers(
    client, owner, cli, frozen_clock
) -> None:
    headers, line = owner
    order = f.order(client, headers, line["id"])
    frozen_clock.advance(hours=1)
    result = cli("orders", "expire")
    assert result.exit_code == 0 and "expired 1 order" in result.output
    assert (
        client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()["status"] == "expired"
    )
    # The customer paid after all: the money arrived, so the pack is delivered.
    f.pay(client, order["payment"]["id"])
    assert (
        client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()["status"] == "fulfilled"
    )


def test_an_unpaid_order_can_be_cancelled_and_a_late_payment_is_held(
    client, sessions, owner
) -> None:
    from sqlalchemy import select

    from tongka.payment.models import PaymentCallback

    headers, line = owner
    order = f.order(client, headers, line["id"])
    r = client.post(f"/api/v1/orders/{order['id']}/cancel", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (
        client.post(f"/api/v1/orders/{order['id']}/cancel", headers=headers).json()["status"]
        == "cancelled"
    )
    stranger = f.subscriber(client)
    assert client.post(f"/api/v1/orders/{order['id']}/cancel", headers=stranger).status_code == 404

    f.pay(client, order["payment"]["id"])
    after = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    assert after["status"] == "cancelled" and after["bucket_id"] is None
    assert after["payment"]["status"] == "succeeded"  # the money arrived: on record, to be refunded
    with sessions() as s:
        assert s.scalars(select(PaymentCallback.result)).all() == ["paid_closed_order"]


def test_a_fulfilled_order_cannot_be_cancelled(client, owner) -> None:
    headers, line = owner
    order = f.order(client, headers, line["id"])
    f.pay(client, order["payment"]["id"])
    r = client.post(f"/api/v1/orders/{order['id']}/cancel", headers=headers)
    assert (r.status_code, r.json()["code"]) == (409, "order_state_conflict")


def test_methods_depend_on_channel_currency_and_region(
    client, sessions, owner, monkeypatch
) -> None:
    from tongka.payment import providers

    headers, line = owner

    def attempt(currency: str, method: str, who=headers, line_id=line["id"]):  # type: ignore[no-untyped-def]
        return client.post(
            "/api/v1/orders",
            json={
                "line_id": line_id,
                "pack_id": f.pack_id(client, "hk-1gb-7d"),
                "currency": currency,
                "payment_method": method,
            },
            headers={**who, "Idempotency-Key": uuid.uuid4().hex},
        )

    monkeypatch.setitem(providers.CHANNEL_METHODS, "app", ("wechat_pay", "alipay", "paypal"))
    assert attempt("HKD", "paypal").status_code == 201
    assert (
        attempt("CNY", "paypal").json()["code"] == "payment_method_unavailable"
    )  # PayPal settles no CNY
    monkeypatch.setitem(providers.METHOD_REGIONS, "alipay", ("mainland",))
    assert attempt("CNY", "alipay").json()["code"] == "payment_method_unavailable"
    r = client.post(
        "/api/v1/accounts",
        json={
            "username": "mainlander",
            "password": f.PASSWORD,
            "email": "m@example.com",
            "language": "zh-Hans",
            "region": "mainland",
        },
    )
    assert r.status_code == 201 and r.json()["region"] == "mainland"
    mainlander = f.login(client, "mainlander")
    their_line = f.bind(client, mainlander, f.spare_numbers(sessions)[0])
    assert attempt("CNY", "alipay", mainlander, their_line["id"]).status_code == 201
