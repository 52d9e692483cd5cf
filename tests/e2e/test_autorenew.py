"""Auto-renew in a real headless Chromium at phone size: a card saved on Stripe's (the sandbox's)
form, the rule set to charge it; our pages pass axe, break no CSP rule, show no English in Chinese."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests import factories as f
from tests.e2e import steps
from tests.e2e.site import LOCALES, PHONE, Watch, check_page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def e2e_env(e2e_env: dict[str, Any], make_run_keys: dict[str, str]) -> dict[str, Any]:
    """Every sandbox provider's keys, so the card is saved on the Stripe simulator's own form."""
    e2e_env["env"].update(make_run_keys)
    e2e_env["env"]["TONGKA_SANDBOX_STORE_URL"] = (
        f"sqlite:///{e2e_env['home'] / 'sandbox-providers.db'}"
    )
    return e2e_env


@pytest.mark.parametrize("language", ["zh-Hant", "en"])
def test_a_card_is_saved_and_auto_renew_set_to_charge_it(
    browser: Any, live_server: str, tongka: Any, language: str
) -> None:
    from playwright.sync_api import expect

    with httpx.Client(base_url=live_server, timeout=10) as api:
        account = f.register(api, language=language)
        headers = f.login(api, account["username"])
        line = f.bind(api, headers, steps.unbound_numbers(tongka)[0])
    context = browser.new_context(
        base_url=live_server, viewport=PHONE, locale=LOCALES[language], is_mobile=True
    )
    context.set_default_timeout(15_000)
    host = urlsplit(live_server).hostname
    context.add_cookies(
        [
            {
                "name": "tongka_session",
                "value": headers["Authorization"].removeprefix("Bearer "),
                "domain": host,
                "path": "/",
            }
        ]
    )
    page = context.new_page()
    watch = Watch(live_server)
    watch.attach(page)
    seen: dict[str, list[str]] = {}
    try:
        page.goto("/settings")
        page.locator(f'a[href="/settings/auto-renew/{line["id"]}"]').click()
        check_page(page, language, watch, seen)
        page.locator('form[action$="/card"] button').click()
        expect(page.get_by_test_id("stripe-setup")).to_be_visible()
        page.locator("button[name=outcome][value=succeeded]").click()
        expect(page).to_have_url(re.compile(r"\?saved=card$"))
        expect(page.get_by_test_id("saved-card")).to_contain_text("4242")
        check_page(page, language, watch, seen)
        page.fill("input[name=threshold_percent]", "15")
        page.check("input[name=source][value=card]")
        page.fill("input[name=monthly_cap]", "120")
        page.locator("#auto-renew-form button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"\?saved=rule$"))
        expect(page.get_by_test_id("auto-renew-status")).to_be_visible()
        check_page(page, language, watch, seen)
    finally:
        context.close()
    assert watch.problems == []
    with httpx.Client(base_url=live_server, timeout=10) as api:
        rule = api.get(f"/api/v1/lines/{line['id']}/auto-renew", headers=headers).json()
    assert (rule["source"], rule["card"], rule["monthly_cap"]) == ("card", "visa 4242", 12000)
