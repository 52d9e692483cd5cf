"""Every page works in a real Chromium under its Content-Security-Policy, and loads nothing from another host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e import steps

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def e2e_env(e2e_env: dict[str, Any], make_run_keys: dict[str, str]) -> dict[str, Any]:
    """The live server of this module has every sandbox provider's keys (so the providers' own
    pages are the checkout) and signs receipts (so there are receipt pages to open)."""
    e2e_env["env"].update(make_run_keys)
    e2e_env["env"]["TONGKA_SANDBOX_STORE_URL"] = (
        f"sqlite:///{e2e_env['home'] / 'sandbox-providers.db'}"
    )
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
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on(
        "request",
        lambda r: problems.append(r.url) if urlsplit(r.url).netloc not in (ours, "") else None,
    )
    yield page, problems


def test_the_api_docs_run_from_our_own_files(watched: tuple[Any, list[str]]) -> None:
    from playwright.sync_api import expect

    page, problems = watched
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("tongka")
    expect(page.locator(".opblock").first).to_be_visible()  # the operations, from /openapi.json
    assert problems == []


def test_the_providers_pages_and_a_paid_order_s_pages_work_under_the_csp(
    watched: tuple[Any, list[str]], client: httpx.Client, tongka
) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page, problems = watched
    headers, line = steps.subscriber_with_line(client, tongka)
    pack = steps.pack(client, headers, line["id"], "hk-5gb-30d")
    for method, currency in (("alipay", "HKD"), ("wechat_pay", "CNY")):  # each provider's own page
        order = steps.order(
            client, headers, line["id"], pack["id"], currency=currency, method=method
        ).json()
        page.goto(order["payment"]["checkout_url"])
        page.locator("button.primary").click()  # a form post, then a 303
        expect(page.get_by_test_id("status")).to_contain_text("Paid")
        for _ in range(100):  # the provider's callback comes on its own
            if (
                client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()["status"]
                == "fulfilled"
            ):
                break
            time.sleep(0.1)

    receipts = client.get("/api/v1/receipts", headers=headers).json()
    assert len(receipts) == 2
    receipt = receipts[0]
    response = page.goto(receipt["page_url"])
    assert (
        response is not None
        and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    )
    expect(page.get_by_test_id("receipt-qr").locator("svg")).to_be_visible()
    page.evaluate("() => { window.printed = 0; window.print = () => { window.printed += 1 } }")
    page.get_by_role("button", name="Print").click()  # its handler comes from /static/print.js
    assert page.evaluate("window.printed") == 1

    page.goto(receipt["verify_url"])
    expect(page.get_by_test_id("verdict")).to_have_attribute("data-verdict", "genuine")
    page.goto("/")
    assert page.locator(".home-packs").first.evaluate("e => getComputedStyle(e).display") == "grid"
    assert problems == []
