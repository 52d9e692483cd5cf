"""The console's reports in a real headless Chromium: the demo's admin logs in (password and TOTP
code) and opens the reports, whose charts uPlot draws from the page itself, within the CSP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.site import Watch, check_page, shot
from tongka.demo import DEMO_PASSWORD

pytestmark = pytest.mark.e2e


def test_an_admin_opens_the_reports_and_every_chart_is_drawn(
    browser: Any, live_server: str, tongka: Any
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
        # The demo subscriber's renewal (today, in the app, by Alipay) is in the default period.
        charts = page.locator(".report-chart[data-chart]")
        names = sorted(charts.evaluate_all("els => els.map(e => e.dataset.chart)"))
        assert names == ["data", "failures", "renewals", "revenue-HKD"]
        for name in names:
            expect(page.locator(f'.report-chart[data-chart="{name}"] canvas')).to_have_count(1)
        expect(page.locator("#renewals table.striped tbody")).to_contain_text("both-5gb-30d")
        check_page(page, "en", watch, seen)
        shot(page, "console-reports-en")

        page.goto("/console/reports?lang=zh-Hant")
        expect(page.locator('.report-chart[data-chart="revenue-HKD"] canvas')).to_have_count(1)
        expect(page.locator(".u-legend").first).to_contain_text("支付寶")
        check_page(page, "zh-Hant", watch, seen)

        page.goto("/console/reports?from=2020-01-01&to=2020-01-31&lang=en")  # an empty period
        expect(page.locator(".report-chart")).to_have_count(0)
        check_page(page, "en", watch, seen)
    finally:
        context.close()
    assert watch.problems == []
