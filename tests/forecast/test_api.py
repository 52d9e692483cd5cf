"""GET /api/v1/lines/{line_id}/forecast: the line's owner only; run-out per zone and the cheapest
covering packs, offers included (the demo's catalog and offers), on each backend."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from tests import factories as f
from tests.charging.factories import HK_PLMN, ensure_networks
from tests.forecast.factories import NOON, TODAY, given
from tongka.charging.models import UsageDay
from tongka.db import transaction
from tongka.money import GB, MB


@pytest.fixture
def owner(client, sessions, settings, frozen_clock, demo):  # type: ignore[no-untyped-def]
    frozen_clock.now = NOON
    return f.new_subscriber(client, sessions)


def forecast(client, owner, **query: str):  # type: ignore[no-untyped-def]
    r = client.get(
        f"/api/v1/lines/{owner.line['id']}/forecast", params=query, headers=owner.headers
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_steady_use_runs_out_and_the_cheapest_pack_covers_30_days(client, sessions, owner) -> None:  # type: ignore[no-untyped-def]
    given(sessions, owner.line["id"], hk_daily=200 * MB, hk_left=2 * GB, now=NOON)
    body = forecast(client, owner)
    hk = body["zones"]["hk"]
    # 100 MB this afternoon, then 200 a day: 1900 used by the end of the 16th, the rest on the 17th.
    assert hk["left_bytes"] == 2 * GB and hk["daily_bytes"] == 200 * MB
    assert hk["state"] == "active" and hk["since"] == str(TODAY - timedelta(days=28))
    assert hk["runs_out"] == {
        "day": "2026-12-17",
        "cause": "used_up",
        "low": "2026-12-16",
        "high": "2026-12-18",
    }
    assert body["zones"]["mainland"] == {
        "left_bytes": 0,
        "daily_bytes": 0,
        "state": "idle",
        "since": None,
        "runs_out": None,
    }
    rec = body["recommendation"]
    # 30 days from noon: 6000 MB at 200 a day (steady use: the high estimate is the same), 2048
    # left: a 5 GB Hong Kong pack (HK$58) is the cheapest that covers.
    assert rec["until"] == "2027-01-06" and rec["high_bytes"] == {"mainland": 0, "hk": 6000 * MB}
    assert [p["code"] for p in rec["packs"]] == ["hk-5gb-30d"]
    assert rec["total"] == {"amount": 5800, "currency": "HKD"}
    assert rec["found"] and not rec["covered_already"]


def test_offers_make_a_bigger_pack_the_cheapest(client, sessions, owner) -> None:  # type: ignore[no-untyped-def]
    given(sessions, owner.line["id"], hk_daily=400 * MB, hk_left=2 * GB, now=NOON)
    rec = forecast(client, owner)["recommendation"]
    # 12000 MB needed, 2048 left: two 5 GB packs (HK$116) or one 10 GB at HK$88 less the demo's
    # first top-up (20 % in the app, for a new customer): HK$70.40, with 1 GB of bonus data.
    assert [p["code"] for p in rec["packs"]] == ["hk-10gb-30d"]
    assert rec["total"] == {"amount": 7040, "currency": "HKD"}
    price = rec["packs"][0]["price"]
    assert [o["code"] for o in price["offers"]] == ["demo-first-topup", "demo-bonus-1gb"]

    in_yuan = forecast(client, owner, currency="CNY")["recommendation"]
    assert [p["code"] for p in in_yuan["packs"]] == ["hk-10gb-30d"]
    assert in_yuan["total"] == {"amount": 6320, "currency": "CNY"}  # ¥79 less 20 %


def test_a_trip_until_a_date_and_data_that_already_covers(client, sessions, owner) -> None:  # type: ignore[no-untyped-def]
    given(sessions, owner.line["id"], hk_daily=100 * MB, hk_left=2 * GB, now=NOON)
    rec = forecast(client, owner, until="2026-12-20")["recommendation"]
    assert rec["covered_already"] and rec["packs"] == [] and rec["total"] is None
    assert rec["until"] == "2026-12-20"

    rec = forecast(client, owner, until="2026-12-31")["recommendation"]
    assert [p["code"] for p in rec["packs"]] == ["hk-1gb-7d"]  # 2450 MB to the 31st's end


def test_the_period_must_be_ahead(client, owner) -> None:  # type: ignore[no-untyped-def]
    r = client.get(
        f"/api/v1/lines/{owner.line['id']}/forecast",
        params={"until": str(TODAY)},
        headers=owner.headers,
    )
    assert r.status_code == 422 and r.json()["code"] == "forecast_period_invalid"


def test_another_subscribers_line_is_not_found(client, sessions, owner) -> None:  # type: ignore[no-untyped-def]
    stranger = f.subscriber(client)
    r = client.get(f"/api/v1/lines/{owner.line['id']}/forecast", headers=stranger)
    assert r.status_code == 404
    r = client.get(f"/api/v1/lines/{uuid.uuid4()}/forecast", headers=owner.headers)
    assert r.status_code == 404
    assert client.get(f"/api/v1/lines/{owner.line['id']}/forecast").status_code == 401


def test_a_line_used_today_only_is_forecast_at_todays_pace(client, sessions, owner) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as s:
        ensure_networks(s)
        s.add(
            UsageDay(
                line_id=uuid.UUID(owner.line["id"]),
                day=TODAY,
                zone="hk",
                plmn=HK_PLMN,
                bytes=300 * MB,
                zero_rated_bytes=0,
            )
        )
    given(sessions, owner.line["id"], hk_daily=0, hk_left=GB, now=NOON)
    hk = forecast(client, owner)["zones"]["hk"]
    # 300 MB by noon: 600 a day. Of 1024 MB, 300 go this afternoon, 600 tomorrow, the rest the 9th.
    assert hk["state"] == "active" and hk["daily_bytes"] == 600 * MB and hk["since"] == str(TODAY)
    assert hk["runs_out"]["day"] == "2026-12-09"
