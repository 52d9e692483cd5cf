"""The store finder, /stores: the stores by district, open now or not (Hong Kong time), three languages."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import FrozenClock
from tests.web.helpers import ACCEPT_HTML, signed_in
from tongka.db import transaction
from tongka.demo import STORES_CSV
from tongka.stores import service
from tongka.stores.pages import status


@pytest.fixture
def stores(sessions: sessionmaker[Session]) -> None:
    """The demo's stores (only them: the finder needs nothing else)."""
    with transaction(sessions) as session, STORES_CSV.open(encoding="utf-8") as f:
        assert not service.import_stores(session, f).errors


def at(frozen_clock: FrozenClock, *local: int) -> None:
    """The clock at a Hong Kong time: at(clock, 2026, 12, 9, 12, 0)."""
    frozen_clock.now = datetime(*local, tzinfo=service.LOCAL_TIME).astimezone(UTC)  # type: ignore[misc]


def cards(page: str) -> dict[str, str]:
    """{store code: its card's HTML}, in the page's order."""
    return dict(
        re.findall(r'<article class="store" data-store="([^"]+)">(.*?)</article>', page, re.S)
    )


def statuses(page: str) -> dict[str, str]:
    return {
        code: html.unescape(
            re.search(r'data-testid="status"><strong>(.*?)</strong>', card).group(1)
        )  # type: ignore[union-attr]
        for code, card in cards(page).items()
    }


def get(client: TestClient, path: str, language: str = "en") -> str:
    r = client.get(path, headers={**ACCEPT_HTML, "Accept-Language": language})
    assert r.status_code == 200, r.text
    return r.text


def test_every_store_is_listed_with_its_address_station_and_map_link(
    client: TestClient, stores: None
) -> None:
    page = get(client, "/stores")
    found = cards(page)
    assert list(found) == [
        "ifc-mall",  # Central and Western, then Hong Kong's districts in their order...
        "times-square",
        "harbour-city",
        "langham-place",
        "apm",
        "landmark-north",
        "lo-wu",
        "lok-ma-chau",
        "new-town-plaza",
        "luohu-port",  # ...then Shenzhen's
        "futian-port",
    ]
    lo_wu = found["lo-wu"]
    assert "<h2>tongka Lo Wu</h2>" in lo_wu and "<small>North</small>" in lo_wu
    assert "Shop 3, Departure Hall, Lo Wu Control Point, Lo Wu, New Territories" in lo_wu
    assert "Border crossing: Lo Wu (Luohu)" in lo_wu
    assert 'href="geo:22.528100,114.113100"' in lo_wu
    assert "Nearest MTR station: Tsim Sha Tsui" in found["harbour-city"]
    # The filter offers the districts that have a store, in the same order.
    options = re.findall(r'<option value="([^"]*)"', page)
    assert options == [
        "",
        "Central and Western",
        "Wan Chai",
        "Yau Tsim Mong",
        "Kwun Tong",
        "North",
        "Sha Tin",
        "Shenzhen Luohu",
        "Shenzhen Futian",
    ]
    assert '<label for="district">District</label>' in page


def test_a_district_shows_its_stores_only(client: TestClient, stores: None) -> None:
    page = get(client, "/stores?district=North")
    assert list(cards(page)) == ["landmark-north", "lo-wu", "lok-ma-chau"]
    assert '<option value="North" selected>North</option>' in page
    # The language links keep the district.
    assert 'href="/stores?district=North&amp;lang=zh-Hant"' in page

    everything = get(client, "/stores?district=")
    assert len(cards(everything)) == 11 and "selected" not in everything
    nowhere = get(client, "/stores?district=Atlantis")
    assert cards(nowhere) == {} and "No tongka store in this district yet." in nowhere


def test_open_now_and_when_it_closes_or_opens_in_hong_kong_time(
    client: TestClient, stores: None, frozen_clock: FrozenClock
) -> None:
    at(frozen_clock, 2026, 12, 9, 12, 0)  # Wednesday noon
    now = statuses(get(client, "/stores"))
    assert now["harbour-city"] == "Open now · closes at 22:00"
    assert now["lo-wu"] == "Open now · closes at 24:00"
    assert now["ifc-mall"] == "Open now · closes at 21:00"

    at(frozen_clock, 2026, 12, 9, 23, 0)  # Wednesday night
    now = statuses(get(client, "/stores"))
    assert now["harbour-city"] == "Closed · opens at 10:00 tomorrow"
    assert now["apm"] == "Open now · closes at 24:00"
    assert now["lo-wu"] == "Open now · closes at 24:00"

    at(frozen_clock, 2026, 12, 12, 1, 30)  # Friday night, past midnight: Saturday 01:30
    now = statuses(get(client, "/stores"))
    assert now["apm"] == "Open now · closes at 02:00"  # Friday's hours, 11:00-02:00
    assert now["lo-wu"] == "Closed · opens at 06:30"  # later today
    assert now["langham-place"] == "Closed · opens at 11:00"

    at(frozen_clock, 2026, 12, 13, 12, 0)  # Sunday: the IFC store is closed all day
    now = statuses(get(client, "/stores"))
    assert now["ifc-mall"] == "Closed · opens at 09:00 tomorrow"
    at(frozen_clock, 2026, 12, 12, 20, 30)  # Saturday after closing: next open on Monday
    assert statuses(get(client, "/stores"))["ifc-mall"] == "Closed · opens Monday at 09:00"


def test_the_hours_of_the_week_with_today_marked(
    client: TestClient, stores: None, frozen_clock: FrozenClock
) -> None:
    at(frozen_clock, 2026, 12, 12, 12, 0)  # Saturday
    ifc = cards(get(client, "/stores?district=Central+and+Western"))["ifc-mall"]
    rows = re.findall(
        r'<tr( aria-current="date")?><th scope="row">(.*?)</th><td>(.*?)</td></tr>', ifc
    )
    assert rows == [
        ("", "Mon–Fri", "09:00–21:00"),
        (' aria-current="date"', "Sat", "10:00–20:00"),
        ("", "Sun", "Closed"),
    ]
    lo_wu = cards(get(client, "/stores?district=North"))["lo-wu"]
    assert re.findall(
        r'<tr aria-current="date"><th scope="row">(.*?)</th><td>(.*?)</td>', lo_wu
    ) == [("Every day", "06:30–24:00")]
    apm = cards(get(client, "/stores?district=Kwun+Tong&lang=zh-Hant"))["apm"]
    assert re.findall(r'<th scope="row">(.*?)</th><td>(.*?)</td>', apm) == [
        ("週一–週四", "11:00–24:00"),
        ("週五–週六", "11:00–02:00"),
        ("週日", "11:00–24:00"),
    ]


@pytest.mark.parametrize(
    ("language", "name", "district", "address", "nearest", "open_now", "tomorrow"),
    [
        (
            "zh-Hant",
            "通卡海港城店",
            "油尖旺區",
            "九龍尖沙咀廣東道3-27號海港城海運大廈2樓OT218號舖",
            "最近港鐵站：尖沙咀",
            "營業中 · 22:00 關門",
            "休息中 · 明天 10:00 開門",
        ),
        (
            "zh-Hans",
            "通卡海港城店",
            "油尖旺区",
            "九龙尖沙咀广东道3-27号海港城海运大厦2楼OT218号铺",
            "最近港铁站：尖沙咀",
            "营业中 · 22:00 关门",
            "休息中 · 明天 10:00 开门",
        ),
    ],
)
def test_the_finder_in_chinese(
    client: TestClient,
    stores: None,
    frozen_clock: FrozenClock,
    language: str,
    name: str,
    district: str,
    address: str,
    nearest: str,
    open_now: str,
    tomorrow: str,
) -> None:
    at(frozen_clock, 2026, 12, 9, 12, 0)
    page = get(client, f"/stores?lang={language}")
    assert f'<html lang="{language}">' in page
    card = cards(page)["harbour-city"]
    assert f"<h2>{name}</h2>" in card and f"<small>{district}</small>" in card
    assert address in card and nearest in card
    assert statuses(page)["harbour-city"] == open_now
    assert f'<option value="Yau Tsim Mong">{district}</option>' in page
    at(frozen_clock, 2026, 12, 9, 23, 0)
    assert statuses(get(client, "/stores", language))["harbour-city"] == tomorrow
    assert "Open now" not in page and "Closed" not in page


def test_status_words_for_the_rarer_cases() -> None:
    now = datetime(2026, 12, 9, 12, 0, tzinfo=service.LOCAL_TIME)
    always = service.opening(service.parse_hours("daily 00:00-24:00"), now)
    assert status(always, now, "en") == "Open 24 hours"
    assert status(always, now, "zh-Hant") == "24 小時營業"
    weekend = service.opening(service.parse_hours("wed-thu 00:00-24:00; fri 00:00-03:00"), now)
    assert status(weekend, now, "en") == "Open now · closes Friday at 03:00"
    later = service.opening(service.parse_hours("sat 10:00-18:00"), now)
    assert status(later, now, "zh-Hans") == "休息中 · 星期六 10:00 开门"


def test_a_closed_store_leaves_the_finder(
    client: TestClient, stores: None, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    header, *rows = STORES_CSV.read_text(encoding="utf-8").splitlines()
    futian = next(r for r in rows if r.startswith("futian-port,"))
    path = tmp_path / "closing.csv"
    path.write_text(f"{header},active\n{futian},no\n", encoding="utf-8")
    with transaction(sessions) as session, path.open(encoding="utf-8") as f:
        assert service.import_stores(session, f).updated == 1
    page = get(client, "/stores")
    assert "futian-port" not in cards(page) and "Shenzhen Futian" not in page


def test_the_page_is_public_and_cached_briefly_unless_it_is_ones_own(
    client: TestClient, stores: None
) -> None:
    first = client.get("/stores", headers=ACCEPT_HTML)
    # A first visit sets this browser's CSRF cookie: that answer is its own, never shared.
    assert "set-cookie" in first.headers and first.headers["cache-control"] == "private, no-store"
    again = client.get("/stores", headers=ACCEPT_HTML)
    assert again.headers["cache-control"] == "public, max-age=60"
    assert again.headers["vary"] == "Accept-Language, Cookie"
    assert again.headers["content-language"] == "en"
    signed_in(client)
    mine = client.get("/stores", headers=ACCEPT_HTML)
    assert mine.status_code == 200 and mine.headers["cache-control"] == "private, no-store"
    assert len(cards(mine.text)) == 11
