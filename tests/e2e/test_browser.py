"""The pages in a real headless Chromium, clicked through as a person would, against `tongka serve`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e import steps

pytestmark = pytest.mark.e2e

GB = 1024**3


@pytest.fixture
def client(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=10) as c:
        yield c


@pytest.fixture
def awaiting(client: httpx.Client, tongka) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """A new subscriber's order for HK 5 GB, made over the API and waiting for its payment: (headers, line, order)."""
    headers, line = steps.subscriber_with_line(client, tongka)
    pack = steps.pack(client, headers, line["id"], "hk-5gb-30d")
    r = steps.order(client, headers, line["id"], pack["id"], method="alipay")
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "awaiting_payment" and order["payment"]["status"] == "pending"
    assert (order["amount"], order["currency"]) == (steps.price(pack, "HKD"), "HKD")
    return headers, line, order


def test_the_home_page_lists_the_packs_on_sale(page, client: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    packs = client.get(
        "/api/v1/packs", params={"channel": "web"}, headers={"Accept-Language": "en"}
    ).json()
    assert len(packs) == 9

    response = page.goto("/")
    assert response is not None and response.status == 200
    expect(page).to_have_title("tongka: one card for the mainland and Hong Kong")
    section = page.get_by_test_id("packs")
    expect(section).to_be_visible()
    expect(section.locator("article")).to_have_count(len(packs))
    hong_kong = section.locator('[data-zone="hk"]')
    expect(hong_kong.locator("h3")).to_have_text("Hong Kong")
    hk5 = hong_kong.locator("article").nth(1)  # 1, 5, 10 GB
    expect(hk5.locator("p")).to_have_text(["5 GB", "30 days", "HK$58.00 CN¥52.00"])
    # The stylesheet loaded: the packs are laid out as a grid, not unstyled HTML.
    assert page.locator(".home-packs").first.evaluate("e => getComputedStyle(e).display") == "grid"


def test_paying_on_the_sandbox_checkout_fulfils_the_order(
    page, client: httpx.Client, awaiting, live_server: str
) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    headers, line, order = awaiting
    payment = order["payment"]
    assert payment["checkout_url"] == f"{live_server}/sandbox/payments/{payment['id']}"
    price = steps.hkd(order["amount"])
    assert price == "HK$58.00"

    page.goto(payment["checkout_url"])
    expect(page).to_have_title(f"Sandbox checkout · {price}")
    expect(page.get_by_test_id("amount")).to_have_text(price)
    expect(page.get_by_text("Alipay 支付宝")).to_be_visible()
    expect(page.get_by_text(payment["id"])).to_be_visible()
    expect(page.get_by_test_id("status")).to_have_count(0)

    page.get_by_role("button", name=f"Pay {price}").click()

    expect(page.get_by_test_id("status")).to_have_text("Payment succeeded")
    expect(page.get_by_test_id("order-status")).to_have_text("fulfilled")
    assert page.url == payment["checkout_url"]  # the 303 came back to the checkout page
    expect(page.get_by_role("button")).to_have_count(0)  # nothing left to pay

    order = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    assert order["status"] == "fulfilled" and order["payment"]["status"] == "succeeded"
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    [bucket] = balance["buckets"]
    assert (bucket["id"], bucket["zone"], bucket["total_bytes"]) == (
        order["bucket_id"],
        "hk",
        5 * GB,
    )
    assert balance["zones"]["hk"]["remaining_bytes"] == 5 * GB


def test_declining_on_the_sandbox_checkout_leaves_the_order_unpaid(
    page, client: httpx.Client, awaiting
) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    headers, line, order = awaiting
    page.goto(order["payment"]["checkout_url"])
    expect(page.get_by_test_id("amount")).to_have_text(steps.hkd(order["amount"]))

    page.get_by_role("button", name="Decline").click()

    expect(page.get_by_test_id("status")).to_have_text("Payment failed")
    expect(page.get_by_test_id("order-status")).to_have_text("awaiting_payment")

    after = client.get(f"/api/v1/orders/{order['id']}", headers=headers).json()
    assert (
        after["status"] == "awaiting_payment"
        and after["paid_at"] is None
        and after["bucket_id"] is None
    )
    assert (
        after["payment"]["id"] == order["payment"]["id"] and after["payment"]["status"] == "failed"
    )
    balance = client.get(f"/api/v1/lines/{line['id']}/balance", headers=headers).json()
    assert balance["buckets"] == [] and balance["zones"]["hk"]["remaining_bytes"] == 0
