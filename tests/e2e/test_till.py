"""The till in a real Chromium: an agent opens a shift, sells for cash, closes the shift one HK$100
note short; their manager (another browser) sees the shift, acknowledges the difference, and finds
the sale and the difference in the day report. Every page checked (axe, CSP, language)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.e2e import steps
from tests.e2e.site import Watch, check_page
from tongka import clock
from tongka.counter.models import CounterSale
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.demo import DEMO_PASSWORD
from tongka.order.models import Order
from tongka.staff.models import StaffMember

pytestmark = pytest.mark.e2e


def log_in(browser: Any, base_url: str, tongka: Any, username: str) -> tuple[Any, Any, Watch]:
    """A new browser (its own cookies) with `username` logged in at /staff/login."""
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1000, "height": 800}, locale="en-GB"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch = Watch(base_url)
    watch.attach(page)
    page.goto("/staff/login?next=/counter/shifts")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.fill("input[name=code]", tongka("staff", "code", username).stdout.strip())
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/counter/shifts")
    return context, page, watch


def cash_sale(base_url: str, tongka: Any, db: Any, shift_id: str) -> int:
    """A store order paid in cash (the admin API, as the counter's sale does) and the counter's
    row for it in the shift, as the sale page writes it: HK$100 tendered, change given."""
    with httpx.Client(base_url=base_url) as client:
        headers, line = steps.subscriber_with_line(client, tongka)
        token = client.post(
            "/api/v1/staff/token",
            json={
                "username": "admin",
                "password": DEMO_PASSWORD,
                "code": tongka("staff", "code", "admin").stdout.strip(),
            },
        )
        assert token.status_code == 200, token.text
        admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
        pack = steps.pack(client, headers, line["id"], "hk-5gb-30d")
        r = client.post(
            "/api/v1/admin/orders",
            json={
                "line_id": line["id"],
                "pack_id": pack["id"],
                "currency": "HKD",
                "payment_method": "cash",
            },
            headers={**admin, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        order = r.json()
        paid = client.post(
            f"/api/v1/admin/payments/{order['payment']['id']}/record",
            json={"store": "lw01"},
            headers=admin,
        )
        assert paid.status_code == 200, paid.text
    engine = make_engine(f"sqlite:///{db}")
    try:
        with transaction(make_sessionmaker(engine)) as s:
            agent = s.scalars(select(StaffMember).where(StaffMember.username == "agent-lowu")).one()
            row = s.get_one(Order, uuid.UUID(order["id"]))
            s.add(
                CounterSale(
                    order_id=row.id,
                    payment_id=uuid.UUID(order["payment"]["id"]),
                    store_id=agent.store_id,
                    staff_id=agent.id,
                    shift_id=uuid.UUID(shift_id),
                    pack_id=row.pack_id,
                    method="cash",
                    currency="HKD",
                    amount=row.amount,
                    tendered=10000,
                    change=10000 - row.amount,
                    paid_at=clock.now(),
                )
            )
            return row.amount
    finally:
        engine.dispose()


def test_a_shift_short_by_a_note_is_acknowledged_and_reported(
    browser: Any, live_server: str, tongka: Any, e2e_env: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    seen: dict[str, list[str]] = {}
    agent_context, page, watch = log_in(browser, live_server, tongka, "agent-lowu")
    try:
        check_page(page, "en", watch, seen)
        page.fill("input[name=float_amount]", "500")
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/counter/shifts/*")
        shift_id = page.url.rsplit("/", 1)[1]
        check_page(page, "en", watch, seen)

        amount = cash_sale(live_server, tongka, e2e_env["db"], shift_id)
        assert amount == 5800  # expected in the till: 500 + 58 = 558

        # Counted: 4 × HK$100, 1 × HK$50, 4 × HK$2 = 458, one HK$100 note short.
        page.reload()
        page.fill("#count_10000", "4")
        page.fill("#count_5000", "1")
        page.fill("#count_200", "4")
        expect(page.locator("#till-total")).to_have_text("HK$458.00")
        page.locator("form.till-count button[type=submit]").click()
        expect(page.locator("#shift-difference")).to_have_text("-HK$100.00")
        expect(page.locator("#shift-expected")).to_have_text("HK$558.00")
        check_page(page, "en", watch, seen)
    finally:
        agent_context.close()
    assert watch.problems == []

    manager_context, page, watch = log_in(browser, live_server, tongka, "manager-lowu")
    try:
        check_page(page, "en", watch, seen)
        page.locator(f'a[href="/counter/shifts/{shift_id}"]').click()
        check_page(page, "en", watch, seen)
        page.fill("form[action$='/acknowledge'] input[name=note]", "A note went into the coin bag")
        page.locator("form[action$='/acknowledge'] button[type=submit]").click()
        expect(page.locator("hgroup p")).to_contain_text("Acknowledged")
        check_page(page, "en", watch, seen)

        page.goto("/counter/reports")
        main = page.locator("main")
        expect(main.locator("table.till-sales")).to_contain_text("Wong Ka Yan")
        expect(main.locator("table.till-sales")).to_contain_text("HK$58.00")
        expect(main.locator("table.till-shifts")).to_contain_text("-HK$100.00")
        expect(main.locator("table.till-shifts")).to_contain_text("A note went into the coin bag")
        check_page(page, "en", watch, seen)
    finally:
        manager_context.close()
    assert watch.problems == []
