"""The app's order runs in three steps so that no transaction is open while a provider is asked
(renewal/api.py): the order and its payment's row; the provider's call; its answer recorded.
A provider that does not answer leaves the order awaiting payment, and a retry with the same
Idempotency-Key carries that same order on."""

from __future__ import annotations

import sqlite3
import threading
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from tests import factories as f
from tongka.db import transaction
from tongka.order.models import Order
from tongka.payment import providers as registry
from tongka.payment.providers import alipay


@pytest.fixture
def shopper(client, sessions, settings, monkeypatch):  # type: ignore[no-untyped-def]
    """A subscriber with a bound line, Alipay (its sandbox gateway) carrying `alipay`."""
    f.load_demo(sessions, settings)
    monkeypatch.setitem(registry.METHOD_PROVIDER, "alipay", "alipay")
    headers = f.subscriber(client)
    return headers, f.bind(client, headers, f.spare_numbers(sessions)[0])


def _order(client, headers, line, key):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/orders",
        json={
            "line_id": line["id"],
            "pack_id": f.pack_id(client, "hk-5gb-30d"),
            "currency": "HKD",
            "payment_method": "alipay",
        },
        headers={**headers, "Idempotency-Key": key},
    )


def _orders_of(sessions, line) -> int:  # type: ignore[no-untyped-def]
    with transaction(sessions, read_only=True) as session:
        return session.scalar(
            select(func.count()).select_from(Order).where(Order.line_id == uuid.UUID(line["id"]))
        )


def test_a_provider_that_does_not_answer_leaves_the_order_and_its_key_carries_it_on(
    client, app, settings, sessions, shopper, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    headers, line = shopper
    working = app.state.providers["alipay"]
    # Alipay's gateway unreachable: nothing listens on the discard port.
    down = alipay.build(
        settings.model_copy(update={"alipay_gateway": "http://127.0.0.1:9/gateway.do"}),
        httpx.Client(timeout=2),
    )
    monkeypatch.setitem(app.state.providers, "alipay", down)
    key = str(uuid.uuid4())
    r = _order(client, headers, line, key)
    assert (r.status_code, r.json()["code"]) == (502, "provider_unavailable"), r.text
    assert _orders_of(sessions, line) == 1  # kept, awaiting payment, with its payment's row

    monkeypatch.setitem(app.state.providers, "alipay", working)
    first = _order(client, headers, line, key)
    assert first.status_code == 201, first.text
    order = first.json()
    assert order["status"] == "awaiting_payment"
    assert order["payment"]["checkout_url"]
    assert _orders_of(sessions, line) == 1  # the same order, carried on
    again = _order(client, headers, line, key)
    assert (again.status_code, again.json()) == (201, order)  # a replay of the stored answer
    # ...and the payment it opened is one Alipay knows: paying it fulfils the order.
    trade_no = order["payment"]["qr_content"].rsplit("/", 1)[1]
    pay = client.post(f"/sandbox/alipay/cashier/{trade_no}/pay", data={"outcome": "succeeded"})
    assert pay.status_code < 400, pay.text
    assert client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()["status"] == (
        "fulfilled"
    )


def test_no_transaction_is_open_while_the_provider_is_asked(
    client, app, settings, sessions, shopper, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """On SQLite the sharpest form: another process writes while the order waits for Alipay."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's one writer shows a held transaction at once")
    headers, line = shopper
    working = app.state.providers["alipay"]
    ask_alipay = working.start
    wrote: list[bool] = []

    def start(request):  # type: ignore[no-untyped-def]
        # Alipay is being asked: a writer elsewhere must get SQLite's write lock at once.
        other = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), timeout=0.2)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE accounts SET language = language")
            other.execute("ROLLBACK")
            wrote.append(True)
        except sqlite3.OperationalError:
            wrote.append(False)
        finally:
            other.close()
        return ask_alipay(request)

    monkeypatch.setattr(working, "start", start)
    r = _order(client, headers, line, str(uuid.uuid4()))
    assert r.status_code == 201, r.text
    assert wrote == [True]


def test_two_requests_with_one_key_at_once_make_one_order(client, sessions, shopper) -> None:  # type: ignore[no-untyped-def]
    headers, line = shopper
    key = str(uuid.uuid4())
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: answers.append(_order(client, headers, line, key)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [201, 201], [a.text for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert _orders_of(sessions, line) == 1
