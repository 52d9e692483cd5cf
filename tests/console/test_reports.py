"""The console's reports (/console/reports): every figure over a known set of sales across two
Hong Kong days, read from the page's tables and the CSV exports, to the cent and the byte."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.charging.factories import ensure_networks
from tests.web.helpers import ACCEPT_HTML, signed_in
from tongka import clock
from tongka.charging.models import UsageDay
from tongka.counter.models import CounterSale
from tongka.db import transaction
from tongka.money import GB, MB
from tongka.order.models import Order
from tongka.payment.models import Payment
from tongka.renewal import flow
from tongka.staff import service as staff_service
from tongka.stores.models import Store

HK = timedelta(hours=8)
DAY1, DAY2 = date(2026, 3, 10), date(2026, 3, 11)
PERIOD = "from=2026-03-10&to=2026-03-11"


def hk(day: date, hour: int, minute: int = 0) -> datetime:
    """A Hong Kong wall-clock time as the UTC instant the clock holds."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - HK


def admin(client, sessions, settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A fresh operator admin, now (the clock moves between steps); `client` is signed in as them."""
    return f.staff(client, sessions, settings, role="admin").headers


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


def report_csv(client, figure: str, query: str = PERIOD) -> list[list[str]]:  # type: ignore[no-untyped-def]
    r = client.get(f"/console/reports/{figure}.csv?{query}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    return rows(r.text)


class Shop:
    """Makes the sales of the scenario at the times it says."""

    def __init__(self, client, sessions, settings, frozen_clock) -> None:  # type: ignore[no-untyped-def]
        self.client, self.sessions, self.settings, self.clock = (
            client,
            sessions,
            settings,
            frozen_clock,
        )
        f.stores(sessions)
        with transaction(sessions) as s:
            self.agents = {
                store: staff_service.add(
                    s,
                    username=f"agent-{store}"[:32],
                    display_name=f"Agent of {store}",
                    role="agent",
                    store_code=store,
                    password_hash="x",
                ).id
                for store in ("lo-wu", "harbour-city")
            }

    def app_order(
        self,
        at: datetime,
        headers,
        line,
        code: str,
        currency: str,
        method: str,
        outcome="succeeded",
    ) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        self.clock.now = at
        order = f.order(
            self.client, headers, line["id"], code=code, currency=currency, method=method
        )
        if outcome == "succeeded":
            f.pay(self.client, order["payment"]["id"])
        else:  # WeChat Pay calls back only a success: the payment sync hears of a failure
            with transaction(self.sessions) as s:
                payment = s.get_one(Payment, uuid.UUID(order["payment"]["id"]))
                flow.confirm(s, payment, "failed", payment.amount, payment.currency)
        return order

    def store_sale(
        self, at: datetime, line, code: str, currency: str, method: str, store: str
    ) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        self.clock.now = at
        operator = admin(self.client, self.sessions, self.settings)
        r = self.client.post(
            "/api/v1/admin/orders",
            json={
                "line_id": line["id"],
                "pack_id": f.pack_id(self.client, code),
                "currency": currency,
                "payment_method": method,
            },
            headers={**operator, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        order = r.json()
        r = self.client.post(
            f"/api/v1/admin/payments/{order['payment']['id']}/record",
            # The receipt's issuer: receipts allow no hyphen, which store codes have (reported).
            json={"store": store.replace("-", "")},
            headers=operator,
        )
        assert r.status_code == 200 and r.json()["order_status"] == "fulfilled", r.text
        with transaction(self.sessions) as s:  # the row the counter writes with its sale
            placed = s.get_one(Order, uuid.UUID(order["id"]))
            s.add(
                CounterSale(
                    order_id=placed.id,
                    payment_id=uuid.UUID(order["payment"]["id"]),
                    store_id=s.scalars(select(Store.id).where(Store.code == store)).one(),
                    staff_id=self.agents[store],
                    pack_id=placed.pack_id,
                    method=method,
                    currency=currency,
                    amount=placed.amount,
                    tendered=placed.amount if method == "cash" else None,
                    change=0 if method == "cash" else None,
                    paid_at=clock.now(),
                )
            )
        return order

    def usage(self, line, day: date, zone: str, plmn: str, used: int) -> None:  # type: ignore[no-untyped-def]
        with transaction(self.sessions) as s:
            ensure_networks(s)
            s.add(
                UsageDay(
                    line_id=uuid.UUID(line["id"]),
                    day=day,
                    zone=zone,
                    plmn=plmn,
                    bytes=used,
                    zero_rated_bytes=0,
                )
            )


@pytest.fixture
def scenario(client, sessions, settings, frozen_clock):  # type: ignore[no-untyped-def]
    """Two subscribers' renewals in the app, three counter sales, a failed attempt, a refund and
    some usage, on 10 and 11 March 2026 (Hong Kong); the demo's own renewal a week before."""
    frozen_clock.now = hk(date(2026, 3, 3), 12)
    f.load_demo(sessions, settings)
    shop = Shop(client, sessions, settings, frozen_clock)
    frozen_clock.now = hk(DAY1, 9)
    hk_buyer, hk_line, _ = f.new_subscriber(client, sessions)
    cn_buyer, cn_line, _ = f.new_subscriber(client, sessions)
    made = {
        "app_hkd": shop.app_order(hk(DAY1, 10), hk_buyer, hk_line, "hk-5gb-30d", "HKD", "alipay"),
        "failed": shop.app_order(
            hk(DAY1, 12), cn_buyer, cn_line, "mainland-5gb-30d", "CNY", "wechat_pay", "failed"
        ),
        "cash_1": shop.store_sale(hk(DAY1, 14), hk_line, "hk-5gb-30d", "HKD", "cash", "lo-wu"),
        # A minute either side of midnight in Hong Kong (15:59 and 16:01 UTC, the same UTC day).
        "late": shop.app_order(
            hk(DAY1, 23, 59), cn_buyer, cn_line, "mainland-1gb-7d", "CNY", "alipay"
        ),
        "early": shop.app_order(
            hk(DAY2, 0, 1), cn_buyer, cn_line, "mainland-1gb-7d", "CNY", "alipay"
        ),
    }
    frozen_clock.now = hk(DAY2, 9)
    r = f.refund(client, admin(client, sessions, settings), made["app_hkd"]["payment"]["id"], 1000)
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    made["card"] = shop.store_sale(
        hk(DAY2, 10), cn_line, "mainland-5gb-30d", "CNY", "card_terminal", "harbour-city"
    )
    made["cash_2"] = shop.store_sale(hk(DAY2, 11), hk_line, "hk-5gb-30d", "HKD", "cash", "lo-wu")
    shop.usage(hk_line, DAY1, "hk", "454-00", 300 * MB)
    shop.usage(hk_line, DAY2, "hk", "454-12", 200 * MB + 7)
    shop.usage(cn_line, DAY2, "mainland", "460-00", 123_456_789)
    shop.usage(cn_line, DAY2 + timedelta(days=1), "mainland", "460-00", 999)  # after the period
    frozen_clock.now = hk(DAY2 + timedelta(days=2), 15)
    admin(client, sessions, settings)  # the client is an admin's browser now
    return made


def test_every_figure_to_the_cent_and_the_byte(client, scenario) -> None:
    made = scenario
    amounts = {k: o["amount"] for k, o in made.items()}
    assert amounts == {  # the demo's offers change none of these prices
        "app_hkd": 5800,
        "failed": 4800,
        "cash_1": 5800,
        "late": 1500,
        "early": 1500,
        "card": 4800,
        "cash_2": 5800,
    }
    assert report_csv(client, "revenue") == [
        ["day", "channel", "currency", "method", "amount", "payments", "refunds"],
        ["2026-03-10", "app", "CNY", "alipay", "15.00", "1", "0"],  # 23:59: still the 10th
        ["2026-03-10", "app", "HKD", "alipay", "58.00", "1", "0"],
        ["2026-03-10", "store", "HKD", "cash", "58.00", "1", "0"],
        ["2026-03-11", "app", "CNY", "alipay", "15.00", "1", "0"],  # 00:01: the 11th
        ["2026-03-11", "app", "HKD", "alipay", "-10.00", "0", "1"],  # the refund, on its own day
        ["2026-03-11", "store", "CNY", "card_terminal", "48.00", "1", "0"],
        ["2026-03-11", "store", "HKD", "cash", "58.00", "1", "0"],
    ]
    assert report_csv(client, "renewals") == [
        ["pack", "currency", "orders", "amount"],
        ["hk-5gb-30d", "HKD", "3", "174.00"],
        ["mainland-1gb-7d", "CNY", "2", "30.00"],
        ["mainland-5gb-30d", "CNY", "1", "48.00"],
    ]
    assert report_csv(client, "data") == [
        ["zone", "sold_bytes", "used_bytes"],
        ["mainland", str(7 * GB), "123456789"],
        ["hk", str(15 * GB), str(500 * MB + 7)],
    ]
    assert report_csv(client, "stores") == [
        ["store", "currency", "sales", "amount"],
        ["lo-wu", "HKD", "2", "116.00"],
        ["harbour-city", "CNY", "1", "48.00"],
    ]
    assert report_csv(client, "agents") == [
        ["agent", "name", "store", "currency", "sales", "amount"],
        ["agent-lo-wu", "Agent of lo-wu", "lo-wu", "HKD", "2", "116.00"],
        ["agent-harbour-city", "Agent of harbour-city", "harbour-city", "CNY", "1", "48.00"],
    ]
    assert report_csv(client, "failures") == [
        ["day", "provider", "attempts", "failed", "failure_rate_percent"],
        ["2026-03-10", "alipay", "2", "0", "0.0"],
        ["2026-03-10", "store", "1", "0", "0.0"],
        ["2026-03-10", "wechat", "1", "1", "100.0"],
        ["2026-03-11", "alipay", "1", "0", "0.0"],
        ["2026-03-11", "store", "2", "0", "0.0"],
    ]


def test_the_page_shows_each_figure_as_a_table_and_a_chart(client, scenario) -> None:
    r = client.get(f"/console/reports?{PERIOD}", headers=ACCEPT_HTML)
    assert r.status_code == 200, r.text
    page = r.text
    # The totals per currency, never one sum of both.
    assert "HKD: <strong>HK$164.00</strong>" in page and "CNY: <strong>CN¥78.00</strong>" in page
    assert "-HK$10.00" in page
    assert "tongka Lo Wu <small>lo-wu</small>" in page  # stores by name, in the page's language
    assert 'data-bytes="16106127360"' in page and 'data-bytes="524288007"' in page
    for figure in ("revenue", "renewals", "data", "stores", "agents", "failures"):
        assert f"/console/reports/{figure}.csv?{PERIOD.replace('&', '&amp;')}" in page
    charts = json.loads(
        re.search(
            r'<script type="application/json" id="report-charts">(.*?)</script>', page, re.S
        ).group(1)
    )  # type: ignore[union-attr]
    assert set(charts) == {
        "revenue-CNY",
        "revenue-HKD",
        "renewals",
        "data",
        "stores",
        "agents",
        "failures",
    }
    for name in charts:
        assert f'data-chart="{name}"' in page
    hkd = {s["label"]: s["values"] for s in charts["revenue-HKD"]["series"]}
    assert hkd == {"App · Alipay": [58.0, -10.0], "Store · Cash": [58.0, 58.0]}
    assert charts["failures"]["series"] == [
        {"label": "Alipay", "values": [0.0, 0.0]},
        {"label": "Store", "values": [0.0, 0.0]},
        {"label": "WeChat Pay", "values": [100.0, None]},  # no attempt on the 11th: a gap
    ]
    # In Chinese too, the same numbers.
    zh = client.get(f"/console/reports?{PERIOD}&lang=zh-Hant", headers=ACCEPT_HTML)
    assert zh.status_code == 200 and "收入" in zh.text and "HK$164.00" in zh.text
    assert "通卡羅湖管制站店 <small>lo-wu</small>" in zh.text


def test_one_day_of_the_two(client, scenario) -> None:
    day = report_csv(client, "revenue", "from=2026-03-11&to=2026-03-11")
    assert [r[0] for r in day[1:]] == ["2026-03-11"] * 4
    assert report_csv(client, "data", "from=2026-03-10&to=2026-03-10")[1:] == [
        ["mainland", str(1 * GB), "0"],
        ["hk", str(10 * GB), str(300 * MB)],
    ]


def test_an_empty_period_and_the_default_one(client, scenario, frozen_clock) -> None:
    r = client.get("/console/reports?from=2026-01-01&to=2026-01-31", headers=ACCEPT_HTML)
    assert r.status_code == 200
    assert r.text.count("Nothing in this period.") == 4 and 'class="report-chart"' not in r.text
    assert report_csv(client, "revenue", "from=2026-01-01&to=2026-01-31") == [
        ["day", "channel", "currency", "method", "amount", "payments", "refunds"]
    ]
    assert report_csv(client, "data", "from=2026-01-01&to=2026-01-31")[1:] == [
        ["mainland", "0", "0"],
        ["hk", "0", "0"],
    ]
    # Without a period: the last 30 Hong Kong days, today (13 March) included: the demo's too.
    r = client.get("/console/reports", headers=ACCEPT_HTML)
    assert 'name="from" value="2026-02-12"' in r.text and 'name="to" value="2026-03-13"' in r.text
    assert report_csv(client, "renewals", "")[1:3] == [
        ["hk-5gb-30d", "HKD", "3", "174.00"],
        ["mainland-1gb-7d", "CNY", "2", "30.00"],
    ]
    assert ["both-5gb-30d", "HKD", "1", "98.00"] in report_csv(client, "renewals", "")


def test_a_period_that_cannot_be_read_is_said_on_the_form(client, operator) -> None:
    r = client.get("/console/reports?from=2026-03-11&to=2026-03-10", headers=ACCEPT_HTML)
    assert r.status_code == 400
    assert 'aria-invalid="true"' in r.text and "must end on or after its first day" in r.text
    assert 'name="from" value="2026-03-11"' in r.text  # what was typed, to correct
    r = client.get("/console/reports?from=2025-01-01&to=2026-03-10", headers=ACCEPT_HTML)
    assert r.status_code == 400 and "at most 366 days" in r.text
    r = client.get("/console/reports?from=yesterday", headers=ACCEPT_HTML)
    assert r.status_code == 400 and 'aria-invalid="true"' in r.text
    r = client.get(
        "/console/reports/revenue.csv?from=2026-03-11&to=2026-03-10", headers=ACCEPT_HTML
    )
    assert r.status_code == 422 and "must end on or after its first day" in r.text
    assert client.get("/console/reports/nothing.csv").status_code == 404


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_store_staff_may_not_see_the_reports(client, sessions, settings, role) -> None:
    f.staff(client, sessions, settings, role=role, store="lo-wu")
    for path in ("/console/reports", "/console/reports/revenue.csv"):
        r = client.get(path, headers=ACCEPT_HTML, follow_redirects=False)
        assert r.status_code == 403, (path, r.status_code)


def test_a_subscriber_is_sent_to_the_staff_log_in(client) -> None:
    signed_in(client)
    for path in ("/console/reports", "/console/reports/revenue.csv"):
        r = client.get(path, headers=ACCEPT_HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/staff/login?next="), path
