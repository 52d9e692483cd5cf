"""Commission: which rate applies (precedence and history), rounding per sale, refunds reversed in
their own month, the statement by role, the admin's rates page, CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.counter import factories as cf
from tests.web.helpers import ACCEPT_HTML, form_token
from tongka import clock
from tongka.counter import commission
from tongka.counter.models import CommissionRate
from tongka.staff.models import AuditEntry, StaffMember

PACK, OTHER_PACK = uuid.uuid4(), uuid.uuid4()
STORE, OTHER_STORE = uuid.uuid4(), uuid.uuid4()
AGENT, OTHER_AGENT = uuid.uuid4(), uuid.uuid4()
JAN = datetime(2026, 1, 1, tzinfo=UTC)


def rate(bp: int, *, pack=None, store=None, agent=None, since=JAN) -> CommissionRate:  # type: ignore[no-untyped-def]
    return CommissionRate(
        pack_id=pack, store_id=store, staff_id=agent, rate_bp=bp, valid_from=since, created_at=since
    )


def applied(rates: list[CommissionRate], at: datetime = JAN + timedelta(days=40)) -> int | None:
    found = commission.applicable(rates, pack_id=PACK, store_id=STORE, staff_id=AGENT, at=at)
    return found.rate_bp if found else None


def test_the_most_specific_rate_applies() -> None:
    rates = [
        rate(100, pack=PACK),
        rate(200, store=STORE),
        rate(300, store=STORE, pack=PACK),
        rate(400, agent=AGENT),
        rate(500, agent=AGENT, pack=PACK),
        # Rates for something else never apply, however specific.
        rate(901, agent=OTHER_AGENT, pack=PACK),
        rate(902, store=OTHER_STORE, pack=PACK),
        rate(903, agent=AGENT, pack=OTHER_PACK),
    ]
    assert applied(rates) == 500
    assert applied(rates[:4] + rates[5:]) == 400
    assert applied(rates[:3] + rates[5:]) == 300
    assert applied(rates[:2] + rates[5:]) == 200
    assert applied(rates[:1] + rates[5:]) == 100
    assert applied(rates[5:]) is None
    # An agent row naming the agent's store is still an agent row (above store + pack).
    assert applied([rate(300, store=STORE, pack=PACK), rate(450, agent=AGENT, store=STORE)]) == 450


def test_a_new_rate_applies_from_its_date_and_not_before() -> None:
    march = datetime(2026, 3, 1, tzinfo=UTC)
    rates = [rate(200, store=STORE), rate(250, store=STORE, since=march)]
    assert applied(rates, at=march - timedelta(seconds=1)) == 200
    assert applied(rates, at=march) == 250
    # A more specific rate not yet in force leaves the less specific one.
    assert applied([rate(200, store=STORE), rate(700, agent=AGENT, since=march)], at=JAN) == 200
    assert applied([rate(200, store=STORE, since=march)], at=JAN) is None


@pytest.mark.parametrize(
    ("amount", "bp", "expected"),
    [(5800, 250, 145), (5820, 125, 73), (100, 50, 1), (100, 49, 0), (99, 50, 0), (0, 300, 0)],
)
def test_commission_is_rounded_half_up_per_sale(amount: int, bp: int, expected: int) -> None:
    assert commission.commission_of(amount, bp) == expected


@pytest.mark.parametrize(("typed", "bp"), [("2.5", 250), ("2.50%", 250), ("0", 0), ("100", 10000)])
def test_a_rate_is_typed_in_per_cent(typed: str, bp: int) -> None:
    assert commission.parse_percent(typed) == bp


@pytest.mark.parametrize("typed", ["", "100.01", "2.555", "-1", "x"])
def test_a_rate_out_of_range_is_refused(typed: str) -> None:
    with pytest.raises(commission.RateInvalid):
        commission.parse_percent(typed)


def test_months() -> None:
    assert commission.parse_month("2026-12") == date(2026, 12, 1)
    start, end = commission.month_bounds(date(2026, 12, 1))
    assert (start.isoformat(), end.isoformat()) == (
        "2026-12-01T00:00:00+08:00",
        "2027-01-01T00:00:00+08:00",
    )
    for bad in ("2026-13", "12-2026", "2026-1"):
        with pytest.raises(commission.MonthInvalid):
            commission.parse_month(bad)


def set_rate(client, admin, **fields) -> int:  # type: ignore[no-untyped-def]
    cf.as_staff(client, admin)
    token = form_token(client, "/counter/commission/rates")
    r = client.post(
        "/counter/commission/rates",
        data={"csrf_token": token, **fields},
        headers=ACCEPT_HTML,
        follow_redirects=False,
    )
    return r.status_code


def months() -> tuple[date, date]:
    this = clock.now().astimezone(commission.HONG_KONG).date().replace(day=1)
    return (this - timedelta(days=1)).replace(day=1), this


def statement(client, who, query=""):  # type: ignore[no-untyped-def]
    cf.as_staff(client, who)
    return client.get(f"/counter/commission.csv{query}")


def rows_of(r) -> list[list[str]]:  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    return list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))[1:]


def test_the_monthly_statement(client, sessions, operator, cast, line_id) -> None:  # type: ignore[no-untyped-def]
    last, this = months()
    last_start, _ = commission.month_bounds(last)
    this_start, _ = commission.month_bounds(this)
    # 2 % for lo-wu from last month on.
    assert set_rate(client, cast.admin, store="lo-wu", rate="2", valid_from=last.isoformat()) == 303
    old = cf.sale(
        client, sessions, operator, line_id, cast.agent, paid_at=last_start + timedelta(hours=1)
    )
    before = rows_of(statement(client, cast.admin, f"?month={last:%Y-%m}"))
    assert [(r[1], r[4], r[7], r[8], r[9]) for r in before] == [
        ("Sale", cast.agent.username, "58.00", "2.00", "1.16")
    ]

    # From this month, the agent earns 3 %; agent2 keeps the store's 2 %.
    assert (
        set_rate(
            client, cast.admin, agent=cast.agent.username, rate="3", valid_from=this.isoformat()
        )
        == 303
    )
    new = cf.sale(
        client, sessions, operator, line_id, cast.agent, paid_at=this_start + timedelta(hours=1)
    )
    cf.sale(
        client, sessions, operator, line_id, cast.agent2, paid_at=this_start + timedelta(hours=2)
    )
    cf.sale(
        client,
        sessions,
        operator,
        line_id,
        cast.other_agent,
        paid_at=this_start + timedelta(hours=3),
    )
    # Last month's sale refunded this month: its 2 % comes back this month.
    cf.refund(
        sessions, old["payment_id"], 5800, at=max(clock.now(), this_start + timedelta(hours=4))
    )

    assert rows_of(statement(client, cast.admin, f"?month={last:%Y-%m}")) == before
    mine = rows_of(statement(client, cast.agent, f"?month={this:%Y-%m}"))
    assert sorted((r[1], r[7], r[8], r[9]) for r in mine) == [
        ("Refund", "-58.00", "2.00", "-1.16"),
        ("Sale", "58.00", "3.00", "1.74"),
    ]
    assert str(new["order_id"]) in {r[2] for r in mine}

    store = rows_of(statement(client, cast.manager, f"?month={this:%Y-%m}"))
    assert {r[4] for r in store} == {cast.agent.username, cast.agent2.username}
    everyone = rows_of(statement(client, cast.admin, f"?month={this:%Y-%m}"))
    assert {r[3] for r in everyone} == {"lo-wu", "harbour-city"}
    # No rate for harbour-city: its sale is listed with no commission.
    assert next(r for r in everyone if r[3] == "harbour-city")[8:] == ["", "0.00"]
    only = rows_of(statement(client, cast.admin, f"?month={this:%Y-%m}&store=harbour-city"))
    assert {r[3] for r in only} == {"harbour-city"}

    # The page: totals per store (1.74 + 1.16 − 1.16 for lo-wu).
    cf.as_staff(client, cast.manager)
    page = client.get(f"/counter/commission?month={this:%Y-%m}", headers=ACCEPT_HTML)
    assert page.status_code == 200 and 'data-commission="lo-wu-HKD">HK$1.74<' in page.text

    with sessions() as s:
        entries = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "commission.rate").order_by(AuditEntry.at)
        ).all()
    assert [e.after["rate_bp"] for e in entries] == [200, 300]


def test_who_sees_which_statement(client, cast) -> None:  # type: ignore[no-untyped-def]
    for who, query, status in (
        (cast.agent, "", 200),
        (cast.agent, f"?agent={cast.agent.username}", 200),
        (cast.agent, f"?agent={cast.agent2.username}", 403),
        (cast.agent, "?store=harbour-city", 403),
        (cast.manager, f"?agent={cast.agent2.username}", 200),
        (cast.manager, f"?agent={cast.other_agent.username}", 403),
        (cast.other_manager, "?store=lo-wu", 403),
        (cast.admin, f"?store=harbour-city&agent={cast.other_agent.username}", 200),
        (cast.admin, "?month=2026-13", 422),
    ):
        cf.as_staff(client, who)
        assert client.get(f"/counter/commission{query}", headers=ACCEPT_HTML).status_code == status
        assert client.get(f"/counter/commission.csv{query}").status_code == status


def test_only_admins_set_rates_and_bad_rates_are_refused(client, sessions, cast) -> None:  # type: ignore[no-untyped-def]
    for who in (cast.agent, cast.manager):
        cf.as_staff(client, who)
        assert client.get("/counter/commission/rates", headers=ACCEPT_HTML).status_code == 403
    cf.as_staff(client, cast.admin)
    token = form_token(client, "/counter/commission/rates")
    cf.as_staff(client, cast.manager)
    r = client.post(
        "/counter/commission/rates",
        data={"csrf_token": token, "store": "lo-wu", "rate": "5", "valid_from": "2026-01-01"},
        headers=ACCEPT_HTML,
    )
    assert r.status_code == 403
    today = date.today().isoformat()
    assert set_rate(client, cast.admin, store="lo-wu", rate="101", valid_from=today) == 422
    assert set_rate(client, cast.admin, rate="1", valid_from=today) == 422  # applies to nothing
    assert set_rate(client, cast.admin, store="nowhere", rate="1", valid_from=today) == 422
    assert (
        set_rate(
            client,
            cast.admin,
            store="harbour-city",
            agent=cast.agent.username,
            rate="1",
            valid_from=today,
        )
        == 422
    )
    with sessions() as s:
        assert s.scalars(select(CommissionRate)).all() == []


def test_the_csv_cannot_run_a_formula(client, sessions, operator, cast, line_id) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        s.execute(
            update(StaffMember)
            .where(StaffMember.username == cast.agent.username)
            .values(display_name='=HYPERLINK("http://x")')
        )
    cf.sale(client, sessions, operator, line_id, cast.agent)
    [row] = rows_of(statement(client, cast.agent))
    assert row[4] == '\'=HYPERLINK("http://x")'
