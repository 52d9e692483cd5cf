"""A card saved for auto-renew through Stripe's SetupIntent (the sandbox's form), charged off-session."""

from __future__ import annotations

import re

from sqlalchemy import select

from tests.autorenew import factories as af
from tests.web.helpers import ACCEPT_HTML, csrf
from tongka.money import GB
from tongka.payment import providers as payment_providers
from tongka.payment.models import Payment
from tongka.renewal import autorenew


def save_card(client, who, number: str = "4242 4242 4242 4242") -> str:  # type: ignore[no-untyped-def]
    """Save a card on the line's auto-renew page, through the sandbox's card form; the page after."""
    client.cookies.set("tongka_session", who.headers["Authorization"].removeprefix("Bearer "))
    page = f"/settings/auto-renew/{who.line_id}"
    r = client.get(page, headers=ACCEPT_HTML)
    assert r.status_code == 200, r.text
    r = client.post(
        f"{page}/card",
        data={"csrf_token": csrf(r.text)},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("http://testserver/sandbox/stripe/setup/seti_")
    form = client.get(r.headers["location"])
    assert form.status_code == 200 and "Save card" in form.text
    action = re.search(r'action="([^"]+)"', form.text)
    secret = re.search(r'name="client_secret" value="([^"]+)"', form.text)
    back = re.search(r'name="return_url" value="([^"]+)"', form.text)
    assert action and secret and back
    r = client.post(
        action.group(1),
        data={
            "card_number": number,
            "expiry": "12 / 49",
            "cvc": "123",
            "client_secret": secret.group(1),
            "return_url": back.group(1).replace("&amp;", "&"),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(f"http://testserver{page}/card?setup_intent=seti_")
    r = client.get(r.headers["location"], headers=ACCEPT_HTML)
    assert r.status_code == 200 and str(r.url).endswith("?saved=card"), r.text
    return r.text


def run(client, sessions, settings) -> autorenew.Report:  # type: ignore[no-untyped-def]
    # The providers' calls go to the simulators in this same app, in-process.
    return autorenew.run(sessions, payment_providers.build(settings, http=client), settings)


def test_a_saved_card_is_charged_off_session(
    client, sessions, settings, demo, frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=0)  # the wallet could not pay
    page = save_card(client, who)
    assert "visa 4242" in page
    body = af.rule(client, who, source="card")
    assert body["card"] == "visa 4242"
    af.use(sessions, who, 9 * GB)
    report = run(client, sessions, settings)
    assert (report.bought, report.failed) == (1, 0)
    assert af.orders(sessions, who) == [("auto", "fulfilled", 5800)]
    assert af.wallet(sessions, who) == 0
    with sessions() as s:
        [payment] = s.scalars(
            select(Payment).where(Payment.id == af.attempts(sessions, who)[0].payment_id)
        )
        assert (payment.provider, payment.method, payment.status) == (
            "stripe",
            "saved_card",
            "succeeded",
        )
        assert payment.provider_reference.startswith("pi_")
    assert [k for k, _p in af.alerts(sessions, who)] == ["auto_renew_done"]


def test_a_card_that_declines_fails_and_pauses_the_rule(
    client, sessions, settings, demo, frozen_clock
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=0)
    save_card(client, who, "4000 0000 0000 0341")  # saved; every charge of it declined
    af.rule(client, who, source="card")
    af.use(sessions, who, 9 * GB)
    for minutes in (0, 11, 11):
        frozen_clock.advance(minutes=minutes)
        assert run(client, sessions, settings).failed == 1
    assert [o[1] for o in af.orders(sessions, who)] == ["cancelled"] * 3
    assert [a.reason for a in af.attempts(sessions, who)] == ["card_declined"] * 3
    assert not af.the_rule(sessions, who).active
    told = [p for kind, p in af.alerts(sessions, who) if kind == "auto_renew_failed"]
    assert {p["reason"] for p in told} == {"card"} and sorted(p["paused"] for p in told) == [
        False,
        False,
        True,
    ]


def test_the_rule_is_set_on_the_page_in_the_owners_language(client, sessions, demo) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, language="zh-Hant")
    client.cookies.set("tongka_session", who.headers["Authorization"].removeprefix("Bearer "))
    page = f"/settings/auto-renew/{who.line_id}"
    r = client.get(page, headers=ACCEPT_HTML)
    assert r.status_code == 200 and "<h1>自動續費</h1>" in r.text
    pack = re.search(r'<option value="([0-9a-f-]{36})"[^>]*>[^<]*香港 5 GB', r.text)
    assert pack, r.text
    form = {
        "csrf_token": csrf(r.text),
        "zone": "hk",
        "threshold_percent": "25",
        "pack_id": pack.group(1),
        "source": "wallet",
        "monthly_cap": "150",
        "currency": "HKD",
    }
    r = client.post(page, data=form, headers=ACCEPT_HTML)
    assert r.status_code == 200 and str(r.url).endswith("?saved=rule")
    got = client.get(f"/api/v1/lines/{who.line_id}/auto-renew", headers=who.headers).json()
    assert (got["threshold_percent"], got["monthly_cap"], got["source"]) == (25, 150_00, "wallet")
    # A card cannot be chosen before one is saved: refused with the reason, nothing changed.
    r = client.post(
        page, data={**form, "source": "card", "threshold_percent": "30"}, headers=ACCEPT_HTML
    )
    assert r.status_code == 422
    got = client.get(f"/api/v1/lines/{who.line_id}/auto-renew", headers=who.headers).json()
    assert got["threshold_percent"] == 25
    # Off, from the page.
    r = client.post(f"{page}/off", data={"csrf_token": form["csrf_token"]}, headers=ACCEPT_HTML)
    assert r.status_code == 200
    assert (
        client.get(f"/api/v1/lines/{who.line_id}/auto-renew", headers=who.headers).status_code
        == 404
    )


def test_another_subscribers_page_is_not_found(client, sessions, demo) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions)
    from tests.web.helpers import signed_in

    signed_in(client)
    r = client.get(f"/settings/auto-renew/{who.line_id}", headers=ACCEPT_HTML)
    assert r.status_code == 404
