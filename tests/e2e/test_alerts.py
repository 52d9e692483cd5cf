"""The settings page's alert choices in a real headless Chromium, in each language: axe, CSP, no
English on a Chinese page; a choice saved is shown chosen."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e import steps
from tests.e2e.site import LOCALES, PHONE, Watch, check_page

pytestmark = pytest.mark.e2e


def test_alert_choices_are_saved_from_the_settings_page(browser: Any, live_server: str) -> None:
    from playwright.sync_api import expect

    watch = Watch(live_server)
    seen: dict[str, list[str]] = {}
    for language in ("zh-Hans", "zh-Hant", "en"):
        with httpx.Client(base_url=live_server, timeout=10) as api:
            _account, headers = steps.register_and_login(api, language=language)
        context = browser.new_context(
            base_url=live_server, viewport=PHONE, locale=LOCALES[language], is_mobile=True
        )
        context.set_default_timeout(15_000)
        token = headers["Authorization"].removeprefix("Bearer ")
        context.add_cookies([{"name": "tongka_session", "value": token, "url": live_server}])
        page = context.new_page()
        watch.attach(page)
        try:
            page.goto(f"/settings?lang={language}")
            check_page(page, language, watch, seen)
            expect(page.locator("#alert-data_used_100")).to_have_value("both")
            page.select_option("#alert-data_used_100", "none")
            page.select_option("#alert-renewal_confirmed", "both")
            page.locator("#alert-settings button[type=submit]").click()
            expect(page.locator("p.notice[role=status]")).to_be_visible()
            check_page(page, language, watch, seen)
            expect(page.locator("#alert-data_used_100")).to_have_value("none")
            expect(page.locator("#alert-renewal_confirmed")).to_have_value("both")
        finally:
            context.close()
        with httpx.Client(base_url=live_server, timeout=10) as api:
            chosen = api.get("/api/v1/alerts/preferences", headers=headers).json()["preferences"]
        assert chosen["data_used_100"] == "none" and chosen["renewal_confirmed"] == "both"
    assert watch.problems == []
