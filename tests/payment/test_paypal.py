"""PayPal: Orders v2 against the simulator, webhooks verified as PayPal signs them, the whole renewal through the API."""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from tests import factories as f
from tests.payment import paypal_helpers as pp
from tests.payment.factories import bucket_count, status
from tests.sandbox import helpers as sb
from tongka.money import GB
from tongka.payment import providers
from tongka.payment.models import PaymentCallback
from tongka.payment.providers.base import (
    PaymentRequest,
    ProviderUnavailable,
    RefundRequest,
)
from tongka.payment.providers.paypal import PayPalProvider, from_value, to_value
from tongka.sandbox import paypal as sim
from tongka.sandbox.store import SimPayment
from tongka.sandbox.store import sessions as sim_sessions

CALLBACK = "/api/v1/payments/callbacks/paypal"


@pytest.fixture
def pending(client, sessions, demo, monkeypatch):  # type: ignore[no-untyped-def]
    """A subscriber's HKD order awaiting payment, carried by PayPal: (headers, line, order, PayPal order id)."""
    monkeypatch.setitem(providers.METHOD_PROVIDER, "paypal", "paypal")
    monkeypatch.setitem(
        providers.CHANNEL_METHODS, "app", (*providers.CHANNEL_METHODS["app"], "paypal")
    )
    headers, line, _ = f.new_subscriber(client, sessions)
    order = f.order(client, headers, line["id"], method="paypal", currency="HKD")
    assert order["payment"]["provider"] == "paypal"
    token = parse_qs(urlsplit(order["payment"]["checkout_url"]).query)["token"][0]
    return headers, line, order, token


def inbox(sessions) -> list[str]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return sorted(s.scalars(select(PaymentCallback.result)))


def approve(client, token: str, outcome: str = "succeeded") -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/sandbox/paypal/checkoutnow/approve",
        data={"token": token, "outcome": outcome},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert parse_qs(urlsplit(r.headers["location"]).query)["token"] == [token]


def provider(client) -> PayPalProvider:  # type: ignore[no-untyped-def]
    return client.app.state.providers["paypal"]  # type: ignore[no-any-return]


def test_amounts_convert_exactly_both_ways() -> None:
    assert [to_value(a, "HKD") for a in (0, 5, 1250, 123456789012345678)] == [
        "0.00",
        "0.05",
        "12.50",
        "1234567890123456.78",
    ]
    assert to_value(1000, "JPY") == "1000"
    assert [from_value(v, "HKD")[0] for v in ("0.05", "12.5", "12.50", "1234567890123456.78")] == [
        5,
        1250,
        1250,
        123456789012345678,
    ]
    for bad in ("12.345", "1e3", "-1.00", "", "12,50", 12.5, None):
        with pytest.raises(ValueError):
            from_value(bad, "HKD")


def test_start_gives_the_payer_paypals_approval_page_and_the_api_checks_credentials(  # type: ignore[no-untyped-def]
    client, settings
) -> None:
    payment_id = str(uuid.uuid4())
    request = PaymentRequest(
        payment_id,
        12345,
        "HKD",
        "paypal",
        "tongka hk-5gb-30d",
        "http://testserver/api/v1/payments/callbacks/paypal",
        "http://testserver/orders/x",
    )
    checkout = provider(client).start(request)
    assert (
        checkout.checkout_url
        == f"http://testserver/sandbox/paypal/checkoutnow?token={checkout.provider_reference}"
    )
    assert (
        provider(client).start(request).provider_reference == checkout.provider_reference
    )  # PayPal-Request-Id
    page = client.get(checkout.checkout_url)
    assert page.status_code == 200 and "HK$123.45" in page.text and "Pay Now" in page.text
    record = sb.record(settings, "paypal", checkout.provider_reference)
    assert (record.amount, record.currency, record.merchant_reference) == (12345, "HKD", payment_id)
    got = provider(client).query(payment_id, checkout.provider_reference)
    assert (got.status, got.amount, got.currency) == ("pending", 12345, "HKD")
    assert (
        provider(client).query(payment_id, "NOSUCHORDER0000000").status == "closed"
    )  # PayPal: 404

    # What PayPal answers a wrong secret and a forged token, and what the provider makes of it.
    wrong = base64.b64encode(f"{settings.paypal_client_id}:not-the-secret".encode()).decode()
    r = client.post(
        "/sandbox/paypal/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {wrong}"},
    )
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    forged = "A21AA" + base64.urlsafe_b64encode(b"9999999999.00").decode()
    r = client.get(
        f"/sandbox/paypal/v2/checkout/orders/{checkout.provider_reference}",
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert (r.status_code, r.json()["name"]) == (401, "AUTHENTICATION_FAILURE")
    impostor = PayPalProvider(
        client,
        "http://testserver/sandbox/paypal",
        settings.paypal_client_id,
        "nope",
        settings.paypal_webhook_id,
    )
    unreachable = PayPalProvider(
        httpx.Client(timeout=2),
        "http://127.0.0.1:9/sandbox/paypal",
        settings.paypal_client_id,
        settings.paypal_client_secret.get_secret_value(),
        settings.paypal_webhook_id,
    )
    for paypal in (impostor, unreachable):
        with pytest.raises(ProviderUnavailable):
            paypal.start(
                PaymentRequest(str(uuid.uuid4()), 100, "HKD", "paypal", "x", "http://x", "http://x")
            )


def test_a_renewal_paid_with_paypal_is_captured_fulfilled_and_refunded_once_per_refund_id(  # type: ignore[no-untyped-def]
    client, sessions, settings, pending
) -> None:
    headers, line, order, token = pending
    payment_id, amount = order["payment"]["id"], order["amount"]
    before = bucket_count(sessions)
    page = client.get(order["payment"]["checkout_url"])
    assert page.status_code == 200 and "HK$" in page.text
    approve(client, token)
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    # The approval's capture applied it; PAYMENT.CAPTURE.COMPLETED then found it settled.
    assert inbox(sessions) == ["applied", "ignored"]
    assert bucket_count(sessions) == before + 1
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    assert balance["zones"]["hk"]["remaining_bytes"] == 5 * GB
    record = sb.record(settings, "paypal", token)
    assert (record.status, record.data["capture"]["status"], record.amount) == (
        "succeeded",
        "COMPLETED",
        amount,
    )
    assert "payment completed" in client.get(order["payment"]["checkout_url"]).text
    assert client.get("/sandbox/paypal/checkoutnow?token=NOSUCHORDER").status_code == 404
    approve(client, token)  # the payer presses again: nothing more
    assert bucket_count(sessions) == before + 1 and len(inbox(sessions)) == 2

    paypal = provider(client)
    got = paypal.query(payment_id, token)
    assert (got.status, got.amount, got.currency) == ("succeeded", amount, "HKD")

    def refund(refund_id: str, value: int):  # type: ignore[no-untyped-def]
        return paypal.refund(
            RefundRequest(refund_id, payment_id, token, value, "HKD", amount, "customer asked")
        )

    first = refund("r-1", 1)
    assert first.status == "succeeded"
    assert refund("r-1", 1) == first  # the same refund id: PayPal answers with the first refund
    assert sb.record(settings, "paypal", token).refunded == 1
    rest = refund("r-2", amount - 1)
    assert rest.status == "succeeded" and rest.provider_refund_id != first.provider_refund_id
    assert refund("r-3", 1).status == "failed"  # nothing left to refund
    record = sb.record(settings, "paypal", token)
    assert (record.refunded, record.data["capture"]["status"]) == (amount, "REFUNDED")
    assert [r["amount"] for r in record.refunds] == [1, amount - 1]
    # One PAYMENT.CAPTURE.REFUNDED per refund, verified and taken in by tongka.
    client.portal.call(sim.drain)  # type: ignore[union-attr]
    with sessions() as s:
        payloads = [json.loads(p) for p in s.scalars(select(PaymentCallback.payload))]
    refunds = sorted((p["refund_id"], p["amount"]) for p in payloads if p["outcome"] == "refunded")
    assert refunds == [("r-1", 1), ("r-2", amount - 1)]
    assert paypal.query(payment_id, token).status == "succeeded"


def test_a_declined_capture_and_a_closed_order_take_no_money(  # type: ignore[no-untyped-def]
    client, sessions, settings, pending
) -> None:
    headers, line, order, token = pending
    before = bucket_count(sessions)
    approve(client, token, outcome="failed")
    assert status(client, headers, order) == ("awaiting_payment", "failed")
    assert inbox(sessions) == [
        "applied",
        "ignored",
    ]  # approval (capture declined), then PAYMENT.CAPTURE.DENIED
    assert sb.record(settings, "paypal", token).data["capture"]["status"] == "DECLINED"

    second = f.order(client, headers, line["id"], method="paypal", currency="HKD")
    token = parse_qs(urlsplit(second["payment"]["checkout_url"]).query)["token"][0]
    provider(client).close(second["payment"]["id"], token)
    assert provider(client).query(second["payment"]["id"], token).status == "closed"
    approve(client, token)  # the payer still had the page open
    assert status(client, headers, second) == ("awaiting_payment", "failed")
    record = sb.record(settings, "paypal", token)
    assert "capture" not in record.data and record.status == "pending"  # nothing captured at PayPal
    assert bucket_count(sessions) == before


def captured_at_paypal(settings, order_id: str) -> SimPayment:  # type: ignore[no-untyped-def]
    """PayPal's own record of the order: approved and captured, with no webhook sent (yet)."""
    with sim_sessions(settings.sandbox_store_url).begin() as s:
        record = s.get(SimPayment, ("paypal", order_id))
        assert record is not None
        record.data = {
            **record.data,
            "status": "COMPLETED",
            "capture": {
                "id": f"CAP{order_id[:14]}",
                "status": "COMPLETED",
                "create_time": "2025-01-02T03:04:05Z",
            },
        }
        record.status = "succeeded"
    return sb.record(settings, "paypal", order_id)


def _genuine(settings, order, token, event_id=None):  # type: ignore[no-untyped-def]
    event = pp.capture_completed(
        order["payment"]["id"], token, to_value(order["amount"], "HKD"), event_id=event_id
    )
    return pp.signed(
        sim.signing_key()[0], sim.cert_url(settings), settings.paypal_webhook_id, event
    )


FORGERIES = [
    "body",
    "signature",
    "transmission_time",
    "wrong_key",
    "other_webhook",
    "foreign_cert",
    "no_signature",
    "algorithm",
]


def _forge(settings, order, token, forgery: str):  # type: ignore[no-untyped-def]
    body, hdrs = _genuine(settings, order, token)
    event = json.loads(body)
    key, url = sim.signing_key()[0], sim.cert_url(settings)
    if forgery == "body":  # the amount lowered after PayPal signed
        body = body.replace(
            f'"value": "{to_value(order["amount"], "HKD")}"'.encode(), b'"value": "0.01"'
        )
        assert b'"0.01"' in body
    elif forgery == "signature":
        sig = bytearray(base64.b64decode(hdrs["PAYPAL-TRANSMISSION-SIG"]))
        sig[10] ^= 1
        hdrs["PAYPAL-TRANSMISSION-SIG"] = base64.b64encode(bytes(sig)).decode()
    elif forgery == "transmission_time":
        hdrs["PAYPAL-TRANSMISSION-TIME"] = "2030-01-01T00:00:00Z"
    elif forgery == "wrong_key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        body, hdrs = pp.signed(other, url, settings.paypal_webhook_id, event)
    elif forgery == "other_webhook":  # genuine PayPal, but for someone else's webhook
        body, hdrs = pp.signed(key, url, "WH-SOMEONE-ELSE", event)
    elif forgery == "foreign_cert":
        hdrs["PAYPAL-CERT-URL"] = (
            "http://evil.example/sandbox/paypal/v1/notifications/certs/" + url.rsplit("/", 1)[1]
        )
    elif forgery == "no_signature":
        del hdrs["PAYPAL-TRANSMISSION-SIG"]
    else:
        hdrs["PAYPAL-AUTH-ALGO"] = "SHA1withRSA"
    return body, hdrs


def test_forged_webhooks_are_refused_a_genuine_one_pays_and_a_duplicate_credits_once(  # type: ignore[no-untyped-def]
    client, sessions, settings, pending
) -> None:
    headers, _line, order, token = pending
    before = bucket_count(sessions)
    for forgery in FORGERIES:
        forged = _forge(settings, order, token, forgery)
        r = client.post(CALLBACK, content=forged[0], headers=forged[1])
        assert (r.status_code, r.json()["code"]) == (400, "invalid_callback"), forgery
        assert status(client, headers, order) == ("awaiting_payment", "pending"), forgery
        assert inbox(sessions) == [] and bucket_count(sessions) == before, forgery

    captured_at_paypal(settings, token)
    body, hdrs = _genuine(settings, order, token, event_id="WH-ONCE")
    for _ in range(2):
        r = client.post(CALLBACK, content=body, headers=hdrs)
        assert r.status_code == 200, r.text
    # PayPal's retry: the same event in a new transmission, signed anew. The inbox is keyed on
    # the transmission (the body's event id is not signed), and the settled payment ignores it.
    again, again_headers = pp.signed(
        sim.signing_key()[0], sim.cert_url(settings), settings.paypal_webhook_id, json.loads(body)
    )
    assert client.post(CALLBACK, content=again, headers=again_headers).status_code == 200
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    assert bucket_count(sessions) == before + 1 and inbox(sessions) == ["applied", "ignored"]


def _under_genuine_headers(body: bytes, event: dict) -> bytes:  # type: ignore[type-arg]
    """`event` as a body with the CRC32 of `body`: it verifies under `body`'s signed headers."""
    forged = pp.same_crc32(json.dumps(event).encode(), zlib.crc32(body))
    assert forged != body and zlib.crc32(forged) == zlib.crc32(body)
    return forged


def test_a_body_forged_with_the_crc32_of_a_genuine_webhook_fulfils_nothing(  # type: ignore[no-untyped-def]
    client, sessions, settings, pending
) -> None:
    headers, _line, order, token = pending
    attacker, their_line, _ = f.new_subscriber(client, sessions)
    theirs = f.order(client, attacker, their_line["id"], method="paypal", currency="HKD")
    their_token = parse_qs(urlsplit(theirs["payment"]["checkout_url"]).query)["token"][0]
    before = bucket_count(sessions)
    # The victim pays; PAYMENT.CAPTURE.COMPLETED is signed as PayPal signs it, and the attacker
    # captures it on its way.
    captured_at_paypal(settings, token)
    body, hdrs = _genuine(settings, order, token)
    event = json.loads(body)
    resource = event["resource"]
    event["id"] = "WH-FORGED"
    resource["invoice_id"] = resource["custom_id"] = theirs["payment"]["id"]
    resource["amount"] = {"currency_code": "HKD", "value": to_value(theirs["amount"], "HKD")}
    resource["supplementary_data"]["related_ids"]["order_id"] = their_token
    event["summary"] = pp.FILLER.decode()
    forged = _under_genuine_headers(body, event)

    # Before the genuine delivery: PayPal captured nothing for the attacker's order.
    r = client.post(CALLBACK, content=forged, headers=hdrs)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_callback")
    assert status(client, attacker, theirs) == ("awaiting_payment", "pending")
    assert inbox(sessions) == [] and bucket_count(sessions) == before
    # The genuine delivery pays the victim; the forgery after it is still refused.
    assert client.post(CALLBACK, content=body, headers=hdrs).status_code == 200
    assert client.post(CALLBACK, content=forged, headers=hdrs).status_code == 400
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    assert status(client, attacker, theirs) == ("awaiting_payment", "pending")
    assert inbox(sessions) == ["applied"] and bucket_count(sessions) == before + 1


def test_a_replayed_transmission_with_another_event_id_is_a_duplicate(  # type: ignore[no-untyped-def]
    client, sessions, settings, pending
) -> None:
    headers, _line, order, token = pending
    captured_at_paypal(settings, token)
    body, hdrs = _genuine(settings, order, token)
    assert client.post(CALLBACK, content=body, headers=hdrs).status_code == 200
    event = json.loads(body)
    event["id"], event["summary"] = "WH-CHOSEN-BY-THE-SENDER", pp.FILLER.decode()
    r = client.post(CALLBACK, content=_under_genuine_headers(body, event), headers=hdrs)
    assert r.status_code == 200  # acknowledged: PayPal's transmission was taken in once
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    assert inbox(sessions) == ["applied"]


def test_a_transmission_time_more_than_five_minutes_off_is_refused(  # type: ignore[no-untyped-def]
    client, sessions, settings, pending
) -> None:
    headers, _line, order, token = pending
    captured_at_paypal(settings, token)
    event = pp.capture_completed(order["payment"]["id"], token, to_value(order["amount"], "HKD"))
    key, url = sim.signing_key()[0], sim.cert_url(settings)

    def signed_at(minutes: int) -> tuple[bytes, dict[str, str]]:
        when = (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return pp.signed(key, url, settings.paypal_webhook_id, event, transmission_time=when)

    for minutes in (-6, 6, -60 * 24):  # a replay, a sender's clock ahead, yesterday's webhook
        body, hdrs = signed_at(minutes)
        r = client.post(CALLBACK, content=body, headers=hdrs)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_callback"), minutes
        assert (
            status(client, headers, order) == ("awaiting_payment", "pending")
            and inbox(sessions) == []
        )
    body, hdrs = signed_at(-4)
    assert client.post(CALLBACK, content=body, headers=hdrs).status_code == 200
    assert status(client, headers, order) == ("fulfilled", "succeeded")


def test_a_refund_webhook_is_what_paypal_says_of_the_refund(  # type: ignore[no-untyped-def]
    client, sessions, settings, pending
) -> None:
    _headers, _line, order, token = pending
    approve(client, token)
    payment_id, refund_id = order["payment"]["id"], str(uuid.uuid4())
    done = provider(client).refund(
        RefundRequest(refund_id, payment_id, token, 100, "HKD", order["amount"], "asked")
    )
    client.portal.call(sim.drain)  # type: ignore[union-attr]
    taken = len(inbox(sessions))
    key, url = sim.signing_key()[0], sim.cert_url(settings)

    def post(resource: dict) -> httpx.Response:  # type: ignore[type-arg]
        event = {"id": "WH-REFUND", "event_type": "PAYMENT.CAPTURE.REFUNDED", "resource": resource}
        body, hdrs = pp.signed(key, url, settings.paypal_webhook_id, event)
        return client.post(CALLBACK, content=body, headers=hdrs)  # type: ignore[no-any-return]

    claim = {
        "status": "COMPLETED",
        "amount": {"currency_code": "HKD", "value": "9.99"},
        "invoice_id": payment_id,
        "custom_id": str(uuid.uuid4()),
        "links": [],
    }
    r = post({**claim, "id": "NOSUCHREFUND00000"})  # a refund PayPal never made
    assert (r.status_code, r.json()["code"]) == (400, "invalid_callback")
    assert len(inbox(sessions)) == taken
    # A refund PayPal did make, with another amount and refund id in the body: PayPal's word is taken.
    assert post({**claim, "id": done.provider_refund_id}).status_code == 200
    with sessions() as s:
        payloads = [json.loads(p) for p in s.scalars(select(PaymentCallback.payload))]
    assert len(payloads) == taken + 1
    assert [(p["amount"], p["refund_id"]) for p in payloads if p["outcome"] == "refunded"] == [
        (100, refund_id)
    ] * 2
