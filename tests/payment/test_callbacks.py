"""Sandbox provider callbacks: verified, stored once, applied once."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import func, select

from tests import factories as f
from tests.payment.factories import bucket_count, status
from tests.sandbox.helpers import event, signed
from tongka.db import transaction
from tongka.payment.models import PaymentCallback
from tongka.payment.providers.sandbox import SIGNATURE_HEADER, sign
from tongka.renewal import flow

CALLBACK = "/api/v1/payments/callbacks/sandbox"

pytestmark = pytest.mark.usefixtures("generic_sandbox")


@pytest.fixture
def pending(client, sessions, demo):  # type: ignore[no-untyped-def]
    """A subscriber's order awaiting payment: (headers, order)."""
    headers, line, _ = f.new_subscriber(client, sessions)
    return headers, f.order(client, headers, line["id"])


def inbox_count(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(PaymentCallback)) or 0


def test_a_signed_callback_pays_and_fulfils(client, settings, pending) -> None:
    headers, order = pending
    body = event(order)
    r = client.post(CALLBACK, content=body, headers=signed(settings, body))
    assert r.status_code == 200
    assert status(client, headers, order) == ("fulfilled", "succeeded")


@pytest.mark.parametrize(
    "forgery", ["wrong_secret", "tampered_amount", "no_header", "stale", "garbage_header"]
)
def test_a_forged_callback_is_refused_and_changes_nothing(
    client, sessions, settings, pending, forgery
) -> None:
    headers, order = pending
    body = event(order)
    if forgery == "wrong_secret":
        hdrs = {SIGNATURE_HEADER: sign("not-the-secret", body, int(time.time()))}
    elif forgery == "tampered_amount":
        hdrs = signed(settings, body)
        body = body.replace(str(order["payment"]["amount"]).encode(), b"1")
    elif forgery == "no_header":
        hdrs = {}
    elif forgery == "stale":  # a captured callback replayed an hour later
        hdrs = signed(settings, body, at=int(time.time()) - 3600)
    else:
        hdrs = {SIGNATURE_HEADER: "t=abc,v1=zz"}
    r = client.post(CALLBACK, content=body, headers=hdrs)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_callback")
    assert status(client, headers, order) == ("awaiting_payment", "pending")
    assert (
        inbox_count(sessions) == 0 and bucket_count(sessions) == 1
    )  # the demo subscriber's bucket only


def test_signed_header_on_another_body_or_a_time_over_five_minutes_off_is_refused(
    client, sessions, settings, pending
) -> None:
    """PayPal's flaw, looked for here: the HMAC covers "<t>.<body>", the whole body with its event id."""
    headers, order = pending
    hdrs = signed(settings, event(order, event_id="evt_signed"))
    attempts = [(event(order, event_id="evt_chosen_by_the_sender"), hdrs)]
    for seconds in (-360, 360):
        body = event(order, event_id="evt_signed")
        attempts.append((body, signed(settings, body, at=int(time.time()) + seconds)))
    for body, hdrs in attempts:
        r = client.post(CALLBACK, content=body, headers=hdrs)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_callback")
    assert (
        status(client, headers, order) == ("awaiting_payment", "pending")
        and inbox_count(sessions) == 0
    )
    body = event(order, event_id="evt_signed")
    assert (
        client.post(
            CALLBACK, content=body, headers=signed(settings, body, at=int(time.time()) + 240)
        ).status_code
        == 200
    )
    with sessions() as s:
        assert s.scalars(select(PaymentCallback.event_id)).all() == ["evt_signed"]


def test_a_repeated_callback_credits_nothing_more(client, sessions, settings, pending) -> None:
    headers, order = pending
    body = event(order, event_id="evt_once")
    hdrs = signed(settings, body)
    before = bucket_count(sessions)
    for _ in range(3):
        assert client.post(CALLBACK, content=body, headers=hdrs).status_code == 200
    # The provider's own retry (same event, new signature time) and a second press in the sandbox.
    assert client.post(CALLBACK, content=body, headers=signed(settings, body)).status_code == 200
    f.pay(client, order["payment"]["id"])
    f.pay(client, order["payment"]["id"])
    assert bucket_count(sessions) == before + 1
    assert status(client, headers, order) == ("fulfilled", "succeeded")


def test_a_second_success_event_with_a_new_id_credits_nothing(
    client, sessions, settings, pending
) -> None:
    _headers, order = pending
    before = bucket_count(sessions)
    for _ in range(2):
        body = event(order)
        assert (
            client.post(CALLBACK, content=body, headers=signed(settings, body)).status_code == 200
        )
    assert bucket_count(sessions) == before + 1
    with sessions() as s:
        assert sorted(s.scalars(select(PaymentCallback.result))) == ["applied", "ignored"]


def test_a_failed_payment_leaves_the_order_open(client, sessions, pending) -> None:
    headers, order = pending
    before = bucket_count(sessions)
    f.pay(client, order["payment"]["id"], outcome="failed")
    assert status(client, headers, order) == ("awaiting_payment", "failed")
    assert bucket_count(sessions) == before


def test_a_callback_for_another_amount_is_held_not_fulfilled(
    client, sessions, settings, pending
) -> None:
    headers, order = pending
    body = event(order, amount=order["payment"]["amount"] - 1)
    assert client.post(CALLBACK, content=body, headers=signed(settings, body)).status_code == 200
    assert status(client, headers, order) == ("awaiting_payment", "pending")
    with sessions() as s:
        assert s.scalars(select(PaymentCallback.result)).all() == ["amount_mismatch"]


def test_unknown_provider_and_unknown_payment(client, sessions, settings, pending) -> None:
    _headers, order = pending
    body = event(order)
    r = client.post(
        "/api/v1/payments/callbacks/nopay", content=body, headers=signed(settings, body)
    )
    assert (r.status_code, r.json()["code"]) == (404, "provider_unknown")
    body = event(order, merchant_reference=str(uuid.uuid4()))
    assert client.post(CALLBACK, content=body, headers=signed(settings, body)).status_code == 200
    with sessions() as s:
        assert s.scalars(select(PaymentCallback.result)).all() == ["unknown_payment"]


def test_concurrent_copies_of_one_callback_credit_once(
    client, app, sessions, settings, pending
) -> None:
    headers, order = pending
    body = event(order, event_id="evt_concurrent")
    hdrs = signed(settings, body)
    before = bucket_count(sessions)
    providers = app.state.providers
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def deliver() -> None:
        try:
            barrier.wait(timeout=10)
            with transaction(sessions) as s:
                flow.handle_callback(s, providers, "sandbox", hdrs, body)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=deliver) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert bucket_count(sessions) == before + 1
    assert inbox_count(sessions) == 1
    assert status(client, headers, order) == ("fulfilled", "succeeded")
