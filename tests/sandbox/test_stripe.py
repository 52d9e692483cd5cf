"""The Stripe simulator's API itself: Stripe's own refusals and idempotency, read by Stripe's SDK."""

from __future__ import annotations

import pytest
import stripe

from tongka.payment.providers.stripe import _InjectedHTTP

API = "/sandbox/stripe/v1"


def sdk(client, key: str) -> stripe.StripeClient:  # type: ignore[no-untyped-def]
    return stripe.StripeClient(
        key,
        base_addresses={"api": "http://testserver/sandbox/stripe"},
        http_client=_InjectedHTTP(client),
    )


def test_the_api_refuses_a_wrong_key_in_stripes_own_format(client, settings) -> None:
    good = sdk(client, settings.stripe_secret_key.get_secret_value())
    reference = good.v1.payment_intents.create(params={"amount": 1250, "currency": "hkd"}).id
    r = client.get(
        f"{API}/payment_intents/{reference}", headers={"Authorization": "Bearer sk_test_wrong"}
    )
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    assert "Invalid API Key provided" in r.json()["error"]["message"]
    assert client.get(f"{API}/payment_intents/{reference}").status_code == 401
    with pytest.raises(stripe.AuthenticationError):  # the SDK reads it as Stripe's own refusal
        sdk(client, "sk_test_wrong").v1.payment_intents.retrieve(reference)
    assert good.v1.payment_intents.retrieve(reference).status == "requires_payment_method"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        good.v1.payment_intents.retrieve("pi_nosuch")
    assert missing.value.code == "resource_missing"


def test_an_idempotency_key_replays_and_refuses_other_parameters(client, settings) -> None:
    auth = {
        "Authorization": f"Bearer {settings.stripe_secret_key.get_secret_value()}",
        "Idempotency-Key": "k-1",
    }
    form = {
        "amount": "1250",
        "currency": "hkd",
        "metadata[payment_id]": "p-1",
        "payment_method_types[0]": "card",
    }
    first = client.post(f"{API}/payment_intents", data=form, headers=auth)
    again = client.post(f"{API}/payment_intents", data=form, headers=auth)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["amount"] == 1250 and first.json()["metadata"] == {"payment_id": "p-1"}
    other = client.post(f"{API}/payment_intents", data={**form, "amount": "1"}, headers=auth)
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    bad = client.post(
        f"{API}/payment_intents",
        data={**form, "amount": "12.50"},
        headers={**auth, "Idempotency-Key": "k-2"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "parameter_invalid_integer"
