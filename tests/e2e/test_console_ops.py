"""The console in a real headless Chromium: an operator admin logs in (password, then the TOTP app
set up from the enrolment page), refunds part of the demo subscriber's paid renewal from the
refunds page (the unused-data rule shown before confirming), then finds the refund in the audit log."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import pytest

from tests import factories as f
from tests.e2e.site import Watch, check_page

pytestmark = pytest.mark.e2e

PASSWORD = "a long enough staff password"


@pytest.fixture(scope="module")
def e2e_env(e2e_env: dict[str, Any], make_run_keys: dict[str, str]) -> dict[str, Any]:
    """As `make run` sets it up: the sandbox providers' keys and a receipt signing key."""
    e2e_env["env"].update(make_run_keys)
    e2e_env["env"]["TONGKA_SANDBOX_STORE_URL"] = (
        f"sqlite:///{e2e_env['home'] / 'sandbox-providers.db'}"
    )
    return e2e_env


def _submit(page: Any) -> None:
    """Press the main form's button (the header's log-out form has one too)."""
    page.locator("main form button[type=submit]").first.click()


def test_an_admin_refunds_the_demo_renewal_and_finds_it_in_the_audit_log(
    browser: Any, live_server: str, tongka: Any, e2e_env: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    tongka("staff", "add", "opsadmin", "--role", "admin", "--password", PASSWORD)
    with sqlite3.connect(e2e_env["db"]) as db:  # the demo subscriber's renewal, paid
        payment_id, receipt = db.execute(
            "SELECT p.id, r.number FROM payments p JOIN receipts r ON r.payment_id = p.id"
            " WHERE p.status = 'succeeded' AND p.order_id IS NOT NULL"
        ).fetchone()
    payment_id = str(payment_id)
    if "-" not in payment_id:  # SQLite keeps a UUID as 32 hex digits
        payment_id = f"{payment_id[:8]}-{payment_id[8:12]}-{payment_id[12:16]}-{payment_id[16:20]}-{payment_id[20:]}"

    context = browser.new_context(
        base_url=live_server, viewport={"width": 1024, "height": 768}, locale="en-GB"
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    watch = Watch(live_server)
    watch.attach(page)
    seen: dict[str, list[str]] = {}
    try:
        page.goto("/console/refunds")  # not signed in: to the staff log-in, and back after it
        expect(page).to_have_url(re.compile(r"/staff/login\?next="))
        check_page(page, "en", watch, seen)
        page.fill("input[name=username]", "opsadmin")
        page.fill("input[name=password]", PASSWORD)
        _submit(page)
        expect(page).to_have_url(re.compile(r"/staff/enrol"))
        secret = page.locator("[data-totp-secret]").inner_text().strip()
        page.fill("input[name=code]", f.staff_code(secret))
        _submit(page)
        expect(page).to_have_url(re.compile(r"/console/refunds$"))
        check_page(page, "en", watch, seen)

        page.fill("input[name=q]", receipt)
        _submit(page)
        expect(page).to_have_url(re.compile(rf"/console/refunds/{payment_id}$"))
        rule = page.get_by_test_id("refund-rule")
        expect(rule).to_contain_text("5 GB of 5 GB unused: at most HK$")
        check_page(page, "en", watch, seen)
        page.fill("input[name=amount]", "10")
        page.fill("input[name=reason]", "顧客在門市要求退款")  # staff type it in Chinese
        _submit(page)

        expect(page.locator("h2#confirm-title")).to_have_text("Refund HK$10.00?")
        expect(page.get_by_test_id("refund-rule")).to_contain_text("5 GB of 5 GB unused")
        check_page(page, "en", watch, seen)
        page.get_by_test_id("confirm-refund").click()
        expect(page).to_have_url(re.compile(rf"/console/refunds/{payment_id}\?refund="))
        made = page.get_by_test_id("refund-made")
        expect(made).to_contain_text("HK$10.00")
        expect(made).to_contain_text(re.compile("Succeeded|Pending"))
        check_page(page, "en", watch, seen)

        page.goto("/console/audit")
        page.fill("input[name=action]", "payment.refund")
        _submit(page)
        entry = page.locator('tr[data-action="payment.refund"]')
        expect(entry).to_have_count(1)
        expect(entry).to_contain_text("opsadmin")
        expect(entry).to_contain_text(payment_id)
        expect(entry).to_contain_text("1000")  # the amount, in cents, after the refund
        check_page(page, "en", watch, seen)
        # The audit log shows each object as stored (an official channel's labels in every
        # language): the refund's own entry is what must read in Chinese.
        for path in (f"/console/refunds/{payment_id}?", "/console/audit?action=payment.refund&"):
            page.goto(f"{path}lang=zh-Hant")
            check_page(page, "zh-Hant", watch, seen)
        for path in ("/console/rates", "/console/messages", "/console/refunds"):
            page.goto(f"{path}?lang=zh-Hans")
            check_page(page, "zh-Hans", watch, seen)
        # Operators' names are English ("China Mobile Hong Kong"): this page is checked in English.
        page.goto("/console/networks?lang=en")
        check_page(page, "en", watch, seen)
    finally:
        context.close()
    assert watch.problems == []
