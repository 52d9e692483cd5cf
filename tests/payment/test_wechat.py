"""WeChat Pay API v3: orders through the simulator, signed and encrypted callbacks, the journey, refunds.

Test callbacks are signed with the wechatpayv3 SDK's own `rsa_sign` and encrypted with
`cryptography`'s AESGCM following WeChat's published algorithm (tests/payment/wechat_helpers.py),
never with tongka's provider code, so a mistake in either shows.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from tests import factories as f
from tests.payment import wechat_helpers as w
from tests.payment.factories import bucket_count, inbox, status
from tests.sandbox import helpers as sb
from tongka.config import Settings
from tongka.payment import providers as registry
from tongka.payment.providers import wechat
from tongka.payment.providers.base import (
    PaymentRequest,
    ProviderUnavailable,
    RefundRequest,
)


@pytest.fixture
def pending(client, sessions, demo, monkeypatch):  # type: ignore[no-untyped-def]
    """A subscriber's CNY order awaiting payment by WeChat Pay: (headers, order)."""
    # After the demo: its own renewal goes through the sandbox provider.
    monkeypatch.setitem(registry.METHOD_PROVIDER, "wechat_pay", "wechat")
    headers, line, _ = f.new_subscriber(client, sessions)
    order = f.order(client, headers, line["id"], currency="CNY", method="wechat_pay")
    assert order["payment"]["provider"] == "wechat"
    return headers, order


def pay_on_page(client, order: dict, outcome: str = "succeeded") -> httpx.Response:  # type: ignore[type-arg]
    url = urlsplit(order["payment"]["checkout_url"])
    prepay_id = parse_qs(url.query)["pr"][0]
    return client.post(
        "/sandbox/wechat/wxpay/pay",
        data={"prepay_id": prepay_id, "outcome": outcome, "back": f"{url.path}?{url.query}"},
        follow_redirects=False,
    )


def place(provider, amount: int = 1999) -> PaymentRequest:  # type: ignore[no-untyped-def]
    """A Native order placed straight with the provider (no tongka order needed for the API's own tests)."""
    request = PaymentRequest(
        str(uuid.uuid4()),
        amount,
        "CNY",
        "wechat_pay",
        "tongka cn-1gb",
        "http://testserver/api/v1/payments/callbacks/wechat",
        "http://testserver/orders/1",
    )
    provider.start(request)
    return request


def test_the_journey_through_the_app_with_wechat_pay(
    client, app, sessions, settings, pending
) -> None:
    headers, order = pending
    payment = order["payment"]
    # start(): the code to scan, and WeChat's record of the order (by out_trade_no, in fen).
    assert payment["qr_content"].startswith("weixin://wxpay/bizpayurl?pr=")
    sim = sb.record_of(settings, "wechat", payment["id"])
    assert (sim.amount, sim.currency, sim.status) == (order["amount"], "CNY", "pending")
    assert sim.data["trade_type"] == "NATIVE" and sim.data["appid"] == settings.wechat_appid
    assert sim.notify_url == "http://testserver/api/v1/payments/callbacks/wechat"
    page = client.get(payment["checkout_url"])
    assert page.status_code == 200
    assert (
        "立即支付" in page.text
        and f"{order['amount'] // 100}.{order['amount'] % 100:02d}" in page.text
    )
    # The domestic API takes CNY only: an HKD order cannot use it.
    r = client.post(
        "/api/v1/orders",
        json={
            "line_id": order["line_id"],
            "pack_id": order["pack"]["id"],
            "currency": "HKD",
            "payment_method": "wechat_pay",
        },
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert (r.status_code, r.json()["code"]) == (422, "payment_method_unavailable")

    before = bucket_count(sessions)
    r = pay_on_page(client, order)
    assert r.status_code == 303 and r.headers["location"].startswith(
        "/sandbox/wechat/wxpay/bizpayurl"
    )
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    placed = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    balance = client.get(f"/api/v1/lines/{order['line_id']}/balance", headers=headers).json()
    assert placed["bucket_id"] in [b["id"] for b in balance["buckets"]]
    assert "支付成功" in client.get(r.headers["location"]).text
    # The payer presses again; then WeChat retries the same notification: credited once.
    assert pay_on_page(client, order).status_code == 303
    assert sb.complete(app, sb.record_of(settings, "wechat", payment["id"])) == 204
    assert bucket_count(sessions) == before + 1
    assert [c.result for c in inbox(sessions)] == ["applied"]
    # WeChat's own record agrees, and a paid order cannot be closed.
    provider = app.state.providers["wechat"]
    state = provider.query(payment["id"], None)
    assert (state.status, state.amount, state.currency) == ("succeeded", order["amount"], "CNY")
    assert (
        state.provider_reference
        == sb.record_of(settings, "wechat", payment["id"]).data["transaction_id"]
    )
    with pytest.raises(ProviderUnavailable):
        provider.close(payment["id"], None)


FORGERIES = [
    "tampered_body",
    "tampered_signature",
    "wrong_key",
    "stale",
    "wrong_serial",
    "wrong_apiv3_key",
    "other_merchant",
    "no_headers",
]


def forged(settings, payment: dict, forgery: str) -> tuple[bytes, dict[str, str]]:  # type: ignore[no-untyped-def]
    resource = w.transaction(settings, payment)
    if forgery == "wrong_key":
        return w.callback(settings, resource, signing_key=w.other_private_key())
    if forgery == "stale":  # a captured callback replayed an hour later
        return w.callback(settings, resource, timestamp=int(time.time()) - 3600)
    if forgery == "wrong_serial":
        return w.callback(settings, resource, serial="0" * 40)
    if forgery == "wrong_apiv3_key":  # signed well, but the resource is not under our APIv3 key
        return w.callback(settings, resource, apiv3_key="k" * 32)
    if forgery == "other_merchant":  # genuine in every way, for another merchant
        return w.callback(settings, {**resource, "mchid": "1230000109"})
    body, hdrs = w.callback(settings, resource)
    if forgery == "tampered_body":
        return body.replace(
            b'"event_type": "TRANSACTION.SUCCESS"', b'"event_type": "TRANSACTION.SUCCESS" '
        ), hdrs
    if forgery == "tampered_signature":
        sig = hdrs["Wechatpay-Signature"]
        return body, {**hdrs, "Wechatpay-Signature": ("A" if sig[0] != "A" else "B") + sig[1:]}
    assert forgery == "no_headers"
    return body, {"Content-Type": "application/json"}


def test_forged_callbacks_are_refused_and_a_genuine_one_credits_once(
    client, sessions, settings, pending
) -> None:
    headers, order = pending
    before = bucket_count(sessions)
    for forgery in FORGERIES:
        body, hdrs = forged(settings, order["payment"], forgery)
        r = client.post(w.CALLBACK, content=body, headers=hdrs)
        assert r.status_code == 400 and r.json()["code"] == "invalid_callback", forgery
        assert status(client, headers, order) == ("awaiting_payment", "pending"), forgery
        assert inbox(sessions) == [] and bucket_count(sessions) == before, forgery
    # The same notification made properly (SDK signature, our APIv3 key) is accepted, once.
    body, hdrs = w.callback(
        settings, w.transaction(settings, order["payment"]), notify_id="EV-once"
    )
    r = client.post(w.CALLBACK, content=body, headers=hdrs)
    assert (r.status_code, r.content) == (204, b"")  # WeChat's "received": 200/204 without a body
    assert client.post(w.CALLBACK, content=body, headers=hdrs).status_code == 204
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    assert bucket_count(sessions) == before + 1
    assert [(c.event_id, c.result) for c in inbox(sessions)] == [("EV-once", "applied")]


def test_signed_headers_on_another_body_or_a_time_over_five_minutes_off_are_refused(  # type: ignore[no-untyped-def]
    client, sessions, settings, pending
) -> None:
    """PayPal's flaw, looked for here: WeChat signs "timestamp\\nnonce\\nbody\\n", the whole body, and
    the inbox key is the notification id inside it."""
    headers, order = pending
    resource = w.transaction(settings, order["payment"])
    _genuine, hdrs = w.callback(settings, resource, notify_id="EV-signed")
    other, _ = w.callback(
        settings, resource, notify_id="EV-chosen-by-the-sender"
    )  # without its own headers
    attempts = [(other, hdrs)]
    for seconds in (-360, 360):  # a replay; a timestamp ahead (WeChat re-signs its retries afresh)
        attempts.append(
            w.callback(
                settings, resource, notify_id="EV-signed", timestamp=int(time.time()) + seconds
            )
        )
    for body, hdrs in attempts:
        r = client.post(w.CALLBACK, content=body, headers=hdrs)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_callback")
    assert (
        status(client, headers, order) == ("awaiting_payment", "pending") and inbox(sessions) == []
    )
    body, hdrs = w.callback(
        settings, resource, notify_id="EV-signed", timestamp=int(time.time()) - 240
    )
    assert client.post(w.CALLBACK, content=body, headers=hdrs).status_code == 204
    assert [(c.event_id, c.result) for c in inbox(sessions)] == [("EV-signed", "applied")]


def test_query_close_and_a_failed_payment_against_the_simulator(client, app, settings) -> None:
    provider = app.state.providers["wechat"]
    request = place(provider)
    state = provider.query(request.payment_id, None)
    assert (state.status, state.provider_reference, state.amount, state.currency) == (
        "pending",
        None,
        1999,
        "CNY",
    )
    provider.close(request.payment_id, None)
    provider.close(request.payment_id, None)  # closing twice is fine, as at WeChat
    assert provider.query(request.payment_id, None).status == "closed"
    assert provider.query(str(uuid.uuid4()), None).status == "closed"  # WeChat never heard of it
    # A closed order can no longer be paid: nothing is sent.
    assert sb.complete(app, sb.record_of(settings, "wechat", request.payment_id)) == 0
    prepay_id = sb.record_of(settings, "wechat", request.payment_id).reference
    assert "订单已关闭" in client.get(f"/sandbox/wechat/wxpay/bizpayurl?pr={prepay_id}").text
    # A payment that fails: WeChat sends nothing (it notifies successes only); query says so.
    failing = place(provider)
    assert sb.complete(app, sb.record_of(settings, "wechat", failing.payment_id), "failed") == 0
    assert provider.query(failing.payment_id, None).status == "failed"


def test_a_refund_is_once_per_refund_id_and_wechat_notifies_it(
    client, app, sessions, settings
) -> None:
    provider = app.state.providers["wechat"]
    paid = place(provider, 3000)
    assert (
        sb.complete(app, sb.record_of(settings, "wechat", paid.payment_id)) == 204
    )  # tongka answers; it does not know this payment
    refund_id, part = str(uuid.uuid4()), 1000

    def ask(amount: int, rid: str = refund_id):  # type: ignore[no-untyped-def]
        return provider.refund(
            RefundRequest(rid, paid.payment_id, "", amount, "CNY", 3000, "customer asked")
        )

    first, second = ask(part), ask(part)
    assert first == second and first.status == "pending"  # PROCESSING until WeChat settles it
    sim = sb.record_of(settings, "wechat", paid.payment_id)
    assert (sim.refunded, len(sim.refunds)) == (part, 1)
    for amount, rid in (
        (part + 1, refund_id),
        (2001, str(uuid.uuid4())),
    ):  # another amount; more than is left
        with pytest.raises(ProviderUnavailable):
            ask(amount, rid)
    assert sb.record_of(settings, "wechat", paid.payment_id).refunded == part
    assert (
        provider.query(paid.payment_id, None).status == "succeeded"
    )  # REFUND: paid, partly refunded
    out_trade_no, out_refund_no = uuid.UUID(paid.payment_id).hex, uuid.UUID(refund_id).hex
    r = client.post(
        f"/sandbox/wechat/sim/transactions/{out_trade_no}/refunds/{out_refund_no}/complete"
    )
    assert r.json() == {"callback_status": 204}
    event = json.loads(inbox(sessions)[-1].payload)
    assert (event["outcome"], event["refund_id"], event["amount"], event["currency"]) == (
        "refunded",
        refund_id,
        part,
        "CNY",
    )
    assert sb.record_of(settings, "wechat", paid.payment_id).refunds[0]["status"] == "SUCCESS"


def test_h5_gives_a_page_for_the_phone_browser(client, app, settings) -> None:
    provider = app.state.providers["wechat"]
    request = PaymentRequest(
        str(uuid.uuid4()),
        1999,
        "CNY",
        "wechat_pay_h5",
        "tongka cn-1gb",
        "http://testserver/api/v1/payments/callbacks/wechat",
        "http://testserver/orders/1",
        payer_ip="203.0.113.7",
    )
    checkout = provider.start(request)
    assert checkout.checkout_url is not None
    url = urlsplit(checkout.checkout_url)
    assert url.path == "/sandbox/wechat/cgi-bin/mmpayweb-bin/checkmweb"
    query = parse_qs(url.query)
    assert query["redirect_url"] == ["http://testserver/orders/1"] and query["package"]
    page = client.get(checkout.checkout_url)
    assert page.status_code == 200 and "¥19.99" in page.text and "立即支付" in page.text
    assert client.get(checkout.checkout_url.replace("package=", "package=9")).status_code == 404
    assert sb.record_of(settings, "wechat", request.payment_id).data["trade_type"] == "MWEB"


def test_wrong_keys_and_silence_are_provider_unavailable(client, settings) -> None:
    request = PaymentRequest(
        str(uuid.uuid4()),
        100,
        "CNY",
        "wechat_pay",
        "tongka",
        "http://testserver/cb",
        "http://testserver/",
    )
    wrong_merchant = settings.model_copy(
        update={"wechat_merchant_private_key": SecretStr(w.other_private_key())}
    )
    platform_key = (
        w.other_private_key()
    )  # answers signed by WeChat must be checked with the key we hold
    from cryptography.hazmat.primitives import serialization

    other_public = (
        serialization.load_pem_private_key(platform_key.encode(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    wrong_platform = settings.model_copy(update={"wechat_platform_public_key": other_public})

    def down(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route to host")

    for provider in (
        wechat.build(wrong_merchant, client),
        wechat.build(wrong_platform, client),
        wechat.build(settings, httpx.Client(transport=httpx.MockTransport(down))),
    ):
        assert provider is not None
        with pytest.raises(ProviderUnavailable):
            provider.start(request)


def test_amounts_and_ids_convert_exactly() -> None:
    assert wechat.to_fen(1250, "CNY") == 1250 and wechat.from_fen(1250) == 1250
    for bad in ((12.5, "CNY"), (True, "CNY"), (-1, "CNY"), ("100", "CNY"), (100, "HKD")):
        with pytest.raises(ValueError):
            wechat.to_fen(*bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            wechat.from_fen(*bad)
    payment_id = str(uuid.uuid4())
    assert (
        len(wechat.to_out_no(payment_id)) == 32
        and wechat.from_out_no(wechat.to_out_no(payment_id)) == payment_id
    )


def test_build_needs_every_wechat_setting(sandbox_keys) -> None:  # type: ignore[no-untyped-def]
    base = {**sandbox_keys, "secret_key": "s", "sandbox_payment_secret": "s", "env": "dev"}
    assert wechat.build(Settings(**base, _env_file=None), httpx.Client()) is not None  # type: ignore[call-arg]
    assert (
        wechat.build(Settings(**{**base, "wechat_apiv3_key": None}, _env_file=None), httpx.Client())
        is None
    )  # type: ignore[call-arg]
    production = Settings(**{**base, "env": "production"}, _env_file=None)  # type: ignore[call-arg]
    assert wechat.build(production, httpx.Client()) is None  # live needs TONGKA_WECHAT_API_BASE
