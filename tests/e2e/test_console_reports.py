"""The console's reports in a real headless Chromium: the demo's admin logs in (password and TOTP
code) and opens the reports, whose charts uPlot draws from the page itself, within the CSP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.e2e.site import Watch, check_page, shot
from tongka.account.models import Line
from tongka.counter.models import CounterSale
from tongka.db import make_engine, make_sessionmaker, transaction
from tongka.demo import DEMO_ICCID, DEMO_PASSWORD
from tongka.order.models import Order
from tongka.staff.models import StaffMember

pytestmark = pytest.mark.e2e


def counter_sale(live_server: str, database: str, token: str) -> None:
    """A cash sale at Lo Wu for the demo subscriber, through the admin API with the admin's own
    session, and the row the counter writes with it (as Lo Wu's demo agent's)."""
    engine = make_engine(database)
    sessions = make_sessionmaker(engine)
    try:
        with transaction(sessions) as s:
            line_id = s.scalars(select(Line.id).where(Line.iccid == DEMO_ICCID)).one()
        with httpx.Client(
            base_url=live_server, headers={"Authorization": f"Bearer {token}"}
        ) as api:
            pack = next(p for p in api.get("/api/v1/packs").json() if p["code"] == "hk-1gb-7d")
            r = api.post(
                "/api/v1/admin/orders",
                json={
                    "line_id": str(line_id),
                    "pack_id": pack["id"],
                    "currency": "HKD",
                    "payment_method": "cash",
                },
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert r.status_code == 201, r.text
            order = r.json()
            r = api.post(
                f"/api/v1/admin/payments/{order['payment']['id']}/record", json={"store": "lowu"}
            )
            assert r.status_code == 200, r.text
        with transaction(sessions) as s:
            placed = s.get_one(Order, uuid.UUID(order["id"]))
            agent = s.scalars(select(StaffMember).where(StaffMember.username == "agent-lowu")).one()
            s.add(
                CounterSale(
                    order_id=placed.id,
                    payment_id=uuid.UUID(order["payment"]["id"]),
                    store_id=agent.store_id,
                    staff_id=agent.id,
                    pack_id=placed.pack_id,
                    method="cash",
                    currency="HKD",
                    amount=placed.amount,
                    tendered=placed.amount,
                    change=0,
                    paid_at=placed.paid_at,
                )
            )
    finally:
        engine.dispose()


def test_an_admin_opens_the_reports_and_every_chart_is_drawn(
    browser: Any, live_server: str, tongka: Any, e2e_env: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(
        base_url=live_server, viewport={"width": 1200, "height": 900}, locale="en-GB"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch = Watch(live_server)
    watch.attach(page)
    seen: dict[str, list[str]] = {}
    try:
        page.goto("/console/reports")  # not signed in: the staff log-in, then back here
        assert "/staff/login" in page.url
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.fill("input[name=code]", tongka("staff", "code", "admin").stdout.strip())
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/console/reports")
        # In Chinese first: once the demo agent sells, their romanised name (three Latin words)
        # is on the page, which the English-left check cannot tell from untranslated text.
        page.goto("/console/reports?lang=zh-Hant")
        expect(page.locator('.report-chart[data-chart="revenue-HKD"] canvas')).to_have_count(1)
        expect(page.locator(".u-legend").first).to_contain_text("支付寶")
        check_page(page, "zh-Hant", watch, seen)

        # The staff cookie is a staff token: the admin API takes it too.
        token = next(c["value"] for c in context.cookies() if c["name"] == "tongka_staff")
        counter_sale(live_server, e2e_env["env"]["TONGKA_DATABASE_URL"], token)
        page.goto("/console/reports?lang=en")
        # The demo subscriber's renewal (today, in the app, by Alipay) is in the default period.
        charts = page.locator(".report-chart[data-chart]")
        names = sorted(charts.evaluate_all("els => els.map(e => e.dataset.chart)"))
        assert names == ["agents", "data", "failures", "renewals", "revenue-HKD", "stores"]
        for name in names:
            expect(page.locator(f'.report-chart[data-chart="{name}"] canvas')).to_have_count(1)
        expect(page.locator("#renewals table.striped tbody")).to_contain_text("both-5gb-30d")
        expect(page.locator("#sellers table.striped tbody").first).to_contain_text("lo-wu")
        check_page(page, "en", watch, seen)
        shot(page, "console-reports-en")

        page.goto("/console/reports?from=2020-01-01&to=2020-01-31&lang=en")  # an empty period
        expect(page.locator(".report-chart")).to_have_count(0)
        check_page(page, "en", watch, seen)
    finally:
        context.close()
    assert watch.problems == []
