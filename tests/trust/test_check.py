"""Is this official? The check against the operator's list, on the page and in the API."""

from __future__ import annotations

import pytest

from tests import factories as f
from tests.console.helpers import text
from tests.web.helpers import ACCEPT_HTML
from tongka import throttle
from tongka.trust import service

pytestmark = pytest.mark.usefixtures("official")


@pytest.mark.parametrize(
    "typed",
    [
        "3000 1234",
        "+852-3000-1234",
        "https://tongka.hk/renew",
        "pay.tongka.hk",  # our subdomain
        "Service <help@tongka.hk>",
        "https://instagram.com/TongkaHK",
        "@tongkahk",
    ],
)
def test_our_channels_are_official_however_written(session, typed: str) -> None:
    assert service.check(session, typed).official


@pytest.mark.parametrize(
    "typed",
    [
        "3000 1235",
        "tongka.hk.evil.com",
        "https://tongka-hk.com/pay",
        "https://xn--tngka-jye.hk",
        "https://tоngka.hk",  # Cyrillic о
        "help@tongka.hk.evil.com",
        "https://facebook.com/tongkahk",  # our handle, on a platform where it is not ours
        "http://tongka.hk@evil.com/",
    ],
)
def test_look_alikes_are_not_official(session, typed: str) -> None:
    assert not service.check(session, typed).official


def test_a_look_alike_is_said_to_borrow_our_name(session) -> None:
    assert service.check(session, "tongka-hk.com").looks_like_ours
    assert not service.check(session, "example.com").looks_like_ours


def test_an_active_store_code_is_official_and_a_removed_channel_is_not(session, sessions) -> None:
    f.stores(sessions)
    answer = service.check(session, "lo-wu")
    assert answer.official and answer.label("en")
    channel = service.find_channel(session, "phone", "30001234")
    assert channel is not None
    from tongka.staff import audit

    service.remove_channel(session, audit.CLI, channel.id)
    assert not service.check(session, "30001234").official


@pytest.mark.parametrize(
    ("language", "yes", "no"),
    [
        (
            "en",
            "This is tongka's customer service number.",
            "This is not one of tongka's channels.",
        ),
        ("zh-Hans", "这是通卡客服热线。", "这不是通卡的渠道。"),
        ("zh-Hant", "這是通卡客戶服務熱線。", "這不是通卡的渠道。"),
    ],
)
def test_the_page_answers_in_three_languages(client, language: str, yes: str, no: str) -> None:
    r = client.get(f"/official?value=30001234&lang={language}", headers=ACCEPT_HTML)
    assert r.status_code == 200
    assert 'role="status"' in r.text and "is-official" in r.text
    assert yes in text(r.text)
    r = client.get(f"/official?value=tongka.hk.evil.com&lang={language}", headers=ACCEPT_HTML)
    assert "not-official" in r.text and no in text(r.text)
    # The report form comes filled with what was checked.
    assert (
        'id="report-value" name="value" type="text" maxlength="300" required value="tongka.hk.evil.com"'
        in r.text
    )


def test_the_page_without_a_value_shows_the_form_and_the_list(client) -> None:
    r = client.get("/official", headers=ACCEPT_HTML)
    assert r.status_code == 200
    assert 'role="status"' not in r.text
    assert "+85230001234" in r.text and "Report a suspected scam" in r.text


def test_every_page_links_to_the_check(client) -> None:
    r = client.get("/stores", headers=ACCEPT_HTML)
    assert 'href="/official"' in r.text


@pytest.mark.parametrize(
    ("language", "what"),
    [("en", "tongka's web site"), ("zh-Hans", "通卡官网"), ("zh-Hant", "通卡官方網站")],
)
def test_the_api_answers_in_the_readers_language(client, language: str, what: str) -> None:
    r = client.get(
        "/api/v1/official/check",
        params={"value": "https://www.tongka.hk/x"},
        headers={"Accept-Language": language},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["official"] is True and body["kind"] == "web" and body["what"] == what
    r = client.get("/api/v1/official/check", params={"value": "tongka-hk.com"})
    assert r.json()["official"] is False and r.json()["looks_like_ours"] is True


def test_something_unreadable_is_a_422(client) -> None:
    r = client.get("/api/v1/official/check", params={"value": "a b c"})
    assert r.status_code == 422 and r.json()["code"] == "not_readable"
    r = client.get("/official?value=a+b+c", headers=ACCEPT_HTML)
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text


def test_checks_are_throttled_per_address(client, monkeypatch) -> None:
    monkeypatch.setattr(
        service,
        "CHECKS_BY_ADDRESS",
        throttle.Limit("official_check_address", 2, 3600, service.TooManyChecks),
    )
    for _ in range(2):
        assert client.get("/api/v1/official/check", params={"value": "30001234"}).status_code == 200
    r = client.get("/api/v1/official/check", params={"value": "30001234"})
    assert r.status_code == 429 and r.json()["code"] == "too_many_checks"
    assert "Retry-After" in r.headers
    r = client.get("/official?value=30001234", headers=ACCEPT_HTML)
    assert r.status_code == 429 and "Too many checks" in r.text
