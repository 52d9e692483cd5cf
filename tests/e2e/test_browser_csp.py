"""Every page works in a real Chromium under its Content-Security-Policy, and loads nothing from another host."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e import steps

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def e2e_env(e2e_env: dict[str, Any]) -> dict[str, Any]:
    """The live server of this module signs receipts (so there are receipt pages to open)."""
    e2e_env["env"]["TONGKA_RECEIPT_SIGNING_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    return e2e_env


@pytest.fixture
def client(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=10) as c:
        yield c


@pytest.fixture
def watched(page: Any, live_server: str) -> Iterator[tuple[Any, list[str]]]:
    """The page, and what broke a rule: a CSP violation in the console, a request to another host."""
    problems: list[str] = []
    ours = urlsplit(live_server).netloc
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("request", lambda r: problems.append(r.url) if urlsplit(r.url).netloc not in (ours, "") else None)
    yield page, problems


def test_the_api_docs_run_from_our_own_files(watched: tuple[Any, list[str]]) -> None:
    from playwright.sync_api import expect

    page, problems = watched
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("tongka")
    expect(page.locator(".opblock").first).to_be_visible()  # the operations, from /openapi.json
    assert problems == []


def test_a_paid_order_s_pages_work_under_the_csp(watched: tuple[Any, list[str]], client: httpx.Client, tongka) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page, problems = watched
    headers, line = steps.subscriber_with_line(client, tongka)
    pack = steps.pack(client, headers, line["id"], "hk-5gb-30d")
    order = steps.order(client, headers, line["id"], pack["id"], method="alipay").json()

    page.goto(order["payment"]["checkout_url"])
    page.get_by_role("button", name=f"Pay {steps.hkd(order['amount'])}").click()  # a form post, then a 303
    expect(page.get_by_test_id("order-status")).to_have_text("fulfilled")

    [receipt] = client.get("/api/v1/receipts", headers=headers).json()
    response = page.goto(receipt["page_url"])
    assert response is not None and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    expect(page.get_by_test_id("receipt-qr").locator("svg")).to_be_visible()
    page.evaluate("() => { window.printed = 0; window.print = () => { window.printed += 1 } }")
    page.get_by_role("button", name="Print").click()  # its handler comes from /static/print.js
    assert page.evaluate("window.printed") == 1

    page.goto(receipt["verify_url"])
    expect(page.get_by_test_id("verdict")).to_have_attribute("data-verdict", "genuine")
    page.goto(f"/renew/{line['id']}")
    expect(page.get_by_test_id("packs")).to_be_visible()
    page.goto("/")
    assert page.locator("header.top").evaluate("e => getComputedStyle(e).display") == "flex"
    assert problems == []
