"""The account pages (account/pages.py): register, log in and out, a new password by email, settings."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests import factories as f
from tests.helpers import FrozenClock
from tests.web.helpers import ACCEPT_HTML, csrf, form_token, signed_in
from tongka import web
from tongka.account.models import Account, PasswordReset
from tongka.charging import overage
from tongka.config import Settings
from tongka.db import transaction
from tongka.i18n import LANGUAGES, gettext
from tongka.notify.models import OutboxMessage

NEW_PASSWORD = "a brand new secret"


def post(client: httpx.Client, path: str, data: dict[str, str], page: str = "/login") -> Any:
    """POST a form as the browser does: with the CSRF token of a page it opened first."""
    token = form_token(client, page)
    return client.post(
        path, data={**data, "csrf_token": token}, headers=ACCEPT_HTML, follow_redirects=False
    )


def html_lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', html)
    assert found
    return found.group(1)


def account(sessions: sessionmaker[Session], username: str) -> Account:
    with sessions() as session:
        return session.scalars(select(Account).where(Account.username == username)).one()


def emails(sessions: sessionmaker[Session], to: str) -> list[OutboxMessage]:
    """The emails queued to `to`, newest first."""
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.to == to, OutboxMessage.channel == "email")
                .order_by(OutboxMessage.created_at.desc())
            )
        )


def reset_link(client: httpx.Client, to: str) -> str:
    """The reset link in the newest email to `to`, read from the dev outbox as a person reads it."""
    for message in client.get("/dev/outbox").json():  # newest first
        if message["channel"] == "email" and message["to"] == to:
            found = re.search(r"http://testserver(/password/reset\?token=[\w-]+)", message["body"])
            assert found, message["body"]
            return found.group(1)
    raise AssertionError(f"no email to {to}")


def logged_in(client: httpx.Client) -> str:
    """A new subscriber logged in through the log-in page (its cookie is then the site's own); the username."""
    username = f.register(client)["username"]
    r = post(client, "/login", {"username": username, "password": f.PASSWORD})
    assert r.status_code == 303, r.text
    return username


def me(client: httpx.Client, token: str) -> int:
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code


# --- every page, every language -----------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_page_renders_in_each_language(client: TestClient, language: str) -> None:
    pages = {
        "/register": "Create an account",
        "/login": "Log in",
        "/password/forgot": "Forgot your password?",
        "/password/reset?token=nothing": "This link does not work",
    }
    for path, heading in pages.items():
        sep = "&" if "?" in path else "?"
        r = client.get(f"{path}{sep}lang={language}", headers=ACCEPT_HTML)
        assert r.status_code == (400 if "reset" in path else 200), (path, r.text)
        assert html_lang(r.text) == language
        assert f"<h1>{gettext(heading, language)}</h1>" in r.text, (path, language)
    signed_in(client, language)
    r = client.get("/settings", headers=ACCEPT_HTML)
    assert r.status_code == 200 and html_lang(r.text) == language
    assert f"<h1>{gettext('Settings', language)}</h1>" in r.text
    # Every input has its label.
    for field in re.findall(r'<input id="([^"]+)"', r.text):
        assert f'<label for="{field}"' in r.text, field


def test_the_register_form_offers_the_three_languages_the_pages_first(client: TestClient) -> None:
    r = client.get("/register?lang=zh-Hant", headers=ACCEPT_HTML)
    options = re.findall(r'<option value="([^"]+)"[^>]*?( selected)?>', r.text)
    assert [code for code, _ in options] == list(LANGUAGES)
    assert [code for code, chosen in options if chosen] == ["zh-Hant"]


# --- register -----------------------------------------------------------------------------------


def test_registering_signs_the_browser_in(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    r = post(
        client,
        "/register",
        {
            "username": "Ada_Wong",
            "password": f.PASSWORD,
            "email": "ada@example.com",
            "language": "zh-Hans",
        },
        page="/register",
    )
    assert r.status_code == 303 and r.headers["location"] == "/lines/bind"
    assert "httponly" in r.headers["set-cookie"].lower()
    token = client.cookies["tongka_session"]
    assert me(client, token) == 200
    made = account(sessions, "ada_wong")
    assert (made.email, made.language) == ("ada@example.com", "zh-Hans")
    assert made.password_hash.startswith("$argon2id$")
    page = client.get("/settings", headers=ACCEPT_HTML)
    assert page.status_code == 200 and html_lang(page.text) == "zh-Hans"


def test_a_refused_registration_says_why_next_to_the_field(client: TestClient) -> None:
    taken = f.register(client)["username"]
    good = {"username": "newperson1", "password": f.PASSWORD, "email": "n@example.com"}
    cases = [
        ({**good, "password": "short"}, "password", "Choose a password of at least 10 characters"),
        ({**good, "password": "NewPerson1"}, "password", "not your username"),
        ({**good, "username": taken}, "username", "This username is taken"),
        ({**good, "email": "not-an-email"}, "email", "This is not in the expected form."),
        ({**good, "username": ""}, "username", "Fill in this field."),
    ]
    for data, field, said in cases:
        r = post(client, "/register", {**data, "language": "en"}, page="/register")
        assert r.status_code == 400, (field, r.text)
        assert said in r.text, (field, said)
        assert f'aria-describedby="{field}-error"' in r.text
        assert "tongka_session" not in r.cookies
    # What was typed stays, except the password.
    r = post(
        client,
        "/register",
        {**good, "email": "bad", "language": "en"},
        page="/register",
    )
    assert 'value="newperson1"' in r.text and f.PASSWORD not in r.text


def test_registrations_share_the_apps_limit_per_client_address(
    client: TestClient, frozen_clock: FrozenClock
) -> None:
    for _ in range(20):  # the app's registrations from the same address count too
        f.register(client)
    r = post(
        client,
        "/register",
        {"username": "onetoomany", "password": f.PASSWORD, "email": "o@example.com"},
        page="/register",
    )
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "Too many accounts were created from this address today." in r.text
    assert "tongka_session" not in client.cookies


# --- log in and out -----------------------------------------------------------------------------


def test_log_in_with_a_wrong_password_then_the_right_one_goes_to_next(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    username = f.register(client)["username"]
    page = client.get("/login?next=%2Fsettings", headers=ACCEPT_HTML)
    assert 'name="next" value="/settings"' in page.text
    for name in (username, "nobody-here"):  # never which of the two was wrong
        r = post(client, "/login", {"username": name, "password": "wrong password!", "next": "/x"})
        assert r.status_code == 400
        assert "The username or password is wrong." in r.text
        assert "tongka_session" not in client.cookies
    r = post(client, "/login", {"username": username, "password": f.PASSWORD, "next": "/settings"})
    assert r.status_code == 303 and r.headers["location"] == "/settings"
    assert client.get("/settings", headers=ACCEPT_HTML).status_code == 200


@pytest.mark.parametrize(
    ("asked", "went"),
    [
        ("/orders?x=1", "/orders?x=1"),
        ("https://evil.example/", "/account"),
        ("//evil.example/", "/account"),
        ("/\\evil.example", "/account"),
        ("", "/account"),
    ],
)
def test_next_after_log_in_stays_on_this_site(client: TestClient, asked: str, went: str) -> None:
    username = f.register(client)["username"]
    page = client.get("/login", params={"next": asked}, headers=ACCEPT_HTML)
    assert f'name="next" value="{went}"'.replace("&", "&amp;") in page.text.replace("&amp;", "&")
    r = post(client, "/login", {"username": username, "password": f.PASSWORD, "next": asked})
    assert r.status_code == 303 and r.headers["location"] == went


def test_log_in_is_throttled_per_account_in_the_pages_language(
    client: TestClient, frozen_clock: FrozenClock
) -> None:
    username = f.register(client)["username"]
    client.get("/login?lang=zh-Hans", headers=ACCEPT_HTML)
    for _ in range(5):
        r = post(client, "/login", {"username": username, "password": "wrong password!"})
        assert r.status_code == 400
    r = post(client, "/login", {"username": username, "password": f.PASSWORD})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert "登录失败次数过多" in r.text and html_lang(r.text) == "zh-Hans"
    assert "tongka_session" not in client.cookies
    frozen_clock.advance(1)
    r = post(client, "/login", {"username": username, "password": f.PASSWORD})
    assert r.status_code == 303  # the wait is over, and a success clears the count


def test_log_in_is_throttled_per_client_address(
    client: TestClient, frozen_clock: FrozenClock
) -> None:
    # 20 failures from one address, spread over usernames so that none is held back on its own.
    for _ in range(5):
        username = f.register(client)["username"]
        for _ in range(4):
            r = post(client, "/login", {"username": username, "password": "wrong password!"})
            assert r.status_code == 400
    fresh = f.register(client)["username"]
    r = post(client, "/login", {"username": fresh, "password": f.PASSWORD})
    assert r.status_code == 429 and "Too many failed log-ins. Try again in" in r.text


def test_log_out_ends_the_session_and_the_old_cookie_no_longer_works(client: TestClient) -> None:
    logged_in(client)
    old = client.cookies["tongka_session"]
    assert me(client, old) == 200
    r = post(client, "/logout", {}, page="/settings")
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "tongka_session" not in client.cookies
    assert me(client, old) == 401
    client.cookies.set("tongka_session", old)
    r = client.get("/settings", headers=ACCEPT_HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fsettings"


# --- a new password by email --------------------------------------------------------------------


def test_forgot_then_reset_sets_the_password_once_and_ends_every_session(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    username = f.register(client, language="zh-Hant")["username"]
    email = f"{username}@example.com"
    app_token = f.login(client, username)["Authorization"].removeprefix("Bearer ")
    r = post(client, "/password/forgot", {"email": email.upper()}, page="/password/forgot")
    assert r.status_code == 303 and r.headers["location"] == "/password/forgot?sent=1"
    sent = emails(sessions, email)
    assert [m.template for m in sent] == ["password_reset"] and sent[0].language == "zh-Hant"
    assert "30 分鐘" in sent[0].body and "絕不會" in sent[0].body  # expiry, never asks for it
    link = reset_link(client, email)
    token = link.split("token=")[1]
    with sessions() as session:
        stored = session.scalars(select(PasswordReset)).one()
        assert stored.token_hash != token and token not in stored.token_hash

    page = client.get(link, headers=ACCEPT_HTML)
    assert page.status_code == 200 and username in page.text
    weak = client.post(
        "/password/reset",
        data={"token": token, "password": "short", "csrf_token": csrf(page.text)},
        headers=ACCEPT_HTML,
    )
    assert weak.status_code == 400 and "at least 10 characters" in weak.text
    r = client.post(
        "/password/reset",
        data={"token": token, "password": NEW_PASSWORD, "csrf_token": csrf(page.text)},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/account"
    assert me(client, client.cookies["tongka_session"]) == 200  # this browser, signed in anew
    assert me(client, app_token) == 401  # every other session ended
    assert [m.template for m in emails(sessions, email)] == ["password_changed", "password_reset"]
    f.login(client, username, NEW_PASSWORD)
    assert (
        client.post(
            "/api/v1/auth/token", data={"username": username, "password": f.PASSWORD}
        ).status_code
        == 401
    )

    # The link works once.
    again = client.get(link, headers=ACCEPT_HTML)
    assert again.status_code == 400 and 'href="/password/forgot"' in again.text
    r = client.post(
        "/password/reset",
        data={"token": token, "password": "yet another secret", "csrf_token": csrf(page.text)},
        headers=ACCEPT_HTML,
    )
    # Signed in now, the page speaks the account's language.
    assert r.status_code == 400 and gettext("This link does not work", "zh-Hant") in r.text
    f.login(client, username, NEW_PASSWORD)


def test_a_reset_link_expires(
    client: TestClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    frozen_clock: FrozenClock,
) -> None:
    username = f.register(client)["username"]
    email = f"{username}@example.com"
    post(client, "/password/forgot", {"email": email}, page="/password/forgot")
    link = reset_link(client, email)
    frozen_clock.advance(settings.password_reset_ttl_seconds - 1)
    page = client.get(link, headers=ACCEPT_HTML)
    assert page.status_code == 200
    frozen_clock.advance(1)
    assert client.get(link, headers=ACCEPT_HTML).status_code == 400
    r = client.post(
        "/password/reset",
        data={
            "token": link.split("token=")[1],
            "password": NEW_PASSWORD,
            "csrf_token": csrf(page.text),
        },
        headers=ACCEPT_HTML,
    )
    assert r.status_code == 400 and "Ask for a new link" in r.text
    f.login(client, username)  # the password is unchanged


def test_an_unknown_email_gets_the_same_answer_and_no_email(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    username = f.register(client)["username"]
    answers = []
    for email in (f"{username}@example.com", "nobody@example.com"):
        r = post(client, "/password/forgot", {"email": email}, page="/password/forgot")
        assert r.status_code == 303
        answers.append(
            (r.headers["location"], client.get(r.headers["location"], headers=ACCEPT_HTML).text)
        )
    assert answers[0] == answers[1]
    assert "If an account has this email address" in answers[0][1]
    assert emails(sessions, "nobody@example.com") == []


def test_reset_links_are_capped_per_email_and_per_client_address(
    client: TestClient, sessions: sessionmaker[Session], frozen_clock: FrozenClock
) -> None:
    username = f.register(client)["username"]
    email = f"{username}@example.com"
    assert post(client, "/password/forgot", {"email": email}, "/password/forgot").status_code == 303
    r = post(client, "/password/forgot", {"email": email}, "/password/forgot")
    assert r.status_code == 429 and "Too many reset links" in r.text  # one a minute per email
    assert len(emails(sessions, email)) == 1
    # Twenty a day from one client address, whether or not the addresses are anyone's.
    for n in range(19):
        r = post(client, "/password/forgot", {"email": f"x{n}@example.com"}, "/password/forgot")
        assert r.status_code == 303, n
    r = post(client, "/password/forgot", {"email": "one-more@example.com"}, "/password/forgot")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 60


# --- settings -----------------------------------------------------------------------------------


def test_settings_ask_a_visitor_to_log_in(client: TestClient) -> None:
    r = client.get("/settings", headers=ACCEPT_HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fsettings"


def test_the_language_is_saved_and_the_page_answers_in_it_at_once(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    signed_in(client)
    client.get("/settings?lang=en", headers=ACCEPT_HTML)  # a language chosen in this browser before
    r = post(client, "/settings/language", {"language": "zh-Hant"}, page="/settings")
    assert r.status_code == 303
    page = client.get(r.headers["location"], headers=ACCEPT_HTML)
    assert html_lang(page.text) == "zh-Hant"
    assert gettext("Your language is saved.", "zh-Hant") in page.text
    assert client.get("/settings", headers=ACCEPT_HTML).text.count('lang="zh-Hant"') >= 1
    with sessions() as session:
        assert session.scalars(select(Account.language)).one() == "zh-Hant"
    r = post(client, "/settings/language", {"language": "fr"}, page="/settings")
    assert r.status_code == 400 and 'aria-describedby="language-error"' in r.text


def test_a_new_email_needs_the_password_and_the_old_address_is_told(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    signed_in(client)
    with sessions() as session:
        old = session.scalars(select(Account.email)).one()
    r = post(
        client,
        "/settings/email",
        {"email": "new@example.com", "password": "wrong password!"},
        page="/settings",
    )
    assert r.status_code == 400 and "Your current password is wrong." in r.text
    assert 'value="new@example.com"' in r.text
    r = post(
        client,
        "/settings/email",
        {"email": "new@example.com", "password": f.PASSWORD},
        page="/settings",
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"], headers=ACCEPT_HTML)
    assert "Your email address is changed." in page.text and "new@example.com" in page.text
    notice = emails(sessions, old)
    assert [m.template for m in notice] == ["email_changed"]
    assert "n***@example.com" in notice[0].body and "new@example.com" not in notice[0].body


def test_a_new_password_ends_other_sessions_and_keeps_this_browser_signed_in(
    client: TestClient,
) -> None:
    headers = f.login(client, logged_in(client))  # the app's session, besides the browser's
    old = client.cookies["tongka_session"]
    cases = [
        ({"current_password": "wrong password!", "new_password": NEW_PASSWORD}, "current_password"),
        ({"current_password": f.PASSWORD, "new_password": "short"}, "new_password"),
    ]
    for data, field in cases:
        r = post(client, "/settings/password", data, page="/settings")
        assert r.status_code == 400 and f'aria-describedby="{field}-error"' in r.text
    r = post(
        client,
        "/settings/password",
        {"current_password": f.PASSWORD, "new_password": NEW_PASSWORD},
        page="/settings",
    )
    assert r.status_code == 303 and r.headers["location"] == "/settings?saved=password"
    new = client.cookies["tongka_session"]
    assert new != old and me(client, new) == 200 and me(client, old) == 401
    page = client.get(r.headers["location"], headers=ACCEPT_HTML)
    assert page.status_code == 200 and "Your password is changed." in page.text
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_overage_on_with_a_cap_then_off_and_the_rates_shown(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    owner = f.new_subscriber(client, sessions)
    client.cookies.set("tongka_session", owner.headers["Authorization"].removeprefix("Bearer "))
    line_id = owner.line["id"]
    with transaction(sessions) as session:  # the published rates (PostgreSQL's tests start empty)
        overage.set_rate(session, "hk", "HKD", 5)
        overage.set_rate(session, "mainland", "HKD", 12)
    page = client.get("/settings", headers=ACCEPT_HTML)
    for per_mb in (5, 12):  # per MB and per GB
        assert web.money(per_mb, "HKD", "en") in page.text
        assert web.money(per_mb * 1024, "HKD", "en") in page.text
    assert f'action="/settings/overage/{line_id}"' in page.text

    r = post(
        client,
        f"/settings/overage/{line_id}",
        {"enabled": "on", "monthly_cap": "99.50", "currency": "HKD"},
        page="/settings",
    )
    assert r.status_code == 303
    got = client.get(f"/api/v1/lines/{line_id}/overage", headers=owner.headers).json()
    assert (got["enabled"], got["monthly_cap"], got["currency"]) == (True, 9950, "HKD")
    page = client.get(r.headers["location"], headers=ACCEPT_HTML)
    assert "Overage is saved for this line." in page.text and 'value="99.50"' in page.text

    r = post(
        client,
        f"/settings/overage/{line_id}",
        {"monthly_cap": "99.50", "currency": "HKD"},  # the switch unticked
        page="/settings",
    )
    assert r.status_code == 303
    got = client.get(f"/api/v1/lines/{line_id}/overage", headers=owner.headers).json()
    assert got["enabled"] is False

    for data, field in (
        ({"enabled": "on", "monthly_cap": "ten", "currency": "HKD"}, f"cap-{line_id}"),
        ({"enabled": "on", "monthly_cap": "10", "currency": "CNY"}, f"currency-{line_id}"),
    ):
        r = post(client, f"/settings/overage/{line_id}", data, page="/settings")
        assert r.status_code == 400 and f'aria-describedby="{field}-error"' in r.text


def test_another_subscribers_line_on_the_overage_form_is_a_404_page(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    owner = f.new_subscriber(client, sessions)
    signed_in(client)  # a stranger's browser
    r = post(
        client,
        f"/settings/overage/{owner.line['id']}",
        {"enabled": "on", "monthly_cap": "100", "currency": "HKD"},
        page="/settings",
    )
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    got = client.get(f"/api/v1/lines/{owner.line['id']}/overage", headers=owner.headers).json()
    assert got["enabled"] is False


# --- CSRF -----------------------------------------------------------------------------------------


def test_every_form_is_refused_without_this_browsers_token(
    client: TestClient, sessions: sessionmaker[Session], demo: None
) -> None:
    owner = f.new_subscriber(client, sessions)
    client.cookies.set("tongka_session", owner.headers["Authorization"].removeprefix("Bearer "))
    client.get("/settings", headers=ACCEPT_HTML)  # the CSRF cookie is set
    forms = {
        "/register": {"username": "csrfperson", "password": f.PASSWORD, "email": "c@example.com"},
        "/login": {"username": owner.username, "password": f.PASSWORD},
        "/logout": {},
        "/password/forgot": {"email": f"{owner.username}@example.com"},
        "/password/reset": {"token": "x", "password": NEW_PASSWORD},
        "/settings/language": {"language": "en"},
        "/settings/email": {"email": "c@example.com", "password": f.PASSWORD},
        "/settings/password": {"current_password": f.PASSWORD, "new_password": NEW_PASSWORD},
        f"/settings/overage/{owner.line['id']}": {
            "enabled": "on",
            "monthly_cap": "1",
            "currency": "HKD",
        },
    }
    for path, data in forms.items():
        for token in (None, "0" * 64):
            sent = data if token is None else {**data, "csrf_token": token}
            r = client.post(path, data=sent, headers=ACCEPT_HTML, follow_redirects=False)
            assert r.status_code == 403 and "Reload the page" in r.text, path
    assert me(client, client.cookies["tongka_session"]) == 200  # nothing happened
    assert emails(sessions, f"{owner.username}@example.com") == []
