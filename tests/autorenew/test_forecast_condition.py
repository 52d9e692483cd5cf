"""Auto-renew's forecast condition: a rule with `forecast_days` also buys when the line's data in
its zone is expected to run out in fewer days, once per crossing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests import factories as f
from tests.autorenew import factories as af
from tests.charging.factories import HK_PLMN, ensure_networks
from tests.forecast.factories import NOON, TODAY
from tests.web.helpers import ACCEPT_HTML, form_token
from tongka.charging.models import UsageDay
from tongka.db import transaction
from tongka.forecast import service as forecasts
from tongka.money import GB


@pytest.fixture
def at_noon(frozen_clock, demo):  # type: ignore[no-untyped-def]
    frozen_clock.now = NOON  # Monday 7 December 2026, Hong Kong
    return frozen_clock


def history(sessions, who: af.Owner, daily: int) -> None:  # type: ignore[no-untyped-def]
    """Four weeks of `daily` bytes a day in Hong Kong before today."""
    with transaction(sessions) as s:
        ensure_networks(s)
        for i in range(1, 29):
            s.add(
                UsageDay(
                    line_id=who.line_id,
                    day=TODAY - timedelta(days=i),
                    zone="hk",
                    plmn=HK_PLMN,
                    bytes=daily,
                    zero_rated_bytes=0,
                )
            )


def days_left(sessions, who: af.Owner, within: int = 30) -> int | None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return forecasts.days_left(s, who.line_id, "hk", NOON, within=within)


def test_the_forecast_buys_although_the_share_left_is_above_the_threshold(
    client, sessions, settings, at_noon
) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB, wallet=150_00)
    history(sessions, who, daily=GB * 12 // 10)  # 1.2 GB a day
    af.use(sessions, who, 6 * GB)  # 40 % left: far above 10 %
    assert days_left(sessions, who) == 3  # today's half, then 1.2 GB a day: short on Thursday
    # Without forecast_days the share alone decides: nothing bought.
    af.rule(client, who, threshold_percent=10)
    assert af.run(sessions, settings).bought == 0
    assert af.rule(client, who, threshold_percent=10, forecast_days=5)["forecast_days"] == 5
    assert af.run(sessions, settings).bought == 1
    assert af.orders(sessions, who) == [("auto", "fulfilled", 5800)]
    # The 5 GB bought ends the crossing and lasts beyond 5 days: it buys once, however often it runs.
    assert days_left(sessions, who) == 8  # 9 GB at 1.2 GB a day
    at_noon.advance(minutes=1)
    assert af.run(sessions, settings).bought == 0
    at_noon.advance(minutes=1)
    assert af.run(sessions, settings).bought == 0
    assert [a.status for a in af.attempts(sessions, who)] == ["succeeded"]
    assert af.wallet(sessions, who) == 150_00 - 5800


def test_the_forecast_far_enough_away_buys_nothing(client, sessions, settings, at_noon) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB)
    history(sessions, who, daily=GB * 4 // 10)  # 0.4 GB a day
    af.use(sessions, who, 6 * GB)
    assert days_left(sessions, who) == 10
    assert days_left(sessions, who, within=5) is None
    af.rule(client, who, threshold_percent=10, forecast_days=5)
    assert af.run(sessions, settings).bought == 0
    assert af.attempts(sessions, who) == []


def test_an_idle_zone_is_not_forecast_to_run_out(client, sessions, settings, at_noon) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, data=10 * GB)
    af.rule(client, who, threshold_percent=10, forecast_days=30)
    assert days_left(sessions, who) is None
    assert af.run(sessions, settings).bought == 0


@pytest.mark.parametrize("days", [0, 31, -1, "soon"])
def test_the_api_refuses_forecast_days_out_of_range(client, sessions, at_noon, days) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions)
    r = af.rule(client, who, expect=422, forecast_days=days)
    assert r["detail"]


def test_the_api_sets_and_clears_forecast_days(client, sessions, at_noon) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions)
    assert af.rule(client, who)["forecast_days"] is None
    assert af.rule(client, who, forecast_days=30)["forecast_days"] == 30
    r = client.get(f"/api/v1/lines/{who.line_id}/auto-renew", headers=who.headers)
    assert r.json()["forecast_days"] == 30
    assert af.rule(client, who, forecast_days=None)["forecast_days"] is None
    assert af.the_rule(sessions, who).forecast_days is None


def test_the_page_shows_and_sets_forecast_days(client, sessions, at_noon) -> None:  # type: ignore[no-untyped-def]
    who = af.owner(client, sessions, language="zh-Hant")
    client.cookies.set("tongka_session", who.headers["Authorization"].removeprefix("Bearer "))
    path = f"/settings/auto-renew/{who.line_id}"
    form = {
        "csrf_token": form_token(client, path),
        "zone": "hk",
        "threshold_percent": "10",
        "pack_id": f.pack_id(client, "hk-5gb-30d"),
        "source": "wallet",
        "monthly_cap": "100",
        "currency": "HKD",
    }
    bad = client.post(path, data={**form, "forecast_days": "40"}, headers=ACCEPT_HTML)
    assert bad.status_code == 400 and 'id="forecast_days-error"' in bad.text
    assert 'value="40"' in bad.text  # what was typed is shown again
    r = client.post(path, data={**form, "forecast_days": "5"}, headers=ACCEPT_HTML)
    assert r.status_code == 200 and str(r.url).endswith("?saved=rule")
    assert af.the_rule(sessions, who).forecast_days == 5
    assert 'name="forecast_days" type="number" value="5"' in r.text
    # Emptied: the share only.
    r = client.post(path, data={**form, "forecast_days": ""}, headers=ACCEPT_HTML)
    assert r.status_code == 200 and af.the_rule(sessions, who).forecast_days is None
    assert "或預測數據將於此日數內用完時購買" in r.text


def test_the_forecast_is_asked_only_when_it_can_decide(
    client, sessions, settings, at_noon, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    asked: list[int] = []

    def counted(*args, within: int, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(within)
        return None

    monkeypatch.setattr(forecasts, "days_left", counted)
    who = af.owner(client, sessions, data=10 * GB)
    af.rule(client, who, threshold_percent=10)  # no forecast_days: never asked
    assert af.run(sessions, settings).bought == 0 and asked == []
    af.rule(client, who, threshold_percent=10, forecast_days=5)
    assert af.run(sessions, settings).bought == 0 and asked == [5]
    af.use(
        sessions, who, 19 * GB // 2
    )  # 5 % left: the threshold decides, the forecast is not asked
    assert af.run(sessions, settings).bought == 1 and asked == [5]


def test_a_pack_too_small_for_the_forecast_is_bought_at_most_once_a_day(
    client, sessions, settings, at_noon
) -> None:  # type: ignore[no-untyped-def]
    """D = 10 days and a 5 GB pack that leaves 8: the forecast still says "soon" after the
    purchase, yet the next runs that day buy nothing (every 30 s up to the cap, else)."""
    who = af.owner(client, sessions, data=10 * GB, wallet=500_00)
    history(sessions, who, daily=GB * 12 // 10)
    af.use(sessions, who, 6 * GB)
    af.rule(client, who, threshold_percent=10, forecast_days=10)
    assert af.run(sessions, settings).bought == 1
    assert days_left(sessions, who, within=10) == 8  # still within D
    for _ in range(3):
        at_noon.advance(minutes=1)
        assert af.run(sessions, settings).bought == 0
    at_noon.advance(days=1)
    assert af.run(sessions, settings).bought == 1  # a day later, still short: once more
    assert [a.status for a in af.attempts(sessions, who)] == ["succeeded", "succeeded"]
