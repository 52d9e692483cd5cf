"""Bills (/orders) and their CSV (/orders.csv): orders, payments, refunds, overage and wallet
movements of the signed-in subscriber alone, filtered, paged, in three languages."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests import factories as f
from tests.charging import factories as cf
from tests.web.helpers import ACCEPT_HTML, signed_in
from tongka import clock
from tongka.account.models import Account, Line
from tongka.catalog import service as catalog
from tongka.db import transaction
from tongka.ledger import service as ledger
from tongka.money import GB
from tongka.renewal import bills
from tongka.wallet import service as wallets

EVIL = '=HYPERLINK("http://evil.example","x")'


def _browser(client: TestClient, headers: dict[str, str]) -> None:
    """This browser signed in as the subscriber of `headers` (the web session is an API token)."""
    client.cookies.set("tongka_session", headers["Authorization"].removeprefix("Bearer "))


def _kinds(html: str) -> list[str]:
    return re.findall(r'<tr data-kind="([a-z]+)">', html)


def _overage(sessions: sessionmaker[Session], username: str, line_id: str, amount: int) -> None:
    """Overage charged to the owner's wallet for usage of a charging session on the line, as the
    charging engine books it (tests/charging cover how it is rated)."""
    with transaction(sessions) as s:
        account = s.query(Account).filter_by(username=username).one()
        line = s.get_one(Line, uuid.UUID(line_id))
        wallet = wallets.credit(s, account, 5000, "HKD", reference=f"test-{username}")
        cf.ensure_networks(s)
        charging_session = cf.open_session(s, line)
        ledger.transfer(
            s,
            wallet.ledger_account,
            ledger.system_account(s, "overage_sales", "HKD"),
            amount,
            reason="overage",
            reference=f"charging_session:{charging_session.id}",
        )


@pytest.fixture
def history(
    client: TestClient, sessions: sessionmaker[Session], demo: None, operator: dict[str, str]
) -> dict[str, Any]:
    """A subscriber with a line and something of every kind: a paid order (part refunded), an unpaid
    one, a wallet top-up by staff and overage paid from the wallet."""
    headers, line, username = f.new_subscriber(client, sessions)
    paid = f.order(client, headers, line["id"], code="hk-5gb-30d", method="alipay")
    f.pay(client, paid["payment"]["id"])
    refund = f.refund(client, operator, paid["payment"]["id"], 100)
    assert refund.status_code == 201, refund.text
    unpaid = f.order(client, headers, line["id"], code="both-5gb-30d", method="alipay")
    _overage(sessions, username, line["id"], 321)
    _browser(client, headers)
    return {"headers": headers, "line": line, "paid": paid, "unpaid": unpaid}


def test_every_kind_of_row_appears_and_the_filters_narrow_them(
    client: TestClient, history: dict[str, Any]
) -> None:
    page = client.get("/orders", headers=ACCEPT_HTML)
    assert page.status_code == 200
    kinds = _kinds(page.text)
    assert sorted(set(kinds)) == ["orders", "overage", "payments", "refunds", "wallet"]
    assert kinds.count("orders") == 2 and kinds.count("payments") == 2
    assert kinds.count("wallet") == 1  # the top-up; the overage is listed once, as overage
    paid, unpaid = history["paid"], history["unpaid"]
    assert f'href="/orders/{paid["id"]}"' in page.text
    number = history["line"]["numbers"][0]
    assert number not in page.text and number[-2:] in page.text  # masked

    only = client.get("/orders?kind=orders&status=fulfilled", headers=ACCEPT_HTML)
    assert _kinds(only.text) == ["orders"] and f"/orders/{paid['id']}" in only.text
    assert f"/orders/{unpaid['id']}" not in only.text
    waiting = client.get("/orders?status=awaiting_payment", headers=ACCEPT_HTML)
    assert _kinds(waiting.text) == ["orders"] and f"/orders/{unpaid['id']}" in waiting.text
    refunds = client.get("/orders?kind=refunds", headers=ACCEPT_HTML)
    assert _kinds(refunds.text) == ["refunds"] and "+HK$1.00" in refunds.text
    overage = client.get(f"/orders?kind=overage&line={history['line']['id']}", headers=ACCEPT_HTML)
    assert _kinds(overage.text) == ["overage"] and "−HK$3.21" in overage.text
    wallet = client.get("/orders?kind=wallet", headers=ACCEPT_HTML)
    assert sorted(_kinds(wallet.text)) == ["wallet", "wallet"]  # top-up and spending
    # By line: a top-up is for no line.
    by_line = client.get(f"/orders?line={history['line']['id']}", headers=ACCEPT_HTML)
    assert "wallet" not in _kinds(by_line.text) and "orders" in _kinds(by_line.text)

    today = clock.now().date()
    later = (today + timedelta(days=2)).isoformat()
    assert _kinds(client.get(f"/orders?from={later}", headers=ACCEPT_HTML).text) == []
    earlier = (today - timedelta(days=2)).isoformat()
    span = client.get(f"/orders?from={earlier}&to={later}", headers=ACCEPT_HTML)
    assert len(_kinds(span.text)) == len(kinds)
    bad = client.get("/orders?from=yesterday", headers=ACCEPT_HTML)
    assert bad.status_code == 400 and 'id="from-error"' in bad.text


def test_pages_newest_first(
    client: TestClient, history: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = _kinds(client.get("/orders", headers=ACCEPT_HTML).text)
    monkeypatch.setattr(bills, "PER_PAGE", 3)
    first = client.get("/orders", headers=ACCEPT_HTML)
    assert _kinds(first.text) == everything[:3] and 'href="/orders?page=2"' in first.text
    second = client.get("/orders?page=2", headers=ACCEPT_HTML)
    assert _kinds(second.text) == everything[3:6]
    assert 'rel="prev"' in second.text
    kept = client.get("/orders?kind=payments", headers=ACCEPT_HTML)
    assert "page=2" not in kept.text  # two payments: one page


def _csv(client: TestClient, query: str = "") -> tuple[Any, list[list[str]]]:
    r = client.get(f"/orders.csv{query}")
    assert r.status_code == 200, r.text
    return r, list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))


def test_the_csv_has_the_same_rows_a_bom_and_no_formulas(
    client: TestClient, sessions: sessionmaker[Session], history: dict[str, Any]
) -> None:
    r, rows = _csv(client)
    assert r.content.startswith("\ufeff".encode())
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["content-type"].startswith("text/csv")
    assert rows[0] == [
        "Date",
        "Type",
        "Details",
        "Line",
        "Status",
        "Amount",
        "Currency",
        "Direction",
    ]
    page_kinds = _kinds(client.get("/orders", headers=ACCEPT_HTML).text)
    assert len(rows) - 1 == len(page_kinds)
    refund = next(row for row in rows if row[1] == "Refund")
    assert refund[5:] == ["1.00", "HKD", "In"]
    overage = next(row for row in rows if row[1] == "Overage data")
    assert overage[5:] == ["3.21", "HKD", "Out"] and overage[3].endswith(
        history["line"]["numbers"][0][-2:]
    )
    _r, orders = _csv(client, "?kind=orders&status=awaiting_payment")
    assert len(orders) == 2 and orders[1][1] == "Order"

    # A pack whose name is a formula (an operator's typo, or worse) is text in the spreadsheet.
    with transaction(sessions) as s:
        catalog.upsert_pack(
            s,
            code="evil-1gb",
            names={"en": EVIL},
            zone="hk",
            volume_bytes=GB,
            validity_days=7,
            prices={"HKD": 1000},
            channels=["app"],
        )
    f.order(client, history["headers"], history["line"]["id"], code="evil-1gb", method="alipay")
    _r, rows = _csv(client, "?kind=orders")
    details = [row[2] for row in rows[1:]]
    assert "'" + EVIL in details and EVIL not in details


def test_another_subscriber_sees_none_of_it(client: TestClient, history: dict[str, Any]) -> None:
    signed_in(client)  # someone else, in this browser
    page = client.get("/orders", headers=ACCEPT_HTML)
    assert page.status_code == 200 and _kinds(page.text) == []
    assert history["paid"]["id"] not in page.text
    _r, rows = _csv(client)
    assert len(rows) == 1  # the header alone
    theirs = client.get(f"/orders?line={history['line']['id']}", headers=ACCEPT_HTML)
    assert theirs.status_code == 404
    assert client.get(f"/orders.csv?line={history['line']['id']}").status_code == 404


def test_a_visitor_is_sent_to_log_in(client: TestClient) -> None:
    for path, back in (
        ("/orders?kind=orders", "%2Forders%3Fkind%3Dorders"),
        ("/orders.csv", "%2Forders.csv"),
    ):
        r = client.get(path, headers=ACCEPT_HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/login?next={back}"


@pytest.mark.parametrize(
    ("language", "title", "header"),
    [("en", "Bills", "Date"), ("zh-Hans", "账单", "日期"), ("zh-Hant", "賬單", "日期")],
)
def test_bills_in_three_languages(
    client: TestClient, language: str, title: str, header: str
) -> None:
    signed_in(client, language=language)
    page = client.get("/orders", headers=ACCEPT_HTML)
    assert f'<html lang="{language}"' in page.text and title in page.text
    _r, rows = _csv(client)
    assert rows[0][0] == header
