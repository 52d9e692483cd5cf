"""The forecast on the personal centre in a real headless Chromium, in each language: the demo
subscriber, whose four weeks of use the demo loads, sees when the data runs out, the covering pack, the
trip's date picker, and the chart's dashed projection (uPlot, no CSP or console error, axe clean)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests import factories as f
from tests.e2e.site import LOCALES, PHONE, Watch, check_page, shot
from tongka import clock
from tongka.charging.engine import usage_day
from tongka.demo import DEMO_PASSWORD, DEMO_USERNAME

pytestmark = pytest.mark.e2e

LANGUAGES = ("zh-Hans", "zh-Hant", "en")
PROJECTED = {"en": "Projected data left", "zh-Hans": "预计剩余数据", "zh-Hant": "預計剩餘數據"}
RUNS_OUT = {"en": "runs out on", "zh-Hans": "用完", "zh-Hant": "用完"}


def test_the_demo_subscriber_sees_the_forecast_and_its_projection(
    browser: Any, live_server: str, e2e_env: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    with httpx.Client(base_url=live_server, timeout=10) as api:
        token = f.login(api, DEMO_USERNAME, DEMO_PASSWORD)["Authorization"].removeprefix("Bearer ")
    for language in LANGUAGES:
        context = browser.new_context(
            base_url=live_server, viewport=PHONE, locale=LOCALES[language], is_mobile=True
        )
        context.add_cookies([{"name": "tongka_session", "value": token, "url": live_server}])
        context.set_default_timeout(15_000)
        page = context.new_page()
        watch = Watch(live_server)
        watch.attach(page)
        seen: dict[str, list[str]] = {}
        try:
            page.goto(f"/account?lang={language}")
            outlook = page.locator(".outlook")
            expect(outlook).to_contain_text(RUNS_OUT[language])
            expect(outlook.locator('a[href*="pack_id="]')).to_be_visible()
            # The chart: bars of the past 30 days and the dashed line of data left ahead.
            expect(page.locator(".usage-chart canvas").first).to_be_visible()
            expect(page.locator(".usage-chart .u-legend").first).to_contain_text(
                PROJECTED[language]
            )
            check_page(page, language, watch, seen)
            shot(page, f"forecast-{language}")

            # A trip: the packs that cover until a day picked in the date input.
            day = usage_day(clock.now()) + timedelta(days=20)
            page.fill("input[name=until]", day.isoformat())
            page.locator(".outlook-until button[type=submit]").click()
            expect(page).to_have_url(re.compile(rf"until={day.isoformat()}"))
            expect(page.locator(".outlook")).to_contain_text(
                "HK$" if language != "zh-Hans" else "¥"
            )
            check_page(page, language, watch, seen)
        finally:
            context.close()
        assert watch.problems == [], (language, watch.problems)
