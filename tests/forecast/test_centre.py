"""The forecast on the personal centre (/account): in words, the covering pack with its Renew link,
the trip's date picker, and the projection for the chart (/account/usage/{line_id}.json)."""

from __future__ import annotations

import pytest

from tests import factories as f
from tests.forecast.factories import NOON, given
from tests.web.helpers import ACCEPT_HTML, signed_in
from tests.web.test_centre import text
from tongka.money import GB, MB


@pytest.fixture
def line(client, sessions, frozen_clock, demo):  # type: ignore[no-untyped-def]
    frozen_clock.now = NOON
    headers = signed_in(client)
    line_id: str = f.bind(client, headers, f.spare_numbers(sessions)[0])["id"]
    given(sessions, line_id, hk_daily=200 * MB, hk_left=2 * GB, now=NOON)
    return line_id


def test_the_centre_says_when_the_data_runs_out_and_what_covers_it(client, line) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/account", headers=ACCEPT_HTML)
    assert r.status_code == 200
    page = text(r.text)
    assert (
        "At this rate your Hong Kong data runs out on Thu, Dec 17 (between Wed and Fri)."
    ) in page
    assert (
        "The cheapest way to cover your use until Wed, Jan 6: Hong Kong 5 GB · 30 days, HK$58.00."
        in page
    )
    assert f'href="/renew/{line}?pack_id=' in r.text
    assert 'type="date"' in r.text and 'name="until"' in r.text

    r = client.get("/account", params={"until": "2026-12-12"}, headers=ACCEPT_HTML)
    assert "The data you have covers your use until Sat, Dec 12." in text(r.text)

    r = client.get("/account", params={"until": "2026-12-01"}, headers=ACCEPT_HTML)
    assert r.status_code == 400
    assert "The date to cover must be after today" in text(r.text)


def test_the_centre_speaks_traditional_chinese(client, line) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/account", params={"lang": "zh-Hant"}, headers=ACCEPT_HTML)
    page = text(r.text)
    assert "按目前用量，您的香港數據將於" in page and "用完" in page
    assert "覆蓋您到" in page and "HK$58.00" in page


def test_the_chart_gets_the_projected_data_left(client, line) -> None:  # type: ignore[no-untyped-def]
    body = client.get(f"/account/usage/{line}.json").json()
    zones = {z["zone"]: z for z in body["zones"]}
    assert zones["mainland"]["projection"] is None  # idle: nothing to project
    left = zones["hk"]["projection"]
    # Now, then as each day starts: 100 MB this afternoon, 200 a day after, never below zero.
    assert [round(x / MB) for x in left[:4]] == [2048, 1948, 1748, 1548]
    assert left[-1] == 0 and len(left) == 15 and len(body["ahead"]) == 14
    assert body["left_axis"] == "Data left (MB)"


def test_a_line_without_recent_use_has_nothing_to_forecast(
    client, sessions, frozen_clock, demo
) -> None:  # type: ignore[no-untyped-def]
    frozen_clock.now = NOON
    headers = signed_in(client)
    f.bind(client, headers, f.spare_numbers(sessions)[0])
    page = text(client.get("/account", headers=ACCEPT_HTML).text)
    assert "No data used in the last week: nothing to forecast from." in page
    assert "The cheapest way" not in page and "Renew with this pack" not in page
