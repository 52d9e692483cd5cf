"""Stripe (card): PaymentIntents through the simulator, signed webhooks, the whole journey, refunds.

Test webhooks are signed with the Stripe SDK's own `WebhookSignature.generate_signature_header`,
not with tongka's provider code, so a mistake in either shows.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stripe

from tests import factories as f
from tests.payment.factories import bucket_count, inbox, status
from tests.sandbox import helpers as sb
from tongka.payment import providers as registry
from tongka.payment.models import PaymentCallback
from tongka.payment.providers.base import ProviderUnavailable, RefundRequest
from tongka.payment.providers.stripe import (
    StripeProvider,
    from_stripe,
    to_stripe,
)

CALLBACK = "/api/v1/payments/callbacks/stripe"
API = "/sandbox/stripe/v1"
CARD = {"expiry": "12 / 34", "cvc": "123", "name": "Chan Tai Man"}


@pytest.fixture
def pending(client, sessions, demo, monkeypatch):  # type: ignore[no-untyped-def]
    """A subscriber's order awaiting a card payment carried by Stripe: (headers, order, PaymentIntent id)."""
    monkeypatch.setitem(registry.METHOD_PROVIDER, "card", "stripe")
    # Orders made through the API are in the app channel, which does not list card yet.
    monkeypatch.setitem(registry.CHANNEL_METHODS, "app", (*registry.CHANNEL_METHODS["app"], "card"))
    headers, line, _ = f.new_subscriber(client, sessions)
    order = f.order(client, headers, line["id"], method="card")
    assert order["payment"]["provider"] == "stripe"
    return headers, order, urlsplit(order["payment"]["checkout_url"]).path.rsplit("/", 1)[1]


def page_form(order: dict) -> tuple[str, dict[str, str]]:
    url = urlsplit(order["payment"]["checkout_url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    return url.path, query


def pay_by_card(client, order: dict, number: str):  # type: ignore[no-untyped-def]
    path, query = page_form(order)
    return client.post(path, data={**query, **CARD, "card_number": number}, follow_redirects=False)


def intent_event(
    order: dict,
    reference: str,
    kind: str = "payment_intent.succeeded",
    event_id: str | None = None,
    amount: int | None = None,
) -> bytes:
    """A webhook body in Stripe's shape (pretty-printed, as Stripe sends it)."""
    payment = order["payment"]
    amount = payment["amount"] if amount is None else amount
    succeeded = kind == "payment_intent.succeeded"
    intent = {
        "id": reference,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if succeeded else 0,
        "currency": payment["currency"].lower(),
        "metadata": {"payment_id": payment["id"]},
        "status": "succeeded" if succeeded else "requires_payment_method",
        "livemode": False,
    }
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()),
        "data": {"object": intent},
        "livemode": False,
        "type": kind,
    }
    return json.dumps(event, indent=2).encode()


def signed(secret: str, body: bytes, at: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, at or int(time.time())
    )
    return {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}


def whsec(settings) -> str:  # type: ignore[no-untyped-def]
    return settings.stripe_webhook_secret.get_secret_value()


def wait_for_inbox(sessions, n: int) -> list[PaymentCallback]:  # type: ignore[no-untyped-def]
    """Stripe sends refund webhooks after answering the refund call: wait for them to land."""
    deadline = time.monotonic() + 10
    while len(rows := inbox(sessions)) < n:
        assert time.monotonic() < deadline, f"{len(rows)} callbacks, expected {n}"
        time.sleep(0.05)
    return rows


# --- start and the card form -------------------------------------------------------------------


def test_start_makes_a_payment_intent_and_a_card_page(client, app, settings, pending) -> None:
    _headers, order, reference = pending
    payment = order["payment"]
    assert reference.startswith("pi_")
    intent = sb.record(settings, "stripe", reference)
    assert (intent.amount, intent.currency, intent.merchant_reference) == (
        5800,
        "HKD",
        payment["id"],
    )
    assert (
        intent.data["payment_method_types"] == ["card"]
        and intent.data["status"] == "requires_payment_method"
    )
    path, query = page_form(order)
    assert query["client_secret"] == intent.data["client_secret"]
    page = client.get(payment["checkout_url"])
    assert (
        page.status_code == 200 and "HK$58.00" in page.text and "4242 4242 4242 4242" in page.text
    )
    assert client.get(path, params={"client_secret": "pi_x_secret_wrong"}).status_code == 404
    answer = app.state.providers["stripe"].query(payment["id"], reference)
    assert (answer.status, answer.amount, answer.currency) == ("pending", 5800, "HKD")


def test_paying_with_4242_fulfils_the_order_and_credits_the_bucket(
    client, app, sessions, settings, pending
) -> None:
    headers, order, reference = pending
    before = bucket_count(sessions)
    r = pay_by_card(client, order, "4242 4242 4242 4242")
    assert r.status_code == 303
    back = urlsplit(r.headers["location"])
    assert back.path == f"/orders/{order['id']}"
    assert parse_qs(back.query)["redirect_status"] == ["succeeded"]
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    assert bucket_count(sessions) == before + 1
    balance = client.get(f"/api/v1/lines/{order['line_id']}/balance", headers=headers).json()
    fulfilled = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    [bucket] = [b for b in balance["buckets"] if b["id"] == fulfilled["bucket_id"]]
    assert bucket["zone"] == order["pack"]["zone"]
    assert bucket["total_bytes"] == bucket["remaining_bytes"] == order["pack"]["volume_bytes"]
    [row] = inbox(sessions)
    assert (row.result, json.loads(row.payload)["outcome"]) == ("applied", "succeeded")
    answer = app.state.providers["stripe"].query(order["payment"]["id"], reference)
    assert (answer.status, answer.amount, answer.currency) == ("succeeded", 5800, "HKD")
    # The page of a paid PaymentIntent takes no second payment.
    assert "Payment succeeded" in client.get(order["payment"]["checkout_url"]).text
    assert pay_by_card(client, order, "4242424242424242").status_code == 200
    assert bucket_count(sessions) == before + 1


def test_a_declined_card_fails_the_attempt_and_credits_nothing(
    client, app, sessions, settings, pending
) -> None:
    headers, order, reference = pending
    before = bucket_count(sessions)
    r = pay_by_card(
        client, order, "4242 4242 4242 4241"
    )  # mistyped: fails the Luhn check, sends nothing
    assert r.status_code == 400 and "Your card number is invalid." in r.text
    assert inbox(sessions) == []
    r = pay_by_card(client, order, "4000 0000 0000 0002")
    assert r.status_code == 402 and "Your card was declined." in r.text
    assert status(client, headers, order) == ("awaiting_payment", "failed")
    assert bucket_count(sessions) == before
    [row] = inbox(sessions)
    assert json.loads(row.payload)["outcome"] == "failed"
    assert app.state.providers["stripe"].query(order["payment"]["id"], reference).status == "failed"
    # As at Stripe, the PaymentIntent stays open for another card.
    assert sb.record(settings, "stripe", reference).data["status"] == "requires_payment_method"


# --- webhooks ----------------------------------------------------------------------------------


FORGERIES = (
    "tampered_body",
    "tampered_signature",
    "tampered_timestamp",
    "stale",
    "wrong_secret",
    "no_header",
    "garbage_header",
    "v0_only",
)


def forge(settings, body: bytes, forgery: str) -> tuple[bytes, dict[str, str]]:  # type: ignore[no-untyped-def]
    now = int(time.time())
    hdrs = signed(whsec(settings), body, now)
    if forgery == "tampered_body":  # the amount changed after signing
        assert b'"amount_received": 5800' in body
        body = body.replace(b'"amount_received": 5800', b'"amount_received": 1')
    elif forgery == "tampered_signature":
        mac = hdrs["Stripe-Signature"].split("v1=")[1]
        hdrs["Stripe-Signature"] = f"t={now},v1={mac[:-1]}{'0' if mac[-1] != '0' else '1'}"
    elif forgery == "tampered_timestamp":  # a fresh time on an old signature
        hdrs["Stripe-Signature"] = hdrs["Stripe-Signature"].replace(f"t={now}", f"t={now + 1}")
    elif forgery == "stale":  # a captured webhook replayed an hour later
        hdrs = signed(whsec(settings), body, now - 3600)
    elif forgery == "wrong_secret":
        hdrs = signed("whsec_" + "x" * 32, body, now)
    elif forgery == "no_header":
        del hdrs["Stripe-Signature"]
    elif forgery == "garbage_header":
        hdrs["Stripe-Signature"] = "t=abc,v1=zz"
    else:  # only a scheme Stripe does not sign live events with
        hdrs["Stripe-Signature"] = hdrs["Stripe-Signature"].replace("v1=", "v0=")
    return body, hdrs


def test_forged_or_unreadable_webhooks_are_refused_a_genuine_one_pays(
    client, sessions, settings, pending
) -> None:
    headers, order, reference = pending
    before = bucket_count(sessions)
    for forgery in FORGERIES:
        body, hdrs = forge(settings, intent_event(order, reference), forgery)
        r = client.post(CALLBACK, content=body, headers=hdrs)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_callback"), forgery
    # Genuinely signed, but not an event we can read: refused too (Stripe retries; nothing is stored).
    for body in (
        b"not json",
        json.dumps({"id": "evt_1", "type": "customer.created", "data": {"object": {}}}).encode(),
        intent_event(order, reference).replace(
            b'"amount_received": 5800', b'"amount_received": 58.0'
        ),
    ):
        r = client.post(CALLBACK, content=body, headers=signed(whsec(settings), body))
        assert (r.status_code, r.json()["code"]) == (400, "invalid_callback"), body
    assert status(client, headers, order) == ("awaiting_payment", "pending")
    assert inbox(sessions) == [] and bucket_count(sessions) == before
    # The same event, genuinely signed, goes through: the refusals were the forgeries'.
    body = intent_event(order, reference)
    r = client.post(CALLBACK, content=body, headers=signed(whsec(settings), body))
    assert r.status_code == 200 and r.json() == {"received": True}
    assert status(client, headers, order) == ("fulfilled", "succeeded")
    assert bucket_count(sessions) == before + 1


def test_a_webhook_signed_ahead_or_for_the_other_mode_is_refused(
    client, sessions, settings, pending
) -> None:
    headers, order, reference = pending
    body = intent_event(order, reference)
    ahead = client.post(
        CALLBACK, content=body, headers=signed(whsec(settings), body, int(time.time()) + 600)
    )
    live = body.replace(b'"livemode": false', b'"livemode": true')  # a live event, our test key
    other_mode = client.post(CALLBACK, content=live, headers=signed(whsec(settings), live))
    for r in (ahead, other_mode):
        assert (r.status_code, r.json()["code"]) == (400, "invalid_callback")
    assert (
        status(client, headers, order) == ("awaiting_payment", "pending") and inbox(sessions) == []
    )
    # Within five minutes either way, in our mode: taken.
    r = client.post(
        CALLBACK, content=body, headers=signed(whsec(settings), body, int(time.time()) + 240)
    )
    assert r.status_code == 200 and status(client, headers, order) == ("fulfilled", "succeeded")


def test_a_repeated_webhook_credits_once(client, app, sessions, settings, pending) -> None:
    headers, order, reference = pending
    before = bucket_count(sessions)
    body = intent_event(order, reference, event_id="evt_once")
    for _ in range(3):  # Stripe's retries re-sign the same event
        assert (
            client.post(CALLBACK, content=body, headers=signed(whsec(settings), body)).status_code
            == 200
        )
    assert bucket_count(sessions) == before + 1
    assert [r.result for r in inbox(sessions)] == ["applied"]
    assert status(client, headers, order) == ("fulfilled", "succeeded")


def test_the_simulator_resends_the_same_event_and_it_credits_once(
    client, app, sessions, settings, pending
) -> None:
    headers, order, reference = pending
    before = bucket_count(sessions)
    assert sb.complete(app, sb.record(settings, "stripe", reference), "succeeded") == 200
    assert (
        sb.complete(app, sb.record(settings, "stripe", reference), "succeeded") == 200
    )  # a redelivery of the same event
    assert bucket_count(sessions) == before + 1
    [row] = inbox(sessions)
    assert row.event_id == sb.record(settings, "stripe", reference).data["succeeded_event"]["id"]
    assert status(client, headers, order) == ("fulfilled", "succeeded")


# --- query, close, refund against the simulator -------------------------------------------------


def test_close_cancels_the_payment_intent(client, app, sessions, settings, pending) -> None:
    headers, order, reference = pending
    provider = app.state.providers["stripe"]
    provider.close(order["payment"]["id"], reference)
    assert provider.query(order["payment"]["id"], reference).status == "closed"
    assert sb.record(settings, "stripe", reference).data["status"] == "canceled"
    provider.close(order["payment"]["id"], reference)  # closing twice is harmless
    provider.close(order["payment"]["id"], None)  # nothing at Stripe: nothing to close
    assert "canceled" in pay_by_card(client, order, "4242424242424242").text
    assert sb.complete(app, sb.record(settings, "stripe", reference), "succeeded") == 409
    assert inbox(sessions) == [] and status(client, headers, order) == (
        "awaiting_payment",
        "pending",
    )


def test_refund_is_once_per_refund_id_and_stripe_reports_it(
    client, app, sessions, settings, pending
) -> None:
    _headers, order, reference = pending
    provider = app.state.providers["stripe"]
    payment = order["payment"]
    with pytest.raises(ProviderUnavailable):  # nothing paid yet: Stripe has no charge to refund
        provider.refund(refund_request(order, reference, "r-early", 100))
    assert pay_by_card(client, order, "4242424242424242").status_code == 303
    first = provider.refund(refund_request(order, reference, "r-1", 1800))
    again = provider.refund(refund_request(order, reference, "r-1", 1800))
    provider.close(payment["id"], reference)  # closing a paid PaymentIntent leaves it paid
    assert provider.query(payment["id"], reference).status == "succeeded"
    assert (
        first == again
        and first.status == "succeeded"
        and first.provider_refund_id.startswith("re_")
    )
    intent = sb.record(settings, "stripe", reference)
    assert intent.refunded == 1800 and len(intent.refunds) == 1
    assert intent.refunds[0]["metadata"]["refund_id"] == "r-1"
    rows = wait_for_inbox(sessions, 2)
    event = json.loads(rows[1].payload)
    assert (
        event["outcome"],
        event["amount"],
        event["currency"],
        event["refund_id"],
        event["payment_id"],
    ) == ("refunded", 1800, "HKD", "r-1", payment["id"])
    rest = provider.refund(refund_request(order, reference, "r-2", 4000))
    assert rest.provider_refund_id != first.provider_refund_id
    assert sb.record(settings, "stripe", reference).refunded == 5800
    with pytest.raises(ProviderUnavailable):  # already refunded in full
        provider.refund(refund_request(order, reference, "r-3", 1))
    events = [json.loads(r.payload) for r in wait_for_inbox(sessions, 3)[1:]]
    assert [(e["amount"], e["refund_id"]) for e in events] == [(1800, "r-1"), (4000, "r-2")]


def refund_request(order: dict, reference: str, refund_id: str, amount: int) -> RefundRequest:
    payment = order["payment"]
    return RefundRequest(
        refund_id=refund_id,
        payment_id=payment["id"],
        provider_reference=reference,
        amount=amount,
        currency=payment["currency"],
        payment_amount=payment["amount"],
        reason="customer asked",
    )


# --- no database needed -------------------------------------------------------------------------


def test_amounts_convert_exactly_as_integers() -> None:
    assert to_stripe(5800, "HKD") == (5800, "hkd") and to_stripe(1, "CNY") == (1, "cny")
    assert from_stripe(5800, "hkd") == (5800, "HKD") and from_stripe(99_999_999_999, "cny") == (
        99_999_999_999,
        "CNY",
    )
    for wrong in ((58.0, "hkd"), (True, "hkd"), ("5800", "hkd"), (5800, "usd")):
        with pytest.raises(ValueError):
            from_stripe(*wrong)  # type: ignore[arg-type]


@pytest.mark.parametrize("failure", ["unreachable", "server_error", "refused"])
def test_provider_failures_are_provider_unavailable(failure) -> None:
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if failure == "unreachable":
            raise httpx.ConnectError("no route")
        if failure == "server_error":
            return httpx.Response(
                500,
                json={"error": {"type": "api_error", "message": "boom"}},
                headers={"Stripe-Should-Retry": "false"},
            )
        return httpx.Response(
            402, json={"error": {"type": "card_error", "code": "card_declined", "message": "no"}}
        )

    http = httpx.Client(transport=httpx.MockTransport(answer))
    provider = StripeProvider("sk_test_x", "whsec_x", "https://stripe.invalid", http)
    with pytest.raises(ProviderUnavailable):
        provider.query("p", "pi_1")
    request = calls[0]
    assert request.url == "https://stripe.invalid/v1/payment_intents/pi_1"
    assert request.headers["Authorization"] == "Bearer sk_test_x"
    with pytest.raises(ProviderUnavailable):
        provider.refund(RefundRequest("r", "p", "pi_1", 100, "HKD", 100, "x"))
    refund = calls[-1]
    assert refund.headers["Idempotency-Key"] == "tongka-refund-r"
    assert parse_qs(refund.content.decode())["amount"] == ["100"]
