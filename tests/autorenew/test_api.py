"""The auto-renew API: the line's owner only; what it refuses."""

from __future__ import annotations

import uuid

from tests import factories as f
from tests.autorenew import factories as af
from tongka.money import GB


def test_the_owner_sets_reads_and_removes_the_rule(client, sessions, demo) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=GB)
    url = f"/api/v1/lines/{who.line_id}/auto-renew"
    r = client.get(url, headers=who.headers)
    assert (r.status_code, r.json()["code"]) == (404, "auto_renew_not_found")
    body = af.rule(client, who, threshold_percent=15, monthly_cap=120_00)
    assert body["threshold_percent"] == 15 and body["zone"] == "hk" and body["source"] == "wallet"
    assert body["active"] is True and body["card"] is None
    assert body["this_month"]["spent"] == 0 and body["this_month"]["left"] == 120_00
    assert client.get(url, headers=who.headers).json() == body
    # Set again: replaced, not a second rule.
    assert af.rule(client, who, threshold_percent=30)["threshold_percent"] == 30
    r = client.delete(url, headers=who.headers)
    assert r.status_code == 204
    assert client.get(url, headers=who.headers).status_code == 404
    assert client.delete(url, headers=who.headers).status_code == 404


def test_another_subscribers_line_is_not_found(client, sessions, demo) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions)
    af.rule(client, who)
    stranger = f.subscriber(client)
    url = f"/api/v1/lines/{who.line_id}/auto-renew"
    for method in ("GET", "DELETE"):
        r = client.request(method, url, headers=stranger)
        assert (r.status_code, r.json()["code"]) == (404, "line_not_found"), method
    thief = af.Owner(stranger, who.line_id, who.account_id)
    assert af.rule(client, thief, expect=404)["code"] == "line_not_found"
    assert client.get(url, headers=who.headers).json()["monthly_cap"] == 200_00  # untouched
    r = client.get(f"/api/v1/lines/{uuid.uuid4()}/auto-renew", headers=who.headers)
    assert r.status_code == 404


def test_what_a_rule_cannot_be(client, sessions, demo) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions)  # a wallet in HKD
    for bad in ({"threshold_percent": 0}, {"threshold_percent": 100}, {"monthly_cap": -1}):
        assert af.rule(client, who, expect=422, **bad)["code"] == "validation_error", bad
    mainland = f.pack_id(client, "mainland-5gb-30d")
    assert af.rule(client, who, expect=422, pack_id=mainland)["code"] == "auto_renew_pack_zone"
    both = f.pack_id(client, "both-5gb-30d")  # a pack for both zones counts in Hong Kong too
    assert af.rule(client, who, pack_id=both)["pack_id"] == both
    r = af.rule(client, who, expect=409, currency="CNY")  # the wallet is in HKD
    assert r["code"] == "wallet_currency_mismatch"
    assert af.rule(client, who, expect=422, source="card")["code"] == "auto_renew_card_not_saved"
    assert af.rule(client, who, expect=422, monthly_cap=10**9)["code"] == "auto_renew_cap_invalid"
    assert af.rule(client, who, expect=404, pack_id=str(uuid.uuid4()))["code"] == "pack_not_found"
