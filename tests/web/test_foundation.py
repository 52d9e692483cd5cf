"""What every page shares (tongka/web.py): language, the session, CSRF, form errors, error pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from tests.web.helpers import ACCEPT_HTML, csrf, signed_in
from tongka import web


@pytest.fixture
def pages(app: FastAPI) -> FastAPI:
    """Routes made with web.py alone, as a page module would make them."""
    router = APIRouter()

    @router.get("/test/mine", response_class=HTMLResponse)
    def mine(request: Request, visitor: web.SubscriberDep) -> HTMLResponse:
        return web.page(
            request, visitor, "web/error.html", {"title": visitor.username, "detail": ""}
        )

    @router.post("/test/mine")
    def change_mine(visitor: web.SubscriberDep) -> PlainTextResponse:
        return PlainTextResponse(str(visitor.username))

    @router.post("/test/form")
    def form(visitor: web.VisitorDep, posted: web.FormDep) -> PlainTextResponse:
        return PlainTextResponse(f"got {posted['thing']} in {visitor.language}")

    @router.get("/test/crash", response_class=HTMLResponse)
    def crash() -> HTMLResponse:
        raise RuntimeError("secret internals /srv/tongka/app.py line 12")

    app.include_router(router)
    # Routes added after the app was built go before its catch-all mount (/static).
    app.router.routes.insert(0, app.router.routes.pop())
    return app


def _lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', html)
    assert found
    return found.group(1)


def test_a_browser_gets_an_error_page_in_its_language_and_the_api_gets_json(
    client: TestClient,
) -> None:
    r = client.get("/no-such-page", headers={**ACCEPT_HTML, "Accept-Language": "zh-HK"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert _lang(r.text) == "zh-Hant" and r.headers["content-language"] == "zh-Hant"
    assert "返回首頁" in r.text
    api = client.get("/api/v1/no-such", headers={"Accept": "application/json"})
    assert api.status_code == 404 and api.json()["code"] == "not_found"


def test_lang_in_the_query_is_remembered_in_a_cookie(client: TestClient) -> None:
    r = client.get("/nowhere?lang=zh-Hans", headers={**ACCEPT_HTML, "Accept-Language": "en"})
    assert _lang(r.text) == "zh-Hans"
    assert r.cookies.get("tongka_lang") == "zh-Hans"
    # Every page links to itself in the other languages.
    assert 'href="/nowhere?lang=en"' in r.text and 'href="/nowhere?lang=zh-Hant"' in r.text
    again = client.get("/nowhere", headers={**ACCEPT_HTML, "Accept-Language": "en"})
    assert _lang(again.text) == "zh-Hans"
    unknown = client.get("/nowhere?lang=fr", headers={**ACCEPT_HTML, "Accept-Language": "en"})
    assert _lang(unknown.text) == "zh-Hans"  # an unknown choice changes nothing


def test_a_subscriber_page_sends_a_visitor_to_log_in_and_back(
    client: TestClient, pages: FastAPI
) -> None:
    r = client.get("/test/mine?x=1", headers=ACCEPT_HTML, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Ftest%2Fmine%3Fx%3D1"
    signed_in(client)
    r = client.get("/test/mine", headers=ACCEPT_HTML)
    assert r.status_code == 200 and r.headers["cache-control"] == "private, no-store"
    # A form posted after the session ended: back to the page it was on, once logged in.
    r = client.post(
        "/test/mine",
        headers={**ACCEPT_HTML, "Referer": "http://testserver/settings?x=1"},
        follow_redirects=False,
    )
    assert r.status_code == 200 and r.text  # signed in: the POST itself
    client.cookies.clear()
    r = client.post(
        "/test/mine",
        headers={**ACCEPT_HTML, "Referer": "http://testserver/settings?x=1"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/login?next=%2Fsettings%3Fx%3D1"
    r = client.post(
        "/test/mine",
        headers={**ACCEPT_HTML, "Referer": "https://evil.example/x"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/login?next=%2Faccount"
    client.cookies.set("tongka_session", "not-a-token")
    r = client.get("/test/mine", headers=ACCEPT_HTML, follow_redirects=False)
    assert r.status_code == 303  # an unknown or expired session is nobody


def test_a_form_needs_the_token_of_this_browser(client: TestClient, pages: FastAPI) -> None:
    signed_in(client)
    page = client.get("/test/mine", headers=ACCEPT_HTML)
    assert "tongka_csrf" in page.cookies  # set on the first page, HttpOnly
    assert "httponly" in page.headers["set-cookie"].lower()
    token = csrf(page.text)  # the log-out form's
    ok = client.post("/test/form", data={"thing": "a", "csrf_token": token}, headers=ACCEPT_HTML)
    assert ok.status_code == 200 and ok.text == "got a in en"

    refused: list[Any] = [
        client.post("/test/form", data={"thing": "a"}, headers=ACCEPT_HTML),
        client.post("/test/form", data={"thing": "a", "csrf_token": "0" * 64}, headers=ACCEPT_HTML),
        client.post(
            "/test/form",
            data={"thing": "a", "csrf_token": token},
            headers={**ACCEPT_HTML, "Origin": "https://evil.example"},
        ),
    ]
    for r in refused:
        assert r.status_code == 403 and "Reload the page" in r.text
    # Another browser (its own CSRF cookie) cannot use this one's token.
    other = TestClient(client.app)
    other.get("/nowhere", headers=ACCEPT_HTML)
    r = other.post("/test/form", data={"thing": "a", "csrf_token": token}, headers=ACCEPT_HTML)
    assert r.status_code == 403


def test_a_crash_is_a_page_without_a_trace(app: FastAPI, pages: FastAPI) -> None:
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/test/crash", headers={**ACCEPT_HTML, "Accept-Language": "zh-CN"})
    assert r.status_code == 500
    assert "Traceback" not in r.text and "secret internals" not in r.text
    assert "出错" in r.text or "问题" in r.text


class _Form(BaseModel):
    username: str = Field(min_length=3)
    amount: int = Field(ge=1)


def test_form_errors_are_in_the_visitors_language() -> None:
    model, errors = web.parse(
        _Form, {"username": "ab", "amount": "x", "csrf_token": "t"}, "zh-Hans"
    )
    assert model is None
    assert errors == {"username": "请至少输入 3 个字符。", "amount": "请输入整数。"}
    model, errors = web.parse(_Form, {"username": "", "amount": "0"}, "en")
    assert errors == {"username": "Fill in this field.", "amount": "Enter at least 1."}
    model, errors = web.parse(_Form, {"username": "abc", "amount": "5"}, "en")
    assert model == _Form(username="abc", amount=5) and errors == {}


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/renew/x?y=1", "/renew/x?y=1"),
        ("//evil.example/", "/account"),
        ("https://evil.example/", "/account"),
        ("/\\evil.example", "/account"),
        (None, "/account"),
    ],
)
def test_next_stays_on_this_site(asked: str | None, kept: str) -> None:
    assert web.safe_next(asked) == kept


def test_formats_follow_the_language() -> None:
    assert web.data(5 * 1024**3, "en") == "5 GB"
    assert web.data(1536 * 1024**2, "zh-Hans") == "1.5 GB"
    assert web.money(4800, "HKD", "zh-Hant").startswith("HK$")
