"""The anti-phishing code: set on /settings and by the API; every email and SMS to its account
starts with it; messages to an account without one carry nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.console.helpers import post
from tests.web.helpers import ACCEPT_HTML, signed_in
from tongka.db import transaction
from tongka.notify import service as notify
from tongka.notify.models import OutboxMessage

API = "/api/v1/account/anti-phishing"


def _account_id(client, headers) -> uuid.UUID:  # type: ignore[no-untyped-def]
    return uuid.UUID(client.get("/api/v1/me", headers=headers).json()["id"])


def _messages(sessions, account_id: uuid.UUID) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
    with transaction(sessions) as s:
        notify.send_email(
            s,
            to="a@example.com",
            template="password_changed",
            language="zh-Hant",
            account_id=account_id,
            username="someone",
            changed_at=datetime(2026, 12, 1, tzinfo=UTC),
        )
        notify.send_sms(
            s,
            to="+85291234567",
            template="bind_code",
            language="en",
            account_id=account_id,
            code="12345678",
            minutes=10,
        )
    with sessions() as s:
        return list(
            s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.account_id == account_id)
                .order_by(OutboxMessage.channel)
            )
        )


def test_the_api_sets_shows_and_clears_the_code(client) -> None:
    headers = f.subscriber(client)
    assert client.get(API, headers=headers).json() == {"code": None}
    r = client.put(API, json={"code": "藍色貓貓42"}, headers=headers)
    assert r.status_code == 200 and r.json() == {"code": "藍色貓貓42"}
    assert client.get(API, headers=headers).json() == {"code": "藍色貓貓42"}
    assert client.put(API, json={"code": None}, headers=headers).json() == {"code": None}
    assert client.get(API, headers=headers).json() == {"code": None}


@pytest.mark.parametrize("code", ["x", "two words", "emoji😀", "<b>", "a" * 17])
def test_a_code_out_of_form_is_refused(client, code: str) -> None:
    headers = f.subscriber(client)
    r = client.put(API, json={"code": code}, headers=headers)
    assert r.status_code == 422


def test_the_username_and_the_password_are_refused(client) -> None:
    username, password = f"u{uuid.uuid4().hex[:8]}", "Sesame12345"
    r = client.post(
        "/api/v1/accounts",
        json={"username": username, "password": password, "email": f"{username}@example.com"},
    )
    assert r.status_code == 201, r.text
    headers = f.login(client, username, password)
    for code in (username.upper(), password):
        r = client.put(API, json={"code": code}, headers=headers)
        assert r.status_code == 422 and r.json()["code"] == "bad_anti_phishing_code"


def test_the_next_email_and_sms_carry_the_code(client, sessions) -> None:
    headers = f.subscriber(client)
    account_id = _account_id(client, headers)
    client.put(API, json={"code": "Mango7"}, headers=headers)
    email, sms = _messages(sessions, account_id)
    assert email.html is not None and "您的防釣魚碼：Mango7" in email.html
    assert email.body.startswith("您的防釣魚碼：Mango7\n")
    assert sms.body.startswith("[Mango7] [tongka] Your tongka code is 12345678.")


def test_messages_to_an_account_without_a_code_carry_none(client, sessions) -> None:
    headers = f.subscriber(client)
    email, sms = _messages(sessions, _account_id(client, headers))
    assert "防釣魚碼" not in email.body and "防釣魚碼" not in (email.html or "")
    assert sms.body.startswith("[tongka] ")


def test_every_email_points_to_the_check(client, sessions) -> None:
    headers = f.subscriber(client)
    email, _sms = _messages(sessions, _account_id(client, headers))
    assert "/official" in (email.html or "") and "是否官方渠道？" in email.body
    assert email.body.rstrip().endswith("tongka 通卡")  # the signature stays last


def test_the_settings_page_sets_the_code(client, sessions) -> None:
    headers = signed_in(client)
    page = client.get("/settings", headers=ACCEPT_HTML)
    assert page.status_code == 200 and 'id="anti-phishing-code"' in page.text
    r = post(client, "/settings", "/settings/anti-phishing", {"code": "Mango7"})
    assert (r.status_code, r.headers["location"]) == (303, "/settings?saved=anti_phishing")
    assert client.get(API, headers=headers).json() == {"code": "Mango7"}
    assert "Now: Mango7" in client.get("/settings", headers=ACCEPT_HTML).text
    r = post(client, "/settings", "/settings/anti-phishing", {"code": "no way"})
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text and "no way" in r.text
    assert client.get(API, headers=headers).json() == {"code": "Mango7"}
    r = post(client, "/settings", "/settings/anti-phishing", {"code": ""})
    assert r.headers["location"] == "/settings?saved=anti_phishing_removed"
    assert client.get(API, headers=headers).json() == {"code": None}


@pytest.mark.parametrize(
    ("language", "never"),
    [
        ("en", "never asks for a payment by link"),
        ("zh-Hans", "绝不会通过链接要求付款"),
        ("zh-Hant", "絕不會透過連結要求付款"),
    ],
)
def test_every_email_says_we_never_ask_for_a_payment_by_link(language: str, never: str) -> None:
    from tests.notify.test_templates import LONGEST
    from tongka.notify import render

    for name, parts in render.templates().items():
        if "sms" in parts:
            continue
        mail = render.email(name, language, **LONGEST[name])
        assert never in mail.text and never in mail.html, (name, language)
        assert render.official_url() in mail.text and render.official_url() in mail.html
