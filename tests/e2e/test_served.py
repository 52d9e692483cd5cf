"""The served product over real HTTP: a `tongka serve` process, its command line, its SQLite file."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import factories as f
from tests.e2e import steps

pytestmark = pytest.mark.e2e

GB = 1024**3


@pytest.fixture
def client(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=10) as c:
        yield c


def test_the_whole_journey_over_http(client: httpx.Client, tongka, live_server: str) -> None:  # type: ignore[no-untyped-def]
    account, headers = steps.register_and_login(client)
    assert client.get("/api/v1/me", headers=headers).json()["id"] == account["id"]

    # The operator hands out a spare SIM; its number is what the subscriber types in the app.
    number = steps.unbound_numbers(tongka)[0]
    line = f.bind(client, headers, number)
    assert [x["id"] for x in client.get("/api/v1/lines", headers=headers).json()] == [line["id"]]
    assert number not in steps.unbound_numbers(tongka)
    bound_rows = [
        row for row in tongka("lines", "list").stdout.splitlines() if number in row.split()
    ]
    assert len(bound_rows) == 1 and bound_rows[0].split()[-1] == "bound"

    pack = steps.pack(client, headers, line["id"], "hk-5gb-30d")
    assert (pack["zone"], pack["volume_bytes"], pack["validity_days"]) == ("hk", 5 * GB, 30)
    amount = steps.price(pack, "HKD")
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    assert balance["buckets"] == [] and balance["zones"]["hk"]["remaining_bytes"] == 0

    key = uuid.uuid4().hex
    r = steps.order(client, headers, line["id"], pack["id"], key=key)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "awaiting_payment"
    assert (order["amount"], order["currency"], order["pack"]["code"]) == (
        amount,
        "HKD",
        "hk-5gb-30d",
    )
    payment = order["payment"]
    assert (
        payment["status"] == "pending"
        and payment["provider"] == "sandbox"
        and payment["method"] == "alipay"
    )
    assert payment["checkout_url"] == f"{live_server}/sandbox/payments/{payment['id']}"

    # A retry with the same key is the same order; the same key with another body is refused.
    replay = steps.order(client, headers, line["id"], pack["id"], key=key)
    assert replay.status_code == 201 and replay.json()["id"] == order["id"]
    other = steps.pack(client, headers, line["id"], "hk-1gb-7d")
    conflict = steps.order(client, headers, line["id"], other["id"], key=key)
    assert conflict.status_code == 409, conflict.text
    assert [o["id"] for o in client.get("/api/v1/orders", headers=headers).json()] == [order["id"]]

    r = client.post(f"/sandbox/payments/{payment['id']}/complete", json={"outcome": "succeeded"})
    assert r.status_code == 200, r.text
    assert r.json()["callback_status"] == 200

    order = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    assert order["status"] == "fulfilled" and order["payment"]["status"] == "succeeded"
    assert order["paid_at"] and order["fulfilled_at"] and order["bucket_id"]
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    [bucket] = balance["buckets"]
    assert (bucket["id"], bucket["zone"], bucket["total_bytes"], bucket["remaining_bytes"]) == (
        order["bucket_id"],
        "hk",
        5 * GB,
        5 * GB,
    )
    assert balance["zones"]["hk"]["remaining_bytes"] == 5 * GB
    assert balance["zones"]["mainland"]["remaining_bytes"] == 0

    # The provider retries its callback: nothing is credited twice.
    again = client.post(
        f"/sandbox/payments/{payment['id']}/complete", json={"outcome": "succeeded"}
    )
    assert again.status_code == 200 and again.json()["callback_status"] == 200
    assert client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()["buckets"] == [
        bucket
    ]

    verify = tongka("ledger", "verify")
    assert verify.returncode == 0 and "every balance matches" in verify.stdout


def _row_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def test_loading_the_demo_again_changes_nothing(client: httpx.Client, tongka, e2e_env) -> None:  # type: ignore[no-untyped-def]
    demo = f.login(client, "demo", "demo-password")
    demo_id = client.get("/api/v1/me", headers=demo).json()["id"]
    packs = client.get("/api/v1/packs").json()
    lines = tongka("lines", "list").stdout
    demo_orders = client.get("/api/v1/orders", headers=demo).json()
    assert len(packs) == 9 and len(lines.splitlines()) == 12
    assert [o["status"] for o in demo_orders] == ["fulfilled"]
    rows = _row_counts(e2e_env["db"])
    assert rows["accounts"] >= 1 and rows["packs"] == 9

    result = tongka("demo", "load")
    assert "packs: 9, lines_added: 0, demo_account_created: 0" in result.stdout

    assert _row_counts(e2e_env["db"]) == rows
    assert client.get("/api/v1/packs").json() == packs
    assert tongka("lines", "list").stdout == lines
    demo = f.login(client, "demo", "demo-password")
    assert client.get("/api/v1/me", headers=demo).json()["id"] == demo_id
    assert client.get("/api/v1/orders", headers=demo).json() == demo_orders
    tongka("ledger", "verify")
