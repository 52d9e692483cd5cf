"""The counter in a real headless Chromium at tablet size: the demo's agent logs in with a password
and a TOTP code, finds the demo line, checks the customer's identity card, sells a pack for cash
(change shown), opens the receipt for the 80 mm printer, then sells one by a WeChat Pay QR code
paid by opening the code's page. Every page of ours passes check_page (axe, CSP, language)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e import site
from tests.e2e.site import LOCALES, Watch, check_page
from tongka import clock
from tongka.demo import DEMO_ICCID, DEMO_PASSWORD

SPARE_ICCID = "8985200240000000038"  # src/tongka/demo/lines.csv: unbound, no real name

pytestmark = pytest.mark.e2e

TABLET = {"width": 768, "height": 1024}
# One journey per language, each by its own member of Lo Wu's staff: a TOTP code logs in once.
JOURNEYS = [
    ("en", "agent-lowu", "Wong Ka Yan"),
    ("zh-Hant", "manager-lowu", "Lee Siu Ming"),
]


@pytest.fixture(scope="module")
def e2e_env(e2e_env: dict[str, Any], make_run_keys: dict[str, str]) -> dict[str, Any]:
    """As `make run` sets it up: the sandbox providers' keys (WeChat Pay's own QR code and page)
    and a receipt signing key."""
    e2e_env["env"].update(make_run_keys)
    e2e_env["env"]["TONGKA_SANDBOX_STORE_URL"] = (
        f"sqlite:///{e2e_env['home'] / 'sandbox-providers.db'}"
    )
    return e2e_env


def open_till(db: Any, username: str) -> None:
    """The agent's till opened in the database (the shifts pages are another part of the work)."""
    from sqlalchemy import select

    from tongka.counter.models import Shift
    from tongka.db import make_engine, make_sessionmaker
    from tongka.staff.models import StaffMember

    engine = make_engine(f"sqlite:///{db}")
    try:
        with make_sessionmaker(engine)() as s:
            member = s.scalars(select(StaffMember).where(StaffMember.username == username)).one()
            assert member.store_id is not None
            s.add(
                Shift(
                    store_id=member.store_id,
                    staff_id=member.id,
                    opened_at=clock.now(),
                    float_amount=50000,
                )
            )
            s.commit()
    finally:
        engine.dispose()


@pytest.mark.parametrize(("language", "username", "name"), JOURNEYS)
def test_counter_staff_sell_for_cash_and_by_qr_code(
    browser: Any,
    live_server: str,
    tongka: Any,
    e2e_env: dict[str, Any],
    language: str,
    username: str,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from playwright.sync_api import expect

    # The staff member's name (in the header, on the receipt) is a name, not English left untranslated.
    monkeypatch.setattr(site, "LATIN_ALLOWED", site.LATIN_ALLOWED | set(name.split()))
    context = browser.new_context(base_url=live_server, viewport=TABLET, locale=LOCALES[language])
    context.set_default_timeout(15_000)
    page = context.new_page()
    watch = Watch(live_server)
    watch.attach(page)
    seen: dict[str, list[str]] = {}
    try:
        page.goto(f"/counter?lang={language}")
        expect(page).to_have_url(re.compile(r"/staff/login\?next="))
        check_page(page, language, watch, seen)
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.fill("input[name=code]", tongka("staff", "code", username).stdout.strip())
        page.locator('main form[action="/staff/login"] button[type=submit]').click()
        expect(page).to_have_url(re.compile(r"/counter$"))
        open_till(e2e_env["db"], username)
        check_page(page, language, watch, seen)

        page.fill("input[name=q]", DEMO_ICCID)
        page.locator("main form[role=search] button").click()
        expect(page).to_have_url(re.compile(r"/counter/lines/[0-9a-f-]{36}$"))
        line_url = page.url
        expect(page.get_by_test_id("real-name")).to_contain_text("A******3")
        check_page(page, language, watch, seen)

        page.fill("#check-number", "A123456(3)")
        page.locator('main form[action$="/identity"] button').click()
        expect(page.get_by_test_id("identity-result")).to_have_attribute("data-result", "match")
        check_page(page, language, watch, seen)

        # Cash: the first pack in HKD, HK$50 more than the price tendered.
        page.locator("input[name=pack_id]").first.check()
        page.check("input[name=currency][value=HKD]")
        page.check("input[name=payment_method][value=cash]")
        page.locator('main form[action$="/sale"] button').click()
        expect(page.get_by_test_id("breakdown")).to_be_visible()
        check_page(page, language, watch, seen)
        amount = int(str(page.get_by_test_id("total").get_attribute("data-amount")))
        page.fill("input[name=tendered]", f"{amount / 100 + 50:.2f}")
        page.locator('main form[action$="/sale/pay"] button').click()
        expect(page).to_have_url(re.compile(r"/counter/sales/[0-9a-f-]{36}$"))
        expect(page.get_by_test_id("sale-status")).to_have_attribute("data-paid", "yes")
        expect(page.get_by_test_id("change")).to_contain_text("50.00")
        expect(page.get_by_test_id("data-after").locator("li").first).to_be_visible()
        check_page(page, language, watch, seen)

        page.get_by_test_id("receipt").click()
        expect(page.get_by_test_id("receipt-qr")).to_be_visible()
        expect(page.get_by_test_id("receipt-number")).to_contain_text("LO-WU-")
        expect(page.get_by_test_id("agent")).to_have_text(name)
        expect(page.get_by_test_id("change")).to_contain_text("50.00")
        check_page(page, language, watch, seen)

        # WeChat Pay: the counter shows the QR code and follows the sale; the customer's phone opens
        # the code's page (in this tab: a second one made Playwright hang on this machine).
        page.goto(line_url)
        page.locator("input[name=pack_id]").first.check()
        page.check("input[name=currency][value=CNY]")
        page.check("input[name=payment_method][value=wechat_pay]")
        page.locator('main form[action$="/sale"] button').click()
        page.locator('main form[action$="/sale/pay"] button').click()
        expect(page.get_by_test_id("pay-qr")).to_be_visible()
        check_page(page, language, watch, seen)
        sale_url = page.url
        page.goto(str(page.get_by_test_id("qr-url").get_attribute("href")))
        page.locator("button[name=outcome][value=succeeded]").click()
        page.goto(sale_url)
        expect(page.get_by_test_id("sale-status")).to_have_attribute(
            "data-paid", "yes", timeout=30_000
        )
        check_page(page, language, watch, seen)
        page.get_by_test_id("receipt").click()
        expect(page.get_by_test_id("agent")).to_have_text(name)

        # A spare line, no real name yet: the passport's country is asked for a passport only.
        page.goto("/counter")
        page.fill("input[name=q]", SPARE_ICCID)
        page.locator("main form[role=search] button").click()
        page.select_option("#reg-type", "hkid")
        expect(page.locator("#reg-country")).to_be_hidden()
        page.select_option("#reg-type", "passport")
        expect(page.locator("#reg-country")).to_be_visible()
        check_page(page, language, watch, seen)
    finally:
        context.close()
    assert watch.problems == []
