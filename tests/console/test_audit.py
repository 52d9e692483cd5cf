"""The console's audit log: searched and exported; append-only in the code and in the database.
And every operations page of the console is for operator admins only."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import select, text

from tests import factories as f
from tests.console.helpers import post
from tests.web.helpers import ACCEPT_HTML, form_token, signed_in
from tongka.db import transaction
from tongka.staff import audit
from tongka.staff.models import AuditEntry
from tongka.staff.service import Staff

PAGE = "/console/audit"
AGENT = Staff(uuid.uuid4(), "ann", "Ann", "agent", None, "lo-wu", "203.0.113.7")
MANAGER = Staff(uuid.uuid4(), "max", "Max", "manager", None, "harbour-city", "203.0.113.8")
ADMIN = Staff(uuid.uuid4(), "ada", "Ada", "admin", None, None, "198.51.100.1")


def entry(sessions, actor: Staff, action: str, at: datetime, **values) -> None:  # type: ignore[no-untyped-def]
    with transaction(sessions) as s:
        e = audit.record(s, audit.CLI if actor is ADMIN else actor, action, "thing", **values)
        # Not an update: the row is not yet written. The actors here are not staff rows.
        e.at, e.staff_id, e.username, e.role = at, None, actor.username, actor.role
        e.store_code, e.address = actor.store_code, actor.address


@pytest.fixture
def logged(sessions) -> None:  # type: ignore[no-untyped-def]
    # 1 March 10:00, 2 March 23:30 and 3 March 00:30 in Hong Kong (UTC+8).
    entry(sessions, AGENT, "sale.cash", datetime(2026, 3, 1, 2, 0, tzinfo=UTC), object_id="S-1")
    entry(
        sessions, MANAGER, "shift.close", datetime(2026, 3, 2, 15, 30, tzinfo=UTC), object_id="SH-9"
    )
    entry(
        sessions,
        ADMIN,
        "pack.price",
        datetime(2026, 3, 2, 16, 30, tzinfo=UTC),
        object_id="hk-5gb-30d",
        before={"price": 5800, "name": "HK 5 GB"},
        after={"price": 6200, "name": "HK 5 GB"},
    )


def actions(html: str) -> list[str]:
    return re.findall(r'<tr data-action="([^"]+)"', html)


@pytest.mark.usefixtures("logged")
def test_the_log_is_searched_newest_first(client, admin) -> None:
    def found(**query: str) -> list[str]:
        r = client.get(PAGE, params={"action": "", **query}, headers=ACCEPT_HTML)
        assert r.status_code == 200, r.text
        return [a for a in actions(r.text) if not a.startswith("staff.")]  # the admin's own log-in

    assert found() == ["pack.price", "shift.close", "sale.cash"]
    assert found(username="ANN") == ["sale.cash"]
    assert found(store="harbour-city") == ["shift.close"]
    assert found(action="sale") == ["sale.cash"]
    assert found(action="pack.") == ["pack.price"]
    assert found(text="SH-9") == ["shift.close"]
    # Hong Kong days: 3 March 00:30 there is still 2 March in UTC.
    assert found(**{"from": "2026-03-02", "to": "2026-03-02"}) == ["shift.close"]
    assert found(**{"from": "2026-03-03"}) == ["pack.price"]
    assert found(**{"to": "2026-03-01"}) == ["sale.cash"]
    r = client.get(PAGE, params={"from": "yesterday"}, headers=ACCEPT_HTML)
    assert r.status_code == 400


@pytest.mark.usefixtures("logged")
def test_each_entry_shows_who_what_before_and_after_when_and_where(client, admin) -> None:
    r = client.get(PAGE, params={"action": "pack"}, headers=ACCEPT_HTML)
    row = r.text[r.text.index('data-action="pack.price"') :].split("</tr>")[0]
    assert "ada" in row and "Admin" in row and "hk-5gb-30d" in row and "198.51.100.1" in row
    assert "Mar 3, 2026 12:30" in row  # Hong Kong time
    assert "<strong>price</strong>: <del>5800</del> → <ins>6200</ins>" in row
    assert "<strong>name</strong>" not in row  # unchanged
    r = client.get(PAGE, params={"action": "sale"}, headers=ACCEPT_HTML)
    row = r.text[r.text.index('data-action="sale.cash"') :].split("</tr>")[0]
    assert "Agent" in row and "lo-wu" in row and "203.0.113.7" in row


def test_the_log_is_paged(client, sessions, admin) -> None:
    for i in range(55):
        entry(
            sessions, AGENT, "sale.cash", datetime(2026, 3, 1, 2, i, tzinfo=UTC), object_id=f"S-{i}"
        )
    r = client.get(PAGE, params={"action": "sale"}, headers=ACCEPT_HTML)
    assert len(actions(r.text)) == 50 and "55 entries found." in r.text
    assert "S-54" in r.text and "S-4<" not in r.text
    assert 'href="/console/audit?action=sale&amp;page=2"' in r.text
    r = client.get(PAGE, params={"action": "sale", "page": "2"}, headers=ACCEPT_HTML)
    assert len(actions(r.text)) == 5 and "S-4<" in r.text and 'rel="next"' not in r.text


@pytest.mark.usefixtures("logged")
def test_the_csv_has_the_same_search_and_runs_no_formula(client, sessions, admin) -> None:
    entry(
        sessions,
        AGENT,
        "sale.cash",
        datetime(2026, 3, 1, 3, 0, tzinfo=UTC),
        object_id="=HYPERLINK(1)",
    )
    r = client.get(f"{PAGE}.csv", params={"store": "lo-wu"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:5] == ["When", "Username", "Role", "Store", "Action"]
    assert [row[6] for row in rows[1:]] == ["'=HYPERLINK(1)", "S-1"]
    assert rows[2][0] == "2026-03-01T10:00:00+08:00"
    r = client.get(f"{PAGE}.csv", params={"action": "pack"})
    [_header, price] = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert price[7] == '{"name": "HK 5 GB", "price": 5800}' and price[8].endswith('"price": 6200}')
    zh = client.get(f"{PAGE}.csv", params={"lang": "zh-Hant"})
    assert zh.content.decode("utf-8-sig").splitlines()[0].startswith("時間")


def test_nothing_in_tongka_updates_or_deletes_an_audit_entry() -> None:
    source = Path(__file__).parents[2] / "src" / "tongka"
    pattern = re.compile(
        r"(update|delete)\s*\(\s*AuditEntry|(UPDATE|DELETE FROM)\s+audit_log|"
        r"session\.delete\(\s*(entry|e|row)\b"
    )
    offenders = [
        str(p.relative_to(source))
        for p in source.rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_database_refuses_to_change_or_remove_an_entry(sessions) -> None:
    entry(sessions, AGENT, "sale.cash", datetime(2026, 3, 1, 2, 0, tzinfo=UTC))
    for statement in ("UPDATE audit_log SET action = 'nothing'", "DELETE FROM audit_log"):
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
            with transaction(sessions) as s:
                s.execute(text(statement))
    with sessions() as s:
        assert s.scalars(select(AuditEntry.action)).all() == ["sale.cash"]


# --- who may open the console's operations pages ------------------------------------------------

ROUTES = [
    ("GET", "/console/refunds"),
    ("GET", "/console/refunds/{id}"),
    ("POST", "/console/refunds/{id}/check"),
    ("POST", "/console/refunds/{id}"),
    ("GET", "/console/networks"),
    ("POST", "/console/networks"),
    ("GET", "/console/networks/460-00"),
    ("POST", "/console/networks/460-00"),
    ("POST", "/console/rating-groups"),
    ("GET", "/console/rates"),
    ("POST", "/console/rates"),
    ("GET", "/console/messages"),
    ("POST", "/console/messages/{id}/retry"),
    ("GET", "/console/audit"),
    ("GET", "/console/audit.csv"),
]


def test_every_route_is_listed_here(app) -> None:  # type: ignore[no-untyped-def]
    from tests.test_routes import page_routes

    ours = {
        (
            m,
            p.replace("{payment_id}", "{id}")
            .replace("{message_id}", "{id}")
            .replace("{plmn}", "460-00"),
        )
        for m, p, endpoint in page_routes(app)
        if endpoint.__module__.startswith(
            ("tongka.console.operations", "tongka.console.audit_pages")
        )
    }
    assert ours == set(ROUTES)


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_store_staff_are_refused_everywhere(client, sessions, settings, role) -> None:
    f.staff(client, sessions, settings, role=role)
    token = form_token(client, "/staff/login")  # the CSRF check passes: the role is what refuses
    for method, path in ROUTES:
        url = path.replace("{id}", str(uuid.uuid4()))
        r = client.request(
            method,
            url,
            data={"csrf_token": token} if method == "POST" else None,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        assert (r.status_code, r.json()["code"]) == (403, "staff_role_refused"), (method, path)


def test_a_subscribers_session_is_sent_to_the_staff_log_in(client) -> None:
    signed_in(client)
    for method, path in ROUTES:
        if method != "GET":
            continue
        url = path.replace("{id}", str(uuid.uuid4()))
        r = client.get(url, headers=ACCEPT_HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/staff/login?next="), url


def test_an_admin_opens_them_all(client, admin) -> None:
    for method, path in ROUTES:
        if method == "GET" and "{id}" not in path and "460-00" not in path:
            assert client.get(path, headers=ACCEPT_HTML).status_code == 200, path
    assert post(client, "/console/rates", "/console/rates", {}).status_code == 400
