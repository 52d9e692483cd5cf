"""Overage: data beyond the packs only by the owner's choice, charged to the wallet at the published rate,
up to a monthly cap; and usage beyond everything, owed and paid back from the next pack."""

from __future__ import annotations

from tests.charging import calls
from tests.charging import factories as f
from tests.charging.factories import HK_PLMN, HK_RATE, MAINLAND_PLMN
from tests.ledger.factories import T0
from tests.wallet import factories as wallet
from tongka.charging import overage
from tongka.charging import service as charging
from tongka.charging.models import OverageMonth
from tongka.ledger import buckets
from tongka.money import MB

VALIDITY = 600


def quota(session, cs, requested: int):  # type: ignore[no-untyped-def]
    return calls.request_quota(session, cs, 1, requested, VALIDITY, T0)


def test_overage_is_off_by_default_and_data_stops(session) -> None:
    line, owner = f.overage_line(session, wallet=10_000)
    f.bucket(session, line, "hk", 10 * MB)
    cs = f.open_session(session, line)
    result = quota(session, cs, 30 * MB)
    assert (result.granted_bytes, result.final_unit) == (10 * MB, True)
    assert quota(session, cs, 1 * MB).result_code == charging.QUOTA_LIMIT_REACHED
    assert wallet.available(session, owner.id) == 10_000


def test_overage_grants_beyond_the_buckets_from_the_wallet_at_the_published_rate(session) -> None:
    line, owner = f.overage_line(session, wallet=10_000, cap=2_000)
    f.bucket(session, line, "hk", 10 * MB)
    cs = f.open_session(session, line)

    result = quota(session, cs, 30 * MB)
    assert (result.result_code, result.granted_bytes, result.final_unit) == (
        "SUCCESS",
        30 * MB,
        False,
    )
    bucket_part, wallet_part = result.grant.reservations
    assert (bucket_part.volume_bytes, bucket_part.per_mb) == (10 * MB, None)
    assert (wallet_part.volume_bytes, wallet_part.amount, wallet_part.per_mb) == (
        20 * MB,
        20 * HK_RATE,
        HK_RATE,
    )
    assert wallet.available(session, owner.id) == 10_000 - 100  # held, not yet spent

    usage = calls.report_usage(session, result.grant, 12 * MB + 1)  # 2 MB and one byte of overage
    assert (usage.charged_bytes, usage.unreserved_bytes) == (12 * MB + 1, 0)
    assert wallet.available(session, owner.id) == 10_000 - (
        2 * HK_RATE + 1
    )  # the byte rounds the price up a cent
    month = session.get_one(OverageMonth, (line.id, overage.month_of(T0)))
    assert (month.charged, month.volume_bytes, month.currency) == (
        2 * HK_RATE + 1,
        2 * MB + 1,
        "HKD",
    )


def test_the_monthly_cap_counts_what_was_charged_and_what_open_grants_hold(session) -> None:
    line, owner = f.overage_line(session, wallet=100_000, cap=100)  # HK$1.00: 20 MB at HK$0.05
    cs = f.open_session(session, line)
    first = quota(session, cs, 15 * MB)
    assert first.granted_bytes == 15 * MB
    second = quota(session, cs, 15 * MB)
    assert (second.granted_bytes, second.final_unit) == (5 * MB, True)
    assert quota(session, cs, MB).result_code == charging.QUOTA_LIMIT_REACHED
    calls.report_usage(session, first.grant, 3 * MB)  # 12 MB of the first grant's hold comes back
    assert quota(session, cs, 100 * MB).granted_bytes == 12 * MB
    assert wallet.available(session, owner.id) == 100_000 - 100


def test_the_wallet_limits_overage_below_the_cap(session) -> None:
    line, owner = f.overage_line(session, wallet=7, cap=10_000)  # 7 cents: 1.4 MB
    cs = f.open_session(session, line)
    result = quota(session, cs, 10 * MB)
    assert result.granted_bytes == 7 * MB // HK_RATE and result.final_unit
    calls.report_usage(session, result.grant, result.granted_bytes)
    assert wallet.available(session, owner.id) == 0


def test_turning_overage_off_stops_it_and_the_rate_follows_the_zone(session) -> None:
    line, owner = f.overage_line(session, wallet=10_000, cap=10_000)
    mainland = f.open_session(session, line, MAINLAND_PLMN)
    grant = quota(session, mainland, 10 * MB).grant
    assert grant.reservations[0].per_mb == HK_RATE + 2
    overage.configure(session, line, owner, enabled=False, monthly_cap=10_000, currency="HKD")
    assert quota(session, mainland, MB).result_code == charging.QUOTA_LIMIT_REACHED


def test_overage_granted_before_it_was_turned_off_is_still_charged_when_used(session) -> None:
    line, owner = f.overage_line(session, wallet=10_000, cap=10_000)
    cs = f.open_session(session, line)
    grant = quota(session, cs, 10 * MB).grant
    overage.configure(session, line, owner, enabled=False, monthly_cap=10_000, currency="HKD")
    usage = calls.report_usage(session, grant, 4 * MB)
    assert (usage.charged_bytes, usage.unreserved_bytes) == (4 * MB, 0)
    assert wallet.available(session, owner.id) == 10_000 - 4 * HK_RATE
    month = session.get_one(OverageMonth, (line.id, overage.month_of(T0)))
    assert (month.currency, month.charged, month.volume_bytes) == ("HKD", 4 * HK_RATE, 4 * MB)


def test_usage_beyond_the_grant_takes_what_is_left_then_overage_then_is_owed(session) -> None:
    line, owner = f.overage_line(session, wallet=10, cap=10_000)  # 10 cents: 2 MB of overage
    hk = f.bucket(session, line, "hk", 10 * MB)
    cs = f.open_session(session, line)
    grant = quota(session, cs, 4 * MB).grant
    excess = calls.settle_usage(session, cs, 1, 20 * MB)  # 16 MB beyond the grant
    assert excess == charging.ExcessCharge(
        from_buckets=6 * MB,
        overage_bytes=2 * MB,
        overage_amount=10,
        owed_bytes=8 * MB,
        overage_currency="HKD",
    )
    assert grant.status == "settled" and f.remaining(session, hk) == 0
    assert wallet.available(session, owner.id) == 0
    assert buckets.owed(session, line.id, "hk") == 8 * MB
    assert buckets.owed(session, line.id, "mainland") == 0
    view = buckets.line_balance(session, line.id, T0)
    assert (view.zones["hk"].owed_bytes, view.zones["hk"].remaining_bytes) == (8 * MB, 0)


def test_what_is_owed_comes_out_of_the_next_pack_before_any_new_quota(session) -> None:
    line, _owner = f.overage_line(session)
    cs = f.open_session(session, line)
    assert calls.settle_usage(session, cs, 1, 3 * MB).owed_bytes == 3 * MB
    assert quota(session, cs, MB).result_code == charging.QUOTA_LIMIT_REACHED
    renewal = f.bucket(session, line, "both", 10 * MB)
    result = quota(session, cs, 100 * MB)
    assert result.granted_bytes == 7 * MB
    assert buckets.owed(session, line.id, "hk") == 0
    assert f.remaining(session, renewal) == 0


def test_owed_data_in_one_zone_is_not_taken_from_a_pack_of_the_other(session) -> None:
    line, _owner = f.overage_line(session)
    hk = f.open_session(session, line, HK_PLMN)
    calls.settle_usage(session, hk, 1, 2 * MB)
    mainland_pack = f.bucket(session, line, "mainland", 10 * MB)
    mainland = f.open_session(session, line, MAINLAND_PLMN)
    assert quota(session, mainland, 10 * MB).granted_bytes == 10 * MB
    assert buckets.owed(session, line.id, "hk") == 2 * MB
    assert f.remaining(session, mainland_pack) == 0


def test_a_lapsed_overage_reservation_charges_its_usage_anew(session, frozen_clock) -> None:
    line, owner = f.overage_line(session, wallet=1_000, cap=1_000)
    cs = f.open_session(session, line)
    grant = quota(session, cs, 2 * MB).grant
    frozen_clock.advance(seconds=VALIDITY + charging.RESERVATION_MARGIN.total_seconds() + 1)
    buckets.expire_buckets(session)
    assert wallet.available(session, owner.id) == 1_000  # the hold was released
    usage = calls.report_usage(session, grant, 2 * MB)
    assert usage.unreserved_bytes == 2 * MB
    excess = calls.charge_usage(
        session, line, "hk", usage.unreserved_bytes, frozen_clock.now, reference="test"
    )
    assert (excess.overage_bytes, excess.overage_amount) == (2 * MB, 2 * HK_RATE)
    assert wallet.available(session, owner.id) == 1_000 - 2 * HK_RATE


# --- over HTTP: the owner's switch, the wallet, the published rates, the renewal page ----------------


def test_the_owner_turns_overage_on_with_a_cap_and_sees_the_month(client, sessions, demo) -> None:
    from tests import factories as tf

    headers, line, _ = tf.new_subscriber(client, sessions)
    url = f"/api/v1/lines/{line['id']}/overage"
    assert client.get(url, headers=headers).json() == {
        "line_id": line["id"],
        "enabled": False,
        "monthly_cap": 0,
        "currency": None,
        "this_month": {
            "month": client.get(url, headers=headers).json()["this_month"]["month"],
            "charged": 0,
            "held": 0,
            "left": 0,
            "volume_bytes": 0,
        },
    }
    assert client.get("/api/v1/wallet", headers=headers).json()["code"] == "wallet_not_found"

    r = client.put(
        url, headers=headers, json={"enabled": True, "monthly_cap": 5000, "currency": "HKD"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["monthly_cap"], r.json()["this_month"]["left"]) == (
        True,
        5000,
        5000,
    )
    assert client.get("/api/v1/wallet", headers=headers).json() == {
        "currency": "HKD",
        "available": 0,
        "held": 0,
    }

    r = client.put(
        url, headers=headers, json={"enabled": True, "monthly_cap": 5000, "currency": "CNY"}
    )
    assert (r.status_code, r.json()["code"]) == (409, "wallet_currency_mismatch")
    r = client.put(
        url, headers=headers, json={"enabled": True, "monthly_cap": -1, "currency": "HKD"}
    )
    assert r.status_code == 422
    r = client.put(
        url,
        headers=headers,
        json={"enabled": True, "monthly_cap": overage.MAX_CAP + 1, "currency": "HKD"},
    )
    assert (r.status_code, r.json()["code"]) == (422, "overage_cap_invalid")

    stranger = tf.subscriber(client)
    assert client.get(url, headers=stranger).status_code == 404
    r = client.put(
        url, headers=stranger, json={"enabled": False, "monthly_cap": 0, "currency": "HKD"}
    )
    assert r.status_code == 404
    assert client.get(url, headers=headers).json()["enabled"] is True  # unchanged by the stranger


def test_the_rates_are_published_per_zone_and_currency(client, session) -> None:
    overage.set_rate(session, "hk", "HKD", 5)
    overage.set_rate(session, "mainland", "CNY", 6)
    session.commit()
    rates = client.get("/api/v1/overage-rates").json()
    assert {"zone": "hk", "currency": "HKD", "per_mb": 5, "per_gb": 5120} in rates
    assert {"zone": "mainland", "currency": "CNY", "per_mb": 6, "per_gb": 6144} in rates


def test_the_operator_publishes_rates_from_the_cli(cli, session) -> None:
    f.overage_line(session)
    session.commit()
    assert cli("overage", "set-rate", "hk", "HKD", "9").exit_code == 0
    assert "hk        HKD  9 per MB" in cli("overage", "rates").output
    assert cli("overage", "set-rate", "moon", "HKD", "9").exit_code == 2
    assert "sent 0" in cli("charging", "notify").output
