"""The home page, /: the packs on sale on the web by zone with prices in the visitor's currency
first, the offers running on the web, the way in, the stores."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import production_settings
from tests.web.helpers import ACCEPT_HTML, signed_in
from tongka.app import create_app
from tongka.catalog import service as catalog
from tongka.db import transaction
from tongka.money import GB


def get(client: TestClient, path: str = "/", language: str = "en") -> str:
    r = client.get(path, headers={**ACCEPT_HTML, "Accept-Language": language})
    assert r.status_code == 200, r.text
    return html.unescape(r.text)


def zones(page: str) -> dict[str, list[tuple[str, str, str]]]:
    """{zone: [(volume, validity, price)]} as the page shows them."""
    found = {}
    for zone, body in re.findall(r'data-zone="(\w+)">(.*?)</section>', page, re.S):
        found[zone] = re.findall(
            r'<p class="volume">(.*?)</p>\s*<p>(.*?)</p>\s*<p class="price">(.*?)</p>', body
        )
    return found


def test_the_packs_on_sale_by_zone_in_hong_kong_dollars_first(
    client: TestClient, demo: None
) -> None:
    page = get(client)
    shown = zones(page)
    assert list(shown) == ["hk", "mainland", "both"]
    assert shown["hk"] == [
        ("1 GB", "7 days", "HK$18.00 <small>CN¥16.00</small>"),
        ("5 GB", "30 days", "HK$58.00 <small>CN¥52.00</small>"),
        ("10 GB", "30 days", "HK$88.00 <small>CN¥79.00</small>"),
    ]
    assert shown["both"][2] == ("10 GB", "30 days", "HK$158.00 <small>CN¥142.00</small>")
    assert '<h3 id="zone-mainland">Mainland</h3>' in page
    assert '<h3 id="zone-both">Mainland + Hong Kong</h3>' in page
    # The same packs as the API lists for the web channel.
    api = client.get("/api/v1/packs", params={"channel": "web"}).json()
    assert sum(len(packs) for packs in shown.values()) == len(api) == 9


@pytest.mark.parametrize(
    ("language", "heading", "hk5", "both_name"),
    [
        (
            "zh-Hans",
            "一张卡，内地香港两地通",
            ("5 GB", "30 天", "¥52.00 <small>HK$58.00</small>"),
            "内地+香港",
        ),
        (
            "zh-Hant",
            "一張卡，內地香港兩地通",
            ("5 GB", "30 日", "HK$58.00 <small>CN¥52.00</small>"),
            "內地+香港",
        ),
    ],
)
def test_the_home_page_in_chinese_prices_in_the_readers_currency_first(
    client: TestClient,
    demo: None,
    language: str,
    heading: str,
    hk5: tuple[str, str, str],
    both_name: str,
) -> None:
    page = get(client, f"/?lang={language}")
    assert f'<html lang="{language}">' in page and f"<h1>{heading}</h1>" in page
    assert zones(page)["hk"][1] == hk5
    assert f'<h3 id="zone-both">{both_name}</h3>' in page
    assert "Packs on sale" not in page and "Offers now" not in page


def test_a_pack_not_sold_on_the_web_is_not_on_the_home_page(
    client: TestClient, demo: None, sessions: sessionmaker[Session]
) -> None:
    with transaction(sessions) as session:
        catalog.upsert_pack(
            session,
            code="hk-50gb-30d-app",
            names={"en": "App only 50 GB"},
            zone="hk",
            volume_bytes=50 * GB,
            validity_days=30,
            prices={"HKD": 19800},
            channels=["app"],
        )
    assert "50 GB" not in get(client)


def test_the_offers_running_on_the_web_in_the_readers_language(
    client: TestClient, demo: None
) -> None:
    running = client.get("/api/v1/offers", params={"channel": "web"}).json()
    page = get(client)
    shown = re.findall(r'<li data-offer="([^"]+)"><strong>(.*?)</strong>(.*?)</li>', page)
    assert [(code, name) for code, name, _notes in shown] == [
        (o["code"], o["name"]) for o in running
    ]
    # The demo's app-only offers (first top-up, spend-and-save) are not the web's.
    assert {code for code, _name, _notes in shown} == {"demo-bonus-1gb", "demo-coupon"}
    notes = {code: notes for code, _name, notes in shown}
    assert "With a coupon code" in notes["demo-coupon"]
    assert "1 GB free with any 10 GB pack" in page
    assert "买 10GB 送 1GB" in get(client, "/?lang=zh-Hans")
    assert "買 10GB 送 1GB" in get(client, "/?lang=zh-Hant")


def test_a_visitor_is_offered_sign_up_log_in_and_the_stores(client: TestClient, demo: None) -> None:
    page = get(client)
    for link in ('href="/register" role="button"', 'href="/login" role="button"', 'href="/stores"'):
        assert link in page
    assert 'href="/account" role="button"' not in page
    # In dev, the demo's account and the outbox of what it "sent".
    demo_hint = re.search(r'data-testid="demo">(.*?)</p>', page, re.S)
    assert demo_hint is not None
    assert "Demo: log in as demo with the password demo-password." in demo_hint.group(1)
    assert 'href="/dev/outbox"' in demo_hint.group(1)


def test_a_signed_in_subscriber_is_offered_their_account(client: TestClient, demo: None) -> None:
    signed_in(client, language="zh-Hant")
    r = client.get("/", headers=ACCEPT_HTML)
    assert r.status_code == 200 and r.headers["cache-control"] == "private, no-store"
    assert '<html lang="zh-Hant">' in r.text  # the account's language
    assert 'href="/account" role="button"' in r.text and 'href="/register"' not in r.text


def test_an_empty_catalog_says_so(client: TestClient) -> None:
    page = get(client)
    assert "No packs on sale now." in page and 'data-testid="offers"' not in page


@pytest.fixture
def production_client(db_url: str) -> Iterator[TestClient]:
    app = create_app(production_settings(db_url, sandbox_payment_secret=secrets.token_urlsafe(32)))
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


def test_outside_dev_there_is_no_demo_hint(production_client: TestClient) -> None:
    page = get(production_client)
    assert "demo-password" not in page and "/dev/outbox" not in page
