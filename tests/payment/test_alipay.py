"""Alipay (RSA2): trades through the simulator, signed notifications, the journey, query, close, refunds.

Test notifications are signed with python-alipay-sdk's own `sign_data` and answers checked
with its own verification (tests/payment/alipay_helpers.py), never with tongka's provider
code, so a mistake in either shows.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from tests import factories as f
from tests.payment import alipay_helpers as a
from tests.payment.factories import bucket_count, inbox, status
from tests.sandbox import helpers as sb
from tongka import clock
from tongka.config import Settings
from tongka.money import GB
from tongka.payment import providers as registry
from tongka.payment.providers import alipay
from tongka.payment.providers.base import (
    PaymentRequest,
    ProviderUnavailable,
    RefundRequest,
)


@pytest.fixture
def shopper(client, sessions, demo, monkeypatch):  # type: ignore[no-untyped-def]
    """A subscriber with a bound line, Alipay carrying the `alipay` method: (headers, line)."""
    # After the demo: its own renewal goes through the sandbox provider.
    monkeypatch.setitem(registry.METHOD_PROVIDER, "alipay", "alipay")
    headers, line, _ = f.new_subscriber(client, sessions)
    return headers, line


@pytest.fixture
def pending(client, shopper):  # type: ignore[no-untyped-def]
    """An HKD order awaiting payment by Alipay: (headers, line, order)."""
    headers, line = shopper
    order = f.order(client, headers, line["id"], currency="HKD", method="alipay")
    assert order["payment"]["provider"] == "alipay"
    return headers, line, order


def trade_no(order: dict) -> str:
    return order["payment"]["qr_content"].rsplit("/", 1)[1]


def pay_on_page(client, order: dict, outcome: str = "succeeded") -> httpx.Response:  # type: ignore[type-arg]
    return client.post(
        f"/sandbox/alipay/cashier/{trade_no(order)}/pay",
        data={"outcome": outcome},
        follow_redirects=False,
    )


def request_for(order: dict) -> PaymentRequest:
    payment = order["payment"]
    return PaymentRequest(
        payment_id=payment["id"],
        amount=payment["amount"],
        currency=payment["currency"],
        method="alipay",
        description="tongka hk-5gb-30d",
        notify_url="http://testserver/api/v1/payments/callbacks/alipay",
        return_url=f"http://testserver/orders/{order['id']}",
    )


# Each scenario below is one test: the app, the demo and a subscriber take seconds to set up
# on each database, so related checks share them.


def test_start_precreates_a_trade_signed_as_the_sdk_signs_and_the_web_cashier_works(
    app, client, settings, pending
) -> None:
    headers, _line, order = pending
    payment = order["payment"]
    assert payment["qr_content"].startswith("http://testserver/sandbox/alipay/qr/")
    assert payment["checkout_url"] == payment["qr_content"]  # a phone opens the code as a link
    sim = sb.record_of(settings, "alipay", payment["id"])
    assert (sim.amount, sim.currency, sim.status) == (payment["amount"], "HKD", "pending")
    assert sim.notify_url == "http://testserver/api/v1/payments/callbacks/alipay"
    assert (
        sim.data["product_code"] == "FACE_TO_FACE_PAYMENT"
        and sim.data["trade_status"] == "WAIT_BUYER_PAY"
    )
    page = client.get(payment["qr_content"])
    assert page.status_code == 200 and "HK$58.00" in page.text and "确认付款" in page.text

    # Our request signature is the SDK's: RSA2 (PKCS#1 v1.5) is deterministic, so the SDK
    # signing the same parameters with the same key gives the same bytes.
    url = app.state.providers["alipay"].page_pay_url(request_for(order))
    assert url.startswith("http://testserver/sandbox/alipay/gateway.do?")
    params = dict(parse_qsl(urlsplit(url).query))
    sign = params.pop("sign")
    assert dict(parse_qsl(a.merchant_side(settings).sign_data(dict(params))))["sign"] == sign
    assert (params["method"], params["sign_type"], params["charset"]) == (
        "alipay.trade.page.pay",
        "RSA2",
        "utf-8",
    )
    assert json.loads(params["biz_content"]) == {
        "out_trade_no": uuid.UUID(payment["id"]).hex,
        "total_amount": "58.00",
        "trans_currency": "HKD",
        "settle_currency": "HKD",
        "subject": "tongka hk-5gb-30d",
        "product_code": "FAST_INSTANT_TRADE_PAY",
        "timeout_express": "30m",
    }

    # The simulator takes a request built by the SDK, and the SDK verifies its signed answer.
    sdk = a.merchant_side(settings)
    signed = sdk.client_api(
        "alipay.trade.query",
        {"out_trade_no": uuid.UUID(payment["id"]).hex},
        timestamp=alipay.beijing_now(),
    )
    raw = client.post(f"{a.GATEWAY}?{signed}").text
    answer = sdk._verify_and_return_sync_response(raw, "alipay_trade_query_response")
    assert (answer["code"], answer["trade_status"], answer["total_amount"]) == (
        "10000",
        "WAIT_BUYER_PAY",
        "58.00",
    )

    # The web cashier: the browser brings the signed page.pay; paying sends it back with Alipay's signature.
    # The same out_trade_no and amount as the precreated trade: Alipay continues that trade.
    r = client.get(url, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (
        303,
        f"/sandbox/alipay/cashier/{trade_no(order)}",
    )
    assert "HK$58.00" in client.get(r.headers["location"]).text
    # A page.pay whose amount was changed after signing is refused with Alipay's error page.
    query = dict(parse_qsl(urlsplit(url).query))
    query["biz_content"] = query["biz_content"].replace('"58.00"', '"0.01"')
    forged = client.get(f"{a.GATEWAY}?{urlencode(query)}")
    assert forged.status_code == 400 and "isv.invalid-signature" in forged.text

    back = pay_on_page(client, order)
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    location = urlsplit(back.headers["location"])
    assert location.path == f"/orders/{order['id']}"
    returned = dict(parse_qsl(location.query))
    sign = returned.pop("sign")
    assert a.merchant_side(settings).verify(
        returned, sign
    )  # signed by Alipay, as the SDK checks it
    assert returned["out_trade_no"] == uuid.UUID(order["payment"]["id"]).hex


def test_notifications_signed_by_alipay_pay_once_and_forgeries_change_nothing(
    app, client, sessions, settings, pending
) -> None:
    headers, line, order = pending
    params = a.notification(settings, order["payment"], trade_no(order))
    genuine = a.signed(a.alipay_side(settings), params)
    sign = dict(parse_qsl(genuine.decode()))["sign"]
    forgeries = {
        "amount": a.tamper(genuine, total_amount="0.01", receipt_amount="0.01"),
        "signature": a.tamper(genuine, sign=("A" if sign[0] != "A" else "B") + sign[1:]),
        "notify_time": a.tamper(
            genuine, notify_time="2025-06-09 08:00:00"
        ),  # replayed with a new time
        "wrong_key": a.signed(a.alipay_side(settings, signing_key=a.other_private_key()), params),
        "no_signature": a.drop(genuine, "sign"),
        "sign_type": a.tamper(genuine, sign_type="RSA"),
        "other_app": a.signed(
            a.alipay_side(settings), {**params, "app_id": "2021000000009999"}
        ),  # genuine, not ours
        "not_a_form": json.dumps(params).encode(),
    }
    form = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
    for name, body in forgeries.items():
        r = client.post(a.CALLBACK, content=body, headers=form)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_callback"), name
    assert status(client, headers, order) == ("awaiting_payment", "pending")
    assert (
        inbox(sessions) == [] and bucket_count(sessions) == 1
    )  # the demo subscriber's bucket only

    r = client.post(a.CALLBACK, content=genuine, headers=form)
    assert (r.status_code, r.text) == (200, "success")  # the literal text Alipay waits for
    assert r.headers["content-type"].startswith("text/plain")
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    assert balance["zones"]["hk"]["remaining_bytes"] == 5 * GB

    # Alipay's retries, the simulator's own notification (twice) and a second press: nothing more.
    assert client.post(a.CALLBACK, content=genuine, headers=form).text == "success"
    for _ in range(2):
        assert sb.complete(app, sb.record_of(settings, "alipay", order["payment"]["id"])) == 200
    assert pay_on_page(client, order).status_code == 303
    assert bucket_count(sessions) == 2
    assert [(e.event_id, e.result) for e in inbox(sessions)] == [
        (f"{trade_no(order)}:paid", "applied")
    ]


def test_a_day_old_retry_is_taken_and_the_inbox_key_is_the_signed_trade(
    client, sessions, settings, pending
) -> None:
    """PayPal's flaw, looked for here. Alipay signs every parameter (notify_time, notify_id, app_id, amounts), so
    no part can be swapped; it retries for about 25 hours, so there is no time window: a replay meets the
    inbox key, made of the signed trade_no and outcome (a new notify_id, which Alipay also signs, is no new event)."""
    headers, _line, order = pending
    day_old = (clock.now().astimezone(alipay.BEIJING) - timedelta(hours=24)).strftime(
        alipay.TIME_FORMAT
    )
    params = a.notification(settings, order["payment"], trade_no(order), notify_time=day_old)
    form = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
    r = client.post(a.CALLBACK, content=a.signed(a.alipay_side(settings), params), headers=form)
    assert (r.status_code, r.text) == (200, "success")
    later = {
        **params,
        "notify_id": uuid.uuid4().hex,
        "notify_time": alipay.beijing_now(),
        "trade_status": "TRADE_FINISHED",
    }
    r = client.post(a.CALLBACK, content=a.signed(a.alipay_side(settings), later), headers=form)
    assert (r.status_code, r.text) == (200, "success")
    assert (
        status(client, headers, order) == ("fulfilled", "succeeded") and bucket_count(sessions) == 2
    )
    assert [(e.event_id, e.result) for e in inbox(sessions)] == [
        (f"{trade_no(order)}:paid", "applied")
    ]


def test_the_journey_on_the_alipay_page_then_query_and_refunds(
    app, client, sessions, settings, shopper
) -> None:
    headers, line = shopper
    order = f.order(
        client, headers, line["id"], code="mainland-5gb-30d", currency="CNY", method="alipay"
    )
    provider, payment = app.state.providers["alipay"], order["payment"]
    assert status(client, headers, order) == ("awaiting_payment", "pending")
    assert provider.query(payment["id"], None).status == "pending"

    r = pay_on_page(client, order)
    assert (r.status_code, r.headers["location"]) == (
        303,
        f"/sandbox/alipay/cashier/{trade_no(order)}",
    )
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    assert balance["zones"]["mainland"]["remaining_bytes"] == 5 * GB
    assert "付款成功" in client.get(r.headers["location"]).text
    paid = provider.query(payment["id"], None)
    assert (paid.status, paid.provider_reference, paid.amount, paid.currency) == (
        "succeeded",
        trade_no(order),
        payment["amount"],
        "CNY",
    )

    def refund(refund_id: str, amount: int) -> str:
        return provider.refund(
            RefundRequest(
                refund_id=refund_id,
                payment_id=payment["id"],
                provider_reference=payment["id"],
                amount=amount,
                currency="CNY",
                payment_amount=payment["amount"],
                reason="customer asked",
            )
        ).status

    first, rest = str(uuid.uuid4()), str(uuid.uuid4())
    assert refund(first, 1000) == "succeeded"
    assert refund(first, 1000) == "succeeded"  # the same refund id again: refunded once
    assert sb.record_of(settings, "alipay", payment["id"]).refunded == 1000
    assert refund(str(uuid.uuid4()), payment["amount"]) == "failed"  # more than is left
    assert refund(rest, payment["amount"] - 1000) == "succeeded"
    sim = sb.record_of(settings, "alipay", payment["id"])
    assert (sim.refunded, len(sim.refunds), sim.data["trade_status"]) == (
        payment["amount"],
        2,
        "TRADE_CLOSED",
    )
    assert (
        provider.query(payment["id"], None).status == "succeeded"
    )  # closed by a refund, after being paid

    # Alipay notifies each refund after answering; each event carries that refund's own amount.
    deadline = time.monotonic() + 10
    while len(inbox(sessions)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    refunds = [json.loads(e.payload) for e in inbox(sessions) if ":refund:" in e.event_id]
    assert sorted((r["refund_id"], r["amount"], r["outcome"]) for r in refunds) == sorted(
        [(first, 1000, "refunded"), (rest, payment["amount"] - 1000, "refunded")]
    )


def test_close_cancel_and_the_gateways_refusals(
    app, client, sessions, settings, pending, monkeypatch
) -> None:
    headers, line, order = pending
    provider, payment = app.state.providers["alipay"], order["payment"]
    provider.close(payment["id"], None)
    closed = provider.query(payment["id"], None)
    assert (closed.status, closed.amount, closed.currency) == ("closed", payment["amount"], "HKD")
    provider.close(payment["id"], None)  # closing twice is no error
    assert pay_on_page(client, order).status_code == 409  # the payer can no longer pay it
    assert (
        status(client, headers, order) == ("awaiting_payment", "pending") and inbox(sessions) == []
    )
    nobody = str(uuid.uuid4())
    assert provider.query(nobody, None).status == "pending"  # no trade yet: nothing paid
    provider.close(nobody, None)

    # The payer cancels on the page: the trade closes unpaid, the order stays open.
    other = f.order(client, headers, line["id"], currency="HKD", method="alipay")
    assert pay_on_page(client, other, outcome="failed").status_code == 303
    assert status(client, headers, other) == ("awaiting_payment", "failed")
    assert (
        sb.record_of(settings, "alipay", other["payment"]["id"]).data["trade_status"]
        == "TRADE_CLOSED"
    )
    assert bucket_count(sessions) == 1

    # Requests the gateway cannot trust get its unsigned 40002 answer.
    biz = {"out_trade_no": uuid.UUID(payment["id"]).hex}
    an_hour_ago = (
        (clock.now() - timedelta(hours=1)).astimezone(alipay.BEIJING).strftime(alipay.TIME_FORMAT)
    )
    cases = {
        "isv.invalid-signature": a.merchant_side(
            settings, app_key=a.other_private_key()
        ).client_api("alipay.trade.query", biz, timestamp=alipay.beijing_now()),
        "isv.invalid-timestamp": a.merchant_side(settings).client_api(
            "alipay.trade.query", biz, timestamp=an_hour_ago
        ),
        "isv.invalid-app-id": a.merchant_side(settings).client_api(
            "alipay.trade.query", biz, timestamp=alipay.beijing_now(), app_id="2021000000009999"
        ),
    }
    for sub_code, signed in cases.items():
        answer = client.post(f"{a.GATEWAY}?{signed}").json()
        assert "sign" not in answer
        assert (
            answer["alipay_trade_query_response"]["code"],
            answer["alipay_trade_query_response"]["sub_code"],
        ) == ("40002", sub_code)
    # Our provider with the wrong app key is refused, and says so as a 502, not a crash.
    monkeypatch.setattr(settings, "alipay_app_private_key", SecretStr(a.other_private_key()))
    with pytest.raises(ProviderUnavailable):
        alipay.build(settings, client).query(payment["id"], None)  # type: ignore[union-attr]


def _offline(sandbox_keys: dict[str, str], handler) -> alipay.AlipayProvider:  # type: ignore[no-untyped-def]
    return alipay.AlipayProvider(
        sandbox_keys["alipay_app_id"],
        sandbox_keys["alipay_app_private_key"],
        sandbox_keys["alipay_public_key"],
        "https://openapi.example/gateway.do",
        httpx.Client(transport=httpx.MockTransport(handler)),
    )


def _answer(key_pem: str, content: str, method: str = "alipay_trade_query_response") -> str:
    return f'{{"{method}":{content},"sign":"{alipay.rsa2_sign(alipay.private_key(key_pem), content)}"}}'


@pytest.mark.parametrize(
    "trouble", ["unreachable", "http_500", "signed_by_another", "tampered", "unsigned", "not_json"]
)
def test_answers_alipay_did_not_sign_are_refused(sandbox_keys, trouble) -> None:
    content = '{"code":"10000","msg":"Success","trade_no":"2025","out_trade_no":"x","trade_status":"TRADE_SUCCESS","total_amount":"58.00"}'
    genuine = sandbox_keys["sandbox_alipay_private_key"]

    def handler(request: httpx.Request) -> httpx.Response:
        if trouble == "unreachable":
            raise httpx.ConnectError("no route to host")
        text = {
            "http_500": "oops",
            "signed_by_another": _answer(a.other_private_key(), content),
            "tampered": _answer(genuine, content).replace("58.00", "0.01"),
            "unsigned": f'{{"alipay_trade_query_response":{content}}}',
            "not_json": "<html>busy</html>",
        }[trouble]
        return httpx.Response(500 if trouble == "http_500" else 200, text=text)

    with pytest.raises(ProviderUnavailable):
        _offline(sandbox_keys, handler).query(str(uuid.uuid4()), None)
    # The same answer, genuinely signed, is taken.
    ok = _offline(sandbox_keys, lambda r: httpx.Response(200, text=_answer(genuine, content)))
    assert ok.query(str(uuid.uuid4()), None).status == "succeeded"


# --- amounts and settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "wire"),
    [(0, "0.00"), (1, "0.01"), (5800, "58.00"), (123456789012345, "1234567890123.45")],
)
def test_amounts_go_to_yuan_strings_and_back_exactly(minor: int, wire: str) -> None:
    assert alipay.to_yuan(minor, "CNY") == wire
    assert alipay.from_yuan(wire, "HKD") == minor


@pytest.mark.parametrize("text", ["58.001", "1e3", "-1.00", "NaN", " 1.00", "1,00", ""])
def test_amounts_that_are_not_plain_yuan_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        alipay.from_yuan(text, "CNY")
    assert alipay.from_yuan("58.5", "CNY") == 5850


def test_build_needs_the_app_keys_and_a_gateway(sandbox_keys) -> None:
    base = {
        **sandbox_keys,
        "env": "dev",
        "secret_key": secrets.token_urlsafe(16),
        "sandbox_payment_secret": "x",
        "_env_file": None,
    }
    http = httpx.Client()
    assert isinstance(alipay.build(Settings(**base), http), alipay.AlipayProvider)
    assert alipay.build(Settings(**{**base, "alipay_public_key": None}), http) is None
    assert (
        alipay.build(Settings(**{**base, "env": "production"}), http) is None
    )  # no sandbox, no live gateway
    live = alipay.build(
        Settings(
            **{
                **base,
                "env": "production",
                "alipay_gateway": "https://openapi.alipay.com/gateway.do",
            }
        ),
        http,
    )
    assert live is not None
    paying = request_for(
        {"id": "1", "payment": {"id": str(uuid.uuid4()), "amount": 100, "currency": "HKD"}}
    )
    assert live.page_pay_url(paying).startswith("https://openapi.alipay.com/gateway.do?")
