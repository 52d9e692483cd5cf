"""A store's end-of-day report: the day's sales by method, pack, agent and currency, its shifts
with their cash, its refunds; a manager sees their own store's, an admin any; CSV."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

from tests.counter import factories as cf
from tests.counter.test_shifts import close, open_shift
from tests.e2e.site import english_left
from tests.web.helpers import ACCEPT_HTML
from tongka import clock
from tongka.counter import reports


def test_the_day_report_of_a_store(client, sessions, operator, cast, line_id) -> None:  # type: ignore[no-untyped-def]
    day = clock.now().astimezone(reports.HONG_KONG).date()
    start, end = reports.day_bounds(day)
    shift_id = open_shift(client, cast.agent, "500")
    early = cf.sale(
        client,
        sessions,
        operator,
        line_id,
        cast.agent,
        shift_id=shift_id,
        paid_at=start + timedelta(minutes=1),
    )
    cf.sale(
        client,
        sessions,
        operator,
        line_id,
        cast.agent,
        shift_id=shift_id,
        method="card_terminal",
        paid_at=start + timedelta(hours=3),
    )
    cf.sale(
        client,
        sessions,
        operator,
        line_id,
        cast.agent2,
        method="wechat_pay_qr",
        pack="hk-10gb-30d",
        paid_at=end - timedelta(minutes=1),
    )
    # Not this day's, or not this store's.
    cf.sale(client, sessions, operator, line_id, cast.agent, paid_at=start - timedelta(minutes=1))
    cf.sale(client, sessions, operator, line_id, cast.agent, paid_at=end)
    cf.sale(
        client, sessions, operator, line_id, cast.other_agent, paid_at=start + timedelta(hours=2)
    )
    cf.refund(sessions, early["payment_id"], 5800)
    assert close(client, cast.agent, shift_id, {10000: 4}).status_code == 303

    with sessions() as s:
        from sqlalchemy import select

        from tongka.stores.models import Store

        lo_wu = s.scalars(select(Store).where(Store.code == "lo-wu")).one()
        report = reports.day_report(s, lo_wu.id, day)
    big = next(x.amount for x in report.sales if x.pack_code == "hk-10gb-30d")
    assert [(k, t.count, t.amount) for k, t in report.by_method.items()] == [
        (("card_terminal", "HKD"), 1, 5800),
        (("cash", "HKD"), 1, 5800),
        (("wechat_pay_qr", "HKD"), 1, big),
    ]
    assert {k: (t.count, t.amount) for k, t in report.by_pack.items()} == {
        ("hk-5gb-30d", "HKD"): (2, 11600),
        ("hk-10gb-30d", "HKD"): (1, big),
    }
    assert {k: t.count for k, t in report.by_agent.items()} == {
        (cast.agent.username, "HKD"): 2,
        (cast.agent2.username, "HKD"): 1,
    }
    assert (report.by_currency["HKD"].count, report.by_currency["HKD"].amount) == (3, 11600 + big)
    assert report.refunded["HKD"].amount == 5800 and len(report.refunds) == 1
    [shift] = report.shifts
    # Float 500 + the cash sale 58 − its refund 58 = 500; counted 400.
    assert (shift.shift.expected_amount, shift.shift.counted_amount, shift.shift.difference) == (
        50000,
        40000,
        -10000,
    )

    cf.as_staff(client, cast.manager)
    page = client.get(f"/counter/reports?date={day.isoformat()}", headers=ACCEPT_HTML)
    assert page.status_code == 200
    assert f'data-total="HKD">HK${(11600 + big) / 100:,.2f}' in page.text
    assert "-HK$100.00" in page.text and cast.agent2.username in page.text
    assert cast.other_agent.username not in page.text

    r = client.get(f"/counter/reports.csv?date={day.isoformat()}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Type", "Time", "Reference"]
    kinds = [row[0] for row in rows[1:]]
    assert kinds.count("Sale") == 3 and kinds.count("Refund") == 1 and kinds.count("Shift") == 1
    shift_row = next(row for row in rows if row[0] == "Shift")
    assert shift_row[-4:] == ["500.00", "500.00", "400.00", "-100.00"]
    assert next(row for row in rows if row[0] == "Refund")[7] == "-58.00"

    # In Chinese, nothing of the report is left in English (the CSV's header neither).
    for language in ("zh-Hant", "zh-Hans"):
        zh = client.get(
            f"/counter/reports?date={day.isoformat()}&lang={language}", headers=ACCEPT_HTML
        )
        assert zh.status_code == 200
        main = re.sub(r"<[^>]+>", " ", zh.text.split("<main", 1)[1].split("</main>", 1)[0])
        assert english_left(html.unescape(main), language) == []
    assert "日結報告" in client.get("/counter/reports?lang=zh-Hant", headers=ACCEPT_HTML).text
    header = (
        client.get(f"/counter/reports.csv?date={day.isoformat()}")
        .content.decode("utf-8-sig")
        .splitlines()[0]
    )
    assert header.startswith("類型,時間,編號"), header


def test_who_sees_which_day_report(client, cast) -> None:  # type: ignore[no-untyped-def]
    for who, query, status in (
        (cast.agent, "", 403),
        (cast.manager, "", 200),
        (cast.manager, "?store=lo-wu", 200),
        (cast.other_manager, "?store=lo-wu", 403),
        (cast.admin, "?store=harbour-city", 200),
        (cast.admin, "", 200),  # the store picker
        (cast.admin, "?store=nowhere", 404),
        (cast.manager, "?date=2026-13-01", 422),
    ):
        cf.as_staff(client, who)
        r = client.get(f"/counter/reports{query}", headers=ACCEPT_HTML)
        assert r.status_code == status, (who.username, query, r.status_code)
        csv_status = 404 if (who is cast.admin and not query) else status
        assert client.get(f"/counter/reports.csv{query}").status_code == csv_status
