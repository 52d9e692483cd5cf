"""Is this official? in a real headless Chromium: a check that says yes, a look-alike that says no,
a scam report with a screenshot, and the admin who sees it grouped in the console."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.site import Watch, check_page, shot
from tongka.demo import DEMO_PASSWORD

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def test_a_visitor_checks_and_reports_and_an_admin_sees_the_report(
    browser: Any, live_server: str, tongka: Any
) -> None:
    from playwright.sync_api import expect

    tongka(
        "official", "add", "phone", "+852 3000 1234",
        "--label", "tongka's customer service number",
        "--label-zh-hans", "通卡客服热线", "--label-zh-hant", "通卡客戶服務熱線",
    )  # fmt: skip
    context = browser.new_context(
        base_url=live_server, viewport={"width": 390, "height": 844}, locale="zh-HK"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch = Watch(live_server)
    watch.attach(page)
    seen: dict[str, list[str]] = {}
    try:
        page.goto("/")
        page.locator('footer a[href="/official"]').click()
        page.wait_for_url("**/official")
        check_page(page, "zh-Hant", watch, seen)
        page.fill("#value", "3000 1234")
        page.locator("form.official-check button[type=submit]").click()
        result = page.locator('[role="status"].official-result')
        expect(result).to_contain_text("這是通卡客戶服務熱線。")
        check_page(page, "zh-Hant", watch, seen)
        shot(page, "official-zh-Hant")

        page.goto("/official?lang=zh-Hans")
        page.fill("#value", "http://tongka.hk@evil.com/pay")
        page.locator("form.official-check button[type=submit]").click()
        expect(result).to_contain_text("这不是通卡的渠道")
        expect(page.locator("#report-value")).to_have_value("http://tongka.hk@evil.com/pay")
        check_page(page, "zh-Hans", watch, seen)

        page.goto("/official?value=tongka-hk.com&lang=en")
        expect(result).to_contain_text("This is not one of tongka's channels.")
        page.select_option("#report-seen-in", "sms")
        page.fill("#report-text", "Your SIM will be cut off: pay at this link")
        page.set_input_files(
            "#report-screenshot",
            files=[{"name": "sms.png", "mimeType": "image/png", "buffer": PNG}],
        )
        page.locator("#report button[type=submit]").click()
        page.wait_for_url("**/official?reported=1#report")
        expect(page.locator("#report .notice")).to_contain_text("Thank you")
        check_page(page, "en", watch, seen)
        shot(page, "official-en")

        page.goto("/console/scam-reports?lang=en")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.fill("input[name=code]", tongka("staff", "code", "admin").stdout.strip())
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/console/scam-reports")
        row = page.locator('tr[data-key="web:tongka-hk.com"]')
        expect(row.locator('[data-testid="count"]')).to_have_text("1")
        check_page(page, "en", watch, seen)
        row.locator("select[name=status]").select_option("reviewed")
        row.locator("button[type=submit]").click()
        page.wait_for_url("**/console/scam-reports")
        expect(page.locator('tr[data-key="web:tongka-hk.com"] select[name=status]')).to_have_value(
            "reviewed"
        )
        # In English: the list shows each label in all three languages, which the English-left
        # check would take for untranslated text on a Chinese page.
        page.goto("/console/official?lang=en")
        expect(page.locator('tr[data-value="+85230001234"]')).to_have_count(1)
        check_page(page, "en", watch, seen)
    finally:
        context.close()
    assert watch.problems == []
