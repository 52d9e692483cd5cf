"""The console in a real headless Chromium: an operator admin logs in with a password and a TOTP
code, changes a pack's price (its history shows the change) and creates an offer for the store
counter, which the offers list then shows; then opens inventory, stores and staff. Every page is
checked (axe, CSP, no English left)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import factories as f
from tests.e2e.site import LOCALES, Watch, axe_violations, check_page, english_left, shot
from tongka.db import make_engine, make_sessionmaker, transaction

pytestmark = pytest.mark.e2e

LANGUAGE = "zh-Hant"  # the operator's own; a page with English left fails
PASSWORD = "an admin's long password"


@pytest.fixture(scope="module")
def admin_login(live_server: str, e2e_env: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """An operator admin with TOTP set up, made in the live server's database: (username, secret)."""
    from tongka.account import service as accounts
    from tongka.staff import service as staff

    engine = make_engine(e2e_env["env"]["TONGKA_DATABASE_URL"])
    try:
        with transaction(make_sessionmaker(engine)) as session:
            member = staff.add(
                session,
                username="e2e-admin",
                display_name="e2e-admin",
                role="admin",
                store_code=None,
                password_hash=accounts.new_password_hash("e2e-admin", PASSWORD),
            )
            secret = staff.enrol_directly(member, e2e_env["env"]["TONGKA_SECRET_KEY"])
    finally:
        engine.dispose()
    yield "e2e-admin", secret


def test_an_admin_changes_a_price_and_creates_a_store_offer(
    browser: Any, live_server: str, admin_login: tuple[str, str]
) -> None:
    from playwright.sync_api import expect

    username, secret = admin_login
    context = browser.new_context(
        base_url=live_server, viewport={"width": 1280, "height": 900}, locale=LOCALES[LANGUAGE]
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    watch = Watch(live_server)
    watch.attach(page)
    seen: dict[str, list[str]] = {}
    try:
        page.goto(f"/staff/login?lang={LANGUAGE}")
        check_page(page, LANGUAGE, watch, seen)
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.fill("input[name=code]", f.staff_code(secret))
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/console")
        check_page(page, LANGUAGE, watch, seen)

        # A pack's price: changed, and the history says from what to what, by whom.
        page.locator('main a[href="/console/packs"]').click()
        page.wait_for_url("**/console/packs")
        check_page(page, LANGUAGE, watch, seen)
        page.locator("main a", has_text="hk-5gb-30d").click()
        check_page(page, LANGUAGE, watch, seen)
        page.select_option("select[name=currency]", "HKD")
        page.fill("input[name=amount]", "62")
        page.locator("form[action$='/prices'] button[type=submit]").click()
        page.wait_for_url("**saved=price")
        check_page(page, LANGUAGE, watch, seen)
        history = page.locator("table.price-history tbody tr").first
        expect(history).to_contain_text("58.00")
        expect(history).to_contain_text("62.00")
        expect(history).to_contain_text(username)
        shot(page, "console-pack")

        # A coupon for the store counter only.
        page.goto("/console/offers")
        check_page(page, LANGUAGE, watch, seen)
        page.locator('main a[href="/console/offers/new"]').click()
        page.wait_for_url("**/console/offers/new")
        check_page(page, LANGUAGE, watch, seen)
        shot(page, "console-offer-new")
        page.fill("input[name=code]", "counter-spring")
        page.fill("input[name=name_en]", "Spring at the counter")
        page.fill('input[name="name_zh-Hant"]', "春日優惠")
        page.fill('input[name="name_zh-Hans"]', "春日优惠")
        page.check("input[name=kind][value=coupon]")
        page.fill("input[name=percent_off]", "10")
        page.uncheck("input[name=channels][value=app]")
        page.uncheck("input[name=channels][value=web]")
        page.check("input[name=channels][value=store]")
        page.fill("input[name=max_discount_HKD]", "500")
        page.locator("main form button[type=submit]").click()
        page.wait_for_url("**/console/offers?added=counter-spring")
        check_page(page, LANGUAGE, watch, seen)
        offer = page.locator("#offer-counter-spring")
        expect(offer).to_contain_text("春日優惠")
        expect(offer).to_contain_text("門市")  # its one channel, the store...
        expect(offer).not_to_contain_text("應用程式")  # ...not the app
        expect(offer).not_to_contain_text("網頁")  # ...nor the web
        expect(offer).to_contain_text("500.00")
        shot(page, "console-offers")

        # The other console pages of this part pass the same checks.
        for path in ("/console/inventory", "/console/stores"):
            page.goto(path)
            check_page(page, LANGUAGE, watch, seen)
        # The staff list: the same, but people's names are theirs (the demo's are romanised).
        page.goto("/console/staff")
        assert axe_violations(page) == []
        names = set(page.locator("main table tbody td:nth-child(2)").all_inner_texts())
        assert len(names) >= 2
        assert [t for t in english_left(page.inner_text("body"), LANGUAGE) if t not in names] == []
        page.locator("main a", has_text=username).click()
        page.wait_for_url("**/console/staff/*")
        check_page(page, LANGUAGE, watch, seen)
        shot(page, "console-staff-member")
    finally:
        context.close()
    assert watch.problems == []
