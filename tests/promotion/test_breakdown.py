"""One breakdown: the quote, the order, the receipt (signed) and the email all show the same one."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.factories import order
from tests.promotion.factories import make_offer, quote
from tongka.money import GB
from tongka.notify.models import OutboxMessage
from tongka.promotion import pricing

pytestmark = pytest.mark.usefixtures("generic_sandbox")


@pytest.mark.parametrize("currency", ["HKD", "CNY"])
def test_quote_order_receipt_and_email_show_the_same_breakdown(
    client, sessions, who, currency
) -> None:
    f.hkd_only_pack(sessions, 6350)
    make_offer(
        sessions,
        code="mj",
        kind="spend_threshold",
        names={"en": "Spend 60 save 8", "zh-Hant": "滿60減8"},
        tiers=[{"currency": "HKD", "min": 6000, "off": 800}],
    )
    make_offer(
        sessions,
        code="extra",
        kind="first_topup",
        percent_off=5,
        stackable=True,
        names={"en": "Welcome 5 %"},
    )
    make_offer(
        sessions,
        code="gift",
        kind="bonus_data",
        bonus_bytes=GB // 2,
        bonus_zone="both",
        bonus_validity_days=30,
        names={"en": "Half a GB free"},
    )

    q = quote(client, who.headers, who.line["id"], code="hk-only-2gb", currency=currency)
    o = order(
        client, who.headers, who.line["id"], code="hk-only-2gb", currency=currency, quote_id=q["id"]
    )
    f.pay(client, o["payment"]["id"])
    after = client.get(f"/api/v1/orders/{o['id']}", headers=who.headers).json()
    [receipt] = client.get("/api/v1/receipts", headers=who.headers).json()
    signed = json.loads(receipt["signed_content"])
    with sessions() as s:
        [email] = s.scalars(
            select(OutboxMessage).where(OutboxMessage.to == f"{who.username}@example.com")
        )

    breakdown = q["price"]
    assert [e["code"] for e in breakdown["offers"]] == ["mj", "extra", "gift"]
    assert [e["amount"] for e in breakdown["offers"]] == [
        800,
        318,
        0,
    ]  # 5 % of 63.50 = 3.175 -> 3.18
    assert breakdown["subtotal"] == {"amount": 6350 - 800 - 318, "currency": "HKD"}
    assert o["price"] == after["price"] == breakdown
    paid = {"amount": q["amount"], "currency": currency}
    assert receipt["content"]["price"] == signed["price"] == {**breakdown, "paid": paid}
    assert after["amount"] == q["amount"] == breakdown["total"]["amount"]
    # The email says it in words: every line of the quote but its total, then what was paid.
    body_lines = email.body.splitlines()
    described = pricing.describe(breakdown, "en")
    assert q["lines"] == [*described, pricing.total_line(breakdown, "en")]
    start = body_lines.index(described[0])
    assert body_lines[start : start + len(described)] == described
    assert body_lines[start + len(described)].startswith(
        f"Paid: {'HK$' if currency == 'HKD' else 'CN¥'}"
    )
    assert "Half a GB free: +512 MB of Mainland + Hong Kong data, valid for 30 days" in described
    # And the printable receipt has a row for each offer.
    page = client.get(urlsplit(receipt["page_url"]).path).text
    assert (
        "Spend 60 save 8" in page
        and "−HK$8.00" in page
        and "+512 MB · Mainland + Hong Kong · 30 days" in page
    )
