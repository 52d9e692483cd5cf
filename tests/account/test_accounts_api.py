"""Accounts, log-in and bearer tokens through the app API; problem details in the reader's language."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.account.factories import assert_problem
from tongka import i18n
from tongka.account.lines import LineNotFound
from tongka.account.models import AccessToken, Account
from tongka.account.service import WeakPassword

ACCOUNTS = "/api/v1/accounts"
TOKEN = "/api/v1/auth/token"
ME = "/api/v1/me"


def new_account(username: str, password: str = f.PASSWORD, **extra: str) -> dict[str, str]:
    return {"username": username, "password": password, "email": f"{username}@example.com", **extra}


# --- registration ------------------------------------------------------------------------------


@pytest.mark.usefixtures("real_hashing")
def test_register_returns_201_and_the_account_without_secrets(client, sessions) -> None:
    r = client.post(
        ACCOUNTS, json=new_account("Chan.Tai-Man_1", email=" chan@example.com ", language="zh-Hans")
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "username", "email", "language", "region", "created_at"}
    assert body["username"] == "chan.tai-man_1"  # kept lower-case
    assert body["email"] == "chan@example.com"
    assert body["language"] == "zh-Hans"
    uuid.UUID(body["id"])
    assert f.PASSWORD not in r.text
    with sessions() as s:
        account = s.get(Account, uuid.UUID(body["id"]))
        assert account is not None
        stored = account.password_hash
    assert f.PASSWORD not in stored
    # argon2id at no less than OWASP's minimum memory cost (19 MiB)
    params = re.fullmatch(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[^$]+\$[^$]+", stored)
    assert params, stored
    assert int(params[1]) >= 19 * 1024 and int(params[2]) >= 2


def test_register_defaults_to_traditional_chinese(client) -> None:
    r = client.post(ACCOUNTS, json=new_account("hongkonger"))
    assert r.status_code == 201, r.text
    assert r.json()["language"] == "zh-Hant"


def test_duplicate_username_is_409_whatever_its_case(client, sessions) -> None:
    f.register(client, "wongsiuming")
    for spelling in ("wongsiuming", "WongSiuMing", "WONGSIUMING"):
        r = client.post(ACCOUNTS, json=new_account(spelling, email="other@example.com"))
        assert_problem(r, 409, "username_taken")
    with sessions() as s:
        assert len(s.scalars(select(Account)).all()) == 1


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("lauwaiman", "short1234"),  # 9 characters
        ("lauwaiman", "x"),
        ("lauwaiman10", "lauwaiman10"),  # the username itself
        ("lauwaiman10", "LauWaiMan10"),  # ... in another case
    ],
)
def test_weak_password_is_refused(client, sessions, username: str, password: str) -> None:
    r = client.post(ACCOUNTS, json=new_account(username, password))
    body = assert_problem(r, 422, "weak_password")
    assert body["detail"] == WeakPassword.message
    with sessions() as s:
        assert s.scalars(select(Account)).all() == []


def test_a_password_of_exactly_ten_characters_is_enough(client) -> None:
    assert client.post(ACCOUNTS, json=new_account("tenletters", "0123456789")).status_code == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": None}, "email"),
        ({"username": "ab"}, "username"),
        ({"username": "x" * 33}, "username"),
        ({"username": ".dotfirst"}, "username"),
        ({"username": "with space"}, "username"),
        ({"username": "陈大文"}, "username"),
        ({"language": "fr"}, "language"),
        ({"password": ""}, "password"),
        ({"password": "p" * 257}, "password"),
    ],
)
def test_malformed_body_names_the_field(client, change: dict[str, str | None], field: str) -> None:
    body = {k: v for k, v in {**new_account("goodname"), **change}.items() if v is not None}
    r = client.post(ACCOUNTS, json=body)
    problem = assert_problem(r, 422, "validation_error")
    assert field in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == [field]
    assert all(e["message"] and e["type"] for e in problem["errors"])


def test_body_that_is_not_json_is_a_validation_error(client, sessions) -> None:
    r = client.post(
        ACCOUNTS, content=b'{"username": "x",', headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(r, 422, "validation_error")
    assert [e["type"] for e in problem["errors"]] == ["json_invalid"]
    with sessions() as s:
        assert s.scalars(select(Account)).all() == []


def test_body_that_is_not_json_names_the_body_not_a_character_offset(client) -> None:
    r = client.post(
        ACCOUNTS, content=b'{"username": "x",', headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(r, 422, "validation_error")
    assert problem["errors"][0]["field"] == "body"
    assert problem["detail"] == "Check these fields: body"


def test_missing_fields_are_all_named(client) -> None:
    problem = assert_problem(
        client.post(ACCOUNTS, json={"username": "onlyme"}), 422, "validation_error"
    )
    assert {e["field"] for e in problem["errors"]} == {"password", "email"}
    assert "password" in problem["detail"] and "email" in problem["detail"]


# --- log-in (OAuth2 password flow) -------------------------------------------------------------


@pytest.mark.usefixtures("real_hashing")
def test_token_by_form_opens_me(client, settings) -> None:
    account = f.register(client, "yeungkaman")
    r = client.post(TOKEN, data={"username": "YeungKaMan", "password": f.PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_ttl_seconds
    me = client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == account


def test_only_a_digest_of_the_token_is_stored(client, sessions) -> None:
    token = f.login(client, f.register(client)["username"])["Authorization"].removeprefix("Bearer ")
    with sessions() as s:
        [row] = s.scalars(select(AccessToken)).all()
    assert row.token_hash != token and token not in row.token_hash
    assert re.fullmatch(r"[0-9a-f]{64}", row.token_hash)


def test_token_wants_a_form_not_json(client) -> None:
    f.register(client, "jsonlover")
    r = client.post(TOKEN, json={"username": "jsonlover", "password": f.PASSWORD})
    problem = assert_problem(r, 422, "validation_error")
    assert {e["field"] for e in problem["errors"]} == {"username", "password"}


@pytest.mark.usefixtures("real_hashing")
def test_bad_password_and_unknown_user_get_the_same_401(client) -> None:
    f.register(client, "leungsiufung")
    wrong = client.post(TOKEN, data={"username": "leungsiufung", "password": "not the password"})
    unknown = client.post(TOKEN, data={"username": "nobodyhere", "password": f.PASSWORD})
    for r in (wrong, unknown):
        assert_problem(r, 401, "bad_credentials")
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.json() == unknown.json()


# --- the bearer token ----------------------------------------------------------------------------


def test_me_without_a_token_is_401(client) -> None:
    r = client.get(ME)
    assert_problem(r, 401, "not_authenticated")
    assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("Bearer not-a-token", "invalid_token"),
        ("bearer not-a-token", "invalid_token"),
        ("Bearer ", "not_authenticated"),
        ("Basic dXNlcjpwYXNz", "not_authenticated"),
        ("not-a-scheme", "not_authenticated"),
    ],
)
def test_me_with_a_bad_token_is_401(client, authorization: str, code: str) -> None:
    f.subscriber(client)  # a real token exists; this one is not it
    r = client.get(ME, headers={"Authorization": authorization})
    assert_problem(r, 401, code)
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_token_expires_after_its_ttl(client, settings, frozen_clock) -> None:
    headers = f.subscriber(client)
    ttl = settings.access_token_ttl_seconds

    frozen_clock.advance(ttl - 1)
    assert client.get(ME, headers=headers).status_code == 200
    frozen_clock.advance(1)
    r = client.get(ME, headers=headers)
    assert_problem(r, 401, "invalid_token")
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_logging_in_again_purges_expired_tokens(client, sessions, settings, frozen_clock) -> None:
    account = f.register(client)
    f.login(client, account["username"])
    frozen_clock.advance(settings.access_token_ttl_seconds + 1)
    fresh = f.login(client, account["username"])
    assert client.get(ME, headers=fresh).status_code == 200
    with sessions() as s:
        rows = s.scalars(
            select(AccessToken).where(AccessToken.account_id == uuid.UUID(account["id"]))
        ).all()
    assert len(rows) == 1 and rows[0].expires_at > frozen_clock.now


# --- problem details in the reader's language ---------------------------------------------------


@pytest.mark.parametrize(
    ("accept_language", "language"),
    [
        (None, "en"),
        ("zh-CN,zh;q=0.9", "zh-Hans"),
        ("zh-HK", "zh-Hant"),
        ("fr-FR, en;q=0.5", "en"),
        ("de", "en"),
    ],
)
def test_anonymous_refusal_answers_in_the_browser_language(
    client, accept_language, language
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    r = client.post(ACCOUNTS, json=new_account("weakling", "short"), headers=headers)
    assert_problem(r, 422, "weak_password")
    assert r.headers["Content-Language"] == language


def test_signed_in_refusal_answers_in_the_account_language(client) -> None:
    headers = f.subscriber(client, language="zh-Hans")
    r = client.get(f"/api/v1/lines/{uuid.uuid4()}", headers={**headers, "Accept-Language": "en-GB"})
    assert_problem(r, 404, "line_not_found")
    assert r.headers["Content-Language"] == "zh-Hans"


@pytest.fixture
def fake_catalogs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Translations of a few messages, whatever the .po files under src/tongka/locale hold."""
    catalogs = {
        "zh-Hans": {
            LineNotFound.message: "没有这条线路。",
            "Not found": "未找到",
            WeakPassword.message: "密码太弱。",
        },
        "zh-Hant": {
            LineNotFound.message: "沒有這條線路。",
            "Not found": "找不到",
            WeakPassword.message: "密碼太弱。",
        },
    }
    monkeypatch.setattr(i18n, "catalog", lambda language: catalogs.get(language, {}))


@pytest.mark.usefixtures("fake_catalogs")
def test_problem_details_are_translated_for_the_account(client) -> None:
    zh_hans = f.subscriber(client, language="zh-Hans")
    zh_hant = f.subscriber(client, language="zh-Hant")
    english = f.subscriber(client, language="en")
    missing = f"/api/v1/lines/{uuid.uuid4()}"

    body = assert_problem(
        client.get(missing, headers={**zh_hans, "Accept-Language": "en"}), 404, "line_not_found"
    )
    assert (body["title"], body["detail"]) == ("未找到", "没有这条线路。")
    body = assert_problem(client.get(missing, headers=zh_hant), 404, "line_not_found")
    assert (body["title"], body["detail"]) == ("找不到", "沒有這條線路。")
    body = assert_problem(
        client.get(missing, headers={**english, "Accept-Language": "zh-CN"}), 404, "line_not_found"
    )
    assert (body["title"], body["detail"]) == ("Not found", LineNotFound.message)


@pytest.mark.usefixtures("fake_catalogs")
def test_anonymous_problem_details_are_translated_for_the_browser(client) -> None:
    r = client.post(
        ACCOUNTS, json=new_account("weakling", "short"), headers={"Accept-Language": "zh-TW"}
    )
    assert assert_problem(r, 422, "weak_password")["detail"] == "密碼太弱。"


def test_zh_hans_catalog_gives_chinese_problem_details(client) -> None:
    if not i18n.catalog("zh-Hans").get(LineNotFound.message):
        pytest.skip("src/tongka/locale has no zh-Hans translation of the errors yet")
    headers = f.subscriber(client, language="zh-Hans")
    body = assert_problem(
        client.get(f"/api/v1/lines/{uuid.uuid4()}", headers=headers), 404, "line_not_found"
    )
    assert re.search(r"[\u4e00-\u9fff]", body["detail"]), body
    assert re.search(r"[\u4e00-\u9fff]", body["title"]), body
